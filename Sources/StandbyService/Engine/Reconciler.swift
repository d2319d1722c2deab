import BuildInfo
import Foundation
import Logging
import ProxmoxAPI
import ServiceLifecycle
import StandbyCore
import StandbyStore
import Synchronization

/// The reconciler: each pass reads the catalogue (one listing per source), the guests on the
/// standby node and the state store, plans with the pure safety rules, and hands restores to
/// workers (at most one per guest) that follow the PVE task to its end. Runs as a `Service`.
public final class Reconciler: Service, Sendable {
    public let config: StandbyConfig
    let client: ProxmoxClient
    let store: StateStore
    let clock: any EngineClock
    let logger: Logger
    let events: (any RestoreEventSink)?
    /// Orders restore candidates; swappable so the RPO benchmark can compare policies.
    let schedulingPolicy: @Sendable ([RestoreCandidate]) -> [RestoreCandidate]
    let state: Mutex<EngineState>
    /// Proves who owns the guests at our target VMIDs (cached per VMID).
    let observer: SlotObserver
    /// The latest published snapshot.
    public let published: Mutex<StatusSnapshot>
    /// Position of each guest in the published snapshot.
    private let publishedIndex = Mutex<[GuestKey: Int]>([:])

    struct InFlight: Sendable {
        var volid: Volid
        var startedAt: Double
        var upid: UPID?
        var progress: Double = 0
    }

    struct EngineState: Sendable {
        var inFlight: [GuestKey: InFlight] = [:]
        var sources: [String: StatusSnapshot.Source] = [:]
        var queue: [GuestKey] = []
        var lastViews: [GuestKey: StatusSnapshot.Guest] = [:]
        /// Rows of superseded backup groups (the other type of a VMID), shown after their guest.
        var supersededViews: [GuestKey: StatusSnapshot.Guest] = [:]
        /// The record each view's history was loaded for: history is re-read only when it changed.
        var historyFor: [GuestKey: GuestRecord] = [:]
        /// Bytes per second observed in successful restores (exponentially smoothed).
        var throughput: Double = 300 * 1_048_576
        var workerFinished = false
        /// Counts finished restores; `lastFinish[key]` is the count when the key's last restore
        /// finished. A pass must not start a restore for a key that finished after it read the
        /// state: its records would not show that restore yet.
        var finishCount = 0
        var lastFinish: [GuestKey: Int] = [:]
        var stateHealth = StateHealth()
        /// `once`: stop following a task after PVE was unreachable this long (seconds); the task
        /// runs on and is re-attached by the next start. nil (`run`): follow until task_timeout.
        var unreachableGiveUp: Double?
        /// `once`: guests a restore was started for in this run. Each is restored at most once,
        /// so a `once` ends even when new backups keep appearing while it works. nil in `run`.
        var startedThisOnce: Set<GuestKey>?
        /// The last listing of each source and when to list it again.
        var listings: [String: SourceListing] = [:]
    }

    func newListing() -> SourceListing {
        SourceListing(fastest: config.restore.pollInterval.seconds, slowest: config.restore.listingMaxInterval.seconds)
    }

    /// Creates the reconciler.
    public init(config: StandbyConfig, client: ProxmoxClient, store: StateStore, clock: any EngineClock,
                logger: Logger = Logger(label: "pbs-standby.engine"), events: (any RestoreEventSink)? = nil,
                schedulingPolicy: @escaping @Sendable ([RestoreCandidate]) -> [RestoreCandidate] = SchedulingPolicy.order) {
        self.schedulingPolicy = schedulingPolicy
        self.config = config
        self.client = client
        self.store = store
        self.clock = clock
        self.logger = logger
        self.events = events
        self.state = Mutex(EngineState())
        self.observer = SlotObserver(client: client, store: store, adoptUnmarked: config.restore.adopt, node: config.proxmox.node,
                                     callerIsRoot: config.proxmox.transport == .pvesh)
        self.published = Mutex(.initial(version: pbsStandbyVersion, startedAt: clock.now(), workers: config.restore.workers))
    }

    /// The latest snapshot.
    public var snapshot: StatusSnapshot { published.withLock { $0 } }

    /// Keys of restores running now.
    public var inFlightKeys: Set<GuestKey> { state.withLock { Set($0.inFlight.keys) } }

    // MARK: - Service

    /// Re-attaches to restores recorded as running, then passes every `poll_interval` (sooner
    /// when a worker finished) until graceful shutdown. PVE tasks keep running on shutdown.
    public func run() async throws {
        // A discarding group: finished workers are freed at once (a plain TaskGroup keeps every
        // finished child until it is awaited — weeks of restores would pile up).
        await withDiscardingTaskGroup { group in
            await reattach { group.addTask(operation: $0) }
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await pass { group.addTask(operation: $0) }
                let interval = config.restore.pollInterval.seconds
                var waited = 0.0
                let step = min(interval, 1)
                while waited < interval, !Task.isCancelled, !Task.isShuttingDownGracefully {
                    do { try await clock.sleep(step) } catch { break }
                    waited += step
                    if takeWorkerFinished() { break }
                }
            }
            group.cancelAll()
        }
    }

    /// One pass and then waits for every restore it started (the `once` command).
    /// Returns whether every restore started succeeded and the state file took every write.
    ///
    /// `giveUpAfterUnreachable`: when PVE cannot be reached for this long while a task is followed,
    /// stop waiting for it (it runs on in PVE; the history row stays `running` and the next
    /// `once` or `run` re-attaches to it). Without it `once` could wait up to `task_timeout`.
    public func runOnce(giveUpAfterUnreachable: Double? = nil) async -> Bool {
        state.withLock {
            $0.unreachableGiveUp = giveUpAfterUnreachable
            $0.startedThisOnce = []
        }
        defer { state.withLock { $0.startedThisOnce = nil } }
        let before = Set(((try? store.allHistory()) ?? []).compactMap(\.id))
        await withTaskGroup(of: Void.self) { group in
            await reattach { group.addTask(operation: $0) }
            await pass { group.addTask(operation: $0) }
            // Guests queued behind busy workers get their turn as workers free up.
            while await group.next() != nil {
                if state.withLock({ !$0.queue.isEmpty }) { await pass { group.addTask(operation: $0) } }
            }
        }
        publish()
        let new = ((try? store.allHistory()) ?? []).filter { !before.contains($0.id ?? -1) }
        return new.allSatisfy { $0.result == "success" } && snapshot.service.stateWritable
    }

    // MARK: - Pass

    /// Reads, plans, starts restores through `spawn` (a task group's addTask), publishes.
    public func pass(spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        let now = clock.now()
        let node = config.proxmox.node
        // 1. Catalogue: one listing per source when its cadence says so (each listing makes PBS
        // read every snapshot's manifest), else the cached one.
        var catalogue: [String: [Int: [BackupEntry]]] = [:]
        for source in config.sources {
            let cached = state.withLock { s -> [BackupEntry]? in
                let l = s.listings[source.storage] ?? newListing()
                return l.due(at: now) ? nil : l.entries
            }
            if let cached {
                catalogue[source.storage] = Dictionary(grouping: cached, by: { $0.volid.vmid })
                continue
            }
            do {
                let entries = try await client.backups(node: node, storage: source.storage)
                catalogue[source.storage] = Dictionary(grouping: entries, by: { $0.volid.vmid })
                state.withLock {
                    $0.listings[source.storage, default: newListing()].record(entries, at: now) { source.include.contains($0) && !source.exclude.contains($0) }
                    $0.sources[source.storage] = .init(storage: source.storage, up: true, lastRefreshAt: now, error: nil,
                                                       refreshErrors: $0.sources[source.storage]?.refreshErrors ?? 0)
                }
            } catch {
                logger.warning("backup listing failed", metadata: ["source": "\(source.storage)", "error": "\(error)"])
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
        // 2. Guests on the standby node. Without them no safe decision is possible.
        let guests: [Int: GuestResource]
        do {
            // Cluster-wide: VMIDs are unique in a cluster, and a guest on another node holds its VMID too.
            guests = Dictionary((try await client.guests()).map { ($0.vmid, $0) }, uniquingKeysWith: { a, b in a.node == node ? a : b })
        } catch {
            logger.warning("guest listing failed; no restore starts this pass", metadata: ["error": "\(error)"])
            publish(loopAt: now)
            return
        }
        // 2b. The state: owed writes saved and the file writable, else nothing starts (state is
        // written before acting). Held and failed-over flags live there: unreadable, no decision.
        let stateOK = stateReadyForPass(now: now)
        let readEpoch = state.withLock { $0.finishCount }
        let records: [GuestKey: GuestRecord]
        do { records = try store.guests() } catch {
            logger.error("cannot read the state file; no restore starts this pass", metadata: ["path": "\(store.path)", "error": "\(error)"])
            publish(loopAt: now)
            return
        }
        // 3. Free space of target storages (unknown = not checked).
        var free: [String: Int64] = [:]
        let targetStorages = Set(config.sources.flatMap { src in [src.targetStorage].compactMap { $0 } } + config.guests.values.compactMap(\.targetStorage))
        for ts in targetStorages {
            if let st = try? await client.storageStatus(node: node, storage: ts), let avail = st.avail { free[ts] = avail }
        }
        // 4. The slot map of this pass: every primary and keep_previous slot of every selected
        // guest, from the listing. A VMID claimed twice blocks every claimant.
        var selected: [(source: StandbyConfig.Source, vmid: Int, groups: BackupGroups)] = []
        for source in config.sources {
            guard let byVmid = catalogue[source.storage] else { continue }
            for (vmid, entries) in byVmid.sorted(by: { $0.key < $1.key }) where source.include.contains(vmid) && !source.exclude.contains(vmid) {
                selected.append((source, vmid, BackupGroups(entries)))
            }
        }
        let conflicts = SlotMap.conflicts(selected.flatMap { s -> [SlotMap.Claim] in
            let key = GuestKey(source: s.source.storage, vmid: s.vmid), primary = s.vmid + s.source.vmidOffset
            var claims = [SlotMap.Claim(key: key, target: primary, secondary: false)]
            if config.restore.keepPrevious { claims.append(.init(key: key, target: primary + config.restore.previousVmidOffset, secondary: true)) }
            return claims
        })
        // 5. Plan every selected guest.
        let rules = PlanRules(adopt: config.restore.adopt, retriesPerBackup: config.restore.retriesPerBackup, spaceMargin: config.restore.spaceMargin)
        let (inFlight, throughput) = state.withLock { ($0.inFlight, $0.throughput) }
        var views: [GuestKey: StatusSnapshot.Guest] = [:]
        var superseded: [GuestKey: StatusSnapshot.Guest] = [:]
        var historyFor: [GuestKey: GuestRecord] = [:]
        let previous = state.withLock { (views: $0.lastViews, historyFor: $0.historyFor) }
        var candidates: [RestoreCandidate] = []
        var restoreOf: [GuestKey: RestoreJob] = [:]
        for source in config.sources where catalogue[source.storage] == nil {
            // Source down: keep what we showed before for its guests.
            for (k, v) in previous.views where k.source == source.storage { views[k] = v }
        }
        for (source, vmid, groups) in selected {
            let key = GuestKey(source: source.storage, vmid: vmid)
            let entries = groups.entries
            var settings = config.effective(source: source, vmid: vmid)
            let type = groups.type
            var input = GuestInput(source: source.storage, vmid: vmid, type: type, settings: settings)
            input.latest = newestEligible(entries, now: now, settle: config.restore.settle.seconds, requireVerified: config.restore.requireVerified)
            let record = records[key]
            input.inFlight = inFlight[key] != nil
            if let others = conflicts[key] {
                input.slotConflict = others.map { "VMID \($0.target) is also the \($0.secondary ? "keep_previous slot" : "target") of \($0.key)" }
                    .joined(separator: "; ")
            }
            // Ownership of each slot, proven from PVE; the live copy is the proven one with the newer marker.
            let observed = input.inFlight || input.slotConflict != nil
                ? nil : await observeSlots(key: key, type: type, primary: settings.targetVmid, record: record, guests: guests, now: now)
            let old = previous.views[key]
            let live = observed?.live ?? old?.targetVmid ?? settings.targetVmid
            let restoreInto = observed?.restoreInto ?? settings.targetVmid
            var restored: StatusSnapshot.Backup? = observed.map { o in
                o.liveMarker.map { m in .init(volid: m.volid.description, backupTime: m.volid.backupTime,
                                               size: record?.restoredVolid == m.volid.description ? record?.restoredBytes : nil) }
            } ?? old?.restored
            if let o = observed, let m = o.liveMarker, record?.restoredVolid != m.volid.description || record?.liveVmid != o.live {
                // The copy PVE shows is the truth (e.g. the state file was lost, or a task that
                // ran past task_timeout succeeded after all): record it.
                persist("copy of \(key) seen in PVE", replay: false) { try $0.update(key, targetVmid: o.live) { r in
                    r.restoredVolid = m.volid.description
                    r.restoredBackupTime = m.volid.backupTime
                    r.liveVmid = o.live
                } }
            }
            if observed != nil, observed?.liveMarker == nil { restored = nil }
            settings.targetVmid = restoreInto
            input.settings = settings
            let target = guests[restoreInto]
            input.target = target
            input.ownership = observed?.intoOwnership ?? .unverified
            input.targetProtected = observed?.intoConfig?.protection ?? false
            // Holds and failovers: the state file, or the tag on any proven copy of the guest (a
            // hold may sit on the older copy while the newer one finished after it).
            let copyTags = observed?.copyTags ?? []
            input.held = (record?.held ?? false) || copyTags.contains(Marker.heldTag)
            input.failedOver = (record?.failedOver ?? false) || copyTags.contains(Marker.failedOverTag)
            input.nextRetryAt = record?.nextRetryAt
            if let latest = input.latest, record?.failedVolid == latest.volid.description {
                input.failedAttemptsOfLatest = record?.failedVolidAttempts ?? 0
            }
            if let ts = settings.targetStorage { input.targetFreeBytes = free[ts] }
            var staleLockCleared = false
            if let target, target.lock == "create", input.ownership.isOurs {
                input.staleLock = await observer.noTaskRuns(vmid: target.vmid, node: node, now: now)
                if input.staleLock {
                    staleLockCleared = await clearStaleLock(Slot(source: key.source, vmid: vmid, type: type, target: restoreInto), guest: target,
                                                            adoptedIdentity: record?.adoptVmid == restoreInto ? record?.adoptIdentity : nil, now: now)
                }
            }
            if let target, target.status == "running", settings.startAfterRestore, input.ownership.isOurs {
                input.startedByUs = await observer.startedBy(record?.startUPID, vmid: target.vmid, node: node, now: now)
            }
            input.restoredBackupTime = restored?.backupTime
            var decision = plan(input, now: now, rules: rules)
            if decision == .verify { decision = .waiting(until: now) }  // the target's config could not be read: do not act blindly
            if case .restore(let backup, let stopFirst, let force) = decision {
                restoreOf[key] = RestoreJob(key: key, type: type, backup: backup, settings: settings, stopFirst: stopFirst, force: force,
                                            existingTarget: target, liveVmid: observed?.liveMarker != nil ? live : nil)
                let gain = Double(backup.volid.backupTime - (restored?.backupTime ?? 0))
                candidates.append(RestoreCandidate(key: key, priority: settings.priority, hasCopy: restored != nil,
                                                   gainSeconds: gain, expectedSeconds: Double(max(0, backup.size)) / throughput,
                                                   backupTime: backup.volid.backupTime))
            }
            var blocked: BlockReason?
            var detail: String?
            if case .blocked(let r) = decision {
                blocked = r
                switch r {
                case .slotConflict: detail = input.slotConflict
                case .staleLock where staleLockCleared:
                    detail = "VMID \(restoreInto) had a stale 'lock: create' (our failed restore's remains, no task running): "
                        + "cleared through pvesh as root@pam; the next pass restores over the remains"
                case .staleLock:
                    detail = "VMID \(restoreInto) has a stale 'lock: create' and no task runs for it (node crash or killed worker): "
                        + "check the guest, then `\(type == .vm ? "qm" : "pct") unlock \(restoreInto)` as root"
                case .notOwned: if case .notOurs(let why) = input.ownership { detail = why }
                default: break
                }
            }
            let newer = entries.filter { $0.isComplete && $0.volid.backupTime > (restored?.backupTime ?? 0) }.count
            let history: [StatusSnapshot.LastRestore]
            if let record, let cached = previous.historyFor[key], cached == record, let old = previous.views[key]?.history {
                history = old
            } else {
                history = ((try? store.history(key, limit: 10)) ?? []).map {
                    StatusSnapshot.LastRestore(startedAt: $0.startedAt, finishedAt: $0.finishedAt, duration: $0.duration,
                                               result: $0.result, error: $0.error, upid: $0.upid, volid: $0.volid, warnings: $0.warnings)
                }
            }
            if let record { historyFor[key] = record }
            let liveGuest = observed?.liveMarker != nil ? guests[live] : nil
            views[key] = StatusSnapshot.Guest(
                key: key, type: type, name: liveGuest?.name ?? old?.name ?? "guest \(vmid)",
                targetVmid: restored != nil ? live : restoreInto, targetNode: node, state: decision.state, blockedReason: blocked,
                blockedDetail: detail,
                restored: restored, latest: input.latest.map { .init(volid: $0.volid.description, backupTime: $0.volid.backupTime, size: $0.size) },
                pendingBackups: newer, rpoTarget: settings.rpoTarget.seconds, priority: settings.priority,
                progress: inFlight[key]?.progress, consecutiveFailures: record?.consecutiveFailures ?? 0,
                lastAttemptAt: record?.lastAttemptAt, lastSuccessAt: record?.lastSuccessAt, lastDuration: record?.lastDuration,
                nextRetryAt: record?.nextRetryAt, lastError: record?.lastError,
                restoresSucceeded: record?.successes ?? 0, restoresFailed: record?.failures ?? 0,
                restoredBytesTotal: record?.restoredBytesTotal ?? 0, history: history)
            if let newest = groups.superseded.max(by: { $0.volid.backupTime < $1.volid.backupTime }) {
                superseded[key] = StatusSnapshot.Guest(
                    key: key, type: newest.volid.type, name: "guest \(vmid) (superseded \(newest.volid.type.rawValue) group)",
                    targetVmid: settings.targetVmid, targetNode: node, state: .superseded, blockedReason: nil, blockedDetail: nil,
                    restored: nil, latest: .init(volid: newest.volid.description, backupTime: newest.volid.backupTime, size: newest.size),
                    pendingBackups: 0, rpoTarget: settings.rpoTarget.seconds, priority: settings.priority, progress: nil,
                    consecutiveFailures: 0, lastAttemptAt: nil, lastSuccessAt: nil, lastDuration: nil, nextRetryAt: nil, lastError: nil,
                    restoresSucceeded: 0, restoresFailed: 0, restoredBytesTotal: 0, history: [])
            }
        }
        // 6. Schedule: policy order, global and per-source worker limits.
        let ordered = schedulingPolicy(candidates)
        var running = inFlight.count
        var perSource = Dictionary(grouping: inFlight.keys, by: \.source).mapValues(\.count)
        var queue: [GuestKey] = []
        let startedThisOnce = state.withLock { $0.startedThisOnce }
        for c in ordered where startedThisOnce?.contains(c.key) != true {
            guard stateOK else {
                queue.append(c.key)
                continue
            }
            let source = config.sources.first { $0.storage == c.key.source }!
            let sourceLimit = source.workers ?? Int.max
            guard running < config.restore.workers, perSource[c.key.source, default: 0] < sourceLimit else {
                queue.append(c.key)
                continue
            }
            let job = restoreOf[c.key]!
            let backup = job.backup
            // Claim the guest: not in flight, and no restore of it finished since the records
            // were read (else this plan may repeat a restore that just succeeded).
            let claimed = state.withLock { s -> Bool in
                guard s.inFlight[c.key] == nil, s.lastFinish[c.key, default: 0] <= readEpoch else { return false }
                s.inFlight[c.key] = InFlight(volid: backup.volid, startedAt: now)
                s.startedThisOnce?.insert(c.key)
                return true
            }
            guard claimed else { continue }
            running += 1
            perSource[c.key.source, default: 0] += 1
            views[c.key]?.state = .restoring
            views[c.key]?.progress = 0
            spawn { await self.execute(job) }
        }
        state.withLock { s in
            s.queue = queue
            // A restore that ended while this pass was reading already updated its view; keep
            // that (restored copy, idle/failing) over the `restoring` this pass saw.
            for (key, view) in views where view.state == .restoring && s.inFlight[key] == nil {
                if let finished = s.lastViews[key] { views[key] = finished }
            }
            s.lastViews = views
            s.supersededViews = superseded
            s.historyFor = historyFor
        }
        publish(loopAt: now)
    }

    /// What PVE shows of a guest's slots this pass.
    struct ObservedSlots {
        /// The slot holding the live copy (the primary while there is none).
        var live: Int
        /// The slot the next restore goes into (with keep_previous: the other one, so the live
        /// copy is never the one being overwritten).
        var restoreInto: Int
        /// The marker of the live copy, when a copy is proven ours.
        var liveMarker: Marker.Info?
        var intoOwnership: Ownership
        var intoConfig: GuestConfig?
        /// The tags of every slot proven to hold a copy of ours (hold/failover flags live there too).
        var copyTags: [String] = []
    }

    /// Proves ownership of the guest's primary slot and, with keep_previous, its second slot;
    /// the live copy is the proven one with the newer marker.
    func observeSlots(key: GuestKey, type: GuestType, primary: Int, record: GuestRecord?, guests: [Int: GuestResource],
                      now: Double) async -> ObservedSlots {
        let node = config.proxmox.node
        func prove(_ target: Int) async -> (Ownership, GuestConfig?) {
            await observer.ownership(of: Slot(source: key.source, vmid: key.vmid, type: type, target: target), guest: guests[target],
                                     node: node, adoptedIdentity: record?.adoptVmid == target ? record?.adoptIdentity : nil, now: now)
        }
        let p = await prove(primary)
        guard config.restore.keepPrevious else {
            return ObservedSlots(live: primary, restoreInto: primary, liveMarker: p.0.marker, intoOwnership: p.0, intoConfig: p.1,
                                 copyTags: p.0.marker != nil ? guests[primary]?.tags ?? [] : [])
        }
        let secondary = primary + config.restore.previousVmidOffset
        let q = await prove(secondary)
        let tags = (p.0.marker != nil ? guests[primary]?.tags ?? [] : []) + (q.0.marker != nil ? guests[secondary]?.tags ?? [] : [])
        let pm = p.0.marker, qm = q.0.marker
        let liveIsSecondary = qm.map { m in pm.map { m.volid.backupTime > $0.volid.backupTime } ?? true } ?? false
        let live = liveIsSecondary ? secondary : primary
        let liveMarker = liveIsSecondary ? qm : pm
        guard liveMarker != nil else {
            // No copy yet: restore into the primary slot.
            return ObservedSlots(live: primary, restoreInto: primary, liveMarker: nil, intoOwnership: p.0, intoConfig: p.1, copyTags: tags)
        }
        let into = liveIsSecondary ? p : q
        return ObservedSlots(live: live, restoreInto: liveIsSecondary ? primary : secondary, liveMarker: liveMarker,
                             intoOwnership: into.0, intoConfig: into.1, copyTags: tags)
    }

    // MARK: - Publishing

    /// Builds and publishes the snapshot from the engine state.
    func publish(loopAt: Double? = nil) {
        let s = state.withLock { $0 }
        let queued = Set(s.queue)
        var guests: [StatusSnapshot.Guest] = []
        guests.reserveCapacity(s.lastViews.count)
        for key in s.lastViews.keys.sorted() {
            var g = s.lastViews[key]!
            if let f = s.inFlight[key] {
                g.state = .restoring
                g.progress = f.progress
            } else if g.state == .restoring {
                g.progress = nil
            }
            if queued.contains(key) { g.state = .queued }
            guests.append(g)
            if let sup = s.supersededViews[key] { guests.append(sup) }
        }
        let index = Dictionary(guests.enumerated().filter { $1.state != .superseded }.map { ($1.key, $0) }, uniquingKeysWith: { a, _ in a })
        published.withLock { p in
            p.service.queueLength = s.queue.count
            p.service.restoresInProgress = s.inFlight.count
            if let loopAt { p.service.lastLoopAt = loopAt }
            p.service.stateWritable = s.stateHealth.writable
            p.service.stateError = s.stateHealth.error
            p.service.stateErrorSince = s.stateHealth.since
            p.service.stateWriteErrors = s.stateHealth.failures
            p.service.unsavedWrites = s.stateHealth.pending.count
            p.sources = config.sources.map { src in
                var v = s.sources[src.storage] ?? .init(storage: src.storage, up: false, lastRefreshAt: nil, error: "not refreshed yet", refreshErrors: 0)
                v.listings = s.listings[src.storage]?.count ?? 0
                v.nextListingAt = s.listings[src.storage]?.nextAt
                return v
            }
            p.guests = guests
        }
        publishedIndex.withLock { $0 = index }
    }

    /// Applies a finished restore to the in-memory view so status shows it before the next pass.
    func updateView(_ key: GuestKey, _ change: (inout StatusSnapshot.Guest) -> Void) {
        state.withLock { s in if var v = s.lastViews[key] { change(&v); s.lastViews[key] = v } }
    }

    /// Updates one guest's progress in place (called on every task-log poll; a full publish
    /// would rebuild the whole snapshot each time).
    func setProgress(_ key: GuestKey, _ ratio: Double) {
        state.withLock { $0.inFlight[key]?.progress = ratio }
        guard let i = publishedIndex.withLock({ $0[key] }) else { return }
        published.withLock { p in
            guard i < p.guests.count, p.guests[i].key == key else { return }
            p.guests[i].progress = ratio
            p.guests[i].state = .restoring
        }
    }

    /// The restore throughput observed so far (bytes per second, smoothed).
    func currentThroughput() -> Double { state.withLock { $0.throughput } }

    func setUPID(_ key: GuestKey, _ upid: UPID) { state.withLock { $0.inFlight[key]?.upid = upid } }

    func finishInFlight(_ key: GuestKey, observedBytesPerSecond: Double?) {
        state.withLock { s in
            s.inFlight[key] = nil
            s.workerFinished = true
            s.finishCount += 1
            s.lastFinish[key] = s.finishCount
            if let bps = observedBytesPerSecond, bps.isFinite, bps > 0 { s.throughput = 0.7 * s.throughput + 0.3 * bps }
        }
        publish()
    }

    func markInFlight(_ key: GuestKey, volid: Volid, startedAt: Double, upid: UPID?) {
        state.withLock { $0.inFlight[key] = InFlight(volid: volid, startedAt: startedAt, upid: upid) }
    }

    /// Whether a worker finished since the last call (and clears the flag): the loop passes again
    /// at once instead of waiting for the poll interval.
    public func takeWorkerFinished() -> Bool {
        state.withLock { s in defer { s.workerFinished = false }; return s.workerFinished }
    }

    /// Sources that refreshed at least once (readiness).
    public var anySourceRefreshed: Bool { state.withLock { $0.sources.values.contains { $0.lastRefreshAt != nil } } }
}

/// Receives restore outcomes (the metric catalogue counts them).
public protocol RestoreEventSink: Sendable {
    func restoreSucceeded(source: String, type: GuestType, duration: Double, bytes: Int64)
    /// A restore that succeeded with `TASK WARNINGS: N`.
    func restoreWarned(source: String, warnings: Int)
    func restoreFailed(source: String, reason: String)
    func sourceRefreshFailed(source: String)
}
