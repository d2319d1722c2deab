import ConfigSupport
import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// The operator's commands on guests (`hold`, `resume`, `failover`, `adopt`) as service
/// operations: they act only on copies proven ours, mirror holds and failovers into PVE as tags
/// (so they survive the loss of the state file), and wait for restores already running.
public struct GuestOperations: Sendable {
    /// The service configuration.
    public let config: StandbyConfig
    /// The PVE client.
    public let client: ProxmoxClient
    /// The state store holds, failovers and adoptions are written to.
    public let store: StateStore
    /// Proves who owns the guest at a slot (fresh reads; unmarked guests are never adopted here).
    let observer: SlotObserver

    /// Creates the operations over a client and the (shared) state store.
    public init(config: StandbyConfig, client: ProxmoxClient, store: StateStore) {
        self.config = config
        self.client = client
        self.store = store
        self.observer = SlotObserver(client: client, store: store, adoptUnmarked: false, node: config.proxmox.node,
                                     callerIsRoot: config.proxmox.transport == .pvesh)
    }

    /// A copy proven ours: where it is and what it holds.
    public struct ProvenCopy: Sendable {
        /// Where the copy is.
        public var slot: Slot
        /// Its marker: the backup it holds.
        public var marker: Marker.Info
        /// The guest as `/cluster/resources` shows it (tags, status).
        public var guest: GuestResource
        /// Its config as read for the proof (its digest guards tag changes); nil when not read.
        public var config: GuestConfig?
    }

    /// The type of the guest's current backup group (the newest; a superseded group's copy is
    /// never "the copy"), from the listing; the recorded copy's type when the listing fails.
    func currentType(of key: GuestKey) async -> GuestType? {
        if let entries = try? await client.backups(node: config.proxmox.node, storage: key.source, vmid: key.vmid), !entries.isEmpty {
            return BackupGroups(entries).type
        }
        return ((try? store.guest(key))?.restoredVolid).flatMap(Volid.init(parsing:))?.type
    }

    /// Every copy of the guest on the node proven ours from PVE (marker naming this guest, its
    /// current type and the slot; identity), newest marker first.
    public func provenCopies(of key: GuestKey) async throws(ProxmoxError) -> [ProvenCopy] {
        guard let source = config.sources.first(where: { $0.storage == key.source }) else { return [] }
        let primary = config.effective(source: source, vmid: key.vmid).targetVmid
        var targets = [primary]
        if config.restore.keepPrevious { targets.append(primary + config.restore.previousVmidOffset) }
        let guests = try await client.guests()
        let record = try? store.guest(key)
        guard let type = await currentType(of: key) else { return [] }
        var out: [ProvenCopy] = []
        for target in targets {
            guard let g = guests.first(where: { $0.vmid == target }) else { continue }
            let slot = Slot(source: key.source, vmid: key.vmid, type: type, target: target)
            let (own, cfg) = await observer.ownership(of: slot, guest: g, node: config.proxmox.node,
                                                      adoptedIdentity: record?.adoptVmid == target ? record?.adoptIdentity : nil,
                                                      now: Date().timeIntervalSince1970, fresh: true)
            if let m = own.marker { out.append(ProvenCopy(slot: slot, marker: m, guest: g, config: cfg)) }
        }
        return out.sorted { $0.marker.volid.backupTime > $1.marker.volid.backupTime }
    }

    /// The copy to serve: a copy the operator held (the hold means "keep this one"), else the
    /// newest proven copy. Nil when the guest has none.
    public func provenCopy(of key: GuestKey) async throws(ProxmoxError) -> ProvenCopy? {
        let copies = try await provenCopies(of: key)
        return copies.first { $0.guest.tags.contains(Marker.heldTag) } ?? copies.first
    }

    /// Sets or clears a flag tag on every proven copy of the guest (digest-guarded PUTs).
    /// Returns the VMIDs changed (empty when the guest has no copy).
    @discardableResult
    public func mirror(_ tag: String, on key: GuestKey, set: Bool) async throws(ProxmoxError) -> [Int] {
        var changed: [Int] = []
        for copy in try await provenCopies(of: key) {
            let has = copy.guest.tags.contains { $0.lowercased() == tag }
            guard has != set else { continue }
            var tags = copy.guest.tags.filter { $0.lowercased() != tag }
            if set { tags.append(tag) }
            try await client.setGuestConfig(node: config.proxmox.node, type: copy.slot.type, vmid: copy.slot.target,
                                            tags: tags, digest: copy.config?.digest)
            changed.append(copy.slot.target)
        }
        return changed
    }

    /// Adopts the guest now at `vmid` for `key`: records its identity, so the adoption ends when
    /// another guest takes the VMID. Throws when nothing (or a guest of another node) is there.
    public func adopt(_ key: GuestKey, vmid: Int) async throws -> String {
        guard let g = try await client.guests().first(where: { $0.vmid == vmid }) else {
            throw ProxmoxError.configuration("nothing to adopt at VMID \(vmid): no guest there")
        }
        guard g.node == config.proxmox.node else { throw ProxmoxError.configuration("VMID \(vmid) is a guest on node '\(g.node)', not on the standby node") }
        guard let id = await observer.identity(vmid: vmid, guest: g, node: config.proxmox.node, now: Date().timeIntervalSince1970) else {
            throw ProxmoxError.configuration("cannot read the config and task list of VMID \(vmid)")
        }
        try store.update(key, targetVmid: vmid) { r in
            r.adoptVmid = vmid
            r.adoptIdentity = id
        }
        return id
    }

    /// Follows a task to its end: its status every `poll` seconds of `clock`; transient errors
    /// retried — for at most `giveUpUnreachable` seconds in a row when given; at most `timeout`
    /// seconds in all when given (both throw a transient error). The failover follows a live
    /// restore with the defaults (wall clock, every 2 s, no limit); a drill on the engine's clock.
    public func followToEnd(_ upid: UPID, clock: any EngineClock = WallClock(), poll: Double = 2,
                            giveUpUnreachable: Double? = nil, timeout: Double? = nil) async throws -> TaskStatus {
        let deadline = timeout.map { clock.now() + $0 }
        var unreachableSince: Double?
        while true {
            do throws(ProxmoxError) {
                let status = try await client.taskStatus(upid)
                unreachableSince = nil
                if !status.running { return status }
            } catch {
                guard error.isTransient else { throw error }
                let since = unreachableSince ?? clock.now()
                unreachableSince = since
                if let limit = giveUpUnreachable, clock.now() - since > limit { throw error }
            }
            if let deadline, clock.now() > deadline {
                throw ProxmoxError.transient(path: upid.description, message: "the task did not end within \(Int(timeout ?? 0)) s")
            }
            try await clock.sleep(poll)
        }
    }

    /// The guests that exist for the selector: every guest record plus every selected guest with
    /// a backup in its source's listing. Nil when a source cannot be listed (during a disaster the
    /// PBS may be gone too): then the configured selection alone decides.
    public func knownGuests() async -> Set<GuestKey>? {
        var known = Set(((try? store.guests()) ?? [:]).keys)
        for source in config.sources {
            guard let entries = try? await client.backups(node: config.proxmox.node, storage: source.storage) else { return nil }
            for e in entries where source.include.contains(e.volid.vmid) && !source.exclude.contains(e.volid.vmid) {
                known.insert(GuestKey(source: source.storage, vmid: e.volid.vmid))
            }
        }
        return known
    }

    /// Waits until no restore of `keys` is recorded as running (a pass may have begun one just
    /// before the hold or failover was written), at most `timeout` seconds. Returns those still running.
    public func waitForRunningRestores(_ keys: Set<GuestKey>, timeout: Double,
                                       report: (HistoryRecord) -> Void) async -> [HistoryRecord] {
        let deadline = Date().timeIntervalSince1970 + timeout
        var reported = Set<Int64>()
        while true {
            let running = ((try? store.runningRestores()) ?? []).filter { keys.contains(GuestKey(source: $0.source, vmid: $0.vmid)) }
            for h in running where reported.insert(h.id ?? -1).inserted { report(h) }
            if running.isEmpty || Date().timeIntervalSince1970 >= deadline { return running }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}

/// Resolves what an operator typed into guests: a backed-up VMID, a target VMID (primary or
/// keep_previous slot), or `SOURCE:VMID` where a number is ambiguous.
public enum GuestSelector {
    /// A resolved guest with its primary target VMID.
    public struct Match: Sendable, Hashable {
        /// The guest.
        public var key: GuestKey
        /// Its primary target VMID.
        public var target: Int
        /// The slot the argument named: the target VMID typed (primary or keep_previous slot),
        /// else the primary.
        public var slot: Int
    }

    /// Every match of each argument; errors (exit 2) name every argument that matches nothing or
    /// more than one guest — the list is refused as a whole. With `known` (the guests the state
    /// file or a backup listing knows), a selection rule alone is not a match: `include: all`
    /// selects every number, but only existing guests can be held.
    public static func resolve(_ arguments: [String], config: StandbyConfig, known: Set<GuestKey>? = nil) throws(ConfigError) -> [Match] {
        var out: [Match] = []
        var problems: [String] = []
        for arg in arguments {
            let candidates = matches(arg, config: config).filter { known?.contains($0.key) ?? true }
            switch candidates.count {
            case 0: problems.append("'\(arg)' matches no selected guest (neither a backed-up VMID nor a target VMID of any source)")
            case 1: if !out.contains(where: { $0.key == candidates[0].key }) { out.append(candidates[0]) }
            default:
                problems.append("'\(arg)' is ambiguous: \(candidates.map { "\($0.key.source):\($0.key.vmid)" }.joined(separator: ", ")); name one as SOURCE:VMID")
            }
        }
        guard problems.isEmpty else { throw ConfigError(path: "arguments", line: nil, message: problems.joined(separator: "; ")) }
        return out
    }

    /// Every selected guest an argument can name: `SOURCE:VMID`, or a number read as backed-up VMID,
    /// primary target VMID or keep_previous target VMID of any source.
    static func matches(_ arg: String, config: StandbyConfig) -> [Match] {
        func selected(_ s: StandbyConfig.Source, _ vmid: Int) -> Bool { vmidRange.contains(vmid) && s.include.contains(vmid) && !s.exclude.contains(vmid) }
        func match(_ s: StandbyConfig.Source, _ vmid: Int) -> Match {
            let t = config.effective(source: s, vmid: vmid).targetVmid
            return Match(key: GuestKey(source: s.storage, vmid: vmid), target: t, slot: t)
        }
        if let colon = arg.lastIndex(of: ":") {
            let storage = String(arg[..<colon])
            guard let n = Int(arg[arg.index(after: colon)...]), let s = config.sources.first(where: { $0.storage == storage }), selected(s, n) else { return [] }
            return [match(s, n)]
        }
        guard let n = Int(arg) else { return [] }
        var found: [Match] = []
        for s in config.sources {
            var ids = [(n, false), (n - s.vmidOffset, true)]
            if config.restore.keepPrevious { ids.append((n - s.vmidOffset - config.restore.previousVmidOffset, true)) }
            for (id, byTarget) in ids where selected(s, id) {
                var m = match(s, id)
                if byTarget { m.slot = n }
                if !found.contains(where: { $0.key == m.key }) { found.append(m) }
            }
        }
        return found
    }
}
