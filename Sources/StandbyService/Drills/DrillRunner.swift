import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// One DR drill of one guest (issue 16 §3–§5): recorded → snapshot (or full clone) → every NIC
/// `link_down=1`, checked → start → evidence (agent ping, or running without stopping) → hard
/// stop → rollback → snapshot removed (or clone destroyed) → the copy's identity re-recorded →
/// config compared with before → recorded with its result. Each step that changes PVE comes
/// after the record that lets a later start clean it up.
public struct DrillRunner: Sendable {
    /// What the drill acts through.
    public let environment: DrillEnvironment
    /// A drill acting through `environment`.
    public init(environment: DrillEnvironment) { self.environment = environment }

    /// Runs a drill of `key`, or records why not (a transient reason of a scheduled drill is
    /// returned without a record: the drill is tried again later). Returns the record.
    public func run(_ key: GuestKey, scheduled: Bool, onStep: @Sendable (String) -> Void = { _ in }) async -> DrillRecord? {
        let env = environment, started = env.clock.now()
        let plan: DrillPlan
        switch await env.preflight(key) {
        case .failure(let skip):
            if scheduled && skip.transient { return nil }
            return record(skip: skip, key: key, at: started, scheduled: scheduled)
        case .success(let p): plan = p
        }
        var r = DrillRecord(source: key.source, vmid: key.vmid, type: plan.type.rawValue, targetVmid: plan.copyVmid, volid: plan.volid,
                            startedAt: started, scheduled: scheduled)
        // The record goes in before the first call that changes anything (and atomically refuses
        // a drill while a restore of the guest is recorded as running).
        do {
            guard let begun = try env.store.beginDrillIfIdle(r) else {
                let skip: DrillSkip
                if let why = try env.store.frozen(key) {
                    skip = DrillSkip(reason: why == "held" ? .held : .failedOver, detail: "the guest is \(why)")
                } else if try env.store.guests().values.contains(where: \.failedOver) {
                    skip = DrillSkip(reason: .failedOver, detail: "drills pause while a guest is failed over")
                } else {
                    skip = DrillSkip(reason: .restoring, detail: "a restore or another drill of the guest began meanwhile")
                }
                if scheduled && skip.transient { return nil }
                return record(skip: skip, key: key, at: started, scheduled: scheduled)
            }
            r = begun
        } catch {
            env.logger.error("drill not started: it cannot be recorded in the state file first", metadata: ["vmid": "\(key.vmid)", "error": "\(error)"])
            return nil
        }
        let meta: Logger.Metadata = ["vmid": "\(key.vmid)", "source": "\(key.source)", "target_vmid": "\(plan.copyVmid)", "drill": "\(r.id ?? 0)"]
        env.logger.info("drill starting", metadata: meta)
        onStep("drill of \(key) (VMID \(plan.copyVmid), \(plan.volid)) starting")
        var outcome = await boot(plan, &r, onStep: onStep)
        if Task.isCancelled {
            // Cancelled outright (not a graceful stop): PVE calls fail now. The record stays open,
            // and the next start of any pbs-standby undoes the drill before any restore.
            env.logger.warning("drill interrupted; its cleanup runs at the next start", metadata: meta)
            return r
        }
        let cleanup = await DrillCleanup(environment: env).clean(&r, plan: plan)
        if Task.isCancelled {
            // Cancelled during the cleanup: what failed is the cancellation, not PVE. Left open
            // for the next start (not blocked).
            env.logger.warning("drill cleanup interrupted; it runs again at the next start", metadata: meta)
            return r
        }
        if let problem = cleanup {
            try? env.store.setDrillBlocked(key, targetVmid: plan.copyVmid, "drill \(r.id ?? 0) of VMID \(plan.copyVmid): \(problem)")
            outcome = (outcome.result == .passed ? .failed : outcome.result, [outcome.reason, "cleanup failed: \(problem)"].compactMap { $0 }.joined(separator: "; "))
            env.logger.error("drill cleanup failed: the copy is blocked until `pbs-standby resume`", metadata: meta.merging(["error": "\(problem)"]) { $1 })
        }
        r.result = outcome.result.rawValue
        r.reason = outcome.reason
        r.finishedAt = env.clock.now()
        try? env.store.saveDrill(r)
        env.logger.info("drill ended", metadata: meta.merging(["result": "\(r.result)", "reason": "\(r.reason ?? "")"]) { $1 })
        onStep("drill of \(key): \(r.result)\(r.reason.map { " (\($0))" } ?? "")\(r.bootSeconds.map { String(format: ", booted in %.0f s", $0) } ?? "")")
        return r
    }

    private func record(skip: DrillSkip, key: GuestKey, at: Double, scheduled: Bool) -> DrillRecord? {
        let env = environment
        let type = (try? env.store.guest(key))?.restoredVolid.flatMap(Volid.init(parsing:))?.type ?? .vm
        var r = DrillRecord(source: key.source, vmid: key.vmid, type: type.rawValue,
                            targetVmid: (try? env.store.guest(key))?.liveVmid ?? key.vmid,
                            volid: (try? env.store.guest(key))?.restoredVolid, startedAt: at, scheduled: scheduled)
        r.result = DrillResult.skipped.rawValue
        r.reason = "\(skip.reason.rawValue): \(skip.detail)"
        r.finishedAt = at
        return try? env.store.beginDrill(r)
    }

    /// Snapshot or clone, isolate, start, and wait for the evidence. Returns the result so far.
    private func boot(_ plan: DrillPlan, _ r: inout DrillRecord, onStep: @Sendable (String) -> Void) async -> (result: DrillResult, reason: String?) {
        let env = environment, c = env.client, node = env.node
        var vmid = plan.copyVmid
        do {
            if plan.clone {
                guard let scratch = try await freeScratchVmid() else { return (.skipped, "\(DrillSkipReason.noScratchVmid.rawValue): no free VMID in drill.scratch_vmids") }
                r.cloneVmid = scratch
                try env.store.saveDrill(r)
                let upid = try await c.clone(node: node, type: plan.type, vmid: plan.copyVmid, newid: scratch, name: "drill-\(plan.copyVmid)",
                                             description: DrillEnvironment.cloneMarker(drill: r.id ?? 0, of: plan.copyVmid))
                // The clone task runs under the copy's VMID (it reads the copy): ours there, so a
                // delta restore does not count it as touching the copy.
                env.recordTask(upid, on: plan.copyVmid, in: &r)
                guard try await env.follow(upid) == "OK" else { return (.aborted, "the clone into VMID \(scratch) failed") }
                vmid = scratch
                onStep("  cloned into scratch VMID \(scratch)")
            } else {
                // Still stopped and not frozen right before the first change (a failover may have
                // started the copy since the preflight; the drill's record now makes it wait).
                if let why = try env.store.frozen(r.key) { return (.aborted, "the guest is \(why)") }
                if try await c.guestStatus(node: node, type: plan.type, vmid: vmid).status != "stopped" {
                    return (.aborted, "VMID \(vmid) was started meanwhile")
                }
                r.snapshot = DrillEnvironment.snapshotName
                try env.store.saveDrill(r)
                let upid = try await c.createSnapshot(node: node, type: plan.type, vmid: vmid, name: DrillEnvironment.snapshotName,
                                                      description: DrillEnvironment.snapshotDescription(drill: r.id ?? 0))
                env.recordTask(upid, on: vmid, in: &r)
                let status = try await env.follow(upid)
                guard status == "OK" else {
                    if status.contains("snapshot feature is not available") {
                        r.snapshot = nil
                        return (.skipped, "\(DrillSkipReason.noSnapshots.rawValue): \(status)")
                    }
                    return (.aborted, "the snapshot failed: \(status)")
                }
                onStep("  snapshot \(DrillEnvironment.snapshotName) taken")
            }
            // Isolate: every NIC link down, then read back — never start a guest that shows a NIC without it.
            // A VM also gets `freeze: 1`: QEMU starts with its CPUs stopped (qemu-server
            // QemuServer.pm:3455 `-S`), PVE sets the links down over QMP after the launch
            // (:5995-6000) — so no instruction of the guest (PXE firmware included) runs before its
            // links are down; the drill resumes it after the start task. The rollback undoes both.
            let before = try await c.guestConfig(node: node, type: plan.type, vmid: vmid)
            var changes = before.raw.filter { DrillIsolation.numbered($0.key, "net") != nil }.mapValues(DrillIsolation.linkDown)
            let nics = changes.count
            if plan.type == .vm { changes["freeze"] = "1" }
            if !changes.isEmpty { try await c.updateConfig(node: node, type: plan.type, vmid: vmid, set: changes, digest: before.digest) }
            let isolated = try await c.guestConfig(node: node, type: plan.type, vmid: vmid)
            guard DrillIsolation.isIsolated(isolated.raw), case .isolatable = DrillIsolation.verdict(type: plan.type, config: isolated.raw),
                  plan.type == .ct || isolated.raw["freeze"] == "1" else {
                return (.aborted, "VMID \(vmid) is not isolated after setting link_down=1; not started")
            }
            onStep("  \(nics) NIC(s) set link_down=1")
            if let why = try env.store.frozen(r.key) { return (.aborted, "the guest is \(why)") }
            if let why = env.abort() { return (.aborted, why) }
            let start = try await c.start(node: node, type: plan.type, vmid: vmid)
            env.recordTask(start, on: vmid, in: &r)
            let startStatus = try await env.follow(start)
            guard startStatus == "OK" || startStatus.hasPrefix("WARNINGS") else {
                // Not enough memory on the node is the host's problem, not the copy's.
                let host = ["Cannot allocate memory", "out of memory", "not enough memory"].contains { startStatus.localizedCaseInsensitiveContains($0) }
                return (host ? .aborted : .failed, "the start failed: \(startStatus)")
            }
            if plan.type == .vm {
                let resume = try await c.resume(node: node, vmid: vmid)
                env.recordTask(resume, on: vmid, in: &r)
                let resumed = try await env.follow(resume)
                guard resumed == "OK" else { return (.failed, "the resume after the frozen start failed: \(resumed)") }
            }
            onStep("  started; waiting for \(plan.evidence == .agent ? "the guest agent" : "\(Int(env.config.drill.runningSeconds.seconds)) s of running")")
            return await evidence(plan, vmid: vmid, &r)
        } catch is CancellationError {
            return (.aborted, "the service stopped")
        } catch {
            return (.aborted, "\(error)")
        }
    }

    /// Waits for the evidence of a boot until `drill.boot_timeout`: a VM with the agent enabled
    /// must answer `agent/ping` ("agent never answered" fails it); without the agent the guest must
    /// run `drill.running_seconds` without stopping. A guest that stops by itself fails.
    private func evidence(_ plan: DrillPlan, vmid: Int, _ r: inout DrillRecord) async -> (result: DrillResult, reason: String?) {
        let env = environment, c = env.client, t0 = env.clock.now()
        let timeout = env.config.drill.bootTimeout.seconds, needRunning = env.config.drill.runningSeconds.seconds
        while true {
            if Task.isCancelled { return (.aborted, "the service stopped") }
            if let why = try? env.store.frozen(r.key) { return (.aborted, "the guest is \(why)") }
            if let why = env.abort() { return (.aborted, why) }
            let elapsed = env.clock.now() - t0
            if let status = try? await c.guestStatus(node: env.node, type: plan.type, vmid: vmid), status.status == "stopped" {
                return (.failed, String(format: "stopped by itself %.0f s after its start (did not boot)", elapsed))
            }
            switch plan.evidence {
            case .agent:
                if (try? await c.agentPing(node: env.node, vmid: vmid)) != nil {
                    let facts = await c.agentFacts(node: env.node, vmid: vmid)
                    r.evidence = DrillEvidence.agent.rawValue
                    r.bootSeconds = env.clock.now() - t0
                    r.osInfo = facts.os
                    r.hostName = facts.hostName
                    try? env.store.saveDrill(r)
                    return (.passed, nil)
                }
                if elapsed >= timeout { return (.failed, "the guest agent never answered within \(Int(timeout)) s (boot timeout)") }
            case .running:
                if elapsed >= needRunning {
                    r.evidence = DrillEvidence.running.rawValue
                    r.bootSeconds = elapsed
                    try? env.store.saveDrill(r)
                    return (.passed, nil)
                }
            }
            do { try await env.clock.sleep(2) } catch { return (.aborted, "the service stopped") }
        }
    }

    /// A VMID of `drill.scratch_vmids` that no guest uses and no guest record targets.
    private func freeScratchVmid() async throws -> Int? {
        let env = environment
        guard let range = env.config.drill.scratchVmids else { return nil }
        let used = Set(try await env.client.guests().map(\.vmid))
        let targets = Set(((try? env.store.guests()) ?? [:]).values.flatMap { [$0.targetVmid, $0.liveVmid].compactMap { $0 } })
        return range.first { !used.contains($0) && !targets.contains($0) }
    }
}
