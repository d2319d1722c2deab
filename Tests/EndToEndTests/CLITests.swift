import Foundation
import Testing

/// The built binary, driven as an operator would: real subprocesses, real HTTP on loopback.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let binary = packageRoot.appendingPathComponent(".build/debug/pbs-standby").path

/// Runs the CLI and collects its output. A command still running after `timeout` seconds is
/// killed and recorded as a test issue: a stuck command must fail the run, not hang CI.
func run(_ args: [String], env: [String: String] = [:], timeout: Double = 180) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let watchdog = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    watchdog.cancel()
    if p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL {
        Issue.record("pbs-standby \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s; killed")
    }
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// ``run(_:env:timeout:)`` on a thread of its own: a long command (a drill run waits for guests to
/// boot) must not hold one of the two cooperative threads the whole test process shares, or the
/// timing of tests running beside it suffers.
func runOffPool(_ args: [String], env: [String: String] = [:], timeout: Double = 180) async throws -> (Int32, String, String) {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<(Int32, String, String), any Error>) in
        Thread { c.resume(with: Result { try run(args, env: env, timeout: timeout) }) }.start()
    }
}

/// Runs curl (always with a 5 s limit); its exit status and standard output.
func runCurl(_ args: [String]) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    p.arguments = ["--max-time", "5"] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return (-1, "") }
    let d = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: d, as: UTF8.self))
}

func curl(_ url: String) -> String? {
    let (status, body) = runCurl(["-sf", url])
    return status == 0 ? body : nil
}

@Suite("pbs-standby CLI end to end", .serialized)
struct CLITests {
    @Test func versionAndHelp() throws {
        let (rc, out, _) = try run(["--version"])
        #expect(rc == 0 && out.hasPrefix("pbs-standby 0.1.0 (revision "))
        let (_, help, _) = try run(["--help"])
        for sub in ["run", "once", "demo", "simulator", "status", "failover", "hold", "resume", "check-config"] {
            #expect(help.contains("  \(sub) "), "\(sub) listed")
        }
    }

    @Test func checkConfigAcceptsTheExampleAndNamesBadKeys() throws {
        let (rc, out, err) = try run(["check-config", "--config.file", packageRoot.appendingPathComponent("deploy/config.example.yml").path])
        #expect(rc == 0, "\(err)")
        #expect(out.contains("source pbs-prod -> target storage local-lvm"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).yml")
        try "sources:\n  - storage: pbs\nrestore:\n  workers: lots\n".write(to: dir, atomically: true, encoding: .utf8)
        let (rc2, _, err2) = try run(["check-config", "--config.file", dir.path])
        #expect(rc2 == 2)
        #expect(err2.contains("restore.workers (line 4)"), "\(err2)")
        try "sources:\n  - storage: pbs\n    inclde: [1]\n".write(to: dir, atomically: true, encoding: .utf8)
        let (rc3, _, err3) = try run(["check-config", "--config.file", dir.path])
        #expect(rc3 == 2 && err3.contains("sources[0].inclde (line 3): unknown key"), "\(err3)")
        try? FileManager.default.removeItem(at: dir)
    }

    /// The README's demo: restores succeed within a minute, metrics pass promtool, Ctrl-C stops it.
    @Test func demoRestoresAndServes() async throws {
        let port = Int.random(in: 20000...30000)
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["demo", "--web.listen-address", "127.0.0.1:\(port)", "--state.path", state.appendingPathComponent("state.db").path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() }; try? FileManager.default.removeItem(at: state) }
        var succeeded = 0
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let body = curl("http://127.0.0.1:\(port)/api/v1/status") {
                succeeded = body.components(separatedBy: "\"result\":\"success\"").count - 1
                if succeeded >= 3 { break }
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(succeeded >= 3, "successful restores within a minute")
        let metrics = try #require(curl("http://127.0.0.1:\(port)/metrics"))
        #expect(metrics.contains("pbs_standby_restore_lag_seconds{"))
        let page = try #require(curl("http://127.0.0.1:\(port)/"))
        #expect(page.components(separatedBy: "<tr class=\"guest\">").count - 1 == 12)
        #expect(curl("http://127.0.0.1:\(port)/api/v1/guests/101")?.contains("\"vmid\":101") == true)
        #expect(curl("http://127.0.0.1:\(port)/api/v1/guests/999") == nil, "404 for an unknown guest")
        // 400 naming the bad VMID, quoted as JSON whatever the path holds (quote, backslash, tab).
        let (_, bad) = runCurl(["-s", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)/api/v1/guests/%22a%5Cb%09"])
        let badLines = bad.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(badLines.last == "400", "\(bad)")
        let badJSON = try JSONSerialization.jsonObject(with: Data(badLines.dropLast().joined(separator: "\n").utf8)) as? [String: Any]
        #expect(badJSON?["error"] as? String == "'\"a\\b\t' is not a VMID", "\(bad)")
        let stopAt = Date()
        p.interrupt()
        p.waitUntilExit()
        #expect(Date().timeIntervalSince(stopAt) < 3, "stops cleanly on SIGINT")
    }
}

@Suite("Debian package")
struct DebTests {
    /// Packages the built binary with scripts/build-deb.sh, unpacks it with dpkg-deb -x and runs it.
    @Test func debBuildsUnpacksAndRuns() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("deb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let (rc, log) = try tool(packageRoot.appendingPathComponent("scripts/build-deb.sh").path, ["--binary", binary, "--out", out.path])
        #expect(rc == 0, "\(log)")
        let deb = log.split(separator: "\n").last.map(String.init) ?? ""
        #expect(deb.hasSuffix("_amd64.deb"))
        let root = out.appendingPathComponent("root")
        let (xrc, xlog) = try tool("/usr/bin/dpkg-deb", ["-x", deb, root.path])
        #expect(xrc == 0, "\(xlog)")
        for file in ["usr/bin/pbs-standby", "lib/systemd/system/pbs-standby.service", "usr/share/pbs-standby/alerts/pbs-standby.rules.yml",
                     "usr/share/pbs-standby/dashboards/pbs-standby.json", "usr/share/pbs-standby/config.example.yml"] {
            #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent(file).path), "\(file) in the package")
        }
        let (vrc, version) = try tool(root.appendingPathComponent("usr/bin/pbs-standby").path, ["--version"])
        #expect(vrc == 0 && version.hasPrefix("pbs-standby 0.1.0"))
        let (_, info) = try tool("/usr/bin/dpkg-deb", ["--field", deb, "Package", "Depends"])
        #expect(info.contains("pbs-standby") && info.contains("libmicrohttpd12"))
    }

    /// The shipped example configs pass check-config; the unit file is what systemd expects.
    @Test func shippedExamplesAreValid() throws {
        let (rc, out, err) = try run(["check-config", "--config.file", packageRoot.appendingPathComponent("deploy/config.example.yml").path])
        #expect(rc == 0, "\(out)\(err)")
        let unit = try String(contentsOf: packageRoot.appendingPathComponent("deploy/pbs-standby.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/bin/pbs-standby run") && unit.contains("Restart=on-failure"))
        let web = try String(contentsOf: packageRoot.appendingPathComponent("deploy/web-config.example.yml"), encoding: .utf8)
        #expect(web.contains("basic_auth_users"))
    }
}
