import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// What a pass observed: the planner's ``Observation`` plus the full state-file records (views
/// show their counters and history).
struct EngineObservation: Sendable {
    var core: Observation
    var records: [GuestKey: GuestRecord]
}

extension Reconciler {
    /// Reads what PVE and the state file show now — the catalogue (listed when its cadence says
    /// so), the cluster's guests, the records, free space, and the ownership proof of every
    /// selected guest's slots. Reads only (apart from the state file's heartbeat and owed writes).
    /// Nil when no safe decision is possible (guests or records unreadable).
    func observe(now: Double) async -> EngineObservation? {
        let c = context
        var o = Observation(now: now)
        o.catalogue = await catalogue(now: now)
        do {
            // Cluster-wide: VMIDs are unique in a cluster, and a guest on another node holds its VMID too.
            o.guests = Dictionary((try await c.client.guests()).map { ($0.vmid, $0) }, uniquingKeysWith: { a, b in a.node == c.node ? a : b })
        } catch {
            c.logger.warning("guest listing failed; no restore starts this pass", metadata: ["error": "\(error)"])
            return nil
        }
        // Owed writes saved and the file writable, else nothing starts (state is written before
        // acting). Held and failed-over flags live there: unreadable, no decision.
        o.stateWritable = c.writer.readyForPass(now: now)
        let records: [GuestKey: GuestRecord]
        do { records = try c.store.guests() } catch {
            c.logger.error("cannot read the state file; no restore starts this pass", metadata: ["path": "\(c.store.path)", "error": "\(error)"])
            return nil
        }
        o.memory = records.mapValues(\.memory)
        // Drilled guests: this process's, and any open drill record (a `pbs-standby drill` beside the service).
        o.drilling = state.withLock { $0.drilling }.union(((try? c.store.openDrills()) ?? []).map(\.key))
        let targetStorages = Set(config.sources.compactMap(\.targetStorage) + config.guests.values.compactMap(\.targetStorage))
        for ts in targetStorages {
            if let st = try? await c.client.storageStatus(node: c.node, storage: ts), let avail = st.avail { o.freeBytes[ts] = avail }
        }
        let selected = selectGuests(config, catalogue: o.catalogue)
        let conflicts = slotConflicts(config, selected)
        let inFlight = inFlightKeys
        for s in selected where !inFlight.contains(s.key) && conflicts[s.key] == nil {
            o.slots[s.key] = await observeSlots(s, record: records[s.key], guests: o.guests, now: now)
        }
        return EngineObservation(core: o, records: records)
    }

    /// One listing per source when its cadence says so (each listing makes PBS read every
    /// snapshot's manifest, §13.5), else the cached one. A source that cannot be listed is absent.
    func catalogue(now: Double) async -> [String: [Int: [BackupEntry]]] {
        var out: [String: [Int: [BackupEntry]]] = [:]
        for source in config.sources {
            let cached = state.withLock { s -> [BackupEntry]? in
                let l = s.listings[source.storage] ?? newListing()
                return l.due(at: now) ? nil : l.entries
            }
            if let cached {
                out[source.storage] = Dictionary(grouping: cached, by: { $0.volid.vmid })
                continue
            }
            do {
                let entries = try await context.client.backups(node: context.node, storage: source.storage)
                out[source.storage] = Dictionary(grouping: entries, by: { $0.volid.vmid })
                state.withLock {
                    $0.listings[source.storage, default: newListing()].record(entries, at: now) { source.include.contains($0) && !source.exclude.contains($0) }
                    $0.sources[source.storage] = .init(storage: source.storage, up: true, lastRefreshAt: now, error: nil,
                                                       refreshErrors: $0.sources[source.storage]?.refreshErrors ?? 0)
                }
            } catch {
                context.logger.warning("backup listing failed", metadata: ["source": "\(source.storage)", "error": "\(error)"])
                state.withLock { s in
                    s.listings[source.storage, default: newListing()].recordFailure(at: now)
                    var src = s.sources[source.storage] ?? .init(storage: source.storage, up: false, lastRefreshAt: nil, error: nil, refreshErrors: 0)
                    src.up = false
                    src.error = error.description
                    src.refreshErrors += 1
                    s.sources[source.storage] = src
                }
            }
        }
        return out
    }

    func newListing() -> SourceListing {
        SourceListing(fastest: config.restore.pollInterval.seconds, slowest: config.restore.listingMaxInterval.seconds)
    }

    /// Proves ownership of the guest's primary slot and, with keep_previous, its second slot; the
    /// live copy is the proven one with the newer marker; the restore goes into the other.
    func observeSlots(_ s: SelectedGuest, record: GuestRecord?, guests: [Int: GuestResource], now: Double) async -> SlotObservation {
        let c = context, type = s.groups.type, primary = config.effective(source: s.source, vmid: s.vmid).targetVmid
        func prove(_ target: Int) async -> (Ownership, GuestConfig?) {
            await c.observer.ownership(of: Slot(source: s.key.source, vmid: s.vmid, type: type, target: target), guest: guests[target],
                                       node: c.node, adoptedIdentity: record?.adoptVmid == target ? record?.adoptIdentity : nil, now: now)
        }
        let p = await prove(primary)
        var live = primary, into = primary, liveMarker = p.0.marker, intoProof = p
        var tags = p.0.marker != nil ? guests[primary]?.tags ?? [] : []
        if config.restore.keepPrevious {
            let secondary = primary + config.restore.previousVmidOffset
            let q = await prove(secondary)
            tags += q.0.marker != nil ? guests[secondary]?.tags ?? [] : []
            let liveIsSecondary = q.0.marker.map { m in p.0.marker.map { m.volid.backupTime > $0.volid.backupTime } ?? true } ?? false
            if liveIsSecondary {
                (live, liveMarker, into, intoProof) = (secondary, q.0.marker, primary, p)
            } else if p.0.marker != nil {
                (into, intoProof) = (secondary, q)  // the live copy is the primary: restore into the other slot
            }
        }
        var slots = SlotObservation(live: live, restoreInto: into, liveMarker: liveMarker, intoOwnership: intoProof.0,
                                    intoProtected: intoProof.1?.protection ?? false, copyTags: tags)
        let settings = config.effective(source: s.source, vmid: s.vmid)
        if type == .vm, let ts = settings.targetStorage, let cfg = intoProof.1 {
            // The copy's disks on the target storage: a forced VM restore frees them first.
            slots.reclaimableBytes = cfg.diskBytes(onStorage: ts)
        }
        if let target = guests[into], slots.intoOwnership.isOurs {
            if target.lock == "create" { slots.staleLock = await c.observer.noTaskRuns(vmid: into, node: c.node, now: now) }
            if target.status == "running", settings.startAfterRestore {
                slots.startedByUs = await c.observer.startedBy(record?.startUPID, vmid: into, node: c.node, now: now)
            }
        }
        return slots
    }
}

extension GuestRecord {
    /// The part of the record planning needs.
    var memory: GuestMemory {
        GuestMemory(restoredVolid: restoredVolid, restoredBackupTime: restoredBackupTime, restoredBytes: restoredBytes, liveVmid: liveVmid,
                    held: held, failedOver: failedOver, nextRetryAt: nextRetryAt, failedVolid: failedVolid,
                    failedVolidAttempts: failedVolidAttempts, drillBlocked: drillBlocked)
    }
}
