import Foundation
import Testing

/// The fault matrix through real processes: `pbs-standby run` against a separate
/// `pbs-standby simulator --tls` whose API fails, hangs, refuses connections, fails tasks, or
/// whose disk of the state file fills up. For each fault: what the service does, that nothing is
/// lost or done twice, and that `/api/v1/status` and `/metrics` say so.
///
/// "For minutes" is scaled down: with `proxmox.timeout: 2s` a hang of 12 s is six timeouts in a
/// row, the same code path as a PVE that hangs for minutes with the default 30 s.
@Suite("Fault matrix through processes", .serialized)
struct ProcessFaultMatrixTests {
    static let scenario = """
    node: pve-standby
    restore_mib_per_s: 300
    pbs_storages: [{id: pbs-a, datastore: a}, {id: pbs-b, datastore: b}]
    target_storages: [{id: local-lvm, total_gib: 4000}, {id: tiny, total_gib: 10, used_gib: 9.5}]
    backups:
      - {vmid: 101, type: vm, name: web, disks_gib: [64], interval: 1h, storage: pbs-a}
      - {vmid: 102, type: vm, name: app, disks_gib: [8], interval: 1h, offset: 5m, storage: pbs-a}
      - {vmid: 103, type: vm, name: on-full-storage, disks_gib: [8], interval: 1h, storage: pbs-a}
      - {vmid: 201, type: ct, name: dns, disks_gib: [4], interval: 1h, offset: 10m, storage: pbs-b}
    """

    @Test func apiErrorsHangsRefusedConnectionsAndFailingTasks() async throws {
        let sim = try SimulatorProcess(scenario: Self.scenario)
        defer { sim.stop() }
        let service = try ServiceProcess(sim: sim, statePath: sim.dir.appendingPathComponent("state.db").path)
        defer { service.stop() }
        sim.startTicking()
        // Start: 101, 102, 201 restored; 103's target storage is full: blocked, untouched.
        // Restored at least once (a guest whose next backup is being restored shows no copy
        // meanwhile: a forced VM restore frees the old disks first, so "restored" is not it).
        try await service.waitFor("every guest restored", seconds: 40) { s in
            let m = service.metrics()
            return [101, 102, 201].allSatisfy { v in
                m.split(separator: "\n").contains { $0.hasPrefix("pbs_standby_restores_total{") && $0.contains("vmid=\"\(v)\"")
                    && $0.contains("result=\"success\"") && !$0.hasSuffix(" 0") }
            }
        }
        var s = try #require(service.status())
        #expect(s.guest(103)?["blocked_reason"] as? String == "insufficient_space")
        #expect(sim.restorePosts(vmid: 103).isEmpty, "a full target storage is never written to")
        #expect(service.metrics().contains("pbs_standby_guest_state{source=\"pbs-a\",vmid=\"103\",type=\"vm\",state=\"blocked\"} 1"))

        // 1. PVE answers 503 on the guest list: no restore starts, the loop goes on, then recovers.
        await sim.stopTicking()
        sim.post("/_sim/faults?method=GET&path=/cluster/resources&status=503&message=service%20unavailable")
        let counts = [101, 102, 201].map { sim.restorePosts(vmid: $0).count }
        var posts = sim.restorePosts().count
        sim.advance(3600 + 900)  // new complete backups of every guest
        let loopBefore = service.status()?.service["last_loop_at"] as? String
        try await Task.sleep(for: .seconds(4))
        #expect(sim.restorePosts().count == posts, "no restore without knowing the guests")
        #expect(service.status()?.service["last_loop_at"] as? String != loopBefore, "the loop keeps passing")
        sim.delete("/_sim/faults")
        sim.startTicking()
        try await service.waitFor("new backups restored after the 503s", seconds: 30) { s in
            zip([101, 102, 201], counts).allSatisfy { sim.restorePosts(vmid: $0).count > $1 } && s.service["restores_in_progress"] as? Int == 0
        }

        // 2. PVE hangs (process stopped: connections are accepted by the kernel, never answered)
        // while a restore runs: the worker keeps following through the timeouts, no failure, no
        // second restore.
        await sim.stopTicking()
        sim.advance(3600 + 900)
        posts = sim.restorePosts(vmid: 101).count
        try await service.waitFor("the next restore of 101 started", seconds: 20) { _ in sim.restorePosts(vmid: 101).count == posts + 1 }
        var running = sim.restorePosts(vmid: 101).last?.archive ?? ""
        kill(sim.process.processIdentifier, SIGSTOP)
        try await Task.sleep(for: .seconds(12))
        s = try #require(service.status(), "the service answers while PVE hangs")
        #expect(s.guest(101)?["state"] as? String == "restoring")
        kill(sim.process.processIdentifier, SIGCONT)
        sim.startTicking()
        try await service.waitFor("101 restored after the hang", seconds: 30) { s in
            (s.guest(101)?["last_restore"] as? [String: Any])?["result"] as? String == "success" && s.guest(101)?["state"] as? String == "idle"
        }
        // Time ticks again, so newer backups may be restored by now; the one that ran is not repeated.
        #expect(sim.restorePosts(vmid: 101).filter { $0.archive == running }.count == 1, "followed to its end, not restarted")
        #expect((service.status()?.guest(101)?["consecutive_failures"] as? Int) == 0)

        // 3. Connection refused during a restore: the simulator process is stopped, then started
        // again on the same port with its saved state (guests and running tasks survive, as in
        // PVE when pveproxy restarts). Sources are reported down, the restore is followed once
        // PVE is back, nothing is restored twice.
        await sim.stopTicking()
        sim.advance(3600 + 900)
        posts = sim.restorePosts(vmid: 101).count
        try await service.waitFor("the next restore of 101 started", seconds: 20) { _ in sim.restorePosts(vmid: 101).count == posts + 1 }
        running = sim.restorePosts(vmid: 101).last?.archive ?? ""
        sim.stopProcess()
        #expect(runCurl(["-sk", "-o", "/dev/null", sim.url + "/api2/json/version"]).status == 7, "the simulated PVE refuses connections")
        try await service.waitFor("sources reported down", seconds: 15) { s in
            s.sources.allSatisfy { $0["up"] as? Bool == false }
        }
        #expect(service.metrics().contains("pbs_standby_source_up{source=\"pbs-a\"} 0.0"))
        s = try #require(service.status(), "the service answers while PVE is down")
        #expect(s.guest(101)?["state"] as? String == "restoring", "the restore is still followed")
        try await Task.sleep(for: .seconds(3))
        try sim.startAgain()
        sim.startTicking()
        try await service.waitFor("101 restored after the outage, sources up", seconds: 40) { s in
            (s.guest(101)?["last_restore"] as? [String: Any])?["result"] as? String == "success"
                && s.guest(101)?["state"] as? String == "idle" && s.sources.allSatisfy { $0["up"] as? Bool == true }
        }
        #expect(sim.restorePosts(vmid: 101).filter { $0.archive == running }.count == 1, "no duplicate restore after the outage")

        // 4. A task failing mid-restore (pbs-restore exits 255) and one source failing to list:
        // 102 is failing with PVE's message, pbs-b is down, 101 keeps being restored.
        sim.post("/_sim/restore-fails?vmid=102&fails=1")
        sim.post("/_sim/faults?method=GET&path=/storage/pbs-b/content&status=500&message=pbs-b:%20can%27t%20connect%20to%20192.0.2.9:8007")
        let posts201 = sim.restorePosts(vmid: 201).count
        posts = sim.restorePosts(vmid: 101).count
        sim.advance(3600)
        try await service.waitFor("102 failing, pbs-b down, 101 restored again", seconds: 40) { s in
            s.guest(102)?["state"] as? String == "failing"
                && (s.sources.first { $0["storage"] as? String == "pbs-b" })?["up"] as? Bool == false
                && sim.restorePosts(vmid: 101).count > posts && s.guest(101)?["state"] as? String == "idle"
        }
        s = try #require(service.status())
        #expect((s.guest(102)?["last_error"] as? String)?.contains("exit code 255") == true)
        #expect(((s.sources.first { $0["storage"] as? String == "pbs-b" })?["error"] as? String)?.contains("can't connect") == true)
        #expect(sim.restorePosts(vmid: 201).count == posts201, "nothing restored from a source that does not list")
        #expect(s.guest(201)?["restored"] is [String: Any], "201 keeps its last copy and its status")
        let text = service.metrics()
        #expect(text.contains("pbs_standby_restore_failures_total{source=\"pbs-a\",reason=\"task_error\"}"))
        #expect(text.contains("pbs_standby_source_up{source=\"pbs-b\"} 0.0") && text.contains("pbs_standby_source_up{source=\"pbs-a\"} 1.0"))
        #expect(text.contains("pbs_standby_restore_lag_seconds{source=\"pbs-b\",vmid=\"201\",type=\"ct\"}"), "201's lag is still reported")
        await sim.stopTicking()
        #expect(sim.journal().allSatisfy { $0.vmid != 103 }, "the guest on the full storage was never touched")
        let archives = sim.restorePosts().filter { $0.vmid != 102 }.map(\.archive)  // 102's failures are retried
        #expect(archives.count == Set(archives).count, "no backup restored twice: \(archives)")
    }

    /// The filesystem of the state file fills up while a restore runs, then is freed: the
    /// outcome is kept in memory, no restore starts meanwhile, readiness and metrics say why,
    /// and after space returns the outcome lands and no backup is restored twice.
    @Test func stateFileDiskFullThenFreed() async throws {
        let sim = try SimulatorProcess(scenario: Self.scenario)
        defer { sim.stop() }
        let disk = try SmallDisk(at: sim.dir.appendingPathComponent("statefs").path)
        defer { disk.remove() }
        let statePath = disk.path + "/state.db"
        let service = try ServiceProcess(sim: sim, statePath: statePath)
        defer { service.stop() }
        sim.startTicking()
        try await service.waitFor("every guest restored", seconds: 40) { s in
            [101, 102, 201].allSatisfy { s.guest($0)?["restored"] is [String: Any] }
        }
        await sim.stopTicking()
        sim.advance(3600 + 900)
        let posts = sim.restorePosts(vmid: 101).count
        try await service.waitFor("the next restore of 101 started", seconds: 20) { _ in sim.restorePosts(vmid: 101).count == posts + 1 }
        let inFlight = try #require(sim.restorePosts(vmid: 101).last?.archive)
        try disk.fill(pid: service.process.processIdentifier)
        sim.startTicking()
        try await service.waitFor("the state file reported not writable with an owed outcome", seconds: 30) { s in
            let state = s.service["state"] as? [String: Any]
            return state?["writable"] as? Bool == false && (state?["unsaved_writes"] as? Int ?? 0) >= 1
        }
        var s = try #require(service.status())
        let state = s.service["state"] as? [String: Any]
        #expect((state?["error"] as? String)?.contains(statePath) == true || (state?["error"] as? String)?.contains("full") == true,
                "\(String(describing: state?["error"]))")
        #expect(curlStatus(service.base + "/-/ready") == 503)
        #expect(service.metrics().contains("pbs_standby_state_writable 0.0"))
        let (rc, _, err) = try run(["status", "--web.listen-address", "127.0.0.1:\(service.port)"])
        #expect(rc == 1 && err.contains("cannot write its state file"), "status warns: \(err)")
        // New backups while the disk is full: nothing starts.
        let before = sim.restorePosts().count
        sim.advance(3600 + 900)
        try await Task.sleep(for: .seconds(4))
        #expect(sim.restorePosts().count == before, "no restore starts while the state cannot be written")
        // Space returns: the owed outcome lands, then the new backups are restored — once each.
        try disk.free(pid: service.process.processIdentifier)
        try await service.waitFor("writable again and caught up", seconds: 40) { s in
            let state = s.service["state"] as? [String: Any]
            return state?["writable"] as? Bool == true && state?["unsaved_writes"] as? Int == 0
                && sim.restorePosts(vmid: 101).count >= posts + 2
        }
        await sim.stopTicking()
        s = try #require(service.status())
        let history = (s.guest(101)?["history"] as? [[String: Any]]) ?? []
        let owed = history.first { $0["volid"] as? String == inFlight }
        #expect(owed?["result"] as? String == "success", "the restore that ended while the disk was full is recorded: \(history)")
        let volids = sim.restorePosts().map(\.archive)
        #expect(volids.count == Set(volids).count, "no backup restored twice: \(volids)")
        #expect(curlStatus(service.base + "/-/ready") == 200)
    }
}

/// `pbs-standby run` against a simulator process, on a random loopback port.
final class ServiceProcess {
    let process = Process()
    let port: Int
    let base: String
    let log: URL

    init(sim: SimulatorProcess, statePath: String) throws {
        let config = try sim.config(statePath: statePath, timeout: "2s", settings: """
            restore:
              workers: 3
              poll_interval: 1s
              listing_max_interval: 1s
              task_poll_interval: 1s
              backoff: [1h]
            sources:
              - storage: pbs-a
                target_storage: local-lvm
                include: ["100-199"]
              - storage: pbs-b
                target_storage: local-lvm
                include: ["200-299"]
            guests:
              "103": { target_storage: tiny }
            """)
        port = Int.random(in: 40001...45000)
        base = "http://127.0.0.1:\(port)"
        log = sim.dir.appendingPathComponent("service-\(port).log")
        try #require(FileManager.default.createFile(atPath: log.path, contents: nil))
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config.file", config, "--web.listen-address", "127.0.0.1:\(port)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
    }

    struct Status {
        var service: [String: Any]
        var sources: [[String: Any]]
        var guests: [[String: Any]]
        func guest(_ vmid: Int) -> [String: Any]? { guests.first { $0["vmid"] as? Int == vmid } }
    }

    func status() -> Status? {
        guard let body = curl(base + "/api/v1/status"),
              let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return nil }
        return Status(service: o["service"] as? [String: Any] ?? [:], sources: o["sources"] as? [[String: Any]] ?? [],
                      guests: o["guests"] as? [[String: Any]] ?? [])
    }

    func metrics() -> String { curl(base + "/metrics") ?? "" }

    /// Polls the status until `condition` holds; fails the test with the service log otherwise.
    func waitFor(_ what: String, seconds: Double, _ condition: (Status) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let s = status(), condition(s) { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        let tail = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(40).joined(separator: "\n")
        Issue.record("timed out waiting for: \(what)\nservice log:\n\(tail)")
        throw CancellationError()
    }

    func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}

/// A tiny filesystem for the state file that can be filled up and freed: a 4 MiB tmpfs when this
/// process may mount (root in CI); otherwise the service's file-size limit set to 0 with
/// `prlimit` (writes then fail with EFBIG instead of ENOSPC — the same failing-write path).
final class SmallDisk {
    let path: String
    private var mounted = false

    init(at path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        mounted = Self.tool("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", path]) == 0
    }

    /// Fills the filesystem (tmpfs) or forbids the service any file growth (limit).
    func fill(pid: Int32) throws {
        if mounted {
            _ = Self.tool("/usr/bin/dd", ["if=/dev/zero", "of=\(path)/filler", "bs=64k"])  // until ENOSPC
        } else {
            let status = Self.tool("/usr/bin/prlimit", ["--pid", "\(pid)", "--fsize=0:unlimited"])
            if status != 0 { Issue.record("prlimit --fsize=0 failed with status \(status)") }
        }
    }

    func free(pid: Int32) throws {
        if mounted {
            try FileManager.default.removeItem(atPath: path + "/filler")
        } else {
            _ = Self.tool("/usr/bin/prlimit", ["--pid", "\(pid)", "--fsize=unlimited:unlimited"])
        }
    }

    func remove() {
        if mounted { _ = Self.tool("/usr/bin/umount", ["-l", path]) }
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    static func tool(_ path: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }
}
