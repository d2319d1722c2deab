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
/// 3. the delta recorded in the state file, the copy's marker set to `rewriting <backup>` (it
///    must not be started: `failover` waits), a PVE snapshot `pbs-standby-delta` where the storage
///    can take one;
/// 4. each disk written by `pbs-standby datastore apply` in its own process (``DeltaWriter``);
/// 5. the marker names the new backup, the snapshot goes, the record ends. A failed write rolls
///    back to the snapshot; without one the record stays and the delta is run again.
struct DeltaExecutor: RestoreExecutor {
    let context: EngineContext
    let full: PVETaskExecutor
    let writer: DeltaWriter
    let keeper: IndexKeeper
    static let snapshotName = "pbs-standby-delta"

    func restore(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        let c = context
        guard let source = c.config.sources.first(where: { $0.storage == action.key.source }) else {
            return await full.restore(action, historyID: historyID, started: started, run: run)
        }
        // A delta left open by a crash (no snapshot to roll back to): finish it first.
        if let open = try? c.store.openDelta(targetVmid: action.targetVmid), open.historyID != historyID {
            let resumed = await resume(open, action: action, run: run)
            guard case .success = resumed else { return resumed }
        }
        let verdict = await DeltaEligibility(context: c, keeper: keeper).check(action, source: source)
        switch verdict {
        case .fallback(let reason, let why):
            return await fallBack(action, historyID: historyID, started: started, run: run, reason: reason, why: why)
        case .eligible(let job):
            if let modified = ContentGuard.check(job) {
                return await fallBack(action, historyID: historyID, started: started, run: run, reason: .copyModified, why: modified)
            }
            if job.disks.count > 1 {
                let source = job.datastore.chunks
                for disk in job.disks {
                    do { try ImageWriter(source: source).verifyChunks(disk.plan) } catch {
                        return .failure(reason: .sourceCorrupt, message: "\(disk.archive) of \(job.to): \(error); the copy of \(job.from) is kept")
                    }
                }
            }
            return await write(job, action: action, historyID: historyID, started: started, run: run)
        }
    }

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

    /// Steps 3–5 for a job that passed the checks.
    private func write(_ job: DeltaJob, action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        let c = context, vmid = action.targetVmid
        let disks = job.disks.map { DeltaDisk(drive: $0.drive, archive: $0.archive, volume: $0.volume, path: $0.path) }
        let record = DeltaRecord(historyID: historyID, source: action.key.source, vmid: action.key.vmid, targetVmid: vmid,
                                 fromVolid: job.from.description, toVolid: job.to.description, disks: disks, snapshot: nil, startedAt: started)
        guard c.writer.persist("record delta \(historyID)", { try $0.beginDelta(record) }) != nil else {
            return .failure(reason: .stateError, message: "the delta cannot be recorded in the state file first; nothing was written")
        }
        // The marker says the copy is being rewritten: failover and the planner leave it alone.
        var marker = Marker.parse(job.config.description) ?? Marker.Info(volid: job.from, targetVmid: vmid)
        marker.rewriting = job.to
        do {
            try await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: job.config.description, with: marker),
                                              digest: job.config.digest)
        } catch {
            c.writer.persist("end of delta \(historyID)") { try $0.endDelta(historyID) }
            return RestoreOutcome(error: error, synchronous: false)
        }
        if job.snapshots {
            do {
                let upid = try await c.client.createSnapshot(node: c.node, vmid: vmid, name: Self.snapshotName,
                                                             description: "pbs-standby: before the delta to \(job.to)")
                c.writer.persist("snapshot task \(upid)") { try $0.addOurTask(upid.description, targetVmid: vmid, at: started) }
                guard case .success = try await TaskFollower(context: c).follow(upid) else { throw ProxmoxError.transient(path: "snapshot", message: "the snapshot task failed") }
                c.writer.persist("snapshot of delta \(historyID)") { try $0.setDeltaSnapshot(historyID, Self.snapshotName) }
            } catch {
                await unmark(vmid, historyID: historyID)
                return .failure(reason: .taskError, message: "the snapshot before the delta failed: \(error); nothing was written")
            }
        }
        var resumedRecord = record
        if job.snapshots { resumedRecord.snapshot = Self.snapshotName }
        return await runWrites(resumedRecord, datastore: job.datastore.path, namespace: job.namespace, action: action, run: run,
                               vmgenid: job.config.raw["vmgenid"])
    }

    /// Writes every disk of a recorded delta (a new one, or one left open by a crash), then ends it.
    func runWrites(_ record: DeltaRecord, datastore: String, namespace: String, action: RestoreAction, run: RestoreRun,
                   vmgenid: String?) async -> RestoreOutcome {
        let c = context, vmid = record.targetVmid, disks = record.diskList
        guard let from = Volid(parsing: record.fromVolid), let to = Volid(parsing: record.toVolid) else {
            return .failure(reason: .stateError, message: "delta record \(record.historyID) names unreadable volids")
        }
        var bytes: Int64 = 0, changed = 0, total = 0
        for (i, disk) in disks.enumerated() {
            let args = DeltaWriter.arguments(datastore: datastore, namespace: namespace, from: from.snapshot, to: to.snapshot,
                                             archive: disk.archive, target: disk.path)
            switch await writer.write(historyID: record.historyID, disk: disk, arguments: args) {
            case .written(let b, let ch, let t):
                bytes += b; changed += ch; total += t
                run.progress(Double(i + 1) / Double(max(1, disks.count)))
            case .dataError(let message) where i == 0:
                // Nothing written (the tool verifies every chunk first, and earlier disks were verified).
                await unmark(vmid, historyID: record.historyID, snapshot: record.snapshot)
                return .failure(reason: .sourceCorrupt, message: "\(disk.archive) of \(to): \(message); the copy of \(from) is kept")
            case .dataError(let message), .failed(let message):
                return await failedWrite(record, message: "\(disk.archive): \(message)")
            }
        }
        // Whole again: the marker names the new backup, the snapshot goes, the record ends.
        let now = c.clock.now()
        guard let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid) else {
            return .failure(reason: .apiError, message: "delta written, but the copy's config cannot be read to update its marker; it is run again")
        }
        let info = Marker.Info(volid: to, targetVmid: vmid, restoredAt: iso8601(record.startedAt), vmgenid: cfg.raw["vmgenid"] ?? vmgenid)
        do {
            try await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
        } catch {
            return .failure(reason: .apiError, message: "delta written, but the marker could not be updated (\(error)); it is run again")
        }
        if let snapshot = record.snapshot { await removeSnapshot(vmid, snapshot, at: now) }
        c.writer.persist("end of delta \(record.historyID)") { try $0.endDelta(record.historyID) }
        writer.clean(historyID: record.historyID)
        var facts = CopyFacts(vmgenid: info.vmgenid)
        facts.delta = RestoreFacts(mode: "delta", bytesWritten: bytes, chunksChanged: changed, chunksTotal: total)
        if let text = try? await c.client.backupConfig(node: c.node, volid: to) { facts.backupOnboot = BackupConfig(parsing: text, type: .vm).onboot }
        return .success(facts)
    }

    /// A write failed part-way: roll back to the snapshot (the copy of `from` again, with a new
    /// vmgenid re-recorded in its marker), or without one keep the record: the delta is run again.
    private func failedWrite(_ record: DeltaRecord, message: String) async -> RestoreOutcome {
        let c = context, vmid = record.targetVmid
        guard let snapshot = record.snapshot else {
            return .failure(reason: .deltaError, message: "\(message); the copy is partly written and not startable until the delta is run again (no snapshot)")
        }
        do {
            let upid = try await c.client.rollbackSnapshot(node: c.node, vmid: vmid, name: snapshot)
            c.writer.persist("rollback task \(upid)") { try $0.addOurTask(upid.description, targetVmid: vmid, at: c.clock.now()) }
            guard case .success = try await TaskFollower(context: c).follow(upid) else { throw ProxmoxError.transient(path: "rollback", message: "the rollback task failed") }
        } catch {
            return .failure(reason: .deltaError, message: "\(message); the rollback to \(snapshot) failed too (\(error)): the copy is not startable")
        }
        await unmark(vmid, historyID: record.historyID, snapshot: snapshot)
        return .failure(reason: .deltaError, message: "\(message); the copy was rolled back to \(record.fromVolid)")
    }

    /// Ends a delta that wrote nothing (or was rolled back): the marker without `rewriting` (and
    /// with the vmgenid PVE shows now: a rollback gives a new one), the snapshot removed, the record ended.
    private func unmark(_ vmid: Int, historyID: Int64, snapshot: String? = nil) async {
        let c = context
        if let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid), var info = Marker.parse(cfg.description) {
            info.rewriting = nil
            if let genid = cfg.raw["vmgenid"] { info.vmgenid = genid }
            try? await c.client.setDescription(node: c.node, vmid: vmid, description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
            if let genid = cfg.raw["vmgenid"], let record = try? c.store.openDelta(targetVmid: vmid) {
                c.writer.persist("vmgenid of \(vmid)") { try $0.update(GuestKey(source: record.source, vmid: record.vmid), targetVmid: vmid) { $0.vmgenid = genid } }
            }
        }
        if let snapshot { await removeSnapshot(vmid, snapshot, at: c.clock.now()) }
        c.writer.persist("end of delta \(historyID)") { try $0.endDelta(historyID) }
        writer.clean(historyID: historyID)
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

    /// Runs a delta left open (by a crash, or a failed write without snapshot) to its end.
    func resume(_ record: DeltaRecord, action: RestoreAction, run: RestoreRun) async -> RestoreOutcome {
        let c = context
        guard let source = c.config.sources.first(where: { $0.storage == record.source }), let ds = source.datastorePath else {
            return .failure(reason: .configError, message: "an open delta of \(record.targetVmid) needs the datastore of source \(record.source)")
        }
        c.logger.notice("running an open delta again", metadata: ["vmid": "\(record.vmid)", "to": "\(record.toVolid)"])
        let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: record.targetVmid)
        return await runWrites(record, datastore: ds, namespace: source.datastoreNamespace, action: action, run: run, vmgenid: cfg?.raw["vmgenid"])
    }

    /// After any good restore of a VM from a source with a datastore: keep the indexes of the
    /// backup the copy now holds.
    func keepIndexes(_ action: RestoreAction) {
        guard action.type == .vm, let source = context.config.sources.first(where: { $0.storage == action.key.source }),
              source.deltaEnabled, let ds = source.datastorePath, let datastore = try? Datastore(path: ds),
              let snap = try? SnapshotRef(parsing: action.volid.snapshot, namespace: source.datastoreNamespace) else { return }
        let other = (try? context.store.guest(action.key))?.liveVmid == action.targetVmid ? nil : (try? context.store.guest(action.key))?.restoredVolid.flatMap(Volid.init(parsing:))
        keeper.keep(action.key, action.volid, datastore: datastore, snapshot: snap, alsoKeep: other)
    }
}
