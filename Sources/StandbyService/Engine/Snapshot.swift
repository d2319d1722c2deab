import Foundation
import ProxmoxAPI
import StandbyCore

/// Everything the service knows, published after each change; `/metrics`, `/api/v1/status` and
/// the HTML page render it without waiting for the loop.
public struct StatusSnapshot: Sendable {
    public struct Service: Sendable {
        public var version: String
        public var startedAt: Double
        public var workers: Int
        public var queueLength: Int
        public var restoresInProgress: Int
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

    public struct Source: Sendable {
        public var storage: String
        public var up: Bool
        public var lastRefreshAt: Double?
        public var error: String?
        public var refreshErrors: Int
        /// Backup listings made since start (each makes PBS read every snapshot's manifest).
        public var listings = 0
        /// When the next listing is due (``ListingCadence``).
        public var nextListingAt: Double?
    }

    public struct Backup: Sendable, Equatable {
        public var volid: String
        public var backupTime: Int
        public var size: Int64?
    }

    public struct LastRestore: Sendable {
        public var startedAt: Double
        public var finishedAt: Double?
        public var duration: Double?
        public var result: String
        public var error: String?
        public var upid: String?
        public var volid: String
        /// N of `TASK WARNINGS: N` (success with warnings).
        public var warnings: Int = 0
    }

    public struct Guest: Sendable {
        public var key: GuestKey
        public var type: GuestType
        public var name: String
        public var targetVmid: Int
        public var targetNode: String
        public var state: GuestState
        public var blockedReason: BlockReason?
        /// What the blocking rule saw (whose guest is at the target VMID, which guest claims the
        /// same slot), for status, page and log.
        public var blockedDetail: String?
        public var restored: Backup?
        public var latest: Backup?
        public var pendingBackups: Int
        public var rpoTarget: Double
        public var priority: Int
        public var progress: Double?
        public var consecutiveFailures: Int
        public var lastAttemptAt: Double?
        public var lastSuccessAt: Double?
        public var lastDuration: Double?
        public var nextRetryAt: Double?
        public var lastError: String?
        public var restoresSucceeded: Int
        public var restoresFailed: Int
        public var restoredBytesTotal: Int64
        public var history: [LastRestore]
    }

    public var service: Service
    public var sources: [Source]
    public var guests: [Guest]

    /// An empty snapshot at start.
    public static func initial(version: String, startedAt: Double, workers: Int) -> StatusSnapshot {
        StatusSnapshot(service: .init(version: version, startedAt: startedAt, workers: workers, queueLength: 0,
                                      restoresInProgress: 0, lastLoopAt: nil, stateWritable: true,
                                      stateError: nil, stateErrorSince: nil, stateWriteErrors: 0, unsavedWrites: 0),
                       sources: [], guests: [])
    }
}
