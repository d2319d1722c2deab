import ProxmoxAPI
import StandbyCore

/// The per-guest families of `shared/design/METRICS.md`, written straight from the published
/// snapshot at scrape time. 1000 guests are about 21,000 series: as swift-prometheus objects they
/// held about 15 MB of live memory (measured with `Benchmarks/service-rss.sh`); written from the
/// snapshot they cost only the exposition buffer. Same names, labels, help and value formatting
/// as swift-prometheus (gauges as `Double.description`, counters as integers). Guests that left
/// the selection simply are not in the snapshot.
enum GuestExposition {
    /// Appends every per-guest family (none when there are no guests).
    static func write(_ guests: [StatusSnapshot.Guest], now: Double, into b: inout [UInt8]) {
        guard !guests.isEmpty else { return }
        b.reserveCapacity(b.count + guests.count * 1_900)
        // The `source`, `vmid` and `type` labels of each guest, escaped once.
        let labels = guests.map { g in
            "source=\"\(escape(g.key.source))\",vmid=\"\(g.key.vmid)\",type=\"\(g.type.rawValue)\""
        }
        func gauges(_ name: String, _ help: String, _ value: (StatusSnapshot.Guest) -> Double?) {
            family(name, "gauge", help, into: &b)
            for (i, g) in guests.enumerated() {
                guard let v = value(g) else { continue }
                line(name, labels[i], "\(v)", into: &b)
            }
        }
        family("pbs_standby_guest_info", "gauge", "Guest names and targets (join target).", into: &b)
        for (i, g) in guests.enumerated() {
            line("pbs_standby_guest_info",
                 labels[i] + ",name=\"\(escape(g.name))\",target_vmid=\"\(g.targetVmid)\",target_node=\"\(escape(g.targetNode))\"",
                 "1.0", into: &b)
        }
        gauges("pbs_standby_latest_backup_timestamp_seconds", "Backup time of the newest complete backup in the datastore.") {
            Double($0.latest?.backupTime ?? 0)
        }
        if guests.contains(where: { $0.restored != nil }) {
            gauges("pbs_standby_restored_backup_timestamp_seconds", "Backup time of the copy ready on the standby.") {
                $0.restored.map { Double($0.backupTime) }
            }
            gauges("pbs_standby_restore_lag_seconds", "Age of the standby copy: now minus its backup time.") {
                $0.restored.map { max(0, now - Double($0.backupTime)) }
            }
        }
        gauges("pbs_standby_rpo_target_seconds", "Configured RPO target of this guest.") { $0.rpoTarget }
        gauges("pbs_standby_pending_backups", "Complete backups newer than the restored one.") { Double($0.pendingBackups) }
        gauges("pbs_standby_last_restore_attempt_timestamp_seconds", "Time of the last restore attempt.") { $0.lastAttemptAt ?? 0 }
        gauges("pbs_standby_last_restore_success_timestamp_seconds", "Time of the last successful restore.") { $0.lastSuccessAt ?? 0 }
        gauges("pbs_standby_last_restore_duration_seconds", "Duration of the last restore attempt.") { $0.lastDuration ?? 0 }
        gauges("pbs_standby_consecutive_failures", "Consecutive failed restores.") { Double($0.consecutiveFailures) }
        gauges("pbs_standby_restore_progress_ratio", "Progress of the running restore, 0-1.") {
            $0.state == .restoring ? ($0.progress ?? 0) : 0
        }
        family("pbs_standby_restores_total", "counter", "Restore attempts by result.", into: &b)
        for (i, g) in guests.enumerated() {
            line("pbs_standby_restores_total", labels[i] + ",result=\"success\"", "\(g.restoresSucceeded)", into: &b)
            line("pbs_standby_restores_total", labels[i] + ",result=\"failure\"", "\(g.restoresFailed)", into: &b)
        }
        family("pbs_standby_restored_bytes_total", "counter", "Bytes of backups restored successfully.", into: &b)
        for (i, g) in guests.enumerated() {
            line("pbs_standby_restored_bytes_total", labels[i], "\(g.restoredBytesTotal)", into: &b)
        }
        if guests.contains(where: { $0.drill != nil }) {
            gauges("pbs_standby_drill_last_success_timestamp_seconds", "When the guest's last passed DR drill ended.") { $0.drill?.lastPassedAt }
            gauges("pbs_standby_drill_boot_seconds", "Start to first evidence of boot, of the last passed DR drill.") { $0.drill?.lastPassedBootSeconds }
            gauges("pbs_standby_drill_failed", "1 while the guest's newest drill that passed or failed, failed.") { g in
                g.drill.map { $0.failed ? 1 : 0 }
            }
            gauges("pbs_standby_drill_due_timestamp_seconds", "A passed DR drill is due by then (last passed or since drills apply, plus drill.overdue_after).") {
                $0.drill?.dueAt
            }
        }
        family("pbs_standby_guest_state", "gauge", "One series per state; exactly one is 1.", into: &b)
        for (i, g) in guests.enumerated() {
            for s in GuestState.allCases {
                line("pbs_standby_guest_state", labels[i] + ",state=\"\(s.rawValue)\"", s == g.state ? "1.0" : "0.0", into: &b)
            }
        }
    }

    private static func family(_ name: String, _ type: String, _ help: String, into b: inout [UInt8]) {
        b.append(contentsOf: "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n".utf8)
    }

    private static func line(_ name: String, _ labels: String, _ value: String, into b: inout [UInt8]) {
        b.append(contentsOf: name.utf8)
        b.append(UInt8(ascii: "{"))
        b.append(contentsOf: labels.utf8)
        b.append(contentsOf: "} ".utf8)
        b.append(contentsOf: value.utf8)
        b.append(UInt8(ascii: "\n"))
    }

    /// A label value per the text exposition format: backslash, double quote and line feed escaped.
    static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else { return s }
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}
