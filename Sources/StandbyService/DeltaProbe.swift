import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// `check-config --probe`: whether the next restore of a guest would be a delta or a full one,
/// and why (issue 15, "Configuration"). The same checks and content guard as the delta executor,
/// reading only.
public enum DeltaProbe {
    /// One line: `delta: 3 of 2048 chunks changed (12 MiB)`, `full: first copy`, or
    /// `full (reason): detail`.
    public static func explain(config: StandbyConfig, client: ProxmoxClient, store: StateStore?, source: StandbyConfig.Source,
                               vmid: Int, backup: BackupEntry, copyExists: Bool) async -> String {
        guard source.deltaEnabled else { return "full: delta restores are off for \(source.storage)" }
        guard copyExists else { return "full: first copy (no copy at the target VMID yet)" }
        let settings = config.effective(source: source, vmid: vmid)
        let action = RestoreAction(key: GuestKey(source: source.storage, vmid: vmid), type: backup.volid.type, node: config.proxmox.node,
                                   backup: backup, settings: settings, force: true)
        let checks = DeltaEligibility(client: client, node: config.proxmox.node, store: store, keeper: IndexKeeper(statePath: config.statePath))
        switch await checks.check(action, source: source) {
        case .fallback(let reason, let why):
            return "full (\(reason.rawValue)): \(why)"
        case .eligible(let job):
            if let modified = ContentGuard.check(job) { return "full (\(DeltaFallback.copyModified.rawValue)): \(modified)" }
            let bytes = job.disks.reduce(UInt64(0)) { $0 + $1.plan.changedBytes }
            return "delta: \(job.chunksChanged) of \(job.chunksTotal) chunks changed (\(StatusPage.bytes(Int64(bytes))))"
                + (job.snapshots ? "" : ", without a snapshot (delta_without_snapshot)")
        }
    }
}
