import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import Testing

/// Faults against the simulator on virtual time: what is observed, nothing lost, status honest.
@Suite("Fault matrix")
struct FaultMatrixTests {
    static func twoSources() -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-a", datastore: "a"), .init(id: "pbs-b", datastore: "b")]
        s.targetStorages = [.init(id: "local-lvm", total: 4 << 40)]
        s.backedUp = [
            .init(vmid: 101, type: .vm, name: "a1", storage: "pbs-a", disks: [4 * Rig.gib], interval: 3600),
            .init(vmid: 102, type: .vm, name: "a2", storage: "pbs-a", disks: [4 * Rig.gib], interval: 3600),
            .init(vmid: 201, type: .vm, name: "b1", storage: "pbs-b", disks: [4 * Rig.gib], interval: 3600),
        ]
        return s
    }

    static func rig(_ scenario: Scenario = twoSources()) throws -> Rig {
        try Rig(scenario: scenario) { c in
            c.sources = scenario.pbsStorages.map { p in
                var s = StandbyConfig.Source(storage: p.id)
                s.targetStorage = "local-lvm"
                return s
            }
        }
    }

    @Test func apiAnswering503NoRestoreStartsThenRecovers() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/cluster/resources", status: 503, message: "service unavailable", times: 3))
        for _ in 0..<3 { await rig.once() }
        #expect(rig.restores(vmid: 101).isEmpty, "no restore without knowing the guests")
        #expect(rig.runtime.reconciler.snapshot.service.lastLoopAt != nil, "the loop still publishes")
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1, "recovers once PVE answers")
    }

    @Test func taskStatusTimeoutsWhileFollowingKeepTheRestore() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/status", status: 595, message: "No route to host", times: 6))
        let ok = await rig.once()
        #expect(ok, "transient errors while following do not fail the restore")
        #expect(rig.guest(101)?.state == .idle && rig.guest(101)?.restored != nil)
        #expect(try rig.store.allHistory().allSatisfy { $0.result == "success" })
    }

    @Test func restoreFailingMidTaskIsCountedAndRetried() async throws {
        let rig = try Self.rig()
        rig.simulator.setRestoreFails(102, true)
        await rig.once()
        let g = try #require(rig.guest(102))
        #expect(g.state == .failing && g.lastError?.contains("exit code 255") == true)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_restore_failures_total{source=\"pbs-a\",reason=\"task_error\"} 1"))
        #expect(text.contains("pbs_standby_restores_total{source=\"pbs-a\",vmid=\"102\",type=\"vm\",result=\"failure\"} 1"))
        #expect(rig.guest(101)?.state == .idle, "other guests unaffected")
    }

    @Test func targetStorageFullBlocksWithoutTouching() async throws {
        var s = Self.twoSources()
        s.targetStorages = [.init(id: "local-lvm", total: 10 * Rig.gib, used: 9 * Rig.gib)]
        let rig = try Self.rig(s)
        await rig.once()
        #expect(rig.restores(vmid: 101).isEmpty)
        #expect(rig.guest(101)?.blockedReason == .insufficientSpace)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_guest_state{source=\"pbs-a\",vmid=\"101\",type=\"vm\",state=\"blocked\"} 1"))
    }

    @Test func oneSourceFailingTheOtherKeepsBeingRestored() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/storage/pbs-b/content", status: 500, message: "pbs-b: can't connect to 192.0.2.9:8007"))
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.restores(vmid: 102).count == 1)
        #expect(rig.restores(vmid: 201).isEmpty)
        let snap = rig.runtime.reconciler.snapshot
        #expect(snap.sources.first { $0.storage == "pbs-a" }?.up == true)
        let b = try #require(snap.sources.first { $0.storage == "pbs-b" })
        #expect(!b.up && b.error?.contains("can't connect") == true && b.refreshErrors >= 1)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_source_up{source=\"pbs-b\"} 0.0"))
        #expect(text.contains("pbs_standby_source_up{source=\"pbs-a\"} 1.0"))
        #expect(text.contains("pbs_standby_restore_lag_seconds{source=\"pbs-a\",vmid=\"101\",type=\"vm\"}"))
        rig.simulator.clearFaults()
        await rig.once()
        #expect(rig.restores(vmid: 201).count == 1, "restored once the source answers again")
    }

    @Test func corruptedStateFileIsRefusedWithAClearError() throws {
        let dir = NSTemporaryDirectory() + "pbs-standby-corrupt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: dir + "/state.db"))
        do {
            _ = try StateStore(path: dir + "/state.db")
            Issue.record("a corrupted state file must be refused")
        } catch let error as StoreError {
            #expect(error.description.contains(dir + "/state.db"))
            #expect(error.description.contains("rebuild the state from the markers"))
        }
    }
}
