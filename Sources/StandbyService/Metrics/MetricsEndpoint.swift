import BuildInfo
import MicroHTTP
import Prometheus
import Synchronization

/// Serves `/metrics` from a swift-prometheus registry, rendered at most once per `maxAge` so a
/// scrape never waits for the reconcile loop and a scrape storm costs one render per second.
public final class MetricsEndpoint: Sendable {
    /// The registry every metric of the service lives in.
    public let registry: PrometheusCollectorRegistry
    private let process: ProcessMetrics
    private let beforeRender: @Sendable () -> Void
    private let append: @Sendable (inout [UInt8]) -> Void
    private let maxAge: Duration
    private let cache = Mutex<CacheState>(CacheState())

    /// The last rendered exposition and whether a render is under way.
    struct CacheState {
        /// When `body` was rendered.
        var at: ContinuousClock.Instant?
        /// The last rendered exposition; nil before the first scrape.
        var body: ResponseBody?
        /// A request is rendering a new body now (the others serve the previous one).
        var rendering = false
    }

    /// The exposition format's media type.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Creates the endpoint; `beforeRender` refreshes registry values computed at render time,
    /// `append` writes families kept outside the registry (the per-guest ones) after it.
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                maxAge: Duration = .seconds(1),
                beforeRender: @escaping @Sendable () -> Void = {},
                append: @escaping @Sendable (inout [UInt8]) -> Void = { _ in }) {
        self.registry = registry
        self.maxAge = maxAge
        self.beforeRender = beforeRender
        self.append = append
        self.process = ProcessMetrics(registry: registry)
        let info = registry.makeGauge(
            descriptor: .init(namespace: "pbs_standby", metricName: "build", unitName: "info",
                              helpText: "A metric with a constant '1' value labelled by version and revision of pbs-standby."),
            labels: [("version", pbsStandbyVersion), ("revision", gitRevision)])
        info.set(1.0)
    }

    /// The current exposition (cached up to `maxAge`). When it is stale, one request renders
    /// it and concurrent ones get the previous body meanwhile: a burst of scrapes never renders
    /// the same exposition many times at once.
    public func body() -> ResponseBody {
        let now = ContinuousClock.now
        enum Step { case serve(ResponseBody), render }
        let step: Step = cache.withLock { c in
            if let at = c.at, let body = c.body, now - at < maxAge { return .serve(body) }
            if c.rendering, let body = c.body { return .serve(body) }
            c.rendering = true
            return .render
        }
        if case .serve(let body) = step { return body }
        process.update()
        beforeRender()
        var bytes = registry.emitToBuffer()
        append(&bytes)
        let body = ResponseBody(bytes)
        cache.withLock { c in
            c.at = now
            c.body = body
            c.rendering = false
        }
        return body
    }

    /// The HTTP handler.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        HTTPResponse(contentType: Self.contentType, body: body())
    }
}
