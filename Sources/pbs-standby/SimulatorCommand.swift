import ArgumentParser
import ConfigSupport
import Foundation
import Logging
import MicroHTTP
import ProxmoxAPI
import ProxmoxSimulator
import ServiceLifecycle

/// `pbs-standby simulator`: serves the PVE + PBS simulator over HTTP(S) for tests and trials.
struct SimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulator",
        abstract: "Serve the built-in PVE + PBS simulator over HTTP(S).",
        discussion: "Prints url=…, token=… and fingerprint=… lines, then serves until SIGTERM/SIGINT.")

    @Option(name: .customLong("web.listen-address"), help: "Where the simulated PVE API listens.")
    var listenAddress: String = "127.0.0.1:8006"

    @Flag(help: "Serve HTTPS with a self-signed certificate generated at start.")
    var tls = false

    @Option(help: "Scenario YAML file (default: the built-in demo scenario).")
    var scenario: String?

    @Option(help: "Simulated seconds per real second (1 = real time).")
    var speed: Double = 1

    @Option(help: "Serve a generated fleet of this many guests instead of the built-in scenario.")
    var guests: Int?

    @Flag(name: .customLong("manual-clock"), help: "Freeze time; advance it with POST /_sim/advance?seconds=N.")
    var manualClock = false

    @Option(help: "Simulated time at start: RFC 3339 (2026-11-27T12:00:00Z) or Unix seconds (default: now).")
    var start: String?

    @Option(name: .customLong("log.level"), help: "debug, info, warn or error.")
    var logLevel: String = "info"

    func run() async throws {
        try await exitOnError {
            let scenario: Scenario
            if let path = self.scenario {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw UsageError(message: "--scenario: cannot read '\(path)'")
                }
                do { scenario = try Scenario.parse(yaml: text) } catch { throw UsageError(message: "\(path): \(error)") }
            } else if let guests {
                guard (1...100_000).contains(guests) else { throw UsageError(message: "--guests must be 1…100000") }
                scenario = .generated(count: guests)
            } else {
                scenario = .demo()
            }
            guard speed > 0 else { throw UsageError(message: "--speed must be positive") }
            let address: ListenAddress
            do { address = try ListenAddress(parsing: listenAddress) } catch { throw UsageError(message: "--web.listen-address: \(error)") }
            let epoch = try start.map(Self.parseStart) ?? Date().timeIntervalSince1970
            let clock: any SimClock = manualClock ? ManualClock(start: epoch) : AcceleratedClock(epoch: epoch, speed: speed)
            let token = ProcessInfo.processInfo.environment["PBS_STANDBY_SIM_TOKEN"].flatMap { try? APIToken(parsing: $0) }
            let simulator = PVESimulator(scenario: scenario, clock: clock, token: token)
            let server = try SimulatorServer(simulator: simulator, address: address, tls: tls)
            let url = try server.start()
            let lines = "url=\(url)\ntoken=\(simulator.token.fullText)\nfingerprint=\(server.fingerprint ?? "")\nnode=\(scenario.node)\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: SimulatorService(server: server))], gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "pbs-standby.simulator")))
            try await group.run()
        }
    }
}

extension SimulatorCommand {
    /// `--start`: RFC 3339 with a zone, or Unix seconds.
    static func parseStart(_ text: String) throws -> Double {
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 { return seconds }
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date.timeIntervalSince1970 }
        formatter.formatOptions.insert(.withFractionalSeconds)
        if let date = formatter.date(from: text) { return date.timeIntervalSince1970 }
        throw UsageError(message: "--start: '\(text)' is neither RFC 3339 with a zone (2026-11-27T12:00:00Z) nor Unix seconds")
    }
}

/// Serves until graceful shutdown, then stops whichever listener is current (outages replace it).
private struct SimulatorService: Service {
    let server: SimulatorServer

    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
    }
}
