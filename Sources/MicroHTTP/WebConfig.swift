import ConfigSupport
import Foundation

/// The `--web.config.file` of Prometheus' exporter-toolkit: TLS and basic auth for the server.
///
/// ```yaml
/// tls_server_config:
///   cert_file: /etc/pbs-standby/tls.crt
///   key_file: /etc/pbs-standby/tls.key
/// basic_auth_users:
///   prometheus: $2y$10$...   # bcrypt, e.g. from `htpasswd -nBC 10 prometheus`
/// http_server_config:
///   headers: {X-Frame-Options: deny}
/// ```
/// Keys of exporter-toolkit that this server cannot honour (client certificates, cipher
/// choices, HTTP/2) are rejected by name rather than silently ignored.
public struct WebConfig: Sendable {
    /// TLS material: PEM texts of the certificate chain and the private key.
    public struct TLS: Sendable {
        /// The certificate chain (PEM).
        public var certificatePEM: String
        /// The private key (PEM).
        public var keyPEM: String
        /// Creates TLS material from PEM texts.
        public init(certificatePEM: String, keyPEM: String) {
            self.certificatePEM = certificatePEM
            self.keyPEM = keyPEM
        }
    }

    /// TLS, when configured.
    public var tls: TLS?
    /// User name → bcrypt hash; empty means no authentication.
    public var basicAuthUsers: [String: String]
    /// Extra response headers.
    public var headers: [(name: String, value: String)]

    /// A config with nothing set (plain HTTP, no auth).
    public init(tls: TLS? = nil, basicAuthUsers: [String: String] = [:], headers: [(name: String, value: String)] = []) {
        self.tls = tls
        self.basicAuthUsers = basicAuthUsers
        self.headers = headers
    }

    /// Reads and validates a web config file. Relative certificate paths are relative to the file.
    public static func load(path: String) throws(HTTPServerError) -> WebConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .invalidWebConfig(key: path, line: nil, message: "cannot read the file")
        }
        let base = (path as NSString).deletingLastPathComponent
        return try parse(yaml: text, baseDirectory: base)
    }

    /// Parses the YAML text of a web config.
    public static func parse(yaml: String, baseDirectory: String = ".") throws(HTTPServerError) -> WebConfig {
        do {
            return try parseStrict(yaml: yaml, baseDirectory: baseDirectory)
        } catch {
            throw .invalidWebConfig(key: error.path, line: error.line, message: error.message)
        }
    }

    private static func parseStrict(yaml: String, baseDirectory: String) throws(ConfigError) -> WebConfig {
        let root = try StrictMapping.parse(yaml: yaml)
        var config = WebConfig()
        if let tls = try root.mapping("tls_server_config") {
            guard let cert = try tls.string("cert_file") else {
                throw ConfigError(path: tls.child("cert_file"), line: tls.line, message: "required when tls_server_config is set")
            }
            guard let key = try tls.string("key_file") else {
                throw ConfigError(path: tls.child("key_file"), line: tls.line, message: "required when tls_server_config is set")
            }
            if let auth = try tls.string("client_auth_type"), auth != "NoClientCert" {
                throw tls.error("client_auth_type", tls.node("client_auth_type"),
                                "'\(auth)' is not supported; only NoClientCert")
            }
            for unsupported in ["client_ca_file", "cipher_suites", "curve_preferences", "min_version",
                                "max_version", "prefer_server_cipher_suites", "client_allowed_sans",
                                "cert", "key"] where tls.has(unsupported) {
                throw tls.error(unsupported, nil, "not supported by this server (libmicrohttpd/GnuTLS defaults apply)")
            }
            try tls.finish()
            let certPath = resolve(cert, base: baseDirectory), keyPath = resolve(key, base: baseDirectory)
            guard let certPEM = try? String(contentsOfFile: certPath, encoding: .utf8), certPEM.contains("BEGIN CERTIFICATE") else {
                throw tls.error("cert_file", nil, "cannot read a PEM certificate from '\(certPath)'")
            }
            guard let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8), keyPEM.contains("PRIVATE KEY") else {
                throw tls.error("key_file", nil, "cannot read a PEM private key from '\(keyPath)'")
            }
            config.tls = TLS(certificatePEM: certPEM, keyPEM: keyPEM)
        }
        if let users = try root.mapping("basic_auth_users") {
            for name in users.keys {
                guard let hash = try users.string(name), !hash.isEmpty else {
                    throw users.error(name, nil, "expected a bcrypt hash")
                }
                guard BasicAuthenticator.isBcrypt(hash) else {
                    throw users.error(name, nil, "not a bcrypt hash (expected $2y$, $2b$ or $2a$ followed by the cost)")
                }
                config.basicAuthUsers[name] = hash
            }
            try users.finish()
        }
        if let server = try root.mapping("http_server_config") {
            if let http2 = try server.bool("http2"), http2 {
                throw server.error("http2", nil, "HTTP/2 is not supported by libmicrohttpd; set false or remove")
            }
            if let headers = try server.mapping("headers") {
                for name in headers.keys {
                    guard let value = try headers.string(name) else { continue }
                    config.headers.append((name, value))
                }
                try headers.finish()
            }
            try server.finish()
        }
        try root.finish()
        return config
    }

    private static func resolve(_ path: String, base: String) -> String {
        path.hasPrefix("/") || base.isEmpty ? path : (base as NSString).appendingPathComponent(path)
    }
}
