import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import TestSupport
import Testing

/// Without `Sys.Audit` on `/nodes/<node>` PVE lists only the token's own tasks (pve-manager
/// PVE/API2/Tasks.pm `node_tasks`: `$auditor`, `$check_task_user`). Proofs that read the task
/// list (a CT copy, a VM's failed-restore remains, "started by us", a stale lock) would then miss
/// an administrator's tasks; the service refuses to prove anything from a partial list.
@Suite("Task list visibility (Sys.Audit)")
struct TaskVisibilityTests {
    static let role = PermissionFailureTests.role

    static func scenario(sysAudit: Bool) -> Scenario {
        var s = SafetyRegressionTests.one([.init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * Rig.gib], interval: 3600)])
        s.acls = [.init(path: "/vms", privs: role), .init(path: "/storage", privs: role), .init(path: "/sdn", privs: ["SDN.Use"])]
            + (sysAudit ? [.init(path: "/nodes", privs: ["Sys.Audit"])] : [])
        return s
    }

    /// Fidelity: the simulator hides other users' tasks from a token without Sys.Audit.
    @Test func tokenWithoutSysAuditSeesOnlyItsOwnTasks() async throws {
        for sysAudit in [false, true] {
            let rig = try Rig(scenario: Self.scenario(sysAudit: sysAudit), configure: SafetyRegressionTests.configure)
            #expect(rig.simulator.adminCreate(vmid: 500, type: .ct, name: "admins"))
            let client = ProxmoxClient(transport: InProcessTransport(simulator: rig.simulator))
            let tasks = try await client.tasks(node: "pve-standby", vmid: 500, limit: 50)
            #expect(tasks.isEmpty == !sysAudit, "Sys.Audit \(sysAudit): \(tasks.map(\.upid.description))")
        }
    }

    /// An administrator replaces our CT copy with a CT of their own carrying our marker (restored
    /// from a vzdump of the copy, say). Their create task is invisible to a token without
    /// Sys.Audit: our restore would look like the newest task of the VMID, and the next backup
    /// would overwrite the administrator's CT. The service refuses instead, saying what to grant.
    @Test func withoutSysAuditACTCopyIsNotProvenAndNeverOverwritten() async throws {
        let rig = try Rig(scenario: Self.scenario(sysAudit: false), configure: SafetyRegressionTests.configure)
        await rig.once()
        #expect(rig.restores(vmid: 201).count == 1)
        let copy = try #require(rig.simulator.guestConfigSnapshot(201))
        #expect(rig.simulator.adminDestroy(vmid: 201))
        #expect(rig.simulator.adminCreate(vmid: 201, type: .ct, name: "admins-dns", tags: copy.tags, description: copy.description))
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.restores(vmid: 201).count == 1, "the administrator's CT is not restored over")
        let g = try #require(rig.guest(201))
        #expect(g.blockedReason == .notOwned)
        #expect(g.blockedDetail?.contains("Sys.Audit on /nodes/pve-standby") == true, "\(g.blockedDetail ?? "")")
        #expect(rig.mutations(vmid: 201).filter { $0.time > rig.clock.now() - 3600 }.isEmpty, "nothing sent for VMID 201")
    }

    /// With Sys.Audit the same administrator's CT is seen (their create is the newest task) and
    /// refused as not ours; our own untouched CT copy is proven and kept up to date.
    @Test func withSysAuditTheProofSeesTheAdministratorsTask() async throws {
        let rig = try Rig(scenario: Self.scenario(sysAudit: true), configure: SafetyRegressionTests.configure)
        await rig.once()
        rig.clock.advance(by: 3600)
        #expect(await rig.once())
        #expect(rig.restores(vmid: 201).count == 2, "our CT copy is proven and restored again")
        let copy = try #require(rig.simulator.guestConfigSnapshot(201))
        #expect(rig.simulator.adminDestroy(vmid: 201))
        #expect(rig.simulator.adminCreate(vmid: 201, type: .ct, name: "admins-dns", tags: copy.tags, description: copy.description))
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.restores(vmid: 201).count == 2)
        #expect(rig.guest(201)?.blockedReason == .notOwned)
        #expect(rig.guest(201)?.blockedDetail?.contains("Sys.Audit") == false)
    }
}
