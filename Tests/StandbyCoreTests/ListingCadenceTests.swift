import StandbyCore
import Testing

/// The listing cadence (issue 13, "listing cost"): fast while a backup is due or after a change,
/// doubling to `slowest` when nothing changes.
@Suite("Listing cadence")
struct ListingCadenceTests {
    @Test func backsOffWhenNothingChangesAndResetsOnChange() {
        var c = ListingCadence(fastest: 30, slowest: 300)
        #expect(c.next(after: 0, changed: true, expected: []) == 30)
        #expect(c.next(after: 30, changed: false, expected: []) == 90)     // 60
        #expect(c.next(after: 90, changed: false, expected: []) == 210)    // 120
        #expect(c.next(after: 210, changed: false, expected: []) == 450)   // 240
        #expect(c.next(after: 450, changed: false, expected: []) == 750)   // 300 (capped)
        #expect(c.next(after: 750, changed: false, expected: []) == 1050)
        #expect(c.next(after: 1050, changed: true, expected: []) == 1080)  // a change: fast again
    }

    @Test func listsFastWhileABackupIsDueAndWakesForTheNextOne() {
        var c = ListingCadence(fastest: 30, slowest: 300)
        _ = c.next(after: 0, changed: false, expected: [])
        _ = c.next(after: 100, changed: false, expected: [])
        // Next expected at 1000–1500: the listing before it lands at its start, not 300 s later.
        let due = BackupRhythm.Expectation(dueFrom: 1000, dueUntil: 1500)
        #expect(c.next(after: 900, changed: false, expected: [due]) == 1000)
        // Inside the window: every 30 s even though nothing changed.
        #expect(c.next(after: 1000, changed: false, expected: [due]) == 1030)
        #expect(c.next(after: 1470, changed: false, expected: [due]) == 1500)
        // After the window (the backup did not come): back to the backed-off gap.
        #expect(c.next(after: 1500, changed: false, expected: [due]) == 1800)
        // Never sooner than the fastest gap.
        #expect(c.next(after: 1800, changed: false, expected: [.init(dueFrom: 1810, dueUntil: 1900)]) == 1830)
    }

    @Test func rhythmNeedsThreeBackupsAndUsesMedianIntervalAndSmallestDelay() {
        #expect(BackupRhythm.expectation(backupTimes: [0, 3600], listingDelays: [], fastest: 30) == nil)
        // Hourly with one late outlier: the median is 3600.
        let e = BackupRhythm.expectation(backupTimes: [7200, 0, 3600, 12000], listingDelays: [90, 40, 300], fastest: 30)
        let predicted = 12000.0 + 3600 + 40
        #expect(e == .init(dueFrom: predicted - 30, dueUntil: predicted + 900))
        // Daily backups: the window stays open at most 30 minutes.
        let d = BackupRhythm.expectation(backupTimes: [0, 86400, 172_800], listingDelays: [], fastest: 30)
        #expect(d == .init(dueFrom: 259_200 - 30, dueUntil: 259_200 + 1800))
        // Duplicated times do not make a zero interval.
        #expect(BackupRhythm.expectation(backupTimes: [5, 5, 5], listingDelays: [], fastest: 30) == nil)
    }
}
