import Foundation
import StandbyCore

/// The drill report (issue 16 §6): what an auditor is handed — one row per guest with the
/// evidence of its latest drill and its latest passed drill. Rendered as HTML (`/drills`,
/// printable), JSON (`/api/v1/drills`, `deploy/api/drills.schema.json`) and text
/// (`pbs-standby drill --report`), all from the same rows.
public enum DrillReport {
    /// One guest of the report.
    public struct Row: Codable, Sendable, Equatable {
        /// The source storage.
        public var source: String
        /// The backed-up VMID.
        public var vmid: Int
        /// `vm` or `ct`.
        public var type: String
        /// The guest's name.
        public var name: String
        /// The copy's VMID.
        public var targetVmid: Int
        /// The drill facts.
        public var drill: StatusDocument.Drill
        /// A row.
        public init(source: String, vmid: Int, type: String, name: String, targetVmid: Int, drill: StatusDocument.Drill) {
            self.source = source
            self.vmid = vmid
            self.type = type
            self.name = name
            self.targetVmid = targetVmid
            self.drill = drill
        }
    }

    /// The JSON document.
    public struct Document: Codable, Sendable, Equatable {
        /// When the report was made (ISO-8601 UTC).
        public var generatedAt: String
        /// The node the copies are on.
        public var node: String
        /// One row per drilled guest, in key order.
        public var guests: [Row]
    }

    /// The rows of a published snapshot: every guest drills apply to.
    public static func rows(_ s: StatusSnapshot) -> [Row] {
        s.guests.compactMap { g in
            g.drill.map { Row(source: g.key.source, vmid: g.key.vmid, type: g.type.rawValue, name: g.name, targetVmid: g.targetVmid, drill: StatusDocument.Drill($0)) }
        }
    }

    /// The JSON of the rows.
    public static func json(_ rows: [Row], node: String, now: Double) -> [UInt8] {
        StatusDocument.encode(Document(generatedAt: iso8601(now), node: node, guests: rows)) + [10]
    }

    /// The printable HTML page.
    public static func html(_ rows: [Row], node: String, now: Double) -> String {
        let e = StatusPage.escape
        var body = ""
        for r in rows {
            let d = r.drill
            let cls = d.result == "passed" ? "ok" : d.result == "failed" ? "bad" : ""
            body += """
            <tr class="drill"><td>\(e(r.source))</td><td>\(r.vmid) → \(r.targetVmid)</td><td>\(r.type)</td><td>\(e(r.name))</td>
            <td class="\(cls)">\(e(d.result ?? "never drilled"))</td><td>\(e(d.finishedAt ?? d.startedAt ?? "—"))</td>
            <td>\(d.bootSeconds.map { String(format: "%.0f s", $0) } ?? "—")</td><td>\(e(evidenceText(d)))</td>
            <td>\(e(d.volid ?? "—"))</td><td>\(e(d.lastPassedAt ?? "never"))</td><td class="reason">\(e(d.reason ?? ""))</td></tr>

            """
        }
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>pbs-standby DR drill report</title>
        <style>
        body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}
        th,td{border:1px solid #ccc;padding:.3em .45em;text-align:left;font-size:13px}th{background:#f3f3f3}
        .ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}.reason{font-size:12px}
        @media print{a{display:none}body{margin:0}th{background:none}}
        </style></head><body>
        <h1>DR drill report</h1>
        <p>Standby node \(e(node)) · generated \(e(iso8601(now))) · \(rows.filter { $0.drill.result == "passed" }.count) of \(rows.count) guests' latest drills passed.
        Each drill booted the standby copy with every network link down, collected the evidence below, stopped it and rolled it back
        to the snapshot taken before (the copy's disks and config are as they were).</p>
        <table id="drills"><thead><tr><th>Source</th><th>VMID → copy</th><th>Type</th><th>Name</th><th>Latest result</th><th>When</th>
        <th>Boot time</th><th>Evidence</th><th>Backup proved</th><th>Last passed</th><th>Reason</th></tr></thead>
        <tbody>
        \(body)</tbody></table>
        <p><a href="/">Status</a> · <a href="/api/v1/drills">JSON</a></p>
        </body></html>

        """
    }

    /// The text report (`pbs-standby drill --report`).
    public static func text(_ rows: [Row], node: String, now: Double) -> String {
        var out = "DR drill report — standby node \(node), \(iso8601(now))\n"
        out += "\(rows.filter { $0.drill.result == "passed" }.count) of \(rows.count) guests' latest drills passed.\n\n"
        for r in rows {
            let d = r.drill
            out += "\(r.source)/\(r.vmid) → \(r.targetVmid) (\(r.type), \(r.name)): \(d.result ?? "never drilled")"
            if let t = d.finishedAt ?? d.startedAt { out += " at \(t)" }
            if let b = d.bootSeconds { out += String(format: ", booted in %.0f s", b) }
            if d.evidence != nil { out += ", evidence: \(evidenceText(d))" }
            if let v = d.volid { out += "\n    backup: \(v)" }
            out += "\n    last passed: \(d.lastPassedAt ?? "never")"
            if let reason = d.reason { out += "\n    reason: \(reason)" }
            out += "\n"
        }
        return out
    }

    static func evidenceText(_ d: StatusDocument.Drill) -> String {
        switch d.evidence {
        case "agent": return "guest agent answered" + (d.osInfo.map { " (\($0)" + (d.hostName.map { ", \($0)" } ?? "") + ")" } ?? "")
        case "running": return "ran without stopping (no guest agent: weaker)"
        default: return "—"
        }
    }
}
