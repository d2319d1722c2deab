import Foundation
import StandbyCore
import StandbyStore

extension StatusSnapshot.Guest {
    /// A guest's view: what the plan decided and shows, the record's counters and history, and the
    /// progress of a restore in flight.
    init(plan g: GuestPlan, record: GuestRecord?, history: [StatusSnapshot.LastRestore], name: String, node: String, progress: Double?) {
        self.init(key: g.key, type: g.type, name: name, targetVmid: g.live, targetNode: node, state: g.decision.state,
                  blockedReason: g.blockedReason, blockedDetail: g.blockedDetail,
                  restored: g.restored.map { .init(volid: $0.volid, backupTime: $0.backupTime, size: $0.size) },
                  latest: g.latest.map { .init(volid: $0.volid.description, backupTime: $0.volid.backupTime, size: $0.size) },
                  pendingBackups: g.pendingBackups, rpoTarget: g.settings.rpoTarget.seconds, priority: g.settings.priority,
                  progress: progress, consecutiveFailures: record?.consecutiveFailures ?? 0,
                  lastAttemptAt: record?.lastAttemptAt, lastSuccessAt: record?.lastSuccessAt, lastDuration: record?.lastDuration,
                  nextRetryAt: record?.nextRetryAt, lastError: record?.lastError,
                  restoresSucceeded: record?.successes ?? 0, restoresFailed: record?.failures ?? 0,
                  restoredBytesTotal: record?.restoredBytesTotal ?? 0, history: history)
    }

    /// Applies a finished restore's record (the loop, when the `finished` event arrives).
    mutating func apply(_ r: GuestRecord, state: GuestState?) {
        restored = r.restoredVolid.map { .init(volid: $0, backupTime: r.restoredBackupTime ?? 0, size: r.restoredBytes) }
        if let live = r.liveVmid { targetVmid = live }
        if let state { self.state = state }
        if state == .idle { pendingBackups = 0 }
        lastSuccessAt = r.lastSuccessAt
        lastDuration = r.lastDuration
        consecutiveFailures = r.consecutiveFailures
        nextRetryAt = r.nextRetryAt
        lastError = r.lastError
        restoresSucceeded = r.successes
        restoresFailed = r.failures
        restoredBytesTotal = r.restoredBytesTotal
    }
}

extension Reconciler {
    /// Builds every guest's view from the plan (the loop is their only writer). Guests of a source
    /// that could not be listed keep their previous views.
    func updateViews(_ plan: Plan, observation: EngineObservation) {
        let (previous, historyCache, inFlight) = state.withLock { ($0.views, $0.historyFor, $0.inFlight) }
        var views: [GuestKey: StatusSnapshot.Guest] = [:], superseded: [GuestKey: StatusSnapshot.Guest] = [:]
        var historyFor: [GuestKey: GuestRecord] = [:]
        for (k, v) in previous where plan.downSources.contains(k.source) { views[k] = v }
        for g in plan.guests {
            let record = observation.records[g.key], old = previous[g.key]
            let history: [StatusSnapshot.LastRestore]
            if let record, let cached = historyCache[g.key], cached == record, let h = old?.history {
                history = h
            } else {
                history = ((try? context.store.history(g.key, limit: 10)) ?? []).map {
                    .init(startedAt: $0.startedAt, finishedAt: $0.finishedAt, duration: $0.duration, result: $0.result, error: $0.error,
                          upid: $0.upid, volid: $0.volid, warnings: $0.warnings, mode: $0.mode, bytesWritten: $0.bytesWritten,
                          chunksChanged: $0.chunksChanged, chunksTotal: $0.chunksTotal, fallbackReason: $0.fallbackReason)
                }
            }
            if let record { historyFor[g.key] = record }
            let name = (g.restored != nil ? observation.core.guests[g.live]?.name : nil) ?? old?.name ?? "guest \(g.key.vmid)"
            views[g.key] = StatusSnapshot.Guest(plan: g, record: record, history: history, name: name, node: context.node,
                                                progress: inFlight[g.key]?.progress)
            if let newest = g.superseded {
                superseded[g.key] = StatusSnapshot.Guest(
                    key: g.key, type: newest.volid.type, name: "guest \(g.key.vmid) (superseded \(newest.volid.type.rawValue) group)",
                    targetVmid: g.settings.targetVmid, targetNode: context.node, state: .superseded, blockedReason: nil, blockedDetail: nil,
                    restored: nil, latest: .init(volid: newest.volid.description, backupTime: newest.volid.backupTime, size: newest.size),
                    pendingBackups: 0, rpoTarget: g.settings.rpoTarget.seconds, priority: g.settings.priority, progress: nil,
                    consecutiveFailures: 0, lastAttemptAt: nil, lastSuccessAt: nil, lastDuration: nil, nextRetryAt: nil, lastError: nil,
                    restoresSucceeded: 0, restoresFailed: 0, restoredBytesTotal: 0, history: [])
            }
        }
        state.withLock { s in
            s.views = views
            s.supersededViews = superseded
            s.historyFor = historyFor
        }
    }

    /// Applies the workers' events (the loop only): progress and UPIDs of restores in flight, and
    /// finished restores — out of the in-flight set, their views refreshed from their records.
    /// Returns whether a restore finished.
    @discardableResult
    func applyEvents() -> Bool {
        let events = context.events.drain()
        guard !events.isEmpty else { return false }
        var finished = false, progressOnly = true
        for event in events {
            switch event {
            case .progress(let key, let ratio):
                state.withLock { $0.inFlight[key]?.progress = ratio }
            case .upid(let key, let upid):
                state.withLock { $0.inFlight[key]?.upid = upid }
            case .finished(let key, let guestState, let bps, let error):
                finished = true
                progressOnly = false
                let record = try? context.store.guest(key)
                state.withLock { s in
                    s.inFlight[key] = nil
                    if let bps, bps.isFinite, bps > 0 { s.throughput = 0.7 * s.throughput + 0.3 * bps }
                    if let record { s.views[key]?.apply(record, state: guestState) } else if let guestState { s.views[key]?.state = guestState }
                    if let error { s.views[key]?.lastError = error }
                }
            case .drillFinished(let key):
                finished = true
                progressOnly = false
                state.withLock { s in
                    s.drilling.remove(key)
                    if s.views[key]?.state == .drilling { s.views[key]?.state = .idle }
                }
            case .stateHealthChanged:
                progressOnly = false
            case .shutdown:
                break
            }
        }
        if progressOnly { publishProgress() } else { publish() }
        return finished
    }

    /// Builds and publishes the snapshot from the loop's state.
    func publish(loopAt: Double? = nil) {
        let s = state.withLock { $0 }
        let health = context.writer.current
        let queued = Set(s.queue)
        var guests: [StatusSnapshot.Guest] = []
        guests.reserveCapacity(s.views.count)
        for key in s.views.keys.sorted() {
            var g = s.views[key]!
            if let f = s.inFlight[key] {
                g.state = .restoring
                g.progress = f.progress
            } else if g.state == .restoring {
                g.progress = nil
            }
            if queued.contains(key) { g.state = .queued }
            if s.drilling.contains(key) { g.state = .drilling }
            g.drill = s.drillViews[key]
            guests.append(g)
            if let sup = s.supersededViews[key] { guests.append(sup) }
        }
        let index = Dictionary(guests.enumerated().filter { $1.state != .superseded }.map { ($1.key, $0) }, uniquingKeysWith: { a, _ in a })
        published.withLock { p in
            p.service.queueLength = s.queue.count
            p.service.restoresInProgress = s.inFlight.count
            if let loopAt { p.service.lastLoopAt = loopAt }
            p.service.stateWritable = health.writable
            p.service.stateError = health.error
            p.service.stateErrorSince = health.since
            p.service.stateWriteErrors = health.failures
            p.service.unsavedWrites = health.pending.count
            p.sources = config.sources.map { src in
                var v = s.sources[src.storage] ?? .init(storage: src.storage, up: false, lastRefreshAt: nil, error: "not refreshed yet", refreshErrors: 0)
                v.listings = s.listings[src.storage]?.count ?? 0
                v.nextListingAt = s.listings[src.storage]?.nextAt
                return v
            }
            p.guests = guests
            p.readiness = s.readiness
            p.drillCounts = s.drillCounts
        }
        state.withLock { $0.publishedIndex = index }
    }

    /// Progress of restores in flight, written in place (a full publish would rebuild the whole
    /// snapshot on every task-log poll).
    func publishProgress() {
        let (index, inFlight) = state.withLock { ($0.publishedIndex, $0.inFlight) }
        published.withLock { p in
            for (key, f) in inFlight {
                guard let i = index[key], i < p.guests.count, p.guests[i].key == key else { continue }
                p.guests[i].progress = f.progress
                p.guests[i].state = .restoring
            }
        }
    }
}
