import ProxmoxModel

/// The state a guest is shown in (metric label `state`, status JSON `state`); exactly one at a time.
public enum GuestState: String, Sendable, CaseIterable, Codable {
    /// `idle`: up to date; `queued`: a restore waits for a worker; `restoring`: one runs; `failing`: retried
    /// after the backoff (or a newer backup); `held`: paused by `pbs-standby hold`.
    case idle, queued, restoring, failing, held
    /// The standby copy serves (`pbs-standby failover`): restores are frozen.
    case failedOver = "failed_over"
    /// A safety rule refuses (``BlockReason``).
    case blocked
    /// A backup group of the same VMID but the other type, older than the guest's current group:
    /// shown, never restored (the VMID changed from CT to VM or back in production).
    case superseded
    /// A DR drill boots the copy in isolation (issue 16): its restores wait.
    case drilling
}

/// Why a safety rule refuses to touch a guest (metric label `reason`).
public enum BlockReason: String, Sendable, Codable, CaseIterable {
    /// The target VMID holds a guest that is not provably our copy of this guest: no marker, a
    /// marker naming another slot (a clone), another identity (`vmgenid`), another node or type.
    case notOwned = "not_owned"
    /// Two selected guests map to the same target VMID (an offset or `keep_previous` overlap):
    /// both are blocked and nothing is restored into that VMID.
    case slotConflict = "slot_conflict"
    /// The target guest runs and pbs-standby did not start it.
    case running
    /// The target guest's config is locked (backup, migrate, …): retried every pass.
    case locked
    /// Our guest carries `lock: create` and no task of that VMID is running: what a node crash or
    /// a killed restore worker leaves. Only root can clear it (`qm unlock` / `pct unlock`).
    case staleLock = "stale_lock"
    /// The target guest has `protection: 1`.
    case protected
    /// The target storage lacks the backup's size plus the margin.
    case insufficientSpace = "insufficient_space"
    /// A DR drill's cleanup (stop, rollback, snapshot removal) failed: the copy may still be
    /// isolated, running or carry the drill's snapshot. Cleared by `pbs-standby resume`.
    case drillCleanup = "drill_cleanup"
}

/// Everything known about one selected guest at one pass: the input of ``plan(_:now:rules:)``.
public struct GuestInput: Sendable {
    /// The source storage.
    public var source: String
    /// The backed-up VMID.
    public var vmid: Int
    /// The guest's type (its current backup group's).
    public var type: GuestType
    /// Effective settings; `targetVmid` is the slot a restore would go into.
    public var settings: GuestSettings
    /// The newest eligible (complete, settled, verified if required) backup.
    public var latest: BackupEntry?
    /// Backup time of the copy on the standby (from the marker or the state store).
    public var restoredBackupTime: Int?
    /// The guest at the target VMID, if any.
    public var target: GuestResource?
    /// Who owns what is at the target VMID, proven from PVE (``proveOwnership(of:node:evidence:)``);
    /// `.unverified` until its config was read.
    public var ownership: Ownership
    /// The target's `protection` flag (from its config).
    public var targetProtected: Bool
    /// Another selected guest claims the same target VMID (named for the status).
    public var slotConflict: String?
    /// The target's `lock: create` is stale: no task of that VMID runs (checked only for our guests).
    public var staleLock: Bool = false
    /// Held by the operator (state file, or the held tag on a copy).
    public var held: Bool
    /// Failed over (state file, or the failed-over tag on a copy): restores are frozen.
    public var failedOver: Bool
    /// A restore of this guest is running.
    public var inFlight: Bool
    /// A DR drill of this guest runs.
    public var drilling = false
    /// A drill's cleanup failed (``BlockReason/drillCleanup``).
    public var drillBlocked = false
    /// After a failure: not before this time.
    public var nextRetryAt: Double?
    /// Failed attempts at `latest` (retry limit per backup).
    public var failedAttemptsOfLatest: Int
    /// The running target was started by pbs-standby: the newest start task of that VMID is the
    /// one we recorded (an operator's later start makes it not ours to stop).
    public var startedByUs: Bool
    /// Free bytes on the target storage, when known.
    public var targetFreeBytes: Int64?
    /// Bytes a forced restore frees before it allocates: the copy's disks on the target storage
    /// (VMs only; ``SlotObservation/reclaimableBytes``).
    public var reclaimableBytes: Int64 = 0

    /// An input knowing only the guest and its settings: no target, no backup, no flag set.
    public init(source: String, vmid: Int, type: GuestType, settings: GuestSettings) {
        self.source = source
        self.vmid = vmid
        self.type = type
        self.settings = settings
        ownership = .free
        targetProtected = false
        held = false
        failedOver = false
        inFlight = false
        failedAttemptsOfLatest = 0
        startedByUs = false
    }
}

/// Rules that are configuration, not per-guest facts.
public struct PlanRules: Sendable {
    /// `restore.adopt`; not read by ``plan(_:now:rules:)``: unmarked guests arrive as `adopted` ownership.
    public var adopt: Bool
    /// `restore.retries_per_backup`: failed attempts at one backup before waiting for a newer one.
    public var retriesPerBackup: Int
    /// `restore.space_margin`: free space needed beyond the backup size, as a fraction of it.
    public var spaceMargin: Double
    /// Rules; the defaults are the configuration's.
    public init(adopt: Bool = false, retriesPerBackup: Int = 5, spaceMargin: Double = 0.1) {
        self.adopt = adopt
        self.retriesPerBackup = retriesPerBackup
        self.spaceMargin = spaceMargin
    }
}

/// What to do with one guest.
public enum Decision: Sendable, Equatable {
    /// Restore `backup` into the target; `stopFirst` when we started the running copy ourselves;
    /// `force` only when the target holds our own guest (PVE's `force` is its only overwrite
    /// guard: without it a VMID taken meanwhile is refused atomically, reference §13.4).
    case restore(backup: BackupEntry, stopFirst: Bool, force: Bool)
    /// A restore would follow, but the guest at the target must be proven ours first (read its
    /// config and task list, then plan again).
    case verify
    /// The standby copy is the newest eligible backup (or there is none yet).
    case upToDate
    /// A restore of this guest is running.
    case restoring
    /// A DR drill of this guest runs: its restore waits.
    case drilling
    /// Failed before: waiting for the backoff, or for a newer backup after too many attempts.
    case waiting(until: Double?)
    /// Held by the operator: nothing is restored until `resume`.
    case held
    /// Failed over: the copy serves and restores are frozen.
    case failedOver
    /// A safety rule refuses.
    case blocked(BlockReason)

    /// The state shown for this decision (`queued` for a restore not yet started).
    public var state: GuestState {
        switch self {
        case .restore, .verify: .queued
        case .upToDate: .idle
        case .restoring: .restoring
        case .drilling: .drilling
        case .waiting: .failing
        case .held: .held
        case .failedOver: .failedOver
        case .blocked: .blocked
        }
    }
}

/// The safety rules and the restore decision, as a pure function of what is observed.
///
/// Never restore: while one runs; over a failed-over or held guest; a backup older than or equal
/// to the restored one; into a VMID another selected guest claims too; over a guest that is not
/// provably ours; over a running guest we did not start; a locked or protected guest; without
/// enough space.
public func plan(_ g: GuestInput, now: Double, rules: PlanRules) -> Decision {
    if g.inFlight { return .restoring }
    if g.drilling { return .drilling }
    if g.failedOver { return .failedOver }
    if g.held { return .held }
    if g.slotConflict != nil { return .blocked(.slotConflict) }
    if g.drillBlocked { return .blocked(.drillCleanup) }
    guard let latest = g.latest else { return .upToDate }
    if let restored = g.restoredBackupTime, restored >= latest.volid.backupTime { return .upToDate }
    var stopFirst = false
    if let target = g.target {
        switch g.ownership {
        case .unverified: return .verify
        case .notOurs, .free: return .blocked(.notOwned)
        case .ours, .remains, .adopted: break
        }
        if g.targetProtected { return .blocked(.protected) }
        if target.lock != nil { return .blocked(g.staleLock ? .staleLock : .locked) }
        if target.status == "running" {
            guard g.startedByUs && g.settings.startAfterRestore else { return .blocked(.running) }
            stopFirst = true
        }
    }
    if g.failedAttemptsOfLatest >= rules.retriesPerBackup { return .waiting(until: nil) }
    if let retry = g.nextRetryAt, retry > now { return .waiting(until: retry) }
    if let free = g.targetFreeBytes {
        // In Double: sizes from PVE may be anything up to Int64.max; no arithmetic may trap.
        // A forced VM restore frees the old disks first — only those on the target storage make
        // room there (a copy on another storage frees nothing here). A forced CT restore allocates
        // the new volumes before it destroys the old ones: nothing is reclaimable (reference §13.4).
        let existing = g.type == .vm && g.target != nil ? Double(max(0, g.reclaimableBytes)) : 0
        let needed = Double(max(0, latest.size)) * (1 + max(0, rules.spaceMargin))
        if Double(max(0, free)) + existing < needed { return .blocked(.insufficientSpace) }
    }
    return .restore(backup: latest, stopFirst: stopFirst, force: g.target != nil)
}

/// The newest eligible backup among a guest's entries: complete (size > 1), older than
/// `settle` (when set; with 0 a backup stamped slightly ahead of our clock by a skewed PBS is
/// not held back), verified when required; greatest backup time wins.
public func newestEligible(_ entries: [BackupEntry], now: Double, settle: Double, requireVerified: Bool) -> BackupEntry? {
    entries.filter { $0.isComplete && (settle <= 0 || Double($0.volid.backupTime) <= now - settle) && (!requireVerified || $0.verification == "ok") }
        .max { $0.volid.backupTime < $1.volid.backupTime }
}

/// The delay before the next attempt after `failures` consecutive failures (pvesr-like steps).
public func backoffDelay(failures: Int, steps: [Duration]) -> Double {
    guard failures > 0, !steps.isEmpty else { return 0 }
    return steps[min(failures - 1, steps.count - 1)].seconds
}

/// A restore waiting for a worker, as the scheduling policy sees it.
public struct RestoreCandidate: Sendable {
    /// The guest.
    public var key: GuestKey
    /// Configured priority, higher first.
    public var priority: Int
    /// The guest has a copy on the standby already (guests without one go first).
    public var hasCopy: Bool
    /// Seconds of freshness the restore gains: newest − restored backup time.
    public var gainSeconds: Double
    /// Expected restore time: size ÷ observed throughput.
    public var expectedSeconds: Double
    /// Backup time of the backup to restore (older first on ties: no starvation).
    public var backupTime: Int

    /// A candidate.
    public init(key: GuestKey, priority: Int, hasCopy: Bool, gainSeconds: Double, expectedSeconds: Double, backupTime: Int) {
        self.key = key
        self.priority = priority
        self.hasCopy = hasCopy
        self.gainSeconds = gainSeconds
        self.expectedSeconds = expectedSeconds
        self.backupTime = backupTime
    }
}

/// Identifies a backed-up guest: source storage + VMID.
public struct GuestKey: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    /// The source storage (PVE storage id of the PBS storage).
    public var source: String
    /// The backed-up guest's VMID.
    public var vmid: Int
    /// A key.
    public init(source: String, vmid: Int) {
        self.source = source
        self.vmid = vmid
    }
    /// Orders by source, then VMID.
    public static func < (a: GuestKey, b: GuestKey) -> Bool { (a.source, a.vmid) < (b.source, b.vmid) }
    /// `source/vmid`, for logs and messages.
    public var description: String { "\(source)/\(vmid)" }
}

/// Orders restore candidates: configured priority first; within it, guests without any copy;
/// then the most freshness gained per restore-second. Ranking by lag ÷ RPO instead starves
/// long-interval guests when capacity is short, so it is not used. Ties: oldest backup first.
public enum SchedulingPolicy {
    /// Sorts `candidates` as described above (pure; the default ``PlanContext/policy``).
    public static func order(_ candidates: [RestoreCandidate]) -> [RestoreCandidate] {
        candidates.sorted { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            if a.hasCopy != b.hasCopy { return !a.hasCopy }
            let ra = a.gainSeconds / max(a.expectedSeconds, 1), rb = b.gainSeconds / max(b.expectedSeconds, 1)
            if ra != rb { return ra > rb }
            if a.backupTime != b.backupTime { return a.backupTime < b.backupTime }
            return a.key < b.key
        }
    }
}

/// A guest's backups in one source, grouped by type: a VMID may have a `ct/N` group and a `vm/N`
/// group (production replaced a CT by a VM or back). The group with the newest complete backup
/// (the newest of any, when none is complete) is the guest; the other is `superseded`: shown,
/// never restored.
public struct BackupGroups: Sendable, Equatable {
    /// The guest's type: the type of the group with the newest backup.
    public var type: GuestType
    /// The backups of that group.
    public var entries: [BackupEntry]
    /// The other group's backups, if any.
    public var superseded: [BackupEntry]

    /// Groups one VMID's entries (pure; order of `entries` does not matter).
    public init(_ all: [BackupEntry]) {
        let newest = all.filter(\.isComplete).max { $0.volid.backupTime < $1.volid.backupTime }
            ?? all.max { $0.volid.backupTime < $1.volid.backupTime }
        type = newest?.volid.type ?? .vm
        let t = type
        entries = all.filter { $0.volid.type == t }
        superseded = all.filter { $0.volid.type != t }
    }
}
