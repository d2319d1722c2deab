/// The PVE calls pbs-standby makes, typed, over any ``ProxmoxTransport``.
///
/// Paths are given raw (`/nodes/pve1/tasks/UPID:…/status`); the HTTPS transport percent-encodes
/// each segment, pvesh takes them as they are.
///
/// Paths and parameters follow the reference (`shared/reference/proxmox-interfaces.md`):
/// §2 backup listing, §3 restore, §4 tasks, §5 guests.
public struct ProxmoxClient: Sendable {
    /// How calls reach PVE.
    public let transport: any ProxmoxTransport

    /// Creates a client over a transport.
    public init(transport: any ProxmoxTransport) {
        self.transport = transport
    }

    /// `GET /nodes`.
    public func nodes() async throws(ProxmoxError) -> [NodeInfo] {
        let path = "/nodes"
        return try await list(path) { r throws(ProxmoxError) in
            NodeInfo(node: try r.string("node"), status: r.optionalString("status") ?? "unknown",
                     sslFingerprint: r.optionalString("ssl_fingerprint"))
        }
    }

    /// `GET /nodes/{node}/storage`.
    public func storages(node: String) async throws(ProxmoxError) -> [StorageInfo] {
        try await list("/nodes/\(node)/storage") { r throws(ProxmoxError) in try Self.storage(r) }
    }

    /// `GET /nodes/{node}/storage/{storage}/status`: free space of a target storage.
    public func storageStatus(node: String, storage: String) async throws(ProxmoxError) -> StorageInfo {
        let path = "/nodes/\(node)/storage/\(storage)/status"
        var info = try Self.storage(try FieldReader(try await transport.call(.get, path), path: path), defaultName: storage)
        if info.storage.isEmpty { info.storage = storage }
        return info
    }

    static func storage(_ r: FieldReader, defaultName: String? = nil) throws(ProxmoxError) -> StorageInfo {
        let name: String
        if let n = r.optionalString("storage") ?? defaultName { name = n } else { name = try r.string("storage") }
        return StorageInfo(
            storage: name,
            type: r.optionalString("type") ?? "",
            content: (r.optionalString("content") ?? "").split(separator: ",").map(String.init),
            active: r.value("active")?.bool ?? true,
            enabled: r.value("enabled")?.bool ?? true,
            total: try r.optionalInt("total").map(Self.clampBytes),
            used: try r.optionalInt("used").map(Self.clampBytes),
            avail: try r.optionalInt("avail").map(Self.clampBytes))
    }

    /// `GET /nodes/{node}/storage/{storage}/content?content=backup[&vmid=N]` (reference §2).
    /// Entries whose volid is not a PBS backup of a numeric guest are skipped, as PVE itself does.
    public func backups(node: String, storage: String, vmid: Int? = nil) async throws(ProxmoxError) -> [BackupEntry] {
        let path = "/nodes/\(node)/storage/\(storage)/content"
        var params = [("content", "backup")]
        if let vmid { params.append(("vmid", String(vmid))) }
        let data = try await transport.call(.get, path, parameters: params)
        guard let items = data.array else { throw .decoding(path: path, field: "", message: "expected a list") }
        var out: [BackupEntry] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            let r = try FieldReader(item, path: "\(path)[\(i)]")
            guard let volid = Volid(parsing: try r.string("volid")) else { continue }
            let ctime = try r.optionalInt("ctime") ?? volid.backupTime
            let verification: String? = r.value("verification")?["state"]?.string
            out.append(BackupEntry(
                volid: volid, ctime: ctime, size: Self.clampBytes(try r.optionalInt("size") ?? 1),
                verification: verification, notes: r.optionalString("notes"),
                protected: r.flag("protected"), encrypted: r.optionalString("encrypted")))
        }
        return out
    }

    /// `GET /cluster/resources?type=vm` (reference §5.1).
    public func guests() async throws(ProxmoxError) -> [GuestResource] {
        let path = "/cluster/resources"
        let data = try await transport.call(.get, path, parameters: [("type", "vm")])
        guard let items = data.array else { throw .decoding(path: path, field: "", message: "expected a list") }
        var out: [GuestResource] = []
        for (i, item) in items.enumerated() {
            let r = try FieldReader(item, path: "\(path)[\(i)]")
            guard let type = GuestType(apiType: r.optionalString("type") ?? "") else { continue }
            out.append(GuestResource(
                vmid: try r.int("vmid"), type: type, node: r.optionalString("node") ?? "",
                status: r.optionalString("status") ?? "unknown", name: r.optionalString("name"),
                lock: r.optionalString("lock").flatMap { $0.isEmpty ? nil : $0 },
                tags: Self.splitTags(r.optionalString("tags")), template: r.flag("template"),
                maxdisk: try r.optionalInt("maxdisk").map(Self.clampBytes), maxmem: try r.optionalInt("maxmem").map(Self.clampBytes)))
        }
        return out
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/config` (reference §5.3).
    public func guestConfig(node: String, type: GuestType, vmid: Int) async throws(ProxmoxError) -> GuestConfig {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/config"
        let r = try FieldReader(try await transport.call(.get, path), path: path)
        var raw: [String: String] = [:]
        for (k, v) in r.object { if let s = v.string { raw[k] = s } }
        // A CT's raw LXC keys come as `lxc: [[key, value], …]` (pve-container API2/LXC/Config.pm
        // `vm_config`): kept as `lxc.<key>` entries (repeated keys joined by newlines) so that no
        // reader of `raw` misses one (the drill's isolation check refuses `lxc.net.*`).
        for pair in r.object["lxc"]?.array ?? [] {
            guard let kv = pair.array, kv.count == 2, let k = kv[0].string, let v = kv[1].string else { continue }
            let key = k.hasPrefix("lxc.") ? k : "lxc.\(k)"
            raw[key] = raw[key].map { $0 + "\n" + v } ?? v
        }
        return GuestConfig(
            name: r.optionalString("name") ?? r.optionalString("hostname"), description: r.optionalString("description"),
            tags: Self.splitTags(r.optionalString("tags")), lock: r.optionalString("lock"),
            protection: r.flag("protection"), digest: r.optionalString("digest"), raw: raw)
    }

    /// `PUT /nodes/{node}/{qemu|lxc}/{vmid}/config` with tags/description/onboot, guarded by
    /// `digest` (PVE refuses with "checksum mismatch" when the config changed since it was read, §5.3).
    public func setGuestConfig(node: String, type: GuestType, vmid: Int, tags: [String]? = nil,
                               description: String? = nil, onboot: Bool? = nil, digest: String? = nil) async throws(ProxmoxError) {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/config"
        var params: [(String, String)] = []
        if let tags { params.append(("tags", tags.joined(separator: ";"))) }
        if let description { params.append(("description", description)) }
        if let onboot { params.append(("onboot", onboot ? "1" : "0")) }
        if let digest { params.append(("digest", digest)) }
        _ = try await transport.call(.put, path, parameters: params)
    }

    /// Removes a VM's `lock` (what `qm unlock` does): `PUT /nodes/{node}/qemu/{vmid}/config` with
    /// `delete=lock`, `skiplock=1` and the `digest` the caller read. Only `root@pam` may use
    /// `skiplock` ("Only root may use this option.", qemu-server API2/Qemu.pm `update_vm`), so only
    /// the pvesh transport can. Containers have no such call: pve-container's config update checks
    /// the lock without a `skiplock` (API2/LXC/Config.pm), only the `pct unlock` CLI removes it.
    public func clearVMLock(node: String, vmid: Int, digest: String) async throws(ProxmoxError) {
        _ = try await transport.call(.put, "/nodes/\(node)/qemu/\(vmid)/config",
                                     parameters: [("delete", "lock"), ("skiplock", "1"), ("digest", digest)])
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/status/current` (reference §5.2): the power state and
    /// lock right now (the re-check immediately before a stop, forced restore or destroy).
    public func guestStatus(node: String, type: GuestType, vmid: Int) async throws(ProxmoxError) -> (status: String, lock: String?) {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/status/current"
        let r = try FieldReader(try await transport.call(.get, path), path: path)
        return (r.optionalString("status") ?? "unknown", r.optionalString("lock").flatMap { $0.isEmpty ? nil : $0 })
    }

    /// What a restore call should do.
    public struct RestoreRequest: Sendable {
        public var node: String
        public var vmid: Int
        public var archive: Volid
        public var storage: String?
        /// Overwrite an existing guest: only when the plan proved the target ours (§13.4).
        public var force = false
        public var unique = false
        public var start = false
        public var liveRestore = false
        public var bwlimitKiB: Int?
        /// Passed in the restore call so the restored guest carries them (a restore replaces
        /// tags and description with the backup's otherwise, reference §3.1/§5.3).
        public var tags: [String]?
        public var description: String?
        /// CT only: keep privileged/unprivileged as given (nil = from the backup).
        public var unprivileged: Bool?
        /// Adds the restored guest to this pool (§3.1 `pool`): with ACLs on the pool instead of `/vms`.
        public var pool: String?
        /// Overrides the backup's `onboot` (restores pass false: a standby copy must not start
        /// itself when the standby node boots, §3.1 override keys).
        public var onboot: Bool?

        public init(node: String, vmid: Int, archive: Volid, storage: String?) {
            self.node = node
            self.vmid = vmid
            self.archive = archive
            self.storage = storage
        }

        /// The form parameters of the POST.
        public var parameters: [(String, String)] {
            var p: [(String, String)] = [("vmid", String(vmid))]
            if archive.type == .vm {
                p.append(("archive", archive.description))
                if liveRestore { p.append(("live-restore", "1")) }
            } else {
                p.append(("ostemplate", archive.description))
                p.append(("restore", "1"))
                if let unprivileged { p.append(("unprivileged", unprivileged ? "1" : "0")) }
            }
            if let storage { p.append(("storage", storage)) }
            if force { p.append(("force", "1")) }
            if unique { p.append(("unique", "1")) }
            if start { p.append(("start", "1")) }
            if let bwlimitKiB { p.append(("bwlimit", String(bwlimitKiB))) }
            if let tags { p.append(("tags", tags.joined(separator: ";"))) }
            if let description { p.append(("description", description)) }
            if let onboot { p.append(("onboot", onboot ? "1" : "0")) }
            if let pool { p.append(("pool", pool)) }
            return p
        }
    }

    /// `POST /nodes/{node}/qemu` (archive=…) or `/nodes/{node}/lxc` (ostemplate=…, restore=1); returns the UPID.
    /// Over pvesh this returns only when the task has ended, streaming its log to `onOutput`.
    public func restore(_ request: RestoreRequest, onOutput: (@Sendable (String) -> Void)? = nil) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(request.node)/\(request.archive.type.apiType)"
        return try upid(path, try await transport.call(.post, path, parameters: request.parameters, onOutput: onOutput))
    }

    /// `GET /nodes/{node}/vzdump/extractconfig?volume=<volid>` (reference §13.1): the backed-up
    /// guest's configuration as text (bridges, mount points, disks with their production storage ids).
    public func backupConfig(node: String, volid: Volid) async throws(ProxmoxError) -> String {
        let path = "/nodes/\(node)/vzdump/extractconfig"
        guard let text = try await transport.call(.get, path, parameters: [("volume", volid.description)]).string else {
            throw .decoding(path: path, field: "data", message: "expected the configuration as text")
        }
        return text
    }

    /// `GET /nodes/{node}/tasks/{upid}/status`.
    public func taskStatus(_ upid: UPID) async throws(ProxmoxError) -> TaskStatus {
        let path = "/nodes/\(upid.node)/tasks/\(upid.description)/status"
        let r = try FieldReader(try await transport.call(.get, path), path: path)
        let status = try r.string("status")
        return TaskStatus(upid: upid, running: status == "running", exitStatus: r.optionalString("exitstatus"))
    }

    /// `GET /nodes/{node}/tasks/{upid}/log?start=&limit=` — lines after `start` (0-based offset).
    public func taskLog(_ upid: UPID, start: Int = 0, limit: Int = 0) async throws(ProxmoxError) -> [TaskLogLine] {
        let path = "/nodes/\(upid.node)/tasks/\(upid.description)/log"
        let data = try await transport.call(.get, path, parameters: [("start", String(start)), ("limit", String(limit))])
        guard let items = data.array else { throw .decoding(path: path, field: "", message: "expected a list") }
        var out: [TaskLogLine] = []
        for (i, item) in items.enumerated() {
            let r = try FieldReader(item, path: "\(path)[\(i)]")
            out.append(TaskLogLine(n: try r.int("n"), t: r.optionalString("t") ?? ""))
        }
        return out
    }

    /// `GET /nodes/{node}/tasks?source=all&typefilter=…&vmid=…`: find tasks again after a restart.
    public func tasks(node: String, typeFilter: String? = nil, vmid: Int? = nil, limit: Int = 100) async throws(ProxmoxError) -> [TaskSummary] {
        let path = "/nodes/\(node)/tasks"
        var params = [("source", "all"), ("limit", String(limit))]
        if let typeFilter { params.append(("typefilter", typeFilter)) }
        if let vmid { params.append(("vmid", String(vmid))) }
        return try await list(path, params) { r throws(ProxmoxError) in
            let text = try r.string("upid")
            guard let upid = UPID(parsing: text) else { throw .decoding(path: r.path, field: "upid", message: "malformed UPID '\(text)'") }
            return TaskSummary(upid: upid, status: r.optionalString("status"), endTime: try r.optionalInt("endtime"))
        }
    }

    /// `POST /nodes/{node}/{type}/{vmid}/status/start` → UPID.
    public func start(node: String, type: GuestType, vmid: Int, onOutput: (@Sendable (String) -> Void)? = nil) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/status/start"
        return try upid(path, try await transport.call(.post, path, parameters: [], onOutput: onOutput))
    }

    /// `POST /nodes/{node}/{type}/{vmid}/status/stop` → UPID (hard stop).
    public func stop(node: String, type: GuestType, vmid: Int) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/status/stop"
        return try upid(path, try await transport.call(.post, path))
    }

    /// `DELETE /nodes/{node}/{type}/{vmid}` → UPID.
    public func destroy(node: String, type: GuestType, vmid: Int, purge: Bool = true,
                        destroyUnreferencedDisks: Bool = true) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)"
        let params = [("purge", purge ? "1" : "0"), ("destroy-unreferenced-disks", destroyUnreferencedDisks ? "1" : "0")]
        return try upid(path, try await transport.call(.delete, path, parameters: params))
    }

    /// A byte count from PVE, clamped to 0…1 EiB: no later sum or product of sizes can trap.
    static func clampBytes(_ v: Int) -> Int64 { Int64(min(max(v, 0), 1 << 60)) }

    /// Tags as PVE stores them: split on `;`, `,` or spaces (reference §5.3).
    public static func splitTags(_ text: String?) -> [String] {
        guard let text else { return [] }
        return text.split(whereSeparator: { $0 == ";" || $0 == "," || $0 == " " }).map(String.init)
    }

    func upid(_ path: String, _ value: JSONValue) throws(ProxmoxError) -> UPID {
        guard let text = value.string else { throw .decoding(path: path, field: "data", message: "expected a UPID string") }
        guard let upid = UPID(parsing: text) else { throw .decoding(path: path, field: "data", message: "malformed UPID '\(text)'") }
        return upid
    }

    func list<T>(_ path: String, _ params: [(String, String)] = [],
                         _ decode: (FieldReader) throws(ProxmoxError) -> T) async throws(ProxmoxError) -> [T] {
        let data = try await transport.call(.get, path, parameters: params)
        guard let items = data.array else { throw .decoding(path: path, field: "", message: "expected a list") }
        var out: [T] = []
        for (i, item) in items.enumerated() { out.append(try decode(try FieldReader(item, path: "\(path)[\(i)]"))) }
        return out
    }
}
