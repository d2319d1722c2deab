import Foundation
import StandbyCore

/// The document of `/api/v1/status` (and one guest of it, `/api/v1/guests/{vmid}`): the fields of
/// METRICS.md, validated against `deploy/api/status.schema.json`. One Codable type shared by the
/// server, `pbs-standby status` and the tests. Times are ISO-8601 UTC strings with a Unix-seconds
/// twin where the contract has one; absent values are `null`, never missing keys.
public struct StatusDocument: Codable, Sendable, Equatable {
    /// The service as a whole (`service`).
    public var service: Service
    /// Every configured source, in config order (`sources`).
    public var sources: [Source]
    /// Every guest, a superseded group after its guest (`guests`).
    public var guests: [Guest]
    /// Failover readiness; null before the first pass.
    public var readiness: Readiness? = nil

    /// `service`: version, start, workers, queue and the state file.
    public struct Service: Codable, Sendable, Equatable {
        /// The pbs-standby version.
        public var version: String
        /// When the service started (ISO-8601 UTC).
        public var startedAt: String?
        /// Configured restore workers.
        public var workers: Int
        /// Guests with a restore to do that wait for a worker.
        public var queueLength: Int
        /// Restores running now.
        public var restoresInProgress: Int
        /// Start of the last completed pass (ISO-8601 UTC); null before the first.
        public var lastLoopAt: String?
        /// Whether the state file takes writes.
        public var state: StateFile
    }

    /// Whether the service's state file takes writes.
    public struct StateFile: Codable, Sendable, Equatable {
        /// The last write succeeded (false: disk full, read-only…; no restore starts until it is writable).
        public var writable: Bool
        /// The write that failed and why; null while writable.
        public var error: String?
        /// Since when writes fail (ISO-8601 UTC); null while writable.
        public var failingSince: String?
        /// Failed writes since start.
        public var writeErrors: Int
        /// Restore outcomes kept in memory until the file takes writes again.
        public var unsavedWrites: Int
    }

    /// One configured source and its backup listings.
    public struct Source: Codable, Sendable, Equatable {
        /// The PVE storage id of the PBS storage.
        public var storage: String
        /// The last backup listing succeeded.
        public var up: Bool
        /// The last successful listing (ISO-8601 UTC); null before the first.
        public var lastRefreshAt: String?
        /// The last listing's error (`not refreshed yet` before the first); null while up.
        public var error: String?
        /// Failed listings since start.
        public var refreshErrors: Int
        /// Backup listings since start (each makes PBS read every snapshot's manifest).
        public var listings: Int
        /// When the next listing is due (ISO-8601 UTC, ``ListingCadence``); null while unknown.
        public var nextListingAt: String?
    }

    /// A backup: a guest's `restored` or `latest`.
    public struct Backup: Codable, Sendable, Equatable {
        /// The backup's volid.
        public var volid: String
        /// Its backup time (ISO-8601 UTC).
        public var backupTime: String
        /// The same time in Unix seconds.
        public var backupTimestamp: Int
        /// Its size in bytes; null when unknown.
        public var sizeBytes: Int64?
    }

    /// One restore attempt: `last_restore` and the entries of `history`.
    public struct Restore: Codable, Sendable, Equatable {
        /// When it began (ISO-8601 UTC).
        public var startedAt: String?
        /// When it ended (ISO-8601 UTC); null while running.
        public var finishedAt: String?
        /// Seconds it took; null while running.
        public var durationSeconds: Double?
        /// `running`, `success`, `failure`, `interrupted` or `skipped`.
        public var result: String
        /// The failure's message (`TASK WARNINGS: N` after a success with warnings); else null.
        public var error: String?
        /// The PVE task's UPID; null until PVE answered the restore call.
        public var upid: String?
        /// The backup restored.
        public var volid: String
        /// N of a `TASK WARNINGS: N` ending (0 otherwise).
        public var warnings: Int
        /// `delta` (only changed chunks written) or `full` (PVE's restore); null until it ended well.
        public var mode: String? = nil
        /// Bytes written into the standby's volumes; null until it ended well.
        public var bytesWritten: Int64? = nil
        /// Delta: chunks that changed; null for a full restore.
        public var chunksChanged: Int? = nil
        /// Delta: chunks of all disks; null for a full restore.
        public var chunksTotal: Int? = nil
        /// Why a delta was not possible (`pbs_standby_delta_fallbacks_total` reasons); else null.
        public var fallbackReason: String? = nil
    }

    /// One guest: an entry of `guests`, and the document of `/api/v1/guests/{vmid}`.
    public struct Guest: Codable, Sendable, Equatable {
        /// The source storage (PVE storage id of the PBS storage).
        public var source: String
        /// The backed-up VMID.
        public var vmid: Int
        /// `vm` or `ct`.
        public var type: String
        /// The live copy's name in PVE; `guest VMID` while none was seen.
        public var name: String
        /// The VMID holding the live copy (the restore slot while there is none).
        public var targetVmid: Int
        /// The standby node.
        public var targetNode: String
        /// The state shown: a ``GuestState`` raw value (`idle`, `queued`, `restoring`, …).
        public var state: String
        /// The copy ready on the standby; null while none.
        public var restored: Backup?
        /// The newest eligible backup; null when none.
        public var latest: Backup?
        /// Now − the restored backup time: the guest's effective RPO; null while no copy is ready.
        public var lagSeconds: Double?
        /// The configured RPO target in seconds.
        public var rpoTargetSeconds: Double
        /// Scheduling priority, higher first.
        public var priority: Int
        /// Complete backups newer than the restored one.
        public var pendingBackups: Int
        /// 0–1 while `restoring` (0 before the first progress line); null otherwise.
        public var progress: Double?
        /// The newest entry of `history`; null when none.
        public var lastRestore: Restore?
        /// Failed restores since the last success.
        public var consecutiveFailures: Int
        /// After a failure: no attempt before this time (ISO-8601 UTC); null when none is pending.
        public var nextRetryAt: String?
        /// The last failure's message (a restore, or starting the new copy); null when none.
        public var lastError: String?
        /// A ``BlockReason`` raw value while `blocked`; else null.
        public var blockedReason: String?
        /// What the blocking rule saw (whose guest is at the target, which guest claims the slot).
        public var blockedDetail: String?
        /// The last (up to 10) restore attempts, newest first.
        public var history: [Restore]
        /// The guest's DR drills (issue 16); null when drills do not apply to it.
        public var drill: Drill? = nil
    }

    /// A guest's latest DR drill (`drill` of a guest, rows of `/api/v1/drills`).
    public struct Drill: Codable, Sendable, Equatable {
        /// `passed`, `failed`, `skipped`, `aborted`, `running`; null: never drilled.
        public var result: String?
        /// When the latest drill began (ISO-8601 UTC).
        public var startedAt: String?
        /// When it ended.
        public var finishedAt: String?
        /// Its start → first evidence of the boot.
        public var bootSeconds: Double?
        /// `agent` (the guest agent answered) or `running` (ran without stopping; weaker).
        public var evidence: String?
        /// The backup the copy held.
        public var volid: String?
        /// Why it was skipped, failed or aborted.
        public var reason: String?
        /// The guest agent's OS (`get-osinfo`).
        public var osInfo: String?
        /// The guest agent's host name (`get-host-name`).
        public var hostName: String?
        /// When the latest passed drill ended.
        public var lastPassedAt: String?
        /// A passed drill is due by then (`PbsStandbyDrillOverdue`).
        public var dueAt: String?
        /// When the schedule drills the guest next.
        public var nextAt: String?
    }

    /// "If production died now" (`readiness`).
    public struct Readiness: Codable, Sendable, Equatable {
        /// The verdict line of the page.
        public var summary: String
        /// Every guest startable and the memory fits.
        public var ready: Bool
        /// Selected guests, and those with a startable copy.
        public var guests: Int
        /// Guests with a startable copy.
        public var startable: Int
        /// The oldest startable copy's age.
        public var oldestCopySeconds: Double?
        /// Memory of the copies a failover would start.
        public var memoryRequiredBytes: Int64
        /// The node's memory not in use (null: unknown).
        public var memoryAvailableBytes: Int64?
        /// Cores of the copies a failover would start (reported, not judged).
        public var coresRequired: Int
    }
}

// Absent values are `null` in the contract: encode every key (the synthesized conformance would
// leave out nil optionals).
/// Every key encoded, nil as `null`.
extension StatusDocument.Service {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version); try c.encode(startedAt, forKey: .startedAt); try c.encode(workers, forKey: .workers)
        try c.encode(queueLength, forKey: .queueLength); try c.encode(restoresInProgress, forKey: .restoresInProgress)
        try c.encode(lastLoopAt, forKey: .lastLoopAt); try c.encode(state, forKey: .state)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.StateFile {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(writable, forKey: .writable); try c.encode(error, forKey: .error); try c.encode(failingSince, forKey: .failingSince)
        try c.encode(writeErrors, forKey: .writeErrors); try c.encode(unsavedWrites, forKey: .unsavedWrites)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.Source {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(storage, forKey: .storage); try c.encode(up, forKey: .up); try c.encode(lastRefreshAt, forKey: .lastRefreshAt)
        try c.encode(error, forKey: .error); try c.encode(refreshErrors, forKey: .refreshErrors); try c.encode(listings, forKey: .listings)
        try c.encode(nextListingAt, forKey: .nextListingAt)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.Backup {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(volid, forKey: .volid); try c.encode(backupTime, forKey: .backupTime)
        try c.encode(backupTimestamp, forKey: .backupTimestamp); try c.encode(sizeBytes, forKey: .sizeBytes)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.Restore {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(startedAt, forKey: .startedAt); try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(durationSeconds, forKey: .durationSeconds); try c.encode(result, forKey: .result); try c.encode(error, forKey: .error)
        try c.encode(upid, forKey: .upid); try c.encode(volid, forKey: .volid); try c.encode(warnings, forKey: .warnings)
        try c.encode(mode, forKey: .mode); try c.encode(bytesWritten, forKey: .bytesWritten)
        try c.encode(chunksChanged, forKey: .chunksChanged); try c.encode(chunksTotal, forKey: .chunksTotal)
        try c.encode(fallbackReason, forKey: .fallbackReason)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.Guest {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source); try c.encode(vmid, forKey: .vmid); try c.encode(type, forKey: .type)
        try c.encode(name, forKey: .name); try c.encode(targetVmid, forKey: .targetVmid); try c.encode(targetNode, forKey: .targetNode)
        try c.encode(state, forKey: .state); try c.encode(restored, forKey: .restored); try c.encode(latest, forKey: .latest)
        try c.encode(lagSeconds, forKey: .lagSeconds); try c.encode(rpoTargetSeconds, forKey: .rpoTargetSeconds)
        try c.encode(priority, forKey: .priority); try c.encode(pendingBackups, forKey: .pendingBackups)
        try c.encode(progress, forKey: .progress); try c.encode(lastRestore, forKey: .lastRestore)
        try c.encode(consecutiveFailures, forKey: .consecutiveFailures); try c.encode(nextRetryAt, forKey: .nextRetryAt)
        try c.encode(lastError, forKey: .lastError); try c.encode(blockedReason, forKey: .blockedReason)
        try c.encode(blockedDetail, forKey: .blockedDetail); try c.encode(history, forKey: .history)
        try c.encode(drill, forKey: .drill)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument.Drill {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(result, forKey: .result); try c.encode(startedAt, forKey: .startedAt); try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(bootSeconds, forKey: .bootSeconds); try c.encode(evidence, forKey: .evidence); try c.encode(volid, forKey: .volid)
        try c.encode(reason, forKey: .reason); try c.encode(osInfo, forKey: .osInfo); try c.encode(hostName, forKey: .hostName)
        try c.encode(lastPassedAt, forKey: .lastPassedAt); try c.encode(dueAt, forKey: .dueAt); try c.encode(nextAt, forKey: .nextAt)
    }
}

/// Every key encoded, nil as `null`.
extension StatusDocument {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(service, forKey: .service); try c.encode(sources, forKey: .sources); try c.encode(guests, forKey: .guests)
        try c.encode(readiness, forKey: .readiness)
    }
}
