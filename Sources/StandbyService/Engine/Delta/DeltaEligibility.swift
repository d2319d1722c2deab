import Foundation
import PBSDatastore
import ProxmoxAPI
import StandbyCore
import StandbyStore

#if canImport(Glibc)
import Glibc
#endif

/// A delta the checks allow: which backup the copy holds, which one it becomes, disk by disk.
struct DeltaJob: Sendable {
    /// One disk: the copy's volume and the two indexes of its archive.
    struct Disk: Sendable {
        /// The config key (`scsi0`).
        var drive: String
        /// The archive (`drive-scsi0.img.fidx`).
        var archive: String
        /// The copy's volume id.
        var volume: String
        /// Its file or block device.
        var path: String
        /// The chunks to write.
        var plan: DeltaPlan
        /// The kept index of the old backup, when its snapshot is no longer in the datastore.
        var fromIndex: String?
    }
    /// The local datastore.
    var datastore: Datastore
    /// Its namespace of the source's backups.
    var namespace: String
    /// The backup the copy holds.
    var from: Volid
    /// The backup it becomes.
    var to: Volid
    /// Every disk of the copy.
    var disks: [Disk]
    /// The copy's config as read for the checks (description, digest, vmgenid).
    var config: GuestConfig
    /// The copy's storage can snapshot it (LVM-thin, ZFS, Ceph RBD).
    var snapshots: Bool

    /// Chunks to write, over all disks.
    var chunksChanged: Int { disks.reduce(0) { $0 + $1.plan.changed.count } }
    /// Chunks of all disks.
    var chunksTotal: Int { disks.reduce(0) { $0 + $1.plan.to.chunkCount } }
}

/// Decides whether a restore over a copy can be a delta (issue 15, "Eligibility"), checking the
/// cheap and certain things first. Every "no" names a ``DeltaFallback`` and says why.
struct DeltaEligibility: Sendable {
    let client: ProxmoxClient
    let node: String
    /// The state file: our restore and snapshot tasks are not "touched" (nil: every task counts).
    let store: StateStore?
    let keeper: IndexKeeper
    /// Activates an inactive LVM-thin volume before it is opened.
    var activator: VolumeActivator? = nil

    init(context: EngineContext, keeper: IndexKeeper) {
        self.init(client: context.client, node: context.node, store: context.store, keeper: keeper)
        activator = VolumeActivator(lvchange: context.config.restore.lvchangePath)
    }

    init(client: ProxmoxClient, node: String, store: StateStore?, keeper: IndexKeeper) {
        self.client = client
        self.node = node
        self.store = store
        self.keeper = keeper
    }

    /// What the checks decided.
    enum Verdict: Sendable {
        /// A delta can run.
        case eligible(DeltaJob)
        /// PVE restores in full, for this reason and detail.
        case fallback(DeltaFallback, String)
    }

    /// Storage types whose volumes PVE can snapshot (pve-storage `volume_has_feature(snapshot)`:
    /// LVMThinPlugin, ZFSPoolPlugin, RBDPlugin; raw files on `dir` and thick `lvm` cannot).
    static let snapshotStorageTypes: Set<String> = ["lvmthin", "zfspool", "rbd"]

    /// Checks a planned restore over a copy, cheapest and most certain first.
    func check(_ action: RestoreAction, source: StandbyConfig.Source) async -> Verdict {
        guard action.type == .vm else { return .fallback(.notVM, "a container's archives are dynamic indexes (.didx)") }
        guard let dsPath = source.datastorePath else { return .fallback(.noDatastore, "no datastore_path for source \(source.storage)") }
        let datastore: Datastore
        do { datastore = try Datastore(path: dsPath) } catch { return .fallback(.noDatastore, "\(error)") }
        if action.backup.encrypted != nil { return .fallback(.encrypted, "\(action.volid) is encrypted") }
        let config: GuestConfig
        do { config = try await client.guestConfig(node: node, type: .vm, vmid: action.targetVmid) } catch {
            return .fallback(.touchedSinceRestore, "the copy's config cannot be read: \(error)")
        }
        guard let marker = Marker.parse(config.description), marker.targetVmid == action.targetVmid,
              marker.volid.storage == action.volid.storage, marker.volid.type == .vm, marker.volid.vmid == action.volid.vmid else {
            return .fallback(.noCopy, "the target's marker names no backup of this guest (left by a failed restore?)")
        }
        // A marker left `rewriting` without an open record (which the executor runs first): the
        // copy's content is not known to be either backup.
        if let rewriting = marker.rewriting { return .fallback(.oldIndexMissing, "the copy was left being rewritten into \(rewriting)") }
        let from = marker.volid, to = action.volid
        if let touched = await touchingTask(action.targetVmid, since: marker.restoredAt) { return .fallback(.touchedSinceRestore, touched) }
        let fromSnap: SnapshotRef, toSnap: SnapshotRef
        do {
            fromSnap = try SnapshotRef(parsing: from.snapshot, namespace: source.datastoreNamespace)
            toSnap = try SnapshotRef(parsing: to.snapshot, namespace: source.datastoreNamespace)
        } catch { return .fallback(.noDatastore, "\(error)") }
        // The new backup, from its manifest (written last by a backup or a sync job).
        guard let manifest = try? Manifest.load(snapshotDirectory: datastore.directory(of: toSnap)) else {
            return .fallback(.chunkMissing, "\(toSnap) has no readable manifest in \(datastore.path) (not synced yet?)")
        }
        if manifest.files.contains(where: { $0.cryptMode == "encrypt" }) { return .fallback(.encrypted, "\(toSnap) has encrypted archives") }
        let archives = manifest.files.map(\.filename).filter { $0.hasSuffix(".img.fidx") }.sorted()
        // Drives of the copy: `scsi0: local-lvm:vm-101-disk-0,size=32G` ↔ `drive-scsi0.img.fidx`.
        let drives = Self.drives(config.raw)
        guard Set(drives.keys.map { "drive-\($0).img.fidx" }) == Set(archives) else {
            return .fallback(.layoutChanged, "the copy's disks (\(drives.keys.sorted().joined(separator: ", "))) do not match the archives of \(toSnap) (\(archives.joined(separator: ", ")))")
        }
        let storages: [StorageInfo]
        do { storages = try await client.storages(node: node) } catch {
            return .fallback(.noSnapshot, "the node's storages cannot be read to know whether the copy can be snapshotted: \(error)")
        }
        var disks: [DeltaJob.Disk] = [], snapshots = true
        for archive in archives {
            let drive = String(archive.dropFirst("drive-".count).dropLast(".img.fidx".count))
            guard let volume = drives[drive] else { continue }
            let new: FixedIndex
            do { new = try datastore.openFixedIndex(snapshot: toSnap, archive: archive) } catch {
                return .fallback(.chunkMissing, "\(error)")
            }
            guard let (old, fromIndex) = keeper.lookup(action.key, from, archive: archive, datastore: datastore, snapshot: fromSnap) else {
                return .fallback(.oldIndexMissing, "the index \(archive) of \(from) is neither in \(datastore.path) nor kept in \(keeper.root)")
            }
            guard old.size == new.size, old.chunkSize == new.chunkSize else {
                return .fallback(.layoutChanged, "\(archive): \(old.size) bytes in \(from), \(new.size) in \(to)")
            }
            let info: VolumeInfo
            do { info = try await client.volumeInfo(node: node, volume: volume) } catch {
                return .fallback(.notRaw, "\(volume): \(error)")
            }
            guard info.format == "raw", let path = info.path else {
                return .fallback(.notRaw, "\(volume) is \(info.format ?? "of unknown format")\(info.path == nil ? " without a path" : ""), not a raw volume")
            }
            let storageID = String(volume.prefix { $0 != ":" })
            if let activator, let problem = activator.activate(path: path, storageType: storages.first { $0.storage == storageID }?.type ?? "") {
                return .fallback(.notRaw, "\(volume): \(problem)")
            }
            if let problem = Self.writableProblem(path, needed: new.size) { return .fallback(.notRaw, "\(volume) at \(path): \(problem)") }
            if !Self.snapshotStorageTypes.contains(storages.first { $0.storage == storageID }?.type ?? "") { snapshots = false }
            let plan: DeltaPlan
            do { plan = try DeltaPlan.diff(from: old, to: new) } catch { return .fallback(.layoutChanged, "\(error)") }
            for i in plan.changed where !new.isZeroChunk(i) {
                let file = datastore.chunks.path(of: new.digests[i])
                if access(file, F_OK) != 0 { return .fallback(.chunkMissing, "chunk \(i) of \(archive) (\(file)) is not in the datastore") }
            }
            disks.append(.init(drive: drive, archive: archive, volume: volume, path: path, plan: plan, fromIndex: fromIndex))
        }
        let oldConfig = BackupConfigReader.config(in: datastore.directory(of: fromSnap)) ?? keeper.config(action.key, from)
        guard let oldConfig else { return .fallback(.oldIndexMissing, "the config of \(from) is neither in the datastore nor kept") }
        guard let newConfig = BackupConfigReader.config(in: datastore.directory(of: toSnap)) else {
            return .fallback(.chunkMissing, "\(toSnap) has no readable qemu-server.conf.blob")
        }
        if BackupConfigReader.normalized(oldConfig) != BackupConfigReader.normalized(newConfig) {
            return .fallback(.configChanged, "the backed-up config of \(to) differs from that of \(from): PVE's restore rewrites it")
        }
        if !snapshots && !source.deltaWithoutSnapshot {
            return .fallback(.noSnapshot, "the copy's storage cannot snapshot it and delta_without_snapshot is off for \(source.storage)")
        }
        return .eligible(DeltaJob(datastore: datastore, namespace: source.datastoreNamespace, from: from, to: to, disks: disks,
                                  config: config, snapshots: snapshots))
    }

    /// The disk drives of a VM config: `scsiN`, `virtioN`, `sataN`, `ideN`, `efidisk0` with a
    /// volume (not `none`, not a CD-ROM), drive → volume id.
    static func drives(_ raw: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        for (key, value) in raw where key.range(of: #"^(scsi|virtio|sata|ide)\d+$|^efidisk0$"#, options: .regularExpression) != nil {
            let parts = value.split(separator: ",").map(String.init)
            guard let volume = parts.first, volume != "none", volume.contains(":"), !parts.contains("media=cdrom") else { continue }
            out[key] = volume
        }
        return out
    }

    /// Why `path` cannot take an image of `needed` bytes (nil: it can): it must exist, be a
    /// regular file or block device, open for writing, and be at least as large.
    static func writableProblem(_ path: String, needed: UInt64) -> String? {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return "cannot open for writing (\(String(cString: strerror(errno))); is the volume active?)" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "cannot stat" }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else { return "neither a file nor a block device" }
        let size = kind == S_IFBLK ? UInt64(max(0, lseek(fd, 0, SEEK_END))) : UInt64(st.st_size)
        return size >= needed ? nil : "\(size) bytes, the image needs \(needed)"
    }

    /// A task on the copy's VMID since its restore (or last delta) began that is not ours — or
    /// a start, ours too, since a guest that ran has written its disks. nil when none.
    func touchingTask(_ vmid: Int, since restoredAt: String?) async -> String? {
        guard let since = restoredAt.flatMap(Volid.parseTime) else { return "the copy's marker has no restore time" }
        let tasks: [TaskSummary]
        do { tasks = try await client.tasks(node: node, vmid: vmid, limit: 200) } catch { return "the task list cannot be read: \(error)" }
        let ours = ((try? store?.restoreUPIDs(targetVmid: vmid)) ?? []).union((try? store?.ourTasks(targetVmid: vmid)) ?? [])
        // Our rollbacks that succeeded (a DR drill's, issue 16): the disks are back to the snapshot
        // taken before our start, so what that start wrote is gone.
        let rolledBack = tasks.filter { $0.upid.type == "qmrollback" && ($0.status == "OK" || $0.status?.hasPrefix("WARNINGS") == true)
            && ours.contains($0.upid.description) }.map(\.upid.startTime)
        for t in tasks where t.upid.startTime >= since - 1 && t.upid.id == String(vmid) {
            let starts = ["qmstart", "hastart", "qmresume"].contains(t.upid.type)
            // A start refused for our lock (`VM is locked (rollback)` during a delta) never ran the
            // guest; any other failed start may have (QEMU can run on after a start timeout).
            if starts, let st = t.status, st.hasPrefix("VM is locked") { continue }
            // Our own start (a drill's), undone by our later rollback.
            if starts, ours.contains(t.upid.description), rolledBack.contains(where: { $0 >= t.upid.startTime }) { continue }
            if starts || !ours.contains(t.upid.description) { return "task \(t.upid.type) (\(t.upid)) ran on \(vmid) after its restore" }
        }
        return nil
    }
}
