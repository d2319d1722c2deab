import ConfigSupport
import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// The simulator's permission model (issue 13 item 1; reference §3.1, §3.2, §13.1): ACLs of the
/// token, `GET /access/permissions`, backed-up configs with bridges, mount points and devices,
/// and the restore's checks where PVE makes them — 403 before the task, `TASK ERROR` inside it
/// before any disk is touched.
enum PermissionFixture {
    static let gib: Int64 = 1 << 30

    /// The README's PbsStandby role.
    static let role = ["Datastore.Audit", "Datastore.AllocateSpace", "VM.Backup", "VM.Allocate", "VM.Audit", "VM.Config.Options", "VM.PowerMgmt"]

    /// The role on /vms and /storage, SDN.Use on the whole local zone.
    static let complete: [Scenario.ACL] = [
        .init(path: "/vms", privs: role), .init(path: "/storage", privs: role),
        .init(path: "/sdn/zones/localnetwork", privs: ["SDN.Use"]),
    ]

    /// `complete` without SDN.Use (only on another bridge, vmbr9).
    static let noSDN: [Scenario.ACL] = [
        .init(path: "/vms", privs: role), .init(path: "/storage", privs: role),
        .init(path: "/sdn/zones/localnetwork/vmbr9", privs: ["SDN.Use"]),
    ]

    /// 101 VM (our copy on the node, 8 GiB), 201 CT, 202 privileged CT, 203 CT with a volume and a
    /// bind mount point, 204 CT with a device mount point, 105 VM with a host PCI device, 106 VM
    /// with a mapped PCI device and SPICE USB, 107 VM with a host USB device.
    static func scenario(acls: [Scenario.ACL]?) -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1")]
        s.targetStorages = [.init(id: "local-lvm", total: 2 << 40)]
        func guest(_ vmid: Int, _ type: GuestType, _ change: (inout Scenario.BackedUpGuest) -> Void = { _ in }) -> Scenario.BackedUpGuest {
            var g = Scenario.BackedUpGuest(vmid: vmid, type: type, name: "g\(vmid)", storage: "pbs-prod", disks: [2 * gib, 1 * gib], interval: 3600)
            if type == .ct { g.disks = [2 * gib] }
            change(&g)
            return g
        }
        s.backedUp = [
            guest(101, .vm), guest(201, .ct), guest(202, .ct) { $0.privileged = true },
            guest(203, .ct) { $0.disks = [2 * gib, 3 * gib]; $0.mountpoints = [.init(mp: "mp0", kind: .volume), .init(mp: "mp1", kind: .bind)] },
            guest(204, .ct) { $0.mountpoints = [.init(mp: "mp0", kind: .device)] },
            guest(105, .vm) { $0.hostpci = ["0000:01:00.0"] },
            guest(106, .vm) { $0.hostpci = ["mapping=gpu,pcie=1"]; $0.usb = ["spice"] },
            guest(107, .vm) { $0.usb = ["host=1234:5678"] },
        ]
        s.existing = [.init(vmid: 101, type: .vm, name: "g101", tags: ["pbs-standby"], description: "our copy", disks: [8 * gib])]
        s.acls = acls
        return s
    }

    /// Restores the newest backup of `vmid` into itself (force when asked) and waits for its task.
    static func restore(_ h: Harness, _ vmid: Int, type: GuestType, force: Bool = false,
                        params: (inout ProxmoxClient.RestoreRequest) -> Void = { _ in }) async throws -> (UPID, TaskStatus) {
        let backups = try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: vmid)
        let newest = try #require(backups.filter(\.isComplete).max { $0.volid.backupTime < $1.volid.backupTime })
        var request = ProxmoxClient.RestoreRequest(node: h.node, vmid: vmid, archive: newest.volid, storage: "local-lvm")
        request.force = force
        params(&request)
        let upid = try await h.client.restore(request)
        return (upid, try await h.finish(upid))
    }
}

@Suite("Simulator permission model")
struct PermissionModelTests {
    static let kinds: [TransportKind] = [.inProcess, .https]

    /// Without `acls` the token may do everything: `/` lists every privilege, and restores that
    /// a token could never make (a bind mount point) are still refused as root-only.
    @Test(arguments: kinds)
    func withoutACLsTheTokenMayDoEverythingButRootOnlyParts(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: nil))
        let perms = try await h.client.permissions()
        #expect(perms["/"]?.isSuperset(of: ["VM.Allocate", "SDN.Use", "Sys.Modify", "Datastore.AllocateSpace"]) == true)
        #expect(try await PermissionFixture.restore(h, 101, type: .vm, force: true).1.succeeded)
        #expect(try await PermissionFixture.restore(h, 202, type: .ct).1.succeeded, "privileged CT: Sys.Modify held")
        let (_, bind) = try await PermissionFixture.restore(h, 203, type: .ct)
        #expect(bind.exitStatus == "unable to restore CT 203 - restoring 'mp1' to bind mount is only possible for root")
    }

    /// `GET /access/permissions`: effective privileges per path, `{path: {priv: 1}}`; a deeper
    /// ACL replaces the inherited privileges; paths without privileges are left out; path
    /// matching is by whole components.
    @Test(arguments: kinds)
    func permissionsAnswerEffectivePrivilegesPerPath(_ kind: TransportKind) async throws {
        let acls: [Scenario.ACL] = [
            .init(path: "/vms", privs: ["VM.Allocate", "VM.Audit"]), .init(path: "/vms/150", privs: ["VM.Audit"]),
            .init(path: "/sdn/zones/localnetwork", privs: ["SDN.Use"]), .init(path: "/storage/local-lvm/", privs: ["Datastore.AllocateSpace"]),
        ]
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: acls))
        let perms = try await h.client.permissions()
        #expect(perms == ["/vms": ["VM.Allocate", "VM.Audit"], "/vms/150": ["VM.Audit"],
                          "/sdn/zones/localnetwork": ["SDN.Use"], "/storage/local-lvm": ["Datastore.AllocateSpace"]])
        #expect(PVEPermissions.privileges(at: "/vms/1500", in: perms) == ["VM.Allocate", "VM.Audit"], "/vms/150 is not above /vms/1500")
        #expect(PVEPermissions.privileges(at: "/vms/150/", in: perms) == ["VM.Audit"])
        #expect(PVEPermissions.canUseBridge("vmbr0", in: perms))
        #expect(PVEPermissions.privileges(at: "/", in: perms).isEmpty)
        let one = try await h.client.permissions(path: "/sdn/zones/localnetwork/vmbr1")
        #expect(one == ["/sdn/zones/localnetwork/vmbr1": ["SDN.Use"]])
    }

    /// §3.1 step 1: without the right to create PVE answers 403 `Permission check failed` (no
    /// path: `raise_perm_exc()`); without `Datastore.AllocateSpace` on the given storage, 403
    /// naming it. Nothing is created, no task starts.
    @Test(arguments: kinds)
    func synchronousChecksAnswer403(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: [
            .init(path: "/storage", privs: PermissionFixture.role), .init(path: "/sdn", privs: ["SDN.Use"]),
            .init(path: "/vms", privs: ["VM.Audit"]),
        ]))
        await #expect(throws: ProxmoxError.auth(path: "/nodes/pve-standby/lxc", status: 403, message: "Permission check failed")) {
            _ = try await PermissionFixture.restore(h, 201, type: .ct)
        }
        #expect(h.simulator.guestSnapshot(201) == nil)
        // VM.Backup suffices for a forced restore over an existing VM of this VMID, not for a new one.
        h.simulator.setACLs([.init(path: "/storage", privs: PermissionFixture.role), .init(path: "/sdn", privs: ["SDN.Use"]),
                             .init(path: "/vms", privs: ["VM.Backup"])])
        #expect(try await PermissionFixture.restore(h, 101, type: .vm, force: true).1.succeeded)
        await #expect(throws: ProxmoxError.auth(path: "/nodes/pve-standby/qemu", status: 403, message: "Permission check failed")) {
            _ = try await PermissionFixture.restore(h, 105, type: .vm)
        }
        h.simulator.setACLs([.init(path: "/storage/pbs-prod", privs: PermissionFixture.role), .init(path: "/vms", privs: PermissionFixture.role)])
        await #expect(throws: ProxmoxError.auth(path: "/nodes/pve-standby/qemu", status: 403,
                                               message: "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)")) {
            _ = try await PermissionFixture.restore(h, 105, type: .vm)
        }
        // A backup of another VMID needs VM.Backup on that VMID (pve-storage check_volume_access).
        h.simulator.setACLs([.init(path: "/storage", privs: PermissionFixture.role), .init(path: "/vms/1101", privs: PermissionFixture.role)])
        let backups = try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 201)
        var other = ProxmoxClient.RestoreRequest(node: h.node, vmid: 1101, archive: try #require(backups.filter(\.isComplete).last).volid, storage: "local-lvm")
        other.unprivileged = true
        await #expect(throws: ProxmoxError.auth(path: "/nodes/pve-standby/lxc", status: 403, message: "Permission check failed (/vms/201, VM.Backup)")) {
            _ = try await h.client.restore(other)
        }
        let refused = h.simulator.journal().filter { $0.method == "POST" && $0.status == 403 }
        #expect(refused.count == 4)
        #expect(h.simulator.journal().filter { $0.method == "POST" && $0.status == 200 }.count == 1)
    }

    /// §13.1: `SDN.Use` on `/sdn/zones/localnetwork/<bridge>` is checked inside the task for VMs
    /// and CTs, before any disk is freed: the forced restore over our copy fails and the copy
    /// keeps its disks and description. A grant on the zone (a parent path) covers every bridge.
    @Test(arguments: kinds)
    func bridgeWithoutSDNUseFailsTheTaskBeforeAnyDiskIsFreed(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: PermissionFixture.noSDN))
        let (vmTask, vm) = try await PermissionFixture.restore(h, 101, type: .vm, force: true)
        #expect(vm.exitStatus == "Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)")
        let log = try await h.client.taskLog(vmTask).map(\.t)
        #expect(log.last == "TASK ERROR: Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)")
        let copy = try #require(try await h.client.guests().first { $0.vmid == 101 })
        #expect(copy.maxdisk == 8 * PermissionFixture.gib && copy.lock == nil, "the old disks are untouched")
        #expect(h.simulator.guestDescription(101) == "our copy")
        let (ctTask, ct) = try await PermissionFixture.restore(h, 201, type: .ct)
        #expect(ct.exitStatus == "unable to restore CT 201 - Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)")
        #expect(try await h.client.taskLog(ctTask).first?.t.hasPrefix("recovering backed-up configuration from 'pbs-prod:backup/ct/201/") == true)
        #expect(h.simulator.guestSnapshot(201) == nil, "a new CT's config is removed again")
        h.simulator.setACLs(PermissionFixture.complete)
        #expect(try await PermissionFixture.restore(h, 101, type: .vm, force: true).1.succeeded)
        #expect(try await PermissionFixture.restore(h, 201, type: .ct).1.succeeded)
    }

    /// §13.1: the first restore of a privileged CT needs `Sys.Modify` on `/`; restoring it as
    /// unprivileged, or over the existing CT, does not.
    @Test(arguments: kinds)
    func privilegedContainerFirstRestoreNeedsSysModify(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: PermissionFixture.complete))
        let (_, first) = try await PermissionFixture.restore(h, 202, type: .ct)
        #expect(first.exitStatus == "unable to restore CT 202 - Permission check failed (/, Sys.Modify)")
        #expect(try await PermissionFixture.restore(h, 202, type: .ct) { $0.unprivileged = true }.1.succeeded)
        // Now a CT 202 exists: a forced restore of the privileged backup over it is allowed.
        #expect(try await PermissionFixture.restore(h, 202, type: .ct, force: true).1.succeeded)
    }

    /// §3.2, §13.1: bind and device mount points, host PCI and USB devices restore only for
    /// root@pam; a mapped device needs `Mapping.Use` on its mapping; SPICE USB needs nothing.
    @Test(arguments: kinds)
    func rootOnlyPartsAreRefusedToTheToken(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: PermissionFixture.scenario(acls: PermissionFixture.complete))
        #expect(try await PermissionFixture.restore(h, 203, type: .ct).1.exitStatus
            == "unable to restore CT 203 - restoring 'mp1' to bind mount is only possible for root")
        #expect(try await PermissionFixture.restore(h, 204, type: .ct).1.exitStatus
            == "unable to restore CT 204 - restoring 'mp0' to device mount is only possible for root")
        #expect(try await PermissionFixture.restore(h, 105, type: .vm).1.exitStatus == "only root can set 'hostpci0' config for non-mapped devices")
        #expect(try await PermissionFixture.restore(h, 107, type: .vm).1.exitStatus == "only root can set 'usb0' config for real devices")
        #expect(try await PermissionFixture.restore(h, 106, type: .vm).1.exitStatus == "Permission check failed (/mapping/pci/gpu, Mapping.Use)")
        h.simulator.setACLs(PermissionFixture.complete + [.init(path: "/mapping/pci/gpu", privs: ["Mapping.Use"])])
        #expect(try await PermissionFixture.restore(h, 106, type: .vm).1.succeeded)
        for vmid in [203, 204, 105, 107, 106] { #expect(h.simulator.guestSnapshot(vmid).map { $0.lock == nil } ?? true) }
    }

    /// `extractconfig` renders the scenario's backed-up config: bridges, disks on their
    /// production storage ids (and `#qmdump#map` lines), host devices, mount points, privileged.
    @Test func extractConfigRendersTheBackedUpConfig() async throws {
        var scenario = PermissionFixture.scenario(acls: nil)
        scenario.backedUp[0].bridges = ["vmbr0", "vmbr1"]
        scenario.backedUp[0].storages = ["local-lvm", "ceph-prod"]
        let h = try Harness(.inProcess, scenario: scenario)
        func config(_ vmid: Int, _ type: GuestType) async throws -> (String, BackupConfig) {
            let newest = try #require(try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: vmid).filter(\.isComplete).last)
            let text = try await h.client.backupConfig(node: h.node, volid: newest.volid)
            return (text, BackupConfig(parsing: text, type: type))
        }
        let (vmText, vm) = try await config(101, .vm)
        #expect(vm.nics.map(\.bridge) == ["vmbr0", "vmbr1"])
        #expect(vm.disks.map(\.storage) == ["local-lvm", "ceph-prod"])
        #expect(vmText.contains("scsi1: ceph-prod:vm-101-disk-1,size=1G\n") && vmText.hasSuffix("#qmdump#map:scsi1:drive-scsi1:ceph-prod:raw:\n"))
        let (_, mapped) = try await config(106, .vm)
        #expect(mapped.hostDevices == [.init(key: "hostpci0", mapping: "gpu", spice: false), .init(key: "usb0", mapping: nil, spice: true)])
        let (_, files) = try await config(203, .ct)
        #expect(files.mountPoints == [.init(key: "mp0", kind: .volume, storage: "local-lvm"), .init(key: "mp1", kind: .bind, storage: nil)])
        #expect(files.unprivileged)
        let (privText, priv) = try await config(202, .ct)
        #expect(!priv.unprivileged && !privText.contains("unprivileged"))
        let (_, dev) = try await config(204, .ct)
        #expect(dev.mountPoints.map(\.kind) == [.device])
    }

    /// The scenario file: `acls` (absent: nil, all-powerful; empty: nothing), the backup config
    /// keys, and errors naming the key path.
    @Test func scenarioYAMLReadsACLsAndBackupConfigs() throws {
        let yaml = """
        pbs_storages: [{id: pbs-prod}]
        acls:
          - {path: /vms/, privs: [VM.Allocate]}
          - {path: /sdn/zones/localnetwork/vmbr0, privs: SDN.Use}
        backups:
          - {vmid: 101, type: vm, disks_gib: [2, 4], bridges: [vmbr0, vmbr1], hostpci: ["mapping=gpu"], usb: [spice], storages: [ceph-prod]}
          - {vmid: 201, type: ct, privileged: true, mountpoints: [{mp: mp0, kind: bind}, {mp: mp1}]}
        """
        let s = try Scenario.parse(yaml: yaml)
        #expect(s.acls == [.init(path: "/vms", privs: ["VM.Allocate"]), .init(path: "/sdn/zones/localnetwork/vmbr0", privs: ["SDN.Use"])])
        #expect(s.backedUp[0].bridges == ["vmbr0", "vmbr1"] && s.backedUp[0].hostpci == ["mapping=gpu"] && s.backedUp[0].usb == ["spice"])
        #expect(s.backedUp[0].diskStorage(0) == "ceph-prod" && s.backedUp[0].diskStorage(1) == "ceph-prod")
        #expect(s.backedUp[1].privileged && s.backedUp[1].mountpoints == [.init(mp: "mp0", kind: .bind), .init(mp: "mp1", kind: .volume)])
        #expect(s.backedUp[1].bridges == ["vmbr0"] && s.backedUp[1].diskStorage(0) == "local-lvm", "defaults")
        #expect(try Scenario.parse(yaml: "node: x\n").acls == nil)
        #expect(try Scenario.parse(yaml: "acls: []\n").acls == [])
        func error(_ yaml: String) -> ConfigError? {
            do { _ = try Scenario.parse(yaml: yaml); return nil } catch { return error }
        }
        #expect(error("acls:\n  - {path: /vms, privs: [VM.Allocate, SDN.use]}\n")?.path == "acls[0].privs[1]")
        #expect(error("acls:\n  - {path: vms, privs: [VM.Allocate]}\n")?.path == "acls[0].path")
        #expect(error("pbs_storages: [{id: p}]\nbackups:\n  - {vmid: 101, type: vm, mountpoints: [{mp: mp0, kind: bind}]}\n")?.path == "backups[0].mountpoints")
        #expect(error("pbs_storages: [{id: p}]\nbackups:\n  - {vmid: 201, type: ct, mountpoints: [{mp: mp0, kind: nfs}]}\n")?.path == "backups[0].mountpoints[0].kind")
        #expect(error("pbs_storages: [{id: p}]\nbackups:\n  - {vmid: 101, type: vm, disks_gib: [2], storages: [a, b]}\n")?.path == "backups[0].storages")
        #expect(error("pbs_storages: [{id: p}]\nbackups:\n  - {vmid: 201, type: ct, hostpci: [x]}\n")?.path == "backups[0].hostpci")
    }
}
