import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// One restore to carry out.
struct RestoreJob: Sendable {
    var key: GuestKey
    var type: GuestType
    var backup: BackupEntry
    var settings: GuestSettings
    var stopFirst: Bool
    /// PVE's `force`: only when the plan proved the target ours.
    var force: Bool
    var existingTarget: GuestResource?
    /// With keep_previous: the slot holding the live copy when the restore was planned (destroyed
    /// after the new copy is good); nil without a copy.
    var liveVmid: Int?

    /// The slot the restore goes into.
    var slot: Slot { Slot(source: key.source, vmid: key.vmid, type: type, target: settings.targetVmid) }
}

/// How a restore ended, with a bounded reason for metrics.
enum RestoreOutcome: Sendable {
    /// `TASK OK`, or `TASK WARNINGS: N` (success with warnings, e.g. raw `lxc.*` keys dropped from
    /// a CT, reference §13.1): the count is recorded and shown.
    case success(warnings: Int)
    case failure(reason: String, message: String)
    /// The service stopped while following a PVE task: the task runs on; re-attach at start.
    case detached
    /// The restore could not be followed to an end (pvesh child stopped): retry without backoff.
    case interrupted(String)
    /// `once` stopped following: PVE unreachable too long. The task runs on; re-attach later.
    case unreachable(String)
    /// Not started: the re-check right before acting found the guest held, failed over, no longer
    /// ours, locked, protected or running. Nothing was changed; the next pass plans again.
    case skipped(String)
}

extension Reconciler {
    /// Runs one restore: state written first, then the POST, then the task followed to its end,
    /// then the marker verified. The restore executor is PVE's own restore task.
    func execute(_ job: RestoreJob) async {
        let node = config.proxmox.node
        let started = clock.now()
        var meta: Logger.Metadata = ["vmid": "\(job.key.vmid)", "source": "\(job.key.source)", "volid": "\(job.backup.volid)",
                                     "target_vmid": "\(job.settings.targetVmid)"]
        let key = job.key, targetVmid = job.settings.targetVmid, volid = job.backup.volid.description, bytes = job.backup.size
        let begun = persist("record restore of \(key.vmid)", replay: false, { store in
            try store.beginRestore(key, targetVmid: targetVmid, volid: volid, bytes: bytes, at: started)
        })
        guard case .started(let historyID) = begun else {
            if case .frozen(let why) = begun {
                // A hold or failover committed after this pass planned: the transaction saw it.
                logger.info("restore not started: the guest is \(why)", metadata: meta)
                updateView(job.key) { v in v.state = why == "held" ? .held : .failedOver }
            } else {
                logger.error("restore not started: it cannot be recorded in the state file first", metadata: meta)
                events?.restoreFailed(source: job.key.source, reason: "state_error")
                updateView(job.key) { v in v.lastError = "not started: the state file cannot be written" }
            }
            finishInFlight(job.key, observedBytesPerSecond: nil)
            return
        }
        logger.info("restore starting", metadata: meta)
        let outcome: RestoreOutcome
        do {
            if job.force || job.stopFirst, let problem = await recheckBeforeActing(job) {
                outcome = .skipped(problem)
                await record(outcome, job: job, historyID: historyID, started: started, meta: meta)
                return
            }
            if job.stopFirst, let t = job.existingTarget {
                let stop = try await client.stop(node: node, type: t.type, vmid: t.vmid)
                observer.invalidate(t.vmid)
                _ = try await follow(stop, key: nil, diskSizes: [])
                if let why = try? store.frozen(key) {
                    outcome = .skipped("the guest was \(why) while its copy was being stopped")
                    await record(outcome, job: job, historyID: historyID, started: started, meta: meta)
                    return
                }
            }
            var request = ProxmoxClient.RestoreRequest(node: node, vmid: job.settings.targetVmid, archive: job.backup.volid,
                                                       storage: job.settings.targetStorage)
            request.force = job.force
            request.tags = [Marker.tag]
            request.description = Marker.description(volid: job.backup.volid, targetVmid: job.settings.targetVmid, restoredAt: started)
            // A standby copy must not start itself when the standby node boots (same MACs and IPs
            // as production); the backup's value is put back by `failover`.
            request.onboot = false
            request.pool = config.sources.first { $0.storage == job.key.source }?.pool
            observer.invalidate(job.settings.targetVmid)
            var tracker = RestoreProgress(diskSizes: [])
            let progressBox = ProgressBox()
            let posted = await postRestore(request, key: key, progress: progressBox)
            let upid: UPID
            switch posted {
            case .success(let u): upid = u
            case .failure(let error) where error.isTransient && !client.transport.runsTasksSynchronously:
                // No answer (timeout, reset): PVE may have forked the task all the same. Never
                // post again; find the task in the node's task list, as re-attach does.
                guard let found = await findPostedTask(job, since: started) else { throw error }
                logger.notice("the restore POST got no answer; its task was found in the node's task list",
                              metadata: meta.merging(["upid": "\(found)", "error": "\(error)"]) { $1 })
                upid = found
            case .failure(let error): throw error
            }
            meta["upid"] = "\(upid)"
            let upidText = upid.description
            persist("task of restore \(historyID)") { try $0.setUPID(historyID, upidText) }
            setUPID(job.key, upid)
            tracker = progressBox.tracker
            // Each disk's size from the backup's config: without them the ratio of a multi-disk
            // VM would fall back when the second disk starts.
            var sizes = tracker.diskSizes
            if sizes.isEmpty, job.type == .vm, let text = try? await client.backupConfig(node: node, volid: job.backup.volid) {
                sizes = BackupConfig(parsing: text, type: .vm).diskSizes
            }
            outcome = try await follow(upid, key: job.key, diskSizes: sizes, job: job)
        } catch is CancellationError {
            outcome = client.transport.runsTasksSynchronously ? .interrupted("service stopped during a pvesh restore") : .detached
        } catch let error as ProxmoxError {
            outcome = .failure(reason: Self.reason(of: error), message: error.description)
        } catch {
            outcome = .failure(reason: "api_error", message: "\(error)")
        }
        await record(outcome, job: job, historyID: historyID, started: started, meta: meta)
    }

    /// Follows a task to its end: status and the log from the last line seen, progress from it.
    func follow(_ upid: UPID, key: GuestKey?, diskSizes: [Int64], job: RestoreJob? = nil) async throws -> RestoreOutcome {
        var tracker = RestoreProgress(diskSizes: diskSizes)
        var seen = 0
        var shown = 0.0
        let deadline = clock.now() + config.restore.taskTimeout.seconds
        let interval = config.restore.taskPollInterval?.seconds ?? max(0.5, min(5, config.restore.pollInterval.seconds / 4))
        var transientErrors = 0
        var unreachableSince: Double?
        let giveUp = state.withLock { $0.unreachableGiveUp }
        let started = clock.now()
        let expectedSeconds = job.map { Double($0.backup.size) / currentThroughput() }
        while true {
            try Task.checkCancellation()
            do throws(ProxmoxError) {
                let status = try await client.taskStatus(upid)
                if let key {
                    let lines = try await client.taskLog(upid, start: seen, limit: 0)
                    for l in lines where l.n > seen && l.t != "no content" {
                        tracker.consume(l.t)
                        seen = l.n
                    }
                    // Never backwards (a ratio estimated without disk sizes can fall at a disk change).
                    shown = max(shown, status.running ? min(tracker.ratio, 0.999) : tracker.ratio)
                    setProgress(key, shown)
                }
                transientErrors = 0
                unreachableSince = nil
                if !status.running {
                    guard status.succeeded else {
                        let text = status.exitStatus ?? "unknown"
                        return .failure(reason: Self.taskReason(text), message: "task \(upid.type) failed: \(text)")
                    }
                    return .success(warnings: TaskStatus.warningCount(status.exitStatus))
                }
            } catch {
                guard error.isTransient else { throw error }
                transientErrors += 1  // PVE busy or briefly unreachable: keep following
                logger.debug("task status not available", metadata: ["upid": "\(upid)", "error": "\(error)"])
                let since = unreachableSince ?? clock.now()
                unreachableSince = since
                if let giveUp, clock.now() - since >= giveUp {
                    return .unreachable("PVE unreachable for \(formatDurationSeconds(clock.now() - since)) while following \(upid) (\(error)); "
                        + "the task keeps running in PVE and is followed again at the next start")
                }
            }
            if clock.now() > deadline {
                return .failure(reason: "timeout", message: "task \(upid) still running after restore.task_timeout (\(formatDurationSeconds(config.restore.taskTimeout.seconds))); left running in PVE")
            }
            // Poll every `interval` near the expected end; while much of the restore remains, sleep
            // half of it (at most one poll interval, at most a minute), so long restores cost few
            // API calls, progress is refreshed each poll interval, and the end is still noticed
            // within `interval`.
            var pause = interval
            if let expectedSeconds {
                let remaining = started + expectedSeconds - clock.now()
                pause = max(interval, min(60, config.restore.pollInterval.seconds, remaining / 2))
            }
            try await clock.sleep(pause)
        }
    }

    /// Writes the outcome to the store and the metrics, then frees the worker.
    func record(_ outcome: RestoreOutcome, job: RestoreJob, historyID: Int64, started: Double, meta: Logger.Metadata) async {
        var outcome = outcome
        let node = config.proxmox.node
        // A restore is only good when the guest carries our marker naming this backup and this
        // VMID. For VMs the new vmgenid goes into the marker: the proof then survives the loss of
        // the state file (a clone or another restore gets another vmgenid).
        var vmgenid: String?
        var backupOnboot: Bool?
        if case .success = outcome {
            observer.invalidate(job.settings.targetVmid)
            if let cfg = try? await client.guestConfig(node: node, type: job.type, vmid: job.settings.targetVmid),
               let m = Marker.parse(cfg.description), m.volid == job.backup.volid, m.targetVmid == job.settings.targetVmid {
                if job.type == .vm, let genid = cfg.raw["vmgenid"], !genid.isEmpty, genid != "0" {
                    var info = m
                    info.vmgenid = genid
                    do {
                        try await client.setGuestConfig(node: node, type: .vm, vmid: job.settings.targetVmid,
                                                        description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
                        vmgenid = genid
                    } catch {
                        logger.warning("vmgenid not written into the marker; ownership falls back to the task history",
                                       metadata: meta.merging(["error": "\(error)"]) { $1 })
                    }
                }
                // The backup's own onboot (restores pass onboot=0): `failover` puts it back.
                if let text = try? await client.backupConfig(node: node, volid: job.backup.volid) {
                    backupOnboot = BackupConfig(parsing: text, type: job.type).onboot
                }
            } else {
                outcome = .failure(reason: "marker_missing", message: "restore finished but the guest does not carry the pbs-standby marker for \(job.backup.volid) into \(job.settings.targetVmid)")
            }
        }
        let now = clock.now()
        let duration = now - started
        switch outcome {
        case .success(let warnings):
            persist("success of restore \(historyID)") { [job, vmgenid, backupOnboot] store in
                try store.finishRestore(historyID, result: "success", error: warnings > 0 ? "TASK WARNINGS: \(warnings)" : nil, at: now,
                                        warnings: warnings)
                try store.update(job.key, targetVmid: job.settings.targetVmid) { r in
                r.restoredVolid = job.backup.volid.description
                r.restoredBackupTime = job.backup.volid.backupTime
                r.restoredBytes = job.backup.size
                r.lastSuccessAt = now
                r.lastDuration = duration
                r.consecutiveFailures = 0
                r.nextRetryAt = nil
                r.lastError = nil
                r.failedVolid = nil
                r.failedVolidAttempts = 0
                r.adoptVmid = nil
                r.adoptIdentity = nil  // startUPID stays: the previous copy may be ours to stop before this one starts
                r.vmgenid = vmgenid
                if let backupOnboot { r.backupOnboot = backupOnboot }
                r.restoredBytesTotal = r.restoredBytesTotal.saturatingAdd(job.backup.size)
                r.successes += 1
                r.liveVmid = job.settings.targetVmid
                }
            }
            events?.restoreSucceeded(source: job.key.source, type: job.type, duration: duration, bytes: job.backup.size)
            if warnings > 0 {
                events?.restoreWarned(source: job.key.source, warnings: warnings)
                logger.warning("restore ended with warnings: see the task log", metadata: meta.merging(["warnings": "\(warnings)"]) { $1 })
            }
            logger.info("restore succeeded", metadata: meta.merging(["duration_seconds": "\(Int(duration))"]) { $1 })
            updateView(job.key) { v in
                v.restored = .init(volid: job.backup.volid.description, backupTime: job.backup.volid.backupTime, size: job.backup.size)
                v.targetVmid = job.settings.targetVmid
                v.state = .idle
                v.lastSuccessAt = now
                v.lastDuration = duration
                v.consecutiveFailures = 0
                v.lastError = nil
                v.restoresSucceeded += 1
                v.restoredBytesTotal = v.restoredBytesTotal.saturatingAdd(job.backup.size)
                v.pendingBackups = 0
            }
            await carryFreeze(job, meta: meta)
            var oldCopyRuns = false
            if config.restore.keepPrevious { oldCopyRuns = await removePreviousCopy(job) }
            if job.settings.startAfterRestore {
                if oldCopyRuns {
                    logger.warning("new copy not started: the previous copy runs and was not started by pbs-standby (never two running copies)", metadata: meta)
                } else {
                    await startCopy(job, meta: meta)
                }
            }
            finishInFlight(job.key, observedBytesPerSecond: duration > 0 ? Double(job.backup.size) / duration : nil)
        case .failure(let reason, var message):
            let backoff = config.restore.backoff
            // A missing privilege or a root-only part of the backup (reference §3.1, §13.1) does
            // not heal by retrying: the guest is held as if this backup had used up its
            // retries_per_backup, so the planner waits for a newer backup (or a config change).
            let permission = reason == "permission", retries = config.restore.retriesPerBackup
            if permission, message.hasSuffix("Permission check failed") {
                // PVE names no path when the right to create is missing (`raise_perm_exc()`).
                message += " (no path given by PVE: restoring needs VM.Allocate on /vms/\(job.settings.targetVmid)"
                    + " or on the source's pool, or VM.Backup on /vms/\(job.settings.targetVmid) over an existing copy)"
            }
            let r = persist("failure of restore \(historyID)") { [job, message] store in
                try store.finishRestore(historyID, result: "failure", error: message, at: now)
                return try store.update(job.key, targetVmid: job.settings.targetVmid) { r in
                r.consecutiveFailures += 1
                r.failures += 1
                r.lastError = message
                r.lastDuration = duration
                r.nextRetryAt = now + backoffDelay(failures: r.consecutiveFailures, steps: backoff)
                if r.failedVolid == job.backup.volid.description { r.failedVolidAttempts += 1 } else {
                    r.failedVolid = job.backup.volid.description
                    r.failedVolidAttempts = 1
                }
                if permission {
                    r.failedVolidAttempts = max(r.failedVolidAttempts, retries)
                    r.nextRetryAt = nil  // no backoff schedule: waits for a newer backup
                }
                }
            }
            events?.restoreFailed(source: job.key.source, reason: reason)
            logger.warning("restore failed", metadata: meta.merging(["reason": "\(reason)", "error": "\(message)",
                                                                     "attempt": "\(r?.failedVolidAttempts ?? 0)"]) { $1 }
                .merging(permission ? ["retry": "after a newer backup; grant the privilege named in the error"] : [:]) { $1 })
            updateView(job.key) { v in
                v.state = .failing
                v.lastError = message
                v.consecutiveFailures = r?.consecutiveFailures ?? v.consecutiveFailures + 1
                v.nextRetryAt = r?.nextRetryAt
                v.restoresFailed += 1
            }
            finishInFlight(job.key, observedBytesPerSecond: nil)
        case .skipped(let message):
            persist("end of restore \(historyID)") { try $0.finishRestore(historyID, result: "skipped", error: message, at: now) }
            observer.invalidate(job.settings.targetVmid)
            logger.notice("restore not started: \(message)", metadata: meta)
            finishInFlight(job.key, observedBytesPerSecond: nil)
        case .interrupted(let message):
            persist("end of restore \(historyID)") { try $0.finishRestore(historyID, result: "interrupted", error: message, at: now) }
            events?.restoreFailed(source: job.key.source, reason: "interrupted")
            logger.warning("restore interrupted", metadata: meta)
            finishInFlight(job.key, observedBytesPerSecond: nil)
        case .unreachable(let message):
            // Like detached: the history row stays `running`; the next start re-attaches. The
            // guest stays in flight — its task still runs — so no later pass restores it again.
            logger.warning("stopped following a restore", metadata: meta.merging(["reason": "\(message)"]) { $1 })
            publish()
        case .detached:
            // Leave the history row `running`: the next start re-attaches to the PVE task.
            logger.info("service stopping; the PVE task keeps running and is followed again at the next start", metadata: meta)
            finishInFlight(job.key, observedBytesPerSecond: nil)
        }
    }

    /// Re-reads the target right before a forced restore or a stop — hold/failover flags, the
    /// ownership proof (fresh config and task list), protection, lock and power state — and says
    /// why acting now would be wrong (nil: go ahead). PVE's restore takes no `digest`, so a window
    /// remains between this read and the POST: one API round trip.
    func recheckBeforeActing(_ job: RestoreJob) async -> String? {
        let node = config.proxmox.node
        if let why = try? store.frozen(job.key) { return "the guest is \(why)" }
        guard let guests = try? await client.guests() else { return "cannot list the guests to re-check the target" }
        if let why = frozenInPVE(job, guests: guests) { return "the guest is \(why) (tag in PVE)" }
        let guest = guests.first { $0.vmid == job.settings.targetVmid }
        let record = try? store.guest(job.key)
        let (own, cfg) = await observer.ownership(of: job.slot, guest: guest, node: node,
                                                  adoptedIdentity: record?.adoptVmid == job.settings.targetVmid ? record?.adoptIdentity : nil,
                                                  now: clock.now(), fresh: true)
        guard own.isOurs else {
            if case .notOurs(let why) = own { return "the target is not ours any more: \(why)" }
            return own == .free ? "the target VMID \(job.settings.targetVmid) became free: planned again without force" : "the target's ownership cannot be verified"
        }
        if cfg?.protection == true { return "the target has protection set" }
        if job.force, let problem = await targetStorageProblem(job) { return problem }
        guard let current = try? await client.guestStatus(node: node, type: job.type, vmid: job.settings.targetVmid) else {
            return "cannot read the target's status"
        }
        if let lock = current.lock { return "the target is locked (\(lock))" }
        if current.status == "running" {
            guard job.stopFirst, await observer.startedBy(record?.startUPID, vmid: job.settings.targetVmid, node: node, now: clock.now()) else {
                return "the target runs and was not started by pbs-standby"
            }
        }
        return nil
    }

    /// Why a forced restore must not start on its target storages now: PVE frees the copy's old
    /// disks before it finds a storage missing or inactive (reference §13.4), so every storage the
    /// restore writes to — the target storage, or without one the backup's own storage ids (VM
    /// `#qmdump#map` lines, CT `rootfs`/`mpN`; a CT defaults to `local`, §13.4) — must exist, be
    /// enabled and active on this node and allow the content. Nil when all is well.
    func targetStorageProblem(_ job: RestoreJob) async -> String? {
        let node = config.proxmox.node
        var ids: [String]
        if let ts = job.settings.targetStorage {
            ids = [ts]
        } else if job.type == .ct {
            ids = ["local"]
        } else {
            guard let text = try? await client.backupConfig(node: node, volid: job.backup.volid) else {
                return "cannot read the backup's config to check the storages its disks go to (no target_storage set)"
            }
            ids = BackupConfig(parsing: text, type: .vm).diskStorages
        }
        let content = job.type == .vm ? "images" : "rootdir"
        for id in Set(ids).sorted() {
            guard let st = try? await client.storageStatus(node: node, storage: id) else {
                return "storage '\(id)' does not exist on node \(node): a forced restore would free the copy's disks and then fail"
            }
            guard st.enabled, st.active else {
                return "storage '\(id)' is not \(st.enabled ? "active" : "enabled") on node \(node): a forced restore would free the copy's disks and then fail"
            }
            if !st.content.isEmpty, !st.content.contains(content) {
                return "storage '\(id)' does not allow '\(content)' content"
            }
        }
        return nil
    }

    /// The freeze a tag on either slot of the guest carries (hold/failover mirrored in PVE). Tags
    /// on a guest that is not ours freeze nothing we would touch anyway, so they are not proven here.
    func frozenInPVE(_ job: RestoreJob, guests: [GuestResource]) -> String? {
        let slots = Set([job.settings.targetVmid] + (job.liveVmid.map { [$0] } ?? []))
        return guests.filter { slots.contains($0.vmid) }.compactMap { Marker.freeze(in: $0.tags) }.first
    }

    /// keep_previous: after the new copy is good (TASK OK + marker), destroy the older copy in the
    /// other slot — only when it is proven ours now, not held or failed over, not locked or
    /// protected; a running old copy is stopped first only when pbs-standby started it.
    /// Returns whether the old copy is still running (then the new one must not be started).
    func removePreviousCopy(_ job: RestoreJob) async -> Bool {
        let node = config.proxmox.node
        guard let old = job.liveVmid, old != job.settings.targetVmid else { return false }
        let meta: Logger.Metadata = ["vmid": "\(job.key.vmid)", "target_vmid": "\(old)"]
        if let why = try? store.frozen(job.key) {
            logger.info("previous copy kept: the guest is \(why)", metadata: meta)
            return false
        }
        let slot = Slot(source: job.key.source, vmid: job.key.vmid, type: job.type, target: old)
        guard let guests = try? await client.guests(), let g = guests.first(where: { $0.vmid == old }) else { return false }
        if let why = Marker.freeze(in: g.tags) {
            logger.info("previous copy kept: it is \(why) (tag in PVE)", metadata: meta)
            return g.status == "running"
        }
        let record = try? store.guest(job.key)
        let (own, cfg) = await observer.ownership(of: slot, guest: g, node: node, adoptedIdentity: nil, now: clock.now(), fresh: true)
        guard own.marker != nil, cfg?.protection != true, g.lock == nil else {
            logger.info("previous copy kept: not provably ours, locked or protected", metadata: meta)
            return g.status == "running"
        }
        do {
            if g.status == "running" {
                guard await observer.startedBy(record?.startUPID, vmid: old, node: node, now: clock.now()) else {
                    logger.info("previous copy kept: it runs and pbs-standby did not start it", metadata: meta)
                    return true
                }
                let stop = try await client.stop(node: node, type: g.type, vmid: old)
                _ = try await follow(stop, key: nil, diskSizes: [])
            }
            observer.invalidate(old)
            let upid = try await client.destroy(node: node, type: g.type, vmid: old)
            _ = try await follow(upid, key: nil, diskSizes: [])
            logger.info("previous copy destroyed", metadata: meta.merging(["upid": "\(upid)"]) { $1 })
            return false
        } catch {
            logger.warning("previous copy not destroyed", metadata: meta.merging(["error": "\(error)"]) { $1 })
            return (try? await client.guestStatus(node: node, type: g.type, vmid: old))?.status == "running"
        }
    }

    /// A restore that finished while its guest was held or failed over (the freeze came after it
    /// began): the new copy gets the freeze's tag too, so it survives the loss of the state file
    /// whichever copy is live.
    func carryFreeze(_ job: RestoreJob, meta: Logger.Metadata) async {
        let node = config.proxmox.node
        var freeze = try? store.frozen(job.key)
        if freeze == nil, let guests = try? await client.guests() { freeze = frozenInPVE(job, guests: guests) }
        guard let freeze else { return }
        let tag = freeze == "held" ? Marker.heldTag : Marker.failedOverTag
        do {
            let cfg = try await client.guestConfig(node: node, type: job.type, vmid: job.settings.targetVmid)
            try await client.setGuestConfig(node: node, type: job.type, vmid: job.settings.targetVmid, tags: cfg.tags + [tag], digest: cfg.digest)
            observer.invalidate(job.settings.targetVmid)
        } catch {
            logger.warning("the new copy could not be tagged '\(tag)'", metadata: meta.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// start_after_restore: starts the new copy explicitly (not `start=1` in the restore, whose
    /// failed start still ends `TASK OK`, reference §13.4) and records the start's UPID — the copy
    /// is ours to stop later only while that start is the newest one of its VMID.
    func startCopy(_ job: RestoreJob, meta: Logger.Metadata) async {
        let node = config.proxmox.node
        if let why = try? store.frozen(job.key) {
            logger.info("new copy not started: the guest is \(why)", metadata: meta)
            return
        }
        if let guests = try? await client.guests(), let why = frozenInPVE(job, guests: guests) {
            logger.info("new copy not started: the guest is \(why) (tag in PVE)", metadata: meta)
            return
        }
        do {
            let upid = try await client.start(node: node, type: job.type, vmid: job.settings.targetVmid)
            let text = upid.description
            persist("start of \(job.key)") { try $0.update(job.key, targetVmid: job.settings.targetVmid) { $0.startUPID = text } }
            let outcome = try await follow(upid, key: nil, diskSizes: [])
            if case .failure(_, let message) = outcome { throw ProxmoxError.server(path: "start", status: 500, message: message) }
        } catch {
            logger.warning("the restored copy did not start", metadata: meta.merging(["error": "\(error)"]) { $1 })
            let message = "restored, but the start failed: \(error)"
            persist("start failure of \(job.key)") { try $0.update(job.key, targetVmid: job.settings.targetVmid) { $0.lastError = message } }
            updateView(job.key) { $0.lastError = message }
        }
    }

    /// At start: restores recorded as running are followed to their real end, never restarted.
    func reattach(spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        guard let running = try? store.runningRestores(), !running.isEmpty else { return }
        let node = config.proxmox.node
        for h in running {
            let key = GuestKey(source: h.source, vmid: h.vmid)
            guard let volid = Volid(parsing: h.volid) else { continue }
            var upid = h.upid.flatMap(UPID.init(parsing:))
            if upid == nil {
                // Crashed between the POST and storing the UPID: look for the task in the node's list —
                // the earliest restore task of the target VMID that no earlier attempt of ours
                // recorded, started at most 5 minutes before our row (PVE's clock is not ours: the
                // API may be served by another node, or, in tests, by a simulator on its own clock).
                let type = volid.type == .vm ? "qmrestore" : "vzrestore"
                let tasks = (try? await client.tasks(node: node, typeFilter: type, vmid: h.targetVmid)) ?? []
                let known = Set(((try? store.history(key, limit: 50)) ?? []).compactMap(\.upid))
                // Only a task our token started (when it identifies us), and only near our row: an
                // administrator's restore of that VMID while we were down is not ours to follow.
                let user = client.transport.taskUser
                upid = tasks.map(\.upid)
                    .filter { !known.contains($0.description) && Double($0.startTime) >= h.startedAt - 300
                        && Double($0.startTime) <= h.startedAt + 300 + config.proxmox.timeout.seconds && (user == nil || $0.user == user) }
                    .min { $0.startTime < $1.startTime }
                if let upid { let id = h.id!, text = upid.description; persist("task of restore \(id)") { try $0.setUPID(id, text) } }
            }
            guard let upid else {
                let id = h.id!, now = clock.now()
                persist("end of restore \(id)") { try $0.finishRestore(id, result: "interrupted", error: "no PVE task found after a restart", at: now) }
                continue
            }
            let source = config.sources.first { $0.storage == h.source }
            var settings = source.map { config.effective(source: $0, vmid: h.vmid) }
                ?? GuestSettings(targetVmid: h.targetVmid, targetStorage: nil, priority: 0, rpoTarget: config.restore.rpoTarget, startAfterRestore: false)
            // The slot the task restores into is the one recorded (with keep_previous it is not
            // always the primary).
            settings.targetVmid = h.targetVmid
            let record = try? store.guest(key)
            let job = RestoreJob(key: key, type: volid.type,
                                 backup: BackupEntry(volid: volid, ctime: volid.backupTime, size: h.bytes),
                                 settings: settings, stopFirst: false, force: false, existingTarget: nil,
                                 liveVmid: record?.liveVmid.flatMap { $0 == h.targetVmid ? nil : $0 })
            markInFlight(key, volid: volid, startedAt: h.startedAt, upid: upid)
            logger.info("re-attaching to a restore task started before the restart",
                        metadata: ["vmid": "\(h.vmid)", "upid": "\(upid)", "volid": "\(volid)"])
            spawn {
                let outcome: RestoreOutcome
                do { outcome = try await self.follow(upid, key: key, diskSizes: [], job: job) } catch { outcome = .detached }
                await self.record(outcome, job: job, historyID: h.id!, started: h.startedAt,
                                  meta: ["vmid": "\(h.vmid)", "upid": "\(upid)", "volid": "\(volid)"])
            }
        }
    }

    /// The restore POST, as a Result (progress lines of pvesh go to `progress`).
    func postRestore(_ request: ProxmoxClient.RestoreRequest, key: GuestKey, progress: ProgressBox) async -> Result<UPID, ProxmoxError> {
        do throws(ProxmoxError) {
            return .success(try await client.restore(request, onOutput: { [weak self] line in
                let ratio = progress.consume(line)
                self?.setProgress(key, ratio)
            }))
        } catch {
            return .failure(error)
        }
    }

    /// The restore task a POST without answer may have started: a `qmrestore`/`vzrestore` of the
    /// target VMID by our token (when it identifies us), started around our POST and recorded by no
    /// earlier attempt. Asked a few times over about half a minute (PVE may be slow to answer).
    func findPostedTask(_ job: RestoreJob, since started: Double) async -> UPID? {
        let node = config.proxmox.node
        let type = job.type == .vm ? "qmrestore" : "vzrestore"
        let user = client.transport.taskUser
        let known = Set(((try? store.history(job.key, limit: 50)) ?? []).compactMap(\.upid))
        for attempt in 0..<6 {
            if attempt > 0 { try? await clock.sleep(5) }
            guard let tasks = try? await client.tasks(node: node, typeFilter: type, vmid: job.settings.targetVmid) else { continue }
            let candidates = tasks.map(\.upid).filter {
                !known.contains($0.description) && (user == nil || $0.user == user)
                    && Double($0.startTime) >= started - 300 && Double($0.startTime) <= started + 300 + config.proxmox.timeout.seconds
            }
            if let first = candidates.min(by: { $0.startTime < $1.startTime }) { return first }
        }
        return nil
    }

    /// A bounded failure reason from a PVE error. A 403 `Permission check failed …` is
    /// `permission` (the token lacks a privilege, reference §3.1, §13.1): not transient, and held
    /// until a newer backup (see ``record(_:job:historyID:started:meta:)``).
    static func reason(of error: ProxmoxError) -> String {
        if case .auth(_, 403, let message) = error, message.contains("Permission check failed") { return "permission" }
        switch error {
        case .refused(_, let r, _):
            switch r {
            case .locked: return "refused_locked"
            case .running: return "refused_running"
            case .exists: return "refused_not_owned"
            case .protected: return "refused_protected"
            }
        case .transient, .server, .badRequest, .decoding: return "api_error"
        case .auth: return "auth_error"
        case .configuration: return "config_error"
        }
    }

    /// A bounded failure reason from a task's exit status. `permission`: the worker's checks on
    /// the backed-up config (§13.1) — `Permission check failed (PATH, PRIV)` (a bridge's
    /// `SDN.Use`, `Sys.Modify` for a privileged CT, `Mapping.Use`) or a root-only part (bind or
    /// device mount point, host PCI/USB device).
    static func taskReason(_ exit: String) -> String {
        let t = exit.lowercased()
        if t.contains("permission check failed") || t.contains("only possible for root") || t.contains("only root can") {
            return "permission"
        }
        if t.contains("free space") || t.contains("no space") { return "insufficient_space" }
        if t.contains("vm is running") || t.contains("is running") { return "refused_running" }
        if t.contains("is locked") { return "refused_locked" }
        if t.contains("protection mode") { return "refused_protected" }
        return "task_error"
    }
}

/// Collects pvesh's streamed log lines into a progress ratio (written from the reader thread).
final class ProgressBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _tracker = RestoreProgress(diskSizes: [])
    func consume(_ line: String) -> Double {
        lock.lock(); defer { lock.unlock() }
        _tracker.consume(line)
        return _tracker.ratio
    }
    var tracker: RestoreProgress { lock.lock(); defer { lock.unlock() }; return _tracker }
}

func formatDurationSeconds(_ s: Double) -> String {
    s >= 3600 ? "\(Int(s / 3600))h" : s >= 60 ? "\(Int(s / 60))m" : "\(Int(s))s"
}

extension Int64 {
    /// Addition that stops at `Int64.max` instead of trapping (byte totals from PVE's sizes).
    func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
