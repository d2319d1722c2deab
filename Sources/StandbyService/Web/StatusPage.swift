import StandbyCore

/// The HTML status page: server-rendered, no external assets, readable without JavaScript,
/// refreshing itself every 10 s. Everything from PVE/PBS is HTML-escaped.
public enum StatusPage {
    /// The last good restore's mode and bytes written: `delta 80 MiB (20 of 2048 chunks)`, or
    /// `full 32 GiB` with the reason a delta was not possible.
    static func lastWrite(_ r: StatusSnapshot.LastRestore?) -> String {
        guard let r, let mode = r.mode else { return "—" }
        var text = "\(mode) \(bytes(r.bytesWritten ?? 0))"
        if let changed = r.chunksChanged, let total = r.chunksTotal { text += " (\(changed) of \(total) chunks)" }
        if let reason = r.fallbackReason { text += " — delta not possible: \(escape(reason))" }
        return text
    }

    /// Bytes in binary units (`80 MiB`).
    static func bytes(_ n: Int64) -> String {
        var v = Double(n), unit = 0
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        while v >= 1024 && unit < units.count - 1 { v /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: v < 10 ? "%.1f %@" : "%.0f %@", v, units[unit])
    }

    /// The page of a snapshot; lag and ages are computed against `now` (Unix seconds).
    public static func render(_ s: StatusSnapshot, now: Double) -> String {
        var rows = ""
        for g in s.guests {
            let lag = g.restored.map { now - Double($0.backupTime) }
            let stale = lag.map { $0 > g.rpoTarget } ?? true
            let progress = g.state == .restoring
                ? "<progress max=\"1\" value=\"\(g.progress ?? 0)\">\(Int((g.progress ?? 0) * 100))%</progress>" : ""
            rows += """
            <tr class="guest">
            <td>\(escape(g.key.source))</td><td>\(g.key.vmid) → \(g.targetVmid)</td><td>\(g.type.rawValue)</td><td>\(escape(g.name))</td>
            <td><span class="st st-\(g.state.rawValue)">\(g.state.rawValue)\(g.blockedReason.map { ": " + $0.rawValue } ?? "")</span> \(progress)</td>
            <td>\(g.restored.map { escape($0.volid) } ?? "—")</td>
            <td class="\(stale ? "bad" : "ok")">\(lag.map(age) ?? "no copy") / \(age(g.rpoTarget))</td>
            <td>\(g.pendingBackups)</td>
            <td class="written">\(lastWrite(g.history.first(where: { $0.mode != nil })))</td>
            <td class="err">\([g.blockedDetail, g.lastError, g.history.first.flatMap { $0.warnings > 0 ? "restored with \($0.warnings) warning(s): see the task log" : nil }].compactMap { $0.map(escape) }.joined(separator: "<br>"))</td>
            </tr>

            """
        }
        var sources = ""
        for src in s.sources {
            sources += "<li>\(escape(src.storage)): <span class=\"\(src.up ? "ok" : "bad")\">\(src.up ? "up" : "down")</span>"
                + (src.lastRefreshAt.map { " (refreshed \(age(now - $0)) ago)" } ?? "") + (src.error.map { " — " + escape($0) } ?? "") + "</li>"
        }
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
        <title>pbs-standby</title>
        <style>
        body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}
        th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;font-size:14px}th{background:#f3f3f3}
        .st{padding:.1em .45em;border-radius:.3em;color:#fff;background:#777}.st-idle{background:#2e7d32}.st-queued{background:#1565c0}
        .st-restoring{background:#0277bd}.st-failing{background:#c62828}.st-held{background:#6d4c41}.st-failed_over{background:#6a1b9a}
        .st-blocked{background:#ef6c00}.st-drilling{background:#00838f}#readiness{font-size:16px;font-weight:600}.ok{color:#2e7d32}.bad{color:#c62828}.err{color:#c62828;font-size:12px}
        </style></head><body>
        <h1>pbs-standby</h1>
        <p>Version \(escape(s.service.version)) · workers \(s.service.workers) · queue \(s.service.queueLength) · restoring \(s.service.restoresInProgress)
        · last pass \(s.service.lastLoopAt.map { age(now - $0) + " ago" } ?? "not yet")</p>
        \(stateBanner(s.service, now: now))
        \(readiness(s))
        <h2>Sources</h2><ul>\(sources)</ul>
        <h2>Guests</h2>
        <table id="guests"><thead><tr><th>Source</th><th>VMID → target</th><th>Type</th><th>Name</th><th>State</th>
        <th>Restored backup</th><th>Age / RPO target</th><th>Pending</th><th>Last write</th><th>Last error</th></tr></thead>
        <tbody>
        \(rows)</tbody></table>
        <p><a href="/metrics">Metrics</a> · <a href="/api/v1/status">Status JSON</a> · <a href="/drills">DR drill report</a> · <a href="/-/healthy">Health</a> · <a href="/-/ready">Readiness</a></p>
        </body></html>

        """
    }

    /// `3h12m`, `45m`, `30s`.
    static func age(_ seconds: Double) -> String {
        let s = Int(max(0, seconds))
        if s >= 86400 { return "\(s / 86400)d\((s % 86400) / 3600)h" }
        if s >= 3600 { return "\(s / 3600)h\((s % 3600) / 60)m" }
        if s >= 60 { return "\(s / 60)m" }
        return "\(s)s"
    }

    /// Escapes text for HTML element content and attribute values.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The failover verdict in one line, then each blocked or failing guest linked to its runbook.
    static func readiness(_ s: StatusSnapshot) -> String {
        guard let r = s.readiness else { return "" }
        let cls = r.summary.ready ? "ok" : "bad"
        var out = "<p id=\"readiness\" class=\"\(cls)\">\(escape(r.line))</p>"
        let trouble = s.guests.filter { $0.state == .blocked || $0.state == .failing || $0.drill?.failed == true }
        if !trouble.isEmpty {
            let runbook = "README.md"  // as the alerts' runbook_url: the README shipped with the package
            out += "<ul id=\"trouble\">" + trouble.map { g in
                let anchor = g.drill?.failed == true ? "alert-pbsstandbydrillfailed"
                    : g.blockedReason == .drillCleanup ? "blocked-drill-cleanup" : g.state == .blocked ? "alert-pbsstandbyguestblocked" : "alert-pbsstandbyrestorefailing"
                return "<li>\(escape(g.key.description)) (\(escape(g.name))): <a href=\"\(runbook)#\(anchor)\">\(g.drill?.failed == true ? "drill failed" : g.state.rawValue) — runbook</a></li>"
            }.joined() + "</ul>"
        }
        return out
    }

    /// A banner while the state file cannot be written (no restore starts then).
    static func stateBanner(_ service: StatusSnapshot.Service, now: Double) -> String {
        guard !service.stateWritable else { return "" }
        let since = service.stateErrorSince.map { " for " + age(now - $0) } ?? ""
        return "<p id=\"state-error\" class=\"err\" role=\"alert\"><strong>State file not writable\(since): no restore starts.</strong> "
            + "\(escape(service.stateError ?? "")) (\(service.unsavedWrites) outcome(s) kept in memory until it can be written)</p>"
    }
}
