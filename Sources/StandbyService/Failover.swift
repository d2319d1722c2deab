import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// `failover` as a service operation: freeze persistently (state file and PVE tag), wait for a
/// restore a pass began just before, then start the copies proven ours in priority order. With
/// `latest`, a VM whose copy is behind a newer *eligible* backup is first live-restored — into
/// the free keep_previous slot (the serving copy stays; if the live restore fails it is started
/// instead), or over the copy only with `replace` (PVE frees the copy's disks first, reference
/// §13.3). A held guest keeps its held copy. Each step is reported through `say`.
public struct Failover: Sendable {
    /// The operations (config, PVE client, state store) the failover acts through.
    public let operations: GuestOperations
    /// The service configuration.
    var config: StandbyConfig { operations.config }

    /// A failover acting through `operations`.
    public init(operations: GuestOperations) { self.operations = operations }

    /// What to do.
    public struct Options: Sendable {
        /// Start the copies; false: only freeze and tag them.
        public var start = true
        /// Live-restore a VM first when an eligible backup newer than its copy exists.
        public var latest = false
        /// With `latest`, without keep_previous: live-restore over the copy itself (PVE frees its disks first).
        public var replace = false
        /// Seconds to wait for running restores; then the copies start anyway and `run` returns false.
        public var waitSeconds: Double = 3600
        /// Options; by default the copies start as they are, after up to an hour's wait for running restores.
        public init(start: Bool = true, latest: Bool = false, replace: Bool = false, waitSeconds: Double = 3600) {
            self.start = start
            self.latest = latest
            self.replace = replace
            self.waitSeconds = waitSeconds
        }
    }

    /// Fails over `keys`; returns whether every step succeeded.
    public func run(_ keys: [GuestKey], options: Options, say: (String) -> Void) async throws -> Bool {
        let store = operations.store
        let records = try store.guests()
        func priority(_ k: GuestKey) -> Int {
            config.sources.first { $0.storage == k.source }.map { config.effective(source: $0, vmid: k.vmid).priority } ?? 0
        }
        let ordered = keys.sorted { a, b in priority(a) != priority(b) ? priority(a) > priority(b) : a < b }
        // Freeze first (persistently), then wait, then start: a restore never overwrites a started copy.
        for k in ordered {
            try store.update(k, targetVmid: records[k]?.targetVmid ?? k.vmid) { $0.failedOver = true }
            say("frozen \(k)")
        }
        var ok = await mirror(ordered, say: say)
        let left = await operations.waitForRunningRestores(Set(ordered), timeout: options.waitSeconds) { h in
            say("  waiting for the running restore of \(h.source)/\(h.vmid) into \(h.targetVmid) (\(h.volid)) to end")
        }
        if !left.isEmpty { ok = false }
        ok = await mirror(ordered, say: say) && ok  // a copy that was locked by its restore can be tagged now
        guard options.start else { return ok }
        for k in ordered {
            do {
                ok = try await failOver(k, record: records[k], options: options, say: say) && ok
            } catch {
                say("\(k): \(error)")
                ok = false
            }
        }
        return ok
    }

    private func mirror(_ keys: [GuestKey], say: (String) -> Void) async -> Bool {
        var ok = true
        for k in keys {
            do {
                for vmid in try await operations.mirror(Marker.failedOverTag, on: k, set: true) { say("  tagged VMID \(vmid) '\(Marker.failedOverTag)' in PVE") }
            } catch {
                say("  \(k): not mirrored in PVE (the state file holds the flag): \(error)")
                ok = false
            }
        }
        return ok
    }

    private func failOver(_ k: GuestKey, record: GuestRecord?, options: Options, say: (String) -> Void) async throws -> Bool {
        let client = operations.client, node = config.proxmox.node
        // A DR drill of the guest is aborted first: stopped, rolled back (links up again).
        guard await abortDrill(k, say: say) else { return false }
        guard var copy = try await operations.provenCopy(of: k) else {
            say("\(k): no standby copy proven ours in PVE; nothing started")
            return false
        }
        // A delta restore is rewriting the copy's disks (issue 15): never start a half-written
        // disk. The restore was frozen by the failover flag before this; wait for the delta's end.
        if let rewriting = copy.marker.rewriting {
            say("\(k): a delta restore is rewriting \(copy.slot.target) into \(rewriting); waiting for it to end")
            let deadline = Date().addingTimeInterval(options.waitSeconds)
            while copy.marker.rewriting != nil {
                guard Date() < deadline else {
                    say("\(k): \(copy.slot.target) is still being rewritten after \(Int(options.waitSeconds)) s; not started (run failover again)")
                    return false
                }
                try await Task.sleep(for: .seconds(1))
                guard let again = try await operations.provenCopy(of: k) else { return false }
                copy = again
            }
            say("\(k): the delta ended; the copy holds \(copy.marker.volid)")
        }
        let held = record?.held == true || copy.guest.tags.contains(Marker.heldTag)
        if options.latest, copy.slot.type == .vm, let newer = try await newerEligible(k, than: copy) {
            if held {
                say("\(k): held — starting the held copy (\(copy.marker.volid)); the newer backup \(newer.volid) is not used")
            } else if let into = try await liveRestoreTarget(k, copy: copy, replace: options.replace, newer: newer, say: say) {
                if try await liveRestore(k, newer: newer, into: into, over: into == copy.slot.target, say: say) { return true }
                if into == copy.slot.target { return false }  // the copy was freed by PVE: nothing left to start
                say("\(k): starting the existing copy instead")
            }
        }
        // The copy was restored with onboot=0; as the serving guest it gets the backup's value back.
        if record?.backupOnboot == true {
            try await client.setGuestConfig(node: node, type: copy.slot.type, vmid: copy.slot.target, onboot: true)
            say("\(k): onboot set to 1 on \(copy.slot.target), as in the backup")
        }
        let upid = try await client.start(node: node, type: copy.slot.type, vmid: copy.slot.target)
        say("\(k): starting \(copy.slot.target) (\(copy.marker.volid)) (\(upid))")
        return true
    }

    /// The newest backup newer than the copy that the service itself would restore (complete,
    /// settled, verified when required).
    func newerEligible(_ k: GuestKey, than copy: GuestOperations.ProvenCopy) async throws -> BackupEntry? {
        let entries = try await operations.client.backups(node: config.proxmox.node, storage: k.source, vmid: k.vmid)
            .filter { $0.volid.type == copy.slot.type }
        guard let e = newestEligible(entries, now: Date().timeIntervalSince1970, settle: config.restore.settle.seconds,
                                     requireVerified: config.restore.requireVerified),
              e.volid.backupTime > copy.marker.volid.backupTime else { return nil }
        return e
    }

    /// Where the live restore goes: the free keep_previous slot; over the copy only with `replace`.
    private func liveRestoreTarget(_ k: GuestKey, copy: GuestOperations.ProvenCopy, replace: Bool, newer: BackupEntry,
                                   say: (String) -> Void) async throws -> Int? {
        if config.restore.keepPrevious, let source = config.sources.first(where: { $0.storage == k.source }) {
            let primary = config.effective(source: source, vmid: k.vmid).targetVmid
            let other = copy.slot.target == primary ? primary + config.restore.previousVmidOffset : primary
            if try await operations.client.guests().contains(where: { $0.vmid == other }) {
                say("\(k): the other slot \(other) is not free; starting the existing copy (newer backup \(newer.volid) not used)")
                return nil
            }
            return other
        }
        guard replace else {
            say("\(k): a newer backup \(newer.volid) exists; starting the existing copy (`--latest --replace` live-restores over it, destroying it first)")
            return nil
        }
        say("\(k): --replace: live-restoring \(newer.volid) over VMID \(copy.slot.target); PVE destroys the copy's disks first")
        return copy.slot.target
    }

    /// Live-restores and follows the task to its end; records the new copy only after `TASK OK`.
    private func liveRestore(_ k: GuestKey, newer: BackupEntry, into vmid: Int, over: Bool, say: (String) -> Void) async throws -> Bool {
        let client = operations.client, node = config.proxmox.node
        guard let source = config.sources.first(where: { $0.storage == k.source }) else { return false }
        var settings = config.effective(source: source, vmid: k.vmid)
        settings.targetVmid = vmid
        // The engine's restore request (marker, tag, onboot=0, pool), as a live restore; `force`
        // only over the copy just proven ours, with --replace.
        let action = RestoreAction(key: k, type: newer.volid.type, node: node, backup: newer, settings: settings, force: over, pool: source.pool)
        if over, let problem = await StoragePrecheck(client: client, node: node)
            .problem(type: action.type, targetStorage: settings.targetStorage, volid: newer.volid) {
            say("\(k): live-restore not started: \(problem)")
            return false
        }
        var request = PVETaskExecutor.request(for: action, at: Date().timeIntervalSince1970)
        request.liveRestore = true
        request.onboot = nil  // the serving copy keeps the backup's own onboot
        request.tags = [Marker.tag, Marker.failedOverTag]
        let upid: UPID
        do { upid = try await client.restore(request) } catch {
            say("\(k): live-restore not started: \(error)")
            return false
        }
        say("\(k): live-restoring \(newer.volid) into \(vmid) (\(upid)); recorded when its task ends")
        let end = try await operations.followToEnd(upid)
        guard end.succeeded else {
            say("\(k): live-restore failed: \(end.exitStatus ?? "unknown")")
            return false
        }
        try operations.store.update(k, targetVmid: vmid) { g in
            g.restoredVolid = newer.volid.description
            g.restoredBackupTime = newer.volid.backupTime
            g.liveVmid = vmid
        }
        say("\(k): live-restore of \(newer.volid) into \(vmid) ended \(end.exitStatus ?? "OK")")
        return true
    }
}
