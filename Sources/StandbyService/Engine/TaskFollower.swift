import Foundation
import ProxmoxAPI
import StandbyCore

/// Follows a PVE task to its end: status and the log from the last line seen, progress from it.
struct TaskFollower: Sendable {
    let context: EngineContext
    /// `once`: stop following after PVE was unreachable this long (the task runs on); nil in `run`.
    var giveUp: Double? = nil

    /// Follows a task without progress (stop, destroy, start).
    func follow(_ upid: UPID) async throws -> RestoreOutcome {
        try await follow(upid, diskSizes: [], run: nil)
    }

    /// Follows `upid`; with `run`, reads the task log for progress (never shown going backwards)
    /// and gives up after `run.giveUp` seconds of PVE being unreachable.
    func follow(_ upid: UPID, diskSizes: [Int64], run: RestoreRun?) async throws -> RestoreOutcome {
        let c = context, config = c.config
        var tracker = RestoreProgress(diskSizes: diskSizes)
        var seen = 0
        var shown = -1.0
        let started = c.clock.now()
        let deadline = started + config.restore.taskTimeout.seconds
        let interval = config.restore.taskPollInterval?.seconds ?? max(0.5, min(5, config.restore.pollInterval.seconds / 4))
        var unreachableSince: Double?
        while true {
            try Task.checkCancellation()
            do throws(ProxmoxError) {
                let status = try await c.client.taskStatus(upid)
                if let run {
                    let lines = try await c.client.taskLog(upid, start: seen, limit: 0)
                    for l in lines where l.n > seen && l.t != "no content" {
                        tracker.consume(l.t)
                        seen = l.n
                    }
                    // Never backwards (a ratio estimated without disk sizes can fall at a disk change).
                    let ratio = max(shown, status.running ? min(tracker.ratio, 0.999) : tracker.ratio)
                    if ratio != shown { run.progress(ratio) }
                    shown = ratio
                }
                unreachableSince = nil
                if !status.running {
                    guard status.succeeded else {
                        let text = status.exitStatus ?? "unknown"
                        return .failure(reason: .ofTask(text), message: "task \(upid.type) failed: \(text)")
                    }
                    return .success(CopyFacts(warnings: TaskStatus.warningCount(status.exitStatus)))
                }
            } catch {
                guard error.isTransient else { throw error }
                // PVE busy or briefly unreachable: keep following.
                c.logger.debug("task status not available", metadata: ["upid": "\(upid)", "error": "\(error)"])
                let since = unreachableSince ?? c.clock.now()
                unreachableSince = since
                if let giveUp = run?.giveUp ?? giveUp, c.clock.now() - since >= giveUp {
                    return .unreachable("PVE unreachable for \(formatDurationSeconds(c.clock.now() - since)) while following \(upid) (\(error)); "
                        + "the task keeps running in PVE and is followed again at the next start")
                }
            }
            if c.clock.now() > deadline {
                return .failure(reason: .timeout, message: "task \(upid) still running after restore.task_timeout "
                    + "(\(formatDurationSeconds(config.restore.taskTimeout.seconds))); left running in PVE")
            }
            // Poll every `interval` near the expected end; while much of the restore remains, sleep
            // half of it (at most one poll interval, at most a minute), so long restores cost few
            // API calls, progress is refreshed each poll interval, and the end is still noticed
            // within `interval`.
            var pause = interval
            if let expected = run?.expectedSeconds {
                pause = max(interval, min(60, config.restore.pollInterval.seconds, (started + expected - c.clock.now()) / 2))
            }
            try await c.clock.sleep(pause)
        }
    }
}

func formatDurationSeconds(_ s: Double) -> String {
    s >= 3600 ? "\(Int(s / 3600))h" : s >= 60 ? "\(Int(s / 60))m" : "\(Int(s))s"
}

extension Int64 {
    /// Addition that stops at `Int64.max` instead of trapping (byte totals from PVE's sizes).
    func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
