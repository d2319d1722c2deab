import ArgumentParser
import ConfigSupport
import Foundation
import Logging
import MicroHTTP
import ProxmoxAPI
import ServiceLifecycle
import StandbyCore
import StandbyService
import StandbyStore

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the service: keep the standby restored, serve metrics and status.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        global.bootstrapLogging()
        // A file-size limit (ulimit -f, LimitFSIZE=) must surface as a failed state write, which
        // the engine reports and survives, not as SIGXFSZ killing the service mid-restore.
        signal(SIGXFSZ, SIG_IGN)
        keepLargeBuffersOffTheHeap()
        try await exitOnError {
            var config = try loadConfig(global)
            let address = try global.listenAddress(configured: config.webListenAddress)
            let web = try global.webConfig(configured: config.webConfigFile)
            let transport = try makeTransport(config)
            config = await detectDatastores(config, transport: transport)
            let store = try openStore(config)
            let clock = WallClock()
            let runtime = StandbyRuntime(config: config, transport: transport, store: store, clock: clock)
            let server = HTTPServer(configuration: .init(address: address, web: web), router: runtime.webApp(clock: clock).router(),
                                    logger: Logger(label: "pbs-standby.http"))
            do { try server.start() } catch { throw UsageError(message: "\(error)") }
            if let warning = server.configuration.exposureWarning() { Logger(label: "pbs-standby.http").warning("\(warning)") }
            Logger(label: "pbs-standby").info("pbs-standby started", metadata: [
                "endpoint": "\(transport.endpointDescription)", "node": "\(config.proxmox.node)", "state": "\(config.statePath)"])
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: server), .init(service: runtime.reconciler)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "pbs-standby")))
            try await group.run()
        }
    }
}
