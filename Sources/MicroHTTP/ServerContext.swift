import CMicroHTTPD
import Logging
import Synchronization

/// What libmicrohttpd's callbacks need, shared read-only between its threads.
final class ServerContext: Sendable {
    let router: Router
    let authenticator: BasicAuthenticator
    let extraHeaders: [(name: String, value: String)]
    let maxBodyBytes: Int
    let gzipMinimumBytes: Int
    let logger: Logger
    /// Requests between their first callback and their completion notice.
    let inFlight = Atomic<Int>(0)

    init(configuration: HTTPServerConfiguration, router: Router, logger: Logger) {
        self.router = router
        self.authenticator = BasicAuthenticator(users: configuration.web.basicAuthUsers)
        self.extraHeaders = configuration.web.headers
        self.maxBodyBytes = configuration.maxBodyBytes
        self.gzipMinimumBytes = configuration.gzipMinimumBytes
        self.logger = logger
    }

    /// Turns a finished request into a response: method check, body limit, auth, routing, gzip.
    func respond(method rawMethod: String, path: String, state: RequestState,
                 headers: [(name: String, value: String)], query: [String: String]) -> (HTTPResponse, ResponseBody) {
        let method = HTTPMethod(rawValue: rawMethod)
        var response: HTTPResponse
        if state.bodyTooLarge {
            response = .text("request body larger than \(maxBodyBytes) bytes\n", status: 413)
            response.headers.append(("Connection", "close"))
        } else if authenticator.isEnabled,
                  authenticator.authenticate(authorizationHeader: headers.first { $0.name.caseInsensitiveEquals("Authorization") }?.value) == nil {
            response = .text("Unauthorized\n", status: 401)
            response.headers.append(("WWW-Authenticate", "Basic realm=\"pbs-standby\", charset=\"UTF-8\""))
        } else {
            let match = method.map { router.match($0, path: path) }
                ?? Self.unknownMethodMatch(router, path: path)
            switch match {
            case .handler(let handler, let params):
                let request = HTTPRequest(method: method!, path: path, query: query, headers: headers,
                                          body: state.body, pathParameters: params)
                response = handler(request)
            case .methodNotAllowed(let allowed):
                response = .text("method \(rawMethod) not allowed on \(path)\n", status: 405)
                response.headers.append(("Allow", allowed.map(\.rawValue).joined(separator: ", ")))
            case .notFound:
                response = .text("404 page not found\n", status: 404)
            }
        }
        var body = response.body
        if body.count >= gzipMinimumBytes, Self.isCompressible(response.contentType) {
            response.headers.append(("Vary", "Accept-Encoding"))
            if Gzip.accepts(headers.first(where: { $0.name.caseInsensitiveEquals("Accept-Encoding") })?.value),
               let gz = body.gzipped() {
                body = gz
                response.headers.append(("Content-Encoding", "gzip"))
            }
        }
        response.headers.append(contentsOf: extraHeaders)
        return (response, body)
    }

    private static func unknownMethodMatch(_ router: Router, path: String) -> Router.Match {
        // An unknown method on a known path is 405 with the allowed methods; else 404.
        switch router.match(.get, path: path) {
        case .handler: break
        case .methodNotAllowed(let allowed): return .methodNotAllowed(allowed)
        case .notFound: break
        }
        for m in HTTPMethod.allCases {
            if case .handler = router.match(m, path: path) {
                var allowed: [HTTPMethod] = []
                for n in HTTPMethod.allCases { if case .handler = router.match(n, path: path) { allowed.append(n) } }
                _ = m
                return .methodNotAllowed(allowed)
            }
        }
        return .notFound
    }

    private static func isCompressible(_ contentType: String) -> Bool {
        contentType.hasPrefix("text/") || contentType.hasPrefix("application/json")
            || contentType.hasPrefix("application/openmetrics-text")
    }
}

/// Per-request state kept in libmicrohttpd's `con_cls` between callbacks.
final class RequestState {
    var body: [UInt8] = []
    var bodyTooLarge = false
}
