import Foundation
import PBSDatastore
import ProxmoxAPI

extension PVESimulator {
    // MARK: - Real snapshots of backups (scenario `datastore_dir`)

    /// Every backup time of `g` up to `time`, oldest first, unpruned: the schedule of
    /// ``backupTimes(_:now:)`` without keep-last, so that content lineage does not shift when
    /// old snapshots are pruned from the listing.
    func fullSchedule(_ g: Scenario.BackedUpGuest, upTo time: Int) -> [Int] {
        if g.interval <= 0 {
            return (0..<g.history).map { Int(startTime) - (g.history - $0) * 3600 + Int(g.offset) }.filter { $0 <= time }
        }
        let first = startTime - Double(g.history) * max(g.interval, 1)
        var t = (first / g.interval).rounded(.down) * g.interval + g.offset.truncatingRemainder(dividingBy: g.interval)
        while t <= first { t += g.interval }
        var out: [Int] = []
        while Int(t) <= time {
            out.append(Int(t))
            t += g.interval
        }
        return out
    }

    /// Writes the real snapshot of backup `time` of `g` if it is a VM and the scenario has a
    /// datastore; nil, or why it could not be written.
    func materializeBackup(_ g: Scenario.BackedUpGuest, time: Int) -> String? {
        guard let images, images.datastoreDirectory != nil, g.type == .vm else { return nil }
        let namespace = scenario.pbsStorages.first { $0.id == g.storage }?.namespace
        do {
            try images.materialize(g, time: time, namespace: namespace, schedule: fullSchedule(g, upTo: time), config: backedUpConfigText(g))
            return nil
        } catch {
            return "simulator: cannot write the snapshot of VM \(g.vmid) at \(Volid.formatTime(time)): \(error)"
        }
    }

    /// Writes every complete VM backup listed on `storage` now that is not written yet.
    func materializeListed(storage: String, now: Double) -> String? {
        guard let images, images.datastoreDirectory != nil else { return nil }
        for e in backupEntries(storage: storage, now: now) where e.isComplete && e.volid.type == .vm {
            guard let g = scenario.backedUp.first(where: { $0.vmid == e.volid.vmid && $0.type == .vm && $0.storage == storage }) else { continue }
            if let problem = materializeBackup(g, time: e.volid.backupTime) { return problem }
        }
        return nil
    }

    /// The new volumes of a VM restore, as sparse files (scenario `image_dir`); the old ones are
    /// freed first (QemuServer.pm:7055). The image is written when the task ends well.
    func beginImageRestore(vmid: Int, source: Scenario.BackedUpGuest, volid: Volid, diskStorages: [String]) {
        guard let images, images.imageDirectory != nil else { return }
        images.removeGuest(vmid: vmid)
        let namespace = scenario.pbsStorages.first { $0.id == volid.storage }?.namespace ?? ""
        let disks = diskStorages.enumerated().map { i, id in
            (storage: id, type: scenario.targetStorages.first { $0.id == id }?.type ?? "dir", bytes: source.imageSize(ofDisk: i))
        }
        do {
            try images.beginRestore(vmid: vmid, snapshot: try SnapshotRef(parsing: volid.snapshot, namespace: namespace), disks: disks)
        } catch {
            images.report("allocating the disks of VM \(vmid): \(error)")
        }
    }

    // MARK: - GET /nodes/{node}/storage/{storage}/content/{volume}

    /// pve-storage `PVE::API2::Storage::Content` `info` (src/PVE/API2/Storage/Content.pm:303-390):
    /// the volume id from `volume` and `storage` (`$real_volume_id`, :280-300), then `path`,
    /// `size`, `used`, `format` (`volume_size_info`) and, when the plugin has them, `notes` and
    /// `protected` (`get_volume_attribute`). Standby disks: `path` the real file under
    /// `image_dir` (else `/dev/pve/<volname>` [unverified: the VG name]), `format` raw, `used` 0
    /// on LVM (LVMPlugin.pm:1090-1117 returns 0), the allocated bytes elsewhere; no notes (the
    /// base plugin's `get_volume_attribute` has none for images, Plugin.pm:1308-1320). PBS
    /// backups: `path` `pbs://<repo>/<snapshot>[?ns=…]` (PBSPlugin.pm:630-647), `size` = `used` =
    /// the snapshot's files (:960-975), `format` `pbs-vm`/`pbs-ct`, `notes`, `protected`.
    func volumeInfo(_ s: State, now: Double, storage: String, volume: String) -> SimResult {
        var volid = "\(storage):\(volume)"
        if let colon = volume.firstIndex(of: ":") {
            let sid = String(volume[..<colon])
            guard sid == storage else {
                return .error(status: 400, message: "Parameter verification failed.\n", errors: ["volume": "storage ID mismatch (\(sid) != \(storage))"])
            }
            volid = volume
        }
        if let pbs = scenario.pbsStorages.first(where: { $0.id == storage }) {
            guard let v = Volid(parsing: volid), let g = scenario.backedUp.first(where: { $0.vmid == v.vmid && $0.type == v.type && $0.storage == storage }),
                  let e = backupEntries(storage: storage, now: now).first(where: { $0.volid == v && $0.isComplete }) else {
                return .error(status: 500, message: "unable to read manifest of snapshot '\(volid)' - not found\n", errors: [:])  // [unverified] wording
            }
            var path = "pbs://pbs-standby@pbs@pbs.example:\(pbs.datastore)/\(v.snapshot)"
            if let ns = pbs.namespace { path += "?ns=" + ns.replacingOccurrences(of: "/", with: "%2f") }
            var o: [String: JSONValue] = ["path": .string(path), "size": .number(Double(e.size)), "used": .number(Double(e.size)),
                                          "format": .string(v.type == .vm ? "pbs-vm" : "pbs-ct"), "protected": .bool(false)]
            if let n = g.notes { o["notes"] = .string(n) }
            return .ok(.object(o))
        }
        guard let target = scenario.targetStorages.first(where: { $0.id == storage }) else {
            return .error(status: 500, message: "storage '\(storage)' does not exist\n", errors: [:])
        }
        let volname = String(volid.split(separator: ":", maxSplits: 1).last ?? "")
        let fallbackPath = "/dev/pve/\(volname)"
        guard let (vmid, disk) = Self.parseDiskName(volname), let g = s.guests[vmid], g.type == .vm, g.node == scenario.node,
              disk < g.disks.count, g.storage(ofDisk: disk) == storage else {
            return .error(status: 500, message: "can't get size of '\(fallbackPath)'\n", errors: [:])  // [unverified] run_command suffix
        }
        var path = fallbackPath
        var size = g.disks[disk], used: Int64 = 0
        if let file = images?.imagePath(storage: storage, vmid: vmid, disk: disk),
           let attrs = try? FileManager.default.attributesOfItem(atPath: file), let n = attrs[.size] as? NSNumber {
            path = file
            size = n.int64Value
            if target.type != "lvm" && target.type != "lvmthin" {
                var st = stat()
                if stat(file, &st) == 0 { used = Int64(st.st_blocks) * 512 }  // file_size_info's allocation [unverified]
            }
        }
        return .ok(.object(["path": .string(path), "size": .number(Double(size)), "used": .number(Double(used)), "format": .string("raw")]))
    }

    /// `vm-<vmid>-disk-<i>` (optionally `.raw`) → (vmid, i).
    static func parseDiskName(_ name: String) -> (Int, Int)? {
        var base = Substring(name)
        if base.hasSuffix(".raw") { base = base.dropLast(4) }
        let parts = base.split(separator: "-")
        guard parts.count == 4, parts[0] == "vm", parts[2] == "disk", let vmid = Int(parts[1]), let disk = Int(parts[3]) else { return nil }
        return (vmid, disk)
    }
}
