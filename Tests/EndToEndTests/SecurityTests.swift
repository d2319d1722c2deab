import Foundation
import Testing

@Suite("Security: secrets, web auth", .serialized)
struct SecurityTests {
    /// The token comes from a file; it appears in no argv, no log line (debug level), no status
    /// JSON and no metric.
    @Test func tokenNeverLeaks() async throws {
        let sim = try SimulatorProcess(scenario: endToEndScenario)
        defer { sim.stop() }
        let config = try sim.config(statePath: sim.dir.appendingPathComponent("state.db").path)
        let secret = String(sim.token.split(separator: "=").last!)
        let port = Int.random(in: 60001...62000)
        let log = sim.dir.appendingPathComponent("log.txt")
        try #require(FileManager.default.createFile(atPath: log.path, contents: nil))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["run", "--config.file", config, "--web.listen-address", "127.0.0.1:\(port)", "--log.level", "debug", "--log.format", "json"]
        p.standardOutput = try FileHandle(forWritingTo: log)
        p.standardError = try FileHandle(forWritingTo: log)
        try p.run()
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        sim.startTicking()
        var status = ""
        for _ in 0..<100 {
            status = curl("http://127.0.0.1:\(port)/api/v1/status") ?? ""
            if status.contains("\"result\":\"success\"") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        await sim.stopTicking()
        #expect(status.contains("\"result\":\"success\""))
        let cmdline = try String(contentsOfFile: "/proc/\(p.processIdentifier)/cmdline", encoding: .utf8)
        let metrics = curl("http://127.0.0.1:\(port)/metrics") ?? ""
        let page = curl("http://127.0.0.1:\(port)/") ?? ""
        p.terminate()
        p.waitUntilExit()
        let logText = try String(contentsOf: log, encoding: .utf8)
        #expect(logText.contains("restore succeeded"), "the log was captured")
        for (name, text) in [("argv", cmdline), ("log", logText), ("status", status), ("metrics", metrics), ("page", page)] {
            #expect(!text.contains(secret), "the token secret appears in \(name)")
        }
        // Every log line is JSON with the shared keys.
        for line in logText.split(separator: "\n") where line.hasPrefix("{") {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "not JSON: \(line)")
        }
    }

    /// Basic auth from the web config protects every endpoint; there is no mutating endpoint.
    @Test func webConfigBasicAuthAndNoMutatingEndpoints() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("web-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "basic_auth_users:\n  prometheus: $2b$05$SlRN1JIKHdSrTucB0oEHhuw2cjULdE7ALkcJww7NeayVfXOmmZXP2\n"
            .write(to: dir.appendingPathComponent("web.yml"), atomically: true, encoding: .utf8)
        let demo = try DemoProcess(extra: ["--web.config.file", dir.appendingPathComponent("web.yml").path])
        defer { demo.stop() }
        var ok = false
        for _ in 0..<50 where !ok {
            ok = curlStatus(demo.base + "/-/healthy", user: "prometheus:s3cret") == 200
            if !ok { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(ok)
        for path in ["/metrics", "/api/v1/status", "/", "/-/ready"] {
            #expect(curlStatus(demo.base + path) == 401, "\(path) without credentials")
            #expect(curlStatus(demo.base + path, user: "prometheus:wrong") == 401, "\(path) with a wrong password")
        }
        for method in ["POST", "PUT", "DELETE"] {
            let code = curlStatus(demo.base + "/api/v1/status", user: "prometheus:s3cret", method: method)
            #expect(code == 405, "\(method) is not allowed")
        }
        // A bad web config is an error naming the key, exit code 2.
        try "basic_auth_users:\n  prometheus: plaintext\n".write(to: dir.appendingPathComponent("bad.yml"), atomically: true, encoding: .utf8)
        let (rc, _, err) = try run(["demo", "--web.config.file", dir.appendingPathComponent("bad.yml").path, "--web.listen-address", "127.0.0.1:0"])
        #expect(rc == 2 && err.contains("basic_auth_users.prometheus"), "\(err)")
    }
}

func curlStatus(_ url: String, user: String? = nil, method: String = "GET") -> Int {
    Int(runCurl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method] + (user.map { ["-u", $0] } ?? []) + [url]).output) ?? 0
}
