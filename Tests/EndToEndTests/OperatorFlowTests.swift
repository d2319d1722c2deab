import Foundation
import Testing

@Suite("once, hold, resume, failover and restart through the CLI against the simulator process", .serialized)
struct OperatorFlowTests {
    @Test func onceRestoresExactlyTheEligibleGuestsThenOnlyNewerOnes() async throws {
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state)
        let (ok, out, err) = try run(["check-config", "--config.file", config])
        #expect(ok == 0, "\(out)\(err)")
        // Time runs 250x while a once runs: restores end, and a loaded machine does not race
        // simulated time past the next day's backups.
        sim.startTicking()
        let (rc, _, err1) = try run(["once", "--config.file", config])
        await sim.stopTicking()
        #expect(rc == 1, "107's restore fails, so once exits 1: \(err1)")
        let first = Set(sim.restorePosts().compactMap(\.vmid))
        #expect(first == [101, 102, 103, 107, 108, 201, 202, 203], "exactly the eligible guests")
        for untouched in [104, 105, 106] { #expect(sim.journal().allSatisfy { $0.vmid != untouched }, "\(untouched) untouched") }
        #expect(sim.restorePosts(vmid: 101).first?.parameters["tags"] == "pbs-standby")

        // Again: no backup restored before is restored again. (The first once may have let an
        // hour pass, so newer hourly backups may be restored now; time keeps moving for them.)
        let restoredOK = Set(sim.restorePosts().filter { $0.vmid != 107 }.map(\.archive))
        let before = sim.restorePosts().count
        sim.startTicking()
        _ = try run(["once", "--config.file", config])
        await sim.stopTicking()
        let repeated = sim.restorePosts().dropFirst(before).filter { restoredOK.contains($0.archive) }
        #expect(repeated.isEmpty, "no backup restored twice: \(repeated.map(\.archive))")

        // A day later: every guest, hourly and daily, has a newer backup — one restore each.
        let before2 = sim.restorePosts().count
        sim.advance(86_400 + 600)  // past the next daily backups, complete
        sim.startTicking()
        _ = try run(["once", "--config.file", config])
        await sim.stopTicking()
        let third = sim.restorePosts().dropFirst(before2)
        #expect(Set(third.compactMap(\.vmid)).isSuperset(of: [101, 102, 103, 108, 201, 202, 203]))
        #expect(Set(third.compactMap(\.vmid)).isDisjoint(with: [104, 105, 106]))
        let archives = sim.restorePosts().filter { $0.vmid != 107 }.map(\.archive)
        #expect(archives.count == Set(archives).count, "no backup restored twice")
    }

    /// The simulator starts at `--start` (the harness uses the next noon UTC) and names a bad value.
    @Test func simulatorStartsAtTheGivenTime() throws {
        let (rc, _, err) = try run(["simulator", "--start", "yesterday"])
        #expect(rc == 2 && err.contains("--start: 'yesterday' is neither RFC 3339"), "\(err)")
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let body = try #require(sim.call("GET", "/api2/json/nodes/pve-standby/storage/pbs-prod/content?content=backup"))
        let listing = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let entries = try #require(listing["data"] as? [[String: Any]])
        let times = entries.filter { ($0["vmid"] as? Int) == 103 }.compactMap { $0["ctime"] as? Int }
        let newest = try #require(times.max())
        #expect(newest % 86_400 == 3600, "103's newest backup is today's 01:00 UTC: \(newest)")
        let start = newest + 11 * 3600, now = Int(Date().timeIntervalSince1970)
        #expect(start >= now - 60 && start <= now + 86_400, "simulated time starts at the next noon: \(start) vs now \(now)")
    }

    @Test func holdResumeAndFailover() async throws {
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state)
        sim.startTicking()
        _ = try run(["once", "--config.file", config])
        let (hrc, hout, _) = try run(["hold", "101", "--config.file", config])
        #expect(hrc == 0 && hout.contains("held pbs-prod/101") && hout.contains("tagged VMID 101 'pbs-standby-held'"))
        let (urc, _, uerr) = try run(["hold", "101", "999", "--config.file", config])
        #expect(urc == 2 && uerr.contains("'999' matches no selected guest"), "a list with an unknown guest is refused whole")
        sim.advance(3600)
        let before = sim.restorePosts(vmid: 101).count
        _ = try run(["once", "--config.file", config])
        #expect(sim.restorePosts(vmid: 101).count == before, "held guest untouched")
        _ = try run(["resume", "101", "--config.file", config])
        _ = try run(["once", "--config.file", config])
        #expect(sim.restorePosts(vmid: 101).count == before + 1, "resumed guest restored")

        // Failover: freeze, then start the standby copy.
        let (frc, fout, ferr) = try run(["failover", "102", "--config.file", config])
        #expect(frc == 0, "\(fout)\(ferr)")
        #expect(sim.journal().contains { $0.method == "POST" && $0.path == "/nodes/pve-standby/qemu/102/status/start" })
        #expect(sim.journal().contains { $0.method == "PUT" && $0.path == "/nodes/pve-standby/qemu/102/config" && $0.parameters["onboot"] == "1" },
                "the backup's onboot is put back on the serving guest")
        #expect(sim.journal().contains { $0.method == "PUT" && $0.path == "/nodes/pve-standby/qemu/102/config"
            && $0.parameters["tags"]?.contains("pbs-standby-failed-over") == true }, "the freeze is mirrored in PVE")
        sim.advance(3600)
        let posts102 = sim.restorePosts(vmid: 102).count
        _ = try run(["once", "--config.file", config])
        #expect(sim.restorePosts(vmid: 102).count == posts102, "a failed-over guest is never restored over")
        let (rrc, _, rerr) = try run(["resume", "102", "--config.file", config])
        #expect(rrc == 2 && rerr.contains("--discard-changes"))
        let (rrc2, _, _) = try run(["resume", "102", "--discard-changes", "--config.file", config])
        #expect(rrc2 == 0)
        await sim.stopTicking()
    }

    @Test func failoverLatestLiveRestoresANewerBackup() async throws {
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let config = try sim.config(statePath: sim.dir.appendingPathComponent("state.db").path)
        sim.startTicking()
        _ = try run(["once", "--config.file", config])
        await sim.stopTicking()
        sim.advance(3600)  // production took another backup of 101 (hourly), not of 103 (daily)
        sim.startTicking()  // failover follows the live-restore task to its end before recording it
        // Without keep_previous, --latest live-restores over the copy only with --replace.
        let (rc, out, err) = try run(["failover", "101", "103", "--latest", "--replace", "--config.file", config])
        await sim.stopTicking()
        #expect(rc == 0, "\(out)\(err)")
        #expect(out.contains("PVE destroys the copy's disks first"), "says plainly that the copy is destroyed first: \(out)")
        let live = sim.restorePosts(vmid: 101).last
        #expect(live?.parameters["live-restore"] == "1" && live?.parameters["force"] == "1")
        #expect(live?.parameters["tags"]?.contains("pbs-standby-failed-over") == true, "the freeze stays on the new copy")
        #expect(!sim.journal().contains { $0.path == "/nodes/pve-standby/qemu/101/status/start" }, "live-restore starts it itself")
        #expect(sim.journal().contains { $0.path == "/nodes/pve-standby/qemu/103/status/start" }, "103's copy is current: started")
    }

    /// `run` keeps up as backups appear: after simulated hours every hourly guest's copy is recent.
    @Test func runKeepsUpAsBackupsAppear() async throws {
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state)
        let port = Int.random(in: 55001...60000)
        let log = sim.dir.appendingPathComponent("service.log").path
        let p = try serviceProcess(config: config, port: port, log: log)
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        sim.startTicking(step: 15)
        // ~8000 simulated seconds (16 s on an idle machine): new hourly backups appeared. A loaded
        // machine ticks slower, so tick until each hourly guest was restored again, or 60 s.
        let hourly = [101, 102, 201, 203]
        let deadline = Date().addingTimeInterval(60)
        try await Task.sleep(for: .seconds(16))
        while Date() < deadline, !hourly.allSatisfy({ v in sim.restorePosts().filter { $0.vmid == v }.count >= 2 }) {
            try await Task.sleep(for: .seconds(1))
        }
        await sim.stopTicking()
        try await Task.sleep(for: .seconds(2))  // let the service finish following what runs
        let posts = sim.restorePosts()
        for vmid in hourly {
            #expect(posts.filter { $0.vmid == vmid }.count >= 2,
                    "\(vmid) restored again after its next backup\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        // The status command reads the running service.
        let (rc, out, _) = try run(["status", "--web.listen-address", "127.0.0.1:\(port)"])
        #expect(rc == 0 && out.contains("pbs-prod\t101\t101\t"))
        p.terminate()
        p.waitUntilExit()
        // Without the service, status falls back to the state file.
        let (rc2, out2, err2) = try run(["status", "--web.listen-address", "127.0.0.1:\(port)", "--config.file", config])
        #expect(rc2 == 0 && out2.contains("pbs-prod\t101\t101\tfalse"), "\(out2)\(err2)")
    }

    /// kill -9 during a restore, then a restart: the running PVE task is followed, not repeated.
    @Test func killDuringARestoreThenRestartReattaches() async throws {
        try await restartDuringARestore(signal: SIGKILL)
    }

    /// SIGTERM during a restore: the service stops at once, the PVE task keeps running, and the
    /// next start follows it to its end.
    @Test func sigtermDuringARestoreThenRestartReattaches() async throws {
        try await restartDuringARestore(signal: SIGTERM)
    }

    func restartDuringARestore(signal: Int32) async throws {
        let scenario = """
        node: pve-standby
        pbs_storages: [{id: pbs-prod, datastore: store1}]
        target_storages: [{id: local-lvm, total_gib: 4000}]
        backups:
          - {vmid: 300, type: vm, name: big, disks_gib: [200], interval: 1d}
        """
        let sim = try SimulatorProcess(scenario: scenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state)
        let port = Int.random(in: 50001...55000)
        func startService() throws -> Process { try serviceProcess(config: config, port: port) }
        let first = try startService()
        // Time stands still: the restore task starts and stays running.
        for _ in 0..<100 where sim.restorePosts(vmid: 300).isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        #expect(sim.restorePosts(vmid: 300).count == 1)
        let archive = sim.restorePosts(vmid: 300).first?.archive ?? ""
        try await Task.sleep(for: .milliseconds(300))  // the UPID is stored right after the POST
        let stopAt = Date()
        kill(first.processIdentifier, signal)
        first.waitUntilExit()
        #expect(Date().timeIntervalSince(stopAt) < 3, "stops promptly")
        if signal == SIGTERM { #expect(first.terminationStatus == 0, "graceful exit on SIGTERM") }
        // Restart; let time run; the task ends and is recorded, with no second POST of that
        // backup. (Time runs 3000x: near midnight the next daily backup may appear and be
        // restored too — that one is newer, not a repeat.)
        let second = try startService()
        defer { second.terminate(); second.waitUntilExit() }
        sim.startTicking(step: 60)
        func attempts() -> [[String: Any]] {
            guard let body = curl("http://127.0.0.1:\(port)/api/v1/guests/300"),
                  let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
            return ((o["history"] as? [[String: Any]]) ?? []).filter { $0["volid"] as? String == archive }
        }
        var done = false
        for _ in 0..<150 where !done {
            if attempts().contains(where: { $0["result"] as? String == "success" }) { done = true }
            else { try await Task.sleep(for: .milliseconds(200)) }
        }
        await sim.stopTicking()
        #expect(done, "the re-attached restore finished as a success")
        let posts = sim.restorePosts(vmid: 300).map(\.archive)
        #expect(posts.filter { $0 == archive }.count == 1, "no duplicate restore after the restart: \(posts)")
        #expect(attempts().count == 1, "history: one attempt for \(archive)")
    }
}
