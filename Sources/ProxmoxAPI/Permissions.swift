/// PVE's permission paths and the parts of a backed-up guest config that a restore checks
/// (reference §3.1, §3.2, §13.1): what `check-config --probe` needs to say, before anything is
/// restored, what PVE would refuse and why.

extension ProxmoxClient {
    /// `GET /access/permissions` (reference §13.1): the caller's effective privileges per path, as
    /// PVE computes them for this token (a privilege-separated token: the intersection with its
    /// user's). PVE lists its top-level paths (`/`, `/vms`, `/storage`, `/sdn`, …) and every path
    /// with an ACL, each as `{priv: propagate}` — 1 when the privilege also holds below the path,
    /// 0 when it holds at that path only (an ACL set with `--propagate 0`) — leaving out paths
    /// without any privilege; with `path`, that path only [src: pve-access-control
    /// `RPCEnvironment.pm` `get_effective_permissions`, `compile_acl_path` ("hash mapping privilege
    /// name to propagation flag value"), `API2/AccessControl.pm` `permissions` ("Map of "path" =>
    /// (Map of "privilege" => "propagate boolean")"), read in a public copy, not in the reference].
    /// Look a path up with ``PVEPermissions/privileges(at:in:)``.
    public func permissions(path: String? = nil) async throws(ProxmoxError) -> PVEPermissionMap {
        let apiPath = "/access/permissions"
        let data = try await transport.call(.get, apiPath, parameters: path.map { [("path", $0)] } ?? [])
        guard case .object(let paths) = data else {
            throw .decoding(path: apiPath, field: "data", message: "expected an object of paths")
        }
        var out: [String: [String: Bool]] = [:]
        for (p, v) in paths {
            guard case .object(let privs) = v else {
                throw .decoding(path: apiPath, field: p, message: "expected an object of privileges")
            }
            var flags: [String: Bool] = [:]
            for (priv, flag) in privs {
                // The value is the propagate flag (1/0; Perl may hand over "" for false when a
                // token's flag is and-ed with its user's, `compile_acl_path`). null: not set.
                switch flag {
                case .null: continue
                case .string(let t) where t.isEmpty: flags[priv] = false
                default:
                    guard let b = flag.bool else {
                        throw .decoding(path: apiPath, field: "\(p).\(priv)", message: "expected a propagate flag (0 or 1)")
                    }
                    flags[priv] = b
                }
            }
            out[p] = flags
        }
        return PVEPermissionMap(out)
    }
}

/// The answer of `GET /access/permissions`: per listed path, each privilege that holds there with
/// its propagate flag (true: it holds below the path too). A dictionary literal of privilege sets
/// (`["/vms": ["VM.Audit"]]`) means every privilege propagates, as an ACL does by default.
public struct PVEPermissionMap: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// path → privilege → propagate flag, as PVE lists them.
    public var paths: [String: [String: Bool]]

    public init(_ paths: [String: [String: Bool]] = [:]) { self.paths = paths }

    /// Every privilege propagating (an ACL's default, `pveum acl modify … --propagate 1`).
    public init(propagating: [String: Set<String>]) {
        paths = propagating.mapValues { Dictionary(uniqueKeysWithValues: $0.map { ($0, true) }) }
    }

    public init(dictionaryLiteral elements: (String, Set<String>)...) {
        self.init(propagating: Dictionary(elements, uniquingKeysWith: { $0.union($1) }))
    }

    /// The privileges listed at `path` exactly (nil when the path is not listed).
    public subscript(path: String) -> Set<String>? { paths[path].map { Set($0.keys) } }

    /// How many paths are listed.
    public var count: Int { paths.count }
    public var isEmpty: Bool { paths.isEmpty }
}

/// Looking privileges up in the answer of `GET /access/permissions`.
public enum PVEPermissions {
    /// The privileges effective at `path`, as PVE resolves them [src: pve-access-control
    /// `AccessControl.pm` `roles`, public copy]: walking from `/` down to the path, an ACL on an
    /// ancestor applies only when it propagates, an ACL on the path itself always; the first one
    /// that applies on a deeper level replaces what came from above.
    ///
    /// So a listed path answers with its own list. An unlisted path has no ACL of its own (PVE
    /// lists every ACL path), and inherits from its nearest listed ancestor exactly the
    /// privileges whose propagate flag is 1 there. An ancestor that lists only flag-0 privileges
    /// is an ACL that does not reach below: what holds under it comes from further up, so the walk
    /// goes on. Gaps: a path whose ACL grants nothing (role `NoAccess`) is not listed and reads as
    /// its parent; an ancestor whose propagating role is empty next to non-propagating roles reads
    /// like one without propagating roles.
    public static func privileges(at path: String, in permissions: PVEPermissionMap) -> Set<String> {
        let target = normalize(path)
        if let here = permissions.paths[target] ?? permissions.paths[path] { return Set(here.keys) }
        var p = target
        while p != "/" {
            p = parent(of: p)
            guard let listed = permissions.paths[p] else { continue }
            let propagating = listed.filter(\.value).map(\.key)
            if !propagating.isEmpty { return Set(propagating) }
        }
        return []
    }

    /// Whether `priv` holds at `path`.
    public static func has(_ priv: String, at path: String, in permissions: PVEPermissionMap) -> Bool {
        privileges(at: path, in: permissions).contains(priv)
    }

    /// PVE's bridge check (`check_sdn_bridge`, RPCEnvironment.pm): `SDN.Use` on
    /// `/sdn/zones/<zone>/<bridge>`, or on one of the bridge's VLAN ACL paths below it. A plain
    /// Linux bridge is in zone `localnetwork` (§13.1).
    public static func canUseBridge(_ bridge: String, zone: String = "localnetwork", in permissions: PVEPermissionMap) -> Bool {
        let path = bridgePath(bridge, zone: zone)
        if has("SDN.Use", at: path, in: permissions) { return true }
        // A VLAN path is an ACL path, so it is listed, with what holds there (flag 0 or 1).
        return permissions.paths.contains { $0.key.hasPrefix(path + "/") && $0.value["SDN.Use"] != nil }
    }

    /// `privileges(at:in:)` on a map of privilege sets, each read as propagating.
    public static func privileges(at path: String, in permissions: [String: Set<String>]) -> Set<String> {
        privileges(at: path, in: PVEPermissionMap(propagating: permissions))
    }

    /// `has(_:at:in:)` on a map of privilege sets, each read as propagating.
    public static func has(_ priv: String, at path: String, in permissions: [String: Set<String>]) -> Bool {
        has(priv, at: path, in: PVEPermissionMap(propagating: permissions))
    }

    /// `canUseBridge(_:zone:in:)` on a map of privilege sets, each read as propagating.
    public static func canUseBridge(_ bridge: String, zone: String = "localnetwork", in permissions: [String: Set<String>]) -> Bool {
        canUseBridge(bridge, zone: zone, in: PVEPermissionMap(propagating: permissions))
    }

    /// `/sdn/zones/<zone>/<bridge>` (§13.1).
    public static func bridgePath(_ bridge: String, zone: String = "localnetwork") -> String { "/sdn/zones/\(zone)/\(bridge)" }

    /// `path` without a trailing slash, `/` for the root.
    public static func normalize(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p.isEmpty ? "/" : p
    }

    /// The parent of a normalised path (`/` for a top-level path and for `/`).
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Whether `ancestor` is `path` itself or above it, by whole components (`/vms/10` is not
    /// above `/vms/101`).
    public static func covers(_ ancestor: String, _ path: String) -> Bool {
        let a = normalize(ancestor), p = normalize(path)
        return a == "/" || a == p || p.hasPrefix(a + "/")
    }
}

/// The parts of a backed-up guest config (`GET /nodes/{node}/vzdump/extractconfig`, §13.1) that
/// decide whether a restore by a token is refused: bridged NICs (`SDN.Use`), CT mount points
/// (bind/device: root only), VM host devices (`hostpciN`/`usbN`: root only unless mapped), whether
/// a CT is privileged (`Sys.Modify` on `/` for its first restore), and the production storage ids
/// of the disks (where a VM restore without `storage` puts them, §13.4).
public struct BackupConfig: Sendable, Equatable {
    /// A network device with a bridge (`net0: virtio=…,bridge=vmbr0`).
    public struct NIC: Sendable, Equatable {
        public var key: String
        public var bridge: String
        public init(key: String, bridge: String) {
            self.key = key
            self.bridge = bridge
        }
    }

    /// A CT mount point (`mpN`): a volume on a storage, a host directory (bind) or a host device.
    public struct MountPoint: Sendable, Equatable {
        public enum Kind: String, Sendable { case volume, bind, device }
        public var key: String
        public var kind: Kind
        /// The storage id of a volume mount point.
        public var storage: String?
        public init(key: String, kind: Kind, storage: String?) {
            self.key = key
            self.kind = kind
            self.storage = storage
        }
    }

    /// A VM host device (`hostpciN`, `usbN`): real (root only), mapped (`Mapping.Use`) or, for USB,
    /// the SPICE redirection (no host device).
    public struct HostDevice: Sendable, Equatable {
        public var key: String
        /// The resource mapping's name (`mapping=NAME`), nil for a real device.
        public var mapping: String?
        /// `usbN: spice` (or `host=spice`): no host device.
        public var spice: Bool
        public init(key: String, mapping: String?, spice: Bool) {
            self.key = key
            self.mapping = mapping
            self.spice = spice
        }
        /// `/mapping/pci/NAME` or `/mapping/usb/NAME` for a mapped device.
        public var mappingPath: String? { mapping.map { "/mapping/\(key.hasPrefix("usb") ? "usb" : "pci")/\($0)" } }
    }

    /// A disk and the storage id it was on in production.
    public struct Disk: Sendable, Equatable {
        public var key: String
        public var storage: String
        /// The drive's `size=` in bytes, when given (K, M, G, T).
        public var size: Int64?
        public init(key: String, storage: String, size: Int64? = nil) {
            self.key = key
            self.storage = storage
            self.size = size
        }
    }

    public var type: GuestType
    public var nics: [NIC] = []
    public var mountPoints: [MountPoint] = []
    public var hostDevices: [HostDevice] = []
    public var disks: [Disk] = []
    /// CTs: `unprivileged: 1` in the backup (a CT without it is privileged).
    public var unprivileged = false
    /// `onboot: 1` in the backup (restores pass `onboot=0`; `failover` puts this back).
    public var onboot = false

    /// Reads the main section of a config text (snapshot and pending sections after the first
    /// `[` line are ignored). VM disks come from the `#qmdump#map` lines when there are any
    /// (§3.3: the storage a restore without `storage` uses), else from the drive keys.
    public init(parsing text: String, type: GuestType) {
        self.type = type
        var driveDisks: [Disk] = [], mapDisks: [Disk] = []
        var sizes: [String: Int64] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") { break }
            if line.hasPrefix("#qmdump#map:") {
                // #qmdump#map:<virtdev>:<devname>:<storeid>:<format>:
                let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                if f.count >= 4, !f[3].isEmpty { mapDisks.append(Disk(key: f[1], storage: f[3])) }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            let fields = value.split(separator: ",").map(String.init)
            let first = fields.first ?? ""
            func option(_ name: String) -> String? {
                fields.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
            }
            if let size = option("size").flatMap(Self.bytes) { sizes[key] = size }
            if Self.isIndexed(key, "net"), let bridge = option("bridge") {
                nics.append(NIC(key: key, bridge: bridge))
            } else if key == "unprivileged" {
                unprivileged = value == "1"
            } else if key == "onboot" {
                onboot = value == "1"
            } else if type == .ct && (key == "rootfs" || Self.isIndexed(key, "mp")) {
                let volume = option("volume") ?? (first.contains("=") ? "" : first)
                let kind: MountPoint.Kind = volume.hasPrefix("/dev/") ? .device : volume.hasPrefix("/") ? .bind : .volume
                let storage = kind == .volume ? volume.split(separator: ":").first.map(String.init) : nil
                if key != "rootfs" { mountPoints.append(MountPoint(key: key, kind: kind, storage: storage)) }
                if let storage { driveDisks.append(Disk(key: key, storage: storage)) }
            } else if type == .vm && (Self.isIndexed(key, "hostpci") || Self.isIndexed(key, "usb")) {
                let host = option("host") ?? (first.contains("=") ? nil : first)
                hostDevices.append(HostDevice(key: key, mapping: option("mapping"),
                                              spice: key.hasPrefix("usb") && host?.lowercased() == "spice"))
            } else if type == .vm && Self.isDrive(key) {
                if first == "none" || fields.contains("media=cdrom") || first.hasPrefix("/") { continue }
                let volume = option("file") ?? first
                if let storage = volume.split(separator: ":", maxSplits: 1).first, volume.contains(":") {
                    driveDisks.append(Disk(key: key, storage: String(storage)))
                }
            }
        }
        disks = (mapDisks.isEmpty ? driveDisks : mapDisks).map { d in
            var d = d
            d.size = sizes[d.key]
            return d
        }
    }

    /// Each disk's size in the order pbs-restore restores them (§3.3); empty when one is unknown.
    /// Known before a task is followed, they keep a multi-disk restore's progress from falling.
    public var diskSizes: [Int64] {
        let s = disks.compactMap(\.size)
        return s.count == disks.count ? s : []
    }

    /// `32G`, `512M`, `4K`, `1T` (or plain bytes) in bytes, clamped to 1 EiB.
    static func bytes(_ text: String) -> Int64? {
        let units: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        guard let last = text.last else { return nil }
        let (number, factor) = units[last].map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let n = Double(number), n.isFinite, n >= 0 else { return nil }
        return Int64(min(n * factor, Double(1 << 60)))
    }

    /// The production storage ids of the disks, each once, in order.
    public var diskStorages: [String] {
        var seen = Set<String>()
        return disks.map(\.storage).filter { seen.insert($0).inserted }
    }

    static func isIndexed(_ key: String, _ prefix: String) -> Bool {
        key.hasPrefix(prefix) && key.count > prefix.count && key.dropFirst(prefix.count).allSatisfy(\.isNumber)
    }

    static func isDrive(_ key: String) -> Bool {
        ["scsi", "virtio", "sata", "ide"].contains { isIndexed(key, $0) } || key == "efidisk0" || key == "tpmstate0"
    }
}

import Foundation
