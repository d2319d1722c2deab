import Foundation

/// A worker call of the PVE API: what task it starts, on which node, for which VMID.
struct WorkerTask: Sendable {
    var node: String
    var vmid: Int
    /// The task type PVE gives the worker (`qmrestore`, `vzstart`, …, reference §3, §5.4).
    var type: String

    /// The worker call a request is, or nil for a plain call.
    init?(_ method: APIMethod, _ path: String, _ parameters: [(String, String)]) {
        let parts = path.split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[0] == "nodes", let kind = GuestType(apiType: parts[2]) else { return nil }
        let prefix = kind == .vm ? "qm" : "vz"
        node = parts[1]
        switch (method, parts.count) {
        case (.post, 3):  // create = restore (archive / ostemplate + restore=1)
            guard let v = parameters.first(where: { $0.0 == "vmid" }).flatMap({ Int($0.1) }) else { return nil }
            vmid = v
            type = prefix + "restore"
        case (.post, 6) where parts[4] == "status" && ["start", "stop"].contains(parts[5]):
            guard let v = Int(parts[3]) else { return nil }
            vmid = v
            type = prefix + parts[5]
        case (.delete, 4):
            guard let v = Int(parts[3]) else { return nil }
            vmid = v
            type = prefix + "destroy"
        default:
            return nil
        }
    }
}

/// Starts pvesh worker calls in a transient systemd unit (`systemd-run`), outside the service's
/// cgroup and sandbox (issue 13, reference §13.2): under pvesh the worker is pvesh's own child,
/// so as our child it would inherit the unit's `ProtectSystem=full` (LVM cannot archive its
/// metadata on a read-only `/etc/lvm`) and `RestrictNamespaces` (unprivileged CTs need a user
/// namespace), and a service stop would SIGTERM it — a forced VM restore has freed the old disks
/// by then. Detached, the task outlives any stop or restart of the service; its UPID is found in
/// the node's task list, as for HTTPS, and followed there.
///
/// The unit runs `sh -c '"$@"; echo $? >STATUS' sh pvesh …` with stdout and stderr in files, so a
/// synchronous refusal of pvesh (exit ≠ 0, the message on stderr) is reported as such.
public struct DetachedLauncher: Sendable {
    /// The `systemd-run` executable (tests point it at a stand-in that runs the command with setsid).
    public let systemdRun: String
    /// Where each launch's stdout, stderr and exit status go (must be writable by the service and
    /// the transient unit alike: the state directory, not a private /tmp).
    public let outputDirectory: String
    /// How long a launched worker may take to appear in the node's task list.
    public let appearTimeout: Double

    public init(systemdRun: String = "/usr/bin/systemd-run", outputDirectory: String, appearTimeout: Double = 30) throws(ProxmoxError) {
        guard FileManager.default.isExecutableFile(atPath: systemdRun) else {
            throw .configuration("systemd-run not found at '\(systemdRun)': pvesh restores run in transient units (proxmox.pvesh_detach: false runs them as the service's children)")
        }
        do { try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw .configuration("cannot create '\(outputDirectory)' for the output of detached pvesh tasks: \(error)")
        }
        self.systemdRun = systemdRun
        self.outputDirectory = outputDirectory
        self.appearTimeout = appearTimeout
    }

    func launch(_ task: WorkerTask, pvesh: PveshTransport, arguments: [String]) async throws(ProxmoxError) -> JSONValue {
        let path = "/nodes/\(task.node)/tasks"
        let query: [(String, String)] = [("vmid", String(task.vmid)), ("typefilter", task.type), ("source", "all"), ("limit", "100")]
        let before = Set(try Self.upids(try await pvesh.plainCall(.get, path, query)))
        let id = UUID().uuidString.lowercased()
        let base = (outputDirectory as NSString).appendingPathComponent("task-\(id)")
        // The unit keeps writing to its (unlinked) output files and creates the status file when
        // pvesh ends: those of earlier launches are swept here.
        defer { for ext in ["out", "err", "status", "launch"] { try? FileManager.default.removeItem(atPath: "\(base).\(ext)") } }
        sweep(olderThan: 86_400)
        var args = ["--unit", "pbs-standby-task-\(id)", "--collect", "--quiet",
                    "-p", "StandardOutput=file:\(base).out", "-p", "StandardError=file:\(base).err"]
        for (k, v) in pvesh.environment.sorted(by: { $0.key < $1.key }) where !PveshTransport.secretVariables.contains(k) {
            args += ["--setenv", "\(k)=\(v)"]
        }
        args += ["--", "/bin/sh", "-c", "\"$@\"; echo $? >'\(base).status'", "sh", pvesh.executable] + arguments
        let p = Process()
        p.executableURL = URL(fileURLWithPath: systemdRun)
        p.arguments = args
        p.environment = PveshTransport.childEnvironment(inherited: ProcessInfo.processInfo.environment, extra: [:])
        // systemd-run's own messages go to a file, not a pipe: a pipe would stay open for as long
        // as anything that inherited it runs, and the launch must not wait for the task.
        let launchErr = "\(base).launch"
        _ = FileManager.default.createFile(atPath: launchErr, contents: nil, attributes: [.posixPermissions: 0o600])
        let errHandle = FileHandle(forWritingAtPath: launchErr)
        p.standardError = errHandle ?? FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw .configuration("cannot run \(systemdRun): \(error)") }
        await Self.waitForExit(p)
        try? errHandle?.close()
        let errText = (try? String(contentsOfFile: launchErr, encoding: .utf8)) ?? ""
        guard p.terminationStatus == 0 else {
            throw .server(path: path, status: 500, message: "systemd-run failed (\(p.terminationStatus)): \(errText.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let deadline = Date().timeIntervalSince1970 + appearTimeout
        while true {
            if let list = try? await pvesh.plainCall(.get, path, query), let found = (try? Self.upids(list))?.first(where: { !before.contains($0) }) {
                return .string(found)
            }
            if let status = try? String(contentsOfFile: "\(base).status", encoding: .utf8), let code = Int32(status.trimmingCharacters(in: .whitespacesAndNewlines)) {
                // pvesh ended without its task appearing: a synchronous answer (a refusal, or a
                // result without worker).
                let out = (try? String(contentsOfFile: "\(base).out", encoding: .utf8)) ?? ""
                let stderr = (try? String(contentsOfFile: "\(base).err", encoding: .utf8)) ?? ""
                return try PveshTransport.interpret(status: code, lines: out.split(separator: "\n").map(String.init), stderr: stderr, path: path)
            }
            if Date().timeIntervalSince1970 > deadline {
                throw .transient(path: path, message: "pvesh started in unit pbs-standby-task-\(id), but no \(task.type) task of VMID \(task.vmid) appeared within \(Int(appearTimeout)) s")
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Removes output files of earlier launches older than `age` seconds.
    func sweep(olderThan age: Double) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: outputDirectory)) ?? [] where name.hasPrefix("task-") {
            let path = (outputDirectory as NSString).appendingPathComponent(name)
            if let m = (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date, Date().timeIntervalSince(m) > age {
                try? fm.removeItem(atPath: path)
            }
        }
    }

    /// Waits for a process to end without blocking a cooperative thread.
    static func waitForExit(_ p: Process) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                p.waitUntilExit()
                c.resume()
            }
        }
    }

    static func upids(_ list: JSONValue) throws(ProxmoxError) -> [String] {
        (list.array ?? []).compactMap { $0["upid"]?.string }
    }
}
