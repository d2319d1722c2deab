import Foundation
import GRDB
import StandbyCore
@testable import StandbyStore
import Testing

/// The state store on its own: migrations of an older file, the single-instance lock, and a CLI
/// writer (`hold`) beside the service's connection.
@Suite("State store")
struct StateStoreTests {
    static func path() -> String {
        let dir = NSTemporaryDirectory() + "pbs-standby-store-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/state.db"
    }

    static let key = GuestKey(source: "pbs", vmid: 101)

    /// A file written by a version that stopped at migration 3 opens, is migrated, and keeps its
    /// rows; the columns added later read as empty.
    @Test func anOlderFileIsMigratedAndKeepsItsRows() throws {
        let path = Self.path()
        do {
            let db = try DatabaseQueue(path: path)
            try StateStore.migrator.migrate(db, upTo: "3-heartbeat")
            try db.write { db in
                try db.execute(sql: "INSERT INTO guest (source, vmid, targetVmid, restoredVolid, held, successes) VALUES ('pbs', 101, 101, 'pbs:backup/vm/101/2026-01-01T00:00:00Z', 1, 3)")
                try db.execute(sql: "INSERT INTO history (source, vmid, targetVmid, volid, upid, startedAt, result) VALUES ('pbs', 101, 101, 'pbs:backup/vm/101/2026-01-01T00:00:00Z', 'UPID:x', 1.0, 'success')")
            }
        }
        let store = try StateStore(path: path)
        let r = try #require(try store.guest(Self.key))
        #expect(r.held && r.successes == 3 && r.restoredVolid == "pbs:backup/vm/101/2026-01-01T00:00:00Z")
        #expect(r.startUPID == nil && r.vmgenid == nil && r.adoptVmid == nil)
        #expect(try store.history(Self.key).first?.warnings == 0)
        #expect(try store.restoreUPIDs(targetVmid: 101) == ["UPID:x"])
        #expect(try store.beginRestore(Self.key, targetVmid: 101, volid: "v", bytes: 1, at: 2) == .frozen("held"))
    }

    @Test func oneServicePerStateFile() throws {
        let path = Self.path()
        let first = try StateStore(path: path)
        #expect(throws: StoreError.self) { try StateStore(path: path) }
        do { _ = try StateStore(path: path) } catch { #expect("\(error)".contains("another pbs-standby uses the state file '\(path)'")) }
        _ = first
        // A CLI connection does not take the lock.
        _ = try StateStore(path: path, exclusive: false)
    }

    /// `hold` from the CLI while the service records restores: both land, none is lost, and a
    /// restore the service begins after the hold committed is refused in the same transaction.
    @Test func aCLIWriterBesideTheServiceLosesNothing() async throws {
        let path = Self.path()
        let service = try StateStore(path: path)
        let cli = try StateStore(path: path, exclusive: false)
        _ = try service.update(Self.key, targetVmid: 101) { _ in }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for i in 0..<200 {
                    let k = GuestKey(source: "pbs", vmid: 200 + i)
                    if case .started(let id) = try! service.beginRestore(k, targetVmid: 200 + i, volid: "v\(i)", bytes: 1, at: Double(i)) {
                        try! service.finishRestore(id, result: .success, error: nil, at: Double(i) + 1)
                    }
                }
            }
            group.addTask {
                for _ in 0..<50 { _ = try! cli.update(Self.key, targetVmid: 101) { $0.held.toggle() } }
                _ = try! cli.update(Self.key, targetVmid: 101) { $0.held = true }
            }
        }
        #expect(try service.allHistory().count == 200)
        #expect(try service.guest(Self.key)?.held == true)
        #expect(try service.beginRestore(Self.key, targetVmid: 101, volid: "v", bytes: 1, at: 1) == .frozen("held"))
    }

    /// Drill records (issue 16): open records are found, a drill and a restore of one guest
    /// exclude each other in one transaction, the summary picks the newest verdict, history is pruned.
    @Test func drillRecordsExcludeRestoresAndArePruned() throws {
        let store = try StateStore(path: Self.path())
        let key = Self.key
        func drill(_ at: Double, _ result: DrillResult) throws {
            var r = try #require(try store.beginDrillIfIdle(DrillRecord(source: key.source, vmid: key.vmid, type: "vm", targetVmid: 101,
                                                                       volid: nil, startedAt: at, scheduled: true)))
            #expect(try store.openDrills().map(\.id) == [r.id])
            #expect(try store.beginRestore(key, targetVmid: 101, volid: "v", bytes: 1, at: at) == .frozen("drilling"), "a restore waits for the drill")
            r.result = result.rawValue
            r.finishedAt = at + 60
            try store.saveDrill(r)
        }
        try drill(1000, .passed)
        try drill(2000, .failed)
        try drill(3000, .skipped)
        let s = try #require(try store.latestDrills()[key])
        #expect(s.latest.outcome == .skipped && s.lastPassed?.startedAt == 1000 && s.lastVerdict?.outcome == .failed)
        guard case .started = try store.beginRestore(key, targetVmid: 101, volid: "v", bytes: 1, at: 4000) else { Issue.record("restore refused"); return }
        #expect(try store.beginDrillIfIdle(DrillRecord(source: key.source, vmid: key.vmid, type: "vm", targetVmid: 101, volid: nil,
                                                       startedAt: 4000, scheduled: false)) == nil, "no drill beside a running restore")
        // A failover or hold written first wins over a drill planned before it.
        try store.update(GuestKey(source: "pbs", vmid: 202), targetVmid: 202) { $0.failedOver = true }
        #expect(try store.beginDrillIfIdle(DrillRecord(source: "pbs", vmid: 303, type: "vm", targetVmid: 303, volid: nil,
                                                       startedAt: 5000, scheduled: true)) == nil, "drills pause while any guest is failed over")
        try store.update(GuestKey(source: "pbs", vmid: 202), targetVmid: 202) { $0.failedOver = false }
        try store.update(GuestKey(source: "pbs", vmid: 303), targetVmid: 303) { $0.held = true }
        #expect(try store.beginDrillIfIdle(DrillRecord(source: "pbs", vmid: 303, type: "vm", targetVmid: 303, volid: nil,
                                                       startedAt: 5000, scheduled: true)) == nil, "no drill of a held guest")
        // An open record of a dead process is claimed by one cleaner only.
        var dead = try #require(try store.beginDrillIfIdle(DrillRecord(source: "pbs", vmid: 404, type: "vm", targetVmid: 404, volid: nil,
                                                                      startedAt: 5000, scheduled: true)))
        dead.pid = 999_999
        try store.saveDrill(dead)
        var a = dead, b = dead
        #expect(try store.claimDrill(&a) && a.pid == getpid())
        #expect(try !store.claimDrill(&b), "a second cleaner backs off")
        a.result = DrillResult.aborted.rawValue
        try store.saveDrill(a)
        #expect(try store.pruneDrills(before: 2500) == 2)
        #expect(try store.drills(key).count == 1)
        #expect(try store.openDrills().isEmpty)
    }
}
