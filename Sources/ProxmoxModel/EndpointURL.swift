import Foundation

/// `proxmox.url` taken apart strictly: `https://HOST[:PORT][/]` (or `http://` to a literal
/// loopback address, see ``requireConfidentialTransport()``). No user info (`http://127.0.0.1@evil`
/// would connect to `evil`), no query, no fragment, no path: the API is always at `/api2/json`.
public struct EndpointURL: Sendable, Equatable {
    /// Why a URL is refused, in words.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        /// What is wrong.
        public var reason: String
        public var description: String { reason }
    }

    /// `https` or `http`.
    public var scheme: String
    /// The host: a name, an IPv4 literal, or an IPv6 literal without its brackets.
    public var host: String
    /// The port, when given.
    public var port: Int?
    /// The path: empty or `/`.
    public var path: String

    /// Parses `SCHEME://HOST[:PORT][/]`; the error says which part is wrong.
    public init(parsing text: String) throws(Invalid) {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            scheme = "https"; rest = text.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            scheme = "http"; rest = text.dropFirst(7)
        } else {
            throw Invalid(reason: "'\(text)' is not an https:// URL (expected https://HOST:PORT)")
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let tail = rest[authorityEnd...]
        guard !authority.contains("@") else {
            throw Invalid(reason: "'\(text)' has user info before '@'; give only the host (the token is sent in a header)")
        }
        var hostPart: Substring, portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw Invalid(reason: "'\(text)': the IPv6 address has no closing ']'")
            }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.isEmpty { portPart = nil } else {
                guard after.hasPrefix(":") else { throw Invalid(reason: "'\(text)': unexpected '\(after)' after the IPv6 address") }
                portPart = after.dropFirst()
            }
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, String(hostPart), &v6) == 1 else {
                throw Invalid(reason: "'\(text)': '\(hostPart)' is not an IPv6 address")
            }
        } else {
            let colon = authority.firstIndex(of: ":")
            hostPart = authority[..<(colon ?? authority.endIndex)]
            portPart = colon.map { authority[authority.index(after: $0)...] }
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
            guard !hostPart.isEmpty, hostPart.allSatisfy(allowed.contains) else {
                throw Invalid(reason: "'\(text)': '\(hostPart)' is not a host name or IP address")
            }
        }
        host = String(hostPart)
        if let portPart {
            guard let p = Int(portPart), (1...65535).contains(p), portPart.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw Invalid(reason: "'\(text)': port '\(portPart)' is not a number from 1 to 65535")
            }
            port = p
        } else {
            port = nil
        }
        guard tail.isEmpty || tail == "/" else {
            throw Invalid(reason: "'\(text)': unexpected '\(tail)' after the host and port (the API path /api2/json is added by pbs-standby)")
        }
        path = String(tail)
    }

    /// Whether the host is a literal loopback address: IPv4 127.0.0.0/8 or IPv6 `::1`. A name,
    /// even `localhost`, is not: DNS or /etc/hosts decides where a name goes.
    public var isLoopbackLiteral: Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { $0[0] } == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1
        }
        return false
    }

    /// Refuses `http://` (which sends the API token in clear text) unless the host is a literal
    /// loopback address, where the token never leaves the machine.
    public func requireConfidentialTransport() throws(Invalid) {
        guard scheme == "http", !isLoopbackLiteral else { return }
        if host.lowercased() == "localhost" || host.lowercased().hasSuffix(".localhost") {
            throw Invalid(reason: "http:// sends the API token in clear text, so it is allowed only to a literal loopback "
                + "address (127.0.0.1, [::1]); '\(host)' is a name that DNS or /etc/hosts may send elsewhere: "
                + "write http://127.0.0.1:PORT or use https://")
        }
        throw Invalid(reason: "http:// sends the API token in clear text, so it is allowed only to a literal loopback "
            + "address (127.0.0.0/8 or [::1]), not '\(host)': use https://")
    }
}
