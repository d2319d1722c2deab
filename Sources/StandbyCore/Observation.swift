import ProxmoxModel

/// What the engine sees at the start of a pass: the backup catalogue, the guests on the node, what
/// the state file remembers and what PVE proves about each selected guest's slots. Built by the
/// service's observe step (reads only) and consumed by the pure ``planFleet(config:observation:inFlight:context:)``.
public struct Observation: Sendable {
    /// The time of the pass.
    public var now: Double
    /// Per source storage: its backups by backed-up VMID. A source missing here could not be
    /// listed (its guests keep what was shown before).
    public var catalogue: [String: [Int: [BackupEntry]]]
    /// Every guest of the cluster by VMID (VMIDs are cluster-wide; another node's guest holds one).
    public var guests: [Int: GuestResource]
    /// What the state file remembers, per guest.
    public var memory: [GuestKey: GuestMemory]
    /// Free bytes per target storage, where known (unknown: not checked).
    public var freeBytes: [String: Int64]
    /// The proven slots of every selected guest that is neither in flight nor in a slot conflict.
    public var slots: [GuestKey: SlotObservation]
    /// The state file took every owed write: else nothing starts (state is written before acting).
    public var stateWritable: Bool
    /// Guests being drilled now (an open drill record, of this process or a `pbs-standby drill`):
    /// their restores wait.
    public var drilling: Set<GuestKey> = []

    /// An observation; parts not given are empty, and the state file counts as writable.
    public init(now: Double, catalogue: [String: [Int: [BackupEntry]]] = [:], guests: [Int: GuestResource] = [:],
                memory: [GuestKey: GuestMemory] = [:], freeBytes: [String: Int64] = [:], slots: [GuestKey: SlotObservation] = [:],
                stateWritable: Bool = true) {
        self.now = now
        self.catalogue = catalogue
        self.guests = guests
        self.memory = memory
        self.freeBytes = freeBytes
        self.slots = slots
        self.stateWritable = stateWritable
    }
}

/// The part of a guest's state-file record that planning needs (the record itself lives in
/// StandbyStore, which depends on this module).
public struct GuestMemory: Sendable, Equatable {
    /// Volid of the backup the live copy was restored from, as recorded.
    public var restoredVolid: String?
    /// Its backup time (Unix seconds).
    public var restoredBackupTime: Int?
    /// Its size in bytes.
    public var restoredBytes: Int64?
    /// The slot holding the live copy, as last recorded.
    public var liveVmid: Int?
    /// `pbs-standby hold`: no restore until `resume`.
    public var held = false
    /// `pbs-standby failover`: the copy serves, restores are frozen.
    public var failedOver = false
    /// After a failure: no attempt before this time (Unix seconds; the backoff).
    public var nextRetryAt: Double?
    /// The backup whose restore failed last and how often.
    public var failedVolid: String?
    /// Failed attempts at `failedVolid` (compared with `retries_per_backup`).
    public var failedVolidAttempts = 0
    /// A drill's cleanup failed: nothing restores over the copy until `resume` (the message).
    public var drillBlocked: String?

    /// A record; by default nothing restored, nothing frozen, no failure.
    public init(restoredVolid: String? = nil, restoredBackupTime: Int? = nil, restoredBytes: Int64? = nil, liveVmid: Int? = nil,
                held: Bool = false, failedOver: Bool = false, nextRetryAt: Double? = nil, failedVolid: String? = nil,
                failedVolidAttempts: Int = 0, drillBlocked: String? = nil) {
        self.drillBlocked = drillBlocked
        self.restoredVolid = restoredVolid
        self.restoredBackupTime = restoredBackupTime
        self.restoredBytes = restoredBytes
        self.liveVmid = liveVmid
        self.held = held
        self.failedOver = failedOver
        self.nextRetryAt = nextRetryAt
        self.failedVolid = failedVolid
        self.failedVolidAttempts = failedVolidAttempts
    }
}

/// What PVE proves about one guest's slots this pass.
public struct SlotObservation: Sendable, Equatable {
    /// The slot holding the live copy (the primary while there is none).
    public var live: Int
    /// The slot the next restore goes into (with keep_previous: the other one, so the live copy is
    /// never the one overwritten).
    public var restoreInto: Int
    /// The marker of the live copy, when a copy is proven ours.
    public var liveMarker: Marker.Info?
    /// Who owns the guest at `restoreInto`.
    public var intoOwnership: Ownership
    /// `protection: 1` on the guest at `restoreInto`.
    public var intoProtected: Bool
    /// Bytes a forced restore into `restoreInto` frees before it allocates: the copy's disks on the
    /// target storage (VMs; PVE frees the old disks first). A CT restore allocates first: 0.
    public var reclaimableBytes: Int64
    /// The tags of every slot proven to hold a copy of ours (holds and failovers live there too).
    public var copyTags: [String]
    /// Our guest at `restoreInto` carries `lock: create` and no task of its VMID runs.
    public var staleLock: Bool
    /// The running guest at `restoreInto` was started by our recorded start task.
    public var startedByUs: Bool

    /// An observation; by default a free slot, no copy, nothing protected, locked or tagged.
    public init(live: Int, restoreInto: Int, liveMarker: Marker.Info? = nil, intoOwnership: Ownership = .free,
                intoProtected: Bool = false, reclaimableBytes: Int64 = 0, copyTags: [String] = [], staleLock: Bool = false,
                startedByUs: Bool = false) {
        self.live = live
        self.restoreInto = restoreInto
        self.liveMarker = liveMarker
        self.intoOwnership = intoOwnership
        self.intoProtected = intoProtected
        self.reclaimableBytes = reclaimableBytes
        self.copyTags = copyTags
        self.staleLock = staleLock
        self.startedByUs = startedByUs
    }
}

/// A guest the configuration selects from a source's listing.
public struct SelectedGuest: Sendable {
    /// The source's configuration.
    public var source: StandbyConfig.Source
    /// The backed-up VMID.
    public var vmid: Int
    /// Its backups in the source's listing, grouped by type.
    public var groups: BackupGroups
    /// The guest's key: source storage + backed-up VMID.
    public var key: GuestKey { GuestKey(source: source.storage, vmid: vmid) }
}

/// The selected guests of every listed source, in source then VMID order.
public func selectGuests(_ config: StandbyConfig, catalogue: [String: [Int: [BackupEntry]]]) -> [SelectedGuest] {
    config.sources.flatMap { source -> [SelectedGuest] in
        guard let byVmid = catalogue[source.storage] else { return [] }
        return byVmid.sorted { $0.key < $1.key }
            .filter { source.include.contains($0.key) && !source.exclude.contains($0.key) }
            .map { SelectedGuest(source: source, vmid: $0.key, groups: BackupGroups($0.value)) }
    }
}

/// Every primary and keep_previous slot of the selected guests; a VMID claimed twice blocks every
/// claimant (``SlotMap/conflicts(_:)``).
public func slotConflicts(_ config: StandbyConfig, _ selected: [SelectedGuest]) -> [GuestKey: [SlotMap.Claim]] {
    SlotMap.conflicts(selected.flatMap { s -> [SlotMap.Claim] in
        let primary = s.vmid + s.source.vmidOffset
        var claims = [SlotMap.Claim(key: s.key, target: primary, secondary: false)]
        if config.restore.keepPrevious {
            claims.append(.init(key: s.key, target: primary + config.restore.previousVmidOffset, secondary: true))
        }
        return claims
    })
}
