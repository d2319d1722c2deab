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
        self.authenticator = BasicAuthenticator(users: configuration.web.basicAuthUsers, limits: configuration.authLimits,
                                                verifier: configuration.passwordVerifier)
        self.extraHeaders = configuration.web.headers
        self.maxBodyBytes = configuration.maxBodyBytes
        self.gzipMinimumBytes = configuration.gzipMinimumBytes
        self.logger = logger
    }

    /// The answer to a request that announces a body (`Content-Length` above 0, or any
    /// `Transfer-Encoding`) it may not send, given when only its headers have arrived: before
    /// authentication and before a byte of the body is read. Only a route of a method other
    /// than GET and HEAD takes a body, and no more than `maxBodyBytes` of it. Nil: go on.
    func earlyRefusal(method rawMethod: String, path: String, contentLength: String?, transferEncoding: String?) -> HTTPResponse? {
        let announced = contentLength.map { $0.trimmingCharacters(in: .whitespaces) }
        let length = announced.flatMap { Int($0) }
        let hasBody = (transferEncoding.map { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? false)
            || (announced != nil && (length ?? 1) > 0)
        guard hasBody else { return nil }
        var response: HTTPResponse
        if let method = HTTPMethod(rawValue: rawMethod), method != .get, method != .head,
           case .handler = router.match(method, path: path) {
            guard let length, length > maxBodyBytes else { return nil }
            response = .text("request body larger than \(maxBodyBytes) bytes\n", status: 413)
        } else {
            response = .text("\(rawMethod) \(path) takes no request body\n", status: 413)
        }
        response.headers.append(("Connection", "close"))
        return response
    }

    /// Turns a finished request into a response: body limit, auth, routing. `client` is the
    /// limiter's key of the client's address (``ClientAddress``).
    func respond(method rawMethod: String, path: String, state: RequestState, client: String,
                 headers: [(name: String, value: String)], query: [String: String]) -> (HTTPResponse, ResponseBody) {
        let method = HTTPMethod(rawValue: rawMethod)
        var response: HTTPResponse
        var user: String?
        if state.bodyTooLarge {
            response = .text("request body larger than \(maxBodyBytes) bytes\n", status: 413)
            response.headers.append(("Connection", "close"))
            return finish(response, requestHeaders: headers)
        }
        if authenticator.isEnabled {
            let authorization = headers.first { $0.name.caseInsensitiveEquals("Authorization") }?.value
            switch authenticator.authenticate(authorizationHeader: authorization, client: client) {
            case .authenticated(let name):
                user = name
            case .denied:
                response = .text("Unauthorized\n", status: 401)
                response.headers.append(("WWW-Authenticate", "Basic realm=\"pbs-standby\", charset=\"UTF-8\""))
                return finish(response, requestHeaders: headers)
            case .throttled(let wait):
                response = .text("too many failed authentication attempts from this address; retry in \(wait) s\n", status: 429)
                response.headers.append(("Retry-After", String(wait)))
                return finish(response, requestHeaders: headers)
            case .busy(let wait):
                response = .text("password checks are busy; retry in \(wait) s\n", status: 503)
                response.headers.append(("Retry-After", String(wait)))
                return finish(response, requestHeaders: headers)
            }
        }
        let match = method.map { router.match($0, path: path) }
            ?? Self.unknownMethodMatch(router, path: path)
        switch match {
        case .handler(let handler, let params):
            let request = HTTPRequest(method: method!, path: path, query: query, headers: headers,
                                      body: state.body, pathParameters: params, user: user)
            response = handler(request)
        case .methodNotAllowed(let allowed):
            response = .text("method \(rawMethod) not allowed on \(path)\n", status: 405)
            response.headers.append(("Allow", allowed.map(\.rawValue).joined(separator: ", ")))
        case .notFound:
            response = .text("404 page not found\n", status: 404)
        }
        return finish(response, requestHeaders: headers)
    }

    /// gzip when worthwhile and accepted, then the configured extra headers.
    func finish(_ response: HTTPResponse, requestHeaders headers: [(name: String, value: String)]) -> (HTTPResponse, ResponseBody) {
        var response = response
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
