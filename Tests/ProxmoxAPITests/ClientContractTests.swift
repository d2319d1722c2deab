import Foundation
import MicroHTTP
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// One client suite, three transports: (a) in-process simulator, (b) the simulator over HTTPS
/// through the real HTTPS transport with a pinned fingerprint, (c) the pvesh stand-in script.
enum TransportKind: String, CaseIterable, CustomTestStringConvertible {
    case inProcess, https, pvesh
    var testDescription: String { rawValue }
}

/// A simulator plus a client to it. Time moves by `advance` (manual clock) or by itself (pvesh:
/// an accelerated clock, because pvesh blocks until the task ends, reference §1.3).
final class Harness: @unchecked Sendable {
    let simulator: PVESimulator
    let client: ProxmoxClient
    let server: SimulatorServer?
    let manual: ManualClock?
    let node: String

    init(_ kind: TransportKind, scenario: Scenario = Harness.scenario()) throws {
        node = scenario.node
        switch kind {
        case .inProcess:
            let clock = ManualClock(start: Harness.start)
            manual = clock
            simulator = PVESimulator(scenario: scenario, clock: clock)
            server = nil
            client = ProxmoxClient(transport: InProcessTransport(simulator: simulator))
        case .https:
            let clock = ManualClock(start: Harness.start)
            manual = clock
            simulator = PVESimulator(scenario: scenario, clock: clock)
            let s = try SimulatorServer(simulator: simulator, address: .init(host: "127.0.0.1", port: 0), tls: true)
            let url = try s.start()
            server = s
            client = ProxmoxClient(transport: try HTTPSTransport(url: url, token: simulator.token, verification: .fingerprint(s.fingerprint!)))
        case .pvesh:
            manual = nil
            simulator = PVESimulator(scenario: scenario, clock: AcceleratedClock(epoch: Harness.start, speed: 200))
            let s = try SimulatorServer(simulator: simulator, address: .init(host: "127.0.0.1", port: 0), tls: false)
            let url = try s.start()
            server = s
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/pvesh-standin").path
            client = ProxmoxClient(transport: try PveshTransport(
                executable: script, environment: ["PVESH_STANDIN_URL": url, "PVESH_STANDIN_TOKEN": simulator.token.fullText]))
        }
    }

    deinit { server?.stop() }

    /// Lets simulated time pass (no-op for the accelerated clock, whose tasks end by themselves).
    func advance(_ seconds: Double) { manual?.advance(by: seconds) }

    /// Waits until a task has stopped (manual clock: advance; accelerated: poll).
    func finish(_ upid: UPID) async throws -> TaskStatus {
        for _ in 0..<400 {
            let st = try await client.taskStatus(upid)
            if !st.running { return st }
            if manual != nil { advance(30) } else { try await Task.sleep(for: .milliseconds(20)) }
        }
        Issue.record("task \(upid) did not finish")
        return try await client.taskStatus(upid)
    }

    static let start = 1_795_000_000.0
    static let gib: Int64 = 1 << 30

    /// 101: VM hourly, 2 disks; 102: VM whose backup is in progress at start; 201: CT;
    /// on the node: 150 foreign running VM, 151 locked VM, 250 running CT.
    static func scenario() -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1")]
        s.targetStorages = [.init(id: "local-lvm", total: 2 << 40), .init(id: "local", type: "dir", total: 500 << 30)]
        // A backup of 102 started 10 s before the start; 20 GiB at 500 MiB/s takes 41 s.
        let inProgressOffset = (start - 10).truncatingRemainder(dividingBy: 3600)
        s.backedUp = [
            .init(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [2 * gib, 4 * gib], interval: 3600, offset: 0, tags: ["prod"], notes: "nightly"),
            .init(vmid: 102, type: .vm, name: "db1", storage: "pbs-prod", disks: [20 * gib], interval: 3600, offset: inProgressOffset),
            .init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * gib], interval: 3600, offset: 600, verification: nil),
            .init(vmid: 150, type: .vm, name: "foreign", storage: "pbs-prod", disks: [2 * gib], interval: 3600, offset: 900),
            .init(vmid: 151, type: .vm, name: "locked", storage: "pbs-prod", disks: [2 * gib], interval: 3600, offset: 900),
            .init(vmid: 250, type: .ct, name: "ctrunning", storage: "pbs-prod", disks: [2 * gib], interval: 3600, offset: 900),
        ]
        s.existing = [
            .init(vmid: 150, type: .vm, name: "foreign", status: "running", tags: ["manual"]),
            .init(vmid: 151, type: .vm, name: "locked", status: "stopped", lock: "backup"),
            .init(vmid: 250, type: .ct, name: "ctrunning", status: "running"),
        ]
        return s
    }
}

@Suite("ProxmoxClient contract over every transport")
struct ClientContractTests {
    @Test(arguments: TransportKind.allCases)
    func nodesAndStorages(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let nodes = try await h.client.nodes()
        #expect(nodes.map(\.node) == ["pve-standby"])
        let storages = try await h.client.storages(node: h.node)
        #expect(Set(storages.map(\.storage)) == ["pbs-prod", "local-lvm", "local"])
        #expect(storages.first { $0.storage == "pbs-prod" }?.type == "pbs")
        let status = try await h.client.storageStatus(node: h.node, storage: "local-lvm")
        #expect(status.total == 2 << 40)
        #expect((status.avail ?? 0) > 0)
    }

    /// Reference §2: volid format, sort by lower-cased volid, in-progress snapshots with size 1.
    @Test(arguments: TransportKind.allCases)
    func backupListing(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let all = try await h.client.backups(node: h.node, storage: "pbs-prod")
        #expect(all.map { $0.volid.description.lowercased() } == all.map { $0.volid.description.lowercased() }.sorted())
        let web = all.filter { $0.volid.vmid == 101 }
        #expect(web.count == 2)
        #expect(web.allSatisfy { $0.isComplete && $0.volid.type == .vm && $0.verification == "ok" && $0.notes == "nightly" })
        #expect(web.allSatisfy { $0.ctime == $0.volid.backupTime })
        if kind != .pvesh {  // the accelerated clock may already have finished the backup
            let db = all.filter { $0.volid.vmid == 102 }
            #expect(db.contains { !$0.isComplete && $0.size == 1 }, "the running backup is listed with size 1")
        }
        let ct = all.filter { $0.volid.vmid == 201 }
        #expect(ct.allSatisfy { $0.volid.type == .ct && $0.verification == nil })
        let only = try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 201)
        #expect(Set(only.map(\.volid.vmid)) == [201])
    }

    @Test(arguments: TransportKind.allCases)
    func guestsAndConfig(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let guests = try await h.client.guests()
        let foreign = try #require(guests.first { $0.vmid == 150 })
        #expect(foreign.type == .vm && foreign.status == "running" && foreign.tags == ["manual"])
        #expect(guests.first { $0.vmid == 151 }?.lock == "backup")
        #expect(guests.first { $0.vmid == 250 }?.type == .ct)
        let config = try await h.client.guestConfig(node: h.node, type: .vm, vmid: 150)
        #expect(config.name == "foreign" && config.tags == ["manual"] && config.digest != nil)
        try await h.client.setGuestConfig(node: h.node, type: .vm, vmid: 150, tags: ["Manual", "b"], digest: config.digest)
        let after = try await h.client.guestConfig(node: h.node, type: .vm, vmid: 150)
        #expect(after.tags == ["b", "manual"], "PVE stores tags lower-cased and sorted (§5.3)")
        await #expect(throws: ProxmoxError.self) {
            try await h.client.setGuestConfig(node: h.node, type: .vm, vmid: 150, description: "x", digest: config.digest)
        }
    }

    /// Reference §3.1, §4.3, §4.4: a VM restore is a qmrestore task with pbs-restore progress lines
    /// ending TASK OK; the guest carries the tags/description passed in the call; status is
    /// `unknown` right after.
    @Test(arguments: TransportKind.allCases)
    func vmRestoreWithProgress(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let backup = try #require(try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 101).last)
        var req = ProxmoxClient.RestoreRequest(node: h.node, vmid: 101, archive: backup.volid, storage: "local-lvm")
        req.tags = ["pbs-standby"]
        req.description = "pbs-standby: restored from \(backup.volid)"
        let streamed = LineSink()
        let upid = try await h.client.restore(req, onOutput: { streamed.add($0) })
        #expect(upid.type == "qmrestore" && upid.id == "101" && upid.node == h.node)
        if kind == .pvesh { #expect(streamed.lines.contains { $0.hasPrefix("progress ") }, "pvesh streams the task log") }
        let status = try await h.finish(upid)
        #expect(status.succeeded, "\(status)")
        let log = try await h.client.taskLog(upid)
        #expect(log.last?.t == "TASK OK")
        #expect(log.map(\.n) == Array(1...log.count))
        #expect(log.contains { RestoreProgress.parseProgress($0.t) != nil })
        #expect(log.filter { RestoreProgress.parseComplete($0.t) != nil }.count == 2, "one per disk")
        var progress = RestoreProgress(diskSizes: [2 * Harness.gib, 4 * Harness.gib])
        for line in log { progress.consume(line.t) }
        #expect(progress.ratio == 1)
        let paged = try await h.client.taskLog(upid, start: 2, limit: 3)
        #expect(paged.map(\.n) == [3, 4, 5])
        let guest = try #require(try await h.client.guests().first { $0.vmid == 101 })
        #expect(guest.tags == ["pbs-standby"])
        if kind != .pvesh { #expect(guest.status == "unknown", "pvestatd has not reported yet (§5.1)") }
        let config = try await h.client.guestConfig(node: h.node, type: .vm, vmid: 101)
        #expect(config.description == "pbs-standby: restored from \(backup.volid)")
        let tasks = try await h.client.tasks(node: h.node, typeFilter: "qmrestore", vmid: 101)
        #expect(tasks.first?.upid == upid && tasks.first?.status == "OK")
    }

    /// Reference §3.1/§5.3: without override parameters a restore brings back the backup's tags.
    @Test func restoreWithoutOverrideTakesTheBackupsTags() async throws {
        let h = try Harness(.inProcess)
        let backup = try #require(try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 101).last)
        let upid = try await h.client.restore(.init(node: h.node, vmid: 101, archive: backup.volid, storage: "local-lvm"))
        _ = try await h.finish(upid)
        #expect(try await h.client.guests().first { $0.vmid == 101 }?.tags == ["prod"])
    }

    /// Reference §6: which refusals are synchronous and which end inside the task.
    @Test(arguments: TransportKind.allCases)
    func refusals(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let backups = try await h.client.backups(node: h.node, storage: "pbs-prod")
        func latest(_ vmid: Int) -> Volid { backups.filter { $0.volid.vmid == vmid && $0.isComplete }.last!.volid }
        // Locked VM: synchronous 500.
        let locked = await proxmoxError { () async throws(ProxmoxError) in _ = try await h.client.restore(.forced(node: h.node, vmid: 151, archive: latest(151), storage: "local-lvm")) }
        #expect(locked == .refused(path: "/nodes/pve-standby/qemu", reason: .locked, message: "unable to restore VM 151 - VM is locked (backup)"))
        // Running CT: synchronous 500.
        let running = await proxmoxError { () async throws(ProxmoxError) in _ = try await h.client.restore(.forced(node: h.node, vmid: 250, archive: latest(250), storage: "local-lvm")) }
        #expect(running == .refused(path: "/nodes/pve-standby/lxc", reason: .running, message: "can't overwrite running container"))
        // Existing VM without force: synchronous.
        let noForce = ProxmoxClient.RestoreRequest(node: h.node, vmid: 150, archive: latest(150), storage: "local-lvm")
        await #expect(throws: ProxmoxError.refused(path: "/nodes/pve-standby/qemu", reason: .exists,
                                                   message: "unable to restore VM 150 - VM 150 already exists on node 'pve-standby'")) {
            _ = try await h.client.restore(noForce)
        }
        // Running VM with force: inside the task.
        let upid = try await h.client.restore(.forced(node: h.node, vmid: 150, archive: latest(150), storage: "local-lvm"))
        let status = try await h.finish(upid)
        #expect(status.exitStatus == "unable to restore VM 150 - vm is running")
        #expect(try await h.client.guests().first { $0.vmid == 150 }?.status == "running", "the running VM is untouched")
    }

    @Test(arguments: TransportKind.allCases)
    func badRequestsCarryTheErrorsMap(_ kind: TransportKind) async throws {
        let h = try Harness(kind)
        let bad = await proxmoxError { () async throws(ProxmoxError) in _ = try await h.client.transport.call(.post, "/nodes/pve-standby/qemu", parameters: [("vmid", "abc"), ("archive", "x")]) }
        guard case .badRequest(_, _, let errors)? = bad else { Issue.record("got \(String(describing: bad))"); return }
        #expect(errors["vmid"]?.contains("abc") == true)
        let unknown = UPID(node: "pve-standby", pid: 1, pstart: 1, startTime: 1, type: "qmrestore", id: "1", user: "root@pam")
        await #expect(throws: ProxmoxError.badRequest(path: "/nodes/pve-standby/tasks/\(unknown.description)/status",
                                                      message: "Parameter verification failed.", errors: ["upid": "no such task"])) {
            _ = try await h.client.taskStatus(unknown)
        }
    }

    @Test func missingOrWrongTokenIs401() async throws {
        let h = try Harness(.https)
        let url = h.server!.url
        let none = ProxmoxClient(transport: try HTTPSTransport(url: url, token: nil, verification: .fingerprint(h.server!.fingerprint!)))
        await #expect(throws: ProxmoxError.auth(path: "/nodes", status: 401, message: "Unauthorized")) { _ = try await none.nodes() }
        let wrong = ProxmoxClient(transport: try HTTPSTransport(
            url: url, token: try APIToken(parsing: "pbs-standby@pve!standby=wrong"), verification: .fingerprint(h.server!.fingerprint!)))
        await #expect(throws: ProxmoxError.self) { _ = try await wrong.nodes() }
    }

    @Test func wrongFingerprintFailsAtOnceNamingThePresentedOne() async throws {
        let h = try Harness(.https)
        let wrongPin = String(repeating: "AB:", count: 31) + "AB"
        // A 60 s request timeout: failing through the pin (a configuration error) rather than the
        // timeout (a transient error) is what "at once" means here; the bound below allows for a
        // machine busy with the rest of the suite.
        let client = ProxmoxClient(transport: try HTTPSTransport(url: h.server!.url, token: h.simulator.token,
                                                                 verification: .fingerprint(wrongPin), timeout: .seconds(60)))
        let started = ContinuousClock.now
        let error = await proxmoxError { () async throws(ProxmoxError) in _ = try await client.nodes() }
        guard case .configuration(let message)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains(h.server!.fingerprint!), "names what the server presented: \(message)")
        #expect(message.contains("fingerprint mismatch"))
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func caFileVerification() async throws {
        let h = try Harness(.https)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID().uuidString).pem")
        try h.server!.certificatePEM!.write(to: dir, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = h.server!.url.replacingOccurrences(of: "127.0.0.1", with: "localhost")
        let client = ProxmoxClient(transport: try HTTPSTransport(url: url, token: h.simulator.token, verification: .caFile(dir.path)))
        #expect(try await client.nodes().count == 1)
        let system = ProxmoxClient(transport: try HTTPSTransport(url: url, token: h.simulator.token, verification: .system))
        await #expect(throws: ProxmoxError.self) { _ = try await system.nodes() }
    }

    @Test func connectionRefusedIsTransient() async throws {
        let h = try Harness(.https)
        let url = h.server!.url
        h.server!.stop()
        let client = ProxmoxClient(transport: try HTTPSTransport(url: url, token: h.simulator.token, verification: .fingerprint(h.server!.fingerprint!)))
        let error = await proxmoxError { () async throws(ProxmoxError) in _ = try await client.nodes() }
        #expect(error?.isTransient == true, "\(String(describing: error))")
    }

    /// What `simulator --state-dir` saves: a simulator resumed from it has the guests, the running
    /// task (its log and its end effect), the journal and the token of the one that stopped.
    @Test func savedStateResumesRunningTasks() async throws {
        let h = try Harness(.inProcess)
        let backup = try #require(try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 101).last)
        var req = ProxmoxClient.RestoreRequest(node: h.node, vmid: 101, archive: backup.volid, storage: "local-lvm")
        req.tags = ["pbs-standby"]
        let upid = try await h.client.restore(req)
        h.advance(2)
        let linesBefore = try await h.client.taskLog(upid).count
        #expect(try await h.client.taskStatus(upid).running)
        let data = try JSONEncoder().encode(h.simulator.saved())

        let saved = try JSONDecoder().decode(PVESimulator.Saved.self, from: data)
        let clock = ManualClock(start: saved.time)
        let resumed = try PVESimulator(scenario: Harness.scenario(), clock: clock, saved: saved)
        #expect(resumed.token.fullText == h.simulator.token.fullText && resumed.startTime == h.simulator.startTime)
        #expect(resumed.journal() == h.simulator.journal())
        let client = ProxmoxClient(transport: InProcessTransport(simulator: resumed))
        #expect(try await client.taskLog(upid).count == linesBefore, "the log so far")
        #expect(try await client.taskStatus(upid).running)
        clock.advance(by: 3600)
        #expect(try await client.taskStatus(upid).succeeded)
        #expect(try await client.guests().first { $0.vmid == 101 }?.tags == ["pbs-standby"], "the restore's effect applied after resuming")
        var other = Harness.scenario()
        other.node = "elsewhere"
        #expect(throws: SimulatorError.self) { _ = try PVESimulator(scenario: other, clock: clock, saved: saved) }
    }

    @Test func injectedFaultsAreClassified() async throws {
        let h = try Harness(.https)
        h.simulator.addFault(.init(method: "GET", path: "/cluster/resources", status: 503, message: "service busy", times: 1))
        let error = await proxmoxError { () async throws(ProxmoxError) in _ = try await h.client.guests() }
        #expect(error?.isTransient == true)
        #expect(try await h.client.guests().count == 3, "times: 1 means once")
    }

    @Test func missingPveshIsAClearError() {
        #expect(throws: ProxmoxError.configuration("pvesh not found at '/nonexistent/pvesh': the pvesh transport runs on a PVE node as root (or set proxmox.pvesh_path)")) {
            _ = try PveshTransport(executable: "/nonexistent/pvesh")
        }
    }
}

final class LineSink: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [String] = []
    func add(_ l: String) { lock.lock(); _lines.append(l); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return _lines }
}

/// Runs `body` and returns the ProxmoxError it threw (nil when it did not throw).
func proxmoxError(_ body: () async throws(ProxmoxError) -> Void) async -> ProxmoxError? {
    do { try await body(); return nil } catch { return error }
}

extension ProxmoxClient.RestoreRequest {
    /// A restore with `force=1` (the request's default is no force).
    static func forced(node: String, vmid: Int, archive: Volid, storage: String?) -> Self {
        var r = Self(node: node, vmid: vmid, archive: archive, storage: storage)
        r.force = true
        return r
    }
}

/// Issue 13 item 5: the HTTPS transport never sends a POST twice. The simulator carries out the
/// restore POST and answers only after the client's timeout (on a connection reused from a GET,
/// where a retry would be tempting): exactly one restore task exists.
@Suite("No duplicate POST")
struct NoDuplicatePostTests {
    @Test func aRestorePostWithoutAnswerIsNotSentAgain() async throws {
        let clock = ManualClock(start: Harness.start)
        let simulator = PVESimulator(scenario: Harness.scenario(), clock: clock)
        let server = try SimulatorServer(simulator: simulator, address: .init(host: "127.0.0.1", port: 0), tls: true)
        let url = try server.start()
        defer { server.stop() }
        let client = ProxmoxClient(transport: try HTTPSTransport(url: url, token: simulator.token, verification: .fingerprint(server.fingerprint!),
                                                                 timeout: .seconds(1)))
        let backup = try #require(try await client.backups(node: "pve-standby", storage: "pbs-prod", vmid: 101).filter(\.isComplete).last)
        simulator.addFault(.init(method: "POST", path: "/qemu", status: 200, delay: 2, after: true))
        await #expect(throws: ProxmoxError.self) {
            _ = try await client.restore(.init(node: "pve-standby", vmid: 101, archive: backup.volid, storage: "local-lvm"))
        }
        try await Task.sleep(for: .seconds(2.5))  // let the server finish its slow answer
        let posts = simulator.journal().filter { $0.method == "POST" && $0.path.hasSuffix("/qemu") }
        #expect(posts.count == 1, "posted \(posts.count) times")
        #expect(try await client.tasks(node: "pve-standby", typeFilter: "qmrestore", vmid: 101).count == 1)
    }
}
