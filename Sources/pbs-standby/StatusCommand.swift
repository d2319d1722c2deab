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

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the state of every guest (from the running service).",
        discussion: "Exits 1 with a warning when the service cannot write its state file.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the raw JSON.") var json = false

    func run() async throws {
        try await exitOnError {
            let address = try global.listenAddress(configured: nil, fallback: "127.0.0.1:\(defaultPort)")
            let host = address.host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "127.0.0.1"
            let url = URL(string: "http://\(host):\(address.port)/api/v1/status")!
            let data: Data
            do { (data, _) = try await fetchURL(url) } catch {
                // The service is not answering: show what the state file knows.
                guard let config = try? loadConfig(global), let store = try? StateStore(path: config.statePath, exclusive: false) else { throw error }
                FileHandle.standardError.write(Data("service not reachable at \(url); showing the state file \(config.statePath)\n".utf8))
                print("SOURCE\tVMID\tTARGET\tHELD\tFAILED_OVER\tFAILURES\tRESTORED")
                for r in try store.guests().values.sorted(by: { $0.key < $1.key }) {
                    print("\(r.source)\t\(r.vmid)\t\(r.liveVmid ?? r.targetVmid)\t\(r.held)\t\(r.failedOver)\t\(r.consecutiveFailures)\t\(r.restoredVolid ?? "-")")
                }
                return
            }
            if json { FileHandle.standardOutput.write(data); return }
            guard let doc = try? StatusDocument.decode(data) else {
                throw UsageError(message: "\(url): not a pbs-standby status document")
            }
            print("SOURCE\tVMID\tTARGET\tSTATE\tLAG_S\tRESTORED")
            for g in doc.guests {
                print("\(g.source)\t\(g.vmid)\t\(g.targetVmid)\t\(g.state)\t\(g.lagSeconds.map { String(Int($0)) } ?? "-")\t\(g.restored?.volid ?? "-")")
            }
            if !doc.service.state.writable {
                let state = doc.service.state
                FileHandle.standardError.write(Data("warning: the service cannot write its state file (\(state.error ?? "unknown error")); no restore starts until it can, \(state.unsavedWrites) outcome(s) kept in memory\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
