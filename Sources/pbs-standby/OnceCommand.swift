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

struct OnceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "once", abstract: "One pass: plan, restore, wait; exit 0 when every restore succeeded (for cron).")
    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("give-up-after"),
            help: "Stop waiting for a restore task when PVE is unreachable this long (the task runs on; the next start follows it).")
    var giveUpAfter: String = "10m"

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            guard let giveUp = parseDuration(giveUpAfter), giveUp > .zero else {
                throw UsageError(message: "--give-up-after: expected a positive duration like 10m, got '\(giveUpAfter)'")
            }
            var config = try loadConfig(global)
            let transport = try makeTransport(config)
            config = await detectDatastores(config, transport: transport)
            let runtime = StandbyRuntime(config: config, transport: transport, store: try openStore(config), clock: WallClock())
            let ok = await runtime.reconciler.runOnce(giveUpAfterUnreachable: giveUp.seconds)
            for g in runtime.reconciler.snapshot.guests {
                print("\(g.key.source)/\(g.key.vmid)\t\(g.state.rawValue)\(g.blockedReason.map { "(\($0.rawValue))" } ?? "")\t\(g.restored?.volid ?? "-")")
            }
            if !ok { throw ExitCode(1) }
        }
    }
}
