import Foundation
import ProxmoxModel

/// The marker every restored guest carries, passed in the restore call (a restore replaces tags
/// and description with the backup's otherwise, reference §3.1/§5.3) and checked afterwards.
///
/// The description line names the backup (so its source storage, backed-up VMID and type) **and
/// the VMID the copy was restored into**:
///
///     pbs-standby: restored from pbs-prod:backup/vm/101/2026-11-26T10:00:00Z into 101 at 2026-11-26T10:05:00Z vmgenid 6f1c…
///
/// A clone copies tags and description but lives at another VMID, so its marker names a VMID
/// that is not its own; a VM's `vmgenid` (new on every restore, clone and snapshot rollback,
/// reference §3.1) is written into the marker after `TASK OK`, so the proof survives the loss of
/// the state file. The tag `pbs-standby` is shown to operators; it is not a proof on its own.
public enum Marker {
    /// The tag every copy carries.
    public static let tag = "pbs-standby"
    /// The tag mirroring `pbs-standby hold` on the guest (survives the loss of the state file).
    public static let heldTag = "pbs-standby-held"
    /// The tag mirroring `pbs-standby failover` on the guest.
    public static let failedOverTag = "pbs-standby-failed-over"
    private static let prefix = "pbs-standby: restored from "

    /// What a marker line says.
    public struct Info: Sendable, Equatable {
        /// The backup the copy was restored from (names source storage, type and backed-up VMID).
        public var volid: Volid
        /// The VMID the copy was restored into; nil in markers of pbs-standby before 0.2.
        public var targetVmid: Int?
        /// When it was restored (as written; informational).
        public var restoredAt: String?
        /// The VM's `vmgenid` recorded after `TASK OK` (VMs only).
        public var vmgenid: String?
        /// A delta restore is rewriting the copy's disks into this backup (issue 15): the copy is
        /// not whole and must not be started until the delta ends or is rolled back.
        public var rewriting: Volid?

        /// A marker; `restoredAt` and `vmgenid` are optional (a VM's vmgenid is added after `TASK OK`).
        public init(volid: Volid, targetVmid: Int?, restoredAt: String? = nil, vmgenid: String? = nil) {
            self.volid = volid
            self.targetVmid = targetVmid
            self.restoredAt = restoredAt
            self.vmgenid = vmgenid
        }

        /// The marker line.
        public var line: String {
            var s = "\(Marker.prefix)\(volid)"
            if let targetVmid { s += " into \(targetVmid)" }
            if let restoredAt { s += " at \(restoredAt)" }
            if let vmgenid { s += " vmgenid \(vmgenid)" }
            if let rewriting { s += " rewriting \(rewriting)" }
            return s
        }
    }

    /// The description to pass in the restore call.
    public static func description(volid: Volid, targetVmid: Int, restoredAt: Double, vmgenid: String? = nil, note: String? = nil) -> String {
        var lines = [Info(volid: volid, targetVmid: targetVmid, restoredAt: iso8601(restoredAt), vmgenid: vmgenid).line]
        if let note, !note.isEmpty { lines.append(note) }
        return lines.joined(separator: "\n")
    }

    /// The description with the marker line replaced by `info` (other lines kept).
    public static func replacing(in description: String?, with info: Info) -> String {
        var lines = (description ?? "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let i = lines.firstIndex(where: { $0.hasPrefix(prefix) }) { lines[i] = info.line } else { lines.insert(info.line, at: 0) }
        while lines.last == "" { lines.removeLast() }
        return lines.joined(separator: "\n")
    }

    /// The marker in a description, if any.
    public static func parse(_ description: String?) -> Info? {
        guard let description else { return nil }
        for line in description.split(separator: "\n") where line.hasPrefix(prefix) {
            let words = line.dropFirst(prefix.count).split(separator: " ").map(String.init)
            guard let first = words.first, let volid = Volid(parsing: first) else { return nil }
            var info = Info(volid: volid, targetVmid: nil)
            var i = 1
            while i + 1 < words.count {
                switch words[i] {
                case "into": info.targetVmid = Int(words[i + 1])
                case "at": info.restoredAt = words[i + 1]
                case "vmgenid": info.vmgenid = words[i + 1]
                case "rewriting": info.rewriting = Volid(parsing: words[i + 1])
                default: break
                }
                i += 2
            }
            return info
        }
        return nil
    }

    /// The volid named in a description's marker line, if any.
    public static func volid(inDescription description: String?) -> Volid? { parse(description)?.volid }

    /// The freeze a guest's tags carry (`failed over` wins over `held`), nil when none.
    public static func freeze(in tags: [String]) -> String? {
        let t = Set(tags.map { $0.lowercased() })
        return t.contains(failedOverTag) ? "failed over" : t.contains(heldTag) ? "held" : nil
    }

    /// Whether the tags carry the marker tag.
    public static func isTagged(_ tags: [String]) -> Bool { tags.contains { $0.lowercased() == tag } }
}

/// ISO-8601 UTC with seconds (`2026-11-26T10:00:00Z`).
public func iso8601(_ t: Double) -> String {
    guard t.isFinite, abs(t) < 1e15 else { return "invalid-time" }
    return Volid.formatTime(Int(t.rounded(.down)))
}
