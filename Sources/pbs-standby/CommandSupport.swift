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

/// Loads and validates the config; errors name the key and line (exit 2).
func loadConfig(_ global: GlobalOptions) throws -> StandbyConfig {
    var config: StandbyConfig
    guard let text = try? String(contentsOfFile: global.configFile, encoding: .utf8) else {
        throw UsageError(message: "\(global.configFile): cannot read the config file '\(global.configFile)'")
    }
    do { config = try StandbyConfig.parse(yaml: text, hostName: ProcessInfo.processInfo.hostName) } catch {
        throw UsageError(message: "\(global.configFile): \(error)")
    }
    if let p = global.statePath { config.statePath = p }
    return config
}

func openStore(_ config: StandbyConfig) throws -> StateStore {
    do { return try StateStore(path: config.statePath) } catch { throw UsageError(message: "\(error)") }
}

func makeTransport(_ config: StandbyConfig) throws -> any ProxmoxTransport {
    do { return try StandbyRuntime.transport(for: config) } catch { throw UsageError(message: "\(error)") }
}

/// GET over plain HTTP to the local service.
func fetchURL(_ url: URL) async throws -> (Data, Int) {
    let host = (url.host ?? "127.0.0.1").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    let answer: (status: Int, body: [UInt8])
    do { answer = try LocalHTTP.get(host: host, port: url.port ?? 80, path: url.path) } catch {
        throw UsageError(message: "cannot read \(url): \(error) (is the service running?)")
    }
    guard answer.status == 200 else {
        throw UsageError(message: "cannot read \(url): HTTP \(answer.status)\(answer.status == 401 ? " (basic auth is configured: use the JSON endpoint with credentials)" : "")")
    }
    return (Data(answer.body), answer.status)
}

/// Opens the state file for a short CLI change while the service may hold its lock: the CLI
/// waits for no lock and uses SQLite's own locking.
func openStoreShared(_ config: StandbyConfig) throws -> StateStore {
    do { return try StateStore(path: config.statePath, exclusive: false) } catch { throw UsageError(message: "\(error)") }
}

/// Fills in `datastore_path` of sources whose PBS runs on this node (``DatastoreDetection``),
/// logging what was found. `PBS_STANDBY_DATASTORE_CFG` names another `datastore.cfg` (tests).
func detectDatastores(_ config: StandbyConfig, transport: any ProxmoxTransport, say: ((String) -> Void)? = nil) async -> StandbyConfig {
    let file = ProcessInfo.processInfo.environment["PBS_STANDBY_DATASTORE_CFG"] ?? "/etc/proxmox-backup/datastore.cfg"
    let (resolved, notes) = await DatastoreDetection.resolve(config, client: ProxmoxClient(transport: transport), datastoreCfg: file)
    let logger = Logger(label: "pbs-standby")
    for n in notes { if let say { say(n) } else { logger.info("\(n)") } }
    return resolved
}
