import ProxmoxAPI
import StandbyCore

/// The privileges a DR drill needs (issue 16 "Privileges"), for `check-config --probe`:
/// `VM.Snapshot` (qemu-server/pve-container snapshot create and delete), `VM.Snapshot.Rollback`
/// (rollback), `VM.Config.Network` (`link_down` on each `netN`), `VM.PowerMgmt` (start, stop),
/// for VMs `VM.GuestAgent.Audit` (or `.Unrestricted`) on PVE 9 (`VM.Monitor` before; qemu-server API2/Qemu/Agent.pm),
/// with clone drills `VM.Clone` on the copy and `VM.Allocate` on the scratch VMIDs, and
/// `Sys.Audit` on the node for the free-memory check (pve-manager API2/Nodes.pm `status`).
public enum DrillProbe {
    /// The missing privileges for drilling the copy at `targetVmid` (empty: none; nil map: root@pam).
    public static func missing(_ perms: PVEPermissionMap?, targetVmid: Int, type: GuestType, node: String, drill: StandbyConfig.Drill) -> [String] {
        guard let perms else { return [] }
        func has(_ priv: String, _ path: String) -> Bool { PVEPermissions.has(priv, at: path, in: perms) }
        let vm = "/vms/\(targetVmid)"
        var out: [String] = []
        for priv in ["VM.Snapshot", "VM.Snapshot.Rollback", "VM.Config.Network", "VM.PowerMgmt"] where !has(priv, vm) {
            out.append("missing \(priv) on \(vm)")
        }
        // qemu-server API2/Qemu/Agent.pm: `ping`, `get-osinfo`, `get-host-name` need
        // VM.GuestAgent.Audit or VM.GuestAgent.Unrestricted (PVE 9); PVE 8 asked for VM.Monitor.
        if type == .vm, !has("VM.GuestAgent.Audit", vm), !has("VM.GuestAgent.Unrestricted", vm), !has("VM.Monitor", vm) {
            out.append("missing VM.GuestAgent.Audit (PVE 9; VM.Monitor before) on \(vm): the guest agent cannot be asked")
        }
        if drill.cloneWithoutSnapshots, let scratch = drill.scratchVmids {
            if !has("VM.Clone", vm) { out.append("missing VM.Clone on \(vm) (drill.clone_without_snapshots)") }
            if !has("VM.Allocate", "/vms/\(scratch.lowerBound)") { out.append("missing VM.Allocate on /vms/\(scratch.lowerBound)… (drill.scratch_vmids)") }
        }
        if !has("Sys.Audit", "/nodes/\(node)") { out.append("missing Sys.Audit on /nodes/\(node): the node's free memory cannot be checked") }
        return out
    }
}
