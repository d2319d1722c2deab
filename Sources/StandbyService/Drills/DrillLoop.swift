import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// The engine's part of DR drills (issue 16): clean up drills left open at start, and each pass
/// refresh the drill views and the failover readiness, then start the drills the schedule makes
/// due — between restores: only guests whose copy is up to date, none while any guest is failed
/// over, at most `drill.max_parallel` at once. A drilled guest is `drilling` and its restores wait.
extension Reconciler {
    /// The drill's view of the engine.
    var drillEnvironment: DrillEnvironment {
        DrillEnvironment(operations: GuestOperations(config: config, client: context.client, store: context.store),
                         clock: context.clock, logger: context.logger,
                         abort: { [self] in self.state.withLock { $0.drillsStopping } ? "the service is stopping" : nil })
    }

    /// On a graceful stop: running drills are aborted and undone (stop, rollback) before the
    /// workers are cancelled — up to 20 s (the shipped unit's `TimeoutStopSec` is 30 s); a drill
    /// not undone by then is undone at the next start.
    func stopDrills() async {
        state.withLock { $0.drillsStopping = true }
        let deadline = ContinuousClock.now + .seconds(20)
        // The loop has ended: the drills' `drillFinished` events are applied here.
        while applyEvents() || state.withLock({ !$0.drilling.isEmpty }), ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Undoes every drill a crash or kill left open (before any restore).
    func finishInterruptedDrills() async {
        for r in await DrillCleanup(environment: drillEnvironment).finishOpenDrills() {
            context.observer.invalidate(r.targetVmid)
            if let id = r.cloneVmid { context.observer.invalidate(id) }
        }
    }

    /// Views, readiness, and the drills due now.
    func drillPass(_ plan: Plan, observation: EngineObservation, spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let now = observation.core.now, store = context.store
        // A drill whose process died meanwhile (a `pbs-standby drill` killed or stopped with
        // Ctrl-C beside the service) is undone now, not only at the next start.
        if ((try? store.openDrills()) ?? []).contains(where: { !$0.processAlive }) {
            let ours = state.withLock { $0.drilling }
            for r in await DrillCleanup(environment: drillEnvironment).finishOpenDrills(skipping: ours) {
                context.observer.invalidate(r.targetVmid)
            }
        }
        let latest = (try? store.latestDrills()) ?? [:]
        let started = published.withLock { $0.service.startedAt }
        let counts = (try? store.drillCounts(endedSince: started)) ?? state.withLock { $0.drillCounts }
        let tz = TimeZone.current
        var views: [GuestKey: StatusSnapshot.Drill] = [:]
        for g in plan.guests where config.drillEnabled(vmid: g.key.vmid) {
            let record = observation.records[g.key]
            // The overdue clock of a guest starts when drills apply to it: a schedule, or a first
            // drill run by hand (`pbs-standby drill` from cron). Without either, never overdue.
            var since = record?.drillSince
            if since == nil, record != nil, config.drill.schedule != nil || latest[g.key] != nil {
                let start = min(now, latest[g.key]?.latest.startedAt ?? now)
                since = start
                context.writer.persist("drills apply to \(g.key)", replay: false) { try $0.update(g.key, targetVmid: g.settings.targetVmid) { $0.drillSince = start } }
            }
            var v = StatusSnapshot.Drill(latest[g.key])
            if let start = v.lastPassedAt ?? since { v.dueAt = start + config.drill.overdueAfter.seconds }
            if let schedule = config.drill.schedule {
                v.nextAt = schedule.next(after: latest[g.key]?.latest.startedAt ?? since ?? now, timeZone: tz)
            }
            views[g.key] = v
        }
        let readiness = await readinessSummary(plan, observation: observation, drills: views)
        let (drilling, inFlight) = state.withLock { s in
            s.drillViews = views
            s.drillCounts = counts
            s.readiness = readiness
            return (s.drilling, Set(s.inFlight.keys))
        }
        if now - state.withLock({ $0.drillsPrunedAt }) > 3600 {
            state.withLock { $0.drillsPrunedAt = now }
            context.writer.persist("drill history", replay: false) { _ = try $0.pruneDrills(before: now - self.config.drill.history.seconds) }
        }
        // Scheduled drills: not in `once`, not while any guest is failed over.
        guard config.drill.schedule != nil, state.withLock({ $0.startedThisOnce == nil && !$0.drillsStopping }),
              !observation.records.values.contains(where: \.failedOver), observation.core.stateWritable else { return }
        var running = drilling.count
        let queued = Set(plan.queue).union(plan.starts.map(\.key))
        let due = plan.guests.filter { g in
            guard g.decision == .upToDate, g.restored != nil, !queued.contains(g.key), !inFlight.contains(g.key),
                  !drilling.contains(g.key), !observation.core.drilling.contains(g.key), let next = views[g.key]?.nextAt else { return false }
            return next <= now
        }.sorted { a, b in a.settings.priority != b.settings.priority ? a.settings.priority > b.settings.priority : a.key < b.key }
        for g in due where running < config.drill.maxParallel {
            running += 1
            state.withLock { s in
                s.drilling.insert(g.key)
                s.views[g.key]?.state = .drilling
            }
            let key = g.key, env = drillEnvironment, observer = context.observer, events = context.events
            spawn(worker {
                let r = await DrillRunner(environment: env).run(key, scheduled: true)
                if let r { observer.invalidate(r.targetVmid) }
                events.emit(.drillFinished(key))
            })
        }
    }

    /// The failover readiness of this pass: per guest its copy, age, last drill and memory,
    /// against the node's memory not in use.
    private func readinessSummary(_ plan: Plan, observation: EngineObservation, drills: [GuestKey: StatusSnapshot.Drill]) async -> StatusSnapshot.Readiness {
        let now = observation.core.now
        let node = try? await context.client.nodeMemory(node: context.node)
        let guests = plan.guests.map { g -> FailoverReadiness.Guest in
            let copy = g.restored != nil ? observation.core.guests[g.live] : nil
            let blocked: Bool
            switch g.decision {
            case .blocked(let r): blocked = [.drillCleanup, .notOwned, .locked, .staleLock, .slotConflict].contains(r)
            default: blocked = false
            }
            return FailoverReadiness.Guest(key: g.key, startable: copy != nil && !blocked,
                                           copyAge: g.restored.map { max(0, now - Double($0.backupTime)) }, rpoTarget: g.settings.rpoTarget.seconds,
                                           drillResult: drills[g.key].flatMap { $0.failed ? "failed" : $0.lastPassedAt != nil ? "passed" : $0.result }, memory: copy?.maxmem ?? 0, running: copy?.status == "running")
        }
        return StatusSnapshot.Readiness(summary: FailoverReadiness.summarize(guests, memoryAvailable: node?.available, memoryTotal: node?.total, nodeCores: node?.cpus))
    }
}

extension StatusSnapshot.Drill {
    /// A guest's drill view from its drill records.
    public init(_ summary: DrillSummary?) {
        self.init()
        guard let summary else { return }
        let last = summary.latest, passed = summary.lastPassed
        failed = summary.lastVerdict?.outcome == .failed
        result = last.result
        startedAt = last.startedAt
        finishedAt = last.finishedAt
        bootSeconds = last.bootSeconds
        evidence = last.evidence
        volid = last.volid
        reason = last.reason
        osInfo = last.osInfo
        hostName = last.hostName
        lastPassedAt = passed?.finishedAt
        lastPassedBootSeconds = passed?.bootSeconds
        lastPassedEvidence = passed?.evidence
    }
}
