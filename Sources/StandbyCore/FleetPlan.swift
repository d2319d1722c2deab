import ProxmoxModel

/// How a restore is carried out. The engine picks the executor an action names and does not know
/// which one ran.
public enum ExecutorKind: String, Sendable, CaseIterable, Codable {
    /// PVE's own restore task (`qmrestore`/`vzrestore`), followed through the task API.
    case pveTask = "pve_task"
    /// Only the chunks that changed since the copy's backup, written from a local PBS datastore
    /// into the copy's volumes (issue 15); falls back to ``pveTask`` with a ``DeltaFallback``.
    case delta
}

/// One restore the plan starts now.
public struct RestoreAction: Sendable {
    /// The guest restored.
    public var key: GuestKey
    /// Its type (the type of its current backup group).
    public var type: GuestType
    /// The standby node the restore runs on.
    public var node: String
    /// The backup restored: the guest's newest eligible one.
    public var backup: BackupEntry
    /// Settings with `targetVmid` = the slot the restore goes into.
    public var settings: GuestSettings
    /// Stop the running copy first (we started it, start_after_restore).
    public var stopFirst: Bool
    /// PVE's `force`: only over a copy proven ours.
    public var force: Bool
    /// The guest at the target VMID when planned.
    public var existingTarget: GuestResource?
    /// With keep_previous: the slot holding the live copy (destroyed after the new one is good).
    public var liveVmid: Int?
    /// The PVE pool of the source.
    public var pool: String?
    /// How the restore is carried out.
    public var executor: ExecutorKind

    /// The VMID restored into (`settings.targetVmid`).
    public var targetVmid: Int { settings.targetVmid }
    /// The volid of the backup restored.
    public var volid: Volid { backup.volid }
    /// The slot the restore goes into.
    public var slot: Slot { Slot(source: key.source, vmid: key.vmid, type: type, target: settings.targetVmid) }

    /// An action; by default no stop, no `force`, and PVE's own restore task.
    public init(key: GuestKey, type: GuestType, node: String, backup: BackupEntry, settings: GuestSettings, stopFirst: Bool = false,
                force: Bool = false, existingTarget: GuestResource? = nil, liveVmid: Int? = nil, pool: String? = nil,
                executor: ExecutorKind = .pveTask) {
        self.key = key
        self.type = type
        self.node = node
        self.backup = backup
        self.settings = settings
        self.stopFirst = stopFirst
        self.force = force
        self.existingTarget = existingTarget
        self.liveVmid = liveVmid
        self.pool = pool
        self.executor = executor
    }
}

/// A backup as a guest's view shows it.
public struct PlannedBackup: Sendable, Equatable {
    /// The backup's volid (`STORAGE:backup/TYPE/VMID/TIME`).
    public var volid: String
    /// Its backup time (Unix seconds).
    public var backupTime: Int
    /// Its size in bytes; nil when the state file does not know it (a copy proven only by its marker).
    public var size: Int64?
    /// A backup as shown.
    public init(volid: String, backupTime: Int, size: Int64?) {
        self.volid = volid
        self.backupTime = backupTime
        self.size = size
    }
}

/// The plan for one selected guest: its decision and what its view shows.
public struct GuestPlan: Sendable {
    /// The guest.
    public var key: GuestKey
    /// Its type (the type of its current backup group).
    public var type: GuestType
    /// Effective settings; `targetVmid` is the slot a restore goes into.
    public var settings: GuestSettings
    /// What the rules decided; its ``Decision/state`` is the state shown.
    public var decision: Decision
    /// Why a safety rule refuses, when the decision is `blocked`.
    public var blockedReason: BlockReason?
    /// What the blocking rule saw, for status, page and log.
    public var blockedDetail: String?
    /// The slot of the live copy (the restore slot while there is none).
    public var live: Int
    /// The copy on the standby, nil while none is proven (or remembered, when not observed).
    public var restored: PlannedBackup?
    /// The newest eligible backup (complete, settled, verified if required); nil when none.
    public var latest: BackupEntry?
    /// Complete backups newer than the restored one.
    public var pendingBackups: Int
    /// The newest backup of the other type's group of this VMID, shown as `superseded`.
    public var superseded: BackupEntry?
}

/// Side actions of a plan, carried out by the act step before any restore starts.
public enum PlanAction: Sendable, Equatable {
    /// The copy PVE shows is the truth (the state file was lost, or a task that ran past
    /// task_timeout succeeded after all): record it.
    case recordCopy(GuestKey, live: Int, marker: Marker.Info)
    /// Clear the stale `lock: create` of our VM's failed-restore remains (pvesh only, after a
    /// fresh re-check by the act step).
    case clearStaleLock(Slot)
}

/// What a pass does: per-guest plans (the views), side actions, the restores to start now in
/// order, and the guests left waiting for a worker.
public struct Plan: Sendable {
    /// One plan per selected guest (their views).
    public var guests: [GuestPlan] = []
    /// Side actions, carried out before any restore starts.
    public var actions: [PlanAction] = []
    /// Restores to start now, in policy order, within the worker limits.
    public var starts: [RestoreAction] = []
    /// Guests with a restore to do that wait for a worker (or for the state file to take writes).
    public var queue: [GuestKey] = []
    /// Sources that could not be listed (their guests keep their previous views).
    public var downSources: [String] = []
}

/// What the plan needs besides configuration and observation.
public struct PlanContext: Sendable {
    /// Orders restore candidates (swappable so the RPO benchmark can compare policies).
    public var policy: @Sendable ([RestoreCandidate]) -> [RestoreCandidate]
    /// Smoothed restore throughput in bytes per second (expected restore times).
    public var throughput: Double
    /// `once`: guests a restore was started for in this run (each at most once); nil in `run`.
    public var startedThisOnce: Set<GuestKey>?
    /// The caller is root@pam (pvesh): a stale VM lock may be cleared.
    public var canClearLocks: Bool

    /// A context; by default ``SchedulingPolicy/order``, 300 MiB/s, `run` (not `once`), no lock clearing.
    public init(policy: @escaping @Sendable ([RestoreCandidate]) -> [RestoreCandidate] = SchedulingPolicy.order,
                throughput: Double = 300 * 1_048_576, startedThisOnce: Set<GuestKey>? = nil, canClearLocks: Bool = false) {
        self.policy = policy
        self.throughput = throughput
        self.startedThisOnce = startedThisOnce
        self.canClearLocks = canClearLocks
    }
}

/// The whole-fleet plan, a pure function: every selected guest gets a decision from the safety
/// rules of ``plan(_:now:rules:)``; slot conflicts come from the slot map of this listing; restores
/// are ordered by the scheduling policy and started within the global and per-source worker
/// limits, none while the state file does not take writes.
public func planFleet(config: StandbyConfig, observation o: Observation, inFlight: Set<GuestKey>, context: PlanContext) -> Plan {
    var result = Plan()
    result.downSources = config.sources.map(\.storage).filter { o.catalogue[$0] == nil }
    let selected = selectGuests(config, catalogue: o.catalogue)
    let conflicts = slotConflicts(config, selected)
    let rules = PlanRules(adopt: config.restore.adopt, retriesPerBackup: config.restore.retriesPerBackup, spaceMargin: config.restore.spaceMargin)
    var candidates: [RestoreCandidate] = []
    var actionOf: [GuestKey: RestoreAction] = [:]
    for s in selected {
        let (guest, action, side) = planGuest(s, config: config, observation: o, inFlight: inFlight.contains(s.key),
                                              conflict: conflicts[s.key], rules: rules, context: context)
        result.guests.append(guest)
        result.actions += side
        if let action {
            actionOf[s.key] = action
            let gain = Double(action.backup.volid.backupTime - (guest.restored?.backupTime ?? 0))
            candidates.append(RestoreCandidate(key: s.key, priority: action.settings.priority, hasCopy: guest.restored != nil,
                                               gainSeconds: gain, expectedSeconds: Double(max(0, action.backup.size)) / context.throughput,
                                               backupTime: action.backup.volid.backupTime))
        }
    }
    // Schedule: policy order, global and per-source worker limits.
    var running = inFlight.count
    var perSource = Dictionary(grouping: inFlight, by: \.source).mapValues(\.count)
    for c in context.policy(candidates) where context.startedThisOnce?.contains(c.key) != true {
        let limit = config.sources.first { $0.storage == c.key.source }?.workers ?? Int.max
        guard o.stateWritable, running < config.restore.workers, perSource[c.key.source, default: 0] < limit,
              let action = actionOf[c.key] else {
            result.queue.append(c.key)
            continue
        }
        running += 1
        perSource[c.key.source, default: 0] += 1
        result.starts.append(action)
    }
    return result
}

/// One guest's plan, its restore (when the rules say restore) and side actions.
func planGuest(_ s: SelectedGuest, config: StandbyConfig, observation o: Observation, inFlight: Bool, conflict: [SlotMap.Claim]?,
               rules: PlanRules, context: PlanContext) -> (GuestPlan, RestoreAction?, [PlanAction]) {
    let key = s.key, type = s.groups.type, memory = o.memory[key]
    var settings = config.effective(source: s.source, vmid: s.vmid)
    let primary = settings.targetVmid
    var input = GuestInput(source: key.source, vmid: s.vmid, type: type, settings: settings)
    input.latest = newestEligible(s.groups.entries, now: o.now, settle: config.restore.settle.seconds, requireVerified: config.restore.requireVerified)
    input.inFlight = inFlight
    input.drilling = o.drilling.contains(key)
    input.drillBlocked = memory?.drillBlocked != nil
    input.slotConflict = conflict.map { others in
        others.map { "VMID \($0.target) is also the \($0.secondary ? "keep_previous slot" : "target") of \($0.key)" }.joined(separator: "; ")
    }
    let observed = input.inFlight || input.slotConflict != nil ? nil : o.slots[key]
    var side: [PlanAction] = []
    let restored: PlannedBackup?
    if let observed {
        restored = observed.liveMarker.map { m in
            PlannedBackup(volid: m.volid.description, backupTime: m.volid.backupTime,
                          size: memory?.restoredVolid == m.volid.description ? memory?.restoredBytes : nil)
        }
        if let m = observed.liveMarker, memory?.restoredVolid != m.volid.description || memory?.liveVmid != observed.live {
            side.append(.recordCopy(key, live: observed.live, marker: m))
        }
    } else {
        restored = memory?.restoredVolid.flatMap { v in
            memory?.restoredBackupTime.map { PlannedBackup(volid: v, backupTime: $0, size: memory?.restoredBytes) }
        }
    }
    let live = observed?.live ?? memory?.liveVmid ?? primary
    let restoreInto = observed?.restoreInto ?? primary
    settings.targetVmid = restoreInto
    input.settings = settings
    let target = o.guests[restoreInto]
    input.target = target
    input.ownership = observed?.intoOwnership ?? .unverified
    input.targetProtected = observed?.intoProtected ?? false
    input.reclaimableBytes = observed?.reclaimableBytes ?? 0
    // Holds and failovers: the state file, or the tag on any proven copy of the guest.
    let copyTags = observed?.copyTags ?? []
    input.held = (memory?.held ?? false) || copyTags.contains(Marker.heldTag)
    input.failedOver = (memory?.failedOver ?? false) || copyTags.contains(Marker.failedOverTag)
    input.nextRetryAt = memory?.nextRetryAt
    if let latest = input.latest, memory?.failedVolid == latest.volid.description {
        input.failedAttemptsOfLatest = memory?.failedVolidAttempts ?? 0
    }
    if let ts = settings.targetStorage { input.targetFreeBytes = o.freeBytes[ts] }
    input.staleLock = observed?.staleLock ?? false
    input.startedByUs = observed?.startedByUs ?? false
    input.restoredBackupTime = restored?.backupTime
    var decision = plan(input, now: o.now, rules: rules)
    if decision == .verify { decision = .waiting(until: o.now) }  // the target's config could not be read: do not act blindly
    var action: RestoreAction?
    if case .restore(let backup, let stopFirst, let force) = decision {
        action = RestoreAction(key: key, type: type, node: config.proxmox.node, backup: backup, settings: settings, stopFirst: stopFirst,
                               force: force, existingTarget: target, liveVmid: observed?.liveMarker != nil ? live : nil,
                               pool: s.source.pool,
                               // Over a copy proven ours, a source with delta restores on lets the
                               // delta executor decide (it falls back to PVE's restore, naming why).
                               executor: s.source.deltaEnabled && force && target != nil ? .delta : .pveTask)
    }
    var blocked: BlockReason?, detail: String?
    if case .blocked(let r) = decision {
        blocked = r
        switch r {
        case .slotConflict: detail = input.slotConflict
        case .staleLock where context.canClearLocks && type == .vm:
            detail = "VMID \(restoreInto) has a stale 'lock: create' (our failed restore's remains, no task running): "
                + "being cleared through pvesh as root@pam when a fresh re-check still proves it ours; the next pass restores over the remains"
            side.append(.clearStaleLock(Slot(source: key.source, vmid: s.vmid, type: type, target: restoreInto)))
        case .staleLock:
            detail = "VMID \(restoreInto) has a stale 'lock: create' and no task runs for it (node crash or killed worker): "
                + "check the guest, then `\(type == .vm ? "qm" : "pct") unlock \(restoreInto)` as root"
        case .notOwned: if case .notOurs(let why) = input.ownership { detail = why }
        case .drillCleanup: detail = memory?.drillBlocked
        default: break
        }
    }
    let pending = s.groups.entries.filter { $0.isComplete && $0.volid.backupTime > (restored?.backupTime ?? 0) }.count
    let guest = GuestPlan(key: key, type: type, settings: settings, decision: decision, blockedReason: blocked, blockedDetail: detail,
                          live: restored != nil ? live : restoreInto, restored: restored, latest: input.latest, pendingBackups: pending,
                          superseded: s.groups.superseded.max { $0.volid.backupTime < $1.volid.backupTime })
    return (guest, action, side)
}
