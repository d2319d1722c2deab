import Foundation
import StandbyStore

#if canImport(Glibc)
import Glibc
#endif

/// Writes one disk of a delta by running `pbs-standby datastore apply` (the operator tool, the
/// same code the independent checks drive) as its own process — in a transient systemd unit when
/// `systemdRun` is set — so a stop or restart of the service never interrupts a write (issue 13
/// §2 applies to the delta writer too). Its exit status, stdout and stderr go to files named by
/// the delta's record (history id and start time) and the drive: after a restart the service
/// finds a write that ended well while it was away, waits for one still running, or runs it again
/// (the writes are idempotent). Only a status of 0 is taken from an earlier run.
struct DeltaWriter: Sendable {
    /// The `pbs-standby` executable.
    let executable: String
    /// `systemd-run` (a transient unit per disk), or nil: a child process in its own session.
    let systemdRun: String?
    /// Where the runs' files go (the state directory: writable by the service and the unit).
    let directory: String
    /// How long a launched write may take to record its pid.
    var launchTimeout: Double = 30

    /// How one disk's write ended.
    enum Result: Sendable, Equatable {
        /// Written and synced: bytes written, chunks changed, chunks of the image.
        case written(bytes: Int64, changed: Int, total: Int)
        /// The tool found bad data before writing anything of this run (exit 3 and `apply:
        /// nothing was written`: corrupt or missing chunk, index checksum).
        case dataError(String)
        /// Any other failure (the target may be partly written).
        case failed(String)
        /// The service is stopping: the write goes on in its own process and is found again at
        /// the next start.
        case detached
    }

    /// The arguments of `datastore apply` for one disk (`--from-index`: the kept index of `--from`
    /// when its snapshot was pruned from the datastore).
    static func arguments(datastore: String, namespace: String, from: String, to: String, archive: String, target: String,
                          fromIndex: String? = nil) -> [String] {
        var a = ["datastore", "apply", "--datastore", datastore, "--from", from, "--to", to, "--archive", archive, "--target", target]
        if !namespace.isEmpty { a += ["--ns", namespace] }
        if let fromIndex { a += ["--from-index", fromIndex] }
        return a
    }

    /// The file name base of one disk's write: unique per delta record (id and start time), so a
    /// file of another record — an earlier state file's id reused — is never taken for this one.
    func base(_ record: DeltaRecord, _ drive: String) -> String {
        "\(directory)/\(record.historyID)-\(Int(record.startedAt))-\(drive)"
    }

    /// Runs (or, after a restart, finds or waits for) the write of one disk and waits for its end.
    func write(record: DeltaRecord, disk: DeltaDisk, arguments: [String]) async -> Result {
        let b = base(record, disk.drive)
        if case .written(let bytes, let changed, let total)? = ended(b) { return .written(bytes: bytes, changed: changed, total: total) }
        if let pid = readPID(b), isOurs(pid, b) { return await waitForEnd(b) }
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            return .failed("cannot create \(directory): \(error)")
        }
        for ext in ["status", "status.tmp", "out", "err", "pid"] { try? FileManager.default.removeItem(atPath: "\(b).\(ext)") }
        let script = "echo $$ >'\(b).pid'; \"$@\" >'\(b).out' 2>'\(b).err'; echo $? >'\(b).status.tmp' && mv '\(b).status.tmp' '\(b).status'"
        let p = Process()
        if let systemdRun {
            p.executableURL = URL(fileURLWithPath: systemdRun)
            p.arguments = ["--unit", "pbs-standby-delta-\(record.historyID)-\(Int(record.startedAt))-\(disk.drive)", "--collect", "--quiet", "--",
                           "/bin/sh", "-c", script, "sh", executable] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            p.arguments = ["/bin/sh", "-c", script, "sh", executable] + arguments
        }
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return .failed("cannot run \(p.executableURL?.path ?? "?"): \(error)") }
        let launcher = LauncherExit()
        DispatchQueue.global().async { p.waitUntilExit(); launcher.set(p.terminationStatus) }  // reaped: kill(pid, 0) sees it gone
        let launchedAt = Date()
        while readPID(b) == nil && ended(b) == nil {
            if systemdRun != nil, let code = launcher.get(), code != 0 { return .failed("\(systemdRun ?? "systemd-run") failed (\(code))") }
            if Date().timeIntervalSince(launchedAt) > launchTimeout { return .failed("the delta writer did not start within \(Int(launchTimeout)) s") }
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return .detached }
        }
        return await waitForEnd(b)
    }

    /// Waits until the status file appears; when the writer's process is gone without one, it
    /// died (killed): reported as failed, so it is run again.
    private func waitForEnd(_ b: String) async -> Result {
        var gone = 0
        while true {
            if let ended = ended(b) { return ended }
            if let pid = readPID(b), !isOurs(pid, b) {
                gone += 1
                if gone > 3 { return ended(b) ?? .failed("the delta writer (pid \(pid)) ended without a status") }
            }
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return .detached }
        }
    }

    /// Whether `pid` is still the shell of this write (its command line names the write's files):
    /// a pid reused by another process after a reboot is not.
    private func isOurs(_ pid: Int32, _ b: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self).contains(b)
    }

    /// The end of a write recorded in its status file, if it ended.
    private func ended(_ b: String) -> Result? {
        guard let text = try? String(contentsOfFile: "\(b).status", encoding: .utf8),
              let code = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        let err = ((try? String(contentsOfFile: "\(b).err", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        switch code {
        case 0: return Self.summary(err) ?? .failed("the delta writer printed no summary: \(err)")
        // Exit 3 before the first write ("nothing was written"): the target is untouched. A data
        // error during the writes (I/O, a chunk changed between the passes) may have written some.
        case 3 where err.hasSuffix("apply: nothing was written"): return .dataError(err)
        default: return .failed("the delta writer exited with \(code): \(err)")
        }
    }

    private func readPID(_ b: String) -> Int32? {
        (try? String(contentsOfFile: "\(b).pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Parses `apply: C of T chunks (…), N bytes written, S s`.
    static func summary(_ text: String) -> Result? {
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("apply: ") }) else { return nil }
        let words = line.split(separator: " ")
        guard words.count > 8, let changed = Int(words[1]), words[2] == "of", let total = Int(words[3]),
              let i = words.firstIndex(of: "bytes"), i > 0, let bytes = Int64(words[i - 1].trimmingCharacters(in: CharacterSet(charactersIn: ","))) else { return nil }
        return .written(bytes: bytes, changed: changed, total: total)
    }

    /// Removes the files of a delta's writes (a fresh delta, before a rollback, after its end).
    func clean(_ record: DeltaRecord) {
        let fm = FileManager.default, prefix = "\(record.historyID)-\(Int(record.startedAt))-"
        for name in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            try? fm.removeItem(atPath: "\(directory)/\(name)")
        }
    }
}

/// The exit status of the launching process, once known.
private final class LauncherExit: @unchecked Sendable {
    private let lock = NSLock()
    private var code: Int32?
    func set(_ c: Int32) { lock.lock(); code = c; lock.unlock() }
    func get() -> Int32? { lock.lock(); defer { lock.unlock() }; return code }
}
