import ArgumentParser
import Foundation
import Logging
import MicroHTTP
import ServiceLifecycle
import StandbyService

/// `pbs-standby demo`: the service against the built-in simulator, on 127.0.0.1.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the service against the built-in PVE + PBS simulator (no Proxmox needed).")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            let address = try global.listenAddress(configured: nil, fallback: "127.0.0.1:\(defaultPort)")
            let web = try global.webConfig(configured: nil)
            let logger = Logger(label: "pbs-standby")
            let metrics = MetricsEndpoint()
            let app = WebApp(metrics: metrics)
            let server = HTTPServer(configuration: .init(address: address, web: web), router: app.router(),
                                    logger: Logger(label: "pbs-standby.http"))
            do { try server.start() } catch { throw UsageError(message: "\(error)") }
            let scheme = server.isTLS ? "https" : "http"
            let host = address.host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "127.0.0.1"
            print("pbs-standby demo is running. Open:")
            print("  status page  \(scheme)://\(host):\(server.port)/")
            print("  metrics      \(scheme)://\(host):\(server.port)/metrics")
            print("Press Ctrl-C to stop.")
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}
