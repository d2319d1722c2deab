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
                if let refused = try await stopIfRunning(type: guest.type, vmid: scratch, &record, clone: true) { return refused }
                let upid = try await c.destroy(node: node, type: guest.type, vmid: scratch)
                env.recordTask(upid, on: scratch, in: &record)
                let status = try await env.follow(upid)
                return status == "OK" ? nil : "the clone VMID \(scratch) could not be destroyed: \(status)"
            }
            guard let snapshot = record.snapshot else { return nil }
            let vmid = record.targetVmid
            // Only this drill's own snapshot (its description names the drill): one left by an
            // earlier drill or an operator is never rolled back to.
            // Compared without surrounding whitespace: pve-container returns a CT snapshot's
            // description with the newline of its config line (LXC/Config.pm:1175), qemu-server without.
            let want = DrillEnvironment.snapshotDescription(drill: record.id ?? 0)
            let ours = try await c.snapshotList(node: node, type: type, vmid: vmid)
                .contains { $0.name == snapshot && $0.description.trimmingCharacters(in: .whitespacesAndNewlines) == want }
            guard ours else {
                // Never taken (nothing changed: the NICs change only after it), or rolled back and
                // removed already (a crash after the rollback): then the new vmgenid is recorded.
                if record.tasks.contains(":qmrollback:") || record.tasks.contains(":vzrollback:") {
                    try await rerecordIdentity(record, type: type)
                    return nil
                }
                // Started by the drill, yet no snapshot of the drill to go back to: never guess.
                if record.tasks.contains(":qmstart:") || record.tasks.contains(":vzstart:") {
                    return "VMID \(vmid) was started by the drill but its snapshot \(snapshot) of this drill is not there: not rolled back"
                }
                return nil
            }
            if let refused = try await stopIfRunning(type: type, vmid: vmid, &record) { return refused }
            let rollback = try await c.rollbackSnapshot(node: node, type: type, vmid: vmid, name: snapshot)
            env.recordTask(rollback, on: vmid, in: &record)
            let rolled = try await env.follow(rollback)
            guard rolled == "OK" || rolled.hasPrefix("WARNINGS") else { return "the rollback of VMID \(vmid) to \(snapshot) failed: \(rolled)" }
            // At once: the copy is proven ours again even if what follows fails or the process dies.
            try await rerecordIdentity(record, type: type)
            await reapplyFreezeTag(record)
            let delete = try await c.deleteSnapshot(node: node, type: type, vmid: vmid, name: snapshot)
            env.recordTask(delete, on: vmid, in: &record)
            let deleted = try await env.follow(delete)
            guard deleted == "OK" else { return "VMID \(vmid) was rolled back, but its snapshot \(snapshot) could not be removed: \(deleted)" }
            if let plan { return try await compare(plan, type: type, vmid: vmid) }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Finishes every drill left open by a process that no longer runs (a crash, a kill, a
    /// power loss, a `pbs-standby drill` stopped with Ctrl-C): before any restore at start, and
    /// by the service on every pass. Returns the records ended.
    public func finishOpenDrills(skipping skip: Set<GuestKey> = []) async -> [DrillRecord] {
        let env = environment
        var ended: [DrillRecord] = []
        for var r in (try? env.store.openDrills()) ?? [] where !r.processAlive && !skip.contains(r.key) {
            // Claimed first (one transaction): a failover, a `drill` or another pass cleaning the
            // same record at the same time would roll back twice.
            guard (try? env.store.claimDrill(&r)) == true else { continue }
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

    /// Stops the drilled guest hard when it runs — but a failed-over copy only when the newest
    /// start of its VMID is the drill's own (a failover may have started it meanwhile: that guest
    /// serves now and is never stopped). Returns why it was not stopped, or nil.
    private func stopIfRunning(type: GuestType, vmid: Int, _ record: inout DrillRecord, clone: Bool = false) async throws -> String? {
        let env = environment
        guard try await env.client.guestStatus(node: env.node, type: type, vmid: vmid).status == "running" else { return nil }
        if !clone, try env.store.frozen(record.key) == "failed over" {
            let starts = try await env.client.tasks(node: env.node, vmid: vmid, limit: 50)
                .filter { ["qmstart", "vzstart"].contains($0.upid.type) }.max { $0.upid.startTime < $1.upid.startTime }
            guard let newest = starts, record.tasks.contains(newest.upid.description) else {
                return "VMID \(vmid) is failed over and was started by someone else after the drill: not stopped, not rolled back (the drill's snapshot stays)"
            }
        }
        let upid = try await env.client.stop(node: env.node, type: type, vmid: vmid)
        env.recordTask(upid, on: vmid, in: &record)
        _ = try await env.follow(upid)
        return nil
    }

    /// A rollback restores the tags of the snapshot (PVE keeps only `description` across it): a
    /// hold or failover that arrived during the drill is tagged on the copy again.
    /// Best effort, as every tag mirror: the state file holds the flag.
    private func reapplyFreezeTag(_ record: DrillRecord) async {
        let env = environment
        guard let g = try? env.store.guest(record.key) else { return }
        do {
            if g.failedOver { try await env.operations.mirror(Marker.failedOverTag, on: record.key, set: true) }
            if g.held { try await env.operations.mirror(Marker.heldTag, on: record.key, set: true) }
        } catch {
            env.logger.warning("the freeze tag could not be put back after a drill's rollback (the state file holds the flag)",
                               metadata: ["vmid": "\(record.targetVmid)", "error": "\(error)"])
        }
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
    /// design (`vmgenid`, the marker's copy of it in `description`, `digest`) and the freeze tags
    /// a hold or failover during the drill put back (`tags`).
    private func compare(_ plan: DrillPlan, type: GuestType, vmid: Int) async throws -> String? {
        let env = environment
        let after = try await env.client.guestConfig(node: env.node, type: type, vmid: vmid).raw
        let ignored: Set<String> = ["vmgenid", "description", "digest", "tags"]
        let keys = Set(after.keys).union(plan.configBefore.keys).subtracting(ignored)
        let changed = keys.filter { after[$0] != plan.configBefore[$0] }.sorted()
        return changed.isEmpty ? nil : "the config of VMID \(vmid) differs after the rollback: \(changed.joined(separator: ", "))"
    }
}
