import ConfigSupport
import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// The operator's commands on guests (`hold`, `resume`, `failover`, `adopt`) as service
/// operations: they act only on copies proven ours, mirror holds and failovers into PVE as tags
/// (so they survive the loss of the state file), and wait for restores already running.
public struct GuestOperations: Sendable {
    public let config: StandbyConfig
    public let client: ProxmoxClient
    public let store: StateStore
    let observer: SlotObserver

    /// Creates the operations over a client and the (shared) state store.
    public init(config: StandbyConfig, client: ProxmoxClient, store: StateStore) {
        self.config = config
        self.client = client
        self.store = store
        self.observer = SlotObserver(client: client, store: store, adoptUnmarked: false)
    }

    /// A copy proven ours: where it is and what it holds.
    public struct ProvenCopy: Sendable {
        public var slot: Slot
        public var marker: Marker.Info
        public var guest: GuestResource
        public var config: GuestConfig?
    }

    /// The guest's live copy on the node, proven from PVE (marker naming this guest and slot,
    /// identity); with keep_previous the proven copy with the newer marker. Nil when none.
    public func provenCopy(of key: GuestKey) async throws(ProxmoxError) -> ProvenCopy? {
        guard let source = config.sources.first(where: { $0.storage == key.source }) else { return nil }
        let primary = config.effective(source: source, vmid: key.vmid).targetVmid
        var targets = [primary]
        if config.restore.keepPrevious { targets.append(primary + config.restore.previousVmidOffset) }
        let guests = try await client.guests()
        let record = try? store.guest(key)
        var best: ProvenCopy?
        for target in targets {
            guard let g = guests.first(where: { $0.vmid == target }) else { continue }
            let slot = Slot(source: key.source, vmid: key.vmid, type: g.type, target: target)
            let (own, cfg) = await observer.ownership(of: slot, guest: g, node: config.proxmox.node,
                                                      adopted: record?.adoptVmid == target, now: Date().timeIntervalSince1970, fresh: true)
            guard let m = own.marker else { continue }
            if best.map({ m.volid.backupTime > $0.marker.volid.backupTime }) ?? true {
                best = ProvenCopy(slot: slot, marker: m, guest: g, config: cfg)
            }
        }
        return best
    }

    /// Sets or clears a flag tag on the guest's proven copy (digest-guarded PUT). Returns the VMID
    /// changed, or nil when the guest has no copy.
    @discardableResult
    public func mirror(_ tag: String, on key: GuestKey, set: Bool) async throws(ProxmoxError) -> Int? {
        guard let copy = try await provenCopy(of: key) else { return nil }
        var tags = copy.guest.tags.filter { $0.lowercased() != tag }
        if set { tags.append(tag) }
        try await client.setGuestConfig(node: config.proxmox.node, type: copy.slot.type, vmid: copy.slot.target,
                                        tags: tags, digest: copy.config?.digest)
        return copy.slot.target
    }

    /// Follows a task to its end (status every 2 s; transient errors are retried).
    public func followToEnd(_ upid: UPID) async throws(ProxmoxError) -> TaskStatus {
        while true {
            do throws(ProxmoxError) {
                let status = try await client.taskStatus(upid)
                if !status.running { return status }
            } catch {
                guard error.isTransient else { throw error }
            }
            try? await Task.sleep(for: .seconds(2))
        }
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
        public var key: GuestKey
        public var target: Int
    }

    /// Every match of each argument; errors (exit 2) name every argument that matches nothing or
    /// more than one guest — the list is refused as a whole.
    public static func resolve(_ arguments: [String], config: StandbyConfig) throws(ConfigError) -> [Match] {
        var out: [Match] = []
        var problems: [String] = []
        for arg in arguments {
            let candidates = matches(arg, config: config)
            switch candidates.count {
            case 0: problems.append("'\(arg)' matches no selected guest (neither a backed-up VMID nor a target VMID of any source)")
            case 1: if !out.contains(candidates[0]) { out.append(candidates[0]) }
            default:
                problems.append("'\(arg)' is ambiguous: \(candidates.map { "\($0.key.source):\($0.key.vmid)" }.joined(separator: ", ")); name one as SOURCE:VMID")
            }
        }
        guard problems.isEmpty else { throw ConfigError(path: "arguments", line: nil, message: problems.joined(separator: "; ")) }
        return out
    }

    static func matches(_ arg: String, config: StandbyConfig) -> [Match] {
        func selected(_ s: StandbyConfig.Source, _ vmid: Int) -> Bool { vmidRange.contains(vmid) && s.include.contains(vmid) && !s.exclude.contains(vmid) }
        func match(_ s: StandbyConfig.Source, _ vmid: Int) -> Match { Match(key: GuestKey(source: s.storage, vmid: vmid), target: config.effective(source: s, vmid: vmid).targetVmid) }
        if let colon = arg.lastIndex(of: ":") {
            let storage = String(arg[..<colon])
            guard let n = Int(arg[arg.index(after: colon)...]), let s = config.sources.first(where: { $0.storage == storage }), selected(s, n) else { return [] }
            return [match(s, n)]
        }
        guard let n = Int(arg) else { return [] }
        var found: [Match] = []
        for s in config.sources {
            var ids = [n, n - s.vmidOffset]
            if config.restore.keepPrevious { ids.append(n - s.vmidOffset - config.restore.previousVmidOffset) }
            for id in Set(ids) where selected(s, id) {
                let m = match(s, id)
                if !found.contains(m) { found.append(m) }
            }
        }
        return found
    }
}
