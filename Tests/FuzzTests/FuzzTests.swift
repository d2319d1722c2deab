import Foundation
import MicroHTTP
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import ConfigSupport
import Testing

/// Seeded random-input harness, reproducible from the seed. It covers what the libFuzzer harnesses
/// (`Fuzz/*.swift`, `scripts/fuzz.sh`: coverage-guided, PVE parsers and the config file) do not:
/// the scenario and web-config parsers and the HTTP server (libmicrohttpd). Inputs are
/// mutations of valid samples: byte flips, truncations, insertions of interesting tokens.
/// The property is always "an error or a value, never a crash"; counts are in the README.
/// `FUZZ_ITERATIONS` raises the count for long runs.
let iterations = Int(ProcessInfo.processInfo.environment["FUZZ_ITERATIONS"] ?? "") ?? 3000

struct Mutator {
    var generator: SplitMix64
    init(state: UInt64) { generator = SplitMix64(state: state) }
    mutating func next() -> UInt64 { generator.next() }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    static let tokens: [[UInt8]] = ["\"", "{", "}", "[", "]", ":", ",", "\n", "- ", ": ", "null", "1e999", "-1", "999999999999999999999",
                                   "\u{0}", "\\u0000", "%", "&", "=", "UPID:", "progress ", "%(", "\t", "'", "!!binary", "*a", "&a", "---"].map { Array($0.utf8) }
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0...int(4) {
            switch int(5) {
            case 0 where !b.isEmpty: b[int(b.count)] = UInt8(truncatingIfNeeded: next())
            case 1 where !b.isEmpty: b.removeSubrange(int(b.count)..<b.count)
            case 2: b.insert(contentsOf: Self.tokens[int(Self.tokens.count)], at: int(b.count + 1))
            case 3 where b.count > 1: let i = int(b.count); b.remove(at: i)
            default: b.insert(contentsOf: b.prefix(int(64)), at: int(b.count + 1))
            }
        }
        return b
    }
}

@Suite("Fuzzing (seeded)")
struct FuzzTests {
    @Test func configParser() {
        let sample = Array("""
        proxmox: {transport: https, url: "https://127.0.0.1:8006", node: n, timeout: 30s}
        restore: {workers: 2, poll_interval: 30s, rpo_target: 2h, backoff: [5m, 10m]}
        sources:
          - {storage: pbs, include: ["100-199", "4*", 300], exclude: [150], vmid_offset: 0}
        guests: {"101": {priority: 5}}
        """.utf8)
        var m = Mutator(state: 1)
        var ok = 0, rejected = 0
        for _ in 0..<iterations {
            let text = String(decoding: m.mutate(sample), as: UTF8.self)
            do { _ = try StandbyConfig.parse(yaml: text); ok += 1 } catch { rejected += 1; #expect(!error.description.isEmpty) }
        }
        #expect(ok + rejected == iterations)
    }

    @Test func scenarioAndWebConfigParsers() {
        let scenario = Array("pbs_storages: [{id: p}]\nbackups:\n  - {vmid: 1, disks_gib: [2], interval: 1h}\nfaults: [{status: 503, times: 1}]\n".utf8)
        let web = Array("basic_auth_users: {a: $2b$05$SlRN1JIKHdSrTucB0oEHhuw2cjULdE7ALkcJww7NeayVfXOmmZXP2}\nhttp_server_config: {headers: {X: y}}\n".utf8)
        var m = Mutator(state: 2)
        for _ in 0..<iterations {
            _ = try? Scenario.parse(yaml: String(decoding: m.mutate(scenario), as: UTF8.self))
            _ = try? WebConfig.parse(yaml: String(decoding: m.mutate(web), as: UTF8.self))
        }
    }

    @Test func pveJSONDecoders() async {
        let samples = [
            #"{"data":[{"volid":"pbs:backup/vm/100/2024-01-01T00:00:00Z","vmid":100,"ctime":1704067200,"size":34359739904,"verification":{"state":"ok"},"protected":1}]}"#,
            #"{"data":[{"id":"qemu/100","vmid":100,"type":"qemu","node":"n","status":"stopped","tags":"a;b","lock":"backup","template":0}]}"#,
            #"{"data":{"upid":"UPID:n:0002A3F1:01B7C2D4:6592E100:qmrestore:100:root@pam:","status":"stopped","exitstatus":"OK"}}"#,
            #"{"data":[{"n":1,"t":"progress 1% (read 4194304 bytes, zeroes = 0% (0 bytes), duration 0 sec)"}],"total":1}"#,
        ].map { Array($0.utf8) }
        var m = Mutator(state: 3)
        let upid = UPID(parsing: "UPID:n:0002A3F1:01B7C2D4:6592E100:qmrestore:100:root@pam:")!
        for i in 0..<iterations {
            let body = String(decoding: m.mutate(samples[i % samples.count]), as: UTF8.self)
            let client = ProxmoxClient(transport: CannedTransport(body: body))
            _ = try? await client.backups(node: "n", storage: "pbs")
            _ = try? await client.guests()
            _ = try? await client.taskStatus(upid)
            _ = try? await client.taskLog(upid)
        }
    }

    @Test func upidVolidAndTaskLogParsers() {
        let samples = ["UPID:pve-standby:0002A3F1:01B7C2D4:6592E100:qmrestore:100:svc@pve!restore:",
                       "pbs-prod:backup/ct/200/2024-01-02T00:00:00Z",
                       "progress 42% (read 41943040 bytes, zeroes = 30% (12582912 bytes), duration 3 sec)",
                       "restore image complete (bytes=34359738368, duration=95.41s, speed=343.45MB/s)"].map { Array($0.utf8) }
        var m = Mutator(state: 4)
        var tracker = RestoreProgress(diskSizes: [1, 2, 3])
        for i in 0..<(iterations * 5) {
            let text = String(decoding: m.mutate(samples[i % samples.count]), as: UTF8.self)
            if let u = UPID(parsing: text) { #expect(UPID(parsing: u.description) == u, "round trip of \(text)") }
            if let v = Volid(parsing: text) { #expect(Volid(parsing: v.description) == v, "round trip of \(text)") }
            _ = RestoreProgress.parseProgress(text)
            _ = RestoreProgress.parseComplete(text)
            tracker.consume(text)
            #expect((0...1).contains(tracker.ratio))
            _ = formDecode(text)
            _ = Marker.volid(inDescription: text)
        }
    }

    /// Random and mutated requests against the real server on loopback: 4xx or a close, never a crash.
    @Test func httpServer() throws {
        var router = Router()
        router.get("/metrics") { _ in .text("ok\n") }
        router.post("/echo") { req in HTTPResponse(contentType: "application/octet-stream", bytes: req.body) }
        router.get("/api/v1/guests/{vmid}") { req in .text(req.pathParameters["vmid"] ?? "") }
        var config = HTTPServerConfiguration(address: .init(host: "127.0.0.1", port: 0))
        config.idleTimeoutSeconds = 1
        let server = HTTPServer(configuration: config, router: router)
        try server.start()
        defer { server.stop() }
        let samples = ["GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
                       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                       "GET /api/v1/guests/101?x=%41 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\n\r\n",
                       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"].map { Array($0.utf8) }
        var m = Mutator(state: 5)
        let count = max(200, iterations / 10)
        for i in 0..<count {
            let payload = m.mutate(samples[i % samples.count])
            guard let fd = connectLoopback(server.port) else { Issue.record("connect failed at \(i)"); return }
            _ = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            shutdown(fd, Int32(SHUT_WR))
            var buf = [UInt8](repeating: 0, count: 4096)
            var tv = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let n = recv(fd, &buf, buf.count, 0)
            if n > 12, let status = Int(String(decoding: buf[9..<12], as: UTF8.self)) {
                #expect((200..<600).contains(status))
            }
            close(fd)
        }
        // Still alive and correct.
        guard let fd = connectLoopback(server.port) else { Issue.record("server gone"); return }
        defer { close(fd) }
        let req = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = recv(fd, &buf, buf.count, 0)
        #expect(n > 0 && String(decoding: buf[0..<max(n, 0)], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
    }
}

struct CannedTransport: ProxmoxTransport {
    let body: String
    var runsTasksSynchronously: Bool { false }
    var endpointDescription: String { "canned" }
    func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
              onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        try JSONValue.parse(Array(body.utf8), path: path)["data"] ?? .null
    }
}

func connectLoopback(_ port: UInt16) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr)
    let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 { close(fd); return nil }
    return fd
}

/// Crashes the fuzzer found, kept as regression tests.
@Suite("Fuzz regressions")
struct FuzzRegressions {
    /// `disks_gib: [1e999]` and friends trapped converting Double to Int64.
    @Test func hugeSizesAreErrorsNotTraps() {
        for yaml in ["backups: [{vmid: 1, disks_gib: [999999999999999999999]}]\n", "backups: [{vmid: 1, disks_gib: [1e999]}]\n",
                     "target_storages: [{id: t, total_gib: 1e300}]\n", "restore_mib_per_s: 1e999\n", "task_failure_probability: 7\n"] {
            #expect(throws: ConfigError.self) { _ = try Scenario.parse(yaml: yaml) }
        }
    }

    @Test func hugeDurationsAreErrorsNotTraps() {
        for text in ["999999999999999999999s", "1e300", "9223372036854775807d", "99999999999999999h30m"] {
            #expect(parseDuration(text) == nil, "\(text)")
        }
        #expect(parseDuration("1h30m") == .seconds(5400))
        #expect(parseDuration("500ms") == .milliseconds(500))
    }
}
