import Foundation
import MicroHTTP
import Synchronization

/// The routes of pbs-standby's HTTP endpoint. Every handler reads what the service published;
/// none waits for the reconcile loop.
public struct WebApp: Sendable {
    /// `/metrics`.
    public var metrics: MetricsEndpoint
    /// Whether `/-/ready` answers 200 (state store open, at least one source refreshed).
    public var isReady: @Sendable () -> (ready: Bool, reason: String)
    /// Extra routes.
    public var extraRoutes: @Sendable (inout Router) -> Void
    /// The published status (status JSON and HTML page); nil serves a landing page only.
    public var status: (@Sendable () -> StatusSnapshot)?
    /// The clock lag and ages are computed against.
    public var now: @Sendable () -> Double = { Date().timeIntervalSince1970 }

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
        if let status {
            let now = self.now
            // Rendered at most once a second, like /metrics: a status poller cannot make the
            // service re-serialise 1000 guests per request.
            let page = RenderCache { ResponseBody(Array(StatusPage.render(status(), now: now()).utf8)) }
            let json = RenderCache { ResponseBody(StatusDocument(status(), now: now()).json() + [10]) }
            router.get("/") { _ in HTTPResponse(contentType: "text/html; charset=utf-8", body: page.body()) }
            router.get("/api/v1/status") { _ in HTTPResponse(contentType: "application/json", body: json.body()) }
            // The drill report (issue 16): what an auditor is handed.
            router.get("/drills") { _ in
                let snap = status()
                return HTTPResponse(contentType: "text/html; charset=utf-8",
                                    body: ResponseBody(Array(DrillReport.html(DrillReport.rows(snap), node: snap.guests.first?.targetNode ?? "", now: now()).utf8)))
            }
            router.get("/api/v1/drills") { _ in
                let snap = status()
                return .json(DrillReport.json(DrillReport.rows(snap), node: snap.guests.first?.targetNode ?? "", now: now()))
            }
            router.get("/api/v1/guests/{vmid}") { req in
                guard let vmid = req.pathParameters["vmid"].flatMap(Int.init) else {
                    return .jsonError("'\(req.pathParameters["vmid"] ?? "")' is not a VMID", status: 400)
                }
                let snap = status()
                let guests = snap.guests.filter { $0.key.vmid == vmid }
                guard !guests.isEmpty else { return .jsonError("guest \(vmid) is not selected", status: 404) }
                let t = now()
                let docs = guests.map { StatusDocument.Guest($0, now: t) }
                return .json(docs.count == 1 ? docs[0].json() : StatusDocument.encode(docs))
            }
        } else {
            router.get("/") { _ in .text(LandingPage.html, contentType: "text/html; charset=utf-8") }
        }
        extraRoutes(&router)
        return router
    }
}

/// The minimal landing page used until the status page takes `/` over.
enum LandingPage {
    /// The page: links to metrics, health and readiness.
    static let html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>pbs-standby</title></head>
        <body><h1>pbs-standby</h1>
        <ul><li><a href="/metrics">Metrics</a></li><li><a href="/-/healthy">Health</a></li>
        <li><a href="/-/ready">Readiness</a></li></ul></body></html>

        """
}

/// A response body rendered at most once per `maxAge`; while one request re-renders a stale
/// body, concurrent ones get the previous one.
final class RenderCache: Sendable {
    private let render: @Sendable () -> ResponseBody
    private let maxAge: Duration
    private let cached = Mutex<(at: ContinuousClock.Instant?, body: ResponseBody?, rendering: Bool)>((nil, nil, false))

    /// A cache of what `render` produces, re-rendered after `maxAge`.
    init(maxAge: Duration = .seconds(1), _ render: @escaping @Sendable () -> ResponseBody) {
        self.render = render
        self.maxAge = maxAge
    }

    /// The cached body, or a fresh render when it is older than `maxAge`.
    func body() -> ResponseBody {
        let now = ContinuousClock.now
        let stale: ResponseBody? = cached.withLock { c in
            if let at = c.at, let body = c.body, now - at < maxAge { return body }
            if c.rendering, let body = c.body { return body }
            c.rendering = true
            return nil
        }
        if let stale { return stale }
        let body = render()
        cached.withLock { $0 = (now, body, false) }
        return body
    }
}
