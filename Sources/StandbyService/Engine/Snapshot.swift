import Foundation
import ProxmoxAPI
import StandbyCore

/// Everything the service knows, published after each change; `/metrics`, `/api/v1/status` and
/// the HTML page render it without waiting for the loop.
public struct StatusSnapshot: Sendable {
    /// The service as a whole (`service` in the status JSON, the service-level metrics).
    public struct Service: Sendable {
        /// The pbs-standby version (`pbs_standby_build_info`).
        public var version: String
        /// When the service started (Unix seconds).
        public var startedAt: Double
        /// Configured restore workers (`restore.workers`).
        public var workers: Int
        /// Guests with a restore to do that wait for a worker.
        public var queueLength: Int
        /// Restores running now.
        public var restoresInProgress: Int
        /// Start time of the last completed pass (Unix seconds; liveness); nil before the first.
        public var lastLoopAt: Double?
        /// The last write to the state file succeeded (false: disk full, read-only…; no restore
        /// starts until it can be written again).
        public var stateWritable: Bool
        /// The last state write error, naming the file.
        public var stateError: String?
        /// Since when writes fail.
        public var stateErrorSince: Double?
        /// Failed state writes since start.
        public var stateWriteErrors: Int
        /// Outcomes known in memory but not yet in the state file (replayed before acting).
        public var unsavedWrites: Int
    }

    /// One source and its backup listings (`sources` in the status JSON).
    public struct Source: Sendable {
        /// The source storage (PVE storage id of the PBS storage).
        public var storage: String
        /// The last backup listing of this source succeeded.
        public var up: Bool
        /// When it was last listed successfully (Unix seconds); nil before the first success.
        public var lastRefreshAt: Double?
        /// The last listing's error (`not refreshed yet` before the first); nil while up.
        public var error: String?
        /// Failed listings since start (`pbs_standby_source_refresh_errors_total`).
        public var refreshErrors: Int
        /// Backup listings made since start (each makes PBS read every snapshot's manifest).
        public var listings = 0
        /// When the next listing is due (``ListingCadence``).
        public var nextListingAt: Double?
    }

    /// A backup as a view shows it: the restored copy's or the newest eligible one.
    public struct Backup: Sendable, Equatable {
        /// The backup's volid.
        public var volid: String
        /// Its backup time (Unix seconds).
        public var backupTime: Int
        /// Its size in bytes; nil when unknown.
        public var size: Int64?
    }

    /// One restore attempt from the state file's history.
    public struct LastRestore: Sendable {
        /// When it began (Unix seconds).
        public var startedAt: Double
        /// When it ended (Unix seconds); nil while running.
        public var finishedAt: Double?
        /// Seconds it took; nil while running.
        public var duration: Double?
        /// `running`, `success`, `failure`, `interrupted` or `skipped`.
        public var result: String
        /// The failure's message (`TASK WARNINGS: N` after a success with warnings).
        public var error: String?
        /// The PVE task's UPID; nil until PVE answered the restore call.
        public var upid: String?
        /// The backup restored.
        public var volid: String
        /// N of `TASK WARNINGS: N` (success with warnings).
        public var warnings: Int = 0
        /// `delta` or `full` once it ended well (issue 15).
        public var mode: String? = nil
        /// Bytes written into the standby's volumes.
        public var bytesWritten: Int64? = nil
        /// Delta: chunks that changed; null for a full restore.
        public var chunksChanged: Int? = nil
        /// Delta: chunks of all disks.
        public var chunksTotal: Int? = nil
        /// Why a delta was not possible (a full restore with delta restores on).
        public var fallbackReason: String? = nil
    }

    /// One guest's view: what the plan decided and shows, the record's counters and history.
    public struct Guest: Sendable {
        /// The guest: source storage + backed-up VMID.
        public var key: GuestKey
        /// Its type.
        public var type: GuestType
        /// The live copy's name in PVE (kept from earlier views); `guest VMID` while none was seen.
        public var name: String
        /// The slot holding the live copy (the restore slot while there is none).
        public var targetVmid: Int
        /// The standby node.
        public var targetNode: String
        /// The state shown; exactly one at a time.
        public var state: GuestState
        /// Why a safety rule refuses, while `blocked`.
        public var blockedReason: BlockReason?
        /// What the blocking rule saw (whose guest is at the target VMID, which guest claims the
        /// same slot), for status, page and log.
        public var blockedDetail: String?
        /// The copy on the standby; nil while none is proven (or remembered, when not observed).
        public var restored: Backup?
        /// The newest eligible backup (for a superseded group: its newest); nil when none.
        public var latest: Backup?
        /// Complete backups newer than the restored one.
        public var pendingBackups: Int
        /// The guest's RPO target in seconds.
        public var rpoTarget: Double
        /// Its scheduling priority, higher first.
        public var priority: Int
        /// Progress 0–1 of the running restore, from its task log; read only while `restoring`.
        public var progress: Double?
        /// Failed restores since the last success.
        public var consecutiveFailures: Int
        /// When the last restore began (Unix seconds).
        public var lastAttemptAt: Double?
        /// When the last successful restore ended (Unix seconds).
        public var lastSuccessAt: Double?
        /// Seconds the last finished restore took, success or failure.
        public var lastDuration: Double?
        /// After a failure: no attempt before this time (Unix seconds).
        public var nextRetryAt: Double?
        /// The last failure's message.
        public var lastError: String?
        /// Successful restores, ever (state file).
        public var restoresSucceeded: Int
        /// Failed restores, ever (state file).
        public var restoresFailed: Int
        /// Bytes of backups restored successfully, ever.
        public var restoredBytesTotal: Int64
        /// The last (up to 10) restore attempts, newest first.
        public var history: [LastRestore]
        /// DR drills of this guest (issue 16); nil when drills do not apply to it.
        public var drill: Drill? = nil
    }

    /// A guest's DR drills: the latest, and the latest passed (status `drill`, the report, metrics).
    public struct Drill: Sendable, Equatable {
        /// The latest drill's result (`passed`, `failed`, `skipped`, `aborted`, `running`); nil: never drilled.
        public var result: String?
        /// When the latest drill began and ended.
        public var startedAt: Double?
        /// When the latest drill ended.
        public var finishedAt: Double?
        /// Its start → first evidence of the boot, in seconds.
        public var bootSeconds: Double?
        /// Its evidence (`agent` or `running`).
        public var evidence: String?
        /// The backup the copy held.
        public var volid: String?
        /// Why it was skipped, failed or aborted.
        public var reason: String?
        /// The guest agent's OS and host name, when it answered.
        public var osInfo: String?
        /// The guest agent's host name.
        public var hostName: String?
        /// When the latest passed drill ended, and its boot time.
        public var lastPassedAt: Double?
        /// Boot seconds of the latest passed drill.
        public var lastPassedBootSeconds: Double?
        /// The evidence of the latest passed drill.
        public var lastPassedEvidence: String?
        /// A passed drill is due by then (last passed, or since drills apply, + `drill.overdue_after`).
        public var dueAt: Double?
        /// When the schedule next drills the guest; nil without a schedule.
        public var nextAt: Double?
        /// The newest drill that passed or failed, failed (`pbs_standby_drill_failed`; a skip, an
        /// abort or a drill in progress leaves it as it was).
        public var failed = false
    }

    /// "If production died now": the failover readiness line of the page and the capacity metrics.
    public struct Readiness: Sendable, Equatable {
        /// The verdict.
        public var summary: FailoverReadiness.Summary
        /// The one line the page opens with.
        public var line: String { summary.line }
    }

    /// The service as a whole.
    public var service: Service
    /// One entry per configured source, in config order.
    public var sources: [Source]
    /// Every guest's view in key order; a superseded group's view follows its guest's.
    public var guests: [Guest]
    /// Failover readiness (nil until the first pass computed it).
    public var readiness: Readiness? = nil
    /// Drills ended since the service started, per source and result (`pbs_standby_drills_total`).
    public var drillCounts: [String: [String: Int]] = [:]

    /// An empty snapshot at start.
    public static func initial(version: String, startedAt: Double, workers: Int) -> StatusSnapshot {
        StatusSnapshot(service: .init(version: version, startedAt: startedAt, workers: workers, queueLength: 0,
                                      restoresInProgress: 0, lastLoopAt: nil, stateWritable: true,
                                      stateError: nil, stateErrorSince: nil, stateWriteErrors: 0, unsavedWrites: 0),
                       sources: [], guests: [])
    }
}
