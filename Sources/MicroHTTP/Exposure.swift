#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ListenAddress {
    /// Whether only this machine can connect: an IPv4 address in 127.0.0.0/8 or `::1`.
    /// The wildcard (`:PORT`, `0.0.0.0`, `::`) and every other address are reachable from outside.
    public var isLoopbackOnly: Bool {
        guard let host else { return false }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { $0[0] } == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return bytes[0..<15].allSatisfy { $0 == 0 } && bytes[15] == 1
        }
        return false
    }
}

extension HTTPServerConfiguration {
    /// The warning to log once at start when the server answers beyond loopback without basic
    /// auth (status, guest names and metrics readable by anyone who can reach the port); nil
    /// when it listens on loopback only or basic auth is configured.
    public func exposureWarning() -> String? {
        guard !address.isLoopbackOnly, web.basicAuthUsers.isEmpty else { return nil }
        let what = address.host == nil ? "every address" : "an address beyond loopback"
        return "the HTTP server listens on \(address) (\(what)) without basic auth: anyone who can reach it "
            + "reads the status, guest names and metrics; set basic_auth_users (and tls_server_config) in "
            + "--web.config.file, or listen on 127.0.0.1"
    }
}
