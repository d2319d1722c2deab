/// A snapshot named as PBS names it, `<type>/<id>/<time>` (e.g. `vm/100/2024-01-01T00:00:00Z`),
/// in a namespace. Grammar from proxmox-backup `pbs-api-types/src/lib.rs`: `BACKUP_TYPE_RE`
/// `(?:host|vm|ct)`, `BACKUP_ID_RE` `[A-Za-z0-9_][A-Za-z0-9._\-]*`, `BACKUP_TIME_RE`
/// `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z`, `BACKUP_NS_RE` up to 8 `SAFE_ID`
/// components joined by `/` (proxmox-schema `SAFE_ID_REGEX_STR` = `[A-Za-z0-9_][A-Za-z0-9._\-]*`).
public struct SnapshotRef: Sendable, Hashable, CustomStringConvertible {
    /// Namespace components, outermost first; empty for the root namespace.
    public let namespace: [String]
    /// `vm`, `ct` or `host`.
    public let backupType: String
    /// The backup id (the VMID for guests).
    public let backupID: String
    /// The backup time as written, RFC 3339 UTC with `Z`.
    public let time: String

    /// Parses `type/id/time` and a namespace (`""` for the root, `a/b` for nested namespaces).
    /// - Throws: ``DatastoreError/invalidArgument(_:)`` naming what is malformed.
    public init(parsing text: String, namespace: String = "") throws(DatastoreError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else {
            throw .invalidArgument("snapshot '\(text)': expected <type>/<id>/<time>, e.g. vm/100/2024-01-01T00:00:00Z")
        }
        guard ["vm", "ct", "host"].contains(parts[0]) else {
            throw .invalidArgument("snapshot '\(text)': backup type '\(parts[0])' is not one of vm, ct, host")
        }
        guard Self.isSafeID(parts[1]) else {
            throw .invalidArgument("snapshot '\(text)': backup id '\(parts[1])' is not a valid id")
        }
        guard Self.isBackupTime(parts[2]) else {
            throw .invalidArgument("snapshot '\(text)': time '\(parts[2])' is not YYYY-MM-DDTHH:MM:SSZ")
        }
        self.namespace = try Self.parseNamespace(namespace)
        backupType = parts[0]
        backupID = parts[1]
        time = parts[2]
    }

    /// The directory below the datastore root: `ns/<a>/ns/<b>/<type>/<id>/<time>`
    /// (`namespace_path` in pbs-datastore/src/datastore.rs pushes `ns` before each component).
    public var relativePath: String {
        (namespace.flatMap { ["ns", $0] } + [backupType, backupID, time]).joined(separator: "/")
    }

    /// `type/id/time`, with `ns:<namespace>/` in front outside the root namespace.
    public var description: String {
        let name = "\(backupType)/\(backupID)/\(time)"
        return namespace.isEmpty ? name : "ns:\(namespace.joined(separator: "/"))/\(name)"
    }

    /// Splits and checks a namespace string: at most 8 components (`MAX_NAMESPACE_DEPTH` = 7
    /// below the root), each a `SAFE_ID`.
    public static func parseNamespace(_ text: String) throws(DatastoreError) -> [String] {
        if text.isEmpty { return [] }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 8 else { throw .invalidArgument("namespace '\(text)': deeper than 8 levels") }
        for p in parts where !isSafeID(p) {
            throw .invalidArgument("namespace '\(text)': component '\(p)' is not a valid name")
        }
        return parts
    }

    /// `[A-Za-z0-9_][A-Za-z0-9._\-]*` (no `/`, cannot be `.` or `..`).
    static func isSafeID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard let first = u.first, isAlnum(first) || first == UInt8(ascii: "_") else { return false }
        return u.dropFirst().allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    private static func isBackupTime(_ s: String) -> Bool {
        let u = Array(s.utf8)
        let pattern = Array("dddd-dd-ddTdd:dd:ddZ".utf8)
        guard u.count == pattern.count else { return false }
        return zip(u, pattern).allSatisfy { c, p in p == UInt8(ascii: "d") ? (c >= 48 && c <= 57) : c == p }
    }
}
