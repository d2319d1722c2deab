import Foundation
import Testing

/// A `pbs-standby demo` child process on a free loopback port, stopped at the end.
final class DemoProcess {
    let port: Int
    let process = Process()
    let state: URL

    init(extra: [String] = []) throws {
        port = Int.random(in: 30001...40000)
        state = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString)")
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["demo", "--web.listen-address", "127.0.0.1:\(port)", "--state.path", state.appendingPathComponent("state.db").path] + extra
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    var base: String { "http://127.0.0.1:\(port)" }

    /// Waits until `check` holds for the status document (or the deadline passes).
    func waitFor(seconds: Double, _ check: (String) -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let body = curl(base + "/api/v1/status"), check(body) { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    func stop() {
        if process.isRunning { process.interrupt(); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: state)
    }

    deinit { stop() }
}

/// Runs a tool; returns (status, stdout+stderr).
@discardableResult
func tool(_ path: String, _ args: [String], stdin: String? = nil) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    let input = Pipe()
    if stdin != nil { p.standardInput = input }
    try p.run()
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Metric names used by the shipped alerts and dashboard.
func metricNamesUsed() throws -> Set<String> {
    var names = Set<String>()
    for file in ["alerts/pbs-standby.rules.yml", "dashboards/pbs-standby.json"] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8)
        let regex = try NSRegularExpression(pattern: "(?<![:a-z_])pbs_standby_[a-z_]+")
        for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            names.insert(String(text[Range(m.range, in: text)!]))
        }
    }
    return names
}
