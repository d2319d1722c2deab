import MicroHTTP
import ProxmoxAPI
import StandbyCore

/// The JSON of `/api/v1/status` and `/api/v1/guests/{vmid}` (fields of METRICS.md). Times are
/// ISO-8601 UTC strings with a Unix-seconds twin.
public enum StatusJSON {
    static func time(_ t: Double?) -> JSONValue { t.map { .string(iso8601($0)) } ?? .null }
    static func num(_ d: Double?) -> JSONValue { d.map { .number($0) } ?? .null }

    /// The whole status document.
    public static func status(_ s: StatusSnapshot, now: Double) -> JSONValue {
        .object([
            "service": .object([
                "version": .string(s.service.version), "started_at": time(s.service.startedAt), "workers": .number(Double(s.service.workers)),
                "queue_length": .number(Double(s.service.queueLength)), "restores_in_progress": .number(Double(s.service.restoresInProgress)),
                "last_loop_at": time(s.service.lastLoopAt),
                "state": .object([
                    "writable": .bool(s.service.stateWritable), "error": s.service.stateError.map { .string($0) } ?? .null,
                    "failing_since": time(s.service.stateErrorSince), "write_errors": .number(Double(s.service.stateWriteErrors)),
                    "unsaved_writes": .number(Double(s.service.unsavedWrites)),
                ]),
            ]),
            "sources": .array(s.sources.map { src in
                .object(["storage": .string(src.storage), "up": .bool(src.up), "last_refresh_at": time(src.lastRefreshAt),
                         "error": src.error.map { .string($0) } ?? .null, "refresh_errors": .number(Double(src.refreshErrors)),
                         "listings": .number(Double(src.listings)), "next_listing_at": time(src.nextListingAt)])
            }),
            "guests": .array(s.guests.map { guest($0, now: now) }),
        ])
    }

    /// One guest.
    public static func guest(_ g: StatusSnapshot.Guest, now: Double) -> JSONValue {
        func backup(_ b: StatusSnapshot.Backup?) -> JSONValue {
            guard let b else { return .null }
            return .object(["volid": .string(b.volid), "backup_time": .string(iso8601(Double(b.backupTime))),
                            "backup_timestamp": .number(Double(b.backupTime)), "size_bytes": num(b.size.map(Double.init))])
        }
        let last: JSONValue = g.history.first.map { h in
            .object(["started_at": time(h.startedAt), "finished_at": time(h.finishedAt), "duration_seconds": num(h.duration),
                     "result": .string(h.result), "error": h.error.map { .string($0) } ?? .null,
                     "upid": h.upid.map { .string($0) } ?? .null, "volid": .string(h.volid), "warnings": .number(Double(h.warnings))])
        } ?? .null
        return .object([
            "source": .string(g.key.source), "vmid": .number(Double(g.key.vmid)), "type": .string(g.type.rawValue), "name": .string(g.name),
            "target_vmid": .number(Double(g.targetVmid)), "target_node": .string(g.targetNode), "state": .string(g.state.rawValue),
            "restored": backup(g.restored), "latest": backup(g.latest),
            "lag_seconds": num(g.restored.map { max(0, now - Double($0.backupTime)) }), "rpo_target_seconds": .number(g.rpoTarget),
            "priority": .number(Double(g.priority)), "pending_backups": .number(Double(g.pendingBackups)),
            "progress": num(g.state == .restoring ? (g.progress ?? 0) : nil),
            "last_restore": last, "consecutive_failures": .number(Double(g.consecutiveFailures)),
            "next_retry_at": time(g.nextRetryAt), "last_error": g.lastError.map { .string($0) } ?? .null,
            "blocked_reason": g.blockedReason.map { .string($0.rawValue) } ?? .null,
            "blocked_detail": g.blockedDetail.map { .string($0) } ?? .null,
            "history": .array(g.history.map { h in
                .object(["started_at": time(h.startedAt), "finished_at": time(h.finishedAt), "duration_seconds": num(h.duration),
                         "result": .string(h.result), "error": h.error.map { .string($0) } ?? .null,
                         "upid": h.upid.map { .string($0) } ?? .null, "volid": .string(h.volid), "warnings": .number(Double(h.warnings))])
            }),
        ])
    }
}
