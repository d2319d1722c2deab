import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// Undoes a drill from its record alone (so a restart after a crash, or a failover, can do it):
/// stop the guest hard, roll back to the drill's snapshot (PVE's snapshot holds the config: the
/// NICs' links come back up), remove the snapshot, and re-record the copy's identity (a rollback
/// gives a VM a new `vmgenid`); a clone drill's clone is stopped and destroyed — only when it
/// carries our clone marker. Each step is skipped when PVE shows it done, so running it twice is
/// harmless. Returns nil when the copy is as before, else what is left.
public struct DrillCleanup: Sendable {
    /// What the cleanup acts through.
    public let environment: DrillEnvironment
    /// A cleanup acting through `environment`.
    public init(environment: DrillEnvironment) { self.environment = environment }

    /// Cleans up after `record`'s drill; with `plan`, also checks the config is what it was.
    public func clean(_ record: inout DrillRecord, plan: DrillPlan? = nil) async -> String? {
        let env = environment, c = env.client, node = env.node
        let type = GuestType(rawValue: record.type) ?? .vm
        do {
            if let scratch = record.cloneVmid {
                guard let guest = try await c.guests().first(where: { $0.vmid == scratch }) else { return nil }
                let cfg = try await c.guestConfig(node: node, type: guest.type, vmid: scratch)
                guard cfg.description?.contains(DrillEnvironment.cloneMarker(drill: record.id ?? 0, of: record.targetVmid)) == true else {
                    return nil  // not our clone (the clone task never created it; someone else's guest now)
                }
                try await stopIfRunning(type: guest.type, vmid: scratch, &record)
                let upid = try await c.destroy(node: node, type: guest.type, vmid: scratch)
                env.recordTask(upid, on: scratch, in: &record)
                let status = try await env.follow(upid)
                return status == "OK" ? nil : "the clone VMID \(scratch) could not be destroyed: \(status)"
            }
            guard let snapshot = record.snapshot else { return nil }
            let vmid = record.targetVmid
            guard try await c.snapshots(node: node, type: type, vmid: vmid).contains(snapshot) else {
                // No snapshot: it was never taken (nothing was changed: the NICs change only after it).
                return nil
            }
            try await stopIfRunning(type: type, vmid: vmid, &record)
            let rollback = try await c.rollbackSnapshot(node: node, type: type, vmid: vmid, name: snapshot)
            env.recordTask(rollback, on: vmid, in: &record)
            let rolled = try await env.follow(rollback)
            guard rolled == "OK" || rolled.hasPrefix("WARNINGS") else { return "the rollback of VMID \(vmid) to \(snapshot) failed: \(rolled)" }
            let delete = try await c.deleteSnapshot(node: node, type: type, vmid: vmid, name: snapshot)
            env.recordTask(delete, on: vmid, in: &record)
            let deleted = try await env.follow(delete)
            guard deleted == "OK" else { return "VMID \(vmid) was rolled back, but its snapshot \(snapshot) could not be removed: \(deleted)" }
            try await rerecordIdentity(record, type: type)
            if let plan { return try await compare(plan, type: type, vmid: vmid) }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Finishes every drill left open by a process that no longer runs (a crash, a kill, a
    /// power loss): before any restore at start. Returns the records ended.
    public func finishOpenDrills() async -> [DrillRecord] {
        let env = environment
        var ended: [DrillRecord] = []
        for var r in (try? env.store.openDrills()) ?? [] where !r.processAlive {
            let problem = await clean(&r)
            if let problem {
                try? env.store.setDrillBlocked(r.key, targetVmid: r.targetVmid, "drill \(r.id ?? 0) of VMID \(r.targetVmid) was interrupted; its cleanup failed: \(problem)")
            }
            r.result = DrillResult.aborted.rawValue
            r.reason = "interrupted (the process running it ended); cleaned up at start" + (problem.map { "; cleanup failed: \($0)" } ?? "")
            r.finishedAt = env.clock.now()
            try? env.store.saveDrill(r)
            env.logger.warning("an interrupted drill was cleaned up", metadata: ["vmid": "\(r.vmid)", "drill": "\(r.id ?? 0)", "error": "\(problem ?? "")"])
            ended.append(r)
        }
        return ended
    }

    private func stopIfRunning(type: GuestType, vmid: Int, _ record: inout DrillRecord) async throws {
        let env = environment
        guard try await env.client.guestStatus(node: env.node, type: type, vmid: vmid).status == "running" else { return }
        let upid = try await env.client.stop(node: env.node, type: type, vmid: vmid)
        env.recordTask(upid, on: vmid, in: &record)
        _ = try await env.follow(upid)
    }

    /// A rollback gives a VM a new `vmgenid` (qemu-server `snapshot_rollback`): the copy's marker
    /// and the state file take it, so the copy is still proven ours.
    private func rerecordIdentity(_ record: DrillRecord, type: GuestType) async throws {
        guard type == .vm else { return }
        let env = environment, vmid = record.targetVmid
        let cfg = try await env.client.guestConfig(node: env.node, type: .vm, vmid: vmid)
        guard let genid = cfg.raw["vmgenid"], var info = Marker.parse(cfg.description) else { return }
        if info.vmgenid != genid {
            info.vmgenid = genid
            try await env.client.setDescription(node: env.node, vmid: vmid, description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
        }
        try env.store.update(record.key, targetVmid: vmid) { $0.vmgenid = genid }
    }

    /// The config after the drill equals the one before, but for what a rollback changes by
    /// design (`vmgenid`, the marker's copy of it in `description`, `digest`).
    private func compare(_ plan: DrillPlan, type: GuestType, vmid: Int) async throws -> String? {
        let env = environment
        let after = try await env.client.guestConfig(node: env.node, type: type, vmid: vmid).raw
        let ignored: Set<String> = ["vmgenid", "description", "digest"]
        let keys = Set(after.keys).union(plan.configBefore.keys).subtracting(ignored)
        let changed = keys.filter { after[$0] != plan.configBefore[$0] }.sorted()
        return changed.isEmpty ? nil : "the config of VMID \(vmid) differs after the rollback: \(changed.joined(separator: ", "))"
    }
}
