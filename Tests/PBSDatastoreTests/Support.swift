import Foundation
import PBSDatastore
import Testing

/// The package root (three levels above this file).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The built `pbs-standby`: `$PBS_STANDBY_BINARY` if set, else the one next to this test
/// bundle (so any `--scratch-path` works), else `.build/debug/pbs-standby`.
let binary: String = {
    if let path = ProcessInfo.processInfo.environment["PBS_STANDBY_BINARY"], !path.isEmpty { return path }
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for dir in [bundleDir, bundleDir.deletingLastPathComponent()] {
        let candidate = dir.appendingPathComponent("pbs-standby").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return packageRoot.appendingPathComponent(".build/debug/pbs-standby").path
}()

/// The independent Python writer.
let writerScript = packageRoot.appendingPathComponent("scripts/pbs-datastore-writer.py").path

/// What a process did.
struct Outcome {
    var status: Int32
    var stdout: String
    var stderr: String
    /// stdout's lines as integers (chunk indexes).
    var indexes: [Int] { stdout.split(separator: "\n").compactMap { Int($0) } }
}

/// Runs a program; a run still going after `timeout` seconds is killed and recorded as an issue.
func runProcess(_ executable: String, _ args: [String], timeout: Double = 300) throws -> Outcome {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let watchdog = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    // Read stderr on another thread so neither pipe can fill up and block the child.
    let errData = LockedData()
    let errReader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
    errReader.start()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    watchdog.cancel()
    if p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL {
        Issue.record("\(executable) \(args.joined(separator: " ")) did not finish within \(Int(timeout)) s; killed")
    }
    return Outcome(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data ?? Data() } }
    var isSet: Bool { lock.withLock { data != nil } }
}

/// Runs `pbs-standby datastore <args>`.
func datastoreCLI(_ args: [String]) throws -> Outcome {
    try runProcess(binary, ["datastore"] + args)
}

/// A scratch directory removed when the value is dropped.
final class Scratch {
    let url: URL
    init(_ name: String = "pbsds") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    var datastore: String { path("ds") }
}

/// The writer's report on one archive.
struct ArchiveInfo {
    var size: Int
    var chunkSize: Int
    var csum: String
    var digests: [String]
    var kinds: [String]
}

/// Writes snapshot `snapshot` with the Python writer: `archives` maps archive names to image bytes.
@discardableResult
func writeSnapshot(_ scratch: Scratch, _ snapshot: String, ns: String = "", chunkSize: Int,
                   archives: [String: [UInt8]], compress: String = "auto", manifest: Bool = true) throws -> [String: ArchiveInfo] {
    var args = [writerScript, "snapshot", "--datastore", scratch.datastore, "--snapshot", snapshot,
                "--chunk-size", String(chunkSize), "--compress", compress]
    if !ns.isEmpty { args += ["--ns", ns] }
    if !manifest { args.append("--no-manifest") }
    for (name, bytes) in archives.sorted(by: { $0.key < $1.key }) {
        let image = scratch.path("image-\(UUID().uuidString)")
        try Data(bytes).write(to: URL(fileURLWithPath: image))
        args += ["--archive", "\(name)=\(image)"]
    }
    let r = try runProcess("/usr/bin/env", ["python3"] + args)
    guard r.status == 0 else { throw WriterFailure(message: r.stderr) }
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    var result: [String: ArchiveInfo] = [:]
    for (name, value) in json["archives"] as! [String: [String: Any]] {
        result[name] = ArchiveInfo(size: value["size"] as! Int, chunkSize: value["chunk_size"] as! Int, csum: value["csum"] as! String,
                                   digests: value["digests"] as! [String], kinds: value["kinds"] as! [String])
    }
    return result
}

/// Runs one of the writer's tamper subcommands.
func writerTool(_ args: [String]) throws {
    let r = try runProcess("/usr/bin/env", ["python3", writerScript] + args)
    guard r.status == 0 else { throw WriterFailure(message: r.stderr) }
}

struct WriterFailure: Error { var message: String }

/// SplitMix64: a small seeded generator, so every failure can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Kinds of chunk content: incompressible, compressible (stored zstd) and all zeros.
enum Fill { case random, text, zero }

/// `length` bytes of the given kind, derived from `seed`.
func fill(_ kind: Fill, length: Int, seed: UInt64) -> [UInt8] {
    switch kind {
    case .zero:
        return [UInt8](repeating: 0, count: length)
    case .text:
        let line = Array("chunk \(seed): the quick brown fox jumps over the lazy dog\n".utf8)
        return (0..<length).map { line[$0 % line.count] }
    case .random:
        var rng = SplitMix64(state: seed)
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { buf in
            var i = 0
            while i + 8 <= length { buf.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < length { buf[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
        }
        return out
    }
}

/// An image made of chunks of the given kinds; `size` may end in a short chunk.
func image(size: Int, chunkSize: Int, kinds: (Int) -> Fill, seed: UInt64) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(size)
    var i = 0
    while out.count < size {
        let n = min(chunkSize, size - out.count)
        out += fill(kinds(i), length: n, seed: seed &+ UInt64(i) &* 7919)
        i += 1
    }
    return out
}

/// The file's bytes.
func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

/// Writes bytes to a file.
func save(_ b: [UInt8], _ path: String) throws { try Data(b).write(to: URL(fileURLWithPath: path)) }

let t0 = "2024-01-01T00:00:00Z", t1 = "2024-01-02T00:00:00Z", t2 = "2024-01-03T00:00:00Z"
let disk = "drive-scsi0.img.fidx"
