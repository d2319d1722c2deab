import Foundation
import ProxmoxAPI
import StandbyCore

/// The re-check right before a forced restore or a stop: the hold/failover flags, the ownership
/// proof (fresh config and task list), protection, lock, power state and the target storages.
/// PVE's restore takes no `digest`, so a window remains between this read and the POST: one API
/// round trip.
struct Recheck: Sendable {
    let context: EngineContext

    /// Why acting now would be wrong (nil: go ahead).
    func problem(_ action: RestoreAction) async -> String? {
        let c = context
        if let why = try? c.store.frozen(action.key) { return "the guest is \(why)" }
        guard let guests = try? await c.client.guests() else { return "cannot list the guests to re-check the target" }
        if let why = Self.frozenInPVE(action, guests: guests) { return "the guest is \(why) (tag in PVE)" }
        let guest = guests.first { $0.vmid == action.targetVmid }
        let record = try? c.store.guest(action.key)
        let (own, cfg) = await c.observer.ownership(of: action.slot, guest: guest, node: c.node,
                                                    adoptedIdentity: record?.adoptVmid == action.targetVmid ? record?.adoptIdentity : nil,
                                                    now: c.clock.now(), fresh: true)
        guard own.isOurs else {
            if case .notOurs(let why) = own { return "the target is not ours any more: \(why)" }
            return own == .free ? "the target VMID \(action.targetVmid) became free: planned again without force" : "the target's ownership cannot be verified"
        }
        if cfg?.protection == true { return "the target has protection set" }
        if action.force, let problem = await StoragePrecheck(client: c.client, node: c.node)
            .problem(type: action.type, targetStorage: action.settings.targetStorage, volid: action.backup.volid) {
            return problem
        }
        guard let current = try? await c.client.guestStatus(node: c.node, type: action.type, vmid: action.targetVmid) else {
            return "cannot read the target's status"
        }
        if let lock = current.lock { return "the target is locked (\(lock))" }
        if current.status == "running" {
            guard action.stopFirst, await c.observer.startedBy(record?.startUPID, vmid: action.targetVmid, node: c.node, now: c.clock.now()) else {
                return "the target runs and was not started by pbs-standby"
            }
        }
        return nil
    }

    /// The freeze a tag on either slot of the guest carries (hold/failover mirrored in PVE). Tags
    /// on a guest that is not ours freeze nothing we would touch anyway, so they are not proven here.
    static func frozenInPVE(_ action: RestoreAction, guests: [GuestResource]) -> String? {
        let slots = Set([action.targetVmid] + (action.liveVmid.map { [$0] } ?? []))
        return guests.filter { slots.contains($0.vmid) }.compactMap { Marker.freeze(in: $0.tags) }.first
    }
}

/// Whether a forced restore may start on its storages: PVE frees the copy's old disks before it
/// finds a storage missing or inactive (reference §13.4), so every storage the restore writes to —
/// the target storage, or without one the backup's own storage ids (VM `#qmdump#map` lines; a CT
/// defaults to `local`, §13.4) — must exist, be enabled and active on the node and allow the
/// content. Used by the engine and by `failover --latest --replace`.
public struct StoragePrecheck: Sendable {
    let client: ProxmoxClient
    let node: String

    public init(client: ProxmoxClient, node: String) {
        self.client = client
        self.node = node
    }

    /// Why the restore must not start now (nil when all is well).
    public func problem(type: GuestType, targetStorage: String?, volid: Volid) async -> String? {
        var ids: [String]
        if let ts = targetStorage {
            ids = [ts]
        } else if type == .ct {
            ids = ["local"]
        } else {
            guard let text = try? await client.backupConfig(node: node, volid: volid) else {
                return "cannot read the backup's config to check the storages its disks go to (no target_storage set)"
            }
            ids = BackupConfig(parsing: text, type: .vm).diskStorages
        }
        let content = type == .vm ? "images" : "rootdir"
        for id in Set(ids).sorted() {
            guard let st = try? await client.storageStatus(node: node, storage: id) else {
                return "storage '\(id)' does not exist on node \(node): a forced restore would free the copy's disks and then fail"
            }
            guard st.enabled, st.active else {
                return "storage '\(id)' is not \(st.enabled ? "active" : "enabled") on node \(node): a forced restore would free the copy's disks and then fail"
            }
            if !st.content.isEmpty, !st.content.contains(content) {
                return "storage '\(id)' does not allow '\(content)' content"
            }
        }
        return nil
    }
}
