import Foundation

/// "If production died now, what could I start, how old would it be, and does it fit?" (issue 16,
/// failover readiness): a pure summary of per-guest facts, shared by the page's first line, the
/// capacity metrics and `pbs-standby failover --dry-run`.
public enum FailoverReadiness {
    /// One guest as a failover would see it.
    public struct Guest: Sendable, Equatable {
        /// The guest.
        public var key: GuestKey
        /// A copy proven ours exists and nothing blocks starting it.
        public var startable: Bool
        /// Age of the copy (now − its backup time), seconds.
        public var copyAge: Double?
        /// Its RPO target, seconds.
        public var rpoTarget: Double
        /// The latest drill's result (nil: never drilled, or drills off).
        public var drillResult: String?
        /// Configured memory of the copy (`maxmem`), bytes.
        public var memory: Int64
        /// Configured cores (`maxcpu`), when known.
        public var cores: Int?
        /// The copy already runs (its memory is in the node's `used`).
        public var running: Bool
        /// A guest as given.
        public init(key: GuestKey, startable: Bool, copyAge: Double?, rpoTarget: Double, drillResult: String?, memory: Int64, cores: Int? = nil, running: Bool = false) {
            self.key = key
            self.startable = startable
            self.copyAge = copyAge
            self.rpoTarget = rpoTarget
            self.drillResult = drillResult
            self.memory = memory
            self.cores = cores
            self.running = running
        }
    }

    /// The verdict over all guests.
    public struct Summary: Sendable, Equatable {
        /// Selected guests.
        public var guests: Int
        /// Guests with a startable copy.
        public var startable: Int
        /// The oldest startable copy's age, seconds.
        public var oldestCopyAge: Double?
        /// Startable copies older than their RPO target.
        public var beyondRPO: Int
        /// Latest drills: passed, failed (failed or aborted), never drilled.
        public var drillsPassed: Int
        /// Latest drills that failed.
        public var drillsFailed: Int
        /// Guests never drilled (or only skipped).
        public var drillsNone: Int
        /// Memory of every startable copy not running yet, bytes.
        public var memoryRequired: Int64
        /// The node's memory not in use (nil: unknown).
        public var memoryAvailable: Int64?
        /// The node's physical memory (nil: unknown).
        public var memoryTotal: Int64?
        /// Cores of the copies a failover would start (reported, not judged).
        public var coresRequired: Int
        /// The node's CPU threads, when known.
        public var nodeCores: Int?

        /// The copies fit into the node's free memory (unknown memory: not judged, true).
        public var fits: Bool { memoryAvailable.map { memoryRequired <= $0 } ?? true }
        /// Every guest startable and the memory fits.
        public var ready: Bool { startable == guests && fits }

        /// "Ready: 10 of 12 guests startable, oldest copy 31 min, last drills passed, fits in 180 of 256 GiB".
        public var line: String {
            var parts = ["\(startable) of \(guests) guests startable"]
            if let age = oldestCopyAge { parts.append("oldest copy \(Self.age(age))" + (beyondRPO > 0 ? " (\(beyondRPO) beyond RPO)" : "")) }
            if drillsFailed > 0 { parts.append("\(drillsFailed) drill\(drillsFailed == 1 ? "" : "s") failed") }
            else if drillsPassed > 0 && drillsNone == 0 { parts.append("last drills passed") }
            else if drillsPassed > 0 { parts.append("\(drillsPassed) drills passed, \(drillsNone) never drilled") }
            else { parts.append("no drill passed yet") }
            let gib = { (b: Int64) in String(format: "%.0f", Double(b) / 1_073_741_824) }
            if let avail = memoryAvailable {
                parts.append(fits ? "fits in \(gib(avail)) GiB free (needs \(gib(memoryRequired)))"
                                  : "needs \(gib(memoryRequired)) GiB of memory, only \(gib(avail)) GiB free")
            } else {
                parts.append("needs \(gib(memoryRequired)) GiB of memory (the node's free memory is unknown)")
            }
            let verdict = !fits ? "Capacity short" : startable == guests ? "Ready" : startable == 0 ? "Not ready" : "Partly ready"
            return "\(verdict): " + parts.joined(separator: ", ")
        }

        /// `31 min`, `2.5 h`, `3.1 d`.
        public static func age(_ s: Double) -> String {
            s < 3600 ? "\(Int(s / 60)) min" : s < 172_800 ? String(format: "%.1f h", s / 3600) : String(format: "%.1f d", s / 86_400)
        }
    }

    /// Summarises guests against the node's memory (`available` = `total − used`, ZFS ARC counted as used).
    public static func summarize(_ guests: [Guest], memoryAvailable: Int64?, memoryTotal: Int64?, nodeCores: Int?) -> Summary {
        let startable = guests.filter(\.startable)
        return Summary(
            guests: guests.count, startable: startable.count, oldestCopyAge: startable.compactMap(\.copyAge).max(),
            beyondRPO: startable.filter { ($0.copyAge ?? 0) > $0.rpoTarget }.count,
            drillsPassed: guests.filter { $0.drillResult == "passed" }.count,
            drillsFailed: guests.filter { $0.drillResult == "failed" }.count,
            drillsNone: guests.filter { $0.drillResult == nil || $0.drillResult == "skipped" }.count,
            memoryRequired: startable.filter { !$0.running }.reduce(Int64(0)) { $0 + max(0, $1.memory) },
            memoryAvailable: memoryAvailable, memoryTotal: memoryTotal,
            coresRequired: startable.filter { !$0.running }.reduce(0) { $0 + ($1.cores ?? 0) }, nodeCores: nodeCores)
    }
}
