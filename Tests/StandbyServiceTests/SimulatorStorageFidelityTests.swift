import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import Testing

/// The simulator's storages against PVE's restore code (reference §3, §13.4; pve-container
/// `src/PVE/API2/LXC.pm`, qemu-server `src/PVE/QemuServer.pm`): the stock `local` refuses
/// container directories, a VM restore without `storage` keeps each disk's backed-up storage, a
/// forced CT restore needs room for the new volumes beside the old ones, and a CT restore is
/// refused in PVE's order. Driven through ``PVESimulator/handle(_:_:_:)`` with a manual clock.
@Suite("Simulator storage fidelity")
struct SimulatorStorageFidelityTests {
    static let gib: Int64 = 1 << 30
    static let node = "pve-standby"

    /// A simulator on a manual clock, spoken to as the API would be.
    final class Bench: @unchecked Sendable {
        let clock = ManualClock(start: 1_800_000_100)
        let sim: PVESimulator

        init(_ scenario: Scenario) { sim = PVESimulator(scenario: scenario, clock: clock) }

        /// The newest complete backup of `vmid` on `pbs-prod` (in-progress ones are listed with size 1, §2).
        func newest(_ vmid: Int) throws -> String {
            guard case .ok(.array(let entries)) = sim.handle(.get, "/nodes/\(node)/storage/pbs-prod/content", [("vmid", String(vmid))]) else {
                throw Failure("no listing")
            }
            let complete = entries.filter { $0["size"]?.int != 1 }.compactMap { $0["volid"]?.string }
            guard let last = complete.last else { throw Failure("no complete backup of \(vmid)") }
            return last
        }

        /// `POST /nodes/{node}/lxc|qemu` restoring the newest backup of `vmid` into itself.
        func restore(_ type: GuestType, _ vmid: Int, force: Bool = true, storage: String? = nil) throws -> SimResult {
            var p: [(String, String)] = [("vmid", String(vmid))]
            if type == .ct { p += [("ostemplate", try newest(vmid)), ("restore", "1")] } else { p.append(("archive", try newest(vmid))) }
            if force { p.append(("force", "1")) }
            if let storage { p.append(("storage", storage)) }
            return sim.handle(.post, "/nodes/\(node)/\(type == .vm ? "qemu" : "lxc")", p)
        }

        /// Lets the task end; its exit status and log lines.
        func finish(_ result: SimResult) throws -> (exit: String, log: [String]) {
            guard case .ok(.string(let upid)) = result else { throw Failure("expected a UPID, got \(result)") }
            clock.advance(by: 3600)
            guard case .ok(let st) = sim.handle(.get, "/nodes/\(node)/tasks/\(upid)/status", []), let exit = st["exitstatus"]?.string else {
                throw Failure("no task status")
            }
            guard case .ok(.array(let lines)) = sim.handle(.get, "/nodes/\(node)/tasks/\(upid)/log", [("limit", "0")]) else {
                throw Failure("no task log")
            }
            return (exit, lines.compactMap { $0["t"]?.string })
        }

        /// `used` of a storage (`GET …/storage/{id}/status`).
        func used(_ storage: String) -> Int64 {
            guard case .ok(let st) = sim.handle(.get, "/nodes/\(node)/storage/\(storage)/status", []), let u = st["used"]?.double else { return -1 }
            return Int64(u)
        }

        func content(_ storage: String) -> String? {
            guard case .ok(.array(let list)) = sim.handle(.get, "/nodes/\(node)/storage", []) else { return nil }
            return list.first { $0["storage"]?.string == storage }?["content"]?.string
        }

        var tasks: Int {
            guard case .ok(.array(let list)) = sim.handle(.get, "/nodes/\(node)/tasks", [("source", "all"), ("limit", "0")]) else { return -1 }
            return list.count
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// `local-lvm` and a stock `local`, backups of one VM and one CT, our copies of them on the node.
    static func scenario(lvmTotal: Int64 = 100 * gib, lvmUsed: Int64 = 20 * gib, _ change: (inout Scenario) -> Void = { _ in }) -> Scenario {
        var s = Scenario()
        s.node = node
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1")]
        s.targetStorages = [.init(id: "local-lvm", total: lvmTotal, used: lvmUsed),
                            .init(id: "local", type: "dir", total: 100 * gib, used: 10 * gib)]
        s.backedUp = [
            .init(vmid: 101, type: .vm, name: "web", storage: "pbs-prod", disks: [4 * gib], interval: 3600),
            .init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * gib], interval: 3600),
        ]
        s.existing = [
            .init(vmid: 101, type: .vm, name: "web", tags: ["pbs-standby"], description: "our copy", disks: [4 * gib]),
            .init(vmid: 201, type: .ct, name: "dns", tags: ["pbs-standby"], description: "our copy", disks: [2 * gib]),
        ]
        change(&s)
        return s
    }

    static func isError(_ r: SimResult, _ status: Int, _ message: String, errors: [String: String] = [:]) -> Bool {
        if case .error(let st, let m, let e) = r { return st == status && m == message + "\n" && e == errors }
        return false
    }

    // MARK: - a. the stock `local`

    /// A stock `local` (dir, `iso,vztmpl,backup`) refuses container directories: a CT restore
    /// without `storage` goes there (LXC.pm:322) and PVE answers 400 before it changes anything
    /// (LXC.pm:353; reference §13.4).
    @Test func ctRestoreWithoutStorageIsRefusedByTheStockLocal() throws {
        let b = Bench(Self.scenario())
        #expect(b.content("local") == "iso,vztmpl,backup")
        #expect(b.content("local-lvm") == "rootdir,images")
        let used = (b.used("local"), b.used("local-lvm"))
        let r = try b.restore(.ct, 201)
        #expect(Self.isError(r, 400, "Parameter verification failed.", errors: ["storage": "storage 'local' does not support container directories"]), "\(r)")
        let g = try #require(b.sim.guestSnapshot(201))
        #expect(g.lock == nil && b.sim.guestDescription(201) == "our copy", "nothing changed, not even the lock")
        #expect(b.tasks == 0 && b.sim.runningTaskCount() == 0)
        #expect(b.journal400(path: "/lxc"))
        #expect(b.used("local") == used.0 && b.used("local-lvm") == used.1)
        // Given a storage with `rootdir`, the same restore goes through.
        let (exit, _) = try b.finish(try b.restore(.ct, 201, storage: "local-lvm"))
        #expect(exit == "OK")
        // A scenario may give `local` more content.
        let rich = Bench(Self.scenario { $0.targetStorages[1].content = ["rootdir", "images", "iso", "vztmpl", "backup"] })
        #expect(try rich.finish(try rich.restore(.ct, 201)).exit == "OK")
    }

    /// The YAML `content` key of a target storage, checked against PVE's content types.
    @Test func targetStorageContentParses() throws {
        let s = try Scenario.parse(yaml: """
            target_storages: [{id: local, type: dir}, {id: nfs, type: nfs, content: [images, rootdir]}]
            """)
        #expect(s.targetStorages[0].effectiveContent == ["iso", "vztmpl", "backup"])
        #expect(s.targetStorages[1].effectiveContent == ["images", "rootdir"])
        #expect(throws: (any Error).self) { try Scenario.parse(yaml: "target_storages: [{id: x, content: [disks]}]\n") }
    }

    // MARK: - b. a VM restore without `storage`

    /// Without `storage` each disk goes to the storage its `#qmdump#map` line names
    /// (QemuServer.pm:6612-6628, reference §13.4), not to some default storage.
    @Test func vmDisksGoToTheirBackedUpStorages() throws {
        let b = Bench(Self.scenario {
            $0.targetStorages.append(.init(id: "fast", total: 100 * Self.gib))
            $0.backedUp[0].disks = [4 * Self.gib, 1 * Self.gib]
            $0.backedUp[0].storages = ["fast", "local-lvm"]
            $0.existing.removeAll { $0.vmid == 101 }
        })
        let before = (b.used("fast"), b.used("local-lvm"))
        let (exit, log) = try b.finish(try b.restore(.vm, 101, force: false))
        #expect(exit == "OK")
        #expect(log.contains("new volume ID is 'fast:vm-101-disk-0'") && log.contains("new volume ID is 'local-lvm:vm-101-disk-1'"), "\(log)")
        #expect(b.used("fast") == before.0 + 4 * Self.gib && b.used("local-lvm") == before.1 + 1 * Self.gib)
    }

    /// A backed-up storage id unknown on this node ends the task before the old disks are freed
    /// (`storage_config` in `$parse_backup_hints`, QemuServer.pm:6628, before :7055): `TASK ERROR:
    /// storage 'ceph-prod' does not exist`, the copy stays as it was.
    @Test func unknownBackedUpStorageFailsBeforeTheCopyIsFreed() throws {
        let b = Bench(Self.scenario {
            $0.backedUp[0].disks = [4 * Self.gib, 1 * Self.gib]
            $0.backedUp[0].storages = ["local-lvm", "ceph-prod"]
        })
        let used = b.used("local-lvm")
        let (exit, log) = try b.finish(try b.restore(.vm, 101))
        #expect(exit == "storage 'ceph-prod' does not exist")
        #expect(log.contains("error before or during data restore, some or all disks were not completely restored. VM 101 state is NOT cleaned up."))
        #expect(!log.contains { $0.hasPrefix("new volume ID") })
        #expect(b.sim.guestDescription(101) == "our copy" && b.sim.guestSnapshot(101)?.lock == nil)
        #expect(b.used("local-lvm") == used, "the old disk was not freed")
        // A given `storage` that does not exist: the same, inside the task (no synchronous check, Qemu.pm:1298 checks the permission only).
        let (exit2, _) = try b.finish(try b.restore(.vm, 101, storage: "nfs"))
        #expect(exit2 == "storage 'nfs' does not exist")
        #expect(b.sim.guestDescription(101) == "our copy")
    }

    /// A storage without `images` (the stock `local`, or a PBS storage) is refused while reading the
    /// hints: `Content type 'images' is not available on storage 'local'` (QemuServer.pm:6604), the
    /// copy intact.
    @Test func storageWithoutImagesFailsBeforeTheCopyIsFreed() throws {
        let b = Bench(Self.scenario { $0.backedUp[0].storages = ["local"] })
        let (exit, _) = try b.finish(try b.restore(.vm, 101))
        #expect(exit == "Content type 'images' is not available on storage 'local'")
        #expect(b.sim.guestDescription(101) == "our copy")
        let (exit2, _) = try b.finish(try b.restore(.vm, 101, storage: "pbs-prod"))
        #expect(exit2 == "Content type 'images' is not available on storage 'pbs-prod'")
        #expect(b.sim.guestDescription(101) == "our copy")
    }

    /// An inactive backed-up storage exists and takes images, so the hints pass; PVE frees the old
    /// disks (QemuServer.pm:7055) and fails activating it when it allocates (:7058, pve-storage
    /// `activate_storage`): the copy is gone, a stub config is left (§3.1 step 3, §13.4).
    @Test func inactiveBackedUpStorageFailsAfterTheCopyIsFreed() throws {
        let b = Bench(Self.scenario {
            $0.targetStorages.append(.init(id: "fast", total: 100 * Self.gib))
            $0.backedUp[0].storages = ["fast"]
        })
        b.sim.setStorageActive("fast", false)
        let used = b.used("local-lvm")
        let (exit, _) = try b.finish(try b.restore(.vm, 101))
        #expect(exit == "storage 'fast' is not online")
        #expect(b.sim.guestDescription(101) == nil && b.sim.guestSnapshot(101)?.tags == [], "stub config")
        #expect(b.used("local-lvm") == used - 4 * Self.gib, "the old disk was freed")
    }

    // MARK: - c. space for a forced CT restore

    /// A forced CT restore creates the new volumes before it destroys the old ones (LXC.pm:534,
    /// :539): the storage needs room for the whole new CT beside the old one. A VM's old disks are
    /// freed first (QemuServer.pm:7055) and count as free.
    @Test func forcedCTRestoreNeedsRoomBesideTheOldVolumes() throws {
        // 10 GiB, 6 used (the old CT's 4 among them): 4 free, the new CT needs 5.
        let tight = Self.scenario(lvmTotal: 10 * Self.gib, lvmUsed: 6 * Self.gib) {
            $0.backedUp[1].disks = [5 * Self.gib]
            $0.existing[1].disks = [4 * Self.gib]
        }
        let b = Bench(tight)
        let (exit, _) = try b.finish(try b.restore(.ct, 201, storage: "local-lvm"))
        #expect(exit == "unable to restore CT 201 - lvcreate 'local-lvm/vm-201-disk-0' error: Insufficient free space")
        // The worker destroys the config; the old volumes were never destroyed and stay, unreferenced.
        #expect(b.sim.guestSnapshot(201) == nil)
        #expect(b.used("local-lvm") == 6 * Self.gib)

        // The same numbers for a VM: the old 4 GiB are freed first, 8 free.
        let vm = Bench(Self.scenario(lvmTotal: 10 * Self.gib, lvmUsed: 6 * Self.gib) {
            $0.backedUp[0].disks = [5 * Self.gib]
            $0.existing[0].disks = [4 * Self.gib]
        })
        #expect(try vm.finish(try vm.restore(.vm, 101, storage: "local-lvm")).exit == "OK")
        #expect(vm.used("local-lvm") == 7 * Self.gib)

        // Room for both: the old volumes go right after the new ones are made.
        let roomy = Bench(Self.scenario(lvmTotal: 10 * Self.gib, lvmUsed: 4 * Self.gib) {
            $0.backedUp[1].disks = [5 * Self.gib]
            $0.existing[1].disks = [4 * Self.gib]
        })
        #expect(try roomy.finish(try roomy.restore(.ct, 201, storage: "local-lvm")).exit == "OK")
        #expect(roomy.used("local-lvm") == 5 * Self.gib)
    }

    /// A restore failing after its volumes were made frees the new volumes (VM QemuServer.pm:7119,
    /// CT LXC.pm:619); the old ones were freed already: the storage ends with neither.
    @Test func failedForcedRestoresGiveBackTheirNewVolumesOnce() throws {
        for type in [GuestType.vm, .ct] {
            let b = Bench(Self.scenario(lvmTotal: 10 * Self.gib, lvmUsed: 6 * Self.gib) {
                $0.backedUp[type == .vm ? 0 : 1].disks = [3 * Self.gib]
                $0.existing[type == .vm ? 0 : 1].disks = [4 * Self.gib]
            })
            b.sim.setRestoreFails(type == .vm ? 101 : 201, true)
            let (exit, _) = try b.finish(try b.restore(type, type == .vm ? 101 : 201, storage: "local-lvm"))
            #expect(exit != "OK")
            #expect(b.used("local-lvm") == 2 * Self.gib, "\(type): 6 − the old 4 (+3 −3 new)")
        }
    }

    // MARK: - d. the order of a CT restore's refusals

    /// pve-container checks running and protection (LXC.pm:281-285) before the permissions
    /// (:295-318), the storage (:349-358) before the lock (:419).
    @Test func ctRefusalsComeInPVEsOrder() throws {
        let b = Bench(Self.scenario())
        let noRights: [Scenario.ACL] = [.init(path: "/vms", privs: ["VM.Audit"])]
        let rights: [Scenario.ACL] = [
            .init(path: "/vms", privs: ["VM.Allocate", "VM.Backup", "VM.Audit"]),
            .init(path: "/storage/pbs-prod", privs: ["Datastore.AllocateSpace"]),
            .init(path: "/storage/local", privs: ["Datastore.AllocateSpace"]),
            .init(path: "/sdn", privs: ["SDN.Use"]),
        ]
        b.sim.setACLs(noRights)
        // Existing, no force: check_vmid_unused, before any permission.
        #expect(Self.isError(try b.restore(.ct, 201, force: false), 500, "CT 201 already exists on node 'pve-standby'"))
        b.sim.modifyGuest(201, status: "running", lock: .some("backup"), protection: true)
        #expect(Self.isError(try b.restore(.ct, 201), 500, "can't overwrite running container"))
        b.sim.modifyGuest(201, status: "stopped")
        #expect(Self.isError(try b.restore(.ct, 201), 500, "unable to restore CT 201 - protection mode enabled"))
        b.sim.modifyGuest(201, protection: false)
        #expect(Self.isError(try b.restore(.ct, 201), 403, "Permission check failed"))
        b.sim.setACLs(rights)
        // The storage before the lock: missing, without rootdir, not writable, inactive.
        #expect(Self.isError(try b.restore(.ct, 201, storage: "nfs"), 500, "storage 'nfs' does not exist"))
        #expect(Self.isError(try b.restore(.ct, 201), 400, "Parameter verification failed.",
                             errors: ["storage": "storage 'local' does not support container directories"]))
        #expect(Self.isError(try b.restore(.ct, 201, storage: "local-lvm"), 403, "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"))
        b.sim.setACLs(rights + [.init(path: "/storage/local-lvm", privs: ["Datastore.AllocateSpace"])])
        b.sim.setStorageActive("local-lvm", false)
        #expect(Self.isError(try b.restore(.ct, 201, storage: "local-lvm"), 500, "storage 'local-lvm' is not online"))
        b.sim.setStorageActive("local-lvm", true)
        #expect(Self.isError(try b.restore(.ct, 201, storage: "local-lvm"), 500, "unable to restore CT 201 - CT is locked (backup)"))
        #expect(b.tasks == 0, "every refusal is synchronous")
        #expect(b.sim.guestSnapshot(201)?.lock == "backup" && b.sim.guestDescription(201) == "our copy")
        b.sim.modifyGuest(201, lock: .some(nil))
        #expect(try b.finish(try b.restore(.ct, 201, storage: "local-lvm")).exit == "OK")
        // A VM at the VMID: `check_vmid_unused` for a CT restore, no "unable to restore" prefix.
        #expect(Self.isError(try b.restore(.ct, 101), 500, "VM 101 already exists on node 'pve-standby'"))
    }
}

/// `check-config --probe`'s view of the same rules (StandbyService/RestoreProbe.swift).
@Suite("Restore probe: storages and propagation")
struct RestoreProbeStorageTests {
    static let storages: [String: StorageInfo] = [
        "local-lvm": .init(storage: "local-lvm", type: "lvmthin", content: ["images", "rootdir"], active: true, enabled: true),
        "local": .init(storage: "local", type: "dir", content: ["iso", "vztmpl", "backup"], active: true, enabled: true),
        "fast": .init(storage: "fast", type: "lvmthin", content: ["images", "rootdir"], active: false, enabled: true),
    ]
    static let vm = Volid(storage: "pbs-prod", type: .vm, vmid: 101, backupTime: 1_795_000_000)
    static let ct = Volid(storage: "pbs-prod", type: .ct, vmid: 201, backupTime: 1_795_000_000)
    static func settings(_ target: Int, storage: String?) -> GuestSettings {
        GuestSettings(targetVmid: target, targetStorage: storage, priority: 0, rpoTarget: .seconds(3600), startAfterRestore: false)
    }

    /// Without target_storage a VM's disks go to their backed-up storages (QemuServer.pm:6612-6628):
    /// one without `images` is refused before anything is freed, an inactive one after.
    @Test func backedUpStoragesThatCannotTakeTheDisksAreNamed() {
        let config = """
            scsi0: local-lvm:vm-101-disk-0,size=8G
            scsi1: local:vm-101-disk-1,size=1G
            scsi2: fast:vm-101-disk-2,size=1G
            #qmdump#map:scsi0:drive-scsi0:local-lvm:raw:
            #qmdump#map:scsi1:drive-scsi1:local:raw:
            #qmdump#map:scsi2:drive-scsi2:fast:raw:
            """
        let root = RestoreProbe.Context(permissions: nil, storages: Self.storages, guests: [], node: "pve-standby")
        #expect(RestoreProbe.refusals(volid: Self.vm, config: config, settings: Self.settings(101, storage: nil), pool: nil, context: root) == [
            "disk scsi1 is on storage 'local' in the backup, which does not allow VM disks (content images): set target_storage",
            "disk scsi2 is on storage 'fast' in the backup, which is not active on node pve-standby (a forced restore would free the copy's disks and then fail): set target_storage",
        ])
        // A CT's inactive target storage is refused before the lock (LXC.pm:358, :419): nothing is freed.
        #expect(RestoreProbe.refusals(volid: Self.ct, config: nil, settings: Self.settings(201, storage: "fast"), pool: nil, context: root)
            == ["target storage 'fast' is not active on node pve-standby (PVE refuses the restore before changing anything)"])
    }

    /// Privileges granted with `--propagate 0` hold at their path only: Sys.Modify on `/` is what a
    /// privileged CT's first restore needs (LXC.pm:468 checks `/` itself), VM.Allocate on `/` does
    /// not reach `/vms/101`.
    @Test func probeReadsPropagateFlags() {
        let perms = PVEPermissionMap([
            "/": ["Sys.Modify": false, "VM.Allocate": false],
            "/storage": ["Datastore.AllocateSpace": true],
            "/sdn": ["SDN.Use": true],
        ])
        let c = RestoreProbe.Context(permissions: perms, storages: Self.storages, guests: [], node: "pve-standby")
        let found = RestoreProbe.refusals(volid: Self.ct, config: "rootfs: local-lvm:subvol-201-disk-0,size=8G\nnet0: name=eth0,bridge=vmbr0\n",
                                          settings: Self.settings(201, storage: "local-lvm"), pool: nil, context: c)
        #expect(found == ["missing VM.Allocate on /vms/201 (PVE answers 403 \"Permission check failed\")"], "Sys.Modify on / is enough: \(found)")
    }
}

extension SimulatorStorageFidelityTests.Bench {
    /// Whether the last journaled call was a refused restore POST (status 400).
    func journal400(path: String) -> Bool {
        guard let last = sim.journal().last else { return false }
        return last.method == "POST" && last.path.hasSuffix(path) && last.status == 400
    }
}
