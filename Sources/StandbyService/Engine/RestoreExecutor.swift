import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// How a restore is carried out: PVE's own restore task (``PVETaskExecutor``) or the delta writer
/// (``DeltaExecutor``); the RPO benchmark models one. The engine hands an executor a planned ``RestoreAction`` and records the
/// ``RestoreOutcome``; it does not know which executor ran.
public protocol RestoreExecutor: Sendable {
    /// Restores `action.backup` into `action.targetVmid` and says how it ended. The state file
    /// already records the restore as `historyID` (state is written before acting).
    func restore(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome
    /// Follows a restore started before a restart (recorded as running, `upid`) to its end.
    func reattach(_ action: RestoreAction, upid: UPID, historyID: Int64, run: RestoreRun) async -> RestoreOutcome
}

/// What an executor needs from the loop for one restore, and how it reports back.
public struct RestoreRun: Sendable {
    /// The guest restored.
    public let key: GuestKey
    let events: EventQueue
    /// `once`: stop following after PVE was unreachable this long (the task runs on).
    public let giveUp: Double?
    /// Expected duration from the observed throughput (task polls are spaced by it).
    public let expectedSeconds: Double?

    /// Reports progress (0…1) to the guest's view.
    public func progress(_ ratio: Double) { events.emit(.progress(key, ratio)) }
    /// Reports the UPID of the restore's PVE task (recorded for re-attach).
    public func upid(_ upid: UPID) { events.emit(.upid(key, upid)) }
}

/// Facts about a good copy that the record keeps.
public struct CopyFacts: Sendable, Equatable {
    /// N of `TASK WARNINGS: N` (success with warnings, e.g. raw `lxc.*` keys dropped, §13.1).
    public var warnings = 0
    /// The VM's new `vmgenid`, written into its marker.
    public var vmgenid: String?
    /// The backup's own `onboot` (restores pass `onboot=0`; `failover` puts it back).
    public var backupOnboot: Bool?
    /// A delta restore's mode, bytes and chunks (nil: PVE's full restore).
    public var delta: RestoreFacts?
    /// Why a delta was not possible (a full restore by the delta executor's fallback).
    public var fallbackReason: String?

    /// Facts of a good copy.
    public init(warnings: Int = 0, vmgenid: String? = nil, backupOnboot: Bool? = nil, delta: RestoreFacts? = nil, fallbackReason: String? = nil) {
        self.warnings = warnings
        self.vmgenid = vmgenid
        self.backupOnboot = backupOnboot
        self.delta = delta
        self.fallbackReason = fallbackReason
    }
}

/// How a restore ended.
public enum RestoreOutcome: Sendable {
    /// A good copy: `TASK OK` (or `TASK WARNINGS: N`) and our marker for this backup and VMID.
    case success(CopyFacts)
    case failure(reason: FailureReason, message: String)
    /// The service stopped while following a PVE task: the task runs on; re-attach at start.
    case detached
    /// The restore could not be followed to an end (pvesh child stopped): retry without backoff.
    case interrupted(String)
    /// `once` stopped following: PVE unreachable too long. The task runs on; re-attach later.
    case unreachable(String)
    /// Not started: the re-check right before acting found the guest held, failed over, no longer
    /// ours, locked, protected or running. Nothing was changed; the next pass plans again.
    case skipped(String)

    /// The outcome of an error thrown while acting: cancellation is the service stopping.
    init(error: any Error, synchronous: Bool) {
        switch error {
        case is CancellationError: self = synchronous ? .interrupted("service stopped during a pvesh restore") : .detached
        case let e as ProxmoxError: self = .failure(reason: .of(e), message: e.description)
        default: self = .failure(reason: .apiError, message: "\(error)")
        }
    }
}
