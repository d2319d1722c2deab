import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import Testing

/// Issue 13: behaviours of real PVE the engine must handle (reference §13.1, §13.4).
@Suite("Real PVE: stale locks, storages before a forced restore, TASK WARNINGS")
struct RealPVETests {
    static let key = GuestKey(source: "pbs-prod", vmid: 101)

    /// A `lock: create` left by a node crash or a killed worker (no task runs for the VMID) is
    /// reported as `blocked(stale_lock)` with the unlock command; nothing is changed.
    @Test func staleCreateLockIsReportedNotTouched() async throws {
        let rig = try Rig(scenario: SafetyRegressionTests.one(), configure: SafetyRegressionTests.configure)
        await rig.once()
        rig.simulator.modifyGuest(101, lock: .some("create"))
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.guest(101)?.blockedReason == .staleLock)
        #expect(rig.guest(101)?.blockedDetail?.contains("qm unlock 101") == true)
        #expect(rig.restores(vmid: 101).count == 1)
        // Any other lock is a plain `locked` (a backup job holds it and clears it by itself).
        rig.simulator.modifyGuest(101, lock: .some("backup"))
        rig.clock.advance(by: 60)
        await rig.once()
        #expect(rig.guest(101)?.blockedReason == .locked)
    }

    /// PVE frees a forced restore's old disks before it finds the target storage unavailable
    /// (§13.4): with the target storage inactive, the forced restore is not started and the copy stays.
    @Test func forcedRestoreWaitsForAnInactiveTargetStorage() async throws {
        let rig = try Rig(scenario: SafetyRegressionTests.one(), configure: SafetyRegressionTests.configure)
        await rig.once()
        let before = rig.simulator.guestConfigSnapshot(101)?.description
        rig.simulator.setStorageActive("local-lvm", false)
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1, "no forced restore onto an inactive storage")
        #expect(rig.simulator.guestConfigSnapshot(101)?.description == before, "the copy is intact")
        let h = try #require(try rig.store.allHistory().last)
        #expect(h.result == "skipped" && h.error?.contains("storage 'local-lvm' is not active") == true, "\(h)")
        rig.simulator.setStorageActive("local-lvm", true)
        rig.clock.advance(by: 60)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 2, "restored once the storage is back")
    }

    /// `TASK WARNINGS: N` is a success with warnings: recorded in the history and status, counted
    /// in `pbs_standby_restore_warnings_total`.
    @Test func taskWarningsAreRecordedAndCounted() async throws {
        let rig = try Rig(scenario: SafetyRegressionTests.one([
            .init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * Rig.gib], interval: 3600)]),
                          configure: SafetyRegressionTests.configure)
        rig.simulator.setRestoreWarnings(201, 1)
        #expect(await rig.once())
        let h = try #require(try rig.store.allHistory().last)
        #expect(h.result == "success" && h.warnings == 1 && h.error == "TASK WARNINGS: 1")
        await rig.once()  // the next pass shows the new history row
        #expect(rig.guest(201)?.state == .idle && rig.guest(201)?.history.first?.warnings == 1)
        let json = StatusJSON.status(rig.runtime.reconciler.snapshot, now: rig.clock.now()).serialized()
        #expect(json.contains("\"warnings\":1"))
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_restore_warnings_total{source=\"pbs-prod\"} 1"), "\(text.split(separator: "\n").filter { $0.contains("warnings") })")
    }
}
