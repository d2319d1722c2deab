import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
@testable import StandbyService
import TestSupport
import Testing

/// Issue 13 item 1: a restore PVE refuses for a missing privilege or a root-only part of the
/// backup is its own failure reason (`permission`), shows the privilege and path, and is not
/// retried on the backoff schedule: the guest waits for a newer backup (or a config change).
@Suite("Permission failures")
struct PermissionFailureTests {
    static let role = ["Datastore.Audit", "Datastore.AllocateSpace", "VM.Backup", "VM.Allocate", "VM.Audit", "VM.Config.Options", "VM.PowerMgmt"]

    /// 101: a VM bridged to vmbr1 (daily backups at 00:00; the rig starts at 11:06 UTC); 201: a CT
    /// on vmbr0. The token has the README role on /vms and /storage, SDN.Use on vmbr0 only.
    static func scenario(acls: [Scenario.ACL]) -> Scenario {
        var vm = Scenario.BackedUpGuest(vmid: 101, type: .vm, name: "dmz", storage: "pbs-prod", disks: [2 << 30], interval: 86_400)
        vm.bridges = ["vmbr1"]
        let ct = Scenario.BackedUpGuest(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 << 30], interval: 86_400)
        var s = Rig.scenario(backedUp: [vm, ct])
        s.acls = acls
        return s
    }

    static let withoutVmbr1: [Scenario.ACL] = [
        .init(path: "/vms", privs: role), .init(path: "/storage", privs: role),
        .init(path: "/sdn/zones/localnetwork/vmbr0", privs: ["SDN.Use"]),
    ]

    func metrics(_ rig: Rig) -> String { String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self) }

    @Test func missingSDNUseIsAPermissionFailureHeldUntilANewerBackup() async throws {
        let rig = try Rig(scenario: Self.scenario(acls: Self.withoutVmbr1))
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1)
        #expect(rig.guest(201)?.state == .idle, "the CT on vmbr0 restores")
        let g = try #require(rig.guest(101))
        #expect(g.state == .failing)
        #expect(g.lastError?.contains("Permission check failed (/sdn/zones/localnetwork/vmbr1, SDN.Use)") == true, "\(g.lastError ?? "")")
        #expect(g.nextRetryAt == nil, "no backoff schedule: it waits for a newer backup")
        #expect(metrics(rig).contains("pbs_standby_restore_failures_total{source=\"pbs-prod\",reason=\"permission\"} 1"))
        #expect(!metrics(rig).contains("reason=\"task_error\""))
        // Two hours on: past every backoff step of the rig (5, 10, 15, 30 min); no retry.
        for _ in 0..<4 {
            rig.clock.advance(by: 1800)
            await rig.once()
        }
        #expect(rig.restores(vmid: 101).count == 1, "a permission failure is not retried on the backoff schedule")
        // Granting the privilege does not restore the same backup again by itself ...
        rig.simulator.setACLs(Self.withoutVmbr1 + [.init(path: "/sdn/zones/localnetwork", privs: ["SDN.Use"])])
        rig.clock.advance(by: 1800)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1)
        // ... the next backup (00:00) is restored.
        rig.clock.advance(by: 12 * 3600)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 2)
        #expect(rig.guest(101)?.state == .idle)
        #expect(rig.guest(101)?.lastError == nil)
    }

    /// The synchronous refusal (HTTP 403, §3.1 step 1): PVE's bare `Permission check failed` gets
    /// the privilege and path it stands for in the status.
    @Test func forbiddenRestorePostIsAPermissionFailureNamingWhatIsMissing() async throws {
        let rig = try Rig(scenario: Self.scenario(acls: [
            .init(path: "/vms", privs: ["VM.Audit"]), .init(path: "/vms/201", privs: Self.role),
            .init(path: "/storage", privs: Self.role), .init(path: "/sdn", privs: ["SDN.Use"]),
            .init(path: "/nodes", privs: ["Sys.Audit"]),  // the CT copy's proof reads every user's tasks
        ]))
        await rig.once()
        let post = try #require(rig.restores(vmid: 101).first)
        #expect(post.status == 403)
        let error = try #require(rig.guest(101)?.lastError)
        #expect(error.contains("HTTP 403") && error.contains("Permission check failed") && error.contains("VM.Allocate on /vms/101"), "\(error)")
        #expect(metrics(rig).contains("pbs_standby_restore_failures_total{source=\"pbs-prod\",reason=\"permission\"} 1"))
        rig.clock.advance(by: 3 * 3600)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1, "not retried on the backoff schedule")
        #expect(rig.guest(201)?.state == .idle)
    }

    @Test func failureReasonsOfPermissionTexts() {
        #expect(FailureReason.of(.auth(path: "/nodes/n/qemu", status: 403, message: "Permission check failed")).rawValue == "permission")
        #expect(FailureReason.of(.auth(path: "/nodes/n/qemu", status: 403, message: "Permission check failed (/storage/x, Datastore.AllocateSpace)")).rawValue == "permission")
        #expect(FailureReason.of(.auth(path: "/nodes/n/qemu", status: 401, message: "authentication failed")).rawValue == "auth_error")
        for text in ["Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)",
                     "unable to restore CT 201 - Permission check failed (/, Sys.Modify)",
                     "unable to restore CT 201 - restoring 'mp0' to bind mount is only possible for root",
                     "only root can set 'hostpci0' config for non-mapped devices", "only root can set 'usb0' config for real devices"] {
            #expect(FailureReason.ofTask(text).rawValue == "permission", "\(text)")
        }
        #expect(FailureReason.ofTask("unable to restore VM 101 - vm is running").rawValue == "refused_running")
    }
}

/// `check-config --probe`'s findings from permissions, the backup's config and the storages.
@Suite("Restore probe")
struct RestoreProbeTests {
    static let storages: [String: StorageInfo] = [
        "local-lvm": .init(storage: "local-lvm", type: "lvmthin", content: ["images", "rootdir"], active: true, enabled: true),
        "local": .init(storage: "local", type: "dir", content: ["iso", "vztmpl", "backup"], active: true, enabled: true),
    ]
    static let good: [String: Set<String>] = [
        "/vms": ["VM.Allocate", "VM.Backup"], "/storage": ["Datastore.AllocateSpace"], "/sdn/zones/localnetwork/vmbr0": ["SDN.Use"],
    ]
    static func settings(_ target: Int, storage: String? = "local-lvm") -> GuestSettings {
        GuestSettings(targetVmid: target, targetStorage: storage, priority: 0, rpoTarget: .seconds(3600), startAfterRestore: false)
    }
    static let vm = Volid(storage: "pbs-prod", type: .vm, vmid: 101, backupTime: 1_795_000_000)
    static let ct = Volid(storage: "pbs-prod", type: .ct, vmid: 201, backupTime: 1_795_000_000)
    static let vmConfig = """
        name: web
        net0: virtio=BC:24:11:00:00:65,bridge=vmbr0
        net1: virtio=BC:24:11:00:01:65,bridge=vmbr1,tag=5
        scsi0: ceph-prod:vm-101-disk-0,size=8G
        ide2: none,media=cdrom
        hostpci0: 0000:01:00.0,pcie=1
        hostpci1: mapping=gpu
        usb0: spice
        usb1: host=1234:5678
        #qmdump#map:scsi0:drive-scsi0:ceph-prod:raw:
        [snap1]
        net2: virtio=BC:24:11:00:02:65,bridge=vmbr7
        """
    static let ctConfig = """
        hostname: files
        net0: name=eth0,bridge=vmbr0,ip=dhcp,type=veth
        rootfs: local-lvm:subvol-201-disk-0,size=8G
        mp0: /srv/data,mp=/data
        mp1: /dev/sdb1,mp=/mnt/dev
        mp2: local-lvm:subvol-201-disk-1,mp=/srv,size=4G
        """

    @Test func vmFindingsNamePrivilegePathDeviceAndStorage() {
        let c = RestoreProbe.Context(permissions: Self.good, storages: Self.storages, guests: [], node: "pve-standby")
        let found = RestoreProbe.refusals(volid: Self.vm, config: Self.vmConfig, settings: Self.settings(101, storage: nil), pool: nil, context: c)
        #expect(found == [
            "disk scsi0 is on storage 'ceph-prod' in the backup, which does not exist on node pve-standby: set target_storage",
            "missing SDN.Use on /sdn/zones/localnetwork/vmbr1 (net1 is bridged to vmbr1)",
            "hostpci0 is a host PCI device: only root@pam can restore it (a resource mapping with Mapping.Use would do)",
            "missing Mapping.Use on /mapping/pci/gpu (hostpci1 is a mapped host PCI device)",
            "usb1 is a host USB device: only root@pam can restore it (a resource mapping with Mapping.Use would do)",
        ])
        // With a target storage the production storage id does not matter; into another VMID the
        // backup must be readable; VM.Allocate missing is named with its path.
        let narrow: [String: Set<String>] = ["/vms/101": ["VM.Backup"], "/storage": ["Datastore.AllocateSpace"], "/sdn": ["SDN.Use"]]
        let c2 = RestoreProbe.Context(permissions: narrow, storages: Self.storages, guests: [], node: "pve-standby")
        let found2 = RestoreProbe.refusals(volid: Self.vm, config: "net0: virtio=X,bridge=vmbr0\n", settings: Self.settings(1101), pool: nil, context: c2)
        #expect(found2 == ["missing VM.Allocate on /vms/1101 (PVE answers 403 \"Permission check failed\")"])
        let found3 = RestoreProbe.refusals(volid: Self.vm, config: nil, settings: Self.settings(1101), pool: nil,
                                           context: .init(permissions: ["/vms/1101": ["VM.Allocate"], "/storage/local-lvm": ["Datastore.AllocateSpace"]],
                                                          storages: Self.storages, guests: [], node: "pve-standby"))
        #expect(found3 == ["missing Datastore.AllocateSpace on /storage/pbs-prod (reading the backup)", "missing VM.Backup on /vms/101 (reading the backup)"])
    }

    @Test func ctFindingsAndRoot() {
        let c = RestoreProbe.Context(permissions: Self.good, storages: Self.storages, guests: [], node: "pve-standby")
        let found = RestoreProbe.refusals(volid: Self.ct, config: Self.ctConfig, settings: Self.settings(201), pool: nil, context: c)
        #expect(found == [
            "missing Sys.Modify on / (the backup is of a privileged container; its first restore needs it)",
            "mp0 is a bind mount point: only root@pam can restore it",
            "mp1 is a device mount point: only root@pam can restore it",
        ])
        // An existing CT copy: no first restore any more. Without a target storage: `local`.
        let copy = GuestResource(vmid: 201, type: .ct, node: "pve-standby", status: "stopped", name: "files", lock: nil, tags: [])
        let c2 = RestoreProbe.Context(permissions: Self.good, storages: Self.storages, guests: [copy], node: "pve-standby")
        let found2 = RestoreProbe.refusals(volid: Self.ct, config: Self.ctConfig + "unprivileged: 1\n", settings: Self.settings(201, storage: nil), pool: nil, context: c2)
        #expect(found2.first == "no target_storage: PVE puts the container on 'local', which does not allow container directories (content rootdir)")
        #expect(found2.count == 3, "\(found2)")
        // root@pam (pvesh): only the storage findings.
        let root = RestoreProbe.Context(permissions: nil, storages: Self.storages, guests: [], node: "pve-standby")
        #expect(RestoreProbe.refusals(volid: Self.ct, config: Self.ctConfig, settings: Self.settings(201), pool: nil, context: root).isEmpty)
        #expect(RestoreProbe.refusals(volid: Self.vm, config: Self.vmConfig, settings: Self.settings(101, storage: "nfs"), pool: nil, context: root)
            == ["target storage 'nfs' does not exist on node pve-standby"])
    }

    /// An inactive target storage is named (a forced restore onto it would free the copy first).
    @Test func inactiveTargetStorageIsNamed() {
        var storages = Self.storages
        storages["local-lvm"]?.active = false
        let root = RestoreProbe.Context(permissions: nil, storages: storages, guests: [], node: "pve-standby")
        #expect(RestoreProbe.refusals(volid: Self.vm, config: Self.vmConfig, settings: Self.settings(101), pool: nil, context: root)
            == ["target storage 'local-lvm' is not active on node pve-standby (a forced restore would free the copy's disks and then fail)"])
    }

    /// The backup's disk sizes in pbs-restore's order, and its onboot (for failover).
    @Test func backupConfigGivesDiskSizesAndOnboot() {
        let c = BackupConfig(parsing: "onboot: 1\nscsi1: local-lvm:vm-1-disk-1,size=512M\nscsi0: local-lvm:vm-1-disk-0,size=32G\n"
            + "#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n#qmdump#map:scsi1:drive-scsi1:local-lvm:raw:\n", type: .vm)
        #expect(c.onboot && c.diskSizes == [32 << 30, 512 << 20])
        #expect(BackupConfig(parsing: "scsi0: local-lvm:vm-1-disk-0\n#qmdump#map:scsi0:drive-scsi0:local-lvm:raw:\n", type: .vm).diskSizes == [])
    }
}
