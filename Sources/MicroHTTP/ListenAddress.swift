#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the server listens, parsed from the exporter-style `--web.listen-address` value:
/// `:8216` (all addresses, IPv6 dual-stack), `127.0.0.1:8216`, `[::1]:8216`, `localhost:8216`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// The host part: an IPv4 or IPv6 literal, or nil for "every address".
    public var host: String?
    /// The port; 0 asks the kernel for a free one (tests).
    public var port: UInt16

    /// An address from parts.
    public init(host: String?, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; names the problem on failure.
    public init(parsing text: String) throws(HTTPServerError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw .invalidListenAddress(text, "expected HOST:PORT or :PORT")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = UInt16(portText) else {
            throw .invalidListenAddress(text, "port '\(portText)' is not a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        if host.isEmpty {
            self.init(host: nil, port: port)
            return
        }
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw .invalidListenAddress(text, "'\(host)' is not an IPv4 or IPv6 address")
        }
        self.init(host: host, port: port)
    }

    /// Whether this address is IPv6 (an explicit IPv6 literal, or the wildcard, served dual-stack).
    public var isIPv6: Bool { host == nil || host!.contains(":") }

    /// `host:port` with brackets around IPv6 literals.
    public var description: String {
        guard let host else { return ":\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Calls `body` with a `sockaddr` for this address (valid only inside `body`).
    func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>) throws -> T) rethrows -> T {
        if isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            if let host { _ = inet_pton(AF_INET6, host, &sa.sin6_addr) } else { sa.sin6_addr = in6addr_any }
            return try withUnsafePointer(to: &sa) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
        }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host!, &sa.sin_addr)
        return try withUnsafePointer(to: &sa) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
    }
}

/// Errors of the HTTP server and its configuration. Each names what is wrong.
public enum HTTPServerError: Error, CustomStringConvertible, Equatable {
    /// `--web.listen-address` could not be parsed.
    case invalidListenAddress(String, String)
    /// libmicrohttpd refused to start (port in use, bad TLS material, …).
    case startFailed(String)
    /// The web config file is invalid; the first value is the key path.
    case invalidWebConfig(key: String, line: Int?, message: String)

    public var description: String {
        switch self {
        case .invalidListenAddress(let text, let why):
            return "invalid listen address '\(text)': \(why)"
        case .startFailed(let why):
            return "HTTP server did not start: \(why)"
        case .invalidWebConfig(let key, let line, let message):
            let at = line.map { " (line \($0))" } ?? ""
            return "web config: \(key)\(at): \(message)"
        }
    }
}
