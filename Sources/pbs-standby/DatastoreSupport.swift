import ArgumentParser
import Foundation
import PBSDatastore

/// Chunks in flight: `$PBS_STANDBY_CHUNK_WORKERS` (1…64) when set, else the library's default.
func chunkWorkers() -> Int {
    if let text = ProcessInfo.processInfo.environment["PBS_STANDBY_CHUNK_WORKERS"], let n = Int(text), (1...64).contains(n) { return n }
    return defaultChunkWorkers()
}

/// Bytes of verified chunks kept between the verify and the write pass: `PBS_STANDBY_APPLY_CACHE_MIB`
/// (0–65536), default 256 MiB.
func applyCacheBytes() -> Int {
    if let text = ProcessInfo.processInfo.environment["PBS_STANDBY_APPLY_CACHE_MIB"], let n = Int(text), (0...65536).contains(n) { return n << 20 }
    return 256 << 20
}

/// Runs `body`; a ``DatastoreError`` is printed to stderr and becomes its exit code (2 or 3).
func reportingErrors(_ body: () throws(DatastoreError) -> Void) throws {
    do { try body() } catch {
        printError("error: \(error.description)")
        throw ExitCode(error.exitCode)
    }
}

func writeLines(_ numbers: [Int]) {
    guard !numbers.isEmpty else { return }
    FileHandle.standardOutput.write(Data((numbers.map(String.init).joined(separator: "\n") + "\n").utf8))
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func printSummary(_ verb: String, _ o: ImageWriter.Outcome, of plan: DeltaPlan, since start: ContinuousClock.Instant) {
    let d = ContinuousClock.now - start
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    printError("\(verb): \(plan.changed.count) of \(plan.to.chunkCount) chunks (\(o.dataChunks) read, \(o.zeroChunks) zero), "
        + "\(o.bytesWritten) bytes written, \(String(format: "%.3f", seconds)) s")
}
