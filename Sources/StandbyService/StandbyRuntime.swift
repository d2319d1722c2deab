import Foundation
import Logging
import MicroHTTP
import Prometheus
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// Wires the service together: client, state store, reconciler, metrics, web endpoint.
/// `run`, `once` and `demo` use the same wiring; only the transport and the clock differ.
public struct StandbyRuntime: Sendable {
    /// The reconcile loop (a `Service`) and its published snapshot.
    public let reconciler: Reconciler
    /// `/metrics`: the registry plus the per-guest families written from the snapshot.
    public let metrics: MetricsEndpoint
    /// The service-level metrics, set from the snapshot and fed by restore events.
    public let catalogue: MetricCatalogue
    /// The state store.
    public let store: StateStore
    /// The PVE client over the configured transport.
    public let client: ProxmoxClient

    /// Builds the runtime.
    public init(config: StandbyConfig, transport: any ProxmoxTransport, store: StateStore, clock: any EngineClock,
                logger: Logger = Logger(label: "pbs-standby.engine"),
                schedulingPolicy: @escaping @Sendable ([RestoreCandidate]) -> [RestoreCandidate] = SchedulingPolicy.order,
                executable: String? = nil, executorOverrides: [ExecutorKind: any RestoreExecutor] = [:]) {
        let registry = PrometheusCollectorRegistry()
        let catalogue = MetricCatalogue(registry: registry)
        let client = ProxmoxClient(transport: transport)
        let reconciler = Reconciler(config: config, client: client, store: store, clock: clock, logger: logger, events: catalogue,
                                    schedulingPolicy: schedulingPolicy, executable: executable,
                                    executorOverrides: executorOverrides)
        self.metrics = MetricsEndpoint(registry: registry, beforeRender: { [reconciler] in
            catalogue.update(from: reconciler.snapshot, now: clock.now())
        }, append: { [reconciler] buffer in
            GuestExposition.write(reconciler.snapshot.guests, now: clock.now(), into: &buffer)
        })
        self.catalogue = catalogue
        self.reconciler = reconciler
        self.store = store
        self.client = client
    }

    /// The routes: metrics, status JSON, HTML page, health and readiness.
    public func webApp(clock: any EngineClock) -> WebApp {
        let reconciler = self.reconciler
        var app = WebApp(metrics: metrics, isReady: {
            let service = reconciler.snapshot.service
            if !service.stateWritable { return (false, "the state file cannot be written: \(service.stateError ?? "")") }
            return reconciler.anySourceRefreshed ? (true, "") : (false, "no source refreshed yet")
        })
        app.status = { reconciler.snapshot }
        app.now = { clock.now() }
        return app
    }

    /// The transport described by the config (token from file/env, never argv).
    public static func transport(for config: StandbyConfig) throws(ProxmoxError) -> any ProxmoxTransport {
        switch config.proxmox.transport {
        case .pvesh:
            // Worker calls in transient units next to the state file's directory (the unit's
            // PrivateTmp would hide /tmp from them), unless pvesh_detach: false.
            let launcher = config.proxmox.pveshDetach
                ? try DetachedLauncher(systemdRun: config.proxmox.systemdRunPath,
                                       outputDirectory: ((config.statePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("tasks"))
                : nil
            return try PveshTransport(executable: config.proxmox.pveshPath, launcher: launcher)
        case .https:
            let token = try APIToken.load(file: config.proxmox.tokenFile)
            let verification: HTTPSTransport.Verification
            if let fp = config.proxmox.fingerprint { verification = .fingerprint(fp) }
            else if let ca = config.proxmox.caFile { verification = .caFile(ca) }
            else { verification = .system }
            return try HTTPSTransport(url: config.proxmox.url, token: token, verification: verification, timeout: config.proxmox.timeout)
        }
    }
}
