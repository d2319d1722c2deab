import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

extension Reconciler {
    /// Carries out a plan: its side actions (record a copy PVE shows, clear a stale lock), the
    /// guests' views (built here, by the loop only), then its restores — each claimed in the
    /// in-flight set and handed to a worker through `spawn`.
    func act(_ plan: Plan, observation: EngineObservation, spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let now = observation.core.now
        for action in plan.actions {
            switch action {
            case .recordCopy(let key, let live, let marker):
                context.writer.persist("copy of \(key) seen in PVE", replay: false) { try $0.update(key, targetVmid: live) { r in
                    r.restoredVolid = marker.volid.description
                    r.restoredBackupTime = marker.volid.backupTime
                    r.liveVmid = live
                } }
            case .clearStaleLock(let slot):
                guard let guest = observation.core.guests[slot.target] else { continue }
                let record = observation.records[GuestKey(source: slot.source, vmid: slot.vmid)]
                _ = await StaleLockClearer(context: context).clear(slot, guest: guest, now: now,
                                                                    adoptedIdentity: record?.adoptVmid == slot.target ? record?.adoptIdentity : nil)
            }
        }
        updateViews(plan, observation: observation)
        for action in plan.starts {
            let claimed = state.withLock { s -> Bool in
                guard s.inFlight[action.key] == nil else { return false }
                s.inFlight[action.key] = InFlight(volid: action.backup.volid, startedAt: now)
                s.startedThisOnce?.insert(action.key)
                s.views[action.key]?.state = .restoring
                s.views[action.key]?.progress = 0
                return true
            }
            guard claimed else { continue }
            spawn(worker { await self.carryOut(action) })
        }
        state.withLock { $0.queue = plan.queue }
    }

    /// One restore, start to end: recorded in the state file first, re-checked right before a
    /// forced restore or a stop, carried out by the executor the action names, its outcome
    /// recorded; after a good copy the freeze carried over, the previous copy removed (blue/green)
    /// and the copy started when configured. Ends with a `finished` event to the loop.
    func carryOut(_ action: RestoreAction) async {
        let c = context, started = c.clock.now()
        let meta: Logger.Metadata = ["vmid": "\(action.key.vmid)", "source": "\(action.key.source)", "volid": "\(action.backup.volid)",
                                     "target_vmid": "\(action.targetVmid)"]
        let key = action.key, targetVmid = action.targetVmid, volid = action.backup.volid.description, bytes = action.backup.size
        let begun = c.writer.persist("record restore of \(key.vmid)", replay: false) { store in
            try store.beginRestore(key, targetVmid: targetVmid, volid: volid, bytes: bytes, at: started)
        }
        guard case .started(let historyID) = begun else {
            var state: GuestState?, error: String?
            if case .frozen(let why) = begun {
                // A hold or failover committed after this pass planned: the transaction saw it.
                c.logger.info("restore not started: the guest is \(why)", metadata: meta)
                state = why == "held" ? .held : why == "drilling" ? .drilling : .failedOver
            } else {
                c.logger.error("restore not started: it cannot be recorded in the state file first", metadata: meta)
                c.sink?.restoreFailed(source: key.source, reason: FailureReason.stateError.rawValue)
                error = "not started: the state file cannot be written"
            }
            c.events.emit(.finished(key, state: state, bytesPerSecond: nil, error: error))
            return
        }
        c.logger.info("restore starting", metadata: meta)
        let recorder = RestoreRecorder(context: c)
        if let refused = await prepare(action) {
            let end = recorder.record(refused, action: action, historyID: historyID, started: started, meta: meta)
            c.events.emit(.finished(key, state: end.state, bytesPerSecond: nil))
            return
        }
        let (giveUp, throughput) = state.withLock { ($0.unreachableGiveUp, $0.throughput) }
        let executor = executors[action.executor] ?? executors[.pveTask]!
        let outcome = await executor.restore(action, historyID: historyID, started: started,
                                             run: RestoreRun(key: key, events: c.events, giveUp: giveUp,
                                                             expectedSeconds: Double(max(0, action.backup.size)) / throughput))
        c.observer.invalidate(action.targetVmid)  // whatever the executor did, the next pass reads the copy afresh
        let end = recorder.record(outcome, action: action, historyID: historyID, started: started, meta: meta)
        await finish(action, outcome: outcome, end: end, giveUp: giveUp, meta: meta)
    }

    /// After a restore (new or re-attached): for a good copy, the freeze carried over, the previous
    /// copy removed (blue/green) and the copy started when configured; then the `finished` event
    /// — except for `unreachable`, whose task still runs in PVE (the guest stays in flight, so no
    /// later pass restores it again; the next start re-attaches).
    func finish(_ action: RestoreAction, outcome: RestoreOutcome, end: RestoreRecorder.End, giveUp: Double?, meta: Logger.Metadata) async {
        let c = context
        if case .success(let facts) = outcome {
            delta.afterGoodRestore(action, facts: facts)
            let cleaner = PreviousCopyCleaner(context: c, giveUp: giveUp)
            await cleaner.carryFreeze(action, meta: meta)
            var oldCopyRuns = false
            if config.restore.keepPrevious { oldCopyRuns = await cleaner.removePreviousCopy(action) }
            if action.settings.startAfterRestore {
                if oldCopyRuns {
                    c.logger.warning("new copy not started: the previous copy runs and was not started by pbs-standby (never two running copies)", metadata: meta)
                } else {
                    await cleaner.startCopy(action, meta: meta)
                }
            }
        }
        if case .unreachable = outcome { return }
        c.events.emit(.finished(action.key, state: end.state, bytesPerSecond: end.bytesPerSecond))
    }

    /// Before a forced restore or a stop: the re-check right before acting, then the stop of a
    /// running copy we started. Returns how the restore ended without starting (nil: go ahead).
    func prepare(_ action: RestoreAction) async -> RestoreOutcome? {
        let c = context, giveUp = state.withLock { $0.unreachableGiveUp }
        guard action.force || action.stopFirst else { return nil }
        if let problem = await Recheck(context: c).problem(action) { return .skipped(problem) }
        guard action.stopFirst, let t = action.existingTarget else { return nil }
        do {
            let stop = try await c.client.stop(node: c.node, type: t.type, vmid: t.vmid)
            c.observer.invalidate(t.vmid)
            if case .unreachable(let why) = try await TaskFollower(context: c, giveUp: giveUp).follow(stop) {
                return .skipped("the running copy's stop could not be followed: \(why)")
            }
        } catch {
            return RestoreOutcome(error: error, synchronous: c.client.transport.runsTasksSynchronously)
        }
        if let why = try? c.store.frozen(action.key) { return .skipped("the guest was \(why) while its copy was being stopped") }
        return nil
    }
}
