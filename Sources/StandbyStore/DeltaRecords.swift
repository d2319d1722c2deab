import Foundation
import GRDB

/// A delta restore between its first write and its end (issue 15, "crash safety"): written
/// before the first byte goes to a volume, removed only after every disk is written and synced
/// and the copy's marker names the new backup. After a crash or kill the delta is run again from
/// this record (the writes are idempotent: each changed chunk gets the new backup's bytes).
public struct DeltaRecord: Sendable, Codable, Equatable, FetchableRecord, PersistableRecord {
    /// The SQLite table (`delta`).
    public static let databaseTableName = "delta"
    /// The history row of the restore.
    public var historyID: Int64
    /// The source storage.
    public var source: String
    /// The backed-up VMID.
    public var vmid: Int
    /// The copy's VMID.
    public var targetVmid: Int
    /// The backup the copy held before the delta.
    public var fromVolid: String
    /// The backup the delta turns it into.
    public var toVolid: String
    /// The disks: JSON of `[DeltaDisk]`.
    public var disks: String
    /// The PVE snapshot taken before the first write (`pbs-standby-delta`), nil when none.
    public var snapshot: String?
    /// When the record was written (Unix seconds).
    public var startedAt: Double

    /// A record for a delta about to write.
    public init(historyID: Int64, source: String, vmid: Int, targetVmid: Int, fromVolid: String, toVolid: String,
                disks: [DeltaDisk], snapshot: String?, startedAt: Double) {
        self.historyID = historyID
        self.source = source
        self.vmid = vmid
        self.targetVmid = targetVmid
        self.fromVolid = fromVolid
        self.toVolid = toVolid
        self.disks = (try? String(decoding: JSONEncoder().encode(disks), as: UTF8.self)) ?? "[]"
        self.snapshot = snapshot
        self.startedAt = startedAt
    }

    /// The disks, decoded (empty when the column cannot be read).
    public var diskList: [DeltaDisk] { (try? JSONDecoder().decode([DeltaDisk].self, from: Data(disks.utf8))) ?? [] }
}

/// One disk of a delta: which archive goes to which volume.
public struct DeltaDisk: Sendable, Codable, Equatable {
    /// The config key of the disk (`scsi0`).
    public var drive: String
    /// The archive in the backup (`drive-scsi0.img.fidx`).
    public var archive: String
    /// The PVE volume id (`local-lvm:vm-101-disk-0`).
    public var volume: String
    /// The file or block device written.
    public var path: String
    /// The kept copy of the old backup's index when its snapshot was pruned from the datastore.
    public var fromIndex: String?

    /// A disk of a delta.
    public init(drive: String, archive: String, volume: String, path: String, fromIndex: String? = nil) {
        self.drive = drive
        self.archive = archive
        self.volume = volume
        self.path = path
        self.fromIndex = fromIndex
    }
}

/// The facts of a finished restore that the history keeps beyond its result (issue 15 status fields).
public struct RestoreFacts: Sendable, Equatable {
    /// `delta` or `full`.
    public var mode: String
    /// Bytes written into the standby's volumes.
    public var bytesWritten: Int64
    /// Delta: chunks that differed; nil for a full restore.
    public var chunksChanged: Int?
    /// Delta: chunks of all disks; nil for a full restore.
    public var chunksTotal: Int?
    /// Why PVE restored in full although delta restores are on.
    public var fallbackReason: String?

    /// Facts of a restore.
    public init(mode: String, bytesWritten: Int64, chunksChanged: Int? = nil, chunksTotal: Int? = nil, fallbackReason: String? = nil) {
        self.mode = mode
        self.bytesWritten = bytesWritten
        self.chunksChanged = chunksChanged
        self.chunksTotal = chunksTotal
        self.fallbackReason = fallbackReason
    }
}

extension StateStore {
    /// Migration 5: the delta table and the history's delta columns.
    static func registerDeltaMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("5-delta-restore") { db in
            try db.alter(table: "history") { t in
                t.add(column: "mode", .text)
                t.add(column: "bytesWritten", .integer)
                t.add(column: "chunksChanged", .integer)
                t.add(column: "chunksTotal", .integer)
                t.add(column: "fallbackReason", .text)
            }
            try db.create(table: "delta") { t in
                t.primaryKey("historyID", .integer)
                t.column("source", .text).notNull()
                t.column("vmid", .integer).notNull()
                t.column("targetVmid", .integer).notNull()
                t.column("fromVolid", .text).notNull()
                t.column("toVolid", .text).notNull()
                t.column("disks", .text).notNull()
                t.column("snapshot", .text)
                t.column("startedAt", .double).notNull()
            }
            // Tasks pbs-standby itself ran on a copy besides restores (the snapshot, rollback and
            // snapshot removal around a delta): not "touched since restore".
            try db.create(table: "ourTask") { t in
                t.primaryKey("upid", .text)
                t.column("targetVmid", .integer).notNull()
                t.column("at", .double).notNull()
            }
        }
    }

    /// Records a task pbs-standby started on a copy (not a restore).
    public func addOurTask(_ upid: String, targetVmid: Int, at: Double) throws {
        try db.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO ourTask (upid, targetVmid, at) VALUES (?, ?, ?)", arguments: [upid, targetVmid, at])
        }
    }

    /// The tasks pbs-standby started on a copy's VMID besides restores.
    public func ourTasks(targetVmid: Int) throws -> Set<String> {
        try db.read { db in Set(try String.fetchAll(db, sql: "SELECT upid FROM ourTask WHERE targetVmid = ?", arguments: [targetVmid])) }
    }

    /// Records a delta about to write (before the first byte, and before the PVE snapshot).
    public func beginDelta(_ record: DeltaRecord) throws {
        try db.write { db in try record.save(db) }
    }

    /// Notes the PVE snapshot taken for a recorded delta.
    public func setDeltaSnapshot(_ historyID: Int64, _ name: String?) throws {
        try db.write { db in try db.execute(sql: "UPDATE delta SET snapshot = ? WHERE historyID = ?", arguments: [name, historyID]) }
    }

    /// Deltas recorded and not ended (after a crash: to run again or roll back).
    public func openDeltas() throws -> [DeltaRecord] {
        try db.read { db in try DeltaRecord.order(Column("historyID")).fetchAll(db) }
    }

    /// The open delta of a copy's VMID, if any (failover waits for it; nothing boots a half-written disk).
    public func openDelta(targetVmid: Int) throws -> DeltaRecord? {
        try db.read { db in try DeltaRecord.filter(Column("targetVmid") == targetVmid).fetchOne(db) }
    }

    /// Ends a delta's record (after the copy is whole again: written and synced, or rolled back).
    public func endDelta(_ historyID: Int64) throws {
        try db.write { db in try db.execute(sql: "DELETE FROM delta WHERE historyID = ?", arguments: [historyID]) }
    }

    /// One history row by id.
    public func historyRow(_ id: Int64) throws -> HistoryRecord? {
        try db.read { db in try HistoryRecord.fetchOne(db, key: id) }
    }

    /// Stores a finished restore's mode, bytes written and chunk counts on its history row.
    public func recordFacts(_ historyID: Int64, _ facts: RestoreFacts) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE history SET mode = ?, bytesWritten = ?, chunksChanged = ?, chunksTotal = ?, fallbackReason = ? WHERE id = ?",
                           arguments: [facts.mode, facts.bytesWritten, facts.chunksChanged, facts.chunksTotal, facts.fallbackReason, historyID])
        }
    }
}
