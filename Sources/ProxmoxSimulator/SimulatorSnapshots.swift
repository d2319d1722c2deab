import Foundation
import ProxmoxAPI

/// One VM snapshot: a `[snapname]` section of the VM config. The config part is what
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
}

extension PVESimulator {
    /// Storage types whose raw volumes can be snapshotted: `volume_has_feature('snapshot')` is
    /// true for a current raw volume on lvmthin (pve-storage src/PVE/Storage/LvmThinPlugin.pm:408-428),
    /// zfspool (ZFSPoolPlugin.pm:809-830; ZFS over iSCSI inherits it) and rbd (RBDPlugin.pm:955-975);
    /// false on dir/nfs/cifs (qcow2 only, Plugin.pm:1575-1582) and lvm (qcow2 only,
    /// LVMPlugin.pm:1367-1382). Other types [unverified]: treated as unable.
    static let snapshotCapableTypes: Set<String> = ["lvmthin", "zfspool", "zfs", "rbd"]

    /// `…/qemu/{vmid}/snapshot[/{snapname}[/rollback]]` (qemu-server src/PVE/API2/Qemu.pm:6077-6500).
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
            return .ok(.array([.object(["cmd": .string("rollback")]), .object(["cmd": .string("config")])]))  // Qemu.pm:6258-6266
        case (.post, 2) where rest[1] == "rollback":
            return rollbackSnapshot(&s, now: now, g, rest[0], p)
        case (.delete, 1):
            return deleteSnapshot(&s, now: now, g, rest[0])
        default:
            return .error(status: 501, message: "Method '\(method.rawValue) /\(path.hasPrefix("/") ? String(path.dropFirst()) : path)' not implemented\n", errors: [:])
        }
    }

    /// `snapshot_list` (Qemu.pm:6129-6163): each snapshot (name, snaptime, vmstate, description,
    /// parent, snapstate), then `current` (digest, running, "You are here!", parent). PVE's order
    /// is a hash's; here oldest first.
    private func snapshotList(_ g: SimGuest) -> JSONValue {
        var out: [JSONValue] = g.snapshots.sorted { $0.snaptime < $1.snaptime }.map { snap in
            var o: [String: JSONValue] = ["name": .string(snap.name), "snaptime": .number(Double(snap.snaptime)),
                                          "vmstate": .number(0), "description": .string(snap.description)]
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

    /// `POST …/snapshot` (Qemu.pm:6167-6231): reserved names refused at once (:6212-6216), then a
    /// `qmsnapshot` task running `snapshot_create` → `__snapshot_prepare` (AbstractConfig.pm:730-785):
    /// lock check, `snapshot name 'X' already used`, `snapshot feature is not available` (every
    /// disk's storage must support it, QemuConfig.pm:74-92), then `lock: snapshot` and the new
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
        if name.lowercased() == "pending" { return .error(status: 500, message: "unable to use snapshot name 'pending' (reserved name)\n", errors: [:]) }
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.Snapshot") { return .error(status: 403, message: e + "\n", errors: [:]) }
        var error: String?
        if let lock = g.lock { error = "VM is locked (\(lock))" }
        else if g.snapshots.contains(where: { $0.name == name }) { error = "snapshot name '\(name)' already used" }
        else if !g.disks.indices.allSatisfy({ i in
            scenario.targetStorages.first { $0.id == g.storage(ofDisk: i) }.map { Self.snapshotCapableTypes.contains($0.type) } ?? false
        }) { error = "snapshot feature is not available" }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: "qmsnapshot", vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        var ng = g
        ng.lock = "snapshot"
        ng.snapshots.append(SimVMSnapshot(name: name, description: p["description"] ?? "", snaptime: Int(now), parent: g.parent, snapstate: "prepare",
                                          guestName: g.name, tags: g.tags, disks: g.disks, storage: g.storage, diskStorages: g.diskStorages,
                                          onboot: g.onboot, vmgenid: g.vmgenid, protection: g.protection, extraConfig: g.extraConfig))
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: "qmsnapshot", vmid: g.vmid, duration: 2, lines: [], error: nil,
                                   effect: .snapshotCreated(vmid: g.vmid, snapname: name)).description))
    }

    /// `POST …/snapshot/{snapname}/rollback` (Qemu.pm:6368-6432): `start` needs `VM.PowerMgmt`
    /// up front (:6412-6413); the `qmrollback` task runs `snapshot_rollback`
    /// (AbstractConfig.pm:1124-1205): `snapshot 'X' does not exist`, `unable to rollback to
    /// incomplete snapshot (snapstate = …)`, lock check, the VM is stopped, `lock: rollback`; at
    /// the end the snapshot's config (description kept, :709-727), `parent`, a new `vmgenid`
    /// when the config has one (QemuConfig.pm:471-476 `__snapshot_rollback_hook`), and the disks.
    private func rollbackSnapshot(_ s: inout State, now: Double, _ g: SimGuest, _ name: String, _ p: [String: String]) -> SimResult {
        let vmPath = "/vms/\(g.vmid)"
        if permissionCheck(s, vmPath, "VM.Snapshot") != nil, let e = permissionCheck(s, vmPath, "VM.Snapshot.Rollback") {
            return .error(status: 403, message: e + "\n", errors: [:])  // [unverified] text of an `any => 1` check
        }
        let start = p["start"].flatMap(Self.parseBoolean) ?? false
        if start, let e = permissionCheck(s, vmPath, "VM.PowerMgmt") { return .error(status: 403, message: e + "\n", errors: [:]) }
        var error: String?
        if let snap = g.snapshots.first(where: { $0.name == name }) {
            if let state = snap.snapstate { error = "unable to rollback to incomplete snapshot (snapstate = \(state))" }
            else if let lock = g.lock { error = "VM is locked (\(lock))" }
        } else {
            error = "snapshot '\(name)' does not exist"
        }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: "qmrollback", vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        var ng = g
        ng.lock = "rollback"
        ng.status = "stopped"  // `__snapshot_rollback_vm_stop` (AbstractConfig.pm:1163)
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: "qmrollback", vmid: g.vmid, duration: 3, lines: [], error: nil,
                                   effect: .snapshotRolledBack(vmid: g.vmid, snapname: name, start: start)).description))
    }

    /// `DELETE …/snapshot/{snapname}` (Qemu.pm:6436-6520): the `qmdelsnapshot` task runs
    /// `snapshot_delete` (AbstractConfig.pm:922-1030): `snapshot 'X' does not exist`, then
    /// `set_lock('snapshot-delete')` (lock check), `snapstate: delete`; at the end the section is
    /// gone, `parent` links skip it, the lock is removed.
    private func deleteSnapshot(_ s: inout State, now: Double, _ g: SimGuest, _ name: String) -> SimResult {
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.Snapshot") { return .error(status: 403, message: e + "\n", errors: [:]) }
        var error: String?
        if !g.snapshots.contains(where: { $0.name == name }) { error = "snapshot '\(name)' does not exist" }
        else if let lock = g.lock { error = "VM is locked (\(lock))" }
        if let error {
            return .ok(.string(newTask(&s, now: now, type: "qmdelsnapshot", vmid: g.vmid, duration: 1, lines: [], error: error, effect: .none).description))
        }
        var ng = g
        ng.lock = "snapshot-delete"
        if let i = ng.snapshots.firstIndex(where: { $0.name == name }) { ng.snapshots[i].snapstate = "delete" }
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.string(newTask(&s, now: now, type: "qmdelsnapshot", vmid: g.vmid, duration: 2, lines: [], error: nil,
                                   effect: .snapshotDeleted(vmid: g.vmid, snapname: name)).description))
    }

    /// The end of a successful snapshot task (called from `settle`), with the image files copied
    /// (snapshot: image → `snap_…`, rollback: back, delete: removed).
    func applySnapshotEffect(_ s: inout State, _ effect: SimTask.Effect) {
        switch effect {
        case .snapshotCreated(let vmid, let name):
            guard var g = s.guests[vmid], let i = g.snapshots.firstIndex(where: { $0.name == name }) else { return }
            g.snapshots[i].snapstate = nil
            g.lock = nil
            g.parent = name
            g.configDigestCounter += 1
            s.guests[vmid] = g
            forEachImage(vmid: vmid, g.snapshots[i]) { image, snap in images?.copyImage(from: image, to: snap) }
        case .snapshotRolledBack(let vmid, let name, let start):
            guard var g = s.guests[vmid], let snap = g.snapshots.first(where: { $0.name == name }) else { return }
            g.name = snap.guestName
            g.tags = snap.tags
            g.disks = snap.disks
            g.storage = snap.storage
            g.diskStorages = snap.diskStorages
            g.onboot = snap.onboot
            g.protection = snap.protection
            g.extraConfig = snap.extraConfig
            g.vmgenid = snap.vmgenid == nil ? nil : newVMGenID(&s)
            g.parent = name
            g.lock = nil
            g.status = start ? "running" : "stopped"
            g.configDigestCounter += 1
            s.guests[vmid] = g
            forEachImage(vmid: vmid, snap) { image, snapFile in images?.copyImage(from: snapFile, to: image) }
        case .snapshotDeleted(let vmid, let name):
            guard var g = s.guests[vmid], let snap = g.snapshots.first(where: { $0.name == name }) else { return }
            g.snapshots.removeAll { $0.name == name }
            if g.parent == name { g.parent = snap.parent }
            for i in g.snapshots.indices where g.snapshots[i].parent == name { g.snapshots[i].parent = snap.parent }
            g.lock = nil
            g.configDigestCounter += 1
            s.guests[vmid] = g
            forEachImage(vmid: vmid, snap) { _, snapFile in try? FileManager.default.removeItem(atPath: snapFile) }
        default:
            break
        }
    }

    /// Calls `body(image file, snapshot file)` for each disk of `snap` (with `image_dir` only).
    private func forEachImage(vmid: Int, _ snap: SimVMSnapshot, _ body: (String, String) -> Void) {
        guard let images else { return }
        for i in snap.disks.indices {
            let storage = i < snap.diskStorages.count ? snap.diskStorages[i] : snap.storage
            guard let image = images.imagePath(storage: storage, vmid: vmid, disk: i),
                  let file = images.snapshotPath(storage: storage, vmid: vmid, disk: i, snapname: snap.name) else { continue }
            body(image, file)
        }
    }

    /// pve-configid: `[a-z][a-z0-9_-]+`, any case [unverified: regex recalled, not re-read].
    static func isConfigID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count >= 2, let f = u.first, (f | 0x20) >= 97 && (f | 0x20) <= 122 else { return false }
        return u.dropFirst().allSatisfy { c in ((c | 0x20) >= 97 && (c | 0x20) <= 122) || (c >= 48 && c <= 57) || c == 95 || c == 45 }
    }
}
