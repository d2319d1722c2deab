import ConfigSupport
import Foundation
import ProxmoxAPI

// MARK: - Scenario: ACLs and backed-up configs (reference §3.1, §3.2, §13.1)

extension Scenario {
    /// One ACL entry of the simulator's token: the privileges a role grants on `path`
    /// (`pveum acl modify PATH -token T -role R [--propagate 0]`, the role's privileges written
    /// out). With `propagate` (PVE's default) they hold on the paths below too; without, on `path`
    /// only [src: pve-access-control `AccessControl.pm` `roles`: an ancestor's role applies
    /// `if ($final || $propagate)`, public copy; reference §13.1 names the endpoint only].
    public struct ACL: Sendable, Codable, Equatable {
        public var path: String
        public var privs: [String]
        public var propagate: Bool
        public init(path: String, privs: [String], propagate: Bool = true) {
            self.path = path
            self.privs = privs
            self.propagate = propagate
        }

        private enum CodingKeys: String, CodingKey { case path, privs, propagate }

        /// States saved before `propagate` existed read it as true (every ACL propagated then).
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            path = try c.decode(String.self, forKey: .path)
            privs = try c.decode([String].self, forKey: .privs)
            propagate = try c.decodeIfPresent(Bool.self, forKey: .propagate) ?? true
        }
    }

    /// A CT mount point of a backed-up config (`mp0`): a volume, a host directory (bind) or a
    /// host device. Bind and device mount points restore only for `root@pam` (§3.2, §13.1).
    public struct MountPoint: Sendable, Equatable {
        public enum Kind: String, Sendable { case bind, device, volume }
        public var mp: String
        public var kind: Kind
        public init(mp: String, kind: Kind) {
            self.mp = mp
            self.kind = kind
        }
    }

    /// `acls:` — a list of `{path, privs: [...], propagate: true|false}` for the simulator's token
    /// (`propagate` defaults to true, as in PVE). No `acls` key: nil (the token may do everything);
    /// an empty list: it may do nothing.
    static func parseACLs(_ root: StrictMapping) throws(ConfigError) -> [ACL]? {
        guard root.has("acls") else { return nil }
        var acls: [ACL] = []
        for (i, node) in (try root.sequence("acls") ?? []).enumerated() {
            let m = try StrictMapping(node: node, path: "acls[\(i)]")
            guard let path = try m.string("path") else { throw m.error("path", nil, "required (an ACL path such as /vms or /sdn/zones/localnetwork)") }
            guard path.hasPrefix("/"), !path.contains("//"), !path.contains(" ") else {
                throw m.error("path", m.node("path"), "'\(path)' is not an ACL path (starts with /, no empty components)")
            }
            let privs = try m.stringList("privs") ?? []
            for (j, priv) in privs.enumerated() where !PVESimulator.privilegeNames.contains(priv) {
                throw ConfigError(path: "acls[\(i)].privs[\(j)]", line: m.lineOf("privs"), message: "unknown privilege '\(priv)' (PVE privileges are like VM.Allocate, SDN.Use)")
            }
            acls.append(ACL(path: PVEPermissions.normalize(path), privs: privs, propagate: try m.bool("propagate") ?? true))
            try m.finish()
        }
        return acls
    }

    /// The backed-up config keys of one `backups:` entry: `bridges`, `mountpoints` (CT),
    /// `hostpci`/`usb` (VM), `privileged` (CT) and `storages`.
    static func parseBackupConfig(_ m: StrictMapping, into g: inout BackedUpGuest) throws(ConfigError) {
        if let bridges = try m.stringList("bridges") {
            for (j, b) in bridges.enumerated() where b.isEmpty || !b.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) {
                throw ConfigError(path: "\(m.child("bridges"))[\(j)]", line: m.lineOf("bridges"), message: "'\(b)' is not a bridge name")
            }
            g.bridges = bridges
        }
        var seen = Set<String>()
        for (j, node) in (try m.sequence("mountpoints") ?? []).enumerated() {
            let mm = try StrictMapping(node: node, path: "\(m.child("mountpoints"))[\(j)]")
            guard g.type == .ct else { throw m.error("mountpoints", m.node("mountpoints"), "mount points are for containers (type: ct)") }
            let mp = try mm.string("mp") ?? "mp\(j)"
            guard mp.hasPrefix("mp"), mp.count > 2, mp.dropFirst(2).allSatisfy(\.isNumber), seen.insert(mp).inserted else {
                throw mm.error("mp", mm.node("mp"), "expected a unique mount point key mp0, mp1, …")
            }
            let text = try mm.string("kind") ?? "volume"
            guard let kind = MountPoint.Kind(rawValue: text) else { throw mm.error("kind", mm.node("kind"), "expected bind, device or volume") }
            g.mountpoints.append(MountPoint(mp: mp, kind: kind))
            try mm.finish()
        }
        for key in ["hostpci", "usb"] {
            guard let values = try m.stringList(key) else { continue }
            guard g.type == .vm else { throw m.error(key, m.node(key), "host devices are for VMs (type: vm)") }
            if key == "hostpci" { g.hostpci = values } else { g.usb = values }
        }
        if let privileged = try m.bool("privileged") {
            guard g.type == .ct else { throw m.error("privileged", m.node("privileged"), "only containers are privileged or not") }
            g.privileged = privileged
        }
        if let storages = try m.stringList("storages") {
            guard !storages.isEmpty, storages.count <= g.disks.count, !storages.contains(where: \.isEmpty) else {
                throw m.error("storages", m.node("storages"), "expected one storage id per disk (at most \(g.disks.count))")
            }
            g.storages = storages
        }
    }
}

extension Scenario.BackedUpGuest {
    /// The production storage id of disk `i` (§3.3 `#qmdump#map`): `storages[i]`, the last
    /// given for further disks, `local-lvm` when none is given.
    public func diskStorage(_ i: Int) -> String { storages.isEmpty ? "local-lvm" : storages[min(i, storages.count - 1)] }
}

// MARK: - The permission model

extension PVESimulator {
    /// PVE's privilege names (pve-access-control `AccessControl.pm` privilege list, PVE 8/9)
    /// [unverified: the list is not in the reference]. A scenario naming another one is refused,
    /// so that a typo does not silently deny.
    static let privilegeNames: Set<String> = [
        "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
        "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
        "Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit", "SDN.Use",
        "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
        "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU",
        "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
        "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt",
        "VM.GuestAgent.FileWrite", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.Monitor", "VM.PowerMgmt",
        "VM.Replicate", "VM.Snapshot", "VM.Snapshot.Rollback",
    ]

    /// The top-level paths `GET /access/permissions` always considers, besides the ACL paths
    /// [src: pve-access-control `RPCEnvironment.pm` `get_effective_permissions`, public copy].
    static let defaultPermissionPaths = ["/", "/access", "/access/groups", "/nodes", "/pool", "/sdn", "/storage", "/vms"]

    /// The privileges effective at `path` under `acls` (nil: every privilege, propagating), each
    /// with its propagate flag, as PVE resolves them [src: pve-access-control `AccessControl.pm`
    /// `roles` and `RPCEnvironment.pm` `compile_acl_path`, public copies]: walking from `/` down
    /// to the path, the ACLs of a level apply when they propagate or the level is the path itself
    /// (`if ($final || $propagate)`); the ACLs that apply on a level replace what was inherited
    /// ("overwrite previous settings"); a level whose ACLs all stop there leaves the inherited
    /// ones alone. A privilege's flag is set when any applying ACL that grants it propagates
    /// (`$privs->{$p} ||= $roles->{$role}`). The token's own ACLs only: a privilege-separated
    /// token's user is assumed to hold at least as much.
    static func effectivePrivilegeFlags(_ acls: [Scenario.ACL]?, at path: String) -> [String: Bool] {
        guard let acls else { return Dictionary(uniqueKeysWithValues: privilegeNames.map { ($0, true) }) }
        let target = PVEPermissions.normalize(path)
        var chain = [target]
        while chain.last != "/" { chain.append(PVEPermissions.parent(of: chain.last!)) }
        var privs: [String: Bool] = [:]
        for level in chain.reversed() {
            let applying = acls.filter { $0.path == level && ($0.propagate || level == target) }
            guard !applying.isEmpty else { continue }
            var new: [String: Bool] = [:]
            for acl in applying { for p in acl.privs { new[p] = (new[p] ?? false) || acl.propagate } }
            privs = new
        }
        return privs
    }

    /// The privileges effective at `path` (see ``effectivePrivilegeFlags(_:at:)``).
    static func effectivePrivileges(_ acls: [Scenario.ACL]?, at path: String) -> Set<String> {
        Set(effectivePrivilegeFlags(acls, at: path).keys)
    }

    func privileges(_ s: State, at path: String) -> Set<String> { Self.effectivePrivileges(s.acls, at: path) }

    /// RPCEnvironment `check`: nil when `priv` holds at `path`, else PVE's error text
    /// `Permission check failed (PATH, PRIV)` (§13.1).
    func permissionCheck(_ s: State, _ path: String, _ priv: String) -> String? {
        privileges(s, at: path).contains(priv) ? nil : "Permission check failed (\(path), \(priv))"
    }

    /// The bridge check of a restore (§13.1 `check_vnet_access`): `SDN.Use` on
    /// `/sdn/zones/localnetwork/<bridge>` or on a VLAN path below it (`check_sdn_bridge`). Only the
    /// literal `root@pam` is exempt, which the simulator's token never is.
    func bridgeCheck(_ s: State, _ bridge: String) -> String? {
        let path = PVEPermissions.bridgePath(bridge)
        if privileges(s, at: path).contains("SDN.Use") { return nil }
        if let acls = s.acls, acls.contains(where: { $0.path.hasPrefix(path + "/") && privileges(s, at: $0.path).contains("SDN.Use") }) {
            return nil
        }
        return "Permission check failed (\(path), SDN.Use)"
    }

    /// Replaces the token's ACLs (nil: it may do everything), as `pveum acl modify` would.
    public func setACLs(_ acls: [Scenario.ACL]?) {
        state.withLock { $0.acls = Self.normalized(acls) }
    }

    /// ACLs with their paths normalised (`/vms/` is `/vms`), as PVE stores them.
    static func normalized(_ acls: [Scenario.ACL]?) -> [Scenario.ACL]? {
        acls.map { $0.map { Scenario.ACL(path: PVEPermissions.normalize($0.path), privs: $0.privs, propagate: $0.propagate) } }
    }

    /// `GET /access/permissions[?path=P]` (§13.1): the token's effective privileges per path,
    /// `{path: {priv: propagate}}` with the flag 1 or 0 [src: pve-access-control
    /// `API2/AccessControl.pm` `permissions` "Map of "path" => (Map of "privilege" => "propagate
    /// boolean")", `RPCEnvironment.pm` `get_effective_permissions`, public copies]. Without `path`:
    /// the top-level paths and every ACL path, leaving out paths without any privilege; with
    /// `path`: that path only (as given, even when empty).
    func accessPermissions(_ s: State, _ p: [String: String]) -> SimResult {
        func render(_ flags: [String: Bool]) -> JSONValue {
            .object(flags.mapValues { JSONValue.number($0 ? 1 : 0) })
        }
        var out: [String: JSONValue] = [:]
        if let path = p["path"] {
            out[path] = render(Self.effectivePrivilegeFlags(s.acls, at: path))
            return .ok(.object(out))
        }
        let paths = Set(Self.defaultPermissionPaths + (s.acls ?? []).map(\.path))
        for path in paths {
            let flags = Self.effectivePrivilegeFlags(s.acls, at: path)
            if flags.isEmpty { continue }
            out[path] = render(flags)
        }
        return .ok(.object(out))
    }

    /// The permission checks PVE makes before it forks the restore worker (§3.1 step 1, §3.2):
    /// 403 `Permission check failed …`. In the order of qemu-server/pve-container `create_vm`
    /// [src: public copies of `API2/Qemu.pm` and `API2/LXC.pm`, beyond the reference]:
    /// - VM: `Datastore.AllocateSpace` on `/storage/<storage>` when `storage` is given (Qemu.pm:1298,
    ///   whether or not the storage exists: that is found inside the task); then the right to
    ///   create: `VM.Allocate` on `/vms/<vmid>`, or on `/pool/<pool>`, or `VM.Backup` on
    ///   `/vms/<vmid>` for a forced restore over an existing VM (Qemu.pm:1309-1322); then the
    ///   archive (Qemu.pm:1335, below).
    /// - CT: the right to create as for VMs (over an existing CT of this node, LXC.pm:295-318);
    ///   then the archive (LXC.pm:340). `Datastore.AllocateSpace` on the target storage comes
    ///   later, with the storage checks (LXC.pm:356; SimulatorRestore.swift `ctStorageRefusal`).
    /// Missing the right to create, PVE raises the bare `Permission check failed` (no path:
    /// `raise_perm_exc()` without argument). The archive: `Datastore.Allocate` on the PBS storage
    /// suffices; a backup of the target VMID itself needs nothing more; any other needs
    /// `Datastore.AllocateSpace` on the PBS storage and `VM.Backup` on `/vms/<backup's vmid>`
    /// (pve-storage `check_volume_access`).
    func synchronousPermissionRefusal(_ s: State, type: GuestType, vmid: Int, archiveText: String, _ p: [String: String]) -> SimResult? {
        func forbidden(_ message: String) -> SimResult { .error(status: 403, message: message + "\n", errors: [:]) }
        // A config file of this type on this node (`-f $filename`, `$same_container_exists`).
        let sameExists = s.guests[vmid].map { $0.node == scenario.node && $0.type == type } ?? false
        let create: String? = {
            if privileges(s, at: "/vms/\(vmid)").contains("VM.Allocate") { return nil }
            if let pool = p["pool"], privileges(s, at: "/pool/\(pool)").contains("VM.Allocate") { return nil }
            if p["force"] == "1", sameExists, privileges(s, at: "/vms/\(vmid)").contains("VM.Backup") { return nil }
            return "Permission check failed"
        }()
        var archive: String?
        if let volid = Volid(parsing: archiveText), !privileges(s, at: "/storage/\(volid.storage)").contains("Datastore.Allocate"),
           volid.vmid != vmid {
            archive = permissionCheck(s, "/storage/\(volid.storage)", "Datastore.AllocateSpace") ?? permissionCheck(s, "/vms/\(volid.vmid)", "VM.Backup")
        }
        if type == .vm {
            if let storage = p["storage"], let e = permissionCheck(s, "/storage/\(storage)", "Datastore.AllocateSpace") { return forbidden(e) }
            if let e = create ?? archive { return forbidden(e) }
        } else {
            if let e = create ?? archive { return forbidden(e) }
        }
        return nil
    }

    /// A refusal inside the restore worker: its log lines and the `TASK ERROR` text.
    struct TaskRefusal {
        var lines: [(Double, String)]
        var error: String
    }

    /// The checks PVE makes inside the restore worker on the *backed-up* config, before any disk
    /// is freed or allocated (§13.1, §3.2), in PVE's order:
    /// - VM (`check_restore_permissions`): `SDN.Use` per bridged `netN`, then host devices —
    ///   `hostpciN`/`usbN` real devices are root only, mapped ones need `Mapping.Use` on
    ///   `/mapping/{pci,usb}/<name>`, `usbN: spice` needs nothing. The texts
    ///   `only root can set 'hostpci0' config for non-mapped devices` and
    ///   `only root can set 'usb0' config for real devices` are qemu-server's config-check texts
    ///   [unverified: the reference gives no text for the restore path]. The worker logs the
    ///   "error before or during data restore" warning; the error is not prefixed (§3.1).
    /// - CT (`create_vm` worker, after `recovering backed-up configuration from '<volid>'`):
    ///   `SDN.Use` per bridged `netN` not overridden in the call; `Sys.Modify` on `/` when the
    ///   result is privileged and no CT of this VMID is on the node yet (the implicit
    ///   unprivileged → privileged change of an existing CT is not simulated: CTs on the node
    ///   carry no `unprivileged` flag); then bind/device mount points: `restoring 'mp0' to bind
    ///   mount is only possible for root`. Errors are prefixed `unable to restore CT N - `.
    /// The guest is left as it was (lock removed; a new VMID's placeholder goes).
    func taskPermissionRefusal(_ s: State, type: GuestType, vmid: Int, existing: SimGuest?, source: Scenario.BackedUpGuest,
                               volid: Volid, _ p: [String: String]) -> TaskRefusal? {
        func bridge(override key: String) -> String? {
            p[key]?.split(separator: ",").first { $0.hasPrefix("bridge=") }.map { String($0.dropFirst(7)) }
        }
        if type == .vm {
            var problem: String?
            for (i, b) in source.bridges.enumerated() where problem == nil {
                problem = bridgeCheck(s, p["net\(i)"] != nil ? (bridge(override: "net\(i)") ?? b) : b)
            }
            for (kind, values) in [("hostpci", source.hostpci), ("usb", source.usb)] {
                for (i, value) in values.enumerated() where problem == nil {
                    let device = BackupConfig(parsing: "\(kind)\(i): \(value)\n", type: .vm).hostDevices.first
                    if device?.spice == true { continue }
                    if let path = device?.mappingPath {
                        problem = permissionCheck(s, path, "Mapping.Use")
                    } else {
                        problem = kind == "hostpci" ? "only root can set 'hostpci\(i)' config for non-mapped devices"
                            : "only root can set 'usb\(i)' config for real devices"
                    }
                }
            }
            guard let problem else { return nil }
            return TaskRefusal(lines: [(0.5, "error before or during data restore, some or all disks were not completely restored. VM \(vmid) state is NOT cleaned up.")],
                               error: problem)
        }
        var problem: String?
        for (i, b) in source.bridges.enumerated() where problem == nil && p["net\(i)"] == nil {
            problem = bridgeCheck(s, b)
        }
        let unprivileged = p["unprivileged"].flatMap(Self.parseBoolean) ?? !source.privileged
        if problem == nil, !unprivileged, existing?.type != .ct || existing?.node != scenario.node {
            problem = permissionCheck(s, "/", "Sys.Modify")
        }
        for m in source.mountpoints where problem == nil && m.kind != .volume {
            problem = "restoring '\(m.mp)' to \(m.kind.rawValue) mount is only possible for root"
        }
        guard let problem else { return nil }
        return TaskRefusal(lines: [(0.2, "recovering backed-up configuration from '\(volid)'")],
                           error: "unable to restore CT \(vmid) - \(problem)")
    }
}
