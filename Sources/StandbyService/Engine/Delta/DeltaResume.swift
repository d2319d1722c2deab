import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

extension Reconciler {
    /// Before every pass (and so at start, before the first plan): each delta recorded as open —
    /// the service stopped or was killed while its disks were written, or a write failed without a
    /// snapshot — and not in flight is run again from its record (after the backoff of a failed
    /// attempt). A copy carrying our lock is never planned (the planner leaves locked guests
    /// alone), so this is what brings it back. Issue 15, "Crash safety".
    func resumeOpenDeltas(spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let c = context
        guard let open = try? c.store.openDeltas(), !open.isEmpty else { return }
        let now = c.clock.now()
        for record in open {
            let key = GuestKey(source: record.source, vmid: record.vmid)
            if state.withLock({ $0.inFlight[key] != nil }) { continue }
            if let next = (try? c.store.guest(key))?.nextRetryAt, next > now { continue }
            await resumeDelta(record, (try? c.store.historyRow(record.historyID)) ?? nil, spawn: spawn)
        }
    }

    /// Runs one open delta again (each disk's write found ended, waited for while it still runs
    /// in its own process, or run again — idempotent), then ends it like any restore. A record the
    /// copy no longer matches is ended at once; a copy a delta cannot finish (started or touched
    /// meanwhile) is given up — its record ends, our lock goes — and the next pass restores it in
    /// full (its marker still says `rewriting`).
    func resumeDelta(_ record: DeltaRecord, _ h: HistoryRecord?, spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let c = context, key = GuestKey(source: record.source, vmid: record.vmid), historyID = record.historyID
        guard let volid = Volid(parsing: record.toVolid) else { return }
        guard await delta.stillOpen(record) else {
            if h?.outcome == .running {
                let now = c.clock.now()
                c.writer.persist("end of restore \(historyID)") {
                    try $0.finishRestore(historyID, result: .skipped, error: "the delta's record no longer matched the copy; ended without writing", at: now)
                }
            }
            return
        }
        let action = recordedAction(key, volid: volid, targetVmid: record.targetVmid, bytes: h?.bytes ?? 0, executor: .delta)
        state.withLock { $0.inFlight[key] = InFlight(volid: volid, startedAt: record.startedAt) }
        let meta: Logger.Metadata = ["vmid": "\(record.vmid)", "volid": "\(volid)", "target_vmid": "\(record.targetVmid)"]
        c.logger.info("running an open delta restore again", metadata: meta)
        let giveUp = state.withLock { $0.unreachableGiveUp }
        spawn(worker {
            let outcome: RestoreOutcome
            switch await self.delta.resume(record, action: action, run: RestoreRun(key: key, events: c.events, giveUp: giveUp, expectedSeconds: nil)) {
            case .stale: outcome = .skipped("the open delta's record no longer matched the copy; ended without writing")
            case .done(let o): outcome = o
            case .cannotResume(let why):
                await self.delta.abandon(record)
                outcome = .skipped("the open delta into \(record.toVolid) cannot be finished (\(why)); the copy is restored in full next")
            }
            c.observer.invalidate(record.targetVmid)
            let end = RestoreRecorder(context: c).record(outcome, action: action, historyID: historyID, started: record.startedAt, meta: meta)
            await self.finish(action, outcome: outcome, end: end, giveUp: giveUp, meta: meta)
        })
    }
}
