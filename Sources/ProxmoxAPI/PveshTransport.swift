import Foundation
import Synchronization

/// The PVE API through the local `pvesh` CLI, as root on the node (reference §1.3).
///
/// `pvesh get|create|set|delete PATH --key value … --output-format json` prints only the `data`
/// part. Worker calls (restore, start) run **synchronously** under pvesh: it tees the task log to
/// stdout while the task runs and prints the UPID as the last line. Those lines are streamed to
/// `onOutput` so progress is visible during the restore.
public final class PveshTransport: ProxmoxTransport {
    /// The pvesh executable (default `/usr/bin/pvesh`; tests point it at the stand-in).
    public let executable: String
    /// Extra environment for the child (the stand-in reads its simulator URL from it).
    public let environment: [String: String]
    /// How worker calls (restore, start, stop, destroy) are started: as our child (pvesh then runs
    /// the task synchronously inside our process tree and sandbox, and a SIGTERM to us reaches it,
    /// reference §13.2), or detached in a transient systemd unit (``DetachedLauncher``).
    public let launcher: DetachedLauncher?
    /// With a detached launcher worker calls return the UPID at once, as over HTTPS.
    public var runsTasksSynchronously: Bool { launcher == nil }
    public var endpointDescription: String { "pvesh (\(executable))" }

    /// Creates a transport; fails at once when the executable does not exist.
    public init(executable: String = "/usr/bin/pvesh", environment: [String: String] = [:],
                launcher: DetachedLauncher? = nil) throws(ProxmoxError) {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw .configuration("pvesh not found at '\(executable)': the pvesh transport runs on a PVE node as root (or set proxmox.pvesh_path)")
        }
        self.executable = executable
        self.environment = environment
        self.launcher = launcher
    }

    /// Variables of ours that hold a secret: never handed to a child (pvesh runs as root@pam and
    /// needs no token; a child's environment is readable in /proc by its user and ends up in
    /// crash reports and debug output).
    public static let secretVariables: Set<String> = ["PBS_STANDBY_TOKEN", "PBS_STANDBY_SIM_TOKEN"]

    /// The child's environment: ours plus `extra`, less ``secretVariables``.
    public static func childEnvironment(inherited: [String: String], extra: [String: String]) -> [String: String] {
        var env = inherited
        for (k, v) in extra { env[k] = v }
        for name in secretVariables { env[name] = nil }
        return env
    }

    /// The argument vector of a call (no secrets: pvesh runs as root@pam).
    public static func arguments(_ method: APIMethod, _ path: String, _ parameters: [(String, String)]) -> [String] {
        var args = [method.pveshVerb, path]
        for (k, v) in parameters { args += ["--\(k)", v] }
        args += ["--output-format", "json"]
        return args
    }

    public func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
                     onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        let args = Self.arguments(method, path, parameters)
        if let launcher, let task = WorkerTask(method, path, parameters) {
            return try await launcher.launch(task, pvesh: self, arguments: args)
        }
        let result: (status: Int32, lines: [String], stderr: String)
        do {
            result = try await run(args, onLine: onOutput)
        } catch {
            throw .transient(path: path, message: "cannot run \(executable): \(error)")
        }
        return try Self.interpret(status: result.status, lines: result.lines, stderr: result.stderr, path: path)
    }

    /// pvesh's result: the last JSON line on success (or after a failed task, whose UPID is
    /// printed and whose error goes to stderr with exit 0, §13.2); a classified error otherwise.
    static func interpret(status: Int32, lines: [String], stderr: String, path: String) throws(ProxmoxError) -> JSONValue {
        let result = (status: status, lines: lines, stderr: stderr)
        let lastJSON = result.lines.last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        guard result.status == 0 else {
            let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            let status: Int
            if message.contains("Parameter verification failed") { status = 400 }
            else if message.contains("Permission check failed") { status = 403 }
            else { status = 500 }
            // pvesh's exit status after a failed task is not traced [unverified]: callers check the UPID status.
            if let lastJSON, let upid = try? JSONValue.parse(Array(lastJSON.utf8), path: path), upid.string?.hasPrefix("UPID:") == true {
                return upid
            }
            // Parameter errors: the first line, then `key: text` lines [unverified: pvesh's exact layout].
            var errors: [String: String] = [:]
            var first = message
            if status == 400 {
                let lines = message.split(separator: "\n").map(String.init)
                first = lines.first ?? message
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    errors[String(line[..<colon]).trimmingCharacters(in: .whitespaces)] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                }
            }
            throw ProxmoxError.classify(path: path, status: status, message: first.isEmpty ? "pvesh exited with \(result.status)" : first, errors: errors)
        }
        guard let lastJSON else { return .null }  // methods returning null print nothing
        return try JSONValue.parse(Array(lastJSON.utf8), path: path)
    }

    /// Runs a plain (non-worker) call and returns its result (the launcher's task-list reads).
    func plainCall(_ method: APIMethod, _ path: String, _ parameters: [(String, String)]) async throws(ProxmoxError) -> JSONValue {
        let result: (status: Int32, lines: [String], stderr: String)
        do { result = try await run(Self.arguments(method, path, parameters), onLine: nil) } catch {
            throw .transient(path: path, message: "cannot run \(executable): \(error)")
        }
        return try Self.interpret(status: result.status, lines: result.lines, stderr: result.stderr, path: path)
    }

    /// Runs pvesh, streaming stdout lines (all but the final JSON line go to `onLine`).
    private func run(_ args: [String], onLine: (@Sendable (String) -> Void)?) async throws -> (Int32, [String], String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.environment = Self.childEnvironment(inherited: ProcessInfo.processInfo.environment, extra: environment)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let box = ProcessBox(process)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<(Int32, [String], String), any Error>) in
                DispatchQueue.global().async {
                    var lines: [String] = []
                    var pending = Data()
                    let reader = out.fileHandleForReading
                    var previous: String?
                    while true {
                        let chunk = reader.availableData
                        if chunk.isEmpty { break }
                        pending.append(chunk)
                        while let nl = pending.firstIndex(of: 10) {
                            let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                            pending.removeSubrange(pending.startIndex...nl)
                            // Emit the previous line: the final line is the JSON result, not log.
                            if let p = previous { onLine?(p) }
                            previous = line
                            lines.append(line)
                        }
                    }
                    if !pending.isEmpty { let l = String(decoding: pending, as: UTF8.self); if let p = previous { onLine?(p) }; lines.append(l) }
                    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    process.waitUntilExit()
                    cont.resume(returning: (process.terminationStatus, lines, stderr))
                }
            }
        } onCancel: {
            box.terminate()
        }
    }
}

/// Lets the cancellation handler stop the child.
private final class ProcessBox: @unchecked Sendable {
    let process: Process
    init(_ p: Process) { process = p }
    func terminate() { if process.isRunning { process.terminate() } }
}
