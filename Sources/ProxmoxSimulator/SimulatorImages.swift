import Foundation
import PBSDatastore
import ProxmoxAPI
import Synchronization

/// The real bytes behind a scenario with `datastore_dir` / `image_dir`: VM backups as PBS
/// snapshots (written with ``DatastoreWriter``), standby VM disks as sparse raw files, written by
/// restores with ``ImageWriter``. Content is a pure function of (vmid, disk, chunk, the backup at
/// which that chunk last changed), see ``ImageContent``, so any snapshot can be written on its own
/// and in any order and still equal "the previous one with `change_rate` of its chunks changed";
/// shared chunks dedup in the chunk store.
final class SimulatorImages: Sendable {
    /// Where snapshots go (nil: no datastore).
    let datastoreDirectory: String?
    /// Where standby images go (nil: no images).
    let imageDirectory: String?
    /// Snapshot paths known to be written (also detected on disk by their manifest).
    private let written = Mutex<Set<String>>([])
    /// Restores in flight: vmid → the snapshot and the target files (written when the task ends).
    private let pending = Mutex<[Int: PendingRestore]>([:])
    /// Failures of file work that happened where the API cannot report them (task end effects).
    let failures = Mutex<[String]>([])

    /// A restore whose images are written when its task ends successfully.
    struct PendingRestore: Sendable {
        var snapshot: SnapshotRef
        var targets: [String]
    }

    init?(scenario: Scenario) {
        guard scenario.datastoreDirectory != nil || scenario.imageDirectory != nil else { return nil }
        datastoreDirectory = scenario.datastoreDirectory
        imageDirectory = scenario.imageDirectory
    }

    // MARK: - Datastore

    /// Writes the snapshot of backup `time` of `guest` unless it exists (a VM with a datastore
    /// only; CTs have no real bytes). `schedule` is every backup time of the guest up to `time`,
    /// unpruned, oldest first; `config` the text `vzdump/extractconfig` answers.
    func materialize(_ guest: Scenario.BackedUpGuest, time: Int, namespace: String?, schedule: [Int], config: String) throws {
        guard let root = datastoreDirectory, guest.type == .vm else { return }
        let volid = Volid(storage: guest.storage, type: .vm, vmid: guest.vmid, backupTime: time)
        let ref = try SnapshotRef(parsing: volid.snapshot, namespace: namespace ?? "")
        if written.withLock({ $0.contains(ref.description) }) { return }
        let writer = try DatastoreWriter(path: root)
        if !FileManager.default.fileExists(atPath: root + "/" + ref.relativePath + "/" + Manifest.fileName) {
            let snap = try writer.beginSnapshot(ref)
            try snap.writeBlob(name: "qemu-server.conf.blob", data: Array(config.utf8))
            for disk in guest.disks.indices {
                let content = ImageContent(vmid: guest.vmid, disk: disk, size: guest.imageSize(ofDisk: disk),
                                           changeRate: guest.changeRate, schedule: schedule)
                try snap.writeImage(archive: "drive-scsi\(disk).img.fidx", size: UInt64(content.size), ctime: Int64(time)) { i in
                    content.chunk(i, at: time)
                }
            }
            try snap.finish(notes: guest.notes)
        }
        written.withLock { _ = $0.insert(ref.description) }
    }

    // MARK: - Standby images

    /// The file of disk `disk` of `vmid` on `storage`.
    func imagePath(storage: String, vmid: Int, disk: Int) -> String? {
        imageDirectory.map { "\($0)/\(storage)/vm-\(vmid)-disk-\(disk).raw" }
    }

    /// The file of `snapname` of that disk (named like lvmthin's `snap_<volname>_<snap>`,
    /// pve-storage src/PVE/Storage/LvmThinPlugin.pm:370).
    func snapshotPath(storage: String, vmid: Int, disk: Int, snapname: String) -> String? {
        imageDirectory.map { "\($0)/\(storage)/snap_vm-\(vmid)-disk-\(disk)_\(snapname).raw" }
    }

    /// The allocated length of a volume of `bytes`: LVM rounds up to its 4 MiB extents
    /// [unverified: the default extent size; lvcreate rounds up to whole extents].
    static func allocatedSize(_ bytes: Int64, storageType: String) -> Int64 {
        let extent: Int64 = 4 << 20
        return storageType == "lvm" || storageType == "lvmthin" ? (bytes + extent - 1) / extent * extent : bytes
    }

    /// Creates the new volumes of a VM restore as sparse zero files (they exist while the task
    /// runs, as PVE allocates them before pbs-restore writes, QemuServer.pm:7058) and remembers
    /// which snapshot goes into them when the task ends. `disks`: (storage, storage type, image bytes).
    func beginRestore(vmid: Int, snapshot: SnapshotRef, disks: [(storage: String, type: String, bytes: Int64)]) throws {
        guard imageDirectory != nil else { return }
        var targets: [String] = []
        for (i, d) in disks.enumerated() {
            guard let path = imagePath(storage: d.storage, vmid: vmid, disk: i) else { continue }
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw SimulatorError("cannot create \(path)") }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: UInt64(Self.allocatedSize(d.bytes, storageType: d.type)))
            try handle.close()
            targets.append(path)
        }
        pending.withLock { $0[vmid] = PendingRestore(snapshot: snapshot, targets: targets) }
    }

    /// The restore task of `vmid` ended well: writes each disk's image from the datastore
    /// snapshot (every chunk, zeros included, since the target may be larger than the image).
    func finishRestore(vmid: Int) {
        guard let job = pending.withLock({ $0.removeValue(forKey: vmid) }), let root = datastoreDirectory else { return }
        do {
            let ds = try Datastore(path: root)
            for (i, target) in job.targets.enumerated() {
                let index = try ds.openFixedIndex(snapshot: job.snapshot, archive: "drive-scsi\(i).img.fidx")
                try ImageWriter(source: ds.chunks, workers: 2).apply(DeltaPlan.full(index), target: target)
            }
        } catch {
            report("restore of VM \(vmid) from \(job.snapshot): \(error)")
        }
    }

    /// Removes every image and snapshot file of `vmid` (destroy, a failed restore, a forced
    /// restore freeing the old disks, QemuServer.pm:7055, :7119).
    func removeGuest(vmid: Int) {
        pending.withLock { _ = $0.removeValue(forKey: vmid) }
        guard let dir = imageDirectory, let storages = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for storage in storages {
            let sdir = dir + "/" + storage
            for file in (try? FileManager.default.contentsOfDirectory(atPath: sdir)) ?? []
            where file.hasPrefix("vm-\(vmid)-disk-") || file.hasPrefix("snap_vm-\(vmid)-disk-") {
                try? FileManager.default.removeItem(atPath: sdir + "/" + file)
            }
        }
    }

    /// Copies `from` over `to` when `from` exists (snapshot and rollback of an image).
    func copyImage(from: String, to: String) {
        guard FileManager.default.fileExists(atPath: from) else { return }
        do {
            if FileManager.default.fileExists(atPath: to) { try FileManager.default.removeItem(atPath: to) }
            try FileManager.default.copyItem(atPath: from, toPath: to)
        } catch {
            report("copy \(from) to \(to): \(error)")
        }
    }

    /// Records and prints a failure that no API answer can carry.
    func report(_ message: String) {
        failures.withLock { $0.append(message) }
        FileHandle.standardError.write(Data("simulator images: \(message)\n".utf8))
    }
}

/// The deterministic content of one disk image across a guest's backups.
///
/// Backup j of the schedule gives new content to `round(change_rate · chunks)` chunks (at least
/// one when the rate is above 0), chosen by a PRNG seeded from (vmid, disk, backup time); the first
/// backup is all new. A chunk's bytes depend on (vmid, disk, chunk, the time it last changed):
/// about one in eight all zero (and chunk 1 of the first backup always, so the zero-chunk digest
/// path is exercised), three in eight compressible text, the rest PRNG bytes.
struct ImageContent: Sendable {
    let vmid: Int
    let disk: Int
    let size: Int64
    let changeRate: Double
    /// Every backup time up to the one written, oldest first.
    let schedule: [Int]
    static let chunkSize = 4 << 20

    var chunkCount: Int { Int((size + Int64(Self.chunkSize) - 1) / Int64(Self.chunkSize)) }

    /// The chunks backup `time` changed relative to the previous one.
    func changed(at time: Int) -> Set<Int> {
        let n = chunkCount
        guard time != schedule.first else { return Set(0..<n) }
        var k = Int((changeRate * Double(n)).rounded())
        if changeRate > 0 { k = max(k, 1) }
        k = min(k, n)
        var rng = SplitMix64(state: Self.mix(UInt64(vmid), UInt64(disk), UInt64(bitPattern: Int64(time)), 0xC4A6))
        var out = Set<Int>()
        while out.count < k { out.insert(Int(rng.next() % UInt64(n))) }
        return out
    }

    /// The backup time at which chunk `i` last changed, as of backup `time`.
    func version(of i: Int, at time: Int) -> Int {
        for t in schedule.reversed() where t <= time {
            if t == schedule.first || changed(at: t).contains(i) { return t }
        }
        return schedule.first ?? time
    }

    /// The bytes of chunk `i` in backup `time`.
    func chunk(_ i: Int, at time: Int) -> [UInt8] {
        let length = Int(min(Int64(Self.chunkSize), size - Int64(i) * Int64(Self.chunkSize)))
        let v = version(of: i, at: time)
        let h = Self.mix(UInt64(vmid), UInt64(disk), UInt64(i), UInt64(bitPattern: Int64(v)))
        let first = v == schedule.first
        if (first && i == 1) || (!(first && i == 2) && h % 8 == 0) { return [UInt8](repeating: 0, count: length) }
        if (first && i == 2) || h % 8 < 4 {
            let line = Array("vm \(vmid) disk \(disk) chunk \(i) written at \(v)\n".utf8)
            return [UInt8](unsafeUninitializedCapacity: length) { buf, n in
                for k in 0..<length { buf[k] = line[k % line.count] }
                n = length
            }
        }
        var rng = SplitMix64(state: h)
        return [UInt8](unsafeUninitializedCapacity: length) { buf, n in
            let raw = UnsafeMutableRawBufferPointer(buf)
            var k = 0
            while k + 8 <= length {
                raw.storeBytes(of: rng.next(), toByteOffset: k, as: UInt64.self)
                k += 8
            }
            while k < length {
                raw[k] = UInt8(truncatingIfNeeded: rng.next())
                k += 1
            }
            n = length
        }
    }

    /// Mixes four words into one seed.
    static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> UInt64 {
        var r = SplitMix64(state: a &* 0x9E37_79B9_7F4A_7C15 ^ b &* 0xC2B2_AE3D_27D4_EB4F ^ c &* 0x1656_67B1_9E37_79F9 ^ d)
        return r.next()
    }
}
