import Foundation
import ProxmoxAPI

extension PVESimulator {
    // MARK: - Restore (reference §3, §6)

    func restoreVM(_ s: inout State, now: Double, _ p: [String: String]) -> SimResult {
        guard let archive = p["archive"] else {
            // A plain create is not what this simulator is for.
            return .error(status: 501, message: "creating a VM without 'archive' is not simulated\n", errors: [:])
        }
        return restore(&s, now: now, type: .vm, archiveText: archive, p)
    }

    func restoreCT(_ s: inout State, now: Double, _ p: [String: String]) -> SimResult {
        guard let archive = p["ostemplate"], p["restore"] == "1" else {
            return .error(status: 501, message: "creating a CT without 'restore=1' is not simulated\n", errors: [:])
        }
        return restore(&s, now: now, type: .ct, archiveText: archive, p)
    }

    private func restore(_ s: inout State, now: Double, type: GuestType, archiveText: String, _ p: [String: String]) -> SimResult {
        // Parameter checks → 400 with the `errors` map (§1.2).
        var errors: [String: String] = [:]
        let vmid = p["vmid"].flatMap(Int.init)
        if p["vmid"] == nil { errors["vmid"] = "property is missing and it is not optional" }
        else if vmid == nil || vmid! < 100 { errors["vmid"] = "type check ('integer') failed - got '\(p["vmid"]!)'" }  // [unverified] wording
        for key in p.keys where key.hasPrefix("scsi") || key.hasPrefix("virtio") || key.hasPrefix("sata") || key.hasPrefix("ide") {
            errors[key] = "option conflicts with option 'archive'"
        }
        // `onboot` is a config key: an override of the backup's value (§3.1 "any VM config key").
        var onbootOverride: Bool?
        if let text = p["onboot"] {
            onbootOverride = Self.parseBoolean(text)
            if onbootOverride == nil { errors["onboot"] = "type check ('boolean') failed - got '\(text)'" }  // [unverified] wording
        }
        guard errors.isEmpty, let vmid else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: errors)
        }
        let kind = type == .vm ? "VM" : "CT"
        let force = p["force"] == "1"
        let prefix = "unable to restore \(kind) \(vmid) - "
        let existing = s.guests[vmid]
        let unparsable = SimResult.error(status: 400, message: "Parameter verification failed.\n",
                                         errors: [type == .vm ? "archive" : "ostemplate": "unable to parse volume ID '\(archiveText)'"])
        // A CT's `storage` defaults to `local` (pve-container LXC.pm:322, §13.4).
        let ctStorageID = p["storage"] ?? "local"
        if type == .ct {
            if let refusal = ctSynchronousRefusal(s, vmid: vmid, existing: existing, force: force, storageID: ctStorageID,
                                                  archiveText: archiveText, unparsable: unparsable, p) { return refusal }
        } else {
            // Permission checks before the worker is forked: 403 (§3.1 step 1; SimulatorPermissions.swift).
            if let refusal = synchronousPermissionRefusal(s, type: type, vmid: vmid, archiveText: archiveText, p) { return refusal }
            // VMIDs are cluster-wide (pmxcfs): a guest on another node holds the VMID, and
            // `check_vmid_unused` names that node (§6, §13.4). With force [unverified]: refused the same way.
            if let g = existing, g.node != scenario.node {
                return .error(status: 500, message: prefix + "\(g.type == .vm ? "VM" : "CT") \(vmid) already exists on node '\(g.node)'\n", errors: [:])
            }
            // `create_and_lock_config($vmid, $force)` (Qemu.pm:1374; §3.1 step 1, §6).
            if let g = existing {
                if !force {
                    return .error(status: 500, message: prefix + "\(g.type == .vm ? "VM" : "CT") \(vmid) already exists on node '\(scenario.node)'\n", errors: [:])
                }
                if g.type != type {
                    // A VM restore onto a CT's VMID is refused when pmxcfs cannot create the config
                    // (EEXIST, §13.5); it never turns the guest into the other type [unverified: exact text].
                    return .error(status: 500, message: prefix + "CT \(vmid) already exists on node '\(scenario.node)'\n", errors: [:])
                }
                if let lock = g.lock { return .error(status: 500, message: prefix + "VM is locked (\(lock))\n", errors: [:]) }
            }
        }
        guard let volid = Volid(parsing: archiveText) else { return unparsable }
        // The config gets `lock: create` synchronously.
        if var g = existing {
            g.lock = "create"
            s.guests[vmid] = g
        } else {
            let storageID = type == .ct ? ctStorageID : p["storage"] ?? scenario.targetStorages.first?.id ?? "local"
            s.guests[vmid] = SimGuest(vmid: vmid, type: type, name: type == .vm ? "VM \(vmid)" : "CT\(vmid)", status: "stopped",
                                      lock: "create", tags: [], description: nil, protection: false, disks: [], storage: storageID,
                                      node: scenario.node)
            s.guests[vmid]?.newToNode = true
        }
        let source = scenario.backedUp.first { $0.vmid == volid.vmid && $0.type == volid.type && $0.storage == volid.storage }
        let entry = source.flatMap { src in backupEntries(storage: volid.storage, now: now).first { $0.volid == volid && src.vmid == $0.volid.vmid } }
        let taskType = type == .vm ? "qmrestore" : "vzrestore"
        let vmWarning = "error before or during data restore, some or all disks were not completely restored. VM \(vmid) state is NOT cleaned up."

        // In-task refusals (§3.1 step 2, §6): protection, running VM, wrong format, missing snapshot.
        if type == .vm, let g = existing, g.protection {
            // The VM text has a double dash: `unable to restore VM N - - protection mode enabled` (§13.5).
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 1, lines: [],
                                       error: prefix + "- protection mode enabled", effect: .unlock(vmid: vmid)).description))
        }
        if type == .vm, let g = existing, g.status == "running" {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 1, lines: [(0.5, vmWarning)],
                                       error: prefix + "vm is running", effect: .unlock(vmid: vmid)).description))
        }
        if volid.type != type {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 1, lines: [],
                                       error: "got unexpected backup format 'pbs-\(volid.type.rawValue)'", effect: .unlock(vmid: vmid)).description))
        }
        guard let source, let entry, entry.isComplete else {
            // An in-progress snapshot has no manifest yet [unverified: exact text].
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 2, lines: [],
                                       error: "unable to read manifest of snapshot '\(volid.snapshot)' - not found", effect: .unlock(vmid: vmid)).description))
        }
        // The snapshot's real bytes (scenario `datastore_dir`), written at the latest now.
        if type == .vm, let problem = materializeBackup(source, time: volid.backupTime) {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 1, lines: [],
                                       error: problem, effect: .unlock(vmid: vmid)).description))
        }
        // Permission checks of the worker on the backed-up config, before any disk is freed or
        // allocated (§13.1; SimulatorPermissions.swift): the guest stays as it was.
        if let refusal = taskPermissionRefusal(s, type: type, vmid: vmid, existing: existing, source: source, volid: volid, p) {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 1, lines: refusal.lines,
                                       error: refusal.error, effect: .unlock(vmid: vmid)).description))
        }
        // Where each disk goes. A CT: every volume on `storage` (default `local`): the mount points
        // of the backup are re-created there (LXC.pm:483-494, `"$storage:$disksize"`). A VM with
        // `storage`: all on it (`$options->{storage} || 'local'`, QemuServer.pm:6617-6618); without:
        // each on the storage its `#qmdump#map` line names (:6612-6613, the production storage
        // id, §3.3, §13.4).
        let diskStorages: [String] = source.disks.indices.map { i in
            if type == .ct { return ctStorageID }
            if let st = p["storage"] { return st.isEmpty ? "local" : st }
            return source.diskStorage(i)
        }
        // qemu-server reads the hints before it writes the temporary config or frees anything
        // (`$parse_backup_hints`, QemuServer.pm:7048, before :7053/:7055): per disk, the storage
        // must exist (pve-storage `storage_config`: "storage 'X' does not exist", :6628), allow
        // `images` and be writable by the caller (`$check_storage`, :6602-6607, :6629). The worker
        // then warns and dies unprefixed (Qemu.pm:1582-1594): the VM stays as it was, unlocked.
        if type == .vm, let problem = backupHintsRefusal(s, diskStorages) {
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 2, lines: [(1.5, vmWarning)],
                                       error: problem, effect: .unlock(vmid: vmid)).description))
        }
        let size = source.size
        var newUsage: [String: Int64] = [:]
        for (i, d) in source.disks.enumerated() { newUsage[diskStorages[i], default: 0] += d }
        // The existing guest of this VMID on this node (same type by now), whose volumes go.
        let oldUsage = existing?.usage ?? [:]
        let fails = s.restoreFails.contains(source.vmid)
            || (s.taskFailureProbability > 0 && Double(s.rng.next() % 1_000_000) / 1_000_000 < s.taskFailureProbability)
        // Override tags: a VM stores them as given, not normalised (§13.5); a CT normalised (§5.3).
        // The simulator keeps the given order, case and duplicates and joins them with `;`
        // [unverified: whether PVE keeps the given separators].
        let tags = p["tags"].map { type == .vm ? ProxmoxClient.splitTags($0) : Self.normalizeTags($0) } ?? source.tags
        let description = p["description"] ?? source.notes
        if let failure = allocationFailure(s, type: type, vmid: vmid, diskStorages: diskStorages, disks: source.disks, oldUsage: oldUsage) {
            if type == .vm {
                // A forced VM restore frees the old disks first (QemuServer.pm:7055), then allocates
                // and activates per disk (:7058, :6687): the copy is gone, a stub config is left, and
                // the volumes allocated so far are freed again (:7119) (§3.1 step 3).
                adjustUsed(&s, oldUsage, sign: -1)
                images?.removeGuest(vmid: vmid)
                return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 2, lines: [(1.5, vmWarning)],
                                           error: failure, effect: .restoreFailedVM(vmid: vmid, release: [:])).description))
            }
            // A CT creates its new volumes before it destroys the old ones (LXC.pm:534, :539): when
            // they do not fit, create_disks frees what it made (pve-container src/PVE/LXC.pm:2680-2683) and
            // the worker destroys the config (`$destroy_config_on_error`, API2/LXC.pm:532, :621) —
            // the old volumes were never destroyed and stay behind, unreferenced, still using space.
            return .ok(.string(newTask(&s, now: now, type: taskType, vmid: vmid, duration: 2, lines: [(0.2, "recovering backed-up configuration from '\(volid)'")],
                                       error: prefix + failure, effect: .restoreFailedCT(vmid: vmid, release: [:])).description))
        }
        let pbs = scenario.pbsStorages.first { $0.id == volid.storage }
        var (lines, duration) = type == .vm
            ? vmRestoreLog(vmid: vmid, volid: volid, disks: source.disks, storages: diskStorages, datastore: pbs?.datastore ?? "store1", failAtHalf: fails)
            : ctRestoreLog(volid: volid, size: size, failAtHalf: fails)
        let effect: SimTask.Effect
        var error: String?
        var configWarnings: [String] = []
        if fails {
            // The new volumes are freed on failure (VM QemuServer.pm:7119; CT API2/LXC.pm:619, with
            // the config, :621), the old ones were freed when the task began.
            error = type == .vm
                ? "command '/usr/bin/pbs-restore --repository pbs-standby@pbs@pbs.example:\(pbs?.datastore ?? "store1") \(volid.snapshot) drive-scsi0.img.fidx /dev/pve/vm-\(vmid)-disk-0 --verbose --format raw --skip-zero' failed: exit code 255"  // [unverified] run_command wording
                : prefix + "error extracting archive - simulated chunk read error"  // every in-task CT error is prefixed (LXC.pm:629) [unverified: extraction text]
            effect = type == .vm ? .restoreFailedVM(vmid: vmid, release: newUsage) : .restoreFailedCT(vmid: vmid, release: newUsage)
            if type == .vm {
                lines.append((duration, vmWarning))
            }
        } else {
            if type == .vm { lines.append((duration, "rescan volumes...")) }
            // The network, device and mount point keys of the backup (SimulatorGuestConfig.swift).
            let restored = restoredConfig(&s, source, vmid: vmid, type: type, storage: diskStorages.first ?? ctStorageID, p)
            configWarnings = restored.warnings
            effect = .restoreSucceeded(vmid: vmid, type: type, name: source.name, tags: tags, description: description,
                                       disks: source.disks, storage: diskStorages.first ?? ctStorageID, start: p["start"] == "1" || p["live-restore"] == "1",
                                       onboot: onbootOverride ?? source.onboot, diskStorages: diskStorages, config: restored.config)
        }
        // Counted when the task begins: the old volumes go (a VM's before the new ones are
        // allocated, QemuServer.pm:7055; a CT's right after, LXC.pm:539), the new ones are there.
        adjustUsed(&s, oldUsage, sign: -1)
        adjustUsed(&s, newUsage, sign: 1)
        if type == .vm { beginImageRestore(vmid: vmid, source: source, volid: volid, diskStorages: diskStorages) }
        duration = lines.last?.0 ?? duration
        var warnings = error == nil ? s.restoreWarnings[source.vmid] ?? 0 : 0
        if warnings > 0, type == .ct { lines.append((duration, "WARN: skipping raw lxc.* keys: only root@pam may restore them")) }  // [unverified] text (§13.1)
        if !configWarnings.isEmpty {
            lines += configWarnings.map { (duration, $0) }
            warnings += 1
        }
        let upid = newTask(&s, now: now, type: taskType, vmid: vmid, duration: duration + 0.5, lines: lines, error: error,
                           warnings: warnings, effect: effect)
        return .ok(.string(upid.description))
    }

    /// The synchronous checks of a CT restore, in pve-container `create_vm`'s order
    /// (`src/PVE/API2/LXC.pm`, §3.2, §13.5):
    /// 1. `:280-285` — unless this node has the CT's config and `force` is set,
    ///    `check_vmid_unused`: `CT 200 already exists on node 'pve1'` (no prefix; a VM of the
    ///    VMID or a guest on another node alike); else a running CT: `can't overwrite running
    ///    container`, then protection: `unable to restore CT 200 - protection mode enabled`;
    /// 2. `:295-318`, `:340` — the right to create and the archive (403, SimulatorPermissions.swift);
    /// 3. `:349-358`, `:411` — the target storage (default `local`, `:322`), see ``ctStorageRefusal(_:_:)``;
    /// 4. `:419` — `create_and_lock_config`: `unable to restore CT 200 - CT is locked (backup)`.
    /// Nothing is changed before all of them passed.
    private func ctSynchronousRefusal(_ s: State, vmid: Int, existing: SimGuest?, force: Bool, storageID: String, archiveText: String,
                                      unparsable: SimResult, _ p: [String: String]) -> SimResult? {
        let prefix = "unable to restore CT \(vmid) - "
        if let g = existing {
            let sameExists = g.node == scenario.node && g.type == .ct
            if !(sameExists && force) {
                return .error(status: 500, message: "\(g.type == .vm ? "VM" : "CT") \(vmid) already exists on node '\(g.node)'\n", errors: [:])
            }
            if g.status == "running" { return .error(status: 500, message: "can't overwrite running container\n", errors: [:]) }
            if g.protection { return .error(status: 500, message: prefix + "protection mode enabled\n", errors: [:]) }
        }
        if let refusal = synchronousPermissionRefusal(s, type: .ct, vmid: vmid, archiveText: archiveText, p) { return refusal }
        guard Volid(parsing: archiveText) != nil else { return unparsable }
        if let refusal = ctStorageRefusal(s, storageID) { return refusal }
        if let lock = existing?.lock { return .error(status: 500, message: prefix + "CT is locked (\(lock))\n", errors: [:]) }
        return nil
    }

    /// `$check_and_activate_storage` of a CT restore (pve-container LXC.pm:347-360, run at :411
    /// when no `rootfs` is given): the storage must exist (pve-storage `storage_check_enabled` →
    /// `storage_config`: 500 `storage 'X' does not exist`, LXC.pm:350), allow `rootdir` (400
    /// `Parameter verification failed.` with `storage: storage 'X' does not support container
    /// directories`, `raise_param_exc`, :352-354), be writable by the caller (403, :356) and
    /// activate (pve-storage `activate_storage`: 500 `storage 'X' is not online`, :358).
    func ctStorageRefusal(_ s: State, _ id: String) -> SimResult? {
        guard let content = storageContent(id) else { return .error(status: 500, message: "storage '\(id)' does not exist\n", errors: [:]) }
        guard content.contains("rootdir") else {
            return .error(status: 400, message: "Parameter verification failed.\n",
                          errors: ["storage": "storage '\(id)' does not support container directories"])
        }
        if let e = permissionCheck(s, "/storage/\(id)", "Datastore.AllocateSpace") { return .error(status: 403, message: e + "\n", errors: [:]) }
        if s.inactiveStorages.contains(id) { return .error(status: 500, message: "storage '\(id)' is not online\n", errors: [:]) }
        return nil
    }

    /// The content types of a storage of this node (target and PBS storages), nil when it does
    /// not exist.
    func storageContent(_ id: String) -> [String]? {
        if let t = scenario.targetStorages.first(where: { $0.id == id }) { return t.effectiveContent }
        if scenario.pbsStorages.contains(where: { $0.id == id }) { return ["backup"] }
        return nil
    }

    /// The checks of qemu-server's `$parse_backup_hints` on each disk's storage, in disk order
    /// (QemuServer.pm:6599-6658): the TASK ERROR text, or nil.
    private func backupHintsRefusal(_ s: State, _ diskStorages: [String]) -> String? {
        for id in diskStorages {
            guard let content = storageContent(id) else { return "storage '\(id)' does not exist" }  // pve-storage storage_config
            if !content.contains("images") { return "Content type 'images' is not available on storage '\(id)'" }  // :6604
            if !scenario.callerIsRoot, let e = permissionCheck(s, "/storage/\(id)", "Datastore.AllocateSpace") { return e }  // :6606
        }
        return nil
    }

    /// Why allocating the new volumes fails, or nil. Disk by disk in order (VM:
    /// `$restore_allocate_devices`, QemuServer.pm:6663-6697, after the old disks were freed at
    /// :7055, so they count as free; CT: `create_disks` at LXC.pm:534 while the old volumes still
    /// exist, destroyed only at :539, so they do not): an inactive storage fails activation
    /// (pve-storage `activate_storage`: `storage 'X' is not online`; a CT's was activated before
    /// the lock), a volume that does not fit fails the storage layer [unverified: lvcreate wording].
    func allocationFailure(_ s: State, type: GuestType, vmid: Int, diskStorages: [String], disks: [Int64],
                                   oldUsage: [String: Int64]) -> String? {
        var need: [String: Int64] = [:]
        for (i, size) in disks.enumerated() {
            let id = diskStorages[i]
            if s.inactiveStorages.contains(id) { return "storage '\(id)' is not online" }
            let target = scenario.targetStorages.first { $0.id == id }
            let used = s.targetUsed[id] ?? target?.used ?? 0
            let freed = type == .vm ? oldUsage[id] ?? 0 : 0
            need[id, default: 0] += size
            if need[id]! > (target?.total ?? 0) - used + freed {
                return "lvcreate '\(id)/vm-\(vmid)-disk-\(i)' error: Insufficient free space"
            }
        }
        return nil
    }

    /// Adds (`sign` 1) or gives back (-1) bytes per storage.
    func adjustUsed(_ s: inout State, _ usage: [String: Int64], sign: Int64) {
        for (id, bytes) in usage where bytes != 0 {
            let base = scenario.targetStorages.first { $0.id == id }?.used ?? 0
            s.targetUsed[id] = max(0, (s.targetUsed[id] ?? base) + sign * bytes)
        }
    }

    /// pbs-restore's per-disk lines (§4.4), timed by the restore throughput.
    private func vmRestoreLog(vmid: Int, volid: Volid, disks: [Int64], storages: [String], datastore: String,
                              failAtHalf: Bool) -> ([(Double, String)], Double) {
        var lines: [(Double, String)] = []
        var t = 0.2
        let rate = scenario.restoreBytesPerSecond
        let repo = "pbs-standby@pbs@pbs.example:\(datastore)"
        for (i, _) in disks.enumerated() { lines.append((t, "new volume ID is '\(storages[i]):vm-\(vmid)-disk-\(i)'")) }
        for (i, size) in disks.enumerated() {
            let target = "/dev/pve/vm-\(vmid)-disk-\(i)"
            lines.append((t, "restore proxmox backup image: /usr/bin/pbs-restore --repository \(repo) \(volid.snapshot) drive-scsi\(i).img.fidx \(target) --verbose --format raw --skip-zero"))
            lines.append((t, "using up to 4 threads"))  // pbs-restore's own first line (§13.5)
            lines.append((t, "connecting to repository '\(repo)'"))
            lines.append((t, "open block backend for target '\(target)'"))
            lines.append((t, "starting to restore snapshot '\(volid.snapshot)'"))
            lines.append((t, "download and verify backup index"))
            lines.append((t, "fetching up to 16 chunks in parallel"))
            let diskTime = Double(size) / rate
            let chunks = max(1, Int((size + (4 << 20) - 1) / (4 << 20)))
            var lastPct = -1
            // Percentages change at most 100 times; small disks skip some (count*100/index_count).
            let steps = min(100, chunks)
            for step in 1...steps {
                let count = chunks * step / steps
                let pct = count * 100 / chunks
                guard pct != lastPct else { continue }
                lastPct = pct
                let read = min(size, Int64(count) * (4 << 20))
                let zeroes = read / 3
                let at = t + diskTime * Double(step) / Double(steps)
                if failAtHalf && pct > 50 {
                    lines.append((at, "restore failed: simulated chunk read error"))
                    return (lines, at)
                }
                lines.append((at, "progress \(pct)% (read \(read) bytes, zeroes = \(zeroes * 100 / max(read, 1))% (\(zeroes) bytes), duration \(Int(diskTime * Double(step) / Double(steps))) sec)"))
            }
            t += diskTime
            lines.append((t, String(format: "restore image complete (bytes=%lld, duration=%.2fs, speed=%.2fMB/s)", size, diskTime, Double(size) / 1_048_576 / max(diskTime, 0.01))))
        }
        return (lines, t)
    }

    /// Container restores print no percentage (§3.2, §4.4).
    private func ctRestoreLog(volid: Volid, size: Int64, failAtHalf: Bool) -> ([(Double, String)], Double) {
        let d = Double(size) / scenario.restoreBytesPerSecond
        var lines: [(Double, String)] = [
            (0.2, "recovering backed-up configuration from '\(volid)'"),
            (0.5, "restoring '\(volid)' now.."),
        ]
        if failAtHalf { return (lines, d / 2) }
        lines.append((d, "merging backed-up and given configuration.."))
        return (lines, d)
    }

    // MARK: - Tasks (reference §4)

    /// Starts a task of `user` (default: the API token, `user@realm!token`) with id = the vmid.
    @discardableResult
    func newTask(_ s: inout State, now: Double, type: String, vmid: Int, user: String? = nil, duration: Double,
                 lines: [(Double, String)], error: String?, warnings: Int = 0, effect: SimTask.Effect) -> UPID {
        newTask(&s, now: now, type: type, id: String(vmid), user: user, duration: duration, lines: lines, error: error,
                warnings: warnings, effect: effect)
    }

    /// Starts a task with any id (`startall` has an empty one, §4.1 allows `[^:\s/]*`).
    @discardableResult
    func newTask(_ s: inout State, now: Double, type: String, id: String, user: String? = nil, duration: Double,
                 lines: [(Double, String)], error: String?, warnings: Int = 0, effect: SimTask.Effect) -> UPID {
        s.pid += 1
        let upid = UPID(node: scenario.node, pid: s.pid, pstart: UInt64(1_000_000 + s.pid), startTime: Int(now),
                        type: type, id: id, user: user ?? token.tokenID)
        var all = lines.map { (now + $0.0, $0.1) }
        let end = now + duration
        // §4.2: `OK`, `WARNINGS: N` (success) or the error text.
        let finalLine = error.map { "TASK ERROR: " + $0.replacingOccurrences(of: "\n", with: " ") } ?? (warnings > 0 ? "TASK WARNINGS: \(warnings)" : "TASK OK")
        all.append((end, finalLine))
        s.tasks[upid.description] = SimTask(upid: upid, start: now, end: end, lines: all,
                                            exitStatus: error ?? (warnings > 0 ? "WARNINGS: \(warnings)" : "OK"), effect: effect)
        s.taskOrder.append(upid.description)
        s.unsettled.append(upid.description)
        return upid
    }

    /// Applies the effects of tasks that ended by `now`, in order, once; then what guests did
    /// after booting (``settleBoots(_:now:)``).
    func settle(_ s: inout State, now: Double) {
        defer { settleBoots(&s, now: now) }
        guard !s.unsettled.isEmpty else { return }
        var remaining: [String] = []
        var due: [String] = []
        for key in s.unsettled {
            if let t = s.tasks[key], t.end <= now { due.append(key) } else { remaining.append(key) }
        }
        guard !due.isEmpty else { return }
        s.unsettled = remaining
        for key in due {
            guard var task = s.tasks[key], !task.applied else { continue }
            task.applied = true
            s.tasks[key] = task
            switch task.effect {
            case .none: break
            case .unlock(let vmid):
                s.guests[vmid]?.lock = nil
                if s.guests[vmid]?.disks.isEmpty == true, s.guests[vmid]?.description == nil { s.guests[vmid] = nil }
            case .restoreSucceeded(let vmid, let type, let name, let tags, let description, let disks, let storage, let start, let onboot, let diskStorages, let config):
                var g = s.guests[vmid] ?? SimGuest(vmid: vmid, type: type, name: name, status: "stopped", lock: nil, tags: [],
                                                   description: nil, protection: false, disks: [], storage: storage, node: scenario.node)
                // The merged config: the backup's `onboot` or the override (§3.1 step 2), and a
                // new vmgenid for VMs (§3.1 step 2 "new `vmgenid`").
                g.onboot = onboot ?? true
                g.vmgenid = type == .vm ? newVMGenID(&s) : nil
                g.type = type
                g.name = name
                g.tags = tags
                g.description = description
                g.disks = disks
                g.storage = storage
                // Each disk's storage when they differ (a VM restored without `storage`, §13.4).
                g.diskStorages = Set(diskStorages ?? []).count > 1 ? diskStorages ?? [] : []
                g.lock = nil
                g.status = start ? "running" : "stopped"
                // pvestatd has not reported a guest new to the node yet (§5.1); only then (§13.5).
                if g.newToNode { g.unknownUntil = task.end + 10 }
                g.newToNode = false
                g.configDigestCounter += 1
                g.extraConfig = config ?? [:]
                g.pending = [:]
                g.snapshots = []
                g.parent = nil
                g.startedAt = start ? task.end : nil
                g.dataGeneration = nextDataGeneration(&s)
                s.guests[vmid] = g
                if type == .vm { images?.finishRestore(vmid: vmid) }
            case .restoreFailedVM(let vmid, let release):
                // Old disks are gone; the config is the temporary `memory: 128` (§3.1 step 3).
                // The new volumes (`release`) are freed whatever became of the config.
                if let release { adjustUsed(&s, release, sign: -1) }
                images?.removeGuest(vmid: vmid)
                if var g = s.guests[vmid] {
                    if release == nil { adjustUsed(&s, g.usage, sign: -1) }
                    g.lock = nil
                    g.tags = []
                    g.description = nil
                    g.disks = []
                    g.diskStorages = []
                    g.name = "VM \(vmid)"
                    g.extraConfig = ["memory": "128"]
                    g.vmgenid = nil  // the temporary config has no vmgenid and no onboot (§3.1 step 3)
                    g.onboot = false
                    g.snapshots = []
                    g.parent = nil
                    g.configDigestCounter += 1
                    s.guests[vmid] = g
                }
            case .restoreFailedCT(let vmid, let release):
                // A failed forced CT restore destroys the container and its config (§3.2).
                if let release { adjustUsed(&s, release, sign: -1) }
                if let g = s.guests.removeValue(forKey: vmid), release == nil { adjustUsed(&s, g.usage, sign: -1) }
            case .setStatus(let vmid, let status):
                setPowerState(&s, vmid, running: status == "running", at: task.end)
            case .destroy(let vmid):
                if let g = s.guests.removeValue(forKey: vmid) { adjustUsed(&s, g.usage, sign: -1) }
                images?.removeGuest(vmid: vmid)
            case .snapshotCreated, .snapshotRolledBack, .snapshotDeleted:
                applySnapshotEffect(&s, task.effect, at: task.end)
            case .cloneFinished, .cloneFailed:
                applyCloneEffect(&s, task.effect)
            }
        }
    }

    func taskStatus(_ s: State, now: Double, _ text: String) -> SimResult {
        guard let upid = UPID(parsing: text) else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["upid": "unable to parse worker upid"])
        }
        guard let task = s.tasks[upid.description] else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["upid": "no such task"])
        }
        var o = taskFields(upid)
        o["status"] = .string(now < task.end ? "running" : "stopped")
        if now >= task.end { o["exitstatus"] = .string(task.exitStatus) }
        return .ok(.object(o))
    }

    private func taskFields(_ upid: UPID) -> [String: JSONValue] {
        // Token tasks: `user` without `!token`, `tokenid` separate (§4.2).
        let parts = upid.user.split(separator: "!", maxSplits: 1)
        var o: [String: JSONValue] = [
            "upid": .string(upid.description), "node": .string(upid.node), "pid": .number(Double(upid.pid)),
            "pstart": .number(Double(upid.pstart)), "starttime": .number(Double(upid.startTime)),
            "type": .string(upid.type), "id": .string(upid.id), "user": .string(String(parts[0])),
        ]
        if parts.count == 2 { o["tokenid"] = .string(String(parts[1])) }
        return o
    }

    func taskLog(_ s: State, now: Double, _ text: String, _ p: [String: String]) -> SimResult {
        guard let upid = UPID(parsing: text) else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["upid": "unable to parse worker upid"])
        }
        // The log endpoint does not check existence (§4.3).
        guard let task = s.tasks[upid.description] else {
            return .ok(.array([.object(["n": .number(1), "t": .string("unable to open file - No such file or directory")])]))
        }
        let visible = task.lines.filter { $0.0 <= now }.map(\.1)
        if visible.isEmpty { return .ok(.array([.object(["n": .number(1), "t": .string("no content")])])) }
        let start = max(0, p["start"].flatMap(Int.init) ?? 0)
        let limit = p["limit"].flatMap(Int.init) ?? 50
        let slice = visible.dropFirst(start).prefix(limit == 0 ? Int.max : limit)
        return .ok(.array(slice.enumerated().map { .object(["n": .number(Double(start + $0.offset + 1)), "t": .string($0.element)]) }))
    }

    /// `GET /nodes/{node}/tasks` (§4.2, §13.5): newest first, every task of the node whoever
    /// started it (`user`, plus `tokenid` for token tasks, and `starttime` from the UPID); finished
    /// tasks carry the exit status as `status` and `endtime`, running ones `status: "RUNNING"`
    /// (§13.5). Filters: `source` (active|archive|all, default archive), `typefilter`, `vmid`
    /// (matches the task id), `userfilter` (substring, any case) [unverified], `start` (matching
    /// entries to skip) and `limit` (default 50, 0 for all).
    func taskList(_ s: State, now: Double, _ p: [String: String]) -> JSONValue {
        let source = p["source"] ?? "archive"
        let typeFilter = p["typefilter"]
        let vmid = p["vmid"]
        let userFilter = p["userfilter"]?.lowercased()
        // `limit=0`: no limit [unverified].
        let limit = p["limit"].flatMap(Int.init).map { $0 <= 0 ? Int.max : $0 } ?? 50
        var skip = max(0, p["start"].flatMap(Int.init) ?? 0)
        // Without `Sys.Audit` on /nodes/<node> a token sees only its own tasks [src: pve-manager
        // PVE/API2/Tasks.pm `node_tasks` ($auditor, $check_task_user: "token only sees token tasks")].
        let auditor = scenario.callerIsRoot || privileges(s, at: "/nodes/\(scenario.node)").contains("Sys.Audit")
        let me = token.tokenID
        var out: [JSONValue] = []
        for key in s.taskOrder.reversed() {
            if out.count >= limit { break }
            guard let t = s.tasks[key] else { continue }
            let running = now < t.end
            if source == "active" && !running { continue }
            if source == "archive" && running { continue }
            if let typeFilter, t.upid.type != typeFilter { continue }
            if let vmid, t.upid.id != vmid { continue }
            if !auditor && t.upid.user != me { continue }
            if let userFilter, !userFilter.isEmpty, !t.upid.user.lowercased().contains(userFilter) { continue }
            if skip > 0 { skip -= 1; continue }
            var o = taskFields(t.upid)
            if running {
                o["status"] = .string("RUNNING")
            } else {
                o["status"] = .string(t.exitStatus)
                o["endtime"] = .number(t.end.rounded(.down))
            }
            out.append(.object(o))
        }
        return .array(out)
    }

    // MARK: - Backed-up configuration (reference §13.1)

    /// `GET /nodes/{node}/vzdump/extractconfig?volume=<volid>`: the backed-up guest config as text
    /// (§13.1). Rendered from the scenario: name, onboot, memory, tags; one NIC per bridge
    /// (`bridges`, default `vmbr0`); the disks on their production storage ids (`storages`,
    /// default `local-lvm`) with their `#qmdump#map` lines for VMs (§3.3); VM host devices
    /// (`hostpciN`, `usbN`); CT mount points (`mpN`: volumes on the storage of the next disk,
    /// bind mounts of `/srv/<mp>`, devices `/dev/sdb1`) and `unprivileged: 1` unless privileged;
    /// `memory` from `memory_mib` (default 2048 VM, 512 CT); then `extra_config`.
    /// Keys sorted as PVE writes them, the `#qmdump#map` lines last [unverified: exact option
    /// order and NIC text].
    func extractConfig(now: Double, _ p: [String: String]) -> SimResult {
        guard let text = p["volume"], let volid = Volid(parsing: text) else {
            return .error(status: 400, message: "Parameter verification failed.\n", errors: ["volume": "unable to parse volume ID '\(p["volume"] ?? "")'"])
        }
        guard let g = scenario.backedUp.first(where: { $0.vmid == volid.vmid && $0.type == volid.type && $0.storage == volid.storage }),
              backupEntries(storage: volid.storage, now: now).contains(where: { $0.volid == volid && $0.isComplete }) else {
            return .error(status: 500, message: "unable to read manifest of snapshot '\(volid.snapshot)' - not found\n", errors: [:])  // [unverified] wording
        }
        return .ok(.string(backedUpConfigText(g)))
    }

    /// The backed-up config text of `g` (what `extractconfig` answers and what a real snapshot's
    /// `qemu-server.conf.blob` holds).
    func backedUpConfigText(_ g: Scenario.BackedUpGuest) -> String {
        var keys: [(String, String)] = []
        var lines: [String]
        func mac(_ i: Int) -> String { Self.backupMAC(vmid: g.vmid, nic: i) }
        if g.type == .vm {
            keys += [("boot", "order=scsi0"), ("memory", String(g.memoryMiB ?? 2048)), ("name", g.name)]
            for (i, b) in g.bridges.enumerated() { keys.append(("net\(i)", "virtio=\(mac(i)),bridge=\(b)")) }
            for (i, d) in g.disks.enumerated() { keys.append(("scsi\(i)", "\(g.diskStorage(i)):vm-\(g.vmid)-disk-\(i),size=\(d >> 30)G")) }
            for (i, v) in g.hostpci.enumerated() { keys.append(("hostpci\(i)", v)) }
            for (i, v) in g.usb.enumerated() { keys.append(("usb\(i)", v)) }
        } else {
            keys += [("arch", "amd64"), ("hostname", g.name), ("memory", String(g.memoryMiB ?? 512))]
            for (i, b) in g.bridges.enumerated() { keys.append(("net\(i)", "name=eth\(i),bridge=\(b),hwaddr=\(mac(i)),ip=dhcp,type=veth")) }
            keys.append(("rootfs", "\(g.diskStorage(0)):subvol-\(g.vmid)-disk-0,size=\((g.disks.first ?? 0) >> 30)G"))
            var disk = 1
            for m in g.mountpoints {
                switch m.kind {
                case .volume:
                    let size = disk < g.disks.count ? g.disks[disk] >> 30 : 8
                    keys.append((m.mp, "\(g.diskStorage(disk)):subvol-\(g.vmid)-disk-\(disk),mp=/mnt/\(m.mp),size=\(size)G"))
                    disk += 1
                case .bind: keys.append((m.mp, "/srv/\(m.mp),mp=/mnt/\(m.mp)"))
                case .device: keys.append((m.mp, "/dev/sdb1,mp=/mnt/\(m.mp)"))
                }
            }
            if !g.privileged { keys.append(("unprivileged", "1")) }
        }
        if g.onboot { keys.append(("onboot", "1")) }
        if !g.tags.isEmpty { keys.append(("tags", g.tags.joined(separator: ";"))) }
        // `extra_config` (memory_mib and extra_config: ScenarioDrill.swift), replacing a key of the same name.
        keys = keys.filter { g.extraConfig[$0.0] == nil } + g.extraConfig.map { ($0.key, $0.value) }
        lines = keys.sorted { $0.0 < $1.0 }.map { "\($0.0): \($0.1)" }
        if g.type == .vm { for i in g.disks.indices { lines.append("#qmdump#map:scsi\(i):drive-scsi\(i):\(g.diskStorage(i)):raw:") } }
        return lines.joined(separator: "\n") + "\n"
    }
}
