import Foundation
import StandbyCore

extension StatusDocument {
    /// The document of a snapshot; lag is computed against `now`.
    public init(_ s: StatusSnapshot, now: Double) {
        service = Service(version: s.service.version, startedAt: Self.time(s.service.startedAt), workers: s.service.workers,
                          queueLength: s.service.queueLength, restoresInProgress: s.service.restoresInProgress,
                          lastLoopAt: Self.time(s.service.lastLoopAt),
                          state: StateFile(writable: s.service.stateWritable, error: s.service.stateError,
                                           failingSince: Self.time(s.service.stateErrorSince), writeErrors: s.service.stateWriteErrors,
                                           unsavedWrites: s.service.unsavedWrites))
        sources = s.sources.map {
            Source(storage: $0.storage, up: $0.up, lastRefreshAt: Self.time($0.lastRefreshAt), error: $0.error,
                   refreshErrors: $0.refreshErrors, listings: $0.listings, nextListingAt: Self.time($0.nextListingAt))
        }
        guests = s.guests.map { Guest($0, now: now) }
        readiness = s.readiness.map { r in
            Readiness(summary: r.line, ready: r.summary.ready, guests: r.summary.guests, startable: r.summary.startable,
                      oldestCopySeconds: r.summary.oldestCopyAge, memoryRequiredBytes: r.summary.memoryRequired,
                      memoryAvailableBytes: r.summary.memoryAvailable, coresRequired: r.summary.coresRequired)
        }
    }

    /// A Unix time as ISO-8601 UTC; nil stays nil.
    static func time(_ t: Double?) -> String? { t.map(iso8601) }

    /// The document as JSON: the one writer of the status API (keys sorted, `null` for absent values).
    public func json() -> [UInt8] { Self.encode(self) }

    /// Any part of the document as JSON.
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }

    /// Reads a document (`pbs-standby status`, tests).
    public static func decode(_ bytes: some Sequence<UInt8>) throws -> StatusDocument {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(StatusDocument.self, from: Data(bytes))
    }
}

extension StatusDocument.Guest {
    /// One guest's entry; `progress` only while it restores.
    public init(_ g: StatusSnapshot.Guest, now: Double) {
        func backup(_ b: StatusSnapshot.Backup?) -> StatusDocument.Backup? {
            b.map { .init(volid: $0.volid, backupTime: iso8601(Double($0.backupTime)), backupTimestamp: $0.backupTime, sizeBytes: $0.size) }
        }
        let history = g.history.map {
            StatusDocument.Restore(startedAt: iso8601($0.startedAt), finishedAt: $0.finishedAt.map(iso8601), durationSeconds: $0.duration,
                                   result: $0.result, error: $0.error, upid: $0.upid, volid: $0.volid, warnings: $0.warnings,
                                   mode: $0.mode, bytesWritten: $0.bytesWritten, chunksChanged: $0.chunksChanged,
                                   chunksTotal: $0.chunksTotal, fallbackReason: $0.fallbackReason)
        }
        self.init(source: g.key.source, vmid: g.key.vmid, type: g.type.rawValue, name: g.name, targetVmid: g.targetVmid,
                  targetNode: g.targetNode, state: g.state.rawValue, restored: backup(g.restored), latest: backup(g.latest),
                  lagSeconds: g.restored.map { max(0, now - Double($0.backupTime)) }, rpoTargetSeconds: g.rpoTarget, priority: g.priority,
                  pendingBackups: g.pendingBackups, progress: g.state == .restoring ? (g.progress ?? 0) : nil, lastRestore: history.first,
                  consecutiveFailures: g.consecutiveFailures, nextRetryAt: g.nextRetryAt.map(iso8601), lastError: g.lastError,
                  blockedReason: g.blockedReason?.rawValue, blockedDetail: g.blockedDetail, history: history,
                  drill: g.drill.map(StatusDocument.Drill.init))
    }

    /// The guest as JSON (`/api/v1/guests/{vmid}`).
    public func json() -> [UInt8] { StatusDocument.encode(self) }
}

extension StatusDocument.Drill {
    /// A guest's drill view as the document shows it.
    public init(_ d: StatusSnapshot.Drill) {
        self.init(result: d.result, startedAt: d.startedAt.map(iso8601), finishedAt: d.finishedAt.map(iso8601), bootSeconds: d.bootSeconds,
                  evidence: d.evidence, volid: d.volid, reason: d.reason, osInfo: d.osInfo, hostName: d.hostName,
                  lastPassedAt: d.lastPassedAt.map(iso8601), dueAt: d.dueAt.map(iso8601), nextAt: d.nextAt.map(iso8601))
    }
}
