import Foundation
import Logging
import PBSDatastore
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// Brings a VM copy up to date by writing only the chunks that changed since the backup it holds,
/// straight from a local PBS datastore into its volumes (issue 15). When the checks of
/// ``DeltaEligibility`` say no, PVE restores in full (``PVETaskExecutor``) and the reason is
/// counted. A delta in order:
///
/// 1. the checks, then the content guard (sampled unchanged chunks of the copy hashed against
///    the old index: a copy changed behind our back is restored in full, `copy_modified`);
/// 2. with several disks, every changed chunk of every disk read and verified (a corrupt chunk
///    in PBS fails the restore as `source_corrupt` and keeps the copy: pbs-restore would free the
///    old disks and fail on the same chunk);
/// 3. right before the first change: the guest not frozen, the copy stopped and unlocked; the
///    delta recorded in the state file, the copy's marker set to `rewriting <backup>` (it must not
///    be started: `failover` waits), a PVE snapshot `pbs-standby-delta` where the storage can take one;
/// 4. each disk written by `pbs-standby datastore apply` in its own process (``DeltaWriter``);
/// 5. the copy still stopped and untouched, the marker names the new backup, the snapshot goes,
///    the record ends. A failed write rolls back to the snapshot; without one the record stays
///    and the delta is run again (the writes are idempotent).
struct DeltaExecutor: RestoreExecutor {
    /// What the engine shares.
    let context: EngineContext
    /// PVE's restore: the fallback.
    let full: PVETaskExecutor
    /// Runs each disk's `datastore apply`.
    let writer: DeltaWriter
    /// The indexes kept of the backup each copy holds.
    let keeper: IndexKeeper
    /// The PVE snapshot taken before a delta's first write.
    static let snapshotName = "pbs-standby-delta"
    /// The PVE lock a copy carries while its disks are rewritten (pvesh only: only root@pam may
    /// set `lock`): a start from the GUI, `qm start` or HA fails with `VM is locked (rollback)`.
    static let rewriteLock = "rollback"

    /// Whether the service may set and clear a VM's `lock` (root@pam: the pvesh transport).
    var locks: Bool { context.config.proxmox.transport == .pvesh }

    /// A delta when the checks allow it, else PVE's full restore with the reason counted.
    func restore(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        let c = context
        guard let source = c.config.sources.first(where: { $0.storage == action.key.source }) else {
            return await full.restore(action, historyID: historyID, started: started, run: run)
        }
        // A delta left open (a crash, a failed write without snapshot): finish it first; a stale
        // record (the copy no longer holds what it names) is ended without writing; a copy that
        // cannot be finished (started or touched meanwhile) is restored in full by PVE.
        if let open = try? c.store.openDelta(targetVmid: action.targetVmid), open.historyID != historyID {
            switch await resume(open, action: action, run: run) {
            case .stale: break
            case .done(let outcome): guard case .success = outcome else { return outcome }
            case .cannotResume(let why):
                await abandon(open)
                return await fallBack(action, historyID: historyID, started: started, run: run, reason: .touchedSinceRestore,
                                      why: "the open delta into \(open.toVolid) cannot be finished: \(why)")
            }
        }
        switch await DeltaEligibility(context: c, keeper: keeper).check(action, source: source) {
        case .fallback(let reason, let why):
            return await fallBack(action, historyID: historyID, started: started, run: run, reason: reason, why: why)
        case .eligible(let job):
            if let modified = ContentGuard.check(job) {
                return await fallBack(action, historyID: historyID, started: started, run: run, reason: .copyModified, why: modified)
            }
            if job.disks.count > 1 {
                for disk in job.disks {
                    do { try ImageWriter(source: job.datastore.chunks).verifyChunks(disk.plan) } catch {
                        return .failure(reason: .sourceCorrupt, message: "\(disk.archive) of \(job.to): \(error); the copy of \(job.from) is kept")
                    }
                }
            }
            return await write(job, action: action, historyID: historyID, started: started, run: run)
        }
    }

    /// A restore with a PVE task is a full one (a delta has no task: open deltas are resumed
    /// from their records instead).
    func reattach(_ action: RestoreAction, upid: UPID, historyID: Int64, run: RestoreRun) async -> RestoreOutcome {
        await full.reattach(action, upid: upid, historyID: historyID, run: run)
    }

    /// PVE's full restore, with the reason the delta was not possible counted and kept.
    private func fallBack(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun,
                          reason: DeltaFallback, why: String) async -> RestoreOutcome {
        let c = context
        c.logger.info("delta restore not possible, PVE restores in full", metadata: [
            "vmid": "\(action.key.vmid)", "reason": "\(reason.rawValue)", "detail": "\(why)"])
        c.sink?.deltaFellBack(source: action.key.source, reason: reason.rawValue)
        var outcome = await full.restore(action, historyID: historyID, started: started, run: run)
        if case .success(var facts) = outcome {
            facts.fallbackReason = reason.rawValue
            outcome = .success(facts)
        }
        return outcome
    }

    /// Why the copy must not be changed now (nil: go ahead): the guest frozen by a hold or a
    /// failover, the copy running or locked.
    func mustNotChange(_ action: RestoreAction, ownLock: Bool = false) async -> String? {
        let c = context
        if let why = try? c.store.frozen(action.key) { return "the guest was \(why)" }
        do {
            let s = try await c.client.guestStatus(node: c.node, type: .vm, vmid: action.targetVmid)
            if s.status != "stopped" { return "the copy is \(s.status)" }
            if let lock = s.lock, !(ownLock && lock == Self.rewriteLock) { return "the copy is locked (\(lock))" }
        } catch { return "the copy's status cannot be read: \(error)" }
        return nil
    }

    /// Steps 3–5 for a job that passed the checks.
    private func write(_ job: DeltaJob, action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        let c = context, vmid = action.targetVmid
        if let why = await mustNotChange(action) { return .skipped("delta not started: \(why)") }
        let disks = job.disks.map { DeltaDisk(drive: $0.drive, archive: $0.archive, volume: $0.volume, path: $0.path, fromIndex: $0.fromIndex) }
        let record = DeltaRecord(historyID: historyID, source: action.key.source, vmid: action.key.vmid, targetVmid: vmid,
                                 fromVolid: job.from.description, toVolid: job.to.description, disks: disks, snapshot: nil, startedAt: started)
        writer.clean(record)
        guard c.writer.persist("record delta \(historyID)", { try $0.beginDelta(record) }) != nil else {
            return .failure(reason: .stateError, message: "the delta cannot be recorded in the state file first; nothing was written")
        }
        // The marker says the copy is being rewritten: failover and the planner leave it alone.
        var marker = Marker.parse(job.config.description) ?? Marker.Info(volid: job.from, targetVmid: vmid)
        marker.rewriting = job.to
        do {
            try await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: job.config.description, with: marker),
                                              digest: job.config.digest)
            c.observer.invalidate(vmid)
        } catch {
            c.writer.persist("end of delta \(historyID)") { try $0.endDelta(historyID) }
            return .skipped("delta not started: the copy's marker could not be set (\(error))")
        }
        var recorded = record
        if job.snapshots {
            do {
                // A snapshot of ours left by an earlier delta that could not remove it.
                if try await c.client.snapshots(node: c.node, vmid: vmid).contains(Self.snapshotName) {
                    await removeSnapshot(vmid, Self.snapshotName, at: started)
                }
                let upid = try await c.client.createSnapshot(node: c.node, vmid: vmid, name: Self.snapshotName,
                                                             description: "pbs-standby: before the delta to \(job.to)")
                c.writer.persist("snapshot task \(upid)") { try $0.addOurTask(upid.description, targetVmid: vmid, at: started) }
                guard case .success = try await TaskFollower(context: c).follow(upid) else {
                    throw ProxmoxError.transient(path: "snapshot", message: "the snapshot task failed")
                }
                c.writer.persist("snapshot of delta \(historyID)") { try $0.setDeltaSnapshot(historyID, Self.snapshotName) }
                recorded.snapshot = Self.snapshotName
            } catch {
                await unmark(record)
                return .failure(reason: .taskError, message: "the snapshot before the delta failed: \(error); nothing was written")
            }
        }
        if locks {
            do {
                let cfg = try await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid)
                try await c.client.setVMLock(node: c.node, vmid: vmid, lock: Self.rewriteLock, digest: cfg.digest)
                c.observer.invalidate(vmid)
            } catch {
                await unmark(recorded)
                return .failure(reason: .apiError, message: "the copy could not be locked before the delta: \(error); nothing was written")
            }
        }
        return await runWrites(recorded, datastore: job.datastore.path, namespace: job.namespace, run: run, resumed: false)
    }

    /// Writes every disk of a recorded delta (a new one, or one left open), then ends it.
    func runWrites(_ record: DeltaRecord, datastore: String, namespace: String, run: RestoreRun, resumed: Bool) async -> RestoreOutcome {
        let c = context, vmid = record.targetVmid, disks = record.diskList
        guard let from = Volid(parsing: record.fromVolid), let to = Volid(parsing: record.toVolid) else {
            return .failure(reason: .stateError, message: "delta record \(record.historyID) names unreadable volids")
        }
        let since = iso8601(record.startedAt)
        var bytes: Int64 = 0, changed = 0, total = 0
        for (i, disk) in disks.enumerated() {
            let args = DeltaWriter.arguments(datastore: datastore, namespace: namespace, from: from.snapshot, to: to.snapshot,
                                             archive: disk.archive, target: disk.path, fromIndex: disk.fromIndex)
            switch await writer.write(record: record, disk: disk, arguments: args) {
            case .written(let b, let ch, let t):
                bytes += b; changed += ch; total += t
                run.progress(Double(i + 1) / Double(max(1, disks.count)))
            case .dataError(let message) where i == 0 && !resumed:
                // Nothing written: the tool verifies every chunk before its first write, and the
                // other disks' chunks were verified before this delta began.
                await unmark(record)
                return .failure(reason: .sourceCorrupt, message: "\(disk.archive) of \(to): \(message); the copy of \(from) is kept")
            case .dataError(let message), .failed(let message):
                return await failedWrite(record, message: "\(disk.archive): \(message)")
            case .detached:
                return .detached
            }
        }
        // Whole again — unless something started or changed the copy meanwhile.
        if let touched = await DeltaEligibility(context: c, keeper: keeper).touchingTask(vmid, since: since) {
            return await failedWrite(record, message: "\(touched) while its disks were written")
        }
        if let s = try? await c.client.guestStatus(node: c.node, type: .vm, vmid: vmid), s.status != "stopped" {
            return await failedWrite(record, message: "the copy is \(s.status) after its disks were written")
        }
        let now = c.clock.now()
        let cfg: GuestConfig
        do { cfg = try await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid) } catch {
            return .failure(reason: .apiError, message: "delta written, but the copy's config cannot be read to update its marker (\(error)); it is run again")
        }
        let info = Marker.Info(volid: to, targetVmid: vmid, restoredAt: since, vmgenid: cfg.raw["vmgenid"])
        do {
            try await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest,
                                              clearLock: locks && cfg.lock == Self.rewriteLock)
            c.observer.invalidate(vmid)
        } catch {
            return .failure(reason: .apiError, message: "delta written, but the marker could not be updated (\(error)); it is run again")
        }
        if let snapshot = record.snapshot { await removeSnapshot(vmid, snapshot, at: now) }
        c.writer.persist("end of delta \(record.historyID)") { try $0.endDelta(record.historyID) }
        writer.clean(record)
        var facts = CopyFacts(vmgenid: info.vmgenid)
        facts.delta = RestoreFacts(mode: "delta", bytesWritten: bytes, chunksChanged: changed, chunksTotal: total)
        if let text = try? await c.client.backupConfig(node: c.node, volid: to) { facts.backupOnboot = BackupConfig(parsing: text, type: .vm).onboot }
        return .success(facts)
    }

    /// A write failed part-way: roll back to the snapshot (the copy of `from` again, with a new
    /// vmgenid recorded in its marker), or without one keep the record: the delta is run again.
    private func failedWrite(_ record: DeltaRecord, message: String) async -> RestoreOutcome {
        let c = context, vmid = record.targetVmid
        guard let snapshot = record.snapshot else {
            return .failure(reason: .deltaError, message: "\(message); the copy is partly written and not startable until the delta is run again (no snapshot)")
        }
        // The disks go back to `from`: no write of this record counts as done any more.
        writer.clean(record)
        do {
            // A rollback refuses a locked VM: our lock goes first (the marker still says rewriting).
            if locks, let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid), cfg.lock == Self.rewriteLock, let digest = cfg.digest {
                try await c.client.clearVMLock(node: c.node, vmid: vmid, digest: digest)
            }
            let upid = try await c.client.rollbackSnapshot(node: c.node, vmid: vmid, name: snapshot)
            c.writer.persist("rollback task \(upid)") { try $0.addOurTask(upid.description, targetVmid: vmid, at: c.clock.now()) }
            guard case .success = try await TaskFollower(context: c).follow(upid) else {
                throw ProxmoxError.transient(path: "rollback", message: "the rollback task failed")
            }
            c.observer.invalidate(vmid)
        } catch {
            // Locked again: the copy is half-written (the marker still says rewriting).
            if locks, let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid), cfg.lock == nil {
                try? await c.client.setVMLock(node: c.node, vmid: vmid, lock: Self.rewriteLock, digest: cfg.digest)
            }
            return .failure(reason: .deltaError, message: "\(message); the rollback to \(snapshot) failed too (\(error)): the copy is not startable")
        }
        await unmark(record)
        return .failure(reason: .deltaError, message: "\(message); the copy was rolled back to \(record.fromVolid)")
    }

    /// Ends a delta that wrote nothing (or was rolled back): the marker without `rewriting` (and
    /// with the vmgenid PVE shows now: a rollback gives a new one), the snapshot removed; the
    /// record ends only once the marker is clear, else the next attempt tries again.
    private func unmark(_ record: DeltaRecord) async {
        let c = context, vmid = record.targetVmid
        guard let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid) else { return }
        if var info = Marker.parse(cfg.description), info.rewriting != nil {
            info.rewriting = nil
            if let genid = cfg.raw["vmgenid"] { info.vmgenid = genid }
            do {
                try await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest,
                                                  clearLock: locks && cfg.lock == Self.rewriteLock)
                c.observer.invalidate(vmid)
            } catch { return }
            if let genid = cfg.raw["vmgenid"] {
                c.writer.persist("vmgenid of \(vmid)") { try $0.update(GuestKey(source: record.source, vmid: record.vmid), targetVmid: vmid) { $0.vmgenid = genid } }
            }
        }
        if let snapshot = record.snapshot { await removeSnapshot(vmid, snapshot, at: c.clock.now()) }
        c.writer.persist("end of delta \(record.historyID)") { try $0.endDelta(record.historyID) }
        writer.clean(record)
    }

    private func removeSnapshot(_ vmid: Int, _ name: String, at: Double) async {
        let c = context
        do {
            let upid = try await c.client.deleteSnapshot(node: c.node, vmid: vmid, name: name)
            c.writer.persist("snapshot removal \(upid)") { try $0.addOurTask(upid.description, targetVmid: vmid, at: at) }
            _ = try await TaskFollower(context: c).follow(upid)
        } catch {
            c.logger.warning("the snapshot after a delta could not be removed", metadata: ["vmid": "\(vmid)", "snapshot": "\(name)", "error": "\(error)"])
        }
    }

    /// After any good restore of a VM: keep the indexes of the backup the copy now holds (sources
    /// with delta restores), and end a delta record of that VMID that a full restore made stale.
    func afterGoodRestore(_ action: RestoreAction, facts: CopyFacts) {
        if facts.delta == nil, let open = try? context.store.openDelta(targetVmid: action.targetVmid) {
            context.writer.persist("end of stale delta \(open.historyID)") { try $0.endDelta(open.historyID) }
            writer.clean(open)
        }
        guard action.type == .vm, let source = context.config.sources.first(where: { $0.storage == action.key.source }),
              source.deltaEnabled, let ds = source.datastorePath, let datastore = try? Datastore(path: ds),
              let snap = try? SnapshotRef(parsing: action.volid.snapshot, namespace: source.datastoreNamespace) else { return }
        keeper.keep(action.key, action.volid, datastore: datastore, snapshot: snap)
    }
}
