import Foundation
import Logging
import ProxmoxAPI
import StandbyCore

/// The first ``RestoreExecutor``: PVE's restore task. POSTs the restore (never twice), follows
/// the task to its end through the task API, then checks the marker and writes the VM's new
/// `vmgenid` into it.
struct PVETaskExecutor: RestoreExecutor {
    let context: EngineContext

    func restore(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        let c = context
        do {
            let request = Self.request(for: action, at: started)
            c.observer.invalidate(action.targetVmid)
            let progress = ProgressBox()
            let upid: UPID
            switch await post(request, progress: progress, run: run) {
            case .success(let u): upid = u
            case .failure(let error) where error.isTransient && !c.client.transport.runsTasksSynchronously:
                // No answer (timeout, reset): PVE may have forked the task all the same. Never post
                // again; find the task in the node's task list, as re-attach does.
                guard let found = await findPostedTask(action, since: started) else { throw error }
                c.logger.notice("the restore POST got no answer; its task was found in the node's task list",
                                metadata: ["vmid": "\(action.key.vmid)", "upid": "\(found)", "error": "\(error)"])
                upid = found
            case .failure(let error): throw error
            }
            let text = upid.description
            c.writer.persist("task of restore \(historyID)") { try $0.setUPID(historyID, text) }
            c.logger.info("restore task started", metadata: ["vmid": "\(action.key.vmid)", "target_vmid": "\(action.targetVmid)", "upid": "\(upid)"])
            run.upid(upid)
            // Each disk's size from the backup's config: without them the ratio of a multi-disk VM
            // would fall back when the second disk starts.
            var sizes = progress.tracker.diskSizes
            if sizes.isEmpty, action.type == .vm, let text = try? await c.client.backupConfig(node: c.node, volid: action.backup.volid) {
                sizes = BackupConfig(parsing: text, type: .vm).diskSizes
            }
            let ended = try await TaskFollower(context: c).follow(upid, diskSizes: sizes, run: run)
            return await verified(ended, action)
        } catch {
            return RestoreOutcome(error: error, synchronous: c.client.transport.runsTasksSynchronously)
        }
    }

    func reattach(_ action: RestoreAction, upid: UPID, historyID: Int64, run: RestoreRun) async -> RestoreOutcome {
        do {
            let ended = try await TaskFollower(context: context).follow(upid, diskSizes: [], run: run)
            return await verified(ended, action)
        } catch {
            return .detached
        }
    }

    /// The restore request: our marker (naming the backup and this VMID) and tag, `onboot=0` (a
    /// standby copy must not start itself when the standby node boots: same MACs and IPs as
    /// production; `failover` puts the backup's value back), the source's pool.
    static func request(for action: RestoreAction, at time: Double) -> ProxmoxClient.RestoreRequest {
        var request = ProxmoxClient.RestoreRequest(node: action.node, vmid: action.targetVmid, archive: action.backup.volid,
                                                   storage: action.settings.targetStorage)
        request.force = action.force
        request.tags = [Marker.tag]
        request.description = Marker.description(volid: action.backup.volid, targetVmid: action.targetVmid, restoredAt: time)
        request.onboot = false
        request.pool = action.pool
        return request
    }

    /// A restore is only good when the guest carries our marker naming this backup and this VMID.
    /// For VMs the new vmgenid goes into the marker: the proof then survives the loss of the
    /// state file (a clone or another restore gets another vmgenid).
    func verified(_ ended: RestoreOutcome, _ action: RestoreAction) async -> RestoreOutcome {
        guard case .success(var facts) = ended else { return ended }
        let c = context
        c.observer.invalidate(action.targetVmid)
        guard let cfg = try? await c.client.guestConfig(node: c.node, type: action.type, vmid: action.targetVmid),
              let m = Marker.parse(cfg.description), m.volid == action.backup.volid, m.targetVmid == action.targetVmid else {
            return .failure(reason: .markerMissing,
                            message: "restore finished but the guest does not carry the pbs-standby marker for \(action.backup.volid) into \(action.targetVmid)")
        }
        if action.type == .vm, let genid = cfg.raw["vmgenid"], !genid.isEmpty, genid != "0" {
            var info = m
            info.vmgenid = genid
            do {
                try await c.client.setGuestConfig(node: c.node, type: .vm, vmid: action.targetVmid,
                                                  description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
                facts.vmgenid = genid
            } catch {
                c.logger.warning("vmgenid not written into the marker; ownership falls back to the task history",
                                 metadata: ["vmid": "\(action.key.vmid)", "error": "\(error)"])
            }
        }
        if let text = try? await c.client.backupConfig(node: c.node, volid: action.backup.volid) {
            facts.backupOnboot = BackupConfig(parsing: text, type: action.type).onboot
        }
        return .success(facts)
    }

    /// The restore POST, as a Result (progress lines of pvesh go to `progress`).
    func post(_ request: ProxmoxClient.RestoreRequest, progress: ProgressBox, run: RestoreRun) async -> Result<UPID, ProxmoxError> {
        do throws(ProxmoxError) {
            return .success(try await context.client.restore(request, onOutput: { line in run.progress(progress.consume(line)) }))
        } catch {
            return .failure(error)
        }
    }

    /// The restore task a POST without answer may have started (``restoreTask(of:type:targetVmid:around:)``),
    /// asked a few times over about half a minute (PVE may be slow to answer).
    func findPostedTask(_ action: RestoreAction, since started: Double) async -> UPID? {
        for attempt in 0..<6 {
            if attempt > 0 { try? await context.clock.sleep(5) }
            if let upid = await Self.restoreTask(of: action.key, type: action.type, targetVmid: action.targetVmid, around: started,
                                                 context: context) {
                return upid
            }
        }
        return nil
    }

    /// The earliest `qmrestore`/`vzrestore` task of `targetVmid` that no earlier attempt of ours
    /// recorded, started by our token (when the transport identifies it) between 5 minutes before
    /// `time` and 5 minutes plus the API timeout after it — PVE's clock is not ours (the API may be
    /// served by another node). Used after a POST without answer and when re-attaching to a restore
    /// whose UPID was not recorded.
    static func restoreTask(of key: GuestKey, type: GuestType, targetVmid: Int, around time: Double, context c: EngineContext) async -> UPID? {
        let taskType = type == .vm ? "qmrestore" : "vzrestore"
        guard let tasks = try? await c.client.tasks(node: c.node, typeFilter: taskType, vmid: targetVmid) else { return nil }
        let known = Set(((try? c.store.history(key, limit: 50)) ?? []).compactMap(\.upid))
        let user = c.client.transport.taskUser
        let earliest = time - 300, latest = time + 300 + c.config.proxmox.timeout.seconds
        return tasks.map(\.upid).filter { u in
            let t = Double(u.startTime)
            return !known.contains(u.description) && t >= earliest && t <= latest && (user == nil || u.user == user)
        }.min { $0.startTime < $1.startTime }
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
