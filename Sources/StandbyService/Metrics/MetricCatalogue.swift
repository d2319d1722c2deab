import Prometheus
import ProxmoxAPI
import StandbyCore
import StandbyStore
import Synchronization

/// The service-level metrics of `shared/design/METRICS.md`, kept in one swift-prometheus registry
/// and set from the published snapshot at render time, plus the failure counters and the duration
/// histogram fed by restore events. The per-guest families are written by ``GuestExposition``.
public final class MetricCatalogue: RestoreEventSink, Sendable {
    /// The registry shared with ``MetricsEndpoint``.
    let registry: PrometheusCollectorRegistry
    private let state = Mutex<State>(State())
    private static let ns = "pbs_standby"

    /// The snapshot's counts as last seen, so that each render adds only the difference to a counter.
    struct State {
        /// Refresh errors per source.
        var sourceErrors: [String: Int] = [:]
        /// Backup listings per source.
        var sourceListings: [String: Int] = [:]
        /// Failed state file writes.
        var stateWriteErrors = 0
        /// Drills counted per source and result.
        var drills: [String: [String: Int]] = [:]
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

    /// The descriptor of `pbs_standby_<name>_<unit>` (no unit suffix when `unit` is empty).
    static func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: ns, metricName: name, unitName: unit, helpText: help)
    }

    /// Counts a successful restore: `restore_duration_seconds` histogram (30 s … 24 h).
    public func restoreSucceeded(source: String, type: GuestType, duration: Double, bytes: Int64, facts: RestoreFacts) {
        registry.makeValueHistogram(
            descriptor: Self.d("restore_duration", "seconds", "Wall time of successful restores."),
            labels: [("source", source), ("type", type.rawValue), ("mode", facts.mode)],
            buckets: [30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400]).record(duration)
        registry.makeCounter(descriptor: Self.d("restored_bytes_written", "total", "Bytes written into standby volumes, by delta or full restores."),
                             labels: [("source", source), ("mode", facts.mode)]).increment(by: Int64(facts.bytesWritten))
        if let changed = facts.chunksChanged, let total = facts.chunksTotal {
            let d = Self.d("delta_chunks", "total", "Chunks compared by delta restores: changed (written) or unchanged.")
            registry.makeCounter(descriptor: d, labels: [("source", source), ("result", "changed")]).increment(by: Int64(changed))
            registry.makeCounter(descriptor: d, labels: [("source", source), ("result", "unchanged")]).increment(by: Int64(max(0, total - changed)))
        }
    }

    /// Counts a delta restore that was not possible (`pbs_standby_delta_fallbacks_total{reason}`).
    public func deltaFellBack(source: String, reason: String) {
        registry.makeCounter(descriptor: Self.d("delta_fallbacks", "total", "Delta restores not possible: PVE restored in full."),
                             labels: [("source", source), ("reason", reason)]).increment()
    }

    /// Counts restores that ended `TASK WARNINGS: N` (`pbs_standby_restore_warnings_total`).
    public func restoreWarned(source: String, warnings: Int) {
        registry.makeCounter(descriptor: Self.d("restore_warnings", "total", "Restores that succeeded with TASK WARNINGS."),
                             labels: [("source", source)]).increment()
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
        if let r = s.readiness {
            registry.makeGauge(descriptor: Self.d("failover_memory_required", "bytes", "Configured memory of all guests a failover would start.")).set(Double(r.summary.memoryRequired))
            if let avail = r.summary.memoryAvailable {
                registry.makeGauge(descriptor: Self.d("failover_memory_available", "bytes", "The standby node's memory not in use (ZFS ARC counts as used).")).set(Double(avail))
            }
        }
        state.withLock { st in
            for (source, results) in s.drillCounts {
                for (result, n) in results {
                    let more = n - st.drills[source, default: [:]][result, default: 0]
                    guard more > 0 else { continue }
                    registry.makeCounter(descriptor: Self.d("drills", "total", "DR drills ended, by result."),
                                         labels: [("source", source), ("result", result)]).increment(by: Int64(more))
                    st.drills[source, default: [:]][result] = n
                }
            }
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
                let listings = registry.makeCounter(
                    descriptor: Self.d("source_listings", "total", "Backup listings of this source (each makes PBS read every snapshot's manifest)."),
                    labels: labels)
                let more = src.listings - st.sourceListings[src.storage, default: 0]
                if more > 0 { listings.increment(by: Int64(more)) }
                st.sourceListings[src.storage] = src.listings
                if let t = src.nextListingAt, t.isFinite {
                    registry.makeGauge(descriptor: Self.d("source_next_listing_timestamp", "seconds", "When the next backup listing of this source is due."),
                                       labels: labels).set(t)
                }
            }
        }
    }
}
