import ConfigSupport
import Foundation
import ProxmoxAPI

/// What the simulator simulates: a standby PVE node, its PBS storages with backed-up guests
/// taking backups on a schedule, guests already on the node, target storages, and faults.
/// Loaded from YAML (`--scenario FILE`, documented in the README) or built in.
public struct Scenario: Sendable {
    /// A PVE storage of type `pbs` (one datastore + namespace, reference §2).
    public struct PBSStorage: Sendable {
        public var id: String
        public var datastore: String
        public var namespace: String?
        /// The PBS server (`server` in storage.cfg): `127.0.0.1` when PBS runs on the standby.
        public var server: String = "pbs.example"
        public init(id: String, datastore: String, namespace: String? = nil, server: String = "pbs.example") {
            self.id = id
            self.datastore = datastore
            self.namespace = namespace
            self.server = server
        }
    }

    /// A target storage for restored disks.
    public struct TargetStorage: Sendable {
        public var id: String
        public var type: String
        public var total: Int64
        public var used: Int64
        /// The content types it allows (`content` in storage.cfg); nil: the default of its kind,
        /// see ``effectiveContent``.
        public var content: [String]?
        public init(id: String, type: String = "lvmthin", total: Int64, used: Int64 = 0, content: [String]? = nil) {
            self.id = id
            self.type = type
            self.total = total
            self.used = used
            self.content = content
        }

        /// `content` when given, else: the stock `local` (a `dir` storage named `local`, as the
        /// installer writes it to storage.cfg) `iso,vztmpl,backup` — no `rootdir`, no `images`
        /// (reference §13.4); another `dir` storage everything; any other type `rootdir,images`.
        public var effectiveContent: [String] {
            if let content { return content }
            if type == "dir" { return id == "local" ? ["iso", "vztmpl", "backup"] : ["rootdir", "images", "vztmpl", "iso", "backup"] }
            return ["rootdir", "images"]
        }
    }

    /// A production guest whose backups land on a PBS storage.
    public struct BackedUpGuest: Sendable {
        public var vmid: Int
        public var type: GuestType
        public var name: String
        public var storage: String
        /// Disk sizes in bytes (one entry for a CT's rootfs).
        public var disks: [Int64]
        /// Backup interval in seconds (0: only the initial history, no new backups).
        public var interval: Double
        /// Offset of the schedule within the interval, seconds.
        public var offset: Double
        /// `ok`, `failed` or nil (never verified).
        public var verification: String?
        /// Backups present before the scenario starts.
        public var history: Int
        /// Every restore of this guest's backups fails inside the task.
        public var restoreFails: Bool
        /// Tags stored in the backup's config (a restore without override brings them back).
        public var tags: [String]
        public var notes: String?
        /// `onboot` in the backup's config: a restore without an `onboot` override brings it back
        /// (§3.1 step 2: the merged config is the backup's, then the overrides).
        public var onboot: Bool
        /// The backed-up config's bridged NICs, `net0`… in order (§13.1: each needs `SDN.Use`).
        public var bridges: [String] = ["vmbr0"]
        /// CT mount points (`mp0`…): bind and device mount points restore only for root (§13.1).
        public var mountpoints: [MountPoint] = []
        /// VM `hostpciN` values (`0000:01:00.0`, or `mapping=NAME`): real devices root only (§13.1).
        public var hostpci: [String] = []
        /// VM `usbN` values (`host=1234:5678`, `spice`, or `mapping=NAME`).
        public var usb: [String] = []
        /// CTs: privileged (no `unprivileged: 1`); the first restore needs `Sys.Modify` on `/` (§13.1).
        public var privileged = false
        /// The production storage id of each disk (the last one repeats; empty: `local-lvm`), as
        /// the backed-up config and its `#qmdump#map` lines name them (§3.3, §13.4).
        public var storages: [String] = []
        /// Real bytes of each disk image written to ``Scenario/datastoreDirectory`` (one entry:
        /// every disk; the last entry repeats); nil: min(declared size, 16 MiB). Declared `disks`
        /// sizes keep driving timing and space (`image_bytes`).
        public var imageBytes: [Int64]? = nil
        /// The fraction of 4 MiB chunks each backup gives new content (`change_rate`, default 0.02;
        /// at least one chunk per backup when above 0, see SimulatorImages.swift).
        public var changeRate: Double = 0.02
        /// Seconds a backup of this guest takes (`backup_seconds`); nil: its size ÷ `backup_mib_per_s`.
        /// (An incremental backup with PBS dirty bitmaps reads only what changed: rpo-bench's
        /// workload d sets changed bytes ÷ 500 MiB/s + 30 s.)
        public var backupSeconds: Double? = nil
        /// `memory` of the backed-up config in MiB (`memory_mib`); nil: 2048 for a VM, 512 for a CT
        /// (ScenarioDrill.swift).
        public var memoryMiB: Int? = nil
        /// Further keys of the backed-up config, written as given (`extra_config`), e.g.
        /// `virtiofs0`, `scsi1: /dev/sdb`, raw `lxc.net.0.type` (ScenarioDrill.swift).
        public var extraConfig: [String: String] = [:]

        public init(vmid: Int, type: GuestType, name: String, storage: String, disks: [Int64], interval: Double,
                    offset: Double = 0, verification: String? = "ok", history: Int = 2, restoreFails: Bool = false,
                    tags: [String] = [], notes: String? = nil, onboot: Bool = true) {
            self.vmid = vmid
            self.type = type
            self.name = name
            self.storage = storage
            self.disks = disks
            self.interval = interval
            self.offset = offset
            self.verification = verification
            self.history = history
            self.restoreFails = restoreFails
            self.tags = tags
            self.notes = notes
            self.onboot = onboot
        }

        public var size: Int64 { disks.reduce(0, +) }

        /// The real image length of disk `i`: ``imageBytes`` (the last entry repeats), else
        /// min(declared size, 16 MiB).
        public func imageSize(ofDisk i: Int) -> Int64 {
            if let list = imageBytes, let last = list.last { return i < list.count ? list[i] : last }
            return min(i < disks.count ? disks[i] : 0, 16 << 20)
        }
    }

    /// A guest already on the standby node.
    public struct ExistingGuest: Sendable {
        public var vmid: Int
        public var type: GuestType
        public var name: String
        public var status: String
        public var lock: String?
        public var tags: [String]
        public var description: String?
        public var protection: Bool
        public var disks: [Int64]
        /// `onboot: 1` (PVE's default is off): started by `startall` when the node boots.
        public var onboot: Bool
        /// The cluster node holding the guest (nil: the scenario's node). A guest on another node is
        /// listed in `/cluster/resources` with that node and holds its VMID cluster-wide (§5.1, §6).
        public var node: String?
        public init(vmid: Int, type: GuestType, name: String, status: String = "stopped", lock: String? = nil,
                    tags: [String] = [], description: String? = nil, protection: Bool = false, disks: [Int64] = [8 << 30],
                    onboot: Bool = false, node: String? = nil) {
            self.vmid = vmid
            self.type = type
            self.name = name
            self.status = status
            self.lock = lock
            self.tags = tags
            self.description = description
            self.protection = protection
            self.disks = disks
            self.onboot = onboot
            self.node = node
        }
    }

    /// An injected fault: answer matching calls with an error, or slowly.
    public struct Fault: Sendable, Codable {
        public var method: String?
        /// Substring of the API path.
        public var path: String?
        public var status: Int
        public var message: String
        /// How many times (nil: forever).
        public var times: Int?
        /// Probability per matching call.
        public var probability: Double
        /// Delay before answering (seconds, simulated for in-process calls; real for HTTP).
        public var delay: Double
        /// The delay comes after the call was carried out (the answer is late, the effect is not).
        public var after: Bool = false
        public init(method: String? = nil, path: String? = nil, status: Int = 500, message: String = "simulated failure",
                    times: Int? = nil, probability: Double = 1, delay: Double = 0, after: Bool = false) {
            self.method = method
            self.path = path
            self.status = status
            self.message = message
            self.times = times
            self.probability = probability
            self.delay = delay
            self.after = after
        }
    }

    public var node: String = "pve-standby"
    public var pbsStorages: [PBSStorage] = []
    public var targetStorages: [TargetStorage] = []
    public var backedUp: [BackedUpGuest] = []
    public var existing: [ExistingGuest] = []
    public var faults: [Fault] = []
    /// The ACLs of the simulator's token (`acls:`); nil (no `acls` key): the token may do
    /// everything PVE lets a token do (the literal `root@pam` stays the only root).
    public var acls: [ACL]?
    /// The API's caller is `root@pam` (as under pvesh, which runs handlers as root@pam, §1.3):
    /// root-only parameters such as `skiplock` are accepted. False for a token.
    public var callerIsRoot = false
    /// Restore throughput in bytes per second (reference: pbs-restore speeds of ~300 MiB/s).
    public var restoreBytesPerSecond: Double = 300 * 1_048_576
    /// Backup throughput: a backup of size S is listed with size 1 for S / this (in progress, §2).
    public var backupBytesPerSecond: Double = 500 * 1_048_576
    /// Probability that any restore task fails midway (random faults).
    public var taskFailureProbability: Double = 0
    /// Seed of the fault dice.
    public var seed: UInt64 = 42
    /// Snapshots kept per guest (PBS prune keep-last).
    public var keepLast: Int = 10
    /// A directory holding a real PBS datastore (`datastore_dir`): every complete VM backup the
    /// simulator lists is also written there as a snapshot with real bytes (SimulatorImages.swift).
    public var datastoreDirectory: String?
    /// A directory for real VM disk images on the standby (`image_dir`):
    /// `<dir>/<storage>/vm-<vmid>-disk-<i>.raw`, written by restores (SimulatorImages.swift).
    public var imageDirectory: String?
    /// How each guest of the node boots once started (`boot:`, keyed by the VMID on this node);
    /// a VMID without an entry boots in 10 s without an agent (SimulatorBoot.swift).
    public var boot: [Int: BootBehaviour] = [:]
    /// The node's RAM in bytes (`node_memory_bytes`, default 64 GiB; SimulatorNode.swift).
    public var nodeMemoryBytes: Int64 = 64 << 30
    /// RAM in use on the node besides its running guests (`node_memory_used_bytes`, default 8 GiB).
    public var nodeMemoryUsedBytes: Int64 = 8 << 30

    public init() {}

    /// How long a backup of `g` runs (listed with size 1 meanwhile).
    public func backupDuration(_ g: BackedUpGuest) -> Double { g.backupSeconds ?? Double(g.size) / backupBytesPerSecond }
}

extension Scenario {
    /// Parses a scenario YAML text (errors name the key path and line).
    public static func parse(yaml: String) throws(ConfigError) -> Scenario {
        let root = try StrictMapping.parse(yaml: yaml)
        var s = Scenario()
        s.node = try root.string("node") ?? s.node
        if let v = try root.double("restore_mib_per_s") {
            guard v > 0, v < 1e9 else { throw root.error("restore_mib_per_s", root.node("restore_mib_per_s"), "must be a positive number") }
            s.restoreBytesPerSecond = v * 1_048_576
        }
        if let v = try root.double("backup_mib_per_s") {
            guard v > 0, v < 1e9 else { throw root.error("backup_mib_per_s", root.node("backup_mib_per_s"), "must be a positive number") }
            s.backupBytesPerSecond = v * 1_048_576
        }
        s.taskFailureProbability = try root.double("task_failure_probability") ?? 0
        guard (0...1).contains(s.taskFailureProbability) else {
            throw root.error("task_failure_probability", root.node("task_failure_probability"), "must be from 0 to 1")
        }
        s.seed = UInt64(try root.int("seed", range: 0...Int.max) ?? 42)
        s.keepLast = try root.int("keep_last", range: 1...1000) ?? 10
        s.datastoreDirectory = try root.string("datastore_dir")
        s.imageDirectory = try root.string("image_dir")
        for (i, node) in (try root.sequence("pbs_storages") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "pbs_storages[\(i)]")
            guard let id = try m.string("id") else { throw m.error("id", nil, "required") }
            s.pbsStorages.append(PBSStorage(id: id, datastore: try m.string("datastore") ?? "store1", namespace: try m.string("namespace"),
                                            server: try m.string("server") ?? "pbs.example"))
            try m.finish()
        }
        for (i, node) in (try root.sequence("target_storages") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "target_storages[\(i)]")
            guard let id = try m.string("id") else { throw m.error("id", nil, "required") }
            let total = try m.double("total_gib") ?? 1000, used = try m.double("used_gib") ?? 0
            guard (0...100_000_000).contains(total), (0...total).contains(used) else {
                throw m.error("total_gib", m.node("total_gib"), "sizes must be from 0 to 100000000 GiB, used ≤ total")
            }
            let content = try m.stringList("content")
            let known: Set<String> = ["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import"]
            for (j, c) in (content ?? []).enumerated() where !known.contains(c) {
                throw ConfigError(path: "target_storages[\(i)].content[\(j)]", line: m.lineOf("content"),
                                  message: "unknown content type '\(c)' (expected images, rootdir, vztmpl, iso, backup, snippets or import)")
            }
            s.targetStorages.append(TargetStorage(id: id, type: try m.string("type") ?? "lvmthin",
                                                  total: Int64(total * 1_073_741_824), used: Int64(used * 1_073_741_824), content: content))
            try m.finish()
        }
        for (i, node) in (try root.sequence("backups") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "backups[\(i)]")
            guard let vmid = try m.int("vmid", range: 1...999_999_999) else { throw m.error("vmid", nil, "required") }
            let type = try guestType(m)
            guard let storage = try m.string("storage") ?? s.pbsStorages.first?.id else { throw m.error("storage", nil, "required (no pbs_storages defined)") }
            let disks = try (m.stringList("disks_gib") ?? ["8"]).enumerated().map { (j, t) throws(ConfigError) -> Int64 in
                guard let g = Double(t), g > 0, g <= 1_000_000 else { throw ConfigError(path: "backups[\(i)].disks_gib[\(j)]", line: m.lineOf("disks_gib"), message: "expected a size in GiB from 0 to 1000000") }
                return Int64(g * 1_073_741_824)
            }
            let verification = try m.string("verification") ?? "ok"
            guard ["ok", "failed", "none"].contains(verification) else { throw m.error("verification", m.node("verification"), "expected ok, failed or none") }
            s.backedUp.append(BackedUpGuest(
                vmid: vmid, type: type, name: try m.string("name") ?? "guest\(vmid)", storage: storage, disks: disks,
                interval: (try m.duration("interval") ?? .seconds(3600)).seconds,
                offset: (try m.duration("offset") ?? .zero).seconds,
                verification: verification == "none" ? nil : verification, history: try m.int("history", range: 0...1000) ?? 2,
                restoreFails: try m.bool("restore_fails") ?? false, tags: try m.stringList("tags") ?? [], notes: try m.string("notes"),
                onboot: try m.bool("onboot") ?? true))
            try parseBackupConfig(m, into: &s.backedUp[s.backedUp.count - 1])
            try parseImageKeys(m, index: i, into: &s.backedUp[s.backedUp.count - 1])
            try parseDrillKeys(m, into: &s.backedUp[s.backedUp.count - 1])
            try m.finish()
        }
        for (i, node) in (try root.sequence("guests") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "guests[\(i)]")
            guard let vmid = try m.int("vmid", range: 1...999_999_999) else { throw m.error("vmid", nil, "required") }
            let status = try m.string("status") ?? "stopped"
            guard ["running", "stopped"].contains(status) else { throw m.error("status", m.node("status"), "expected running or stopped") }
            s.existing.append(ExistingGuest(
                vmid: vmid, type: try guestType(m), name: try m.string("name") ?? "guest\(vmid)", status: status,
                lock: try m.string("lock"), tags: try m.stringList("tags") ?? [], description: try m.string("description"),
                protection: try m.bool("protection") ?? false, onboot: try m.bool("onboot") ?? false, node: try m.string("node")))
            try m.finish()
        }
        for (i, node) in (try root.sequence("faults") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "faults[\(i)]")
            s.faults.append(Fault(
                method: try m.string("method")?.uppercased(), path: try m.string("path"), status: try m.int("status", range: 100...999) ?? 500,
                message: try m.string("message") ?? "simulated failure", times: try m.int("times", range: 0...Int.max),
                probability: try m.double("probability") ?? 1, delay: (try m.duration("delay") ?? .zero).seconds))
            try m.finish()
        }
        s.acls = try parseACLs(root)
        s.callerIsRoot = try root.bool("caller_is_root") ?? false
        try parseDrillTopLevel(root, into: &s)
        try root.finish()
        if s.pbsStorages.isEmpty { s.pbsStorages = [PBSStorage(id: "pbs-prod", datastore: "store1")] }
        if s.targetStorages.isEmpty { s.targetStorages = [TargetStorage(id: "local-lvm", total: 4 << 40)] }
        return s
    }

    /// `image_bytes` (a byte count, or a list with one per disk) and `change_rate` (0 to 1).
    private static func parseImageKeys(_ m: StrictMapping, index i: Int, into g: inout BackedUpGuest) throws(ConfigError) {
        if let list = try m.stringList("image_bytes") {
            g.imageBytes = try list.enumerated().map { (j, t) throws(ConfigError) -> Int64 in
                guard let n = Int64(t), n > 0, n <= 1 << 40 else {
                    throw ConfigError(path: "backups[\(i)].image_bytes[\(j)]", line: m.lineOf("image_bytes"), message: "expected a byte count from 1 to 2^40")
                }
                return n
            }
        }
        if let rate = try m.double("change_rate") {
            guard (0...1).contains(rate) else { throw m.error("change_rate", m.node("change_rate"), "must be from 0 to 1") }
            g.changeRate = rate
        }
        if let seconds = try m.double("backup_seconds") {
            guard seconds >= 0 else { throw m.error("backup_seconds", m.node("backup_seconds"), "must not be negative") }
            g.backupSeconds = seconds
        }
    }

    private static func guestType(_ m: StrictMapping) throws(ConfigError) -> GuestType {
        let t = try m.string("type") ?? "vm"
        guard let type = GuestType(apiType: t) else { throw m.error("type", m.node("type"), "expected vm or ct") }
        return type
    }

    /// A large generated fleet for load and scrape benchmarks: `count` guests (one in four a
    /// container), 2–64 GiB, hourly to daily backups, seeded.
    public static func generated(count: Int, seed: UInt64 = 7) -> Scenario {
        var s = demo()
        s.existing = []
        var rng = SplitMix64(state: seed)
        func next() -> UInt64 { rng.next() }
        let intervals: [Double] = [3600, 4 * 3600, 24 * 3600]
        s.backedUp = (0..<count).map { i in
            let interval = intervals[Int(next() % 3)]
            return BackedUpGuest(vmid: 1000 + i, type: i % 4 == 3 ? .ct : .vm, name: "guest\(1000 + i)", storage: "pbs-prod",
                                 disks: [Int64(2 + next() % 63) << 30], interval: interval,
                                 offset: Double(next() % UInt64(interval)), history: 1)
        }
        return s
    }

    /// The built-in demo scenario: 12 backed-up guests (VMs and CTs, 2–200 GiB, hourly and
    /// 15-minute backups, one whose restores fail, one backup always in progress at start),
    /// plus a foreign guest and a locked guest on the standby.
    public static func demo() -> Scenario {
        var s = Scenario()
        s.node = "pve-standby"
        s.pbsStorages = [PBSStorage(id: "pbs-prod", datastore: "store1", namespace: "prod")]
        s.targetStorages = [TargetStorage(id: "local-lvm", total: 4 << 40, used: 200 << 30),
                            TargetStorage(id: "local", type: "dir", total: 400 << 30, used: 20 << 30)]
        let gib: Int64 = 1 << 30
        let m15 = 900.0, h1 = 3600.0
        s.backedUp = [
            BackedUpGuest(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [32 * gib], interval: m15, offset: 60, tags: ["prod"], notes: "web frontend"),
            BackedUpGuest(vmid: 102, type: .vm, name: "web2", storage: "pbs-prod", disks: [32 * gib], interval: m15, offset: 300, tags: ["prod"]),
            BackedUpGuest(vmid: 103, type: .vm, name: "db1", storage: "pbs-prod", disks: [20 * gib, 200 * gib], interval: h1, offset: 600, tags: ["prod", "db"]),
            BackedUpGuest(vmid: 104, type: .vm, name: "mail", storage: "pbs-prod", disks: [40 * gib], interval: h1, offset: 1200),
            BackedUpGuest(vmid: 105, type: .vm, name: "fileserver", storage: "pbs-prod", disks: [16 * gib, 120 * gib], interval: h1, offset: 2400),
            BackedUpGuest(vmid: 106, type: .vm, name: "erp", storage: "pbs-prod", disks: [64 * gib], interval: h1, offset: 3000, restoreFails: true, notes: "restores fail in the demo"),
            BackedUpGuest(vmid: 107, type: .vm, name: "monitoring", storage: "pbs-prod", disks: [24 * gib], interval: m15, offset: 600),
            BackedUpGuest(vmid: 201, type: .ct, name: "dns1", storage: "pbs-prod", disks: [2 * gib], interval: m15, offset: 120),
            BackedUpGuest(vmid: 202, type: .ct, name: "dns2", storage: "pbs-prod", disks: [2 * gib], interval: m15, offset: 420),
            BackedUpGuest(vmid: 203, type: .ct, name: "proxy", storage: "pbs-prod", disks: [4 * gib], interval: h1, offset: 1800),
            BackedUpGuest(vmid: 204, type: .ct, name: "git", storage: "pbs-prod", disks: [30 * gib], interval: h1, offset: 900),
            BackedUpGuest(vmid: 205, type: .ct, name: "wiki", storage: "pbs-prod", disks: [8 * gib], interval: h1, offset: 2700, verification: nil),
        ]
        s.existing = [
            // Not ours: no pbs-standby marker. Must never be touched.
            ExistingGuest(vmid: 104, type: .vm, name: "mail-handmade", status: "running", tags: ["manual"],
                          description: "set up by hand on the standby"),
            // Ours in principle, but locked by a backup job of the standby itself.
            ExistingGuest(vmid: 105, type: .vm, name: "fileserver", status: "stopped", lock: "backup",
                          tags: ["pbs-standby"], description: "pbs-standby: restored from pbs-prod:backup/vm/105/2026-01-01T00:00:00Z into 105 at 2026-01-01T00:10:00Z"),
        ]
        // DR drills (issue 16): the web VMs and the database boot with their guest agent, the
        // monitoring VM's copy does not boot (its drill fails: PbsStandbyDrillFailed), the
        // containers run. The node is short of memory for a failover of everything
        // (PbsStandbyFailoverCapacityShort): 40 GiB free, the copies need about 57 GiB.
        for i in s.backedUp.indices {
            switch s.backedUp[i].vmid {
            case 101, 102: s.backedUp[i].memoryMiB = 8192; s.backedUp[i].extraConfig = ["agent": "1"]
            case 103: s.backedUp[i].memoryMiB = 32768; s.backedUp[i].extraConfig = ["agent": "1"]; s.backedUp[i].bridges = ["vmbr0", "vmbr1"]
            case 107: s.backedUp[i].memoryMiB = 4096
            default: break
            }
        }
        s.boot = [101: .init(bootSeconds: 25, agent: true), 102: .init(bootSeconds: 30, agent: true), 103: .init(bootSeconds: 90, agent: true),
                  107: .init(bootSeconds: 20, mode: .fails), 201: .init(bootSeconds: 3), 202: .init(bootSeconds: 3), 203: .init(bootSeconds: 5),
                  204: .init(bootSeconds: 5), 205: .init(bootSeconds: 5)]
        s.nodeMemoryBytes = 48 << 30
        s.nodeMemoryUsedBytes = 8 << 30
        return s
    }
}
