import ArgumentParser
import Foundation
import Logging
import MicroHTTP
import ProxmoxSimulator
import ServiceLifecycle
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore

/// `pbs-standby demo`: the real service (same code as `run`) against the in-process simulator on
/// an accelerated clock, on 127.0.0.1.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the service against the built-in PVE + PBS simulator (no Proxmox needed).")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Simulated seconds per real second (default 60: one real second is a simulated minute).")
    var speed: Double = 60

    @Option(help: "Replace the built-in 12-guest scenario by a generated fleet of this many guests (load tests).")
    var guests: Int?

    @Option(help: "Restore workers.")
    var workers: Int = 2

    func run() async throws {
        global.bootstrapLogging()
        keepLargeBuffersOffTheHeap()
        try await exitOnError {
            guard speed > 0 else { throw UsageError(message: "--speed must be positive") }
            let address = try global.listenAddress(configured: nil, fallback: "127.0.0.1:\(defaultPort)")
            let web = try global.webConfig(configured: nil)
            let statePath = global.statePath ?? (NSTemporaryDirectory() + "pbs-standby-demo-\(getpid())/state.db")
            if let g = guests, !(1...100_000).contains(g) { throw UsageError(message: "--guests must be 1…100000") }
            var scenario = guests.map { Scenario.generated(count: $0) } ?? Scenario.demo()
            if guests == nil {
                // Real bytes for the built-in scenario: a PBS datastore and disk images (16 MiB each)
                // next to the state file, so VM copies are kept up to date by delta restores.
                let dir = (statePath as NSString).deletingLastPathComponent
                scenario.datastoreDirectory = dir + "/datastore"
                scenario.imageDirectory = dir + "/images"
            }
            let simClock = AcceleratedClock(speed: speed)
            let clock = simClock  // the engine and the simulator share one accelerated clock
            let simulator = PVESimulator(scenario: scenario, clock: simClock)
            var config = StandbyRuntime.demoConfig(scenario: scenario, statePath: statePath)
            // DR drills every 20 simulated minutes (20 s at the default speed): the report fills
            // within a minute or two of the start. Only the demo drills: the tests' engines share
            // demoConfig and drill only where a test asks for it.
            config.drill.schedule = try? CalendarEvent(parsing: "*:0/20")
            config.drill.maxParallel = 2
            config.restore.workers = max(1, workers)
            let store: StateStore
            do { store = try StateStore(path: statePath) } catch { throw UsageError(message: "--state.path: \(error)") }
            let runtime = StandbyRuntime(config: config, transport: InProcessTransport(simulator: simulator), store: store, clock: clock)
            let server = HTTPServer(configuration: .init(address: address, web: web), router: runtime.webApp(clock: clock).router(),
                                    logger: Logger(label: "pbs-standby.http"))
            do { try server.start() } catch { throw UsageError(message: "\(error)") }
            let scheme = server.isTLS ? "https" : "http"
            let host = address.host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "127.0.0.1"
            let base = "\(scheme)://\(host):\(server.port)"
            let text = """
                pbs-standby demo: \(scenario.backedUp.count) backed-up guests, simulated time runs \(Int(speed))x faster.
                State file: \(statePath)
                Open:
                  status page  \(base)/
                  status JSON  \(base)/api/v1/status
                  metrics      \(base)/metrics
                  DR drills    \(base)/drills   (every 20 simulated minutes; the copy of 107 does not boot)
                Guest 106's restores fail, 104 is a hand-made guest that is never touched, and the node
                has too little free memory for a failover of everything (see the page's first line).
                Press Ctrl-C to stop.

                """
            FileHandle.standardOutput.write(Data(text.utf8))
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: server), .init(service: runtime.reconciler)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "pbs-standby")))
            try await group.run()
        }
    }
}
