import Foundation
import Logging
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore
import TestSupport
import Testing

@Suite("Reconciler against the simulator")
struct ReconcilerTests {
    @Test func newBackupGivesExactlyOneRestoreAndTheSameBackupNone() async throws {
        let rig = try Rig()
        let ok = await rig.once()
        #expect(!ok, "160's restore fails")
        #expect(rig.restores(vmid: 101).count == 1)
        #expect(rig.restores(vmid: 201).count == 1)
        #expect(rig.guest(101)?.state == .idle)
        #expect(rig.guest(101)?.restored != nil)
        let config = try #require(rig.simulator.guestSnapshot(101))
        #expect(config.tags == ["pbs-standby"], "the marker tag is passed in the restore call")
        #expect(Marker.volid(inDescription: rig.simulator.guestDescription(101))?.vmid == 101)
        // Same backups: nothing to do.
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1)
        #expect(rig.restores(vmid: 201).count == 1)
        // A new backup of 101 an hour later: exactly one more restore.
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 2)
    }

    @Test func unsafeTargetsAreNeverTouched() async throws {
        let rig = try Rig()
        await rig.once()
        rig.clock.advance(by: 3600)
        await rig.once()
        for vmid in [150, 151, 152, 170] {
            #expect(rig.mutations(vmid: vmid).isEmpty, "no mutating call on \(vmid): \(rig.mutations(vmid: vmid))")
        }
        #expect(rig.guest(150)?.blockedReason == .notOwned)
        #expect(rig.guest(151)?.blockedReason == .locked)
        #expect(rig.guest(152)?.blockedReason == .protected)
        #expect(rig.guest(170)?.blockedReason == .running)
    }

    @Test func inProgressBackupIsIgnored() async throws {
        let rig = try Rig()
        await rig.once()
        #expect(rig.restores(vmid: 102).isEmpty, "the only backup of 102 is still running (size 1)")
        rig.clock.advance(by: 120)
        await rig.once()
        #expect(rig.restores(vmid: 102).count == 1)
    }

    @Test func failureBackoffThenRecovery() async throws {
        let rig = try Rig()
        await rig.once()
        let g = try #require(rig.guest(160))
        #expect(g.state == .failing && g.consecutiveFailures == 1)
        #expect(g.nextRetryAt != nil)
        let attempts = rig.restores(vmid: 160).count
        await rig.once()
        #expect(rig.restores(vmid: 160).count == attempts, "no retry before the backoff ends")
        rig.simulator.setRestoreFails(160, false)
        rig.clock.advance(by: 301)
        await rig.once()
        #expect(rig.restores(vmid: 160).count == attempts + 1)
        #expect(rig.guest(160)?.state == .idle)
        #expect(rig.guest(160)?.consecutiveFailures == 0)
        // The failed VM restore left a guest without marker (reference §3.1): it stayed ours.
    }

    /// `once` restores each guest at most once, so it ends even when backups arrive faster than
    /// one worker restores them (as in CI, where simulated time ran on during a `once` that
    /// kept finding newer backups and never exited).
    @Test func onceEndsWhileBackupsKeepArriving() async throws {
        // 100 GiB restores take ~340 s at 300 MiB/s; production backs each guest up every 300 s.
        let scenario = Rig.scenario(backedUp: [301, 302, 303].map {
            .init(vmid: $0, type: .vm, name: "vm\($0)", storage: "pbs-prod", disks: [100 * Rig.gib], interval: 300, offset: Double($0 % 3) * 100)
        })
        let rig = try Rig(scenario: scenario) { $0.restore.workers = 1 }
        let once = Task { await rig.once() }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            once.cancel()
        }
        _ = await once.value
        watchdog.cancel()
        #expect(!once.isCancelled, "once did not end within 60 s (the watchdog cancelled it)")
        for vmid in [301, 302, 303] {
            #expect(rig.restores(vmid: vmid).count == 1, "\(vmid) restored exactly once: \(rig.restores(vmid: vmid).count)")
        }
        #expect(rig.clock.now() - 1_795_000_000 > 900, "newer backups appeared while the once ran")
        // The next once restores the newer backups, again once each.
        await rig.once()
        for vmid in [301, 302, 303] { #expect(rig.restores(vmid: vmid).count == 2) }
    }

    @Test func heldAndFailedOverGuestsAreUntouched() async throws {
        let rig = try Rig()
        try rig.store.update(GuestKey(source: "pbs-prod", vmid: 101), targetVmid: 101) { $0.held = true }
        try rig.store.update(GuestKey(source: "pbs-prod", vmid: 201), targetVmid: 201) { $0.failedOver = true }
        await rig.once()
        #expect(rig.restores(vmid: 101).isEmpty && rig.restores(vmid: 201).isEmpty)
        #expect(rig.guest(101)?.state == .held)
        #expect(rig.guest(201)?.state == .failedOver)
    }

    @Test func restartDuringATaskReattachesWithoutADuplicate() async throws {
        let dir = NSTemporaryDirectory() + "pbs-standby-restart-\(UUID().uuidString)"
        let path = dir + "/state.db"
        let clock = ManualClock(start: 1_795_000_000)
        let scenario = Rig.scenario(backedUp: [.init(vmid: 300, type: .vm, name: "big", storage: "pbs-prod", disks: [100 * Rig.gib], interval: 86400)])
        let sim = PVESimulator(scenario: scenario, clock: clock)
        var config = StandbyRuntime.demoConfig(scenario: scenario, statePath: path)
        config.restore.pollInterval = .seconds(30)
        do {
            // First life: start the restore, then "crash" (cancel) while the task runs.
            let store = try StateStore(path: path)
            let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: store, clock: clock)
            let task = Task { try await rt.reconciler.run() }
            for _ in 0..<200 where sim.runningTaskCount() == 0 { try await Task.sleep(for: .milliseconds(5)) }
            task.cancel()
            _ = try? await task.value
            #expect(sim.runningTaskCount() == 1, "the PVE task outlives the service")
            #expect(try store.runningRestores().count == 1)
        }
        // Second life: the same state file; the task is followed, not restarted.
        let store = try StateStore(path: path)
        let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: store, clock: clock)
        let ok = await rt.reconciler.runOnce()
        #expect(ok)
        let posts = sim.journal().filter { $0.method == "POST" && $0.path.hasSuffix("/qemu") }
        #expect(posts.count == 1, "no duplicate restore: \(posts)")
        let history = try store.allHistory()
        #expect(history.count == 1 && history[0].result == "success" && history[0].upid != nil)
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func stateFileLostRebuildsFromMarkers() async throws {
        let scenario = Rig.scenario()
        let rig = try Rig(scenario: scenario)
        await rig.once()
        let restoresBefore = rig.restores(vmid: 101).count
        // A new service with an empty state file against the same node: markers say what is there.
        let fresh = try StateStore()
        var config = rig.runtime.reconciler.config
        config.statePath = ":memory:"
        let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: rig.simulator), store: fresh, clock: rig.clock)
        _ = await rt.reconciler.runOnce()
        #expect(rig.restores(vmid: 101).count == restoresBefore, "the marker shows the copy is current")
        #expect(rig.mutations(vmid: 150).isEmpty)
    }

    @Test func stateFileIsPrivateAndSingleInstance() throws {
        let dir = NSTemporaryDirectory() + "pbs-standby-perm-\(UUID().uuidString)"
        let store = try StateStore(path: dir + "/state.db")
        let attrs = try FileManager.default.attributesOfItem(atPath: dir + "/state.db")
        #expect((attrs[.posixPermissions] as? Int).map { $0 & 0o077 } == 0, "mode 0600")
        #expect(throws: StoreError.self) { _ = try StateStore(path: dir + "/state.db") }
        _ = store
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite("Metrics and status rendering")
struct RenderingTests {
    @Test func expositionCarriesTheCatalogue() async throws {
        let rig = try Rig()
        await rig.once()
        let text = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        for name in ["pbs_standby_build_info", "pbs_standby_source_up", "pbs_standby_restore_lag_seconds", "pbs_standby_rpo_target_seconds",
                     "pbs_standby_guest_state", "pbs_standby_restores_total", "pbs_standby_restore_failures_total",
                     "pbs_standby_restore_duration_seconds_bucket", "pbs_standby_guest_info", "pbs_standby_queue_length",
                     "pbs_standby_workers", "pbs_standby_restores_in_progress", "pbs_standby_loop_last_run_timestamp_seconds",
                     "pbs_standby_pending_backups", "pbs_standby_consecutive_failures", "pbs_standby_restore_progress_ratio",
                     "pbs_standby_restored_bytes_total", "process_resident_memory_bytes"] {
            #expect(text.contains(name), "\(name) missing")
        }
        #expect(text.contains("pbs_standby_guest_state{source=\"pbs-prod\",vmid=\"150\",type=\"vm\",state=\"blocked\"} 1"))
        #expect(text.contains("pbs_standby_restore_failures_total{source=\"pbs-prod\",reason=\"task_error\"} 1"))
        // promtool, when installed, must accept it.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
            p.arguments = ["check", "metrics"]
            let inPipe = Pipe(), out = Pipe()
            p.standardInput = inPipe
            p.standardOutput = out
            p.standardError = out
            try p.run()
            inPipe.fileHandleForWriting.write(Data(text.utf8))
            try inPipe.fileHandleForWriting.close()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        }
    }

    @Test func statusJSONAndPageEscapeWhatComesFromPVE() async throws {
        let rig = try Rig()
        await rig.once()
        let json = String(decoding: StatusDocument(rig.runtime.reconciler.snapshot, now: rig.clock.now()).json(), as: UTF8.self)
        let doc = try JSONValue.parse(Array(json.utf8), path: "status")
        let g101 = try #require(doc["guests"]?.array?.first { $0["vmid"]?.int == 101 })
        #expect(g101["state"]?.string == "idle")
        #expect(g101["restored"]?["volid"]?.string?.hasPrefix("pbs-prod:backup/vm/101/") == true)
        #expect(g101["lag_seconds"]?.double != nil && g101["rpo_target_seconds"]?.double == 1800)
        #expect(doc["guests"]?.array?.first { $0["vmid"]?.int == 150 }?["blocked_reason"]?.string == "not_owned")
        #expect(StatusPage.escape("<script>alert('x')</script>&") == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;")
        let html = StatusPage.render(rig.runtime.reconciler.snapshot, now: rig.clock.now())
        #expect(html.components(separatedBy: "<tr class=\"guest\">").count - 1 == rig.runtime.reconciler.snapshot.guests.count)
    }
}

@Suite("keep_previous (blue/green)")
struct KeepPreviousTests {
    /// The live copy is never the one overwritten; a failed restore leaves it untouched; after a
    /// good restore the older copy is destroyed.
    @Test func neverWithoutAGoodCopyUnderFailures() async throws {
        let scenario = Rig.scenario(backedUp: [.init(vmid: 101, type: .vm, name: "web", storage: "pbs-prod", disks: [4 * Rig.gib], interval: 3600)])
        let rig = try Rig(scenario: scenario) { c in
            c.restore.keepPrevious = true
            c.restore.previousVmidOffset = 1000
            c.restore.backoff = [.seconds(60)]
        }
        func goodCopies() -> [Int] {
            [101, 1101].filter { vmid in
                guard let g = rig.simulator.guestSnapshot(vmid), Marker.isTagged(g.tags) else { return false }
                return Marker.volid(inDescription: rig.simulator.guestDescription(vmid)) != nil
            }
        }
        await rig.once()
        #expect(goodCopies() == [101], "first copy in the primary slot")
        var live = 101
        for round in 0..<6 {
            rig.clock.advance(by: 3600)
            let fail = round % 3 == 1
            rig.simulator.setRestoreFails(101, fail)
            await rig.once()
            let copies = goodCopies()
            #expect(!copies.isEmpty, "round \(round): a good copy exists")
            if fail {
                #expect(copies == [live], "round \(round): a failed restore leaves the live copy untouched")
            } else {
                #expect(copies.count == 1 && copies[0] != live, "round \(round): the new copy is in the other slot, the old one destroyed")
                live = copies[0]
            }
            #expect(rig.guest(101)?.targetVmid == live, "status shows which VMID holds the live copy")
        }
        // No restore ever targeted the live slot.
        let posts = rig.simulator.journal().filter { $0.method == "POST" && $0.path.hasSuffix("/qemu") }
        #expect(posts.count >= 5)
    }
}
