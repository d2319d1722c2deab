import CMicroHTTPD
import Logging
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Limits and options of the embedded server.
public struct HTTPServerConfiguration: Sendable {
    /// Where to listen.
    public var address: ListenAddress
    /// libmicrohttpd worker threads (a thread pool with epoll).
    public var threads: Int = 2
    /// Most open connections at once; more are refused by libmicrohttpd.
    public var connectionLimit: Int = 256
    /// A connection idle this long is closed (slowloris defence), in whole seconds.
    public var idleTimeoutSeconds: Int = 30
    /// Largest accepted request body; more is answered 413. Only a route of a method other than
    /// GET and HEAD takes a body: any other request that announces one is answered 413 before
    /// authentication and before a byte of the body is read.
    public var maxBodyBytes: Int = 1 << 20
    /// Memory per connection for the request line and headers; a longer header is refused (431/413).
    public var connectionMemoryLimit: Int = 64 << 10
    /// How long a graceful stop waits for requests in flight.
    public var shutdownGrace: Duration = .seconds(1)
    /// TLS, basic auth and extra headers (exporter-toolkit web config).
    public var web: WebConfig = WebConfig()
    /// Bodies at least this long are gzip-compressed for clients that accept it.
    public var gzipMinimumBytes: Int = 1024
    /// Bounds on basic auth's bcrypt checks: failures per client, checks at once.
    public var authLimits = BasicAuthenticator.Limits()
    /// Replaces bcrypt (tests count or hold the checks; `@testable` only).
    var passwordVerifier: BasicAuthenticator.Verifier?

    /// A configuration with defaults for everything but the address.
    public init(address: ListenAddress, web: WebConfig = WebConfig()) {
        self.address = address
        self.web = web
    }
}

/// The embedded libmicrohttpd server, run as a swift-service-lifecycle `Service`.
///
/// Handlers run synchronously on libmicrohttpd's threads; they must only read published
/// snapshots (never `await`), so a busy restore loop cannot stall a scrape. `run()` starts the
/// daemon (if ``start()`` was not called yet), parks until graceful shutdown, then stops
/// accepting, lets requests in flight finish (up to `shutdownGrace`) and stops the daemon.
public final class HTTPServer: Service, Sendable {
    /// The configuration the server was created with.
    public let configuration: HTTPServerConfiguration
    let context: ServerContext
    private let state = Mutex<DaemonState>(.init())
    private let logger: Logger

    struct DaemonState: @unchecked Sendable {  // the daemon pointer is only used under the lock
        var daemon: OpaquePointer?
        var context: Unmanaged<ServerContext>?
        var port: UInt16 = 0
        var stopped = false
        /// The listen socket handed back by MHD_quiesce_daemon: ours to close, but only after
        /// MHD_stop_daemon (MHD's threads may still use it until then).
        var quiescedListenFD: Int32 = -1
    }

    /// Creates a server; nothing listens until ``start()`` or ``run()``.
    public init(configuration: HTTPServerConfiguration, router: Router, logger: Logger = Logger(label: "pbs-standby.http")) {
        self.configuration = configuration
        self.logger = logger
        self.context = ServerContext(configuration: configuration, router: router, logger: logger)
    }

    /// The bound port (useful after listening on port 0); 0 before start.
    public var port: UInt16 { state.withLock { $0.port } }

    /// Whether the server speaks TLS.
    public var isTLS: Bool { configuration.web.tls != nil }

    /// Starts listening. Throws naming the reason (address in use, bad TLS material, …).
    public func start() throws(HTTPServerError) {
        let started = try state.withLock { (s: inout DaemonState) throws(HTTPServerError) -> Bool in
            guard s.daemon == nil, !s.stopped else { return false }
            var flags = MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_ITC.rawValue | MHD_USE_EPOLL.rawValue
            let address = configuration.address
            if address.host == nil {
                flags |= MHD_USE_DUAL_STACK.rawValue
            } else if address.isIPv6 {
                flags |= MHD_USE_IPv6.rawValue
            }
            let ctx = Unmanaged.passRetained(context)
            let c = configuration
            let tls = c.web.tls
            errno = 0
            let daemon: OpaquePointer? = address.withSockaddr { sa in
                withOptionalCString(tls?.keyPEM) { key in
                    withOptionalCString(tls?.certificatePEM) { cert in
                        pbs_mhd_start(
                            UInt32(flags), sa, mhdAccessHandler, ctx.toOpaque(),
                            mhdRequestCompleted, ctx.toOpaque(),
                            UInt32(max(1, c.threads)), UInt32(c.connectionLimit),
                            UInt32(c.idleTimeoutSeconds), c.connectionMemoryLimit, key, cert)
                    }
                }
            }
            guard let daemon else {
                let err = errno
                ctx.release()
                let reason = err != 0 ? String(cString: strerror(err)) : "libmicrohttpd returned no daemon"
                throw .startFailed("cannot listen on \(address)\(tls != nil ? " with TLS" : ""): \(reason)")
            }
            s.daemon = daemon
            s.context = ctx
            s.port = pbs_mhd_bound_port(daemon)
            return true
        }
        guard started else { return }
        logger.info("listening", metadata: [
            "address": "\(ListenAddress(host: configuration.address.host, port: port))", "tls": "\(isTLS)"])
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT through the ServiceGroup) or cancellation.
    public func run() async throws {
        try start()
        try? await gracefulShutdown()
        await stopGracefully()
    }

    /// Stops accepting connections, waits up to `shutdownGrace` for requests in flight, stops.
    public func stopGracefully() async {
        let daemon = state.withLock { $0.daemon }
        guard let daemon else { return }
        let listenFD = MHD_quiesce_daemon(daemon)
        if listenFD >= 0 { state.withLock { $0.quiescedListenFD = listenFD } }
        let deadline = ContinuousClock.now.advanced(by: configuration.shutdownGrace)
        while context.inFlight.load(ordering: .acquiring) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        stop()
    }

    /// Stops at once: open connections are closed, worker threads joined.
    public func stop() {
        let (daemon, ctx, listenFD) = state.withLock { s -> (OpaquePointer?, Unmanaged<ServerContext>?, Int32) in
            defer { s.daemon = nil; s.context = nil; s.stopped = true; s.quiescedListenFD = -1 }
            return (s.daemon, s.context, s.quiescedListenFD)
        }
        if let daemon { MHD_stop_daemon(daemon) }
        if listenFD >= 0 { close(listenFD) }
        ctx?.release()
        if daemon != nil { logger.info("stopped") }
    }

    deinit { stop() }
}

private func withOptionalCString<T>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
    guard let s else { return body(nil) }
    return s.withCString { body($0) }
}
