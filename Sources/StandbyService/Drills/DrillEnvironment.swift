import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// What a drill acts through: the operations (config, PVE client, state store, ownership
/// proofs), a clock and a logger. Shared by the service's scheduled drills, `pbs-standby drill`
/// and `failover` (which aborts a drill first).
public struct DrillEnvironment: Sendable {
    /// Config, PVE client, state store, ownership proofs.
    public let operations: GuestOperations
    /// Time (the simulator's clock in tests).
    public let clock: any EngineClock
    /// Where each step is logged.
    public let logger: Logger
    /// Asked at each check of a running drill: a reason to abort it now (the service is stopping), or nil.
    let abort: @Sendable () -> String?

    /// An environment; `abort` names a reason to end running drills early (a graceful stop).
    public init(operations: GuestOperations, clock: any EngineClock, logger: Logger = Logger(label: "pbs-standby.drill"),
                abort: @escaping @Sendable () -> String? = { nil }) {
        self.operations = operations
        self.clock = clock
        self.logger = logger
        self.abort = abort
    }

    var config: StandbyConfig { operations.config }
    var client: ProxmoxClient { operations.client }
    var store: StateStore { operations.store }
    var node: String { operations.config.proxmox.node }

    /// The snapshot every drill takes (and removes).
    public static let snapshotName = "pbs-standby-drill"
    /// The description of a drill's snapshot: a cleanup rolls back only to the snapshot of its own drill.
    public static func snapshotDescription(drill id: Int64) -> String { "pbs-standby DR drill \(id): rolled back after the test boot" }
    /// A marker line in a clone drill's description: the clone is ours only with it (and our clone task).
    static func cloneMarker(drill id: Int64, of vmid: Int) -> String { "pbs-standby drill clone of \(vmid) (drill \(id))" }

    /// Follows a task to its end on the environment's clock (status every second; transient
    /// errors retried for up to 10 min). Returns PVE's exit status (`OK` on success).
    func follow(_ upid: UPID, timeout: Double = 3600) async throws -> String {
        try await operations.followToEnd(upid, clock: clock, poll: 1, giveUpUnreachable: 600, timeout: timeout).exitStatus ?? "unknown"
    }

    /// Records a task of a drill as ours (the delta's "touched since restore" check skips it).
    func recordTask(_ upid: UPID, on vmid: Int, in record: inout DrillRecord) {
        record.tasks = record.tasks.isEmpty ? upid.description : record.tasks + ";" + upid.description
        try? store.addOurTask(upid.description, targetVmid: vmid, at: clock.now())
        try? store.saveDrill(record)
    }
}
