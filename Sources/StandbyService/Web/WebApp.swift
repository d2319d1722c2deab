import MicroHTTP

/// The routes of pbs-standby's HTTP endpoint. Every handler reads what the service published;
/// none waits for the reconcile loop.
public struct WebApp: Sendable {
    /// `/metrics`.
    public var metrics: MetricsEndpoint
    /// Whether `/-/ready` answers 200 (state store open, at least one source refreshed).
    public var isReady: @Sendable () -> (ready: Bool, reason: String)
    /// Extra routes added by later layers (status JSON, HTML page).
    public var extraRoutes: @Sendable (inout Router) -> Void

    /// Creates the app.
    public init(metrics: MetricsEndpoint,
                isReady: @escaping @Sendable () -> (ready: Bool, reason: String) = { (true, "") },
                extraRoutes: @escaping @Sendable (inout Router) -> Void = { _ in }) {
        self.metrics = metrics
        self.isReady = isReady
        self.extraRoutes = extraRoutes
    }

    /// The router with every endpoint.
    public func router() -> Router {
        var router = Router()
        let metrics = self.metrics
        let isReady = self.isReady
        router.get("/metrics") { metrics.handle($0) }
        router.get("/-/healthy") { _ in .text("Healthy.\n") }
        router.get("/-/ready") { _ in
            let (ready, reason) = isReady()
            return ready ? .text("Ready.\n") : .text("Not ready: \(reason)\n", status: 503)
        }
        router.get("/") { _ in
            .text(LandingPage.html, contentType: "text/html; charset=utf-8")
        }
        extraRoutes(&router)
        return router
    }
}

/// The minimal landing page used until the status page takes `/` over.
enum LandingPage {
    static let html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>pbs-standby</title></head>
        <body><h1>pbs-standby</h1>
        <ul><li><a href="/metrics">Metrics</a></li><li><a href="/-/healthy">Health</a></li>
        <li><a href="/-/ready">Readiness</a></li></ul></body></html>

        """
}
