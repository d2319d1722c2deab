import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// Issue 13 item 2: pvesh runs the worker as its own child (reference §13.2). The stand-in
/// behaves like real pvesh — exit 0 after a failed task with the error on stderr, SIGTERM
/// forwarded to the running task — and the detached launcher starts worker calls outside the
/// caller's process group, so a stop of the service does not reach them.
@Suite("pvesh process semantics and detached worker calls")
struct PveshSemanticsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let standin = repo.appendingPathComponent("scripts/pvesh-standin").path
    static let systemdRun = repo.appendingPathComponent("scripts/systemd-run-standin").path

    final class Sim: @unchecked Sendable {
        let simulator: PVESimulator
        let server: SimulatorServer
        let env: [String: String]
        init(speed: Double = 20) throws {
            simulator = PVESimulator(scenario: Harness.scenario(), clock: AcceleratedClock(epoch: Harness.start, speed: speed))
            server = try SimulatorServer(simulator: simulator, address: .init(host: "127.0.0.1", port: 0), tls: false)
            let url = try server.start()
            env = ["PVESH_STANDIN_URL": url, "PVESH_STANDIN_TOKEN": simulator.token.fullText]
        }
        deinit { server.stop() }
        func latest(_ vmid: Int) async throws -> Volid {
            try await ProxmoxClient(transport: InProcessTransport(simulator: simulator))
                .backups(node: "pve-standby", storage: "pbs-prod", vmid: vmid).filter(\.isComplete).last!.volid
        }
        func standin(_ args: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: PveshSemanticsTests.standin)
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
            p.standardOutput = Pipe()
            p.standardError = Pipe()
            try p.run()
            return p
        }
        func task(_ vmid: Int) -> [UPID] { simulator.tasksFor(vmid: vmid).filter { $0.type == "qmrestore" } }
    }

    @Test func failedTaskExitsZeroWithTheErrorOnStderr() async throws {
        let sim = try Sim(speed: 200)
        sim.simulator.setRestoreFails(101, true)
        let p = try sim.standin(["create", "/nodes/pve-standby/qemu", "--vmid", "101", "--archive", try await sim.latest(101).description,
                                 "--storage", "local-lvm", "--output-format", "json"])
        p.waitUntilExit()
        let out = String(decoding: (p.standardOutput as! Pipe).fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: (p.standardError as! Pipe).fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "pvesh exits 0 after a failed task (§13.2)")
        #expect(err.contains("failed: exit code 255"), "the task's error on stderr: \(err)")
        #expect(out.split(separator: "\n").last?.contains("UPID:") == true)
    }

    @Test func sigtermIsForwardedToTheRunningTask() async throws {
        let sim = try Sim(speed: 1)
        let p = try sim.standin(["create", "/nodes/pve-standby/qemu", "--vmid", "101", "--archive", try await sim.latest(101).description,
                                 "--storage", "local-lvm", "--output-format", "json"])
        for _ in 0..<100 {
            if !sim.task(101).isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(200))
        p.terminate()  // SIGTERM, as a service stop sends it
        p.waitUntilExit()
        let upid = try #require(sim.task(101).first)
        let client = ProxmoxClient(transport: InProcessTransport(simulator: sim.simulator))
        let status = try await client.taskStatus(upid)
        let log = try await client.taskLog(upid)
        #expect(!status.running && status.exitStatus == "interrupted by signal", "\(status) \(log)")
    }

    /// The detached launcher returns the UPID while the task runs (pvesh is no child of ours) and
    /// finds synchronous refusals in pvesh's output.
    @Test func detachedWorkerCallsReturnTheUPIDAndReportRefusals() async throws {
        let sim = try Sim(speed: 1)
        let dir = NSTemporaryDirectory() + "pbs-standby-detached-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let transport = try PveshTransport(executable: Self.standin, environment: sim.env,
                                           launcher: try DetachedLauncher(systemdRun: Self.systemdRun, outputDirectory: dir))
        #expect(!transport.runsTasksSynchronously)
        let client = ProxmoxClient(transport: transport)
        var request = ProxmoxClient.RestoreRequest(node: "pve-standby", vmid: 101, archive: try await sim.latest(101), storage: "local-lvm")
        request.tags = ["pbs-standby"]
        let upid = try await client.restore(request)
        let first = try await client.taskStatus(upid)
        let firstLog = try await client.taskLog(upid)
        #expect(first.running, "returned while the task runs: \(first) \(firstLog)")
        // Outliving a stop of the caller's cgroup is shown end to end (EndToEndTests,
        // `pveshRestoreSurvivesAServiceStop`): a signal to this test process's group would hit
        // the other suites' children.
        var status = first
        for _ in 0..<600 {
            if !status.running { break }
            try await Task.sleep(for: .milliseconds(50))
            status = try await client.taskStatus(upid)
        }
        #expect(status.exitStatus == "OK", "\(status)")
        // A synchronous refusal is reported as such (the VMID exists, no force).
        let refused = ProxmoxClient.RestoreRequest(node: "pve-standby", vmid: 150, archive: try await sim.latest(150), storage: "local-lvm")
        await #expect(throws: ProxmoxError.refused(path: "/nodes/pve-standby/tasks", reason: .exists,
                                                   message: "unable to restore VM 150 - VM 150 already exists on node 'pve-standby'")) {
            _ = try await client.restore(refused)
        }
    }
}
