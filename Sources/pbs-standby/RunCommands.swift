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
            let config = try loadConfig(global)
            let address = try global.listenAddress(configured: config.webListenAddress)
            let web = try global.webConfig(configured: config.webConfigFile)
            let transport = try makeTransport(config)
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
            let config = try loadConfig(global)
            let runtime = StandbyRuntime(config: config, transport: try makeTransport(config), store: try openStore(config), clock: WallClock())
            let ok = await runtime.reconciler.runOnce(giveUpAfterUnreachable: giveUp.seconds)
            for g in runtime.reconciler.snapshot.guests {
                print("\(g.key.source)/\(g.key.vmid)\t\(g.state.rawValue)\(g.blockedReason.map { "(\($0.rawValue))" } ?? "")\t\(g.restored?.volid ?? "-")")
            }
            if !ok { throw ExitCode(1) }
        }
    }
}

struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate the configuration and print the effective selection.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Also ask PVE which backups would be restored.") var probe = false

    func run() async throws {
        try await exitOnError {
            let config = try loadConfig(global)
            print("config \(global.configFile) is valid")
            print("transport \(config.proxmox.transport.rawValue) node \(config.proxmox.node) state \(config.statePath)")
            print("workers \(config.restore.workers) poll \(formatDuration(config.restore.pollInterval)) rpo_target \(formatDuration(config.restore.rpoTarget))")
            for src in config.sources {
                print("source \(src.storage) -> target storage \(src.targetStorage ?? "(from backup)") vmid_offset \(src.vmidOffset) priority \(src.priority) rpo_target \(formatDuration(src.rpoTarget ?? config.restore.rpoTarget))")
                if src.targetStorage == nil {
                    // Reference §13.4: a CT restore without `storage` goes to `local`, which a stock
                    // node does not allow for containers; VM disks go to the production storage ids.
                    print("  warning: source \(src.storage) has no target_storage: containers would be restored to 'local' (PVE's default; a stock 'local' refuses container directories) and VM disks to the storage ids recorded in each backup — set target_storage (--probe checks what exists)")
                }
            }
            for (vmid, o) in config.guests.sorted(by: { $0.key < $1.key }) {
                print("guest \(vmid): priority \(o.priority.map(String.init) ?? "-") rpo_target \(o.rpoTarget.map(formatDuration) ?? "-") start_after_restore \(o.startAfterRestore.map { "\($0)" } ?? "-") target_storage \(o.targetStorage ?? "-")")
            }
            guard probe else { return }
            // The probe only reads (GET): nothing is restored. What PVE would refuse comes from the
            // token's effective privileges, each guest's newest backup config and the node's
            // storages (reference §3.1, §3.2, §13.1, §13.4; StandbyService/RestoreProbe.swift).
            let client = ProxmoxClient(transport: try makeTransport(config))
            let node = config.proxmox.node
            var permissions: PVEPermissionMap?
            if config.proxmox.transport == .pvesh {
                print("probe: pvesh runs as root@pam: no privilege can be missing")
            } else {
                do {
                    let p = try await client.permissions()
                    permissions = p
                    print("probe: the token's privileges read from GET /access/permissions (\(p.count) paths)")
                    if !PVEPermissions.has("Sys.Audit", at: "/nodes/\(node)", in: p) {
                        print("probe: missing Sys.Audit on /nodes/\(node): PVE lists only the token's own tasks, so container copies, "
                              + "a VM's failed-restore remains and copies started by pbs-standby cannot be proven ours (blocked not_owned)")
                    }
                } catch {
                    print("probe: the token's privileges cannot be read (GET /access/permissions: \(error)); privileges not checked")
                }
            }
            let storages: [StorageInfo]
            do { storages = try await client.storages(node: node) } catch {
                throw UsageError(message: "probe: the storages of node \(node) cannot be listed (GET /nodes/\(node)/storage): \(error)")
            }
            let context = RestoreProbe.Context(permissions: permissions, storages: Dictionary(storages.map { ($0.storage, $0) }) { a, _ in a },
                                               guests: try? await client.guests(), node: node)
            var refused = 0
            for src in config.sources {
                let entries: [BackupEntry]
                do { entries = try await client.backups(node: node, storage: src.storage) } catch {
                    throw UsageError(message: "probe of \(src.storage): \(error)")
                }
                let byVmid = Dictionary(grouping: entries, by: { $0.volid.vmid })
                for vmid in byVmid.keys.sorted() where src.include.contains(vmid) && !src.exclude.contains(vmid) {
                    let s = config.effective(source: src, vmid: vmid)
                    let latest = newestEligible(byVmid[vmid]!, now: Date().timeIntervalSince1970, settle: config.restore.settle.seconds,
                                                requireVerified: config.restore.requireVerified)
                    print("  \(src.storage)/\(vmid) -> vmid \(s.targetVmid) on \(s.targetStorage ?? "(from backup)") priority \(s.priority) rpo \(formatDuration(s.rpoTarget)): newest \(latest?.volid.description ?? "none eligible")")
                    // The newest complete backup when none is eligible yet: its config is what the
                    // next one most likely carries.
                    guard let probed = latest ?? byVmid[vmid]!.filter(\.isComplete).max(by: { $0.volid.backupTime < $1.volid.backupTime }) else { continue }
                    var text: String?
                    do { text = try await client.backupConfig(node: node, volid: probed.volid) } catch {
                        print("    the backup's config cannot be read (GET /nodes/\(node)/vzdump/extractconfig?volume=\(probed.volid)): \(error); its bridges, mount points, devices and disks not checked")
                    }
                    let reasons = RestoreProbe.refusals(volid: probed.volid, config: text, settings: s, pool: src.pool, context: context)
                    for r in reasons { print("    would be refused: \(r)") }
                    if !reasons.isEmpty { refused += 1 }
                }
            }
            print("\(refused) guest(s) would be refused")
        }
    }
}

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
            guard let doc = try? JSONValue.parse(Array(data), path: "/api/v1/status"), let guests = doc["guests"]?.array else {
                throw UsageError(message: "\(url): not a pbs-standby status document")
            }
            print("SOURCE\tVMID\tTARGET\tSTATE\tLAG_S\tRESTORED")
            for g in guests {
                print("\(g["source"]?.string ?? "")\t\(g["vmid"]?.string ?? "")\t\(g["target_vmid"]?.string ?? "")\t\(g["state"]?.string ?? "")\t\(g["lag_seconds"]?.int.map(String.init) ?? "-")\t\(g["restored"]?["volid"]?.string ?? "-")")
            }
            if let state = doc["service"]?["state"], state["writable"]?.bool == false {
                let unsaved = state["unsaved_writes"]?.int ?? 0
                FileHandle.standardError.write(Data("warning: the service cannot write its state file (\(state["error"]?.string ?? "unknown error")); no restore starts until it can, \(unsaved) outcome(s) kept in memory\n".utf8))
                throw ExitCode(1)
            }
        }
    }
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

