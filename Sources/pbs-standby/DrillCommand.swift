import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// `drill`: a DR drill now (issue 16) — each named guest's copy snapshotted, isolated
/// (`link_down=1` on every NIC), started, its boot proved, stopped and rolled back; or with
/// `--dry-run` what would happen; or with `--report` the drill report from the state file.
struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill", abstract: "Prove that standby copies boot: isolated test boots, rolled back afterwards.",
        discussion: "Safe beside the running service: a drill is recorded in the state file before it changes anything, the service's restores of a drilled guest wait, and a restore already running makes the drill skip the guest.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID (or --all).") var guests: [String] = []
    @Flag(help: "Every guest with a standby copy that drills apply to.") var all = false
    @Flag(name: .customLong("dry-run"), help: "Say per guest whether it would be drilled (snapshot or clone, evidence) or why not; change nothing.")
    var dryRun = false
    @Flag(help: "Print the drill report (every guest's latest drill and its evidence) and exit.") var report = false

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            if report { return try await printReport() }
            guard all || !guests.isEmpty else { throw UsageError(message: "name the guests to drill, or --all (or --report)") }
            let ctx = try await GuestCommandContext(global, all ? [] : guests)
            let keys: [GuestKey] = all
                ? try ctx.store.guests().values.filter { $0.restoredVolid != nil && ctx.config.drillEnabled(vmid: $0.vmid) }.map(\.key).sorted()
                : ctx.matches.map(\.key)
            let env = DrillEnvironment(operations: ctx.operations, clock: WallClock())
            var ok = true
            if dryRun {
                for key in keys {
                    switch await env.preflight(key) {
                    case .success(let p):
                        print("\(key): would drill VMID \(p.copyVmid) (\(p.volid)): \(p.clone ? "full clone into drill.scratch_vmids" : "snapshot \(DrillEnvironment.snapshotName)"), "
                              + "\(p.isolation.count) NIC(s) link_down=1, evidence \(p.evidence.rawValue), \(p.memory >> 20) MiB")
                    case .failure(let skip):
                        print("\(key): would skip — \(skip.reason.rawValue): \(skip.detail)")
                    }
                }
                return
            }
            for r in await DrillCleanup(environment: env).finishOpenDrills() { print("cleaned up interrupted drill \(r.id ?? 0) of \(r.key): \(r.reason ?? "")") }
            for key in keys {
                guard let r = await DrillRunner(environment: env).run(key, scheduled: false, onStep: { print($0) }) else {
                    print("\(key): not drilled (the state file cannot be written)")
                    ok = false
                    continue
                }
                if r.outcome == .failed || r.outcome == .aborted { ok = false }
            }
            if !ok { throw ExitCode(1) }
        }
    }

    /// The report from the state file (no service needed; names from PVE when it answers).
    private func printReport() async throws {
        let config = try loadConfig(global)
        let store = try openStoreShared(config)
        let latest = try store.latestDrills()
        let names = Dictionary(((try? await ProxmoxClient(transport: try makeTransport(config)).guests()) ?? []).map { ($0.vmid, $0.name ?? "") }) { a, _ in a }
        let rows = try store.guests().values.filter { config.drillEnabled(vmid: $0.vmid) && ($0.restoredVolid != nil || latest[$0.key] != nil) }
            .sorted { $0.key < $1.key }.map { g in
                let vmid = g.liveVmid ?? g.targetVmid
                let type = g.restoredVolid.flatMap(Volid.init(parsing:))?.type.rawValue ?? latest[g.key]?.latest.type ?? "vm"
                return DrillReport.Row(source: g.source, vmid: g.vmid, type: type, name: names[vmid].flatMap { $0.isEmpty ? nil : $0 } ?? "guest \(g.vmid)",
                                       targetVmid: vmid, drill: StatusDocument.Drill(StatusSnapshot.Drill(latest[g.key])))
            }
        print(DrillReport.text(rows, node: config.proxmox.node, now: Date().timeIntervalSince1970), terminator: "")
    }
}
