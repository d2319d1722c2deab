import Foundation

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
