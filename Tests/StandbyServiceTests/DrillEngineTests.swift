import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import ServiceLifecycle
import StandbyCore
import StandbyService
import StandbyStore
import Synchronization
import TestSupport
import Testing

/// Issue 16 through the real drill code against the in-process simulator (virtual time): every
/// outcome, isolation proved from the journal, the copy as it was afterwards, restores waiting,
/// cleanup after a crash, failover aborting a drill, a failed cleanup blocking the guest.
@Suite("DR drills through the engine")
struct DrillEngineTests {
    static let vm = GuestKey(source: "pbs-prod", vmid: 101)
    static let ct = GuestKey(source: "pbs-prod", vmid: 201)

    static func guests(extraVM: [String: String] = [:], storage: String = "local-lvm") -> [Scenario.BackedUpGuest] {
        var vm = Scenario.BackedUpGuest(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [4 * Rig.gib], interval: 3600)
        vm.bridges = ["vmbr0", "vmbr1"]
        vm.extraConfig = extraVM
        var ct = Scenario.BackedUpGuest(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * Rig.gib], interval: 3600, offset: 600)
        ct.bridges = ["vmbr0"]
        return [vm, ct]
    }

    /// A rig whose copies exist (one pass restored them), with the given boot behaviours.
    static func rig(boot: [Int: Scenario.BootBehaviour], extraVM: [String: String] = [:], storageType: String = "lvmthin",
                    configure: (inout StandbyConfig) -> Void = { _ in }) async throws -> Rig {
        var s = Rig.scenario(backedUp: guests(extraVM: extraVM))
        s.targetStorages = [.init(id: "local-lvm", type: storageType, total: 4 << 40)]
        s.boot = boot
        let rig = try Rig(scenario: s) { c in
            SafetyRegressionTests.configure(&c)
            c.drill.bootTimeout = .seconds(300)
            c.drill.runningSeconds = .seconds(30)
            configure(&c)
        }
        #expect(await rig.once())
        return rig
    }

    /// Runs a drill while simulated time moves.
    static func drill(_ rig: Rig, _ key: GuestKey) async -> DrillRecord? {
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 2); try? await Task.sleep(for: .milliseconds(2)) } }
        defer { ticking.cancel() }
        return await DrillRunner(environment: DrillEnvironment(operations: rig.operations, clock: rig.clock)).run(key, scheduled: false)
    }

    static func config(_ rig: Rig, _ vmid: Int, _ type: GuestType) async throws -> [String: String] {
        try await rig.runtime.client.guestConfig(node: rig.config.proxmox.node, type: type, vmid: vmid).raw
    }

    /// The journal proves isolation: replaying the NIC values of each config change (and a
    /// rollback's return to the values before), every start of the VMID saw `link_down=1` on every NIC.
    static func everyStartWasIsolated(_ rig: Rig, vmid: Int, before: [String: String]) -> (starts: Int, isolated: Bool) {
        var nets = before.filter { DrillIsolation.numbered($0.key, "net") != nil }
        var starts = 0, isolated = true
        for e in rig.mutations(vmid: vmid) where e.status == 200 {
            if e.method == "PUT", e.path.hasSuffix("/config") {
                for (k, v) in e.parameters where DrillIsolation.numbered(k, "net") != nil { nets[k] = v }
            } else if e.method == "POST", e.path.hasSuffix("/rollback") {
                nets = before.filter { DrillIsolation.numbered($0.key, "net") != nil }
            } else if e.method == "POST", e.path.hasSuffix("/status/start") {
                starts += 1
                if !DrillIsolation.isIsolated(nets) || nets.isEmpty { isolated = false }
            }
        }
        return (starts, isolated)
    }

    /// Agent evidence: passed with the boot time, isolated at start, rolled back to the same
    /// config (but the new vmgenid, recorded so the copy is still proven ours), snapshot removed.
    @Test func passesWithTheAgentAndLeavesTheCopyAsItWas() async throws {
        let rig = try await Self.rig(boot: [101: .init(bootSeconds: 20, agent: true)], extraVM: ["agent": "1"])
        let before = try await Self.config(rig, 101, .vm)
        #expect(before["net0"]?.contains("bridge=vmbr0") == true && before["net1"] != nil, "the copy has two NICs: \(before)")
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .passed && r.evidence == "agent", "\(r)")
        // Measured from the start task's end as the drill saw it (polled every simulated second
        // while the test clock moves in 2 s steps): the simulated 20 s boot, give or take the steps.
        #expect((r.bootSeconds ?? 0) >= 15 && (r.bootSeconds ?? 0) < 40, "\(r.bootSeconds ?? -1)")
        #expect(r.osInfo?.isEmpty == false && r.hostName?.isEmpty == false, "get-osinfo and get-host-name recorded")
        let proof = Self.everyStartWasIsolated(rig, vmid: 101, before: before)
        #expect(proof.starts == 1 && proof.isolated)
        // Started frozen (`freeze: 1`: no guest instruction before PVE sets the links down), then resumed.
        let calls = rig.mutations(vmid: 101).filter { $0.status == 200 }
        let freeze = try #require(calls.firstIndex { $0.method == "PUT" && $0.parameters["freeze"] == "1" })
        let start = try #require(calls.firstIndex { $0.path.hasSuffix("/status/start") })
        let resume = try #require(calls.firstIndex { $0.path.hasSuffix("/status/resume") })
        #expect(freeze < start && start < resume)
        let after = try await Self.config(rig, 101, .vm)
        let same = Set(before.keys).union(after.keys).subtracting(["vmgenid", "description", "digest"]).filter { before[$0] != after[$0] }
        #expect(same.isEmpty, "config differs after the drill: \(same)")
        #expect(try await rig.runtime.client.snapshots(node: rig.config.proxmox.node, vmid: 101).isEmpty, "snapshot removed")
        #expect(rig.simulator.guestSnapshot(101)?.status == "stopped")
        // Still ours: the next pass restores nothing and blocks nothing.
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.guest(101)?.state == .idle, "\(String(describing: rig.guest(101)))")
        #expect(try rig.store.guest(Self.vm)?.vmgenid == after["vmgenid"], "the new vmgenid is recorded")
    }

    /// Without an agent (a CT): "running" evidence, weaker, after `running_seconds`.
    @Test func containerPassesOnRunning() async throws {
        let rig = try await Self.rig(boot: [201: .init(bootSeconds: 5)])
        let before = try await Self.config(rig, 201, .ct)
        let r = try #require(await Self.drill(rig, Self.ct))
        #expect(r.outcome == .passed && r.evidence == "running" && (r.bootSeconds ?? 0) >= 30, "\(r)")
        #expect(Self.everyStartWasIsolated(rig, vmid: 201, before: before).isolated)
        #expect(try await Self.config(rig, 201, .ct).filter { $0.key != "digest" } == before.filter { $0.key != "digest" })
    }

    /// A guest that powers off fails, and is rolled back.
    @Test func aGuestThatDoesNotBootFails() async throws {
        let rig = try await Self.rig(boot: [101: .init(bootSeconds: 8, mode: .fails)])
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .failed && r.reason?.contains("stopped by itself") == true, "\(r)")
        #expect(rig.mutations(vmid: 101).contains { $0.path.hasSuffix("/rollback") && $0.status == 200 })
        #expect(try await rig.runtime.client.snapshots(node: rig.config.proxmox.node, vmid: 101).isEmpty)
    }

    /// An agent that never answers: failed at the boot timeout, stopped hard and rolled back.
    @Test func aHangingGuestTimesOutAndIsRolledBack() async throws {
        let rig = try await Self.rig(boot: [101: .init(agent: true, mode: .hangs)], extraVM: ["agent": "1"])
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .failed && r.reason?.contains("never answered") == true, "\(r)")
        let paths = rig.mutations(vmid: 101).filter { $0.status == 200 }.map(\.path)
        let stop = try #require(paths.lastIndex { $0.hasSuffix("/status/stop") }), rollback = try #require(paths.lastIndex { $0.hasSuffix("/rollback") })
        #expect(stop < rollback, "stopped before the rollback")
        #expect(rig.simulator.guestSnapshot(101)?.status == "stopped")
    }

    /// Host reach that a link flag cannot cut: skipped, nothing changed in PVE.
    @Test func notIsolatableIsSkippedUntouched() async throws {
        let rig = try await Self.rig(boot: [:], extraVM: ["hostpci0": "0000:01:00.0"])
        let count = rig.mutations(vmid: 101).filter { $0.method != "GET" }.count
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .skipped && r.reason?.hasPrefix("not_isolatable: hostpci0") == true, "\(r)")
        #expect(rig.mutations(vmid: 101).filter { $0.method != "GET" }.count == count, "no call changed PVE")
    }

    /// Storage without snapshots: skipped `no_snapshots`; with clone drills a full clone into the
    /// scratch range is drilled and destroyed, the copy itself never started.
    @Test func noSnapshotsSkipsOrClones() async throws {
        let plain = try await Self.rig(boot: [:], storageType: "dir")
        let skipped = try #require(await Self.drill(plain, Self.vm))
        #expect(skipped.outcome == .skipped && skipped.reason?.hasPrefix("no_snapshots") == true, "\(skipped)")
        let cloning = try await Self.rig(boot: [990_000: .init(bootSeconds: 5)], storageType: "dir") { c in
            c.drill.scratchVmids = 990_000...990_009
            c.drill.cloneWithoutSnapshots = true
        }
        let r = try #require(await Self.drill(cloning, Self.vm))
        #expect(r.outcome == .passed && r.cloneVmid == 990_000, "\(r)")
        #expect(cloning.simulator.guestSnapshot(990_000) == nil, "the clone is destroyed")
        #expect(!cloning.mutations(vmid: 101).contains { $0.path.hasSuffix("/status/start") }, "the copy itself never started")
    }

    /// Held, failed-over, restoring: refused (skipped with the reason), nothing changed.
    @Test func heldAndFailedOverGuestsAreNotDrilled() async throws {
        let rig = try await Self.rig(boot: [:])
        try rig.store.update(Self.vm, targetVmid: 101) { $0.held = true }
        #expect(try #require(await Self.drill(rig, Self.vm)).reason?.hasPrefix("held") == true)
        try rig.store.update(Self.vm, targetVmid: 101) { $0.held = false; $0.failedOver = true }
        #expect(try #require(await Self.drill(rig, Self.vm)).reason?.hasPrefix("failed_over") == true)
        let other = try #require(await Self.drill(rig, Self.ct))
        #expect(other.reason?.contains("pause while a guest is failed over") == true, "every drill pauses during a failover: \(other)")
        #expect(!rig.simulator.journal().contains { $0.path.hasSuffix("/snapshot") && $0.method == "POST" })
    }

    /// While a guest is drilled its restore waits (state `drilling`); a restore recorded as
    /// running refuses a drill in the same transaction.
    @Test func restoresWaitForADrillAndADrillForARestore() async throws {
        let rig = try await Self.rig(boot: [101: .init(agent: true, mode: .hangs)], extraVM: ["agent": "1"])
        rig.clock.advance(by: 3600)  // a newer backup is due
        let open = try #require(try rig.store.beginDrillIfIdle(DrillRecord(source: "pbs-prod", vmid: 101, type: "vm", targetVmid: 101,
                                                                           volid: nil, startedAt: rig.clock.now(), scheduled: false)))
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.guest(101)?.state == .drilling,
                "\(rig.restores(vmid: 101).count) \(String(describing: rig.guest(101)?.state)) \(String(describing: rig.guest(101)?.lastError))")
        var ended = open
        ended.result = DrillResult.aborted.rawValue
        ended.finishedAt = rig.clock.now()
        try rig.store.saveDrill(ended)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 2, "restored once the drill ended")
        _ = try rig.store.beginRestore(Self.vm, targetVmid: 101, volid: "x", bytes: 1, at: rig.clock.now())
        #expect(try rig.store.beginDrillIfIdle(DrillRecord(source: "pbs-prod", vmid: 101, type: "vm", targetVmid: 101, volid: nil,
                                                           startedAt: rig.clock.now(), scheduled: false)) == nil)
    }

    /// A drill left open by a dead process (snapshot taken, NICs down, guest running) is undone
    /// at the next start before any restore.
    @Test func anInterruptedDrillIsCleanedUpBeforeAnyRestore() async throws {
        let rig = try await Self.rig(boot: [101: .init(agent: true, mode: .hangs)], extraVM: ["agent": "1"])
        let before = try await Self.config(rig, 101, .vm)
        let c = rig.runtime.client, node = rig.config.proxmox.node
        var r = try #require(try rig.store.beginDrillIfIdle(DrillRecord(source: "pbs-prod", vmid: 101, type: "vm", targetVmid: 101,
                                                                        volid: nil, startedAt: rig.clock.now(), scheduled: true)))
        r.pid = 999_999  // a process that is gone
        r.snapshot = DrillEnvironment.snapshotName
        try rig.store.saveDrill(r)
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 2); try? await Task.sleep(for: .milliseconds(2)) } }
        _ = try await c.createSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName, description: DrillEnvironment.snapshotDescription(drill: r.id ?? 0))
        var deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let names = (try? await c.snapshots(node: node, vmid: 101)) ?? []
            if rig.simulator.guestSnapshot(101)?.lock == nil && names.contains(DrillEnvironment.snapshotName) { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let cfg = try await c.guestConfig(node: node, type: .vm, vmid: 101)
        try await c.updateConfig(node: node, type: .vm, vmid: 101, set: ["net0": DrillIsolation.linkDown(before["net0"]!)], digest: cfg.digest)
        _ = try await c.start(node: node, type: .vm, vmid: 101)
        deadline = Date().addingTimeInterval(20)
        while rig.simulator.guestSnapshot(101)?.status != "running", Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        ticking.cancel()
        rig.clock.advance(by: 3600)  // a newer backup: the pass would restore
        let mark = rig.simulator.journal().count
        let ticking2 = Task { while !Task.isCancelled { rig.clock.advance(by: 2); try? await Task.sleep(for: .milliseconds(2)) } }
        await rig.once()
        ticking2.cancel()
        let after = Array(rig.simulator.journal()[mark...]).filter { $0.vmid == 101 && $0.status == 200 }.map { "\($0.method) \($0.path)" }
        let rollback = try #require(after.firstIndex { $0.hasSuffix("/rollback") }, "\(after)")
        let restore = try #require(after.firstIndex { $0 == "POST /nodes/\(node)/qemu" }, "\(after)")
        #expect(rollback < restore, "cleanup before the restore: \(after)")
        let closed = try rig.store.drills(Self.vm).first
        #expect(closed?.outcome == .aborted && closed?.reason?.contains("cleaned up at start") == true)
    }

    /// `failover` of a guest being drilled aborts the drill (stop, rollback: links up) and then starts it.
    @Test func failoverAbortsADrillFirst() async throws {
        let rig = try await Self.rig(boot: [101: .init(agent: true, mode: .hangs)], extraVM: ["agent": "1"])
        let before = try await Self.config(rig, 101, .vm)
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 1); try? await Task.sleep(for: .milliseconds(5)) } }
        defer { ticking.cancel() }
        async let drilled = DrillRunner(environment: DrillEnvironment(operations: rig.operations, clock: rig.clock)).run(Self.vm, scheduled: false)
        while rig.simulator.guestSnapshot(101)?.status != "running" { try await Task.sleep(for: .milliseconds(10)) }
        let lines = Mutex<[String]>([])
        let ok = try await Failover(operations: rig.operations).run([Self.vm], options: .init()) { l in lines.withLock { $0.append(l) } }
        let r = await drilled
        #expect(ok, "\(lines.withLock { $0 })")
        #expect(r?.outcome == .aborted && r?.reason?.contains("failed over") == true, "\(String(describing: r))")
        let nets = try await Self.config(rig, 101, .vm).filter { DrillIsolation.numbered($0.key, "net") != nil }
        #expect(nets == before.filter { DrillIsolation.numbered($0.key, "net") != nil }, "links up again: \(nets)")
        let deadline = Date().addingTimeInterval(10)
        while rig.simulator.guestSnapshot(101)?.status != "running", Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(rig.simulator.guestSnapshot(101)?.status == "running", "started by the failover")
    }

    /// A rollback that fails blocks the guest (`drill_cleanup`): no restore over it until `resume`.
    @Test func aFailedCleanupBlocksTheGuest() async throws {
        let rig = try await Self.rig(boot: [101: .init(bootSeconds: 5)])
        rig.simulator.addFault(.init(method: "POST", path: "/rollback", status: 500, message: "simulated rollback failure", times: 10))
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .failed && r.reason?.contains("cleanup failed") == true, "\(r)")
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.guest(101)?.blockedReason == .drillCleanup && rig.restores(vmid: 101).count == 1)
    }

    /// The schedule drills the copies between restores; the status and /metrics show the result.
    @Test func scheduledDrillsRunAndAreShown() async throws {
        let rig = try await Self.rig(boot: [101: .init(bootSeconds: 5, agent: true), 201: .init(bootSeconds: 5)], extraVM: ["agent": "1"]) { c in
            c.drill.schedule = try? CalendarEvent(parsing: "*:0/15")
        }
        await rig.once()  // drills apply from now
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 5); try? await Task.sleep(for: .milliseconds(2)) } }
        defer { ticking.cancel() }
        let service = Task { try await rig.runtime.reconciler.run() }
        defer { service.cancel() }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, (try? rig.store.latestDrills().values.filter { $0.latest.outcome == .passed }.count) ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(50))
        }
        let latest = try rig.store.latestDrills()
        #expect(latest[Self.vm]?.latest.outcome == .passed && latest[Self.ct]?.latest.outcome == .passed, "\(latest)")
        #expect(latest.values.allSatisfy { $0.latest.scheduled })
        // The metrics follow once a pass saw the drills end.
        var metrics = ""
        func passedCount() -> Int {
            let prefix = "pbs_standby_drills_total{source=\"pbs-prod\",result=\"passed\"} "
            return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) } ?? 0
        }
        let shown = Date().addingTimeInterval(30)
        while Date() < shown, passedCount() < 2 {  // the schedule goes on drilling meanwhile: at least the two
            try await Task.sleep(for: .milliseconds(50))
            metrics = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        }
        #expect(passedCount() >= 2, "\(metrics.split(separator: "\n").filter { $0.contains("drill") })")
        #expect(metrics.contains("pbs_standby_drill_last_success_timestamp_seconds{source=\"pbs-prod\",vmid=\"101\",type=\"vm\"}"))
        #expect(metrics.contains("pbs_standby_drill_failed{source=\"pbs-prod\",vmid=\"201\",type=\"ct\"} 0.0"))
    }

    /// A drill does not cost the next delta restore: its tasks are ours, its rollback puts back
    /// the disks and config, and the copy's new vmgenid is in its marker — the next backup is
    /// still written as a delta, without a fallback.
    @Test func aDrillDoesNotCostTheNextDelta() async throws {
        let (rig, dir) = try DeltaRestoreTests.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        rig.simulator.setBootBehaviour(101, .init(bootSeconds: 5))
        await rig.once()
        let r = try #require(await Self.drill(rig, Self.vm))
        #expect(r.outcome == .passed, "\(r)")
        rig.clock.advance(by: 3600)
        await rig.once()
        let h = try DeltaRestoreTests.last(rig)
        #expect(h.outcome == .success && h.mode == "delta" && h.fallbackReason == nil, "\(h)")
    }

    /// A graceful stop (SIGTERM) during a drill: the drill is aborted and undone — stopped, rolled
    /// back, snapshot removed, links up — before the service ends; the guest is not blocked.
    @Test func aGracefulStopUndoesARunningDrill() async throws {
        let rig = try await Self.rig(boot: [101: .init(agent: true, mode: .hangs)], extraVM: ["agent": "1"]) { c in
            c.drill.schedule = try? CalendarEvent(parsing: "*:*:0/10")
        }
        let before = try await Self.config(rig, 101, .vm)
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 1); try? await Task.sleep(for: .milliseconds(2)) } }
        defer { ticking.cancel() }
        let group = ServiceGroup(configuration: .init(services: [.init(service: rig.runtime.reconciler)], logger: .init(label: "drill-stop")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let deadline = Date().addingTimeInterval(60)
            while rig.simulator.guestSnapshot(101)?.status != "running", Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(rig.simulator.guestSnapshot(101)?.status == "running", "a scheduled drill booted the copy")
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let r = try #require(try rig.store.drills(Self.vm).first)
        #expect(r.outcome == .aborted && r.reason?.contains("stopping") == true, "\(r)")
        #expect(rig.simulator.guestSnapshot(101)?.status == "stopped")
        #expect(try await Self.config(rig, 101, .vm).filter { DrillIsolation.numbered($0.key, "net") != nil }
                == before.filter { DrillIsolation.numbered($0.key, "net") != nil }, "links up again")
        #expect(try await rig.runtime.client.snapshots(node: rig.config.proxmox.node, vmid: 101).isEmpty)
        #expect(try rig.store.guest(Self.vm)?.drillBlocked == nil)
    }

    /// Review findings: a failed-over copy that the failover started is never stopped or rolled
    /// back by a drill's cleanup (it is blocked instead); after a crash between the rollback and
    /// the end of the drill the copy's new vmgenid is recorded (it stays ours); a snapshot of the
    /// drill's name that the drill did not take is never rolled back to.
    @Test func cleanupNeverStopsAServingCopyAndKeepsItOurs() async throws {
        let rig = try await Self.rig(boot: [101: .init(bootSeconds: 5)])
        let c = rig.runtime.client, node = rig.config.proxmox.node
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 1); try? await Task.sleep(for: .milliseconds(2)) } }
        defer { ticking.cancel() }
        func open(pid: Int32 = 999_999) throws -> DrillRecord {
            var r = try #require(try rig.store.beginDrillIfIdle(DrillRecord(source: "pbs-prod", vmid: 101, type: "vm", targetVmid: 101,
                                                                            volid: nil, startedAt: rig.clock.now(), scheduled: true)))
            r.pid = pid
            r.snapshot = DrillEnvironment.snapshotName
            try rig.store.saveDrill(r)
            return r
        }
        /// Waits (bounded) until the simulator shows `done`: its tasks end as the test clock moves.
        func until(_ done: () async -> Bool) async throws {
            let deadline = Date().addingTimeInterval(20)
            while !(await done()), Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        }
        /// The snapshot is there and its task ended (the VM's `lock: snapshot` is gone).
        func snapshotted(_ r: Rig) async -> Bool {
            let names = (try? await r.runtime.client.snapshots(node: node, vmid: 101)) ?? []
            return r.simulator.guestSnapshot(101)?.lock == nil && names.contains(DrillEnvironment.snapshotName)
        }
        // 1. The drill's snapshot exists, then a failover started the copy (not the drill): not stopped.
        let first = try open()
        _ = try await c.createSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName, description: DrillEnvironment.snapshotDescription(drill: first.id ?? 0))
        try await until { await snapshotted(rig) }
        try rig.store.update(Self.vm, targetVmid: 101) { $0.failedOver = true }
        _ = try await c.start(node: node, type: .vm, vmid: 101)
        try await until { rig.simulator.guestSnapshot(101)?.status == "running" }
        let ended = await DrillCleanup(environment: DrillEnvironment(operations: rig.operations, clock: rig.clock)).finishOpenDrills()
        #expect(ended.count == 1 && rig.simulator.guestSnapshot(101)?.status == "running", "the serving copy runs on")
        #expect(!rig.mutations(vmid: 101).contains { $0.path.hasSuffix("/rollback") }, "never rolled back under the failover")
        #expect(try rig.store.guest(Self.vm)?.drillBlocked?.contains("failed over") == true)

        // 2. A crash after our rollback and the snapshot's removal: the new vmgenid is recorded.
        let rig2 = try await Self.rig(boot: [101: .init(bootSeconds: 5)])
        let c2 = rig2.runtime.client
        let ticking2 = Task { while !Task.isCancelled { rig2.clock.advance(by: 1); try? await Task.sleep(for: .milliseconds(2)) } }
        defer { ticking2.cancel() }
        var r2 = try #require(try rig2.store.beginDrillIfIdle(DrillRecord(source: "pbs-prod", vmid: 101, type: "vm", targetVmid: 101,
                                                                          volid: nil, startedAt: rig2.clock.now(), scheduled: true)))
        r2.pid = 999_999
        r2.snapshot = DrillEnvironment.snapshotName
        _ = try await c2.createSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName, description: DrillEnvironment.snapshotDescription(drill: r2.id ?? 0))
        try await until { await snapshotted(rig2) }
        let genBefore = try await Self.config(rig2, 101, .vm)["vmgenid"]
        let rollback = try await c2.rollbackSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName)
        r2.tasks = rollback.description
        try rig2.store.saveDrill(r2)
        try await until {
            let gen = try? await Self.config(rig2, 101, .vm)["vmgenid"]
            return gen != genBefore && rig2.simulator.guestSnapshot(101)?.lock == nil
        }
        _ = try await c2.deleteSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName)
        try await until {
            let names = (try? await c2.snapshots(node: node, vmid: 101)) ?? []
            return rig2.simulator.guestSnapshot(101)?.lock == nil && !names.contains(DrillEnvironment.snapshotName)
        }
        _ = await DrillCleanup(environment: DrillEnvironment(operations: rig2.operations, clock: rig2.clock)).finishOpenDrills()
        #expect(try await rig2.operations.provenCopy(of: Self.vm) != nil, "still ours after the crash")

        // 3. A stale `pbs-standby-drill` snapshot the drill did not take: the drill skips, nothing rolls back to it.
        _ = try await c2.createSnapshot(node: node, vmid: 101, name: DrillEnvironment.snapshotName, description: "left by an operator")
        try await until { await snapshotted(rig2) }
        let mark = rig2.simulator.journal().count
        let skipped = try #require(await Self.drill(rig2, Self.vm))
        #expect(skipped.outcome == .skipped && skipped.reason?.hasPrefix("drill_cleanup") == true, "\(skipped)")
        #expect(!rig2.simulator.journal()[mark...].contains { $0.method != "GET" && $0.vmid == 101 })
    }
}
