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

    @Option(name: .customLong("state-dir"), help: ArgumentHelp(
        "Keep the simulator's state here: saved at SIGTERM/SIGINT, resumed at the next start (guests, tasks, journal, token, TLS certificate).",
        discussion: "Stands in for a pveproxy restart: PVE's tasks and guests outlive it. Start again with the same scenario and listen address."))
    var stateDir: String?

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
            let store = stateDir.map { SimulatorStateDir(path: $0) }
            let saved = try store?.loadState()
            if saved != nil, start != nil {
                throw UsageError(message: "--start: \(store!.statePath) exists; the simulator resumes at its saved time")
            }
            var epoch = try start.map(Self.parseStart) ?? Date().timeIntervalSince1970
            if let saved {
                // Time went on while the simulator was down, unless it only moves by hand.
                epoch = manualClock ? saved.time : saved.time + max(0, Date().timeIntervalSince1970 - saved.savedAt) * speed
            }
            let clock: any EngineClock = manualClock ? ManualClock(start: epoch) : AcceleratedClock(epoch: epoch, speed: speed)
            let token = ProcessInfo.processInfo.environment["PBS_STANDBY_SIM_TOKEN"].flatMap { try? APIToken(parsing: $0) }
            let simulator: PVESimulator
            if let saved {
                do { simulator = try PVESimulator(scenario: scenario, clock: clock, saved: saved, token: token) } catch {
                    throw UsageError(message: "--state-dir: \(store!.statePath): \(error)")
                }
            } else {
                simulator = PVESimulator(scenario: scenario, clock: clock, token: token)
            }
            let certificate = tls ? try store?.certificate() : nil
            let server = try SimulatorServer(simulator: simulator, address: address, tls: tls, certificate: certificate)
            let url = try server.start()
            let lines = "url=\(url)\ntoken=\(simulator.token.fullText)\nfingerprint=\(server.fingerprint ?? "")\nnode=\(scenario.node)\n"
            FileHandle.standardOutput.write(Data(lines.utf8))
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: SimulatorService(server: server, store: store))], gracefulShutdownSignals: [.sigterm, .sigint],
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

/// Serves until graceful shutdown, then stops the server and, with `--state-dir`, saves the
/// state once no request can change it any more.
private struct SimulatorService: Service {
    let server: SimulatorServer
    let store: SimulatorStateDir?

    func run() async throws {
        try? await gracefulShutdown()
        server.stop()
        do { try store?.save(server.simulator.saved()) } catch {
            FileHandle.standardError.write(Data("pbs-standby simulator: cannot save the state: \(error)\n".utf8))
        }
    }
}

/// `--state-dir`: `state.json` (written at stop) and `certificate.json` (the TLS certificate and
/// key, made at the first start and served at every later one, so pinned fingerprints hold).
/// Both mode 0600: they hold the token's secret and the private key.
struct SimulatorStateDir {
    let path: String
    var statePath: String { path + "/state.json" }
    var certificatePath: String { path + "/certificate.json" }

    func loadState() throws -> PVESimulator.Saved? {
        guard let data = FileManager.default.contents(atPath: statePath) else { return nil }
        do { return try JSONDecoder().decode(PVESimulator.Saved.self, from: data) } catch {
            throw UsageError(message: "--state-dir: \(statePath) is not a saved simulator state: \(error)")
        }
    }

    func certificate() throws -> SelfSignedCertificate {
        if let data = FileManager.default.contents(atPath: certificatePath) {
            do { return try JSONDecoder().decode(SelfSignedCertificate.self, from: data) } catch {
                throw UsageError(message: "--state-dir: \(certificatePath) is not a saved certificate: \(error)")
            }
        }
        let made = try SelfSignedCertificate.generate()
        try write(JSONEncoder().encode(made), to: certificatePath)
        return made
    }

    func save(_ saved: PVESimulator.Saved) throws {
        try write(JSONEncoder().encode(saved), to: statePath)
    }

    private func write(_ data: Data, to file: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = file + ".tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
                throw SimulatorError("cannot write \(temporary)")
            }
            guard rename(temporary, file) == 0 else { throw SimulatorError("cannot rename \(temporary) to \(file): \(String(cString: strerror(errno)))") }
        } catch let error as UsageError {
            throw error
        } catch {
            throw UsageError(message: "--state-dir: \(error)")
        }
    }
}
