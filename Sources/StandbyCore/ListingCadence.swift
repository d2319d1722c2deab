/// When to list a source's backups next.
///
/// Every backup listing makes PBS read the manifest of every snapshot in the datastore
/// (reference §13.5), so a listing of 200 guests × 50 snapshots costs 10,000 manifest reads.
/// Listing every `poll_interval` (30 s) is 1.2 million reads an hour while, on most nodes, nothing
/// changes for hours. The cadence lists at the fastest rate only while a backup is *due* — a
/// guest's rhythm (interval and listing delay) is visible in the listings themselves — and after a
/// listing that showed a change; otherwise it backs off, doubling the gap up to `slowest`.
///
/// The trade-off: a backup nobody predicted (the first backups of a guest, a manual backup, a
/// changed schedule, a backup that runs much longer than before) is seen up to `slowest` late.
public struct ListingCadence: Sendable, Equatable {
    /// The gap while a backup is due or after a change (`poll_interval`).
    public let fastest: Double
    /// The longest gap when nothing changes and nothing is due (`listing_max_interval`).
    public let slowest: Double
    /// The current back-off gap.
    public private(set) var gap: Double

    /// Starts at the fastest gap; a `slowest` below `fastest` is raised to it (both in seconds).
    public init(fastest: Double, slowest: Double) {
        self.fastest = fastest
        self.slowest = max(fastest, slowest)
        self.gap = fastest
    }

    /// Records a listing made at `now` and returns when the next one is due.
    ///
    /// - changed: the listing differs from the previous one (a backup appeared or was pruned);
    ///   a failed listing counts as changed (retry at the fastest rate).
    /// - expected: when each guest's next backup is expected to be listed (``BackupRhythm``).
    public mutating func next(after now: Double, changed: Bool, expected: [BackupRhythm.Expectation]) -> Double {
        gap = changed ? fastest : min(slowest, gap * 2)
        var at = now + gap
        for e in expected {
            if e.dueFrom <= now + fastest, now < e.dueUntil {
                return now + fastest  // a backup is due: list at the fastest rate
            }
            if e.dueFrom > now { at = min(at, e.dueFrom) }
        }
        return max(now + fastest, at)
    }
}

/// A guest's backup rhythm, read from its listed backups.
public enum BackupRhythm {
    /// When a guest's next backup is expected in the listing: from `dueFrom` (one fastest gap
    /// before the prediction) until `dueUntil`, after which the cadence backs off again (a backup
    /// that does not come — production down, schedule changed — must not keep PBS busy).
    public struct Expectation: Sendable, Equatable {
        /// From when the cadence lists at the fastest rate (Unix seconds).
        public var dueFrom: Double
        /// When a backup that did not come stops holding the fastest rate (Unix seconds).
        public var dueUntil: Double
        /// An expectation window.
        public init(dueFrom: Double, dueUntil: Double) {
            self.dueFrom = dueFrom
            self.dueUntil = dueUntil
        }
    }

    /// The expectation for a guest: its interval is the median gap between its last (up to 8)
    /// complete backups (at least three needed), the delay between a backup's start time and its
    /// appearance in the listing the smallest delay seen recently (0 when none was seen: the
    /// backups were already there when the service started). Nil without a rhythm.
    ///
    /// - backupTimes: start times of the guest's complete backups (any order).
    /// - listingDelays: seconds from backup time to first listing of recent new backups.
    /// - fastest: the fastest listing gap (the window opens this much before the prediction).
    public static func expectation(backupTimes: [Int], listingDelays: [Double], fastest: Double) -> Expectation? {
        let times = backupTimes.sorted().suffix(9)
        guard times.count >= 3 else { return nil }
        let gaps = zip(times.dropFirst(), times).map { Double($0 - $1) }.filter { $0 > 0 }.sorted()
        guard !gaps.isEmpty else { return nil }
        let interval = gaps[gaps.count / 2]
        let delay = max(0, listingDelays.min() ?? 0)
        let predicted = Double(times.last!) + interval + delay
        // Listing delays vary with the backup's size and PBS's load: stay fast for a quarter
        // interval (at most 30 minutes) after the prediction, then back off.
        return Expectation(dueFrom: predicted - fastest, dueUntil: predicted + max(2 * fastest, min(interval / 4, 1800)))
    }
}
