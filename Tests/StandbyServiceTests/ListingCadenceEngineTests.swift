import Foundation
import Logging
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
@testable import StandbyService
import StandbySimulation
import StandbyStore
import Testing

/// Listing cost (issue 13): every listing makes PBS read every snapshot's manifest (§13.5). A
/// simulated day of hourly backups through the real engine: the adaptive cadence lists far less
/// often than every poll_interval, and the standby copies are (almost) as fresh.
@Suite("Listing cadence through the engine")
struct ListingCadenceEngineTests {
    struct Day {
        var listings: Int
        var meanAge: Double
        /// Seconds from a guest's first backup that broke its rhythm becoming listable to its restore.
        var offRhythmDelay: Double
    }

    /// 8 hourly VMs whose backups start within the first 10 minutes of each hour (a vzdump job),
    /// plus one VM with no history whose first backups have no rhythm yet.
    func simulateDay(listingMax: Duration) async throws -> Day {
        var s = Scenario()
        s.seed = 7
        s.pbsStorages = [.init(id: "pbs", datastore: "s")]
        s.targetStorages = [.init(id: "lvm", total: 1 << 50)]
        for i in 0..<8 {
            s.backedUp.append(.init(vmid: 100 + i, type: .vm, name: "g\(i)", storage: "pbs", disks: [Int64(2 + i) << 30],
                                    interval: 3600, offset: Double(i * 75), history: 4))
        }
        s.backedUp.append(.init(vmid: 200, type: .vm, name: "new", storage: "pbs", disks: [1 << 30], interval: 3600, offset: 1700, history: 0))
        let manual = ManualClock(start: 1_795_000_000)
        let clock = SteppedClock(manual)
        let sim = PVESimulator(scenario: s, clock: manual)
        var config = StandbyRuntime.demoConfig(scenario: s, statePath: ":memory:")
        config.restore.pollInterval = .seconds(30)
        config.restore.listingMaxInterval = listingMax
        config.restore.taskPollInterval = .seconds(5)
        config.guests = [:]
        var logger = Logger(label: "cadence")
        logger.logLevel = .critical
        let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: try StateStore(), clock: clock, logger: logger)
        let start = manual.now()
        let warmup = start + 3 * 3600
        var ages: [Double] = []
        var nextSample = warmup
        var firstNewRestoredAt: Double?
        await SimulationDriver(reconciler: rt.reconciler, clock: clock).run(until: start + 27 * 3600) { now, _ in
            let snap = rt.reconciler.snapshot
            if now >= nextSample {
                for g in snap.guests where g.key.vmid < 200 {
                    if let r = g.restored { ages.append(now - Double(r.backupTime)) }
                }
                nextSample += 60
            }
            if firstNewRestoredAt == nil, snap.guests.contains(where: { $0.key.vmid == 200 && $0.restored != nil }) { firstNewRestoredAt = now }
        }
        let snap = rt.reconciler.snapshot
        // The new guest's first backup: start time of the first backup after `start` at offset 1700,
        // listable 1 GiB / 500 MiB/s = 2 s later; its restore takes 1 GiB / 300 MiB/s.
        let hourStart = (start / 3600).rounded(.down) * 3600
        var firstBackup = hourStart + 1700
        if firstBackup <= start { firstBackup += 3600 }
        let listable = firstBackup + 2
        let restoreTime = Double(1 << 30) / (300 * 1_048_576)
        return Day(listings: snap.sources.first?.listings ?? 0, meanAge: ages.reduce(0, +) / Double(max(1, ages.count)),
                   offRhythmDelay: (firstNewRestoredAt ?? .infinity) - listable - restoreTime)
    }

    @Test func adaptiveCadenceListsLessAndKeepsCopiesFresh() async throws {
        let fixed = try await simulateDay(listingMax: .seconds(30))
        let adaptive = try await simulateDay(listingMax: .seconds(300))
        print("listing cadence, 27 simulated hours: fixed \(fixed.listings) listings, mean age \(Int(fixed.meanAge)) s; "
              + "adaptive \(adaptive.listings) listings, mean age \(Int(adaptive.meanAge)) s, off-rhythm delay \(Int(adaptive.offRhythmDelay)) s")
        // Fixed: about one listing every 30 s (a pass right after a finished restore uses the
        // listing of 30 s ago, which pushes the next one back by up to a pass).
        #expect(fixed.listings >= 27 * 100)
        // Adaptive: fast only around the hourly job, backed off in between.
        #expect(adaptive.listings * 3 < fixed.listings, "adaptive \(adaptive.listings) vs fixed \(fixed.listings)")
        // Guests with a rhythm are seen at the fastest rate: mean age within a minute of fixed.
        #expect(adaptive.meanAge < fixed.meanAge + 60, "adaptive \(adaptive.meanAge) vs fixed \(fixed.meanAge)")
        // A backup nobody predicted (the new guest's first) is seen within listing_max_interval
        // plus one pass (and the task-follow slack).
        #expect(adaptive.offRhythmDelay <= 300 + 30 + 10, "\(adaptive.offRhythmDelay)")
        #expect(fixed.offRhythmDelay <= 30 + 10, "\(fixed.offRhythmDelay)")
    }
}

/// The listing state of one source (review finding: a long backup is listed in progress first;
/// its completion must count as a change, its delay must be learned, and the cadence must stay
/// fast while it runs).
@Suite("Source listing")
struct SourceListingTests {
    static func entry(_ time: Int, complete: Bool = true, verification: String? = nil) -> BackupEntry {
        BackupEntry(volid: Volid(storage: "pbs", type: .vm, vmid: 101, backupTime: time), ctime: time, size: complete ? 500 << 30 : 1,
                    verification: verification)
    }

    @Test func aBackupInProgressKeepsTheCadenceFastAndItsCompletionTeachesTheDelay() {
        var l = SourceListing(fastest: 30, slowest: 300)
        let hourly = [0, 3600, 7200].map { Self.entry($0) }
        l.record(hourly, at: 7300) { _ in true }
        // Nothing changes for a while: the gap grows.
        l.record(hourly, at: l.nextAt) { _ in true }
        l.record(hourly, at: l.nextAt) { _ in true }
        #expect(l.nextAt - 7300 > 60)
        // The next backup (start 10800) runs for 40 minutes: listed in progress at 11000.
        l.record(hourly + [Self.entry(10800, complete: false)], at: 11000) { _ in true }
        #expect(l.nextAt == 11030, "fast while a backup is in progress")
        l.record(hourly + [Self.entry(10800, complete: false)], at: 11030) { _ in true }
        #expect(l.nextAt == 11060, "still in progress: still fast")
        // Complete at 13200: a change, and its delay (2400 s) is learned.
        l.record(hourly + [Self.entry(10800)], at: 13210) { _ in true }
        #expect(l.listingDelays[101] == [2410])
        #expect(l.nextAt == 13240)
        // The next expectation: 10800 + 3600 + 2410 (minus one fast gap).
        let e = BackupRhythm.expectation(backupTimes: [0, 3600, 7200, 10800], listingDelays: [2410], fastest: 30)
        #expect(e?.dueFrom == Double(10800 + 3600 + 2410 - 30))
    }

    @Test func aStuckBackupDoesNotKeepTheCadenceFastForever() {
        var l = SourceListing(fastest: 30, slowest: 300)
        let stuck = [Self.entry(0), Self.entry(3600), Self.entry(7200), Self.entry(10800, complete: false)]
        l.record(stuck, at: 10800 + 13 * 3600) { _ in true }
        l.record(stuck, at: l.nextAt) { _ in true }
        l.record(stuck, at: l.nextAt) { _ in true }
        let before = l.nextAt
        l.record(stuck, at: before) { _ in true }
        #expect(l.nextAt - before > 60, "backed off: the backup started 13 h ago")
    }

    @Test func aVerificationIsAChange() {
        var l = SourceListing(fastest: 30, slowest: 300)
        l.record([Self.entry(0)], at: 100) { _ in true }
        l.record([Self.entry(0)], at: l.nextAt) { _ in true }
        let backedOff = l.nextAt
        l.record([Self.entry(0, verification: "ok")], at: backedOff) { _ in true }
        #expect(l.nextAt == backedOff + 30)
    }

    @Test func guestsNotSelectedNeitherChangeNorKeepItFast() {
        var l = SourceListing(fastest: 30, slowest: 300)
        l.record([Self.entry(0)], at: 100) { _ in false }
        l.record([Self.entry(0), Self.entry(3600, complete: false)], at: l.nextAt) { _ in false }
        #expect(l.nextAt > 160, "an unselected guest's backup is not a reason to list fast")
    }
}
