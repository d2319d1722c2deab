import Foundation
import ProxmoxAPI
import Synchronization

/// A PVE node with PBS storages, faithful to `shared/reference/proxmox-interfaces.md` where the
/// service depends on it. Each behaviour names the section it follows. Synchronous and
/// lock-protected, so it serves libmicrohttpd threads and in-process callers alike.
///
/// Not simulated: ticket auth, HA, pools, live-restore's block-job lines, storage-layer log lines
/// (mkfs/lvcreate texts are [unverified] in the reference), custom HTTP reason phrases
/// (libmicrohttpd sends the standard phrase; the message is in the body as PVE ≥ 5.2.0 does).
public final class PVESimulator: Sendable {
    /// The scenario the simulator started from.
    public let scenario: Scenario
    /// The clock every time-dependent behaviour reads.
    public let clock: any EngineClock
    /// The simulator's start time (backup histories are laid out before it).
    public let startTime: Double
    /// The token that HTTP callers must present.
    public let token: APIToken
    let state: Mutex<State>
    /// The fingerprint of the certificate the HTTPS frontend serves (listed in `GET /nodes`).
    let servedFingerprint = Mutex<String?>(nil)
    let tib = Double(1 << 40)
    /// Real snapshot and image files (scenario `datastore_dir` / `image_dir`); nil without them.
    let images: SimulatorImages?

    /// Records the served certificate's fingerprint so `GET /nodes` lists it as `ssl_fingerprint`.
    public func setServedFingerprint(_ fp: String) { servedFingerprint.withLock { $0 = fp } }

    struct State: Codable {
        var guests: [Int: SimGuest] = [:]
        var tasks: [String: SimTask] = [:]
        var taskOrder: [String] = []
        /// Tasks whose end effect is not applied yet, in start order (settling scans only these).
        var unsettled: [String] = []
        /// Rendered backup listings per storage, valid until the next backup starts or completes.
        var listingCache: [String: (validUntil: Double, from: Double, value: JSONValue)] = [:]
        var journal: [JournalEntry] = []
        var faults: [Scenario.Fault]
        var restoreFails: Set<Int>
        var targetUsed: [String: Int64]
        /// Target storages disabled or inactive on this node (test control, not saved).
        var inactiveStorages: Set<String> = []
        /// Restores of these backed-up guests end `TASK WARNINGS: N` (test control, not saved).
        var restoreWarnings: [Int: Int] = [:]
        var rng: SplitMix64
        var pid: UInt32 = 0x1000
        var taskFailureProbability: Double
        /// The stream `vmgenid`s are drawn from: seeded from the scenario's seed, separate from
        /// `rng` so that generating ids does not shift the fault dice (nil in older saved states:
        /// started on first use).
        var idRng: SplitMix64? = nil
        /// The token's ACLs (nil: it may do everything; see SimulatorPermissions.swift). Saved
        /// states without them take the scenario's.
        var acls: [Scenario.ACL]? = nil
        /// Boot behaviours set by tests over the scenario's `boot:` (nil: none; SimulatorBoot.swift).
        var bootOverrides: [Int: Scenario.BootBehaviour]? = nil
        /// The last ``SimGuest/dataGeneration`` handed out (nil: none yet).
        var dataCounter: Int? = nil

        // Everything but the listing cache, which is rebuilt on demand.
        private enum CodingKeys: String, CodingKey {
            case guests, tasks, taskOrder, unsettled, journal, faults, restoreFails, targetUsed, rng, pid, taskFailureProbability, idRng, acls
            case bootOverrides, dataCounter
        }
    }

    /// What `pbs-standby simulator --state-dir` writes at stop and reads at start, so that a
    /// stopped and restarted simulator still has its guests, running tasks, journal and token —
    /// as PVE's tasks and guests outlive a pveproxy restart. Start it with the same scenario.
    public struct Saved: Codable, Sendable {
        /// Simulated time when saved.
        public var time: Double
        /// Wall-clock time when saved (an accelerated clock moves on by the downtime).
        public var savedAt: Double
        /// The simulator's start time (backup histories are laid out from it).
        public var startTime: Double
        /// The node's name, to refuse a saved state of another scenario.
        public var node: String
        var token: String
        var state: State
    }

    /// The state to save now.
    public func saved() -> Saved {
        Saved(time: clock.now(), savedAt: Date().timeIntervalSince1970, startTime: startTime, node: scenario.node,
              token: token.fullText, state: state.withLock { $0 })
    }

    /// A simulator resuming from a saved state (`clock` should continue from `saved.time`).
    /// Throws when the state belongs to a scenario with another node name or an unreadable token.
    public init(scenario: Scenario, clock: any EngineClock, saved: Saved, token: APIToken? = nil) throws {
        guard saved.node == scenario.node else {
            throw SimulatorError("the saved state is of node '\(saved.node)', the scenario's node is '\(scenario.node)'")
        }
        self.scenario = scenario
        self.clock = clock
        self.startTime = saved.startTime
        images = SimulatorImages(scenario: scenario)
        do { self.token = try token ?? APIToken(parsing: saved.token) } catch { throw SimulatorError("the saved token is unreadable: \(error)") }
        var st = saved.state
        // States saved before guests had a node: every guest was on this node.
        for (vmid, g) in st.guests where g.node.isEmpty { st.guests[vmid]?.node = scenario.node }
        if st.acls == nil { st.acls = Self.normalized(scenario.acls) }
        state = Mutex(st)
    }

    /// Creates a simulator; the token is random unless given.
    public init(scenario: Scenario, clock: any EngineClock, token: APIToken? = nil) {
        self.scenario = scenario
        self.clock = clock
        self.startTime = clock.now()
        images = SimulatorImages(scenario: scenario)
        var rng = SplitMix64(state: scenario.seed)
        let secret = (0..<4).map { _ in String(rng.next(), radix: 16) }.joined(separator: "-")
        self.token = token ?? (try! APIToken(parsing: "pbs-standby@pve!standby=\(secret)"))
        var s = State(faults: scenario.faults, restoreFails: Set(scenario.backedUp.filter(\.restoreFails).map(\.vmid)),
                      targetUsed: Dictionary(uniqueKeysWithValues: scenario.targetStorages.map { ($0.id, $0.used) }),
                      rng: rng, taskFailureProbability: scenario.taskFailureProbability)
        s.idRng = SplitMix64(state: scenario.seed ^ Self.idStreamSalt)
        s.acls = Self.normalized(scenario.acls)
        for g in scenario.existing { s.guests[g.vmid] = Self.simGuest(g, scenario: scenario, &s) }
        state = Mutex(s)
    }

    /// Mixed into the scenario seed for the `vmgenid` stream ("vmgenid" in ASCII).
    static let idStreamSalt: UInt64 = 0x766D_6765_6E69_6400

    static func simGuest(_ g: Scenario.ExistingGuest, scenario: Scenario, _ s: inout State) -> SimGuest {
        // PVE gives every new VM a vmgenid [unverified: the reference states it for restores, §3.1].
        SimGuest(vmid: g.vmid, type: g.type, name: g.name, status: g.status, lock: g.lock,
                 tags: g.tags, description: g.description, protection: g.protection,
                 disks: g.disks, storage: scenario.targetStorages.first?.id ?? "local-lvm",
                 node: g.node ?? scenario.node, vmgenid: g.type == .vm ? newVMGenID(&s, seed: scenario.seed) : nil, onboot: g.onboot)
    }

    /// A fresh `vmgenid`: a random (version 4) UUID in lower-case 8-4-4-4-12 form, as PVE writes
    /// it to the config (§3.1 step 2) [unverified: the UUID version], drawn from the state's
    /// SplitMix64 id stream so that runs are reproducible.
    static func newVMGenID(_ s: inout State, seed: UInt64) -> String {
        var r = s.idRng ?? SplitMix64(state: seed ^ idStreamSalt)
        var hi = r.next(), lo = r.next()
        s.idRng = r
        hi = (hi & ~0xF000) | 0x4000  // version 4
        lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000  // RFC 4122 variant
        return String(format: "%08llx-%04llx-%04llx-%04llx-%012llx",
                      hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48, lo & 0xFFFF_FFFF_FFFF)
    }

    func newVMGenID(_ s: inout State) -> String { Self.newVMGenID(&s, seed: scenario.seed) }

    // MARK: - Test and demo controls

    /// Every mutating call so far.
    public func journal() -> [JournalEntry] { state.withLock { $0.journal } }

    /// Adds a fault rule.
    public func addFault(_ fault: Scenario.Fault) { state.withLock { $0.faults.append(fault) } }

    /// Removes every fault rule.
    public func clearFaults() { state.withLock { $0.faults.removeAll() } }

    /// Makes restores of a backed-up guest fail (or succeed again).
    public func setRestoreFails(_ vmid: Int, _ fails: Bool) {
        state.withLock { s in if fails { s.restoreFails.insert(vmid) } else { s.restoreFails.remove(vmid) } }
    }

    /// Ends a running task now as a signal does (pvesh forwards SIGTERM to its worker, reference
    /// §13.2): `TASK ERROR: interrupted by signal`. A restore's end effect is that of a failed
    /// restore — a forced VM restore has freed the old disks already (a stub config is left), a CT
    /// restore destroys the container (§3.1 step 3, §3.2). False when no such task runs.
    public func killTask(_ upid: UPID) -> Bool {
        let now = clock.now()
        return state.withLock { s in
            guard var task = s.tasks[upid.description], task.end > now else { return false }
            task.end = now
            task.lines = task.lines.filter { $0.0 <= now } + [(now, "TASK ERROR: interrupted by signal")]
            task.exitStatus = "interrupted by signal"
            switch task.effect {
            case .restoreSucceeded(let vmid, let type, _, _, _, let disks, let storage, _, _, let diskStorages, _):
                // The new volumes, counted when the task began, are freed again (§3.1 step 3, §3.2).
                var release: [String: Int64] = [:]
                for (i, d) in disks.enumerated() { release[i < (diskStorages?.count ?? 0) ? diskStorages![i] : storage, default: 0] += d }
                task.effect = type == .vm ? .restoreFailedVM(vmid: vmid, release: release) : .restoreFailedCT(vmid: vmid, release: release)
            case .setStatus, .destroy:
                task.effect = .none
            case .snapshotCreated, .snapshotRolledBack, .snapshotDeleted:
                // A killed snapshot worker commits nothing and leaves its lock (AbstractConfig.pm
                // sets it in the worker and removes it only at the end) [unverified: not run].
                task.effect = .none
            case .cloneFinished(let source, let newid):
                // The clone worker's SIGTERM handler dies "interrupted by signal"; its cleanup frees
                // the new volumes and the config (qemu-server API2/Qemu.pm:4678-4700; pve-container
                // API2/LXC.pm:2249-2272, which also unlocks the source).
                task.effect = .cloneFailed(source: source, newid: newid, release: s.guests[newid]?.usage ?? [:])
                task.lines[task.lines.count - 1].1 = "TASK ERROR: clone failed: interrupted by signal"
                task.exitStatus = "clone failed: interrupted by signal"
            default: break
            }
            s.tasks[upid.description] = task
            settle(&s, now: now)
            return true
        }
    }

    /// Makes restores of a backed-up guest end `TASK WARNINGS: n` (as a CT with raw `lxc.*` keys
    /// restored by a token does, reference §13.1); 0 ends them `TASK OK` again.
    public func setRestoreWarnings(_ vmid: Int, _ n: Int) { state.withLock { $0.restoreWarnings[vmid] = n > 0 ? n : nil } }

    /// Makes a target storage inactive on this node (an unmounted disk, a failed iSCSI session) or
    /// active again: listed with `active: 0`, and a restore onto it fails inside the task after a
    /// forced VM restore freed the old disks (reference §13.4).
    public func setStorageActive(_ id: String, _ active: Bool) {
        state.withLock { s in if active { s.inactiveStorages.remove(id) } else { s.inactiveStorages.insert(id) } }
    }

    /// Sets the probability that any restore fails midway.
    public func setTaskFailureProbability(_ p: Double) { state.withLock { $0.taskFailureProbability = p } }

    /// Puts a guest on the node (or replaces it), as an operator would.
    public func putGuest(_ g: Scenario.ExistingGuest) {
        state.withLock { s in s.guests[g.vmid] = Self.simGuest(g, scenario: scenario, &s) }
    }

    /// Changes a guest's power state or lock directly (an operator outside pbs-standby).
    /// A change to `running` counts as a start now (its boot begins, SimulatorBoot.swift).
    public func modifyGuest(_ vmid: Int, status: String? = nil, lock: String?? = nil, protection: Bool? = nil) {
        let now = clock.now()
        state.withLock { s in
            guard var g = s.guests[vmid] else { return }
            if let lock { g.lock = lock }
            if let protection { g.protection = protection }
            s.guests[vmid] = g
            if let status {
                if status == "running" || status == "stopped" { setPowerState(&s, vmid, running: status == "running", at: now) }
                else { s.guests[vmid]?.status = status }
            }
        }
    }

    /// A snapshot of a guest as the API would show it now (nil when absent): tasks that ended by
    /// now have taken effect, `status` is `unknown` shortly after a restore (§5.1), `node` is the
    /// node holding it.
    public func guestSnapshot(_ vmid: Int) -> GuestResource? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid].map { GuestResource(vmid: $0.vmid, type: $0.type, node: $0.node, status: $0.visibleStatus(at: now),
                                               name: $0.name, lock: $0.lock, tags: $0.tags) }
        }
    }

    /// The description of a guest (for marker checks in tests).
    public func guestDescription(_ vmid: Int) -> String? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid]?.description
        }
    }

    /// Tasks that are still running now.
    public func runningTaskCount() -> Int {
        let now = clock.now()
        return state.withLock { s in s.tasks.values.filter { $0.end > now }.count }
    }

    // MARK: - Dispatch

    /// Handles one API call (`path` without `/api2/json`). Mutating calls are journaled.
    public func handle(_ method: APIMethod, _ path: String, _ params: [(String, String)]) -> SimResult {
        let now = clock.now()
        let p = Dictionary(params, uniquingKeysWith: { _, last in last })
        return state.withLock { s in
            settle(&s, now: now)
            if let fault = pickFault(&s, method: method, path: path) {
                let r = SimResult.error(status: fault.status, message: fault.message + "\n", errors: [:])
                if method != .get { journal(&s, now, method, path, p, status: fault.status) }
                return r
            }
            let result = route(&s, now: now, method, path, p)
            trim(&s)
            if method != .get {
                let status: Int
                if case .error(let st, _, _) = result { status = st } else { status = 200 }
                journal(&s, now, method, path, p, status: status)
            }
            return result
        }
    }

    /// The delay a matching slow-answer fault asks for (seconds), consumed by the HTTP frontend.
    public func pendingDelay(_ method: APIMethod, _ path: String) -> Double {
        state.withLock { s in
            s.faults.first { f in f.delay > 0 && (f.method == nil || f.method == method.rawValue) && (f.path.map { path.contains($0) } ?? true) }?.delay ?? 0
        }
    }

    /// Whether the matching slow-answer fault delays the answer after the call was carried out.
    public func delaysAfterHandling(_ method: APIMethod, _ path: String) -> Bool {
        state.withLock { s in
            s.faults.first { f in f.delay > 0 && (f.method == nil || f.method == method.rawValue) && (f.path.map { path.contains($0) } ?? true) }?.after ?? false
        }
    }

    /// Bounds memory for long runs: the journal keeps the last 20,000 calls, finished tasks the
    /// last 1,000 with their logs (older UPIDs then answer "no such task", like a rotated PVE
    /// task log).
    private func trim(_ s: inout State) {
        if s.journal.count > 24_000 { s.journal.removeFirst(s.journal.count - 20_000) }
        if s.taskOrder.count > 1_200 {
            let drop = s.taskOrder.count - 1_000
            let unsettled = Set(s.unsettled)
            var kept: [String] = []
            for (i, key) in s.taskOrder.enumerated() {
                if i < drop && !unsettled.contains(key) { s.tasks[key] = nil } else { kept.append(key) }
            }
            s.taskOrder = kept
        }
    }

    private func journal(_ s: inout State, _ now: Double, _ method: APIMethod, _ path: String, _ p: [String: String], status: Int) {
        let vmid = p["vmid"].flatMap(Int.init) ?? Self.vmidInPath(path)
        s.journal.append(JournalEntry(time: now, method: method.rawValue, path: path, vmid: vmid, parameters: p, status: status))
    }

    static func vmidInPath(_ path: String) -> Int? {
        let parts = path.split(separator: "/")
        guard parts.count >= 4, parts[0] == "nodes", parts[2] == "qemu" || parts[2] == "lxc" else { return nil }
        return Int(parts[3])
    }

    private func pickFault(_ s: inout State, method: APIMethod, path: String) -> Scenario.Fault? {
        for i in s.faults.indices {
            let f = s.faults[i]
            guard f.delay == 0 || f.status != 0 else { continue }
            guard f.method == nil || f.method == method.rawValue, f.path.map({ path.contains($0) }) ?? true else { continue }
            if let t = f.times, t <= 0 { continue }
            if f.probability < 1, Double(s.rng.next() % 1_000_000) / 1_000_000 >= f.probability { continue }
            if f.status == 200 { continue }  // a pure delay rule
            if let t = f.times { s.faults[i].times = t - 1 }
            return f
        }
        return nil
    }

    private func route(_ s: inout State, now: Double, _ method: APIMethod, _ path: String, _ p: [String: String]) -> SimResult {
        let parts = path.split(separator: "/").map(String.init)
        switch (method, parts.count) {
        case (.get, 1) where parts[0] == "nodes": return .ok(nodesList())
        case (.get, 2) where parts == ["cluster", "resources"]: return .ok(resources(&s, now: now, type: p["type"]))
        case (.get, 1) where parts[0] == "version": return .ok(.object(["version": .string("9.2.11"), "release": .string("9.2")]))
        case (.get, 2) where parts == ["access", "permissions"]: return accessPermissions(s, p)
        case (.get, 1) where parts[0] == "storage": return .ok(storageConfigs(type: p["type"]))
        default: break
        }
        guard parts.count >= 2, parts[0] == "nodes" else { return notImplemented(method, path) }
        guard parts[1] == scenario.node else {
            return .error(status: 595, message: "No route to host\n", errors: [:])  // [unverified] 595 for other nodes
        }
        let rest = Array(parts.dropFirst(2))
        switch (method, rest.count, rest.first) {
        case (.get, 1, "storage"): return .ok(storageList(s))
        case (.get, 3, "storage") where rest[2] == "status": return storageStatus(s, rest[1])
        case (.get, 3, "storage") where rest[2] == "content": return content(&s, now: now, storage: rest[1], p)
        case (.get, _, "storage") where rest.count >= 4 && rest[2] == "content":
            return volumeInfo(s, now: now, storage: rest[1], volume: rest[3...].joined(separator: "/"))
        case (.get, 1, "tasks"): return .ok(taskList(s, now: now, p))
        case (.get, 2, "vzdump") where rest[1] == "extractconfig": return extractConfig(now: now, p)
        case (.get, 3, "tasks") where rest[2] == "status": return taskStatus(s, now: now, rest[1])
        case (.get, 3, "tasks") where rest[2] == "log": return taskLog(s, now: now, rest[1], p)
        case (.post, 1, "qemu"): return restoreVM(&s, now: now, p)
        case (.post, 1, "lxc"): return restoreCT(&s, now: now, p)
        case (.get, 1, "status"): return nodeStatus(s, now: now)
        case (_, 2, "qemu"), (_, 2, "lxc"), (_, 3, "qemu"), (_, 3, "lxc"), (_, 4, "qemu"), (_, 4, "lxc"), (_, 5, "qemu"), (_, 5, "lxc"):
            guard let type = GuestType(apiType: rest[0]), let vmid = Int(rest[1]) else { return notImplemented(method, path) }
            return guestCall(&s, now: now, method, type, vmid, Array(rest.dropFirst(2)), p, path: path)
        default: return notImplemented(method, path)
        }
    }

    func notImplemented(_ method: APIMethod, _ path: String) -> SimResult {
        .error(status: 501, message: "Method '\(method.rawValue) /\(path.hasPrefix("/") ? String(path.dropFirst()) : path)' not implemented\n", errors: [:])
    }

    // MARK: - Nodes, storages, backups (reference §1, §2)

    private func nodesList() -> JSONValue {
        .array([.object(["node": .string(scenario.node), "status": .string("online"), "type": .string("node"),
                         "ssl_fingerprint": .string(servedFingerprint.withLock { $0 } ?? "")])])
    }

    private func storageList(_ s: State) -> JSONValue {
        var out: [JSONValue] = []
        for p in scenario.pbsStorages {
            out.append(.object(["storage": .string(p.id), "type": .string("pbs"), "content": .string("backup"),
                                "active": .number(1), "enabled": .number(1), "shared": .number(1),
                                "total": .number(tib * 100), "used": .number(tib * 10), "avail": .number(tib * 90)]))
        }
        for t in scenario.targetStorages { out.append(storageObject(s, t)) }
        return .array(out)
    }

    /// `GET /storage[?type=]`: the storage.cfg sections (pve-storage API2/Storage/Config.pm `index`,
    /// lines 121-172: the parsed section with `storage`, `digest`, `content`; a pbs storage shows
    /// `server`, `datastore`, `namespace`, never its password).
    private func storageConfigs(type: String?) -> JSONValue {
        var out: [JSONValue] = []
        for p in scenario.pbsStorages where type == nil || type == "pbs" {
            var o: [String: JSONValue] = ["storage": .string(p.id), "type": .string("pbs"), "content": .string("backup"),
                                          "server": .string(p.server), "datastore": .string(p.datastore),
                                          "username": .string("pbs-standby@pbs"), "digest": .string(String(repeating: "0", count: 40))]
            if let ns = p.namespace { o["namespace"] = .string(ns) }
            out.append(.object(o))
        }
        for t in scenario.targetStorages where type == nil || type == t.type {
            out.append(.object(["storage": .string(t.id), "type": .string(t.type), "content": .string(t.effectiveContent.joined(separator: ",")),
                                "digest": .string(String(repeating: "0", count: 40))]))
        }
        return .array(out)
    }

    private func storageObject(_ s: State, _ t: Scenario.TargetStorage) -> JSONValue {
        let used = s.targetUsed[t.id] ?? t.used
        let content = t.effectiveContent.joined(separator: ",")  // a stock `local` has no rootdir (§13.4)
        let active: Double = s.inactiveStorages.contains(t.id) ? 0 : 1
        return .object(["storage": .string(t.id), "type": .string(t.type), "content": .string(content),
                        "active": .number(active), "enabled": .number(1), "shared": .number(0),
                        "total": .number(Double(t.total)), "used": .number(Double(used)), "avail": .number(Double(max(0, t.total - used)))])
    }

    private func storageStatus(_ s: State, _ id: String) -> SimResult {
        if let t = scenario.targetStorages.first(where: { $0.id == id }) { return .ok(storageObject(s, t)) }
        if scenario.pbsStorages.contains(where: { $0.id == id }) {
            return .ok(.object(["type": .string("pbs"), "content": .string("backup"), "active": .number(1), "enabled": .number(1),
                                "total": .number(tib * 100), "used": .number(tib * 10), "avail": .number(tib * 90)]))
        }
        return .error(status: 500, message: "storage '\(id)' does not exist\n", errors: [:])
    }

    /// The backups visible now: for each backed-up guest, snapshots at offset + k·interval
    /// (k ≥ −history relative to the start), listed with size 1 while the backup runs (§2, §8.2),
    /// pruned to `keepLast` complete snapshots.
    func backupEntries(storage: String, now: Double) -> [BackupEntry] {
        var out: [BackupEntry] = []
        for g in scenario.backedUp where g.storage == storage {
            for t in backupTimes(g, now: now) {
                let duration = scenario.backupDuration(g)
                let complete = now >= Double(t) + duration
                let volid = Volid(storage: storage, type: g.type, vmid: g.vmid, backupTime: t)
                out.append(BackupEntry(volid: volid, ctime: t, size: complete ? Self.backupSize(g) : 1,
                                       verification: complete ? g.verification : nil,
                                       notes: complete ? g.notes : nil))
            }
        }
        // PVE sorts by lower-cased volid (§2): storage, then type, then the id as text, then the
        // ISO time (which sorts like the number).
        return out.sorted { a, b in
            let x = a.volid, y = b.volid
            if x.type != y.type { return x.type.rawValue < y.type.rawValue }
            if x.vmid != y.vmid { return String(x.vmid) < String(y.vmid) }
            return x.backupTime < y.backupTime
        }
    }

    /// The size PBS reports for a snapshot: the sum of its archives (disks plus a small config blob).
    static func backupSize(_ g: Scenario.BackedUpGuest) -> Int64 { g.size + 1536 }

    func backupTimes(_ g: Scenario.BackedUpGuest, now: Double) -> [Int] {
        let first = startTime - Double(g.history) * max(g.interval, 1)
        var times: [Int] = []
        if g.interval <= 0 {
            for k in 0..<g.history { times.append(Int(startTime) - (g.history - k) * 3600 + Int(g.offset)) }
            return times
        }
        // Schedule points t ≡ offset (mod interval) in (first, now].
        var t = (first / g.interval).rounded(.down) * g.interval + g.offset.truncatingRemainder(dividingBy: g.interval)
        while t <= first { t += g.interval }
        while t <= now {
            times.append(Int(t))
            t += g.interval
        }
        // keep-last: the newest `keepLast` complete ones plus a running one.
        let duration = scenario.backupDuration(g)
        let complete = times.filter { now >= Double($0) + duration }
        let running = times.filter { now < Double($0) + duration }
        return Array(complete.suffix(scenario.keepLast)) + running
    }

    private func content(_ s: inout State, now: Double, storage: String, _ p: [String: String]) -> SimResult {
        if scenario.targetStorages.contains(where: { $0.id == storage }) { return .ok(.array([])) }
        guard let pbs = scenario.pbsStorages.first(where: { $0.id == storage }) else {
            return .error(status: 500, message: "storage '\(storage)' does not exist\n", errors: [:])
        }
        _ = pbs
        if let c = p["content"], c != "backup" { return .ok(.array([])) }
        if let problem = materializeListed(storage: storage, now: now) { return .error(status: 500, message: problem + "\n", errors: [:]) }
        let vmidFilter = p["vmid"].flatMap(Int.init)
        if vmidFilter == nil, let cached = s.listingCache[storage], now >= cached.from, now < cached.validUntil {
            return .ok(cached.value)
        }
        let result = renderListing(storage: storage, now: now, vmidFilter: vmidFilter)
        if vmidFilter == nil { s.listingCache[storage] = (nextListingChange(storage: storage, now: now), now, result) }
        return .ok(result)
    }

    /// The next time the listing of `storage` changes: a scheduled backup starts or a running one completes.
    private func nextListingChange(storage: String, now: Double) -> Double {
        var next = Double.infinity
        for g in scenario.backedUp where g.storage == storage && g.interval > 0 {
            let duration = scenario.backupDuration(g)
            var t = ((now - g.offset) / g.interval).rounded(.down) * g.interval + g.offset
            // Completions of backups that started up to `duration` ago, then the next start.
            while t <= now + g.interval {
                if t > now { next = min(next, t) }
                if t + duration > now { next = min(next, t + duration) }
                t += g.interval
            }
            // Older starts still running (duration longer than the interval).
            var back = t - g.interval
            while back + duration > now && back > now - duration - g.interval { next = min(next, back + duration); back -= g.interval }
        }
        return next
    }

    private func renderListing(storage: String, now: Double, vmidFilter: Int?) -> JSONValue {
        let entries = backupEntries(storage: storage, now: now).filter { vmidFilter == nil || $0.volid.vmid == vmidFilter }
        return .array(entries.map { e in
            var o: [String: JSONValue] = [
                "volid": .string(e.volid.description), "format": .string(e.volid.type == .vm ? "pbs-vm" : "pbs-ct"),
                "content": .string("backup"), "subtype": .string(e.volid.type.apiType), "vmid": .number(Double(e.volid.vmid)),
                "ctime": .number(Double(e.ctime)), "size": .number(Double(e.size)),
            ]
            if let v = e.verification {
                o["verification"] = .object(["state": .string(v), "upid": .string("UPID:pbs:00000001:00000001:\(String(format: "%08X", e.ctime + 600)):verify_snapshot:store1:root@pam:")])
            }
            if let n = e.notes { o["notes"] = .string(n) }
            return .object(o)
        })
    }

    // MARK: - Guests (reference §5)

    private func resources(_ s: inout State, now: Double, type: String?) -> JSONValue {
        if let type, type != "vm" { return .array([]) }
        return .array(s.guests.values.sorted { $0.vmid < $1.vmid }.map { g in
            let status = g.visibleStatus(at: now)
            var o: [String: JSONValue] = [
                "id": .string("\(g.type.apiType)/\(g.vmid)"), "vmid": .number(Double(g.vmid)), "type": .string(g.type.apiType),
                "node": .string(g.node), "status": .string(status), "template": .number(0),
                "maxdisk": .number(Double(g.disks.first ?? 0)),  // the boot disk (VM) or rootfs (CT) only (§13.4)
                // `maxmem` from the config's `memory`, `mem` all of it while running (SimulatorBoot.swift).
                "maxcpu": .number(2), "maxmem": .number(Double(Self.memoryMiB(g) << 20)),
                "mem": .number(g.status == "running" ? Double(Self.memoryMiB(g) << 20) : 0),
                "cpu": .number(0), "disk": .number(0), "uptime": .number(Double(uptime(g, now: now))),
            ]
            if status != "unknown" { o["name"] = .string(g.name) }  // no name until pvestatd reports (§5.1)
            if let l = g.lock { o["lock"] = .string(l) }
            if !g.tags.isEmpty { o["tags"] = .string(g.tags.joined(separator: ";")) }
            return .object(o)
        })
    }

    private func guestCall(_ s: inout State, now: Double, _ method: APIMethod, _ type: GuestType, _ vmid: Int,
                           _ rest: [String], _ p: [String: String], path: String) -> SimResult {
        // A guest whose config lives on another node has no config file under this node's
        // directory: the same answer as for a missing guest (§5.2 `load_config`, `cfs_config_path`).
        guard let g = s.guests[vmid], g.type == type, g.node == scenario.node else {
            let file = type == .vm ? "qemu-server" : "lxc"
            return .error(status: 500, message: "Configuration file 'nodes/\(scenario.node)/\(file)/\(vmid).conf' does not exist\n", errors: [:])
        }
        let kind = type == .vm ? "VM" : "CT"
        if rest.first == "snapshot" { return snapshotCall(&s, now: now, method, g, Array(rest.dropFirst()), p, path: path) }
        if type == .vm, rest.first == "agent" { return agentCall(s, now: now, method, g, Array(rest.dropFirst()), path: path) }
        switch (method, rest) {
        case (.get, ["config"]):
            return .ok(.object(configObject(g, current: p["current"].flatMap(Self.parseBoolean) ?? false)))
        case (.put, ["config"]):
            return putConfig(&s, g, kind: kind, p)
        case (.post, ["clone"]):
            return cloneGuest(&s, now: now, g, p)
        case (.get, ["status", "current"]):
            return .ok(statusCurrent(g, now: now))
        case (.post, ["status", "start"]):
            let lockMsg = g.lock.map { "\(kind) is locked (\($0))" }
            return .ok(.string(newTask(&s, now: now, type: type == .vm ? "qmstart" : "vzstart", vmid: vmid, duration: 2,
                                       lines: [], error: lockMsg, effect: lockMsg == nil ? .setStatus(vmid: vmid, status: "running") : .none).description))
        case (.post, ["status", "resume"]) where type == .vm:
            return resumeVM(&s, now: now, g)
        case (.post, ["status", "stop"]):
            // Stopping a stopped CT is a synchronous 500 (§13.5); a stopped VM's stop is a no-op task.
            if type == .ct, g.status != "running" { return .error(status: 500, message: "CT \(vmid) not running\n", errors: [:]) }
            // The lock check happens inside the task (§5.4).
            let lockMsg = g.lock.map { "\(kind) is locked (\($0))" }
            return .ok(.string(newTask(&s, now: now, type: type == .vm ? "qmstop" : "vzstop", vmid: vmid, duration: 2,
                                       lines: [], error: lockMsg, effect: lockMsg == nil ? .setStatus(vmid: vmid, status: "stopped") : .none).description))
        case (.delete, []):
            if g.protection { return .error(status: 500, message: "can't remove \(kind) \(vmid) - protection mode enabled\n", errors: [:]) }
            if g.status == "running" {
                return .error(status: 500, message: type == .vm ? "VM \(vmid) is running - destroy failed\n" : "unable to destroy CT \(vmid) - container is running\n", errors: [:])
            }
            if type == .ct, let l = g.lock { return .error(status: 500, message: "CT is locked (\(l))\n", errors: [:]) }
            let lockMsg = type == .vm ? g.lock.map { "VM is locked (\($0))" } : nil
            return .ok(.string(newTask(&s, now: now, type: type == .vm ? "qmdestroy" : "vzdestroy", vmid: vmid, duration: 3,
                                       lines: [], error: lockMsg, effect: lockMsg == nil ? .destroy(vmid: vmid) : .none).description))
        default:
            return notImplemented(method, path)
        }
    }

    /// PVE's JSONSchema booleans: `1|true|yes|on` and `0|false|no|off`, any case [unverified: §5.3
    /// shows 0/1 only].
    static func parseBoolean(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: return nil
        }
    }

    /// PVE stores tags lower-cased, sorted, de-duplicated, `;`-joined (§5.3).
    static func normalizeTags(_ text: String) -> [String] {
        Array(Set(ProxmoxClient.splitTags(text).map { $0.lowercased() })).sorted()
    }
}
