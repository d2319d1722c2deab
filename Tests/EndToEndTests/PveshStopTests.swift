import Foundation
import Testing

/// Issue 13 item 2: a stop of the service never interrupts a running pvesh restore. Under pvesh
/// the worker is pvesh's own child (reference §13.2) and pvesh forwards SIGTERM to it; stopping a
/// systemd unit signals its whole cgroup. Here the "stop" is a SIGTERM to `pbs-standby once` and
/// every process it started: with `pvesh_detach: false` the restore
/// dies with it (what the old unit did), with the default the restore runs on in its transient
/// unit (here: the systemd-run stand-in, its own session) and the next start records it.
@Suite("pvesh restores and a stop of the service")
struct PveshStopTests {
    static let scenario = """
        node: pve-standby
        restore_mib_per_s: 50
        pbs_storages: [{id: pbs-prod, datastore: store1}]
        target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}]
        backups:
          - {vmid: 101, type: vm, name: web1, disks_gib: [60], interval: 1d, history: 1}
        """

    static func config(_ sim: SimulatorProcess, detach: Bool) throws -> String {
        let path = sim.dir.appendingPathComponent("pvesh-\(detach).yml")
        try """
        proxmox:
          transport: pvesh
          pvesh_path: \(packageRoot.appendingPathComponent("scripts/pvesh-standin").path)
          systemd_run_path: \(packageRoot.appendingPathComponent("scripts/systemd-run-standin").path)
          pvesh_detach: \(detach)
          node: pve-standby
        state:
          path: \(sim.dir.appendingPathComponent("state-\(detach)/state.db").path)
        restore:
          task_poll_interval: 1s
        sources:
          - storage: pbs-prod
            target_storage: local-lvm
        """.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }

    /// A process and all its descendants (what a unit's cgroup holds; a process started through
    /// systemd-run is in another unit, and here no descendant either: its parent has exited).
    static func tree(_ root: Int32) -> [Int32] {
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/ps")
        ps.arguments = ["-e", "-o", "pid=,ppid="]
        let out = Pipe()
        ps.standardOutput = out
        guard (try? ps.run()) != nil else { return [root] }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ps.waitUntilExit()
        let pairs = text.split(separator: "\n").compactMap { line -> (Int32, Int32)? in
            let f = line.split(separator: " ").compactMap { Int32($0) }
            return f.count == 2 ? (f[0], f[1]) : nil
        }
        var found = [root], i = 0
        while i < found.count {
            found += pairs.filter { $0.1 == found[i] }.map(\.0)
            i += 1
        }
        return found
    }

    static func taskStatus(_ sim: SimulatorProcess) -> String? {
        guard let body = sim.call("GET", "/api2/json/nodes/pve-standby/tasks?vmid=101&typefilter=qmrestore&source=all"),
              let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              let list = o["data"] as? [[String: Any]], let first = list.first else { return nil }
        return first["status"] as? String
    }

    @Test(arguments: [false, true])
    func pveshRestoreSurvivesAServiceStop(detach: Bool) async throws {
        let sim = try SimulatorProcess(scenario: Self.scenario)
        defer { sim.stop() }
        let config = try Self.config(sim, detach: detach)
        let env = ["PVESH_STANDIN_URL": sim.url, "PVESH_STANDIN_TOKEN": sim.token]
        // Simulated time stands still until the service is stopped: the restore task runs (it
        // needs no ticks to start) and cannot end before the stop however slow a loaded machine
        // makes the pvesh stand-in chain; ticking resumes after the stop so a detached task ends.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["once", "--config.file", config]
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        p.standardOutput = FileHandle.nullDevice
        let log = NSTemporaryDirectory() + "pvesh-stop-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try p.run()
        // The stop comes while the restore runs and, detached, after the service recorded its task
        // (a stop before the UPID is recorded is another case: re-attach then searches the task
        // list). A pvesh child's UPID is known only when pvesh returns, at the task's end.
        for _ in 0..<1200 {
            let recorded = (try? String(contentsOfFile: log, encoding: .utf8))?.contains("restore task started") ?? false
            if Self.taskStatus(sim) == "RUNNING" && (recorded || !detach) { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(Self.taskStatus(sim) == "RUNNING", "the restore runs")
        try await Task.sleep(for: .milliseconds(300))
        // The service stops: systemd signals every process of its cgroup, i.e. `once` and all it started.
        for pid in Self.tree(p.processIdentifier) { kill(pid, SIGTERM) }
        p.waitUntilExit()
        sim.startTicking()
        for _ in 0..<2400 {
            if Self.taskStatus(sim) != "RUNNING" { break }
            try await Task.sleep(for: .milliseconds(25))
        }
        if !detach {
            #expect(Self.taskStatus(sim) == "interrupted by signal", "as the service's child the restore dies with it")
            await sim.stopTicking()
            return
        }
        #expect(Self.taskStatus(sim) == "OK", "detached, the restore ran to its end")
        let (rc, out, err) = try run(["once", "--config.file", config], env: env)
        await sim.stopTicking()
        #expect(rc == 0, "\(out)\(err)")
        #expect(sim.restorePosts(vmid: 101).count == 1, "re-attached and recorded, not restored again")
        #expect(out.contains("pbs-prod/101\tidle"), "\(out)")
    }
}
