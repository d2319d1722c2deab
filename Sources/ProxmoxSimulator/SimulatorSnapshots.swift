import Foundation
import ProxmoxAPI

/// One VM or CT snapshot: a `[snapname]` section of the guest config. The config part is what
/// `__snapshot_copy_config` copies (pve-guest-common src/PVE/AbstractConfig.pm:691-706: all but
/// `snapshots`, `snapstate`, `snaptime`, `vmstate`, `lock`, `digest`, `description`, `unusedN`).
struct SimVMSnapshot: Codable {
    var name: String
    /// The snapshot's own description (the `description` parameter, AbstractConfig.pm:781).
    var description: String
    var snaptime: Int
    var parent: String?
    /// `prepare` while `qmsnapshot` runs (:778), `delete` while `qmdelsnapshot` runs (:991).
    var snapstate: String?
    var guestName: String
    var tags: [String]
    var disks: [Int64]
    var storage: String
    var diskStorages: [String]
    var onboot: Bool
    var vmgenid: String?
    var protection: Bool
    var extraConfig: [String: String]
    /// The guest's ``SimGuest/dataGeneration`` when taken (nil in states saved before it existed).
    var dataGeneration: Int? = nil
}

extension SimGuest {
    /// The config a snapshot holds, as the guest's (a rollback; a clone from a snapshot): name,
    /// tags, disks and their storages, `onboot`, `protection`, `vmgenid` and the other keys.
    mutating func takeConfig(of snap: SimVMSnapshot) {
        name = snap.guestName
        tags = snap.tags
        disks = snap.disks
        storage = snap.storage
        diskStorages = snap.diskStorages
        onboot = snap.onboot
        vmgenid = snap.vmgenid
        protection = snap.protection
        extraConfig = snap.extraConfig
    }
}

extension PVESimulator {
    /// Storage types whose raw volumes can be snapshotted: `volume_has_feature('snapshot')` is
    /// true for a current raw volume on lvmthin (pve-storage src/PVE/Storage/LvmThinPlugin.pm:408-428),
    /// zfspool (ZFSPoolPlugin.pm:809-830; ZFS over iSCSI inherits it) and rbd (RBDPlugin.pm:955-975);
    /// false on dir/nfs/cifs (qcow2 only, Plugin.pm:1575-1582) and lvm (qcow2 only,
    /// LVMPlugin.pm:1367-1382). Other types [unverified]: treated as unable.
    static let snapshotCapableTypes: Set<String> = ["lvmthin", "zfspool", "zfs", "rbd"]

    /// `…/qemu/{vmid}/snapshot[/{snapname}[/rollback]]` (qemu-server src/PVE/API2/Qemu.pm:6077-6500)
    /// and `…/lxc/{vmid}/snapshot…` (pve-container src/PVE/API2/LXC/Snapshot.pm:22-325): the same
    /// calls and checks (both run pve-guest-common's AbstractConfig.pm), the CT's with task types
    /// `vzsnapshot`, `vzrollback`, `vzdelsnapshot` and texts `CT is locked (…)`.
    func snapshotCall(_ s: inout State, now: Double, _ method: APIMethod, _ g: SimGuest, _ rest: [String],
                      _ p: [String: String], path: String) -> SimResult {
        let vmPath = "/vms/\(g.vmid)"
        switch (method, rest.count) {
        case (.get, 0):
            if let e = permissionCheck(s, vmPath, "VM.Audit") { return .error(status: 403, message: e + "\n", errors: [:]) }
            return .ok(snapshotList(g))
        case (.post, 0):
            return createSnapshot(&s, now: now, g, p)
        case (.get, 1):
            return .ok(.array([.object(["cmd": .string("rollback")]), .object(["cmd": .string("config")])]))  // Qemu.pm:6258-6266, Snapshot.pm:231-264
        case (.post, 2) where rest[1] == "rollback":
            return rollbackSnapshot(&s, now: now, g, rest[0], p)
        case (.delete, 1):
            return deleteSnapshot(&s, now: now, g, rest[0])
        default:
            return .error(status: 501, message: "Method '\(method.rawValue) /\(path.hasPrefix("/") ? String(path.dropFirst()) : path)' not implemented\n", errors: [:])
        }
    }

    /// `snapshot_list` (Qemu.pm:6129-6163): each snapshot (name, snaptime, vmstate, description,
    /// parent, snapstate), then `current` (digest, running, "You are here!", parent); a CT's has no
    /// `vmstate` (Snapshot.pm:70-101). PVE's order is a hash's; here oldest first.
    private func snapshotList(_ g: SimGuest) -> JSONValue {
        var out: [JSONValue] = g.snapshots.sorted { $0.snaptime < $1.snaptime }.map { snap in
            var o: [String: JSONValue] = ["name": .string(snap.name), "snaptime": .number(Double(snap.snaptime)),
                                          // pve-container's config parser keeps the newline after each
                                          // `#` description line (LXC/Config.pm:1162, :1175, :1217);
                                          // qemu-server strips it (QemuServer.pm:1971).
                                          "description": .string(snap.description + (g.type == .ct && !snap.description.isEmpty ? "\n" : ""))]
            if g.type == .vm { o["vmstate"] = .number(0) }
            if let parent = snap.parent { o["parent"] = .string(parent) }
            if let state = snap.snapstate { o["snapstate"] = .string(state) }
            return .object(o)
        }
        var current: [String: JSONValue] = ["name": .string("current"), "digest": .string(g.digest),
                                            "running": .number(g.status == "running" ? 1 : 0), "description": .string("You are here!")]
        if let parent = g.parent { current["parent"] = .string(parent) }
        out.append(.object(current))
        return .array(out)
    }

    /// `POST …/snapshot` (Qemu.pm:6167-6231): reserved names refused at once (:6212-6216; a CT's
    /// are `current` and `vzdump`, Snapshot.pm:152-156), then a `qmsnapshot`/`vzsnapshot` task running `snapshot_create` → `__snapshot_prepare` (AbstractConfig.pm:730-785):
    /// lock check, `snapshot name 'X' already used`, `snapshot feature is not available` (every
    /// volume's storage must support it, QemuConfig.pm:74-92, LXC/Config.pm:88-113; see
    /// ``snapshotUnavailable(_:)``), then `lock: snapshot` and the new
    /// section in state `prepare`; committed when the task ends (`__snapshot_commit`, :788-813).
    private func createSnapshot(_ s: inout State, now: Double, _ g: SimGuest, _ p: [String: String]) -> SimResult {
        guard let name = p["snapname"] else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["snapname": "property is missing and it is not optional"])
        }
        // `pve-snapshot-name`: format pve-configid, maxLength 40 (qemu-server / pve-common JSONSchema.pm).
        if name.count > 40 {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["snapname": "value may only be 40 characters long"])
        }
        if !Self.isConfigID(name) {
            // [unverified] exact wording of the pve-configid format error.
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["snapname": "invalid format - invalid configuration ID '\(name)'\n"])
        }
        if name == "current" { return .error(status: 500, message: "unable to use snapshot name 'current' (reserved name)\n", errors: [:]) }
        if g.type == .vm, name.lowercased() == "pending" { return .error(status: 500, message: "unable to use snapshot name 'pending' (reserved name)\n", errors: [:]) }
        if g.type == .ct, name == "vzdump" { return .error(status: 500, message: "unable to use snapshot name 'vzdump' (reserved name)\n", errors: [:]) }
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.Snapshot") { return .error(status: 403, message: e + "\n", errors: [:]) }
        let taskType = g.type == .vm ? "qmsnapshot" : "vzsnapshot"
        var error: String?
        if let lock = g.lock { error = "\(Self.kind(g)) is locked (\(lock))" }
        else if g.snapshots.contains(where: { $0.name == name }) { error = "snapshot name '\(name)' already used" }
        else if snapshotUnavailable(g) { error = "snapshot feature is not available" }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        var ng = g
        ng.lock = "snapshot"
        ng.snapshots.append(SimVMSnapshot(name: name, description: p["description"] ?? "", snaptime: Int(now), parent: g.parent, snapstate: "prepare",
                                          guestName: g.name, tags: g.tags, disks: g.disks, storage: g.storage, diskStorages: g.diskStorages,
                                          onboot: g.onboot, vmgenid: g.vmgenid, protection: g.protection, extraConfig: g.extraConfig,
                                          dataGeneration: g.dataGeneration))
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 2, lines: [], error: nil,
                                   effect: .snapshotCreated(vmid: g.vmid, snapname: name)).description))
    }

    /// `POST …/snapshot/{snapname}/rollback` (Qemu.pm:6368-6432; Snapshot.pm:267-325, whose
    /// `start` needs no further privilege): a VM's `start` needs `VM.PowerMgmt` up front
    /// (:6412-6413); the `qmrollback`/`vzrollback` task runs `snapshot_rollback`
    /// (AbstractConfig.pm:1124-1205): `snapshot 'X' does not exist`, `unable to rollback to
    /// incomplete snapshot (snapstate = …)`, lock check, the guest is stopped (a CT by
    /// LXC/Config.pm:278-283), `lock: rollback`; at
    /// the end the snapshot's config (description kept, :709-727), `parent`, a new `vmgenid`
    /// when the config has one (QemuConfig.pm:471-476 `__snapshot_rollback_hook`), and the disks
    /// (their data generation is the snapshot's again).
    private func rollbackSnapshot(_ s: inout State, now: Double, _ g: SimGuest, _ name: String, _ p: [String: String]) -> SimResult {
        let vmPath = "/vms/\(g.vmid)"
        if permissionCheck(s, vmPath, "VM.Snapshot") != nil, let e = permissionCheck(s, vmPath, "VM.Snapshot.Rollback") {
            return .error(status: 403, message: e + "\n", errors: [:])  // [unverified] text of an `any => 1` check
        }
        let start = p["start"].flatMap(Self.parseBoolean) ?? false
        if start, g.type == .vm, let e = permissionCheck(s, vmPath, "VM.PowerMgmt") { return .error(status: 403, message: e + "\n", errors: [:]) }
        let taskType = g.type == .vm ? "qmrollback" : "vzrollback"
        var error: String?
        if let snap = g.snapshots.first(where: { $0.name == name }) {
            if let state = snap.snapstate { error = "unable to rollback to incomplete snapshot (snapstate = \(state))" }
            else if let lock = g.lock { error = "\(Self.kind(g)) is locked (\(lock))" }
        } else {
            error = "snapshot '\(name)' does not exist"
        }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        setPowerState(&s, g.vmid, running: false, at: now)  // `__snapshot_rollback_vm_stop` (AbstractConfig.pm:1163)
        var ng = s.guests[g.vmid] ?? g
        ng.lock = "rollback"
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 3, lines: [], error: nil,
                                   effect: .snapshotRolledBack(vmid: g.vmid, snapname: name, start: start)).description))
    }

    /// `DELETE …/snapshot/{snapname}` (Qemu.pm:6436-6520; Snapshot.pm:167-228): the
    /// `qmdelsnapshot`/`vzdelsnapshot` task runs
    /// `snapshot_delete` (AbstractConfig.pm:922-1030): `snapshot 'X' does not exist`, then
    /// `set_lock('snapshot-delete')` (lock check), `snapstate: delete`; at the end the section is
    /// gone, `parent` links skip it, the lock is removed.
    private func deleteSnapshot(_ s: inout State, now: Double, _ g: SimGuest, _ name: String) -> SimResult {
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.Snapshot") { return .error(status: 403, message: e + "\n", errors: [:]) }
        let taskType = g.type == .vm ? "qmdelsnapshot" : "vzdelsnapshot"
        var error: String?
        if !g.snapshots.contains(where: { $0.name == name }) { error = "snapshot '\(name)' does not exist" }
        else if let lock = g.lock { error = "\(Self.kind(g)) is locked (\(lock))" }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        var ng = g
        ng.lock = "snapshot-delete"
        if let i = ng.snapshots.firstIndex(where: { $0.name == name }) { ng.snapshots[i].snapstate = "delete" }
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: 2, lines: [], error: nil,
                                   effect: .snapshotDeleted(vmid: g.vmid, snapname: name)).description))
    }

    /// The end of a successful snapshot task (called from `settle`), with the image files copied
    /// (snapshot: image → `snap_…`, rollback: back, delete: removed). `time`: the task's end.
    func applySnapshotEffect(_ s: inout State, _ effect: SimTask.Effect, at time: Double) {
        switch effect {
        case .snapshotCreated(let vmid, let name):
            guard var g = s.guests[vmid], let i = g.snapshots.firstIndex(where: { $0.name == name }) else { return }
            g.snapshots[i].snapstate = nil
            g.lock = nil
            g.parent = name
            g.configDigestCounter += 1
            s.guests[vmid] = g
            forEachImage(g, g.snapshots[i]) { image, snap in images?.copyImage(from: image, to: snap) }
        case .snapshotRolledBack(let vmid, let name, let start):
            guard var g = s.guests[vmid], let snap = g.snapshots.first(where: { $0.name == name }) else { return }
            g.takeConfig(of: snap)
            g.vmgenid = snap.vmgenid == nil ? nil : newVMGenID(&s)
            g.parent = name
            g.lock = nil
            g.pending = [:]
            g.dataGeneration = snap.dataGeneration ?? nextDataGeneration(&s)
            g.configDigestCounter += 1
            s.guests[vmid] = g
            if start { setPowerState(&s, vmid, running: true, at: time) }
            forEachImage(g, snap) { image, snapFile in images?.copyImage(from: snapFile, to: image) }
        case .snapshotDeleted(let vmid, let name):
            guard var g = s.guests[vmid], let snap = g.snapshots.first(where: { $0.name == name }) else { return }
            g.snapshots.removeAll { $0.name == name }
            if g.parent == name { g.parent = snap.parent }
            for i in g.snapshots.indices where g.snapshots[i].parent == name { g.snapshots[i].parent = snap.parent }
            g.lock = nil
            g.configDigestCounter += 1
            s.guests[vmid] = g
            forEachImage(g, snap) { _, snapFile in try? FileManager.default.removeItem(atPath: snapFile) }
        default:
            break
        }
    }

    /// Calls `body(image file, snapshot file)` for each disk of `snap` (with `image_dir` only;
    /// VMs only: CT volumes have no image files).
    private func forEachImage(_ g: SimGuest, _ snap: SimVMSnapshot, _ body: (String, String) -> Void) {
        guard let images, g.type == .vm else { return }
        let vmid = g.vmid
        for i in snap.disks.indices {
            let storage = i < snap.diskStorages.count ? snap.diskStorages[i] : snap.storage
            guard let image = images.imagePath(storage: storage, vmid: vmid, disk: i),
                  let file = images.snapshotPath(storage: storage, vmid: vmid, disk: i, snapname: snap.name) else { continue }
            body(image, file)
        }
    }

    /// `VM` or `CT`, as `guest_type` names them in lock errors (AbstractConfig.pm:336-340).
    static func kind(_ g: SimGuest) -> String { g.type == .vm ? "VM" : "CT" }

    /// `has_feature('snapshot')` fails: some volume's storage cannot snapshot (qemu-server
    /// QemuConfig.pm:74-93 over every non-CD-ROM drive, pve-container LXC/Config.pm:88-113 over
    /// `rootfs` and every `mpN`, bind and device mount points included). A path (`/dev/sdb`, a
    /// bind mount's host directory) is no storage volume: `volume_has_feature` returns undef
    /// (pve-storage Storage.pm:502-516).
    func snapshotUnavailable(_ g: SimGuest) -> Bool {
        func capable(_ storage: String) -> Bool {
            scenario.targetStorages.first { $0.id == storage }.map { Self.snapshotCapableTypes.contains($0.type) } ?? false
        }
        if !g.disks.indices.allSatisfy({ capable(g.storage(ofDisk: $0)) }) { return true }
        let prefixes = g.type == .vm ? ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"] : ["mp"]
        for (key, value) in g.extraConfig where key == "rootfs" || prefixes.contains(where: { Self.numbered(key, $0) != nil }) {
            let volume = String(value.split(separator: ",").first ?? "")
            if volume == "none" || value.contains("media=cdrom") { continue }
            if volume.hasPrefix("/") { return true }
            guard let colon = volume.firstIndex(of: ":"), capable(String(volume[..<colon])) else { return true }
        }
        return false
    }

    /// pve-configid: `[a-z][a-z0-9_-]+`, any case [unverified: regex recalled, not re-read].
    static func isConfigID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count >= 2, let f = u.first, (f | 0x20) >= 97 && (f | 0x20) <= 122 else { return false }
        return u.dropFirst().allSatisfy { c in ((c | 0x20) >= 97 && (c | 0x20) <= 122) || (c >= 48 && c <= 57) || c == 95 || c == 45 }
    }
}
