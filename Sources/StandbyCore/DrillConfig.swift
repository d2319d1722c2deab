import ConfigSupport
import Foundation

extension StandbyConfig {
    /// DR drills (`drill:`, issue 16): on a schedule, prove that each standby copy boots —
    /// isolated from the network, and rolled back to exactly what it was.
    public struct Drill: Sendable {
        /// When drills run (PVE's calendar-event syntax, node-local time); nil: only `pbs-standby drill`.
        public var schedule: CalendarEvent?
        /// Drills running at the same time.
        public var maxParallel = 1
        /// From the start task's end to the evidence of a boot; then the drill fails and is rolled back.
        public var bootTimeout: Duration = .seconds(600)
        /// The weakest evidence that counts as passed.
        public var minEvidence: DrillEvidence = .running
        /// "Running": the guest must run this long without stopping (evidence without an agent).
        public var runningSeconds: Duration = .seconds(60)
        /// No passed drill within this period: `PbsStandbyDrillOverdue`.
        public var overdueAfter: Duration = .seconds(8 * 86_400)
        /// How long drill results are kept (for auditors).
        public var history: Duration = .seconds(400 * 86_400)
        /// VMIDs full clones go to when the copy's storage cannot snapshot (part of the slot map).
        public var scratchVmids: ClosedRange<Int>?
        /// On storage without snapshots, drill a full clone in ``scratchVmids`` (costs a full copy
        /// of the disks per drill) instead of skipping with `no_snapshots`.
        public var cloneWithoutSnapshots = false
        /// The node's memory kept free beyond a drilled guest's memory before it starts.
        public var memoryMargin: Int64 = 1 << 30
        /// Defaults: no schedule, one at a time, 10 min boot timeout, `running` evidence.
        public init() {}
    }

    /// Parses `drill:` (every key named in its errors).
    static func parseDrill(_ m: StrictMapping) throws(ConfigError) -> Drill {
        var d = Drill()
        if let text = try m.string("schedule") {
            do { d.schedule = try CalendarEvent(parsing: text) } catch {
                throw m.error("schedule", m.node("schedule"), "'\(text)' is not a PVE calendar event (like 'sun 03:00' or 'mon..fri 22:30'): \(error.message)")
            }
        }
        d.maxParallel = try m.int("max_parallel", range: 1...16) ?? d.maxParallel
        d.bootTimeout = try m.duration("boot_timeout") ?? d.bootTimeout
        if d.bootTimeout < .seconds(10) || d.bootTimeout > .seconds(6 * 3600) {
            throw m.error("boot_timeout", m.node("boot_timeout"), "must be between 10s and 6h")
        }
        if let e = try m.string("min_evidence") {
            guard let ev = DrillEvidence(rawValue: e) else { throw m.error("min_evidence", m.node("min_evidence"), "'\(e)' is not one of agent, running") }
            d.minEvidence = ev
        }
        d.runningSeconds = try m.duration("running_seconds") ?? d.runningSeconds
        if d.runningSeconds < .seconds(5) || d.runningSeconds >= d.bootTimeout {
            throw m.error("running_seconds", m.node("running_seconds"), "must be at least 5s and shorter than boot_timeout (\(Int(d.bootTimeout.seconds))s)")
        }
        d.overdueAfter = try m.duration("overdue_after") ?? d.overdueAfter
        if d.overdueAfter < .seconds(3600) { throw m.error("overdue_after", m.node("overdue_after"), "must be at least 1h") }
        d.history = try m.duration("history") ?? d.history
        if d.history < .seconds(86_400) { throw m.error("history", m.node("history"), "must be at least 1d") }
        if let text = try m.string("scratch_vmids") {
            let parts = text.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2, let lo = parts[0], let hi = parts[1], lo <= hi, vmidRange.contains(lo), vmidRange.contains(hi), hi - lo < 100_000 else {
                throw m.error("scratch_vmids", m.node("scratch_vmids"), "'\(text)' is not a VMID range like 990000-990099 (within 100–999999999, at most 100000 VMIDs)")
            }
            d.scratchVmids = lo...hi
        }
        d.cloneWithoutSnapshots = try m.bool("clone_without_snapshots") ?? false
        if d.cloneWithoutSnapshots, d.scratchVmids == nil {
            throw m.error("clone_without_snapshots", m.node("clone_without_snapshots"), "needs drill.scratch_vmids: the VMIDs the clones go to")
        }
        if let mib = try m.int("memory_margin_mib", range: 0...1_048_576) { d.memoryMargin = Int64(mib) << 20 }
        try m.finish()
        return d
    }
}

/// The evidence a drill collects that a guest booted, strongest first.
public enum DrillEvidence: String, Sendable, Codable, CaseIterable {
    /// The QEMU guest agent answered `ping` (VMs with `agent: 1`): the OS is up.
    case agent
    /// The guest ran for `drill.running_seconds` without stopping (CTs, VMs without the agent):
    /// weaker — a VM stuck in its bootloader also "runs".
    case running

    /// Whether this evidence is at least as strong as `minimum`.
    public func satisfies(_ minimum: DrillEvidence) -> Bool { self == .agent || minimum == .running }
}

/// How a drill ended (`result` of the status, the report and `pbs_standby_drills_total`).
public enum DrillResult: String, Sendable, Codable, CaseIterable {
    /// Still running (a record left open by a crash is cleaned up at start).
    case running
    /// Booted with at least `drill.min_evidence`, and rolled back.
    case passed
    /// Did not boot, stopped by itself, or the agent never answered within `boot_timeout`.
    case failed
    /// Not drilled (``DrillSkipReason``); the copy was not touched.
    case skipped
    /// Interrupted (a failover, a shutdown, a crash) and cleaned up.
    case aborted
}

/// Why a guest was not drilled (`reason` of a skipped drill).
public enum DrillSkipReason: String, Sendable, Codable, CaseIterable {
    /// A NIC, disk, mount point or raw key the drill cannot cut from the host or the network.
    case notIsolatable = "not_isolatable"
    /// The copy's storage cannot snapshot it, and clone drills are off.
    case noSnapshots = "no_snapshots"
    /// No copy on the standby yet.
    case noCopy = "no_copy"
    /// The guest at the copy's VMID is not provably ours.
    case notOurs = "not_ours"
    /// A restore of the guest runs or is due.
    case restoring
    /// Held by the operator.
    case held
    /// Failed over (and every drill pauses while any guest is failed over).
    case failedOver = "failed_over"
    /// The copy runs.
    case running
    /// The copy's config is locked (a backup, a migration, another task).
    case locked
    /// The node has not the guest's memory free (plus `drill.memory_margin_mib`).
    case insufficientMemory = "insufficient_memory"
    /// `drill.min_evidence: agent` and the VM has no guest agent enabled (or it is a CT).
    case noAgent = "no_agent"
    /// Clone drill: no free VMID in `drill.scratch_vmids`.
    case noScratchVmid = "no_scratch_vmid"
    /// Blocked after a failed cleanup (`blocked(drill_cleanup)`).
    case cleanupBlocked = "drill_cleanup"
}
