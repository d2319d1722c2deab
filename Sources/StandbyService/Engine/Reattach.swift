import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

extension Reconciler {
    /// At start: restores recorded as running are followed to their real end, never restarted.
    func reattach(spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let c = context
        // Deltas left open are run again by ``resumeOpenDeltas(spawn:)`` before each pass (no PVE
        // task to follow); their rows are not re-attached here.
        let open = (try? c.store.openDeltas()) ?? []
        guard let running = try? c.store.runningRestores(), !running.isEmpty else { return }
        let openIDs = Set(open.map(\.historyID))
        for h in running where !openIDs.contains(h.id ?? -1) {
            let key = GuestKey(source: h.source, vmid: h.vmid)
            guard let volid = Volid(parsing: h.volid), let historyID = h.id else { continue }
            var upid = h.upid.flatMap(UPID.init(parsing:))
            if upid == nil { upid = await findTask(of: h, key: key, volid: volid) }
            guard let upid else {
                let now = c.clock.now()
                c.writer.persist("end of restore \(historyID)") {
                    try $0.finishRestore(historyID, result: .interrupted, error: "no PVE task found after a restart", at: now)
                }
                continue
            }
            let action = recordedAction(key, volid: volid, targetVmid: h.targetVmid, bytes: h.bytes, executor: .pveTask)
            state.withLock { $0.inFlight[key] = InFlight(volid: volid, startedAt: h.startedAt, upid: upid) }
            let meta: Logger.Metadata = ["vmid": "\(h.vmid)", "upid": "\(upid)", "volid": "\(volid)"]
            c.logger.info("re-attaching to a restore task started before the restart", metadata: meta)
            let giveUp = state.withLock { $0.unreachableGiveUp }
            spawn(worker {
                let executor = self.executors[action.executor] ?? self.executors[.pveTask]!
                let outcome = await executor.reattach(action, upid: upid, historyID: historyID,
                                                      run: RestoreRun(key: key, events: c.events, giveUp: giveUp, expectedSeconds: nil))
                let end = RestoreRecorder(context: c).record(outcome, action: action, historyID: historyID, started: h.startedAt, meta: meta)
                // A re-attached restore that ends well gets what any good copy gets (review: the
                // freeze carried over, the previous copy removed, the copy started).
                await self.finish(action, outcome: outcome, end: end, giveUp: giveUp, meta: meta)
            })
        }
    }

    /// The action of a restore recorded in the state file (re-attached or resumed after a
    /// restart): the guest's settings, into the slot recorded (with keep_previous it is not always
    /// the primary), the other slot's live copy, the source's pool.
    func recordedAction(_ key: GuestKey, volid: Volid, targetVmid: Int, bytes: Int64, executor: ExecutorKind) -> RestoreAction {
        let source = config.sources.first { $0.storage == key.source }
        var settings = source.map { config.effective(source: $0, vmid: key.vmid) }
            ?? GuestSettings(targetVmid: targetVmid, targetStorage: nil, priority: 0, rpoTarget: config.restore.rpoTarget, startAfterRestore: false)
        settings.targetVmid = targetVmid
        let record = try? context.store.guest(key)
        return RestoreAction(key: key, type: volid.type, node: context.node, backup: BackupEntry(volid: volid, ctime: volid.backupTime, size: bytes),
                             settings: settings, liveVmid: record?.liveVmid.flatMap { $0 == targetVmid ? nil : $0 }, pool: source?.pool,
                             executor: executor)
    }

    /// Crashed between the POST and storing the UPID: the task in the node's list
    /// (``PVETaskExecutor/restoreTask(of:type:targetVmid:around:context:)`` around our row's start;
    /// only our token's, so an administrator's restore of that VMID while we were down is not ours).
    func findTask(of h: HistoryRecord, key: GuestKey, volid: Volid) async -> UPID? {
        let c = context, user = c.client.transport.taskUser
        var upid = await PVETaskExecutor.restoreTask(of: key, type: volid.type, targetVmid: h.targetVmid, around: h.startedAt, context: c)
        if user == nil, upid != nil {
            // pvesh: every task runs as root@pam, an administrator's too, so the time window alone
            // could take their restore for ours (review). Only a guest carrying the very marker our
            // restore call wrote (this backup, this VMID, our start time) makes the task ours; a
            // restore still running has none yet and is not followed (it is not ours to prove).
            let ours = Marker.parse(Marker.description(volid: volid, targetVmid: h.targetVmid, restoredAt: h.startedAt))
            let cfg = try? await c.client.guestConfig(node: c.node, type: volid.type, vmid: h.targetVmid)
            if cfg.flatMap({ Marker.parse($0.description) }) != ours { upid = nil }
        }
        if let upid, let id = h.id {
            let text = upid.description
            c.writer.persist("task of restore \(id)") { try $0.setUPID(id, text) }
        }
        return upid
    }
}
