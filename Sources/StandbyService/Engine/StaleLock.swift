import Logging
import ProxmoxAPI
import StandbyCore

/// Clears the stale `lock: create` of our VM where that is provably safe, as an administrator
/// would with `qm unlock` (issue 13, "stale lock"): only with the pvesh transport (pvesh runs as
/// `root@pam`; `skiplock` is root-only, so a token cannot), only for VMs (PVE's API offers no
/// unlock of a container), and only when a fresh read still proves the guest ours, still shows
/// `lock: create`, and no task of its VMID runs. The `digest` of that read guards the write: any
/// change since (an administrator, a new task's config write) makes PVE refuse it.
///
/// The guest is not restored in the pass that clears; the next pass sees the unlocked remains of
/// our failed restore, proves them ours again and restores over them.
struct StaleLockClearer: Sendable {
    let context: EngineContext

    /// Returns whether the lock was cleared.
    func clear(_ slot: Slot, guest: GuestResource, now: Double, adoptedIdentity: String?) async -> Bool {
        let c = context
        guard c.config.proxmox.transport == .pvesh, slot.type == .vm, guest.type == .vm else { return false }
        let (ownership, conf) = await c.observer.ownership(of: slot, guest: guest, node: c.node, adoptedIdentity: adoptedIdentity,
                                                           now: now, fresh: true)
        guard ownership.isOurs, let conf, conf.lock == "create", let digest = conf.digest,
              await c.observer.noTaskRuns(vmid: slot.target, node: c.node, now: now) else { return false }
        let meta: Logger.Metadata = ["source": "\(slot.source)", "vmid": "\(slot.vmid)", "target_vmid": "\(slot.target)"]
        do {
            try await c.client.clearVMLock(node: c.node, vmid: slot.target, digest: digest)
        } catch {
            c.logger.warning("could not clear the stale lock", metadata: meta.merging(["error": "\(error)"]) { a, _ in a })
            return false
        }
        c.observer.invalidate(slot.target)
        c.logger.notice("cleared the stale 'lock: create' of our failed restore's remains (no task runs for the VMID); the next pass restores over them",
                        metadata: meta)
        return true
    }
}
