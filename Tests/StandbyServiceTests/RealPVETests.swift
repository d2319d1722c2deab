import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import TestSupport
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

    /// Under pvesh (root@pam) the stale `lock: create` of our VM is cleared as `qm unlock` would
    /// (`delete=lock`, `skiplock`, the digest just read), and the next pass restores over the
    /// remains. A container's is only reported: PVE's API has no unlock for containers.
    @Test func staleCreateLockOfOurVMIsClearedUnderPvesh() async throws {
        var scenario = SafetyRegressionTests.one([
            .init(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [4 * Rig.gib], interval: 3600),
            .init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * Rig.gib], interval: 3600)])
        scenario.callerIsRoot = true
        let rig = try Rig(scenario: scenario) { c in
            SafetyRegressionTests.configure(&c)
            c.proxmox.transport = .pvesh
        }
        #expect(await rig.once())
        rig.simulator.modifyGuest(101, lock: .some("create"))
        rig.simulator.modifyGuest(201, lock: .some("create"))
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.guest(101)?.blockedReason == .staleLock)
        #expect(rig.guest(101)?.blockedDetail?.contains("cleared through pvesh") == true, "\(rig.guest(101)?.blockedDetail ?? "")")
        #expect(rig.simulator.guestSnapshot(101)?.lock == nil, "the lock is gone")
        let unlock = rig.mutations(vmid: 101).filter { $0.method == "PUT" && $0.parameters["delete"] == "lock" }
        #expect(unlock.count == 1 && unlock.first?.parameters["skiplock"] == "1" && unlock.first?.parameters["digest"] != nil)
        #expect(rig.restores(vmid: 101).count == 1, "nothing restored in the pass that cleared the lock")
        // The container keeps its lock and says how to remove it.
        #expect(rig.guest(201)?.blockedReason == .staleLock)
        #expect(rig.guest(201)?.blockedDetail?.contains("pct unlock 201") == true)
        #expect(rig.simulator.guestSnapshot(201)?.lock == "create")
        rig.clock.advance(by: 60)
        #expect(await rig.once())
        #expect(rig.restores(vmid: 101).count == 2, "restored over the unlocked remains")
        #expect(rig.guest(101)?.state == .idle)
    }

    /// Fidelity: `skiplock` is refused for a token ("Only root may use this option.", qemu-server
    /// API2/Qemu.pm `update_vm`), so over HTTPS the service can only report a stale lock.
    @Test func skiplockIsRootOnly() async throws {
        let rig = try Rig(scenario: SafetyRegressionTests.one(), configure: SafetyRegressionTests.configure)
        #expect(await rig.once())
        rig.simulator.modifyGuest(101, lock: .some("create"))
        let client = ProxmoxClient(transport: InProcessTransport(simulator: rig.simulator))
        let digest = try await client.guestConfig(node: "pve-standby", type: .vm, vmid: 101).digest ?? ""
        await #expect(throws: ProxmoxError.self) { try await client.clearVMLock(node: "pve-standby", vmid: 101, digest: digest) }
        #expect(rig.simulator.guestSnapshot(101)?.lock == "create")
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
        let json = String(decoding: StatusDocument(rig.runtime.reconciler.snapshot, now: rig.clock.now()).json(), as: UTF8.self)
        #expect(json.contains("\"warnings\":1"))
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_restore_warnings_total{source=\"pbs-prod\"} 1"), "\(text.split(separator: "\n").filter { $0.contains("warnings") })")
    }
}
