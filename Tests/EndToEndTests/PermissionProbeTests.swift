import Foundation
import Testing

/// Issue 13 item 1, "done when": `check-config --probe` against a simulator with a missing
/// `SDN.Use`, a missing storage id and a root-only mount point names all three before any restore.
@Suite("check-config --probe end to end", .serialized)
struct PermissionProbeTests {
    /// The token has the README role on /vms and /storage and SDN.Use on vmbr0 only. 101 is
    /// fine; 102 has a second NIC on vmbr1; 103's second disk was on `ceph-prod` in production,
    /// which the standby lacks, and its source sets no target_storage; 201 is a CT with a bind
    /// mount point (it gets local-lvm per guest).
    static let scenario = """
    node: pve-standby
    pbs_storages: [{id: pbs-prod, datastore: store1}]
    target_storages: [{id: local-lvm, total_gib: 4000}]
    acls:
      - {path: /vms, privs: [VM.Allocate, VM.Backup, VM.Audit, VM.Config.Options, VM.PowerMgmt]}
      - {path: /storage, privs: [Datastore.Audit, Datastore.AllocateSpace]}
      - {path: /sdn/zones/localnetwork/vmbr0, privs: [SDN.Use]}
      - {path: /nodes/pve-standby, privs: [Sys.Audit]}
    backups:
      - {vmid: 101, type: vm, name: web, disks_gib: [2]}
      - {vmid: 102, type: vm, name: dmz, disks_gib: [2], bridges: [vmbr0, vmbr1]}
      - {vmid: 103, type: vm, name: db, disks_gib: [2, 4], storages: [local-lvm, ceph-prod]}
      - {vmid: 201, type: ct, name: files, disks_gib: [2], mountpoints: [{mp: mp0, kind: bind}]}
    """

    @Test func probeNamesWhatWouldBeRefusedBeforeAnythingIsRestored() throws {
        let sim = try SimulatorProcess(scenario: Self.scenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state, settings: """
            restore:
              workers: 1
            sources:
              - storage: pbs-prod
            guests:
              201: {target_storage: local-lvm}
            """)
        let (rc, out, err) = try run(["check-config", "--config.file", config, "--probe"])
        #expect(rc == 0, "a report, not a failure: \(err)")
        #expect(out.contains("probe: the token's privileges read from GET /access/permissions"), "\(out)")
        let refused = out.split(separator: "\n").filter { $0.contains("would be refused:") }.map(String.init)
        #expect(refused.contains { $0.contains("missing SDN.Use on /sdn/zones/localnetwork/vmbr1 (net1 is bridged to vmbr1)") }, "\(out)")
        #expect(refused.contains { $0.contains("disk scsi1 is on storage 'ceph-prod' in the backup, which does not exist on node pve-standby") }, "\(out)")
        #expect(refused.contains { $0.contains("mp0 is a bind mount point: only root@pam can restore it") }, "\(out)")
        #expect(refused.count == 3, "nothing refused for 101: \(out)")
        #expect(out.contains("3 guest(s) would be refused\n"), "\(out)")
        // DR drills (issue 16): the README's restore role lacks the drill privileges; the probe names them.
        #expect(out.contains("    drill: cannot run — missing VM.Snapshot on /vms/101; missing VM.Snapshot.Rollback on /vms/101; missing VM.Config.Network on /vms/101; missing VM.GuestAgent.Audit"), "\(out)")
        #expect(out.contains("drill: no schedule (only `pbs-standby drill`)"), "\(out)")
        // Each finding under its guest's line.
        let lines = out.split(separator: "\n").map(String.init)
        let at102 = try #require(lines.firstIndex { $0.hasPrefix("  pbs-prod/102 ") })
        #expect(lines[at102 + 1].contains("SDN.Use"))
        // Before anything is restored: the probe only reads.
        #expect(sim.journal().isEmpty, "no mutating call: \(sim.journal().map { "\($0.method) \($0.path)" })")
        #expect(!FileManager.default.fileExists(atPath: state), "check-config opens no state file")
    }
}
