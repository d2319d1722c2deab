import Foundation
import GRDB
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore
import TestSupport
import Testing

/// Faults against the simulator on virtual time: what is observed, nothing lost, status honest.
@Suite("Fault matrix")
struct FaultMatrixTests {
    static func twoSources() -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-a", datastore: "a"), .init(id: "pbs-b", datastore: "b")]
        s.targetStorages = [.init(id: "local-lvm", total: 4 << 40)]
        s.backedUp = [
            .init(vmid: 101, type: .vm, name: "a1", storage: "pbs-a", disks: [4 * Rig.gib], interval: 3600),
            .init(vmid: 102, type: .vm, name: "a2", storage: "pbs-a", disks: [4 * Rig.gib], interval: 3600),
            .init(vmid: 201, type: .vm, name: "b1", storage: "pbs-b", disks: [4 * Rig.gib], interval: 3600),
        ]
        return s
    }

    static func rig(_ scenario: Scenario = twoSources()) throws -> Rig {
        try Rig(scenario: scenario) { c in
            c.sources = scenario.pbsStorages.map { p in
                var s = StandbyConfig.Source(storage: p.id)
                s.targetStorage = "local-lvm"
                return s
            }
        }
    }

    @Test func apiAnswering503NoRestoreStartsThenRecovers() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/cluster/resources", status: 503, message: "service unavailable", times: 3))
        for _ in 0..<3 { await rig.once() }
        #expect(rig.restores(vmid: 101).isEmpty, "no restore without knowing the guests")
        #expect(rig.runtime.reconciler.snapshot.service.lastLoopAt != nil, "the loop still publishes")
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1, "recovers once PVE answers")
    }

    @Test func taskStatusTimeoutsWhileFollowingKeepTheRestore() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/status", status: 595, message: "No route to host", times: 6))
        let ok = await rig.once()
        #expect(ok, "transient errors while following do not fail the restore")
        #expect(rig.guest(101)?.state == .idle && rig.guest(101)?.restored != nil)
        #expect(try rig.store.allHistory().allSatisfy { $0.result == "success" })
    }

    /// `once` against a PVE that vanished mid-restore gives up after the bound instead of
    /// waiting for task_timeout (12 h); the next `once` re-attaches to the same task.
    @Test func onceGivesUpOnAnUnreachablePVEAndTheNextOnceReattaches() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/status", status: 595, message: "Connection timed out"))
        let start = rig.clock.now()
        let ok = await rig.once(giveUpAfterUnreachable: 600)
        #expect(!ok, "once reports that it did not see the restores end")
        #expect(rig.clock.now() - start < 3600, "gave up after about 10 minutes, not task_timeout")
        #expect(try rig.store.allHistory().allSatisfy { $0.result == "running" && $0.upid != nil }, "left for re-attaching")
        #expect(rig.guest(101)?.state == .restoring, "honest: the task still runs in PVE")
        rig.simulator.clearFaults()
        #expect(await rig.once(giveUpAfterUnreachable: 600))
        #expect(rig.restores(vmid: 101).count == 1 && rig.restores(vmid: 201).count == 1, "re-attached, not restored again")
        #expect(try rig.store.allHistory().allSatisfy { $0.result == "success" })
    }

    @Test func restoreFailingMidTaskIsCountedAndRetried() async throws {
        let rig = try Self.rig()
        rig.simulator.setRestoreFails(102, true)
        await rig.once()
        let g = try #require(rig.guest(102))
        #expect(g.state == .failing && g.lastError?.contains("exit code 255") == true)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_restore_failures_total{source=\"pbs-a\",reason=\"task_error\"} 1"))
        #expect(text.contains("pbs_standby_restores_total{source=\"pbs-a\",vmid=\"102\",type=\"vm\",result=\"failure\"} 1"))
        #expect(rig.guest(101)?.state == .idle, "other guests unaffected")
    }

    @Test func targetStorageFullBlocksWithoutTouching() async throws {
        var s = Self.twoSources()
        s.targetStorages = [.init(id: "local-lvm", total: 10 * Rig.gib, used: 9 * Rig.gib)]
        let rig = try Self.rig(s)
        await rig.once()
        #expect(rig.restores(vmid: 101).isEmpty)
        #expect(rig.guest(101)?.blockedReason == .insufficientSpace)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_guest_state{source=\"pbs-a\",vmid=\"101\",type=\"vm\",state=\"blocked\"} 1"))
    }

    @Test func oneSourceFailingTheOtherKeepsBeingRestored() async throws {
        let rig = try Self.rig()
        rig.simulator.addFault(.init(method: "GET", path: "/storage/pbs-b/content", status: 500, message: "pbs-b: can't connect to 192.0.2.9:8007"))
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.restores(vmid: 102).count == 1)
        #expect(rig.restores(vmid: 201).isEmpty)
        let snap = rig.runtime.reconciler.snapshot
        #expect(snap.sources.first { $0.storage == "pbs-a" }?.up == true)
        let b = try #require(snap.sources.first { $0.storage == "pbs-b" })
        #expect(!b.up && b.error?.contains("can't connect") == true && b.refreshErrors >= 1)
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_source_up{source=\"pbs-b\"} 0.0"))
        #expect(text.contains("pbs_standby_source_up{source=\"pbs-a\"} 1.0"))
        #expect(text.contains("pbs_standby_restore_lag_seconds{source=\"pbs-a\",vmid=\"101\",type=\"vm\"}"))
        rig.simulator.clearFaults()
        await rig.once()
        #expect(rig.restores(vmid: 201).count == 1, "restored once the source answers again")
    }

    /// The state file stops taking writes right after a restore's task ended (another
    /// connection holds SQLite's write lock: the same failing-write path as a full disk, which
    /// `EndToEndTests` exercises with a real full filesystem). The outcome stays in memory,
    /// nothing else starts, and once writes work again the outcome lands and nothing is restored twice.
    @Test func stateFileNotWritableStartsNothingAndKeepsOutcomes() async throws {
        let dir = NSTemporaryDirectory() + "pbs-standby-lock-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let locker = WriteLocker(path: dir + "/state.db")
        let scenario = Self.twoSources()
        let rig = try Rig(scenario: scenario, configure: { c in
            c.sources = scenario.pbsStorages.map { p in
                var s = StandbyConfig.Source(storage: p.id)
                s.targetStorage = "local-lvm"
                return s
            }
            c.restore.workers = 1
        }, storePath: dir + "/state.db", busyTimeout: 0, transport: { inner in
            // Lock the state file when the engine first reads 101's config, to verify the
            // marker: its restore task has just ended successfully.
            HookTransport(inner: inner) { method, path in
                if method == .get && path.hasSuffix("/qemu/101/config") { locker.lockOnce() }
            }
        })
        let ok = await rig.once()
        #expect(!ok, "`once` fails while the state file cannot be written")
        #expect(rig.restores(vmid: 101).count == 1)
        let service = rig.runtime.reconciler.snapshot.service
        #expect(!service.stateWritable && service.unsavedWrites == 1)
        #expect(service.stateError?.contains("database is locked") == true)
        #expect(rig.guest(101)?.restored != nil, "the outcome is known in memory")
        var text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_state_writable 0.0"))
        #expect(text.contains("pbs_standby_state_unsaved_writes 1.0"))
        #expect(try rig.store.allHistory().map(\.result) == ["running"], "the file still says running")
        // Still locked: later passes start nothing — not 101 again, not the others.
        rig.clock.advance(by: 600)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.restores(vmid: 102).isEmpty && rig.restores(vmid: 201).isEmpty)
        let ready = rig.runtime.webApp(clock: rig.clock).isReady()
        #expect(!ready.ready && ready.reason.contains("state file"))
        // Writable again: the owed outcome lands first, then the others are restored, 101 is not.
        locker.unlock()
        rig.clock.advance(by: 60)
        #expect(await rig.once())
        #expect(rig.restores(vmid: 101).count == 1, "no backup restored twice")
        #expect(rig.restores(vmid: 102).count == 1 && rig.restores(vmid: 201).count == 1)
        let history = try rig.store.allHistory()
        #expect(history.first { $0.vmid == 101 }?.result == "success")
        #expect(try rig.store.guest(GuestKey(source: "pbs-a", vmid: 101))?.restoredVolid != nil)
        #expect(rig.runtime.reconciler.snapshot.service.stateWritable)
        try await Task.sleep(for: .milliseconds(1100))  // /metrics renders at most once a second
        text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(text.contains("pbs_standby_state_writable 1.0"))
        #expect(!text.contains("pbs_standby_state_write_errors_total 0\n"))
        #expect(text.contains("pbs_standby_state_unsaved_writes 0.0"))
    }

    @Test func corruptedStateFileIsRefusedWithAClearError() throws {
        let dir = NSTemporaryDirectory() + "pbs-standby-corrupt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: dir + "/state.db"))
        do {
            _ = try StateStore(path: dir + "/state.db")
            Issue.record("a corrupted state file must be refused")
        } catch let error as StoreError {
            #expect(error.description.contains(dir + "/state.db"))
            #expect(error.description.contains("rebuild the state from the markers"))
        }
    }
}

/// Calls `hook` before each request, then the wrapped transport.
struct HookTransport: ProxmoxTransport {
    let inner: any ProxmoxTransport
    let hook: @Sendable (APIMethod, String) -> Void
    var runsTasksSynchronously: Bool { inner.runsTasksSynchronously }
    var endpointDescription: String { inner.endpointDescription }
    var taskUser: String? { inner.taskUser }
    func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
              onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        hook(method, path)
        return try await inner.call(method, path, parameters: parameters, onOutput: onOutput)
    }
}

/// Holds SQLite's write lock (RESERVED, `BEGIN IMMEDIATE`) on a state file from a second
/// connection: readers go on, every other writer gets SQLITE_BUSY.
final class WriteLocker: @unchecked Sendable {
    let path: String
    private let mutex = NSLock()
    private var queue: DatabaseQueue?
    private var used = false

    init(path: String) { self.path = path }

    func lockOnce() {
        mutex.lock(); defer { mutex.unlock() }
        guard !used else { return }
        used = true
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true  // the transaction spans calls on purpose
        let q = try! DatabaseQueue(path: path, configuration: configuration)
        try! q.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
        queue = q
    }

    func unlock() {
        mutex.lock(); defer { mutex.unlock() }
        try! queue?.writeWithoutTransaction { try $0.execute(sql: "ROLLBACK") }
        queue = nil
    }
}
