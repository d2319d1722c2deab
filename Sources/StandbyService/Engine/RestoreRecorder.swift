import Foundation
import Logging
import StandbyCore
import StandbyStore

/// Writes a restore's outcome to the state file (history row and guest record), the metrics and
/// the log, and says what the guest's view shows until the next pass.
struct RestoreRecorder: Sendable {
    let context: EngineContext

    /// What the loop applies when the restore's `finished` event arrives.
    struct End: Sendable {
        var state: GuestState?
        var bytesPerSecond: Double?
    }

    func record(_ outcome: RestoreOutcome, action: RestoreAction, historyID: Int64, started: Double, meta: Logger.Metadata) -> End {
        let c = context, now = c.clock.now(), duration = now - started
        switch outcome {
        case .success(let facts):
            let restoreFacts = facts.delta ?? RestoreFacts(mode: "full", bytesWritten: action.backup.size, fallbackReason: facts.fallbackReason)
            c.writer.persist("success of restore \(historyID)") { store in
                try store.recordFacts(historyID, restoreFacts)
                try store.finishRestore(historyID, result: .success, error: facts.warnings > 0 ? "TASK WARNINGS: \(facts.warnings)" : nil,
                                        at: now, warnings: facts.warnings)
                try store.update(action.key, targetVmid: action.targetVmid) { r in
                    r.restoredVolid = action.backup.volid.description
                    r.restoredBackupTime = action.backup.volid.backupTime
                    r.restoredBytes = action.backup.size
                    r.lastSuccessAt = now
                    r.lastDuration = duration
                    r.consecutiveFailures = 0
                    r.nextRetryAt = nil
                    r.lastError = nil
                    r.failedVolid = nil
                    r.failedVolidAttempts = 0
                    r.adoptVmid = nil
                    r.adoptIdentity = nil  // startUPID stays: the previous copy may be ours to stop before this one starts
                    r.vmgenid = facts.vmgenid
                    if let onboot = facts.backupOnboot { r.backupOnboot = onboot }
                    r.restoredBytesTotal = r.restoredBytesTotal.saturatingAdd(action.backup.size)
                    r.successes += 1
                    r.liveVmid = action.targetVmid
                }
            }
            c.sink?.restoreSucceeded(source: action.key.source, type: action.type, duration: duration, bytes: action.backup.size, facts: restoreFacts)
            if facts.warnings > 0 {
                c.sink?.restoreWarned(source: action.key.source, warnings: facts.warnings)
                c.logger.warning("restore ended with warnings: see the task log", metadata: meta.merging(["warnings": "\(facts.warnings)"]) { $1 })
            }
            c.logger.info("restore succeeded", metadata: meta.merging(["duration_seconds": "\(Int(duration))"]) { $1 })
            return End(state: .idle, bytesPerSecond: duration > 0 ? Double(action.backup.size) / duration : nil)
        case .failure(let reason, var message):
            let backoff = c.config.restore.backoff, retries = c.config.restore.retriesPerBackup
            // A missing privilege or a root-only part of the backup (reference §3.1, §13.1) does
            // not heal by retrying: the guest is held as if this backup had used up its
            // retries_per_backup, so the planner waits for a newer backup (or a config change).
            let permission = reason == .permission
            if permission, message.hasSuffix("Permission check failed") {
                // PVE names no path when the right to create is missing (`raise_perm_exc()`).
                message += " (no path given by PVE: restoring needs VM.Allocate on /vms/\(action.targetVmid)"
                    + " or on the source's pool, or VM.Backup on /vms/\(action.targetVmid) over an existing copy)"
            }
            let r = c.writer.persist("failure of restore \(historyID)") { [message] store in
                try store.finishRestore(historyID, result: .failure, error: message, at: now)
                return try store.update(action.key, targetVmid: action.targetVmid) { r in
                    r.consecutiveFailures += 1
                    r.failures += 1
                    r.lastError = message
                    r.lastDuration = duration
                    r.nextRetryAt = now + backoffDelay(failures: r.consecutiveFailures, steps: backoff)
                    if r.failedVolid == action.backup.volid.description { r.failedVolidAttempts += 1 } else {
                        r.failedVolid = action.backup.volid.description
                        r.failedVolidAttempts = 1
                    }
                    if permission {
                        r.failedVolidAttempts = max(r.failedVolidAttempts, retries)
                        r.nextRetryAt = nil  // no backoff schedule: waits for a newer backup
                    }
                }
            }
            c.sink?.restoreFailed(source: action.key.source, reason: reason.rawValue)
            c.logger.warning("restore failed", metadata: meta.merging(["reason": "\(reason.rawValue)", "error": "\(message)",
                                                                       "attempt": "\(r?.failedVolidAttempts ?? 0)"]) { $1 }
                .merging(permission ? ["retry": "after a newer backup; grant the privilege named in the error"] : [:]) { $1 })
            return End(state: .failing)
        case .skipped(let message):
            c.writer.persist("end of restore \(historyID)") { try $0.finishRestore(historyID, result: .skipped, error: message, at: now) }
            c.observer.invalidate(action.targetVmid)
            c.logger.notice("restore not started: \(message)", metadata: meta)
            return End()
        case .interrupted(let message):
            c.writer.persist("end of restore \(historyID)") { try $0.finishRestore(historyID, result: .interrupted, error: message, at: now) }
            c.sink?.restoreFailed(source: action.key.source, reason: FailureReason.interrupted.rawValue)
            c.logger.warning("restore interrupted", metadata: meta)
            return End()
        case .unreachable(let message):
            // Like detached: the history row stays `running`; the next start re-attaches. The
            // guest stays in flight — its task still runs — so no later pass restores it again.
            c.logger.warning("stopped following a restore", metadata: meta.merging(["reason": "\(message)"]) { $1 })
            return End()
        case .detached:
            // Leave the history row `running`: the next start re-attaches to the PVE task.
            c.logger.info("service stopping; the PVE task keeps running and is followed again at the next start", metadata: meta)
            return End()
        }
    }
}
