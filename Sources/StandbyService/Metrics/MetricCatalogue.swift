import Prometheus
import ProxmoxAPI
import StandbyCore
import Synchronization

/// Every metric of `shared/design/METRICS.md`, kept in one swift-prometheus registry and set from
/// the published snapshot at render time (so `restore_lag_seconds` is "now − restored"), plus
/// counters and the duration histogram fed by restore events. Series of guests that left the
/// selection are unregistered.
public final class MetricCatalogue: RestoreEventSink, Sendable {
    let registry: PrometheusCollectorRegistry
    private let state = Mutex<State>(State())
    private static let ns = "pbs_standby"

    struct GuestSeries {
        var labels: [(String, String)]
        var info: Gauge
        var infoLabels: [(String, String)]
        var latest: Gauge
        var restored: Gauge?
        var lag: Gauge?
        var rpo: Gauge
        var pending: Gauge
        var lastAttempt: Gauge
        var lastSuccess: Gauge
        var lastDuration: Gauge
        var failures: Gauge
        var progress: Gauge
        var success: Counter
        var failure: Counter
        var bytes: Counter
        var states: [GuestState: Gauge]
        var counted = (success: 0, failure: 0, bytes: Int64(0))
    }

    struct State {
        var guests: [GuestKey: GuestSeries] = [:]
        var sourceErrors: [String: Int] = [:]
        var stateWriteErrors = 0
    }

    private let loopLast: Gauge, queue: Gauge, workers: Gauge, inProgress: Gauge
    private let stateWritable: Gauge, stateWriteErrors: Counter, unsavedWrites: Gauge

    /// Registers the service-level metrics in `registry`.
    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        loopLast = registry.makeGauge(descriptor: Self.d("loop_last_run_timestamp", "seconds", "Time of the last completed reconcile pass (liveness)."))
        queue = registry.makeGauge(descriptor: Self.d("queue", "length", "Guests waiting for a restore worker."))
        workers = registry.makeGauge(descriptor: Self.d("workers", "", "Configured restore workers."))
        inProgress = registry.makeGauge(descriptor: Self.d("restores_in", "progress", "Restores running now."))
        stateWritable = registry.makeGauge(descriptor: Self.d("state", "writable", "The last write to the state file succeeded (0: no restore starts)."))
        stateWriteErrors = registry.makeCounter(descriptor: Self.d("state_write_errors", "total", "Failed writes to the state file."))
        unsavedWrites = registry.makeGauge(descriptor: Self.d("state_unsaved", "writes", "Restore outcomes kept in memory until the state file takes writes."))
        stateWritable.set(1.0)
    }

    static func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: ns, metricName: name, unitName: unit, helpText: help)
    }

    /// Counts a successful restore: `restore_duration_seconds` histogram (30 s … 24 h).
    public func restoreSucceeded(source: String, type: GuestType, duration: Double, bytes: Int64) {
        registry.makeValueHistogram(
            descriptor: Self.d("restore_duration", "seconds", "Wall time of successful restores."),
            labels: [("source", source), ("type", type.rawValue)],
            buckets: [30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400]).record(duration)
    }

    /// Counts a failed restore by bounded reason.
    public func restoreFailed(source: String, reason: String) {
        registry.makeCounter(descriptor: Self.d("restore_failures", "total", "Failed restores by bounded reason."),
                             labels: [("source", source), ("reason", reason)]).increment()
    }

    /// Counted from the snapshot instead (refresh_errors); kept for the protocol.
    public func sourceRefreshFailed(source: String) {}

    /// Sets every gauge from the snapshot; lag is computed against `now`.
    public func update(from s: StatusSnapshot, now: Double) {
        if let l = s.service.lastLoopAt { loopLast.set(l) }
        queue.set(Double(s.service.queueLength))
        workers.set(Double(s.service.workers))
        inProgress.set(Double(s.service.restoresInProgress))
        stateWritable.set(s.service.stateWritable ? 1.0 : 0.0)
        unsavedWrites.set(Double(s.service.unsavedWrites))
        state.withLock { st in
            let delta = s.service.stateWriteErrors - st.stateWriteErrors
            if delta > 0 { stateWriteErrors.increment(by: Int64(delta)) }
            st.stateWriteErrors = s.service.stateWriteErrors
            for src in s.sources {
                let labels = [("source", src.storage)]
                registry.makeGauge(descriptor: Self.d("source", "up", "The last catalogue refresh of this source succeeded."), labels: labels).set(src.up ? 1.0 : 0.0)
                if let t = src.lastRefreshAt {
                    registry.makeGauge(descriptor: Self.d("source_last_refresh_timestamp", "seconds", "Last successful catalogue refresh."), labels: labels).set(t)
                }
                let counter = registry.makeCounter(descriptor: Self.d("source_refresh_errors", "total", "Failed catalogue refreshes."), labels: labels)
                let delta = src.refreshErrors - st.sourceErrors[src.storage, default: 0]
                if delta > 0 { counter.increment(by: Int64(delta)) }
                st.sourceErrors[src.storage] = src.refreshErrors
            }
            var seen = Set<GuestKey>()
            for g in s.guests {
                seen.insert(g.key)
                var series = st.guests[g.key] ?? makeSeries(g)
                let infoLabels = series.labels + [("name", g.name), ("target_vmid", String(g.targetVmid)), ("target_node", g.targetNode)]
                if infoLabels.map({ $0.0 + "=" + $0.1 }) != series.infoLabels.map({ $0.0 + "=" + $0.1 }) {
                    registry.unregisterGauge(series.info)
                    series.info = registry.makeGauge(descriptor: Self.d("guest", "info", "Guest names and targets (join target)."), labels: infoLabels)
                    series.infoLabels = infoLabels
                }
                series.info.set(1.0)
                series.latest.set(Double(g.latest?.backupTime ?? 0))
                if let r = g.restored {
                    if series.restored == nil {
                        series.restored = registry.makeGauge(descriptor: Self.d("restored_backup_timestamp", "seconds", "Backup time of the copy ready on the standby."), labels: series.labels)
                        series.lag = registry.makeGauge(descriptor: Self.d("restore_lag", "seconds", "Age of the standby copy: now minus its backup time."), labels: series.labels)
                    }
                    series.restored?.set(Double(r.backupTime))
                    series.lag?.set(max(0, now - Double(r.backupTime)))
                } else if let restored = series.restored {
                    registry.unregisterGauge(restored)
                    if let lag = series.lag { registry.unregisterGauge(lag) }
                    series.restored = nil
                    series.lag = nil
                }
                series.rpo.set(g.rpoTarget)
                series.pending.set(Double(g.pendingBackups))
                series.lastAttempt.set(g.lastAttemptAt ?? 0)
                series.lastSuccess.set(g.lastSuccessAt ?? 0)
                series.lastDuration.set(g.lastDuration ?? 0)
                series.failures.set(Double(g.consecutiveFailures))
                series.progress.set(g.state == .restoring ? (g.progress ?? 0) : 0)
                if g.restoresSucceeded > series.counted.success { series.success.increment(by: Int64(g.restoresSucceeded - series.counted.success)) }
                if g.restoresFailed > series.counted.failure { series.failure.increment(by: Int64(g.restoresFailed - series.counted.failure)) }
                if g.restoredBytesTotal > series.counted.bytes { series.bytes.increment(by: g.restoredBytesTotal - series.counted.bytes) }
                series.counted = (max(series.counted.success, g.restoresSucceeded), max(series.counted.failure, g.restoresFailed),
                                  max(series.counted.bytes, g.restoredBytesTotal))
                for (state, gauge) in series.states { gauge.set(state == g.state ? 1.0 : 0.0) }
                st.guests[g.key] = series
            }
            for (key, series) in st.guests where !seen.contains(key) {
                remove(series)
                st.guests[key] = nil
            }
        }
    }

    private func makeSeries(_ g: StatusSnapshot.Guest) -> GuestSeries {
        let labels = [("source", g.key.source), ("vmid", String(g.key.vmid)), ("type", g.type.rawValue)]
        func gauge(_ n: String, _ u: String, _ h: String) -> Gauge { registry.makeGauge(descriptor: Self.d(n, u, h), labels: labels) }
        var states: [GuestState: Gauge] = [:]
        for s in GuestState.allCases {
            states[s] = registry.makeGauge(descriptor: Self.d("guest", "state", "One series per state; exactly one is 1."), labels: labels + [("state", s.rawValue)])
        }
        let restores = Self.d("restores", "total", "Restore attempts by result.")
        return GuestSeries(
            labels: labels, info: registry.makeGauge(descriptor: Self.d("guest", "info", "Guest names and targets (join target)."), labels: labels + [("name", ""), ("target_vmid", ""), ("target_node", "")]),
            infoLabels: labels + [("name", ""), ("target_vmid", ""), ("target_node", "")],
            latest: gauge("latest_backup_timestamp", "seconds", "Backup time of the newest complete backup in the datastore."),
            restored: nil, lag: nil,
            rpo: gauge("rpo_target", "seconds", "Configured RPO target of this guest."),
            pending: gauge("pending", "backups", "Complete backups newer than the restored one."),
            lastAttempt: gauge("last_restore_attempt_timestamp", "seconds", "Time of the last restore attempt."),
            lastSuccess: gauge("last_restore_success_timestamp", "seconds", "Time of the last successful restore."),
            lastDuration: gauge("last_restore_duration", "seconds", "Duration of the last restore attempt."),
            failures: gauge("consecutive", "failures", "Consecutive failed restores."),
            progress: gauge("restore_progress", "ratio", "Progress of the running restore, 0-1."),
            success: registry.makeCounter(descriptor: restores, labels: labels + [("result", "success")]),
            failure: registry.makeCounter(descriptor: restores, labels: labels + [("result", "failure")]),
            bytes: registry.makeCounter(descriptor: Self.d("restored_bytes", "total", "Bytes of backups restored successfully."), labels: labels),
            states: states)
    }

    private func remove(_ s: GuestSeries) {
        for g in [s.info, s.latest, s.rpo, s.pending, s.lastAttempt, s.lastSuccess, s.lastDuration, s.failures, s.progress] + Array(s.states.values) {
            registry.unregisterGauge(g)
        }
        if let r = s.restored { registry.unregisterGauge(r) }
        if let l = s.lag { registry.unregisterGauge(l) }
        registry.unregisterCounter(s.success)
        registry.unregisterCounter(s.failure)
        registry.unregisterCounter(s.bytes)
    }
}
