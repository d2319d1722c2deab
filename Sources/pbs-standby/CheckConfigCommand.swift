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

struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate the configuration and print the effective selection.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Also ask PVE which backups would be restored.") var probe = false

    func run() async throws {
        try await exitOnError {
            var config = try loadConfig(global)
            print("config \(global.configFile) is valid")
            print("transport \(config.proxmox.transport.rawValue) node \(config.proxmox.node) state \(config.statePath)")
            print("workers \(config.restore.workers) poll \(formatDuration(config.restore.pollInterval)) rpo_target \(formatDuration(config.restore.rpoTarget))")
            let d = config.drill
            if let schedule = d.schedule {
                let next = schedule.next(after: Date().timeIntervalSince1970, timeZone: .current).map { iso8601($0) } ?? "never"
                print("drill schedule '\(schedule)' (next \(next)) max_parallel \(d.maxParallel) boot_timeout \(formatDuration(d.bootTimeout)) min_evidence \(d.minEvidence.rawValue) overdue_after \(formatDuration(d.overdueAfter))"
                      + (d.cloneWithoutSnapshots ? " clones into \(d.scratchVmids.map { "\($0.lowerBound)-\($0.upperBound)" } ?? "-")" : ""))
            } else {
                print("drill: no schedule (only `pbs-standby drill`)")
            }
            for src in config.sources {
                print("source \(src.storage) -> target storage \(src.targetStorage ?? "(from backup)") vmid_offset \(src.vmidOffset) priority \(src.priority) rpo_target \(formatDuration(src.rpoTarget ?? config.restore.rpoTarget))")
                if src.targetStorage == nil {
                    // Reference §13.4: a CT restore without `storage` goes to `local`, which a stock
                    // node does not allow for containers; VM disks go to the production storage ids.
                    print("  warning: source \(src.storage) has no target_storage: containers would be restored to 'local' (PVE's default; a stock 'local' refuses container directories) and VM disks to the storage ids recorded in each backup — set target_storage (--probe checks what exists)")
                }
            }
            for (vmid, o) in config.guests.sorted(by: { $0.key < $1.key }) {
                print("guest \(vmid): priority \(o.priority.map(String.init) ?? "-") rpo_target \(o.rpoTarget.map(formatDuration) ?? "-") start_after_restore \(o.startAfterRestore.map { "\($0)" } ?? "-") target_storage \(o.targetStorage ?? "-")"
                      + (o.drill == false ? " drill off" : ""))
            }
            guard probe else { return }
            // The probe only reads (GET): nothing is restored. What PVE would refuse comes from the
            // token's effective privileges, each guest's newest backup config and the node's
            // storages (reference §3.1, §3.2, §13.1, §13.4; StandbyService/RestoreProbe.swift).
            let client = ProxmoxClient(transport: try makeTransport(config))
            config = await detectDatastores(config, transport: client.transport) { print("probe: \($0)") }
            let node = config.proxmox.node
            // The state file, when there is one, tells our own tasks from others' (delta checks).
            let store = FileManager.default.fileExists(atPath: config.statePath) ? try? openStoreShared(config) : nil
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
                    if probed.volid.type == .vm {
                        let copyExists = context.guests?.contains { $0.vmid == s.targetVmid && $0.node == node } ?? false
                        let line = await DeltaProbe.explain(config: config, client: client, store: store, source: src, vmid: vmid,
                                                            backup: probed, copyExists: copyExists)
                        print("    next restore: \(line)")
                    }
                    if config.drillEnabled(vmid: vmid) {
                        let missing = DrillProbe.missing(permissions, targetVmid: s.targetVmid, type: probed.volid.type, node: node, drill: config.drill)
                        print(missing.isEmpty ? "    drill: privileges present" : "    drill: cannot run — " + missing.joined(separator: "; "))
                    }
                    if !reasons.isEmpty { refused += 1 }
                }
            }
            print("\(refused) guest(s) would be refused")
        }
    }
}
