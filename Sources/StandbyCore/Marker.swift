import Foundation
import ProxmoxAPI

/// The marker every restored guest carries, passed in the restore call (a restore replaces tags
/// and description with the backup's otherwise, reference §3.1/§5.3) and checked afterwards:
/// the tag `pbs-standby` and a description line naming the restored volid and time.
/// It is what makes a guest "ours": losing the state file must never cause a wrong overwrite.
public enum Marker {
    /// The tag.
    public static let tag = "pbs-standby"
    private static let prefix = "pbs-standby: restored from "

    /// The description to pass in the restore call.
    public static func description(volid: Volid, restoredAt: Double, note: String? = nil) -> String {
        var lines = ["\(prefix)\(volid) at \(iso8601(restoredAt))"]
        if let note, !note.isEmpty { lines.append(note) }
        return lines.joined(separator: "\n")
    }

    /// The volid named in a description's marker line, if any.
    public static func volid(inDescription description: String?) -> Volid? {
        guard let description else { return nil }
        for line in description.split(separator: "\n") where line.hasPrefix(prefix) {
            let rest = line.dropFirst(prefix.count)
            let volidText = rest.split(separator: " ").first.map(String.init) ?? ""
            return Volid(parsing: volidText)
        }
        return nil
    }

    /// Whether the tags carry the marker tag.
    public static func isTagged(_ tags: [String]) -> Bool { tags.contains { $0.lowercased() == tag } }
}

/// ISO-8601 UTC with seconds (`2026-11-26T10:00:00Z`).
public func iso8601(_ t: Double) -> String { Volid.formatTime(Int(t.rounded(.down))) }
