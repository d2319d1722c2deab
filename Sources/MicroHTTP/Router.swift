/// A route handler. It runs on a libmicrohttpd thread and must not block on async work:
/// read a published snapshot, build the response, return.
public typealias HTTPHandler = @Sendable (HTTPRequest) -> HTTPResponse

/// Maps method + path pattern to handlers. Patterns are literal segments and `{name}`
/// parameters, e.g. `/api/v1/guests/{vmid}`. Built once, then read concurrently.
public struct Router: Sendable {
    struct Route: Sendable {
        let segments: [Segment]
        var handlers: [HTTPMethod: HTTPHandler]
    }

    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
        /// `{name...}` as the last segment: the rest of the path, slashes included.
        case rest(String)
    }

    /// The outcome of matching a request.
    public enum Match {
        /// A handler with the path parameters it captured.
        case handler(HTTPHandler, [String: String])
        /// The path exists but not for this method; the value lists the allowed ones.
        case methodNotAllowed([HTTPMethod])
        /// No route has this path.
        case notFound
    }

    private var routes: [Route] = []

    /// An empty router.
    public init() {}

    /// Adds a handler for `method` on `pattern`. A GET route also answers HEAD.
    public mutating func add(_ method: HTTPMethod, _ pattern: String, _ handler: @escaping HTTPHandler) {
        let segments = Self.split(pattern).map { s -> Segment in
            if s.hasPrefix("{") && s.hasSuffix("...}") { return .rest(String(s.dropFirst().dropLast(4))) }
            if s.hasPrefix("{") && s.hasSuffix("}") { return .parameter(String(s.dropFirst().dropLast())) }
            return .literal(String(s))
        }
        if let i = routes.firstIndex(where: { $0.segments == segments }) {
            routes[i].handlers[method] = handler
        } else {
            routes.append(Route(segments: segments, handlers: [method: handler]))
        }
    }

    /// Shorthand for ``add(_:_:_:)`` with GET.
    public mutating func get(_ pattern: String, _ handler: @escaping HTTPHandler) { add(.get, pattern, handler) }
    /// Shorthand for ``add(_:_:_:)`` with POST.
    public mutating func post(_ pattern: String, _ handler: @escaping HTTPHandler) { add(.post, pattern, handler) }

    /// Finds the handler for a method and path. Literal routes win over parameter routes.
    public func match(_ method: HTTPMethod, path: String) -> Match {
        let parts = Self.split(path)
        var best: (route: Route, params: [String: String], literals: Int)?
        for route in routes {
            let hasRest: Bool
            if case .rest? = route.segments.last { hasRest = true } else { hasRest = false }
            guard hasRest ? parts.count >= route.segments.count : parts.count == route.segments.count else { continue }
            var params: [String: String] = [:]
            var literals = 0
            var ok = true
            for (i, segment) in route.segments.enumerated() {
                let part = parts[i]
                switch segment {
                case .literal(let l):
                    if l != part { ok = false } else { literals += 1 }
                case .parameter(let name):
                    if part.isEmpty { ok = false } else { params[name] = String(part) }
                case .rest(let name):
                    params[name] = parts[i...].joined(separator: "/")
                }
                if !ok { break }
            }
            if ok, best == nil || literals > best!.literals { best = (route, params, literals) }
        }
        guard let best else { return .notFound }
        if let h = best.route.handlers[method] { return .handler(h, best.params) }
        if method == .head, let h = best.route.handlers[.get] { return .handler(h, best.params) }
        var allowed = Array(best.route.handlers.keys)
        if allowed.contains(.get) && !allowed.contains(.head) { allowed.append(.head) }
        return .methodNotAllowed(allowed.sorted { $0.rawValue < $1.rawValue })
    }

    private static func split(_ path: String) -> [Substring] {
        // "/" is one empty segment list; "/a/b" is ["a", "b"]; a trailing slash is kept as "".
        var p = Substring(path)
        if p.hasPrefix("/") { p = p.dropFirst() }
        if p.isEmpty { return [] }
        return p.split(separator: "/", omittingEmptySubsequences: false)
    }
}
