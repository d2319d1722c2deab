import Foundation
import GRDB
import StandbyCore

/// What the store remembers about one backed-up guest.
public struct GuestRecord: Sendable, Codable, Equatable, FetchableRecord, PersistableRecord {
    /// The SQLite table (`guest`).
    public static let databaseTableName = "guest"
    /// The source storage (PVE storage id of the PBS storage).
    public var source: String
    /// The backed-up VMID.
    public var vmid: Int
    /// The target VMID of the last restore begun (the given one when the record was created).
    public var targetVmid: Int
    /// Volid of the backup the live copy was restored from; nil while no restore succeeded.
    public var restoredVolid: String?
    /// Its backup time (Unix seconds).
    public var restoredBackupTime: Int?
    /// Its size in bytes, as PVE listed it.
    public var restoredBytes: Int64?
    /// When the last restore began (Unix seconds).
    public var lastAttemptAt: Double?
    /// When the last successful restore ended (Unix seconds).
    public var lastSuccessAt: Double?
    /// Seconds the last finished restore took, success or failure.
    public var lastDuration: Double?
    /// Failed restores since the last success (picks the backoff step).
    public var consecutiveFailures: Int
    /// After a failure: no attempt before this time (Unix seconds, the backoff); nil when none is pending.
    public var nextRetryAt: Double?
    /// The last failure's message (a restore, or the start of a new copy); a successful restore clears it.
    public var lastError: String?
    /// The backup whose restore failed last.
    public var failedVolid: String?
    /// Failed attempts at `failedVolid` (`retries_per_backup` caps them; a permission error uses them up).
    public var failedVolidAttempts: Int
    /// `pbs-standby hold`: no restore until `resume` (mirrored in PVE as the held tag).
    public var held: Bool
    /// `pbs-standby failover`: the copy serves and restores are frozen (mirrored in PVE as a tag).
    public var failedOver: Bool
    /// The UPID of the last start pbs-standby made of the live copy (start_after_restore): the
    /// copy is ours to stop only while the newest start task of its VMID is this one.
    public var startUPID: String?
    /// `pbs-standby adopt` named the guest at this VMID: the next restore may overwrite it once.
    public var adoptVmid: Int?
    /// The identity of the adopted guest (vmgenid, newest identity task or digest): another guest
    /// at that VMID later is not adopted.
    public var adoptIdentity: String?
    /// The live copy's `vmgenid` after its restore (VMs; written into its marker too).
    public var vmgenid: String?
    /// The backup's `onboot`, read from its config after the restore (restores pass `onboot=0`;
    /// `failover` puts this value back on the guests it starts).
    public var backupOnboot: Bool?
    /// Bytes of backups restored successfully, ever (`pbs_standby_restored_bytes_total`).
    public var restoredBytesTotal: Int64
    /// Successful restores, ever (`pbs_standby_restores_total{result="success"}`).
    public var successes: Int
    /// Failed restores, ever (`pbs_standby_restores_total{result="failure"}`).
    public var failures: Int
    /// The VMID holding the current good copy (with keep_previous it alternates between the
    /// primary and the primary + previous_vmid_offset).
    public var liveVmid: Int?
    /// A drill's cleanup failed (the message says what is left): `blocked(drill_cleanup)`, no
    /// restore and no drill until `pbs-standby resume`.
    public var drillBlocked: String?
    /// When drills first applied to this guest (the overdue clock of a guest never drilled).
    public var drillSince: Double?

    /// A fresh record: nothing restored, no failure, not frozen.
    public init(source: String, vmid: Int, targetVmid: Int) {
        self.source = source
        self.vmid = vmid
        self.targetVmid = targetVmid
        consecutiveFailures = 0
        failedVolidAttempts = 0
        held = false
        failedOver = false
        restoredBytesTotal = 0
        successes = 0
        failures = 0
    }

    /// The guest's key.
    public var key: GuestKey { GuestKey(source: source, vmid: vmid) }

    /// Decodes a row by column name (several times faster than the Codable path, and the state
    /// is read on every pass).
    public init(row: Row) {
        source = row["source"]
        vmid = row["vmid"]
        targetVmid = row["targetVmid"]
        restoredVolid = row["restoredVolid"]
        restoredBackupTime = row["restoredBackupTime"]
        restoredBytes = row["restoredBytes"]
        lastAttemptAt = row["lastAttemptAt"]
        lastSuccessAt = row["lastSuccessAt"]
        lastDuration = row["lastDuration"]
        consecutiveFailures = row["consecutiveFailures"]
        nextRetryAt = row["nextRetryAt"]
        lastError = row["lastError"]
        failedVolid = row["failedVolid"]
        failedVolidAttempts = row["failedVolidAttempts"]
        held = row["held"]
        failedOver = row["failedOver"]
        startUPID = row["startUPID"]
        adoptVmid = row["adoptVmid"]
        adoptIdentity = row["adoptIdentity"]
        vmgenid = row["vmgenid"]
        backupOnboot = row["backupOnboot"]
        restoredBytesTotal = row["restoredBytesTotal"]
        successes = row["successes"]
        failures = row["failures"]
        liveVmid = row["liveVmid"]
        drillBlocked = row["drillBlocked"]
        drillSince = row["drillSince"]
    }
}

/// One restore attempt (`result`: running, success, failure, interrupted).
public struct HistoryRecord: Sendable, Codable, Equatable, FetchableRecord, MutablePersistableRecord {
    /// The SQLite table (`history`).
    public static let databaseTableName = "history"
    /// The row id; nil until inserted.
    public var id: Int64?
    /// The source storage.
    public var source: String
    /// The backed-up VMID.
    public var vmid: Int
    /// The VMID restored into.
    public var targetVmid: Int
    /// The backup restored.
    public var volid: String
    /// The PVE task's UPID; nil until PVE answered the restore call.
    public var upid: String?
    /// When the row was written, right before the restore call (Unix seconds).
    public var startedAt: Double
    /// When the restore ended (Unix seconds); nil while running.
    public var finishedAt: Double?
    /// `finishedAt` − `startedAt` in seconds; nil while running.
    public var duration: Double?
    /// The backup's size in bytes.
    public var bytes: Int64
    /// A ``RestoreResult`` raw value (stored as text: the column predates the enum; written only
    /// through ``StateStore/finishRestore(_:result:error:at:warnings:)``).
    public var result: String
    /// ``result`` as the enum (nil for a value no version wrote).
    public var outcome: RestoreResult? { RestoreResult(rawValue: result) }
    /// The failure's message, `TASK WARNINGS: N` after a success with warnings, else nil.
    public var error: String?
    /// N of a `TASK WARNINGS: N` ending (0 otherwise).
    public var warnings: Int = 0
    /// `delta` (only changed chunks written) or `full` (PVE's restore); nil before it ended.
    public var mode: String?
    /// Bytes written into the standby's volumes (a full restore: the backup's size).
    public var bytesWritten: Int64?
    /// Delta: chunks that differed between the copy's backup and this one.
    public var chunksChanged: Int?
    /// Delta: chunks of all disks.
    public var chunksTotal: Int?
    /// Why a delta was not possible and PVE restored in full (a `DeltaFallback` raw value).
    public var fallbackReason: String?

    /// Keeps the row id SQLite assigned.
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// Errors of the state store, naming the file.
public struct StoreError: Error, CustomStringConvertible {
    /// What failed, naming the file.
    public let description: String
}

/// The SQLite state (GRDB, numbered migrations): guest state, restore history (the in-flight
/// restores are its rows with `result = running`), holds and failover flags. Written before
/// acting: a restore's row exists before the restore POST is sent.
public final class StateStore: Sendable {
    /// The GRDB connection (a serial queue).
    let db: DatabaseQueue
    /// The file path, or ":memory:".
    public let path: String
    private let lockFD: Int32

    /// Opens (creating with mode 0600) the state file; with `exclusive` it takes the
    /// single-instance lock (one service per state file), without it (CLI changes such as
    /// `hold`) it relies on SQLite's own locking.
    /// `busyTimeout`: how long a write waits for another connection's lock (a CLI `hold`
    /// while the service writes) before failing.
    public init(path: String, exclusive: Bool = true, busyTimeout: TimeInterval = 5) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let existed = FileManager.default.fileExists(atPath: path)
        if !existed {
            let fd = open(path, O_CREAT | O_WRONLY, 0o600)
            guard fd >= 0 else { throw StoreError(description: "cannot create the state file '\(path)': \(String(cString: strerror(errno)))") }
            close(fd)
        }
        let fd = exclusive ? open(path + ".lock", O_CREAT | O_RDWR, 0o600) : -1
        guard !exclusive || fd >= 0 else { throw StoreError(description: "cannot open the lock file '\(path).lock': \(String(cString: strerror(errno)))") }
        guard !exclusive || flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StoreError(description: "another pbs-standby uses the state file '\(path)' (lock '\(path).lock' is held)")
        }
        lockFD = fd
        do {
            var configuration = Configuration()
            configuration.busyMode = busyTimeout > 0 ? .timeout(busyTimeout) : .immediateError
            db = try DatabaseQueue(path: path, configuration: configuration)
            try Self.migrator.migrate(db)
        } catch {
            if fd >= 0 { close(fd) }
            throw StoreError(description: "the state file '\(path)' cannot be used: \(error). Move it aside to rebuild the state from the markers on the guests.")
        }
    }

    /// An in-memory store (tests).
    public init() throws {
        path = ":memory:"
        lockFD = -1
        db = try DatabaseQueue()
        try Self.migrator.migrate(db)
    }

    deinit { if lockFD >= 0 { close(lockFD) } }

    /// The numbered schema migrations, applied on open (an older file keeps its rows).
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("1-guest-and-history") { db in
            try db.create(table: "guest") { t in
                t.column("source", .text).notNull()
                t.column("vmid", .integer).notNull()
                t.column("targetVmid", .integer).notNull()
                t.column("restoredVolid", .text)
                t.column("restoredBackupTime", .integer)
                t.column("restoredBytes", .integer)
                t.column("lastAttemptAt", .double)
                t.column("lastSuccessAt", .double)
                t.column("lastDuration", .double)
                t.column("consecutiveFailures", .integer).notNull().defaults(to: 0)
                t.column("nextRetryAt", .double)
                t.column("lastError", .text)
                t.column("failedVolid", .text)
                t.column("failedVolidAttempts", .integer).notNull().defaults(to: 0)
                t.column("held", .boolean).notNull().defaults(to: false)
                t.column("failedOver", .boolean).notNull().defaults(to: false)
                t.column("ownsTarget", .boolean).notNull().defaults(to: false)
                t.column("startedByUs", .boolean).notNull().defaults(to: false)
                t.column("restoredBytesTotal", .integer).notNull().defaults(to: 0)
                t.column("successes", .integer).notNull().defaults(to: 0)
                t.column("failures", .integer).notNull().defaults(to: 0)
                t.primaryKey(["source", "vmid"])
            }
            try db.create(table: "history") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("source", .text).notNull()
                t.column("vmid", .integer).notNull()
                t.column("targetVmid", .integer).notNull()
                t.column("volid", .text).notNull()
                t.column("upid", .text)
                t.column("startedAt", .double).notNull()
                t.column("finishedAt", .double)
                t.column("duration", .double)
                t.column("bytes", .integer).notNull().defaults(to: 0)
                t.column("result", .text).notNull()
                t.column("error", .text)
            }
            try db.create(index: "history_by_guest", on: "history", columns: ["source", "vmid", "id"])
        }
        m.registerMigration("2-live-vmid") { db in
            try db.alter(table: "guest") { t in t.add(column: "liveVmid", .integer) }
        }
        m.registerMigration("3-heartbeat") { db in
            try db.create(table: "heartbeat") { t in
                t.primaryKey("id", .integer).check { $0 == 1 }
                t.column("at", .double).notNull()
            }
        }
        m.registerMigration("4-proven-ownership") { db in
            // `ownsTarget` and `startedByUs` (columns of migration 1) are no longer read: ownership
            // is proven from PVE each time (marker, vmgenid, task history), never remembered, and a
            // start is ours only by its UPID.
            try db.alter(table: "guest") { t in
                t.add(column: "startUPID", .text)
                t.add(column: "adoptVmid", .integer)
                t.add(column: "adoptIdentity", .text)
                t.add(column: "vmgenid", .text)
                t.add(column: "backupOnboot", .boolean)
            }
            try db.create(index: "history_by_target", on: "history", columns: ["targetVmid"])
            try db.alter(table: "history") { t in t.add(column: "warnings", .integer).notNull().defaults(to: 0) }
        }
        registerDeltaMigration(&m)
        registerDrillMigration(&m)
        return m
    }

    /// Every guest record.
    public func guests() throws -> [GuestKey: GuestRecord] {
        try db.read { db in
            Dictionary(uniqueKeysWithValues: try GuestRecord.fetchAll(db).map { ($0.key, $0) })
        }
    }

    /// One guest record.
    public func guest(_ key: GuestKey) throws -> GuestRecord? {
        try db.read { db in try GuestRecord.filter(Column("source") == key.source && Column("vmid") == key.vmid).fetchOne(db) }
    }

    /// Inserts or replaces a guest record.
    public func save(_ record: GuestRecord) throws {
        try db.write { db in try record.save(db) }
    }

    /// Reads, changes and writes one guest record in one transaction.
    @discardableResult
    public func update(_ key: GuestKey, targetVmid: Int, _ change: (inout GuestRecord) -> Void) throws -> GuestRecord {
        try db.write { db in
            var r = try GuestRecord.filter(Column("source") == key.source && Column("vmid") == key.vmid).fetchOne(db)
                ?? GuestRecord(source: key.source, vmid: key.vmid, targetVmid: targetVmid)
            change(&r)
            try r.save(db)
            return r
        }
    }

    /// What ``beginRestore(_:targetVmid:volid:bytes:at:)`` did.
    public enum BeginRestore: Sendable, Equatable {
        /// Recorded; the history row's id.
        case started(Int64)
        /// Not recorded: the guest is held or failed over (checked in the same transaction).
        case frozen(String)
    }

    /// Records a restore about to start (before the POST) — unless the guest is held or failed
    /// over, checked in the same transaction, so a `hold` or `failover` committed before this
    /// write is never overtaken by a restore planned earlier. It does not make the target "ours":
    /// ownership is recorded only after success (the marker and, for VMs, the vmgenid).
    public func beginRestore(_ key: GuestKey, targetVmid: Int, volid: String, bytes: Int64, at: Double) throws -> BeginRestore {
        try db.write { db in
            var g = try GuestRecord.filter(Column("source") == key.source && Column("vmid") == key.vmid).fetchOne(db)
                ?? GuestRecord(source: key.source, vmid: key.vmid, targetVmid: targetVmid)
            if g.failedOver { return .frozen("failed over") }
            if g.held { return .frozen("held") }
            // A drill boots the copy (this service's or `pbs-standby drill`'s): the restore waits.
            let drilling = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM drill WHERE source = ? AND vmid = ? AND result = 'running'",
                                            arguments: [key.source, key.vmid]) ?? 0
            if drilling > 0 { return .frozen("drilling") }
            var h = HistoryRecord(id: nil, source: key.source, vmid: key.vmid, targetVmid: targetVmid, volid: volid, upid: nil,
                                  startedAt: at, finishedAt: nil, duration: nil, bytes: bytes, result: RestoreResult.running.rawValue, error: nil)
            try h.insert(db)
            g.targetVmid = targetVmid
            g.lastAttemptAt = at
            try g.save(db)
            return .started(h.id!)
        }
    }

    /// Whether the guest is held or failed over now (re-read right before a stop, a forced
    /// restore or a destroy: the smallest gap to a concurrent `hold` or `failover`).
    public func frozen(_ key: GuestKey) throws -> String? {
        guard let g = try guest(key) else { return nil }
        return g.failedOver ? "failed over" : g.held ? "held" : nil
    }

    /// UPIDs of every restore task recorded for a target VMID (by any guest): the evidence that
    /// the newest task creating that VMID was ours.
    public func restoreUPIDs(targetVmid: Int) throws -> Set<String> {
        try db.read { db in
            Set(try String.fetchAll(db, sql: "SELECT upid FROM history WHERE targetVmid = ? AND upid IS NOT NULL", arguments: [targetVmid]))
        }
    }

    /// Stores the UPID PVE returned for a started restore.
    public func setUPID(_ id: Int64, _ upid: String) throws {
        try db.write { db in try db.execute(sql: "UPDATE history SET upid = ? WHERE id = ?", arguments: [upid, id]) }
    }

    /// Ends a restore row.
    public func finishRestore(_ id: Int64, result: RestoreResult, error: String?, at: Double, warnings: Int = 0) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE history SET result = ?, error = ?, finishedAt = ?, duration = ? - startedAt, warnings = ? WHERE id = ?",
                           arguments: [result.rawValue, error, at, at, warnings, id])
        }
    }

    /// Restores recorded as running (to re-attach after a restart).
    public func runningRestores() throws -> [HistoryRecord] {
        try db.read { db in try HistoryRecord.filter(Column("result") == RestoreResult.running.rawValue).order(Column("id")).fetchAll(db) }
    }

    /// The last `limit` attempts of a guest, newest first.
    public func history(_ key: GuestKey, limit: Int = 10) throws -> [HistoryRecord] {
        try db.read { db in
            try HistoryRecord.filter(Column("source") == key.source && Column("vmid") == key.vmid)
                .order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    /// Records that the service passed at `at`: a small real write each pass, so a state file
    /// that can no longer be written (disk full, read-only remount) is noticed before a restore
    /// is started, not after.
    public func heartbeat(at: Double) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at",
                           arguments: [at])
        }
    }

    /// When the service last passed (nil before the first pass).
    public func lastHeartbeat() throws -> Double? {
        try db.read { db in try Double.fetchOne(db, sql: "SELECT at FROM heartbeat WHERE id = 1") }
    }

    /// Every history row (tests, audits).
    public func allHistory() throws -> [HistoryRecord] {
        try db.read { db in try HistoryRecord.order(Column("id")).fetchAll(db) }
    }
}
