import ProxmoxAPI
import StandbyCore

/// The last backup listing of one source and when to list it again (``ListingCadence``): passes
/// between two listings plan from the cached entries.
struct SourceListing: Sendable {
    var entries: [BackupEntry]? = nil
    /// Per selected volid: complete or not, and its verification state. A backup in progress is
    /// listed already (size 1); its completion and a verification are changes too.
    var seen: [String: String] = [:]
    var cadence: ListingCadence
    var nextAt: Double = -.infinity
    /// Listings made (success or failure), for `pbs_standby_source_listings_total`.
    var count = 0
    /// Per backed-up VMID: seconds from backup time to first listing of its recent new backups
    /// (at most 5 kept; backups present at the first listing tell nothing and are not counted).
    var listingDelays: [Int: [Double]] = [:]

    /// How long after its start an incomplete backup keeps the cadence fast.
    static let inProgressWindow: Double = 12 * 3600

    init(fastest: Double, slowest: Double) {
        cadence = ListingCadence(fastest: fastest, slowest: slowest)
    }

    func due(at now: Double) -> Bool { entries == nil || now >= nextAt }

    /// Records a successful listing at `now` and schedules the next one from the rhythms of the
    /// guests `selected` by the source (others neither keep the cadence fast nor count as change).
    mutating func record(_ all: [BackupEntry], at now: Double, selected: (Int) -> Bool) {
        let listed = all.filter { selected($0.volid.vmid) }
        let state = Dictionary(listed.map { ($0.volid.description, "\($0.isComplete)|\($0.verification ?? "")") }) { a, _ in a }
        let first = entries == nil
        if !first {
            // The listing delay of a backup: from its start time to the first listing that shows it complete.
            for e in listed where e.isComplete && seen[e.volid.description]?.hasPrefix("true|") != true {
                var d = listingDelays[e.volid.vmid, default: []]
                d.append(max(0, now - Double(e.volid.backupTime)))
                listingDelays[e.volid.vmid] = Array(d.suffix(5))
            }
        }
        let changed = first || state != seen
        // A backup in progress will complete soon: list at the fastest rate until it does — for at
        // most 12 hours after its start (a stuck or abandoned backup must not keep PBS busy).
        let running = listed.contains { !$0.isComplete && now - Double($0.volid.backupTime) < Self.inProgressWindow }
        entries = all
        seen = state
        count += 1
        let byVmid = Dictionary(grouping: listed.filter(\.isComplete), by: \.volid.vmid)
        listingDelays = listingDelays.filter { byVmid[$0.key] != nil }
        let expected = byVmid.compactMap { vmid, es in
            BackupRhythm.expectation(backupTimes: es.map(\.volid.backupTime), listingDelays: listingDelays[vmid] ?? [],
                                     fastest: cadence.fastest)
        }
        nextAt = cadence.next(after: now, changed: changed || running, expected: expected)
    }

    /// Records a failed listing: retry at the fastest rate.
    mutating func recordFailure(at now: Double) {
        count += 1
        nextAt = cadence.next(after: now, changed: true, expected: [])
    }
}
