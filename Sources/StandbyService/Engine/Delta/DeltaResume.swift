import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

extension Reconciler {
    /// At start: a delta recorded as open (the service stopped or was killed while its disks
    /// were written) is run again from its record — each disk's write is found ended, waited for
    /// while it still runs in its own process, or run again (idempotent) — then ends like any
    /// restore. Issue 15, "Crash safety".
    func resumeDelta(_ record: DeltaRecord, _ h: HistoryRecord?, spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        // A record the copy no longer matches is ended here, before the first pass plans.
        guard await delta.stillOpen(record) else { return }
        let c = context, key = GuestKey(source: record.source, vmid: record.vmid), historyID = record.historyID
        guard let volid = Volid(parsing: record.toVolid) else { return }
        let source = config.sources.first { $0.storage == record.source }
        var settings = source.map { config.effective(source: $0, vmid: record.vmid) }
            ?? GuestSettings(targetVmid: record.targetVmid, targetStorage: nil, priority: 0, rpoTarget: config.restore.rpoTarget, startAfterRestore: false)
        settings.targetVmid = record.targetVmid
        let guest = try? c.store.guest(key)
        let action = RestoreAction(key: key, type: .vm, node: c.node, backup: BackupEntry(volid: volid, ctime: volid.backupTime, size: h?.bytes ?? 0),
                                   settings: settings, liveVmid: guest?.liveVmid.flatMap { $0 == record.targetVmid ? nil : $0 },
                                   pool: source?.pool, executor: .delta)
        state.withLock { $0.inFlight[key] = InFlight(volid: volid, startedAt: record.startedAt) }
        let meta: Logger.Metadata = ["vmid": "\(record.vmid)", "volid": "\(volid)", "target_vmid": "\(record.targetVmid)"]
        c.logger.info("running a delta restore again that was open at the last stop", metadata: meta)
        let giveUp = state.withLock { $0.unreachableGiveUp }
        spawn(worker {
            let outcome = await self.delta.resume(record, action: action, run: RestoreRun(key: key, events: c.events, giveUp: giveUp, expectedSeconds: nil))
                ?? .skipped("the open delta's record no longer matched the copy; ended without writing")
            let end = RestoreRecorder(context: c).record(outcome, action: action, historyID: historyID, started: record.startedAt, meta: meta)
            await self.finish(action, outcome: outcome, end: end, giveUp: giveUp, meta: meta)
        })
    }
}
