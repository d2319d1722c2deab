import Foundation
import ProxmoxAPI

/// `POST /nodes/{node}/{qemu|lxc}/{vmid}/clone`: full clones (qemu-server src/PVE/API2/Qemu.pm:4328-4750
/// `clone_vm`; pve-container src/PVE/API2/LXC.pm:1888-2300 `clone_vm`).
extension PVESimulator {
    /// A full clone of `g` to `newid` (`full`, `name`/`hostname`, `description`, `storage`,
    /// `target`, `snapname`, `pool`). What PVE refuses before it forks is a synchronous error:
    /// - 400 for a missing or bad `newid` (pve-vmid: 100 to 999999999);
    /// - 403 without `VM.Clone` on `/vms/{vmid}` and `VM.Allocate` on `/vms/{newid}` or `/pool/{pool}`
    ///   (Qemu.pm:4335-4349, LXC.pm:1895-1909);
    /// - `target` naming another node: our volumes are local, `can't clone VM to node 'X' (VM uses
    ///   local storage)` (Qemu.pm:4497-4498, LXC.pm:2151-2152);
    /// - `storage`: must exist (`storage 'X' does not exist`) and, for a VM, hold images (400,
    ///   Qemu.pm:4453-4457);
    /// - VM (`$load_and_check`, Qemu.pm:4448-4565): the lock, `snapname`, a linked clone of a
    ///   non-template (`Linked clone feature is not supported for '<volid>' (scsiN)`), per disk
    ///   `Datastore.AllocateSpace` on the target storage and a path disk (`unable to parse volume
    ///   ID '/dev/sdb'`, `$check_storage_access_clone` :282-323), host devices
    ///   (`check_mapping_access`), `SDN.Use` per bridge, then `unable to create VM N: config file
    ///   already exists` (:4500-4502) when this node holds a VM config of that id;
    /// - CT: the source's lock (`set_lock('disk')`, LXC.pm:2027), `check_vmid_unused` for `newid`
    ///   (`VM|CT N already exists on node 'X'`, :2028), then per volume `Datastore.AllocateSpace`,
    ///   `Full clone of a running container is only possible from a snapshot`, a bind or device
    ///   mount point (`unable to clone mountpoint 'mp0' (type bind)`), `SDN.Use` per bridge (:2080-2160).
    /// Then a `qmclone`/`vzclone` task with the source's VMID as id creates the clone at once
    /// (VM `lock: clone`, CT `lock: create`; a CT source holds `lock: disk` meanwhile): config
    /// copied except snapshots and pending changes, every NIC with a new MAC ("always change MAC!",
    /// Qemu.pm:4527-4532, LXC.pm:2120-2126), a new `vmgenid` when the source has one (:4578-4580),
    /// name `name` (VM; default `Copy-of-VM-<name>`, :4584-4588) or `hostname` (CT), description
    /// the given one, disks copied to `storage` or each disk's own. It lasts the disks' size at
    /// `restore_mib_per_s`; the locks go when it ends. No room on a storage: the task fails
    /// `clone failed: …` and the clone is gone (Qemu.pm:4690-4708).
    func cloneGuest(_ s: inout State, now: Double, _ g: SimGuest, _ p: [String: String]) -> SimResult {
        func fail(_ m: String) -> SimResult { .error(status: 500, message: m + "\n", errors: [:]) }
        func forbidden(_ m: String) -> SimResult { .error(status: 403, message: m + "\n", errors: [:]) }
        guard let text = p["newid"] else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["newid": "property is missing and it is not optional"])
        }
        guard let newid = Int(text), (100...999_999_999).contains(newid) else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["newid": "invalid format - value does not look like a valid VM ID\n"])  // [unverified] wording
        }
        let vm = g.type == .vm
        // The API permission check (`and`: VM.Clone, then `or`: VM.Allocate on newid or pool).
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.Clone") { return forbidden(e) }
        let poolOK = p["pool"].map { privileges(s, at: "/pool/\($0)").contains("VM.Allocate") } ?? false
        if !poolOK, let e = permissionCheck(s, "/vms/\(newid)", "VM.Allocate") { return forbidden(e) }
        let storage = p["storage"]
        if let storage {
            guard let t = scenario.targetStorages.first(where: { $0.id == storage }) else { return fail("storage '\(storage)' does not exist") }
            if vm, !t.effectiveContent.contains("images") {
                return .error(status: 400, message: "Parameter verification failed.\n", errors: ["storage": "storage '\(storage)' does not support vm images"])
            }
        }
        if let target = p["target"], target != scenario.node, target != "localhost" {
            return fail("can't clone \(vm ? "VM" : "CT") to node '\(target)' (\(vm ? "VM" : "CT") uses local storage)")
        }
        if !vm, let l = g.lock { return fail("CT is locked (\(l))") }
        if !vm, let other = s.guests[newid] { return fail("\(other.type == .vm ? "VM" : "CT") \(newid) already exists on node '\(other.node)'") }
        if vm, let l = g.lock { return fail("VM is locked (\(l))") }
        var source = g
        if let snapname = p["snapname"] {
            guard let snap = g.snapshots.first(where: { $0.name == snapname }) else { return fail("snapshot '\(snapname)' does not exist") }
            source = snapshotView(g, snap)
        }
        let full = p["full"].flatMap(Self.parseBoolean) ?? true  // a template is never simulated
        if !full {
            if storage != nil { return fail("parameter 'storage' not allowed for linked clones") }
            let volid = vm ? "\(source.storage(ofDisk: 0)):vm-\(g.vmid)-disk-0" : "\(source.storage(ofDisk: 0)):\(ctVolname(storage: source.storage(ofDisk: 0), vmid: g.vmid, disk: 0))"
            return fail(vm ? "Linked clone feature is not supported for '\(volid)' (scsi0)" : "Linked clone feature for '\(volid)' is not available")
        }
        if let e = clonePrivilegeRefusal(s, source, storage: storage, running: g.status == "running" && p["snapname"] == nil) {
            return e.hasPrefix("Permission check failed") ? forbidden(e) : fail(e)
        }
        if vm, let other = s.guests[newid], other.type == .vm, other.node == scenario.node {
            return fail("unable to create VM \(newid): config file already exists")
        }
        let diskStorages = source.disks.indices.map { storage ?? source.storage(ofDisk: $0) }
        var lines: [(Double, String)] = [(0.1, vm ? "creating a clone of VM \(g.vmid) with ID \(newid)" : "creating a clone of container \(g.vmid) with ID \(newid)")]
        var t = 0.2
        for (i, size) in source.disks.enumerated() {
            let volid = vm ? "\(source.storage(ofDisk: i)):vm-\(g.vmid)-disk-\(i)" : "\(source.storage(ofDisk: i)):\(ctVolname(storage: source.storage(ofDisk: i), vmid: g.vmid, disk: i))"
            lines.append((t, vm ? "create full clone of drive scsi\(i) (\(volid))" : "create full clone of mountpoint \(i == 0 ? "rootfs" : "mp\(i - 1)") (\(volid))"))
            t += Double(size) / scenario.restoreBytesPerSecond
        }
        let taskType = vm ? "qmclone" : "vzclone"
        // In VM (vmid) order PVE's `vdisk_alloc` fails on the first volume that does not fit [unverified: storage texts].
        if let problem = allocationFailure(s, type: .ct, vmid: newid, diskStorages: diskStorages, disks: source.disks, oldUsage: [:]) {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: t, lines: lines,
                                       error: "clone failed: \(problem)", effect: .none).description))
        }
        var clone = SimGuest(vmid: newid, type: g.type, name: vm ? (p["name"] ?? "Copy-of-VM-\(source.name)") : (p["hostname"] ?? source.name),
                             status: "stopped", lock: vm ? "clone" : "create", tags: source.tags,
                             description: p["description"].flatMap { $0.isEmpty ? nil : $0 } ?? source.description,
                             protection: source.protection, disks: source.disks, storage: diskStorages.first ?? source.storage,
                             node: scenario.node, vmgenid: source.vmgenid == nil ? nil : newVMGenID(&s), onboot: source.onboot)
        clone.diskStorages = Set(diskStorages).count > 1 ? diskStorages : []
        clone.extraConfig = clonedConfig(&s, source, newid: newid, storage: storage)
        clone.dataGeneration = nextDataGeneration(&s)
        s.guests[newid] = clone
        adjustUsed(&s, clone.usage, sign: 1)
        if !vm { s.guests[g.vmid]?.lock = "disk" }
        return .ok(.string(newTask(&s, now: now, type: taskType, vmid: g.vmid, duration: t + 0.5, lines: lines, error: nil,
                                   effect: .cloneFinished(source: g.vmid, newid: newid)).description))
    }

    /// The checks over the source's volumes, devices and NICs (see ``cloneGuest(_:now:_:_:)``), or nil.
    private func clonePrivilegeRefusal(_ s: State, _ g: SimGuest, storage: String?, running: Bool) -> String? {
        let root = scenario.callerIsRoot
        for i in g.disks.indices where !root {
            if let e = permissionCheck(s, "/storage/\(storage ?? g.storage(ofDisk: i))", "Datastore.AllocateSpace") { return e }
        }
        if g.type == .ct, running { return "Full clone of a running container is only possible from a snapshot" }
        let drives = g.type == .vm ? ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"] : ["mp"]
        for (key, value) in g.extraConfig.sorted(by: { $0.key < $1.key }) {
            let volume = String(value.split(separator: ",").first ?? "")
            if drives.contains(where: { Self.numbered(key, $0) != nil }), volume != "none", !value.contains("media=cdrom") {
                if g.type == .ct, volume.hasPrefix("/") { return "unable to clone mountpoint '\(key)' (type \(volume.hasPrefix("/dev/") ? "device" : "bind"))" }
                if g.type == .vm, !volume.contains(":") { return "unable to parse volume ID '\(volume)'" }
            }
            if root { continue }
            if g.type == .vm, Self.numbered(key, "hostpci") != nil || Self.numbered(key, "usb") != nil {
                let device = BackupConfig(parsing: "\(key): \(value)\n", type: .vm).hostDevices.first
                if device?.spice == true { continue }
                if let path = device?.mappingPath {
                    if let e = permissionCheck(s, path, "Mapping.Use") { return e }
                } else {
                    return key.hasPrefix("hostpci") ? "only root can set '\(key)' config for non-mapped devices" : "only root can set '\(key)' config for real devices"
                }
            }
            if Self.numbered(key, "net") != nil, let b = Self.netBridge(value), let e = bridgeCheck(s, b) { return e }
        }
        return nil
    }

    /// The source's other config keys as the clone gets them: NICs with new MACs, CT volume mount
    /// points renamed for `newid` on `storage` (or their own), pending changes dropped.
    private func clonedConfig(_ s: inout State, _ g: SimGuest, newid: Int, storage: String?) -> [String: String] {
        var out: [String: String] = [:]
        for (key, value) in g.extraConfig.sorted(by: { $0.key < $1.key }) {
            if Self.numbered(key, "unused") != nil { continue }
            if Self.numbered(key, "net") != nil {
                let macKey = g.type == .vm ? nil : "hwaddr"
                var parts = value.split(separator: ",").map(String.init)
                if let macKey, let i = parts.firstIndex(where: { $0.hasPrefix(macKey + "=") }) { parts[i] = "\(macKey)=\(randomMAC(&s))" }
                else if macKey == nil, let first = parts.first?.split(separator: "=", maxSplits: 1), first.count == 2 { parts[0] = "\(first[0])=\(randomMAC(&s))" }
                out[key] = parts.joined(separator: ",")
            } else if g.type == .ct, let n = Self.numbered(key, "mp"), let colon = value.firstIndex(of: ":"), !value.hasPrefix("/") {
                let sid = storage ?? String(value[..<colon])
                let rest = value.split(separator: ",").dropFirst().joined(separator: ",")
                out[key] = "\(sid):\(ctVolname(storage: sid, vmid: newid, disk: n + 1))" + (rest.isEmpty ? "" : "," + rest)
            } else {
                out[key] = value
            }
        }
        return out
    }

    /// The guest as snapshot `snap` holds it (clone from a snapshot).
    private func snapshotView(_ g: SimGuest, _ snap: SimVMSnapshot) -> SimGuest {
        var v = g
        v.takeConfig(of: snap)
        return v
    }

    /// The end of a clone task (called by ``settle(_:now:)``): a finished clone is unlocked (and
    /// with `image_dir` its images are copies of the source's); a failed one is gone with its
    /// volumes. A CT source loses its `disk` lock either way.
    func applyCloneEffect(_ s: inout State, _ effect: SimTask.Effect) {
        switch effect {
        case .cloneFinished(let source, let newid):
            guard var g = s.guests[newid] else { return }
            g.lock = nil
            g.configDigestCounter += 1
            s.guests[newid] = g
            if g.type == .ct, s.guests[source]?.lock == "disk" { s.guests[source]?.lock = nil }
            if g.type == .vm, let images, let src = s.guests[source] {
                for i in g.disks.indices {
                    guard let from = images.imagePath(storage: src.storage(ofDisk: i), vmid: source, disk: i),
                          let to = images.imagePath(storage: g.storage(ofDisk: i), vmid: newid, disk: i) else { continue }
                    try? FileManager.default.createDirectory(atPath: (to as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    images.copyImage(from: from, to: to)
                }
            }
        case .cloneFailed(let source, let newid, let release):
            if s.guests[newid]?.lock != nil { s.guests[newid] = nil }
            adjustUsed(&s, release, sign: -1)
            if s.guests[source]?.type == .ct, s.guests[source]?.lock == "disk" { s.guests[source]?.lock = nil }
        default:
            break
        }
    }
}
