import Foundation
import GRDB
import StandbyCore

/// One DR drill of one guest (issue 16): written before the drill's first call that changes
/// anything in PVE (the snapshot or the clone), updated at each step, ended with its result. An
/// open record (`result = running`) after a crash or kill is cleaned up at the next start before
/// any restore. Kept `drill.history` long: the auditor's evidence.
public struct DrillRecord: Sendable, Codable, Equatable, FetchableRecord, MutablePersistableRecord {
    /// The SQLite table (`drill`).
    public static let databaseTableName = "drill"
    /// The row id; nil until inserted.
    public var id: Int64?
    /// The source storage.
    public var source: String
    /// The backed-up VMID.
    public var vmid: Int
    /// `vm` or `ct`.
    public var type: String
    /// The copy's VMID (the guest drilled, or the one cloned from).
    public var targetVmid: Int
    /// The backup the copy holds (what was proved to boot).
    public var volid: String?
    /// When the drill began (Unix seconds).
    public var startedAt: Double
    /// When it ended; nil while running.
    public var finishedAt: Double?
    /// A ``DrillResult`` raw value.
    public var result: String
    /// Why it was skipped, failed or aborted (a ``DrillSkipReason`` raw value for a skip).
    public var reason: String?
    /// The evidence of the boot (``DrillEvidence`` raw value), nil when none.
    public var evidence: String?
    /// Seconds from the start task's end to the first evidence of the boot.
    public var bootSeconds: Double?
    /// The guest agent's `get-osinfo` `pretty-name`.
    public var osInfo: String?
    /// The guest agent's `get-host-name`.
    public var hostName: String?
    /// The PVE snapshot taken before the guest changed (`pbs-standby-drill`), once requested.
    public var snapshot: String?
    /// Clone drills: the scratch VMID cloned into, once requested.
    public var cloneVmid: Int?
    /// UPIDs of the drill's tasks on the copy (snapshot, start, stop, rollback, removal), `;`-joined.
    public var tasks: String
    /// Started by the schedule (false: `pbs-standby drill`).
    public var scheduled: Bool
    /// The process running the drill (an open record of a live process is not cleaned up).
    public var pid: Int32
    /// The kernel's boot id when the drill began: after a reboot no process of the record lives on
    /// (a reused pid does not keep the record open).
    public var bootID: String
    /// The process's start time (`/proc/<pid>/stat` field 22, clock ticks since boot): a later
    /// process that reuses the pid has another.
    public var processStart: String

    /// A drill about to begin.
    public init(source: String, vmid: Int, type: String, targetVmid: Int, volid: String?, startedAt: Double, scheduled: Bool) {
        self.source = source
        self.vmid = vmid
        self.type = type
        self.targetVmid = targetVmid
        self.volid = volid
        self.startedAt = startedAt
        self.result = DrillResult.running.rawValue
        self.tasks = ""
        self.scheduled = scheduled
        self.pid = getpid()
        self.bootID = Self.currentBootID
        self.processStart = Self.startTime(of: getpid()) ?? ""
    }

    /// Field 22 (`starttime`) of `/proc/<pid>/stat`, nil when the process does not exist.
    static func startTime(of pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After the command name in parentheses: field 3 (state) onwards.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }

    /// `/proc/sys/kernel/random/boot_id` (empty where there is none).
    public static let currentBootID: String =
        ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)

    /// Whether the process that runs this drill is alive (same boot, pid exists): its open
    /// record is a drill in progress, not one to clean up.
    public var processAlive: Bool {
        bootID == Self.currentBootID && Self.startTime(of: pid).map { processStart.isEmpty || $0 == processStart } == true
    }

    /// The result as the enum.
    public var outcome: DrillResult? { DrillResult(rawValue: result) }
    /// The guest's key.
    public var key: GuestKey { GuestKey(source: source, vmid: vmid) }
    /// Keeps the row id SQLite assigned.
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A guest's drills as the status and the report show them.
public struct DrillSummary: Sendable, Equatable {
    /// The newest drill (any result, also one running).
    public var latest: DrillRecord
    /// The newest passed drill.
    public var lastPassed: DrillRecord?
    /// The newest drill that passed or failed (skips and aborts prove nothing either way):
    /// `PbsStandbyDrillFailed` follows it, so a skip or a drill in progress does not clear it.
    public var lastVerdict: DrillRecord?
}

extension StateStore {
    /// Migration 6: the drill table, and per guest the drill block and since when drills apply.
    static func registerDrillMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("6-drills") { db in
            try db.create(table: "drill") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("source", .text).notNull()
                t.column("vmid", .integer).notNull()
                t.column("type", .text).notNull()
                t.column("targetVmid", .integer).notNull()
                t.column("volid", .text)
                t.column("startedAt", .double).notNull()
                t.column("finishedAt", .double)
                t.column("result", .text).notNull()
                t.column("reason", .text)
                t.column("evidence", .text)
                t.column("bootSeconds", .double)
                t.column("osInfo", .text)
                t.column("hostName", .text)
                t.column("snapshot", .text)
                t.column("cloneVmid", .integer)
                t.column("tasks", .text).notNull().defaults(to: "")
                t.column("scheduled", .boolean).notNull().defaults(to: false)
                t.column("pid", .integer).notNull().defaults(to: 0)
                t.column("bootID", .text).notNull().defaults(to: "")
                t.column("processStart", .text).notNull().defaults(to: "")
            }
            try db.create(index: "drill_by_guest", on: "drill", columns: ["source", "vmid", "id"])
            try db.alter(table: "guest") { t in
                // A drill's cleanup failed: nothing restores over the copy until `resume`.
                t.add(column: "drillBlocked", .text)
                // When drills first applied to the guest (the overdue clock starts here).
                t.add(column: "drillSince", .double)
            }
        }
    }

    /// Records a drill about to begin; returns it with its id.
    public func beginDrill(_ record: DrillRecord) throws -> DrillRecord {
        try db.write { db in
            var r = record
            try r.insert(db)
            return r
        }
    }

    /// Records a drill about to begin unless the guest is held, any guest is failed over, or a
    /// restore or another drill of the guest is recorded as running (one transaction: a flag or a
    /// restore recorded first wins, and one recorded after sees the drill). Nil when refused.
    public func beginDrillIfIdle(_ record: DrillRecord) throws -> DrillRecord? {
        try db.write { db in
            // Held or failed over (also any other guest failed over: drills pause then), seen in
            // the same transaction as a `hold` or `failover` that wrote its flag first.
            let frozen = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM guest WHERE failedOver OR (source = ? AND vmid = ? AND held)",
                                          arguments: [record.source, record.vmid]) ?? 0
            guard frozen == 0 else { return nil }
            let restoring = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM history WHERE source = ? AND vmid = ? AND result = ?",
                                             arguments: [record.source, record.vmid, RestoreResult.running.rawValue]) ?? 0
            let drilling = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM drill WHERE source = ? AND vmid = ? AND result = ?",
                                            arguments: [record.source, record.vmid, DrillResult.running.rawValue]) ?? 0
            guard restoring == 0, drilling == 0 else { return nil }
            var r = record
            try r.insert(db)
            return r
        }
    }

    /// Takes over an open drill whose process is gone, for its cleanup: the record becomes this
    /// process's in one conditional update. False when another process claimed it first (or it ended).
    public func claimDrill(_ record: inout DrillRecord) throws -> Bool {
        let (pid, start, boot) = (getpid(), DrillRecord.startTime(of: getpid()) ?? "", DrillRecord.currentBootID)
        let claimed = try db.write { db -> Bool in
            try db.execute(sql: "UPDATE drill SET pid = ?, processStart = ?, bootID = ? WHERE id = ? AND pid = ? AND processStart = ? AND bootID = ? AND result = ?",
                           arguments: [pid, start, boot, record.id, record.pid, record.processStart, record.bootID, DrillResult.running.rawValue])
            return db.changesCount == 1
        }
        if claimed { (record.pid, record.processStart, record.bootID) = (pid, start, boot) }
        return claimed
    }

    /// Writes a drill's changed fields (a step, or its end).
    public func saveDrill(_ record: DrillRecord) throws {
        try db.write { db in
            var r = record
            try r.save(db)
        }
    }

    /// Drills still running (open records: this process's, another's, or a crashed one's).
    public func openDrills() throws -> [DrillRecord] {
        try db.read { db in try DrillRecord.filter(Column("result") == DrillResult.running.rawValue).order(Column("id")).fetchAll(db) }
    }

    /// A guest's drills, newest first.
    public func drills(_ key: GuestKey, limit: Int = 20) throws -> [DrillRecord] {
        try db.read { db in
            try DrillRecord.filter(Column("source") == key.source && Column("vmid") == key.vmid)
                .order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    /// Every guest's newest drill, newest passed drill and newest verdict (passed or failed).
    public func latestDrills() throws -> [GuestKey: DrillSummary] {
        try db.read { db in
            func newest(_ filter: String, _ args: StatementArguments = []) throws -> [GuestKey: DrillRecord] {
                let rows = try DrillRecord.fetchAll(db, sql: "SELECT * FROM drill WHERE id IN (SELECT MAX(id) FROM drill \(filter) GROUP BY source, vmid)", arguments: args)
                return Dictionary(rows.map { ($0.key, $0) }) { a, _ in a }
            }
            let latest = try newest("")
            let passed = try newest("WHERE result = ?", [DrillResult.passed.rawValue])
            let verdict = try newest("WHERE result IN (?, ?)", [DrillResult.passed.rawValue, DrillResult.failed.rawValue])
            return latest.mapValues { r in DrillSummary(latest: r, lastPassed: passed[r.key], lastVerdict: verdict[r.key]) }
        }
    }

    /// Drills ended since `since`, per source and result (`pbs_standby_drills_total`): counted by
    /// SQLite, not read row by row on every pass.
    public func drillCounts(endedSince since: Double) throws -> [String: [String: Int]] {
        try db.read { db in
            var out: [String: [String: Int]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT source, result, COUNT(*) AS n FROM drill WHERE finishedAt >= ? GROUP BY source, result",
                                        arguments: [since]) {
                out[row["source"], default: [:]][row["result"]] = row["n"]
            }
            return out
        }
    }

    /// Every drill since `since` (the report), oldest first.
    public func allDrills(since: Double = 0) throws -> [DrillRecord] {
        try db.read { db in try DrillRecord.filter(Column("startedAt") >= since).order(Column("id")).fetchAll(db) }
    }

    /// Removes ended drills older than `before` (`drill.history`).
    @discardableResult
    public func pruneDrills(before: Double) throws -> Int {
        try db.write { db in
            try db.execute(sql: "DELETE FROM drill WHERE result != ? AND startedAt < ?", arguments: [DrillResult.running.rawValue, before])
            return db.changesCount
        }
    }

    /// Sets (or with nil clears) a guest's drill block.
    public func setDrillBlocked(_ key: GuestKey, targetVmid: Int, _ message: String?) throws {
        try update(key, targetVmid: targetVmid) { $0.drillBlocked = message }
    }
}
