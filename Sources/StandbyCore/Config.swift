import ConfigSupport
import Foundation
import ProxmoxModel

/// The service configuration (`shared/design/CONFIG.md`), validated: every key path and line of a
/// bad value is named, unknown keys are errors.
public struct StandbyConfig: Sendable {
    /// How PVE is reached.
    public enum Transport: String, Sendable { case https, pvesh }

    /// How PVE is reached (`proxmox:`): transport, endpoint, credentials and the standby node.
    public struct Proxmox: Sendable {
        /// `https` (API token) or `pvesh` (local, as root@pam).
        public var transport: Transport = .https
        /// The PVE API's base URL (https transport); `http://` only to a literal loopback address.
        public var url: String = "https://127.0.0.1:8006"
        /// The API token file, one line `USER@REALM!TOKENID=SECRET`; `PBS_STANDBY_TOKEN` wins when set.
        public var tokenFile: String?
        /// SHA-256 fingerprint the PVE certificate is pinned to (PVE's `AB:CD:…` format, checked at parse).
        public var fingerprint: String?
        /// CA file the PVE certificate is checked against when no fingerprint is set (else the system's CAs).
        public var caFile: String?
        /// The standby node; default: the host name given to ``StandbyConfig/parse(yaml:hostName:)``
        /// (the caller looks it up: this module reads no files and asks the system nothing).
        public var node: String = "localhost"
        /// Timeout of each HTTPS connection and request to PVE (unused with pvesh).
        public var timeout: Duration = .seconds(30)
        /// pvesh executable (tests point it at the stand-in).
        public var pveshPath: String = "/usr/bin/pvesh"
        /// pvesh worker calls (restore, start, stop, destroy) run in transient systemd units, outside
        /// the service's sandbox and cgroup, so that no stop of the service interrupts them.
        public var pveshDetach = true
        /// The systemd-run executable (tests point it at a stand-in).
        public var systemdRunPath: String = "/usr/bin/systemd-run"
    }

    /// How restores run (`restore:`): workers, cadence, eligibility, safety margins and retries.
    public struct Restore: Sendable {
        /// Restores running at the same time, across all sources (1–64).
        public var workers = 1
        /// The time between reconcile passes (`poll_interval`, at least 1 s); also the fastest listing gap.
        public var pollInterval: Duration = .seconds(30)
        /// The longest gap between two backup listings of a source when nothing changes and no
        /// backup is due (``ListingCadence``); equal to `poll_interval`: list every pass.
        public var listingMaxInterval: Duration = .seconds(300)
        /// Minimum age of a backup (from its backup time) before it is restored; zero: no wait.
        public var settle: Duration = .zero
        /// Start each copy after its restore; off by default: copies stay stopped until a failover.
        public var startAfterRestore = false
        /// Blue/green: restore into the other slot and keep the last good copy until the new one is complete.
        public var keepPrevious = false
        /// With `keep_previous`: the second slot's VMID is the primary VMID plus this offset.
        public var previousVmidOffset = 100_000
        /// Restore only backups whose PBS verification state is `ok`.
        public var requireVerified = false
        /// Default RPO target: the restore lag alerts compare against (sources and guests may override it).
        public var rpoTarget: Duration = .seconds(7200)
        /// How long a restore task is followed before it fails as `timeout` (it is left running in PVE).
        public var taskTimeout: Duration = .seconds(12 * 3600)
        /// How often a running task's status and log are read; nil: a quarter of
        /// `poll_interval`, between 0.5 s and 5 s.
        public var taskPollInterval: Duration?
        /// Count guests without any marker at a target VMID as ours (migrating from the old script).
        public var adopt = false
        /// Backoff steps after consecutive failures (pvesr-like: 5, 10, 15, 30 min).
        public var backoff: [Duration] = [.seconds(300), .seconds(600), .seconds(900), .seconds(1800)]
        /// Attempts per backup before waiting for a newer one.
        public var retriesPerBackup = 5
        /// Free space required beyond the backup size, as a fraction of it.
        public var spaceMargin = 0.10
        /// A delta's disk writes run in transient systemd units (`proxmox.systemd_run_path`), so
        /// a stop or restart of the service never interrupts them; false: children of the service
        /// in their own session (tests, machines without systemd).
        public var deltaDetach = true
        /// `lvchange`, to activate an LVM-thin copy's inactive volume before a delta.
        public var lvchangePath = "/sbin/lvchange"
    }

    /// One PVE storage of type pbs whose backups are restored (an entry of `sources:`).
    public struct Source: Sendable {
        /// The PVE storage id of the PBS storage (the `source` label of the metrics).
        public var storage: String
        /// Storage the restored guest goes to; nil: VM disks where the backup had them, a CT on `local`.
        public var targetStorage: String?
        /// Backed-up VMIDs restored from this source (default: all).
        public var include: Selection = .all
        /// Backed-up VMIDs left out even when included (default: none).
        public var exclude: Selection = .none
        /// Added to the backed-up VMID to give the restored (primary) VMID.
        public var vmidOffset = 0
        /// Scheduling priority of the source's guests, higher first (-1000…1000).
        public var priority = 0
        /// RPO target of the source's guests; nil: `restore.rpo_target`.
        public var rpoTarget: Duration?
        /// At most this many restores of this source at once; nil: only `restore.workers` limits it.
        public var workers: Int?
        /// PVE pool restored guests are added to (the token's ACL can then be on `/pool/<id>`).
        public var pool: String?
        /// The PBS datastore directory behind this storage, readable on the standby node (PBS
        /// installed here, or the datastore mounted read-only): enables delta restores.
        public var datastorePath: String?
        /// The datastore namespace the storage's backups live in (PVE storage `namespace`; empty: root).
        public var datastoreNamespace = ""
        /// `auto`: a VM copy is brought up to date by writing only the changed chunks when it is
        /// eligible (issue 15), else PVE restores it in full; `off`: always PVE's restore. Nil
        /// (not configured): `auto` when ``datastorePath`` is set, else `off`.
        public var delta: DeltaMode?
        /// Run a delta on storage that cannot snapshot the copy (raw files on `dir`, thick LVM):
        /// a crash mid-delta then leaves the copy unusable until the delta is run again.
        public var deltaWithoutSnapshot = false
        /// The line of the source's entry in the config file (named by slot-map errors).
        public var line: Int?
        /// A source with the defaults: every VMID selected, no offset, priority 0.
        public init(storage: String) { self.storage = storage }

        /// Whether delta restores are tried for this source's VMs (an explicit `delta: auto`
        /// without a datastore path is tried too, and falls back as `no_datastore`, visibly).
        public var deltaEnabled: Bool { (delta ?? (datastorePath != nil ? .auto : .off)) == .auto }
    }

    /// `sources[].delta`.
    public enum DeltaMode: String, Sendable, CaseIterable {
        /// Delta when eligible, full restore otherwise (the reason is recorded).
        case auto
        /// Always PVE's full restore.
        case off
    }

    /// Per-guest overrides (`guests:`, by backed-up VMID); nil keeps the source's or default value.
    public struct GuestOverride: Sendable {
        /// Overrides the source's priority.
        public var priority: Int?
        /// Overrides the source's or default RPO target.
        public var rpoTarget: Duration?
        /// Overrides `restore.start_after_restore`.
        public var startAfterRestore: Bool?
        /// Overrides the source's `target_storage`.
        public var targetStorage: String?
        /// `drill: false`: this guest is never drilled.
        public var drill: Bool?
        /// An override of the given settings only.
        public init(priority: Int? = nil, rpoTarget: Duration? = nil, startAfterRestore: Bool? = nil, targetStorage: String? = nil) {
            self.priority = priority
            self.rpoTarget = rpoTarget
            self.startAfterRestore = startAfterRestore
            self.targetStorage = targetStorage
        }
    }

    /// How PVE is reached (`proxmox:`).
    public var proxmox = Proxmox()
    /// The SQLite state file (`state.path`).
    public var statePath = "/var/lib/pbs-standby/state.db"
    /// Restore settings (`restore:`).
    public var restore = Restore()
    /// The PBS storages restored from (`sources:`, at least one after parsing).
    public var sources: [Source] = []
    /// Per-guest overrides by backed-up VMID (`guests:`).
    public var guests: [Int: GuestOverride] = [:]
    /// `web.listen_address`; the flag `--web.listen-address` wins, nil and no flag: `:8216`.
    public var webListenAddress: String?
    /// `web.config_file`: an exporter-toolkit web config (TLS, basic auth); the flag wins.
    public var webConfigFile: String?
    /// DR drills (`drill:`).
    public var drill = Drill()

    /// The defaults, without any source (``parse(yaml:hostName:)`` requires one).
    public init() {}

    /// Parses and validates YAML text; `hostName` (its first label) is the node when `proxmox.node`
    /// is not set.
    public static func parse(yaml: String, hostName: String = "localhost") throws(ConfigError) -> StandbyConfig {
        let root = try StrictMapping.parse(yaml: yaml)
        var c = StandbyConfig()
        c.proxmox.node = hostName.split(separator: ".").first.map(String.init) ?? hostName
        if let p = try root.mapping("proxmox") {
            if let t = try p.string("transport") {
                guard let tr = Transport(rawValue: t) else { throw p.error("transport", p.node("transport"), "expected https or pvesh, got '\(t)'") }
                c.proxmox.transport = tr
            }
            c.proxmox.url = try p.string("url") ?? c.proxmox.url
            c.proxmox.tokenFile = try p.string("token_file")
            c.proxmox.fingerprint = try p.string("fingerprint")
            if let fp = c.proxmox.fingerprint, Fingerprint.normalize(fp) == nil {
                throw p.error("fingerprint", p.node("fingerprint"), "expected a SHA-256 fingerprint: 32 hex pairs joined by ':'")
            }
            c.proxmox.caFile = try p.string("ca_file")
            c.proxmox.node = try p.string("node") ?? c.proxmox.node
            c.proxmox.timeout = try p.duration("timeout") ?? c.proxmox.timeout
            c.proxmox.pveshPath = try p.string("pvesh_path") ?? c.proxmox.pveshPath
            c.proxmox.pveshDetach = try p.bool("pvesh_detach") ?? c.proxmox.pveshDetach
            c.proxmox.systemdRunPath = try p.string("systemd_run_path") ?? c.proxmox.systemdRunPath
            if c.proxmox.transport == .https {
                do { try EndpointURL(parsing: c.proxmox.url).requireConfidentialTransport() } catch {
                    throw p.error("url", p.node("url"), error.reason)
                }
            }
            try p.finish()
        }
        if let s = try root.mapping("state") {
            c.statePath = try s.string("path") ?? c.statePath
            try s.finish()
        }
        if let r = try root.mapping("restore") {
            c.restore.workers = try r.int("workers", range: 1...64) ?? c.restore.workers
            c.restore.pollInterval = try r.duration("poll_interval") ?? c.restore.pollInterval
            if c.restore.pollInterval < .seconds(1) { throw r.error("poll_interval", r.node("poll_interval"), "must be at least 1s") }
            c.restore.listingMaxInterval = try r.duration("listing_max_interval") ?? max(c.restore.pollInterval, c.restore.listingMaxInterval)
            if c.restore.listingMaxInterval < c.restore.pollInterval || c.restore.listingMaxInterval > .seconds(3600) {
                throw r.error("listing_max_interval", r.node("listing_max_interval"), "must be between poll_interval and 1h")
            }
            c.restore.settle = try r.duration("settle") ?? c.restore.settle
            c.restore.startAfterRestore = try r.bool("start_after_restore") ?? false
            c.restore.keepPrevious = try r.bool("keep_previous") ?? false
            c.restore.previousVmidOffset = try r.int("previous_vmid_offset", range: 1...900_000_000) ?? c.restore.previousVmidOffset
            c.restore.requireVerified = try r.bool("require_verified") ?? false
            c.restore.rpoTarget = try r.duration("rpo_target") ?? c.restore.rpoTarget
            c.restore.taskTimeout = try r.duration("task_timeout") ?? c.restore.taskTimeout
            c.restore.taskPollInterval = try r.duration("task_poll_interval")
            c.restore.adopt = try r.bool("adopt") ?? false
            c.restore.retriesPerBackup = try r.int("retries_per_backup", range: 1...1000) ?? c.restore.retriesPerBackup
            c.restore.spaceMargin = try r.double("space_margin", range: 0...10) ?? c.restore.spaceMargin
            c.restore.deltaDetach = try r.bool("delta_detach") ?? c.restore.deltaDetach
            c.restore.lvchangePath = try r.string("lvchange_path") ?? c.restore.lvchangePath
            if let steps = try r.stringList("backoff") {
                c.restore.backoff = try steps.enumerated().map { (i, t) throws(ConfigError) -> Duration in
                    guard let d = parseDuration(t) else { throw ConfigError(path: "restore.backoff[\(i)]", line: r.lineOf("backoff"), message: "expected a duration like 5m") }
                    return d
                }
                if c.restore.backoff.isEmpty { throw r.error("backoff", nil, "needs at least one step") }
            }
            try r.finish()
        }
        guard let sources = try root.sequence("sources"), !sources.isEmpty else {
            throw ConfigError(path: "sources", line: root.lineOf("sources") ?? root.line, message: "at least one source (a PVE storage of type pbs) is required")
        }
        var seen = Set<String>()
        for (i, node) in sources.enumerated() {
            let m = try StrictMapping(node: node, path: "sources[\(i)]")
            guard let storage = try m.string("storage") else { throw ConfigError(path: m.child("storage"), line: m.line, message: "required") }
            guard seen.insert(storage).inserted else { throw m.error("storage", m.node("storage"), "storage '\(storage)' is listed twice") }
            var src = Source(storage: storage)
            src.line = m.line
            src.targetStorage = try m.string("target_storage")
            if let inc = try m.stringList("include") {
                src.include = try Selection.parse(inc, path: m.child("include"), line: m.lineOf("include"))
            }
            if let exc = try m.stringList("exclude") {
                src.exclude = try Selection.parse(exc, path: m.child("exclude"), line: m.lineOf("exclude"))
            }
            src.vmidOffset = try m.int("vmid_offset", range: 0...900_000_000) ?? 0
            src.priority = try m.int("priority", range: -1000...1000) ?? 0
            src.rpoTarget = try m.duration("rpo_target")
            src.workers = try m.int("workers", range: 1...64)
            src.pool = try m.string("pool")
            if let pool = src.pool, pool.range(of: #"^[A-Za-z0-9\-_]+$"#, options: .regularExpression) == nil {
                throw m.error("pool", m.node("pool"), "'\(pool)' is not a PVE pool id (letters, digits, - and _)")
            }
            if let path = try m.string("datastore_path") {
                guard path.hasPrefix("/") else { throw m.error("datastore_path", m.node("datastore_path"), "'\(path)' is not an absolute path") }
                src.datastorePath = path
            }
            if let ns = try m.string("datastore_namespace") {
                guard ns.split(separator: "/", omittingEmptySubsequences: false).allSatisfy({ $0.range(of: #"^[A-Za-z0-9_][A-Za-z0-9._\-]*$"#, options: .regularExpression) != nil }) else {
                    throw m.error("datastore_namespace", m.node("datastore_namespace"), "'\(ns)' is not a PBS namespace (a/b/c: letters, digits, _ . -)")
                }
                src.datastoreNamespace = ns
            }
            if let mode = try m.string("delta") {
                guard let d = DeltaMode(rawValue: mode) else { throw m.error("delta", m.node("delta"), "'\(mode)' is not one of auto, off") }
                src.delta = d
            }
            src.deltaWithoutSnapshot = try m.bool("delta_without_snapshot") ?? false
            try m.finish()
            c.sources.append(src)
        }
        if let g = try root.mapping("guests") {
            for key in g.keys {
                guard let vmid = Int(key), vmidRange.contains(vmid) else { throw g.error(key, nil, "guest keys are backed-up VMIDs (numbers from 100 to 999999999)") }
                guard let m = try g.mapping(key) else { continue }
                c.guests[vmid] = GuestOverride(
                    priority: try m.int("priority", range: -1000...1000), rpoTarget: try m.duration("rpo_target"),
                    startAfterRestore: try m.bool("start_after_restore"), targetStorage: try m.string("target_storage"))
                c.guests[vmid]?.drill = try m.bool("drill")
                try m.finish()
            }
            try g.finish()
        }
        if let d = try root.mapping("drill") { c.drill = try parseDrill(d) }
        if let w = try root.mapping("web") {
            c.webListenAddress = try w.string("listen_address")
            c.webConfigFile = try w.string("config_file")
            try w.finish()
        }
        try root.finish()
        try SlotMap.validate(c)
        return c
    }

    /// Effective settings for one backed-up guest of a source.
    public func effective(source: Source, vmid: Int) -> GuestSettings {
        let o = guests[vmid]
        return GuestSettings(
            targetVmid: vmid + source.vmidOffset,
            targetStorage: o?.targetStorage ?? source.targetStorage,
            priority: o?.priority ?? source.priority,
            rpoTarget: o?.rpoTarget ?? source.rpoTarget ?? restore.rpoTarget,
            startAfterRestore: o?.startAfterRestore ?? restore.startAfterRestore)
    }

    /// Whether a backed-up guest is drilled (every selected guest, unless `guests."VMID".drill: false`).
    public func drillEnabled(vmid: Int) -> Bool { guests[vmid]?.drill ?? true }
}

/// The settings that apply to one guest after source and per-guest overrides.
public struct GuestSettings: Sendable, Equatable {
    /// The VMID restored into: backed-up VMID + source offset (the plan may set the keep_previous slot).
    public var targetVmid: Int
    /// Storage the restored guest goes to; nil: PVE's default for the backup.
    public var targetStorage: String?
    /// Scheduling priority, higher first.
    public var priority: Int
    /// The RPO target the restore lag is compared to (`pbs_standby_rpo_target_seconds`).
    public var rpoTarget: Duration
    /// Start the copy after a successful restore.
    public var startAfterRestore: Bool

    /// Settings as given (``StandbyConfig/effective(source:vmid:)`` computes them from the config).
    public init(targetVmid: Int, targetStorage: String?, priority: Int, rpoTarget: Duration, startAfterRestore: Bool) {
        self.targetVmid = targetVmid
        self.targetStorage = targetStorage
        self.priority = priority
        self.rpoTarget = rpoTarget
        self.startAfterRestore = startAfterRestore
    }
}

/// Which backed-up VMIDs a source covers: ids, ranges (`100-199`) and globs (`4*`, `1?5`).
public struct Selection: Sendable, Equatable {
    /// One list item: a VMID, an inclusive range, or a glob of digits with `*` and `?`.
    enum Item: Sendable, Equatable {
        case id(Int)
        case range(ClosedRange<Int>)
        case glob(String)
    }

    /// The parsed items, in list order.
    var items: [Item]
    /// Matches every VMID (``all``), whatever `items` holds.
    let everything: Bool

    /// Matches every id.
    public static let all = Selection(items: [], everything: true)
    /// Matches nothing.
    public static let none = Selection(items: [], everything: false)

    /// Parses list items; errors name the item.
    public static func parse(_ list: [String], path: String, line: Int?) throws(ConfigError) -> Selection {
        var items: [Item] = []
        for (i, raw) in list.enumerated() {
            let t = raw.trimmingCharacters(in: .whitespaces)
            if let n = Int(t), n > 0 { items.append(.id(n)); continue }
            let parts = t.split(separator: "-")
            if parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]) {
                guard a <= b else { throw ConfigError(path: "\(path)[\(i)]", line: line, message: "range '\(t)' is reversed") }
                items.append(.range(a...b)); continue
            }
            guard !t.isEmpty, t.allSatisfy({ $0.isNumber || $0 == "*" || $0 == "?" }) else {
                throw ConfigError(path: "\(path)[\(i)]", line: line, message: "'\(t)' is not a VMID, a range like 100-199, or a glob like 4*")
            }
            items.append(.glob(t))
        }
        return Selection(items: items, everything: false)
    }

    /// Whether the id is selected.
    public func contains(_ vmid: Int) -> Bool {
        if everything { return true }
        let s = String(vmid)
        return items.contains { item in
            switch item {
            case .id(let n): return n == vmid
            case .range(let r): return r.contains(vmid)
            case .glob(let g): return Self.glob(g, matches: s)
            }
        }
    }

    /// `*` any run of digits, `?` one digit. Greedy with one backtrack point (the last star), so
    /// time is at most pattern × text length, never exponential in the number of stars.
    static func glob(_ pattern: String, matches s: String) -> Bool {
        let p = Array(pattern), t = Array(s)
        var i = 0, j = 0
        var star: Int?, resume = 0  // the last star seen, and where its run of text ends now
        while j < t.count {
            if i < p.count, p[i] == "?" || p[i] == t[j] {
                i += 1
                j += 1
            } else if i < p.count, p[i] == "*" {
                star = i
                resume = j
                i += 1
            } else if let star {
                i = star + 1
                resume += 1
                j = resume
            } else {
                return false
            }
        }
        while i < p.count, p[i] == "*" { i += 1 }
        return i == p.count
    }
}
