import Foundation
import Testing

/// A `pbs-standby simulator --tls --manual-clock` child process. The test moves its clock with
/// `/_sim/advance`, so restores progress only when the test says so. Its state lives in
/// `dir/simulator`, so ``stopProcess()`` and ``startAgain()`` stop and restart the process with its
/// guests, tasks, journal, token and certificate, as PVE keeps them over a pveproxy restart.
final class SimulatorProcess {
    private(set) var process = Process()
    var url = "", token = "", fingerprint = "", node = ""
    let dir: URL
    private var ticker: Ticker?

    init(scenario: String) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try scenario.write(to: dir.appendingPathComponent("scenario.yml"), atomically: true, encoding: .utf8)
        try launch(["--start", String(Int(Self.nextNoon())), "--web.listen-address", "127.0.0.1:0"])
    }

    /// Stops the simulator process (SIGTERM: it saves its state); connections are refused until
    /// ``startAgain()``.
    func stopProcess() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }

    /// Starts the simulator process again on the same port, resuming the saved state.
    func startAgain() throws {
        let port = try #require(url.split(separator: ":").last.map(String.init))
        let before = (url, token, fingerprint)
        try launch(["--web.listen-address", "127.0.0.1:\(port)"])
        #expect((url, token, fingerprint) == before, "the restarted simulator has the same address, token and certificate")
    }

    private func launch(_ arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["simulator", "--tls", "--manual-clock", "--scenario", dir.appendingPathComponent("scenario.yml").path,
                             "--state-dir", dir.appendingPathComponent("simulator").path] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains("node=") && Date() < deadline && process.isRunning {
            text += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        }
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "url": url = kv[1]
            case "token": token = kv[1]
            case "fingerprint": fingerprint = kv[1]
            case "node": node = kv[1]
            default: break
            }
        }
    }

    /// The restore and sources part of ``config(statePath:timeout:settings:extra:)`` by default.
    static let defaultSettings = """
        restore:
          workers: 2
          poll_interval: 2s
          # The simulator's clock runs faster than the wall clock the service lists by: backup
          # rhythms cannot be predicted across the two, so list on every pass.
          listing_max_interval: 2s
          rpo_target: 2h
        sources:
          - storage: pbs-prod
            target_storage: local-lvm
        """

    /// A config for pbs-standby against this simulator: https, pinned fingerprint, token file;
    /// `settings` replaces the restore and sources sections.
    func config(statePath: String, timeout: String = "30s", settings: String = defaultSettings, extra: String = "") throws -> String {
        let tokenFile = dir.appendingPathComponent("token")
        try (token + "\n").write(to: tokenFile, atomically: true, encoding: .utf8)
        // pbs-standby refuses a token file that group or others may read.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokenFile.path)
        let path = dir.appendingPathComponent("config-\(UUID().uuidString).yml")
        try """
        proxmox:
          transport: https
          url: \(url)
          token_file: \(tokenFile.path)
          fingerprint: "\(fingerprint)"
          node: \(node)
          timeout: \(timeout)
        state:
          path: \(statePath)
        \(settings)
        \(extra)
        """.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }

    func call(_ method: String, _ path: String) -> String? { Self.call(url: url, token: token, method, path) }

    static func call(url: String, token: String, _ method: String, _ path: String) -> String? {
        let (status, body) = runCurl(["-sfk", "-X", method, "-H", "Authorization: PVEAPIToken=\(token)", url + path])
        return status == 0 ? body : nil
    }

    func advance(_ seconds: Double) { _ = call("POST", "/_sim/advance?seconds=\(seconds)") }

    /// A control call (`/_sim/faults`, `/_sim/restore-fails`, …); records a test issue when it fails.
    func post(_ path: String) {
        if call("POST", path) == nil { Issue.record("POST \(path) to the simulator failed") }
    }

    func delete(_ path: String) {
        if call("DELETE", path) == nil { Issue.record("DELETE \(path) to the simulator failed") }
    }

    /// The next 12:00 UTC. Simulated time starts there, so the scenario's daily backups (01:00 to
    /// 03:00) are half a day away whatever the hour a test runs: a run near midnight once saw the
    /// next daily backup appear mid-test. Ahead of the service's own clock, as ticking makes it anyway.
    static func nextNoon(after now: Double = Date().timeIntervalSince1970) -> Double {
        let noon = (now / 86_400).rounded(.down) * 86_400 + 43_200
        return noon >= now ? noon : noon + 86_400
    }

    /// Lets simulated time run: `step` simulated seconds every 20 ms of real time (250x by default:
    /// a loaded machine must not race simulated time past the next backups mid-test). The ticks come
    /// from a dedicated thread: tests block cooperative threads while a CLI command runs, and a
    /// ticker on the cooperative pool could then starve while the command waits for time to pass.
    func startTicking(step: Double = 5) {
        let ticker = Ticker(url: url, token: token, step: step)
        ticker.start()
        self.ticker = ticker
    }

    func stopTicking() async {
        ticker?.stop()
        ticker = nil
    }

    struct Entry: Decodable {
        var method: String
        var path: String
        var vmid: Int?
        var parameters: [String: String]
        var status: Int
        /// The backup a restore POST restores (`archive` for VMs, `ostemplate` for containers).
        var archive: String { parameters["archive"] ?? parameters["ostemplate"] ?? "" }
    }

    func journal() -> [Entry] {
        guard let body = call("GET", "/_sim/journal") else { return [] }
        return (try? JSONDecoder().decode([Entry].self, from: Data(body.utf8))) ?? []
    }

    /// Restore POSTs (qemu/lxc creates), optionally for one target VMID.
    func restorePosts(vmid: Int? = nil) -> [Entry] {
        journal().filter { $0.method == "POST" && ($0.path.hasSuffix("/qemu") || $0.path.hasSuffix("/lxc")) && (vmid == nil || $0.vmid == vmid) }
    }

    func stop() {
        ticker?.stop()
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: dir)
    }

    deinit { stop() }
}

/// The ≥ 10-guest scenario of issue 4: a foreign, a running and a locked guest, an in-progress
/// backup, a guest whose restores fail, daily and hourly guests.
let endToEndScenario = """
node: pve-standby
restore_mib_per_s: 300
pbs_storages: [{id: pbs-prod, datastore: store1}]
target_storages: [{id: local-lvm, total_gib: 4000}]
backups:
  - {vmid: 101, type: vm, name: web1, disks_gib: [8], interval: 1h, offset: 5m}
  - {vmid: 102, type: vm, name: web2, disks_gib: [8], interval: 1h, offset: 10m}
  - {vmid: 103, type: vm, name: db, disks_gib: [4, 16], interval: 1d, offset: 1h}
  - {vmid: 104, type: vm, name: foreign, disks_gib: [2], interval: 1h}
  - {vmid: 105, type: vm, name: running, disks_gib: [2], interval: 1h}
  - {vmid: 106, type: vm, name: locked, disks_gib: [2], interval: 1h}
  - {vmid: 107, type: vm, name: broken, disks_gib: [2], interval: 1h, restore_fails: true}
  - {vmid: 108, type: vm, name: big, disks_gib: [100], interval: 1d, offset: 2h}
  - {vmid: 201, type: ct, name: dns, disks_gib: [2], interval: 1h, offset: 15m}
  - {vmid: 202, type: ct, name: proxy, disks_gib: [2], interval: 1d, offset: 3h}
  - {vmid: 203, type: ct, name: git, disks_gib: [4], interval: 1h, offset: 20m}
guests:
  - {vmid: 104, type: vm, name: handmade, status: stopped, tags: [manual]}
  - {vmid: 105, type: vm, name: running, status: running, tags: [pbs-standby]}
  - {vmid: 106, type: vm, name: locked, lock: backup, tags: [pbs-standby]}
"""

/// Advances a simulator's manual clock from its own thread until stopped.
final class Ticker: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)
    let url: String, token: String, step: Double

    init(url: String, token: String, step: Double) {
        self.url = url
        self.token = token
        self.step = step
    }

    func start() {
        let thread = Thread { [self] in
            while !isStopped {
                _ = SimulatorProcess.call(url: url, token: token, "POST", "/_sim/advance?seconds=\(step)")
                usleep(20_000)
            }
            done.signal()
        }
        thread.start()
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    func stop() {
        lock.lock()
        let already = stopped
        stopped = true
        lock.unlock()
        if !already { done.wait() }
    }
}

/// `pbs-standby run` with `config`, its endpoint on 127.0.0.1:`port`; stderr to `log` when given.
func serviceProcess(config: String, port: Int, log: String? = nil, environment: [String: String]? = nil) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["run", "--config.file", config, "--web.listen-address", "127.0.0.1:\(port)"]
    if let environment { p.environment = environment }
    p.standardOutput = FileHandle.nullDevice
    if let log {
        FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
    } else {
        p.standardError = FileHandle.nullDevice
    }
    try p.run()
    return p
}
