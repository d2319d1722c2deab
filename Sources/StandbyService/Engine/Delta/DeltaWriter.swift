import Foundation
import StandbyStore

#if canImport(Glibc)
import Glibc
#endif

/// Writes one disk of a delta by running `pbs-standby datastore apply` (the operator tool, the
/// same code the independent checks drive) as its own process — in a transient systemd unit when
/// `systemdRun` is set — so a stop or restart of the service never interrupts a write (issue 13
/// §2 applies to the delta writer too). Its exit status, stdout and stderr go to files named by
/// the restore's history id and the drive: after a restart the service finds a write that ended
/// while it was away, waits for one still running, or runs it again (the writes are idempotent).
struct DeltaWriter: Sendable {
    /// The `pbs-standby` executable.
    let executable: String
    /// `systemd-run` (a transient unit per disk), or nil: a child process in its own session.
    let systemdRun: String?
    /// Where the runs' files go (the state directory: writable by the service and the unit).
    let directory: String

    /// How one disk's write ended.
    enum Result: Sendable, Equatable {
        /// Written and synced: bytes written, chunks changed, chunks of the image.
        case written(bytes: Int64, changed: Int, total: Int)
        /// The tool found bad data before writing anything (exit 3: corrupt or missing chunk,
        /// index checksum): the copy is untouched.
        case dataError(String)
        /// Any other failure (the target may be partly written).
        case failed(String)
    }

    /// The arguments of `datastore apply` for one disk.
    static func arguments(datastore: String, namespace: String, from: String, to: String, archive: String, target: String) -> [String] {
        var a = ["datastore", "apply", "--datastore", datastore, "--from", from, "--to", to, "--archive", archive, "--target", target]
        if !namespace.isEmpty { a += ["--ns", namespace] }
        return a
    }

    private func base(_ historyID: Int64, _ drive: String) -> String { "\(directory)/\(historyID)-\(drive)" }

    /// Runs (or, after a restart, finds or re-runs) the write of one disk and waits for its end.
    func write(historyID: Int64, disk: DeltaDisk, arguments: [String]) async -> Result {
        let b = base(historyID, disk.drive)
        if let ended = ended(b) { return ended }
        if let pid = readPID(b), kill(pid, 0) == 0 || errno == EPERM {
            // Still running from before a restart: wait for its end instead of writing twice.
            return await waitForEnd(b, pid: pid)
        }
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            return .failed("cannot create \(directory): \(error)")
        }
        for ext in ["status", "out", "err", "pid"] { try? FileManager.default.removeItem(atPath: "\(b).\(ext)") }
        let script = "echo $$ >'\(b).pid'; \"$@\" >'\(b).out' 2>'\(b).err'; echo $? >'\(b).status.tmp' && mv '\(b).status.tmp' '\(b).status'"
        let p = Process()
        if let systemdRun {
            p.executableURL = URL(fileURLWithPath: systemdRun)
            p.arguments = ["--unit", "pbs-standby-delta-\(historyID)-\(disk.drive)", "--collect", "--quiet", "--",
                           "/bin/sh", "-c", script, "sh", executable] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
            p.arguments = ["/bin/sh", "-c", script, "sh", executable] + arguments
        }
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return .failed("cannot run \(p.executableURL?.path ?? "?"): \(error)") }
        DispatchQueue.global().async { p.waitUntilExit() }  // reaped, so a kill(pid, 0) sees it gone
        return await waitForEnd(b, pid: nil)
    }

    /// Waits until the status file appears; when the recorded process is gone without one, the
    /// write died (killed): reported as failed, so it is run again.
    private func waitForEnd(_ b: String, pid known: Int32?) async -> Result {
        var gone = 0
        while true {
            if let ended = ended(b) { return ended }
            let pid = known ?? readPID(b)
            if let pid, kill(pid, 0) != 0 && errno == ESRCH {
                gone += 1
                if gone > 3 { return ended(b) ?? .failed("the delta writer (pid \(pid)) ended without a status") }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The end of a write recorded in its status file, if it ended.
    private func ended(_ b: String) -> Result? {
        guard let text = try? String(contentsOfFile: "\(b).status", encoding: .utf8),
              let code = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        let err = ((try? String(contentsOfFile: "\(b).err", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        switch code {
        case 0: return Self.summary(err) ?? .failed("the delta writer printed no summary: \(err)")
        case 3: return .dataError(err)
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

    /// Removes the files of a restore's writes (after its record ended).
    func clean(historyID: Int64) {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("\(historyID)-") {
            try? fm.removeItem(atPath: "\(directory)/\(name)")
        }
    }
}
