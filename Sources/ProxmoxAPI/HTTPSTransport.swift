import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The PVE API over HTTPS with an API token (reference §1.1, §1.4).
///
/// TLS is verified either by a pinned SHA-256 fingerprint of the server certificate (PVE's
/// `AB:CD:…` form, checked in NIOSSL's custom verification callback; a mismatch fails at once
/// and names the fingerprint the server presented) or by a CA file such as the cluster's
/// `pve-root-ca.pem`. Connections are kept alive and reused. `http://` URLs are accepted only
/// for the simulator.
public final class HTTPSTransport: ProxmoxTransport {
    /// How the server certificate is checked.
    public enum Verification: Sendable {
        /// Pin the leaf certificate's SHA-256 fingerprint.
        case fingerprint(String)
        /// Trust this CA bundle (PEM) and check the host name.
        case caFile(String)
        /// The system trust store.
        case system
    }

    public let runsTasksSynchronously = false
    /// The token id: PVE writes it into the UPID of every task the token starts.
    public var taskUser: String? { token?.tokenID }
    public var endpointDescription: String { "\(useTLS ? "https" : "http")://\(host):\(port)" }

    let host: String
    let port: Int
    let useTLS: Bool
    private let token: APIToken?
    private let timeout: TimeAmount
    private let sslContext: NIOSSLContext?
    private let pinnedFingerprint: String?
    private let idle = Mutex<[Connection]>([])
    private let maxIdle = 4
    private let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

    /// Creates a transport for `url` (`https://host:8006`).
    public init(url: String, token: APIToken?, verification: Verification, timeout: Duration = .seconds(30)) throws(ProxmoxError) {
        guard let comps = URLComponents(string: url), let scheme = comps.scheme, let host = comps.host,
              scheme == "https" || scheme == "http" else {
            throw .configuration("proxmox.url: '\(url)' is not an https:// URL")
        }
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.useTLS = scheme == "https"
        self.port = comps.port ?? (useTLS ? 8006 : 80)
        self.token = token
        self.timeout = .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        guard useTLS else {
            sslContext = nil
            pinnedFingerprint = nil
            return
        }
        var config = TLSConfiguration.makeClientConfiguration()
        switch verification {
        case .fingerprint(let fp):
            guard let normalized = Fingerprint.normalize(fp) else {
                throw .configuration("proxmox.fingerprint: '\(fp)' is not a SHA-256 fingerprint (32 hex pairs joined by ':')")
            }
            pinnedFingerprint = normalized
            // The custom callback below replaces chain and host name checks with the pin.
        case .caFile(let path):
            do {
                config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))
            } catch {
                throw .configuration("proxmox.ca_file: cannot read PEM certificates from '\(path)': \(error)")
            }
            pinnedFingerprint = nil
        case .system:
            pinnedFingerprint = nil
        }
        do { sslContext = try NIOSSLContext(configuration: config) } catch {
            throw .configuration("TLS set-up failed: \(error)")
        }
    }

    deinit {
        for c in idle.withLock({ $0 }) { c.channel.close(promise: nil) }
    }

    public func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
                     onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        let query = formEncode(parameters)
        let inBody = method == .post || method == .put
        var uri = "/api2/json" + path.split(separator: "/", omittingEmptySubsequences: false).map { percentEncode(String($0)) }.joined(separator: "/")
        if !inBody, !query.isEmpty { uri += "?" + query }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "User-Agent", value: "pbs-standby")
        if let token { headers.add(name: "Authorization", value: token.headerValue) }
        var body: ByteBuffer?
        if inBody {
            body = ByteBuffer(string: query)
            headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            headers.add(name: "Content-Length", value: String(body!.readableBytes))
        } else if method == .delete {
            headers.add(name: "Content-Length", value: "0")
        }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method.rawValue), uri: uri, headers: headers)

        let response: CollectedResponse
        do {
            response = try await perform(head: head, body: body, idempotent: method == .get)
        } catch let error as ProxmoxError {
            throw error
        } catch {
            throw classifyNetworkError(error, path: path)
        }
        return try decode(response, path: path)
    }

    /// Sends one request. A GET may be retried once on a new connection when a pooled one fails
    /// (the server may have closed it meanwhile). A POST/PUT/DELETE is never sent twice: it goes
    /// on a fresh connection, once — after a timeout or a reset PVE may have acted on it (a restore
    /// task forked), and the caller finds out from PVE instead of posting again (issue 13).
    private func perform(head: HTTPRequestHead, body: ByteBuffer?, idempotent: Bool) async throws -> CollectedResponse {
        if idempotent, let pooled = idle.withLock({ $0.popLast() }) {
            if let r = try? await pooled.send(head: head, body: body, timeout: timeout) {
                release(pooled, keepAlive: r.keepAlive)
                return r
            }
            pooled.channel.close(promise: nil)
        }
        let connection = try await connect()
        do {
            let r = try await connection.send(head: head, body: body, timeout: timeout)
            release(connection, keepAlive: r.keepAlive)
            return r
        } catch {
            connection.channel.close(promise: nil)
            // The TLS handshake runs after connect: a pin mismatch surfaces here.
            if error is RequestTimeout { throw error }
            throw PinnedConnectError(underlying: error, presented: connection.presented.get())
        }
    }

    private func release(_ c: Connection, keepAlive: Bool) {
        guard keepAlive, c.channel.isActive else { c.channel.close(promise: nil); return }
        let kept = idle.withLock { list -> Bool in
            guard list.count < maxIdle else { return false }
            list.append(c)
            return true
        }
        if !kept { c.channel.close(promise: nil) }
    }

    private func connect() async throws -> Connection {
        let presented = PresentedCertificate()
        let pinned = pinnedFingerprint
        let sslContext = self.sslContext
        let serverName = Self.isIPAddress(host) ? nil : host
        let collector = ResponseCollector()
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let handler: NIOSSLClientHandler
                        if let pinned {
                            handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName) { certs, promise in
                                guard let leaf = certs.first, let der = try? leaf.toDERBytes() else {
                                    promise.succeed(.failed); return
                                }
                                let digest = Array(SHA256.hash(data: der))
                                presented.set(Fingerprint.format(digest))
                                let hex = digest.map { String($0, radix: 16).leftPadded(2) }.joined()
                                promise.succeed(hex == pinned ? .certificateVerified : .failed)
                            }
                        } else {
                            handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            return Connection(channel: channel, collector: collector, presented: presented)
        } catch {
            throw PinnedConnectError(underlying: error, presented: presented.get())
        }
    }

    private func decode(_ response: CollectedResponse, path: String) throws(ProxmoxError) -> JSONValue {
        let status = Int(response.status.code)
        let bodyValue: JSONValue? = response.body.isEmpty ? nil : try? JSONValue.parse(response.body, path: path)
        if status == 200 {
            guard let bodyValue else {
                throw .decoding(path: path, field: "", message: response.body.isEmpty ? "empty body" : "malformed JSON body")
            }
            guard case .object = bodyValue else { throw .decoding(path: path, field: "", message: "expected {\"data\": …}") }
            return bodyValue["data"] ?? .null
        }
        // The reason phrase carries the first line of the message; the body's `message` exists
        // only since libpve-http-server-perl 5.2.0 (reference §1.2).
        let message = bodyValue?["message"]?.string ?? response.status.reasonPhrase
        var errors: [String: String] = [:]
        if case .object(let e)? = bodyValue?["errors"] { for (k, v) in e { errors[k] = v.string ?? v.serialized() } }
        throw ProxmoxError.classify(path: path, status: status, message: message, errors: errors)
    }

    private func classifyNetworkError(_ error: any Error, path: String) -> ProxmoxError {
        if let pinErr = error as? PinnedConnectError {
            if let presented = pinErr.presented, pinnedFingerprint != nil,
               Fingerprint.normalize(presented) != pinnedFingerprint {
                return .configuration("\(endpointDescription): TLS certificate fingerprint mismatch: the server presented \(presented), proxmox.fingerprint expects \(Fingerprint.format(hexBytes(pinnedFingerprint!)))")
            }
            if pinErr.underlying is NIOSSLError {
                return .configuration("\(endpointDescription): TLS handshake failed: \(pinErr.underlying)")
            }
            return .transient(path: path, message: "cannot connect to \(endpointDescription): \(pinErr.underlying)")
        }
        if error is NIOSSLError { return .configuration("\(endpointDescription): TLS failure: \(error)") }
        if let timeoutError = error as? RequestTimeout {
            return .transient(path: path, message: "no answer from \(endpointDescription) within \(timeoutError.seconds) s")
        }
        return .transient(path: path, message: "\(endpointDescription): \(error)")
    }

    private func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var chars = Array(hex)[...]
        while chars.count >= 2 { out.append(UInt8(String(chars.prefix(2)), radix: 16) ?? 0); chars = chars.dropFirst(2) }
        return out
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// The certificate fingerprint seen during the handshake (written on the event loop).
final class PresentedCertificate: Sendable {
    private let value = Mutex<String?>(nil)
    func set(_ s: String) { value.withLock { $0 = s } }
    func get() -> String? { value.withLock { $0 } }
}

struct PinnedConnectError: Error {
    let underlying: any Error
    let presented: String?
}

struct RequestTimeout: Error {
    let seconds: Int64
}

struct CollectedResponse: Sendable {
    var status: HTTPResponseStatus
    var keepAlive: Bool
    var body: [UInt8]
}

/// One kept-alive connection. Used by one request at a time (the pool hands it out exclusively).
final class Connection: @unchecked Sendable {
    let channel: any Channel
    let collector: ResponseCollector
    let presented: PresentedCertificate

    init(channel: any Channel, collector: ResponseCollector, presented: PresentedCertificate) {
        self.channel = channel
        self.collector = collector
        self.presented = presented
    }

    func send(head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount) async throws -> CollectedResponse {
        let channel = self.channel
        let collector = self.collector
        let promise = channel.eventLoop.makePromise(of: CollectedResponse.self)
        channel.eventLoop.execute {
            if let failure = collector.failure { promise.fail(failure); return }
            collector.pending = promise
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(RequestTimeout(seconds: timeout.nanoseconds / 1_000_000_000))
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        return try await promise.futureResult.get()
    }
}

/// Collects one response at a time into a ``CollectedResponse``; fails it if the channel closes.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    var pending: EventLoopPromise<CollectedResponse>?
    /// Set once the channel failed or closed; later requests fail at once instead of waiting.
    var failure: (any Error)?
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(var b):
            body += b.readBytes(length: b.readableBytes) ?? []
        case .end:
            guard let h = head else { return }
            let keepAlive = h.isKeepAlive
            pending?.succeed(CollectedResponse(status: h.status, keepAlive: keepAlive, body: body))
            pending = nil
            head = nil
            body = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if failure == nil { failure = ChannelError.ioOnClosedChannel }
        pending?.fail(failure!)
        pending = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = error }
        pending?.fail(error)
        pending = nil
        context.close(promise: nil)
    }
}
