import Foundation
import StandbyCore

/// The document of `/api/v1/status` (and one guest of it, `/api/v1/guests/{vmid}`): the fields of
/// METRICS.md, validated against `deploy/api/status.schema.json`. One Codable type shared by the
/// server, `pbs-standby status` and the tests. Times are ISO-8601 UTC strings with a Unix-seconds
/// twin where the contract has one; absent values are `null`, never missing keys.
public struct StatusDocument: Codable, Sendable, Equatable {
    public var service: Service
    public var sources: [Source]
    public var guests: [Guest]

    public struct Service: Codable, Sendable, Equatable {
        public var version: String
        public var startedAt: String?
        public var workers: Int
        public var queueLength: Int
        public var restoresInProgress: Int
        public var lastLoopAt: String?
        public var state: StateFile
    }

    /// Whether the service's state file takes writes.
    public struct StateFile: Codable, Sendable, Equatable {
        public var writable: Bool
        public var error: String?
        public var failingSince: String?
        public var writeErrors: Int
        public var unsavedWrites: Int
    }

    public struct Source: Codable, Sendable, Equatable {
        public var storage: String
        public var up: Bool
        public var lastRefreshAt: String?
        public var error: String?
        public var refreshErrors: Int
        public var listings: Int
        public var nextListingAt: String?
    }

    public struct Backup: Codable, Sendable, Equatable {
        public var volid: String
        public var backupTime: String
        public var backupTimestamp: Int
        public var sizeBytes: Int64?
    }

    public struct Restore: Codable, Sendable, Equatable {
        public var startedAt: String?
        public var finishedAt: String?
        public var durationSeconds: Double?
        public var result: String
        public var error: String?
        public var upid: String?
        public var volid: String
        public var warnings: Int
    }

    public struct Guest: Codable, Sendable, Equatable {
        public var source: String
        public var vmid: Int
        public var type: String
        public var name: String
        public var targetVmid: Int
        public var targetNode: String
        public var state: String
        public var restored: Backup?
        public var latest: Backup?
        public var lagSeconds: Double?
        public var rpoTargetSeconds: Double
        public var priority: Int
        public var pendingBackups: Int
        public var progress: Double?
        public var lastRestore: Restore?
        public var consecutiveFailures: Int
        public var nextRetryAt: String?
        public var lastError: String?
        public var blockedReason: String?
        public var blockedDetail: String?
        public var history: [Restore]
    }
}

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
    }

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
                                   result: $0.result, error: $0.error, upid: $0.upid, volid: $0.volid, warnings: $0.warnings)
        }
        self.init(source: g.key.source, vmid: g.key.vmid, type: g.type.rawValue, name: g.name, targetVmid: g.targetVmid,
                  targetNode: g.targetNode, state: g.state.rawValue, restored: backup(g.restored), latest: backup(g.latest),
                  lagSeconds: g.restored.map { max(0, now - Double($0.backupTime)) }, rpoTargetSeconds: g.rpoTarget, priority: g.priority,
                  pendingBackups: g.pendingBackups, progress: g.state == .restoring ? (g.progress ?? 0) : nil, lastRestore: history.first,
                  consecutiveFailures: g.consecutiveFailures, nextRetryAt: g.nextRetryAt.map(iso8601), lastError: g.lastError,
                  blockedReason: g.blockedReason?.rawValue, blockedDetail: g.blockedDetail, history: history)
    }

    /// The guest as JSON (`/api/v1/guests/{vmid}`).
    public func json() -> [UInt8] { StatusDocument.encode(self) }
}

// Absent values are `null` in the contract: encode every key (the synthesized conformance would
// leave out nil optionals).
extension StatusDocument.Service {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version); try c.encode(startedAt, forKey: .startedAt); try c.encode(workers, forKey: .workers)
        try c.encode(queueLength, forKey: .queueLength); try c.encode(restoresInProgress, forKey: .restoresInProgress)
        try c.encode(lastLoopAt, forKey: .lastLoopAt); try c.encode(state, forKey: .state)
    }
}

extension StatusDocument.StateFile {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(writable, forKey: .writable); try c.encode(error, forKey: .error); try c.encode(failingSince, forKey: .failingSince)
        try c.encode(writeErrors, forKey: .writeErrors); try c.encode(unsavedWrites, forKey: .unsavedWrites)
    }
}

extension StatusDocument.Source {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(storage, forKey: .storage); try c.encode(up, forKey: .up); try c.encode(lastRefreshAt, forKey: .lastRefreshAt)
        try c.encode(error, forKey: .error); try c.encode(refreshErrors, forKey: .refreshErrors); try c.encode(listings, forKey: .listings)
        try c.encode(nextListingAt, forKey: .nextListingAt)
    }
}

extension StatusDocument.Backup {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(volid, forKey: .volid); try c.encode(backupTime, forKey: .backupTime)
        try c.encode(backupTimestamp, forKey: .backupTimestamp); try c.encode(sizeBytes, forKey: .sizeBytes)
    }
}

extension StatusDocument.Restore {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(startedAt, forKey: .startedAt); try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(durationSeconds, forKey: .durationSeconds); try c.encode(result, forKey: .result); try c.encode(error, forKey: .error)
        try c.encode(upid, forKey: .upid); try c.encode(volid, forKey: .volid); try c.encode(warnings, forKey: .warnings)
    }
}

extension StatusDocument.Guest {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source); try c.encode(vmid, forKey: .vmid); try c.encode(type, forKey: .type)
        try c.encode(name, forKey: .name); try c.encode(targetVmid, forKey: .targetVmid); try c.encode(targetNode, forKey: .targetNode)
        try c.encode(state, forKey: .state); try c.encode(restored, forKey: .restored); try c.encode(latest, forKey: .latest)
        try c.encode(lagSeconds, forKey: .lagSeconds); try c.encode(rpoTargetSeconds, forKey: .rpoTargetSeconds)
        try c.encode(priority, forKey: .priority); try c.encode(pendingBackups, forKey: .pendingBackups)
        try c.encode(progress, forKey: .progress); try c.encode(lastRestore, forKey: .lastRestore)
        try c.encode(consecutiveFailures, forKey: .consecutiveFailures); try c.encode(nextRetryAt, forKey: .nextRetryAt)
        try c.encode(lastError, forKey: .lastError); try c.encode(blockedReason, forKey: .blockedReason)
        try c.encode(blockedDetail, forKey: .blockedDetail); try c.encode(history, forKey: .history)
    }
}
