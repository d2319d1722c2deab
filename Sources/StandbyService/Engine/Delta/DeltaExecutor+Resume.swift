import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// Open deltas: a delta recorded in the state file and not ended (the service stopped or was
/// killed while its disks were written, or a write failed without a snapshot) — run again,
/// ended when stale, or given up for a full restore.
extension DeltaExecutor {
    /// Whether a delta record still describes the copy (true also when PVE cannot be read: it is
    /// then tried later); a stale one is ended here, nothing written.
    func stillOpen(_ record: DeltaRecord) async -> Bool {
        let c = context
        guard let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: record.targetVmid) else { return true }
        return staleness(record, cfg) == nil
    }

    /// Why a record no longer describes the copy (it is then ended), nil while it does.
    private func staleness(_ record: DeltaRecord, _ cfg: GuestConfig) -> String? {
        let c = context, vmid = record.targetVmid
        let marker = Marker.parse(cfg.description)
        let why: String
        switch (marker?.volid.description, marker?.rewriting?.description) {
        case (record.fromVolid, record.toVolid?): return nil  // the delta as recorded: run it again
        case (record.fromVolid, nil): why = "the marker was not yet set when the service stopped: nothing was written"
        case (record.toVolid?, nil) where marker?.targetVmid == vmid: why = "written and marked; the record's end was lost"
        default: why = "the copy no longer holds what the record names"
        }
        c.logger.notice("a delta record ended without writing", metadata: ["vmid": "\(vmid)", "record_to": "\(record.toVolid)", "why": "\(why)"])
        c.writer.persist("end of delta \(record.historyID)") { try $0.endDelta(record.historyID) }
        writer.clean(record)
        return why
    }

    /// What running an open delta again came to.
    enum Resumed: Sendable {
        /// The record no longer describes the copy: ended, nothing written.
        case stale
        /// Run (or tried): how it ended.
        case done(RestoreOutcome)
        /// The copy is not whole and cannot be finished by a delta (started, touched or
        /// locked by someone else meanwhile): only a full restore makes it whole.
        case cannotResume(String)
    }

    /// Runs a delta left open (a crash, a failed write without snapshot) to its end: the copy
    /// still marked `<from> … rewriting <to>`, stopped, untouched since the record began; our
    /// lock set again (pvesh) and an inactive LVM-thin volume activated before the writes.
    func resume(_ record: DeltaRecord, action: RestoreAction, run: RestoreRun) async -> Resumed {
        let c = context, vmid = record.targetVmid
        guard let source = c.config.sources.first(where: { $0.storage == record.source }), let ds = source.datastorePath else {
            return .done(.failure(reason: .configError, message: "an open delta of \(vmid) needs the datastore of source \(record.source)"))
        }
        let cfg: GuestConfig
        do { cfg = try await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid) } catch {
            return .done(.failure(reason: .apiError, message: "an open delta of \(vmid): the copy's config cannot be read (\(error))"))
        }
        if staleness(record, cfg) != nil { return .stale }
        if let why = await mustNotChange(action, ownLock: true) { return .cannotResume(why) }
        if let touched = await DeltaEligibility(context: c, keeper: keeper).touchingTask(vmid, since: iso8601(record.startedAt)) {
            return .cannotResume(touched)
        }
        if locks && cfg.lock == nil {
            do { try await c.client.setVMLock(node: c.node, vmid: vmid, lock: Self.rewriteLock, digest: cfg.digest) } catch {
                return .done(.failure(reason: .apiError, message: "the copy could not be locked before the open delta runs again: \(error)"))
            }
        }
        let storages = (try? await c.client.storages(node: c.node)) ?? []
        let activator = VolumeActivator(lvchange: c.config.restore.lvchangePath)
        for disk in record.diskList {
            let type = storages.first { $0.storage == String(disk.volume.prefix { $0 != ":" }) }?.type ?? ""
            if let problem = activator.activate(path: disk.path, storageType: type) {
                return .done(.failure(reason: .deltaError, message: "the open delta into \(record.toVolid): \(disk.volume): \(problem)"))
            }
        }
        c.logger.notice("running an open delta again", metadata: ["vmid": "\(record.vmid)", "to": "\(record.toVolid)"])
        return .done(await runWrites(record, datastore: ds, namespace: source.datastoreNamespace, run: run, resumed: true))
    }

    /// Gives up an open delta whose copy a delta cannot finish: the record ends and our lock goes
    /// (a full restore refuses a locked VM); the marker keeps `rewriting` until PVE's restore
    /// replaces the copy.
    func abandon(_ record: DeltaRecord) async {
        let c = context, vmid = record.targetVmid
        if locks, let cfg = try? await c.client.guestConfig(node: c.node, type: .vm, vmid: vmid), cfg.lock == Self.rewriteLock, let digest = cfg.digest {
            try? await c.client.clearVMLock(node: c.node, vmid: vmid, digest: digest)
            c.observer.invalidate(vmid)
        }
        c.writer.persist("end of delta \(record.historyID)") { try $0.endDelta(record.historyID) }
        writer.clean(record)
    }
}
