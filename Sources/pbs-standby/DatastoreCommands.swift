import ArgumentParser
import Foundation
import PBSDatastore

/// `pbs-standby datastore …`: operator tools over a local PBS datastore directory.
///
/// Exit codes: 0 success, 1 `verify` found mismatches, 2 usage or configuration error, 3 data
/// error. ArgumentParser exits 64 (EX_USAGE) on parse and validation errors, so the group takes
/// its arguments verbatim and parses them itself with ``DatastoreTool`` to map those to 2.
struct DatastoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "datastore",
        abstract: "Operator tools over a PBS datastore directory: diff, apply, restore, verify.",
        discussion: """
            Subcommands (see `pbs-standby datastore <subcommand> --help`):
              diff     print the chunk indexes that differ between two snapshots of an archive
              apply    turn an image of --from into an image of --to by writing the changed chunks
              restore  write a snapshot's whole image to a new file
              verify   compare a file or device with a snapshot's image, list mismatching chunks
            Exit codes: 0 success, 1 verify found mismatches, 2 usage or configuration error, 3 data error.
            """)

    @Argument(parsing: .captureForPassthrough, help: "A subcommand and its options.")
    var arguments: [String] = []

    func run() throws {
        if arguments.isEmpty {  // a group without a subcommand is a usage error, not a help request
            printError(DatastoreTool.helpMessage())
            throw ExitCode(2)
        }
        do {
            var command = try DatastoreTool.parseAsRoot(arguments)
            try command.run()
        } catch let code as ExitCode {
            throw code
        } catch {
            let code = DatastoreTool.exitCode(for: error)
            if code.isSuccess {  // --help
                print(DatastoreTool.fullMessage(for: error))
                return
            }
            printError(DatastoreTool.fullMessage(for: error))
            throw ExitCode(2)
        }
    }
}

/// The parser behind `pbs-standby datastore`.
struct DatastoreTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pbs-standby datastore",
        abstract: "Operator tools over a PBS datastore directory.",
        discussion: "Exit codes: 0 success, 1 verify found mismatches, 2 usage or configuration error, 3 data error.",
        subcommands: [DatastoreDiff.self, DatastoreApply.self, DatastoreRestore.self, DatastoreVerify.self])
}

/// Options every datastore subcommand takes.
struct DatastoreOptions: ParsableArguments {
    @Option(help: "The datastore directory (holds .chunks and the backup groups).")
    var datastore: String

    @Option(help: "The namespace (nested: a/b); default the root namespace.")
    var ns: String = ""

    @Option(help: "The archive: a fixed index name, e.g. drive-scsi0.img.fidx.")
    var archive: String

    func open() throws(DatastoreError) -> Datastore {
        try Datastore.checkArchiveName(archive)
        return try Datastore(path: datastore)
    }

    func index(_ ds: Datastore, _ snapshot: String) throws(DatastoreError) -> FixedIndex {
        try ds.openFixedIndex(snapshot: SnapshotRef(parsing: snapshot, namespace: ns), archive: archive)
    }
}

struct DatastoreDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Print the 0-based indexes of the chunks whose digest differs, one per line.")

    @OptionGroup var options: DatastoreOptions
    @Option(help: "The older snapshot, e.g. vm/100/2024-01-01T00:00:00Z.") var from: String
    @Option(help: "The newer snapshot.") var to: String

    func run() throws {
        try reportingErrors { () throws(DatastoreError) in
            let ds = try options.open()
            let plan = try DeltaPlan.diff(from: options.index(ds, from), to: options.index(ds, to))
            writeLines(plan.changed)
        }
    }
}

struct DatastoreApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Turn an image of --from into an image of --to: verify every changed chunk, then write them.")

    @OptionGroup var options: DatastoreOptions
    @Option(help: "The snapshot the target holds now.") var from: String
    @Option(help: "The snapshot to turn it into.") var to: String
    @Option(help: "The file or block device holding the --from image (may be larger than the image).") var target: String

    func run() throws {
        try reportingErrors { () throws(DatastoreError) in
            let ds = try options.open()
            let plan = try DeltaPlan.diff(from: options.index(ds, from), to: options.index(ds, to))
            let started = ContinuousClock.now
            let outcome = try ImageWriter(source: ds.chunks, workers: chunkWorkers()).apply(plan, target: target)
            printSummary("apply", outcome, of: plan, since: started)
        }
    }
}

struct DatastoreRestore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Write a snapshot's whole image to a new file.")

    @OptionGroup var options: DatastoreOptions
    @Option(help: "The snapshot, e.g. vm/100/2024-01-01T00:00:00Z.") var snapshot: String
    @Option(help: "The file to create.") var target: String
    @Flag(help: "Replace an existing file.") var overwrite = false

    func run() throws {
        try reportingErrors { () throws(DatastoreError) in
            let ds = try options.open()
            let index = try options.index(ds, snapshot)
            let started = ContinuousClock.now
            let outcome = try ImageWriter(source: ds.chunks, workers: chunkWorkers()).restore(index, target: target, overwrite: overwrite)
            printSummary("restore", outcome, of: DeltaPlan.full(index), since: started)
        }
    }
}

struct DatastoreVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare a file or device with a snapshot's image; list mismatching chunk indexes (exit 1).")

    @OptionGroup var options: DatastoreOptions
    @Option(help: "The snapshot, e.g. vm/100/2024-01-01T00:00:00Z.") var snapshot: String
    @Option(help: "The file or block device to check (may be larger than the image).") var target: String

    func run() throws {
        var mismatches: [Int] = []
        try reportingErrors { () throws(DatastoreError) in
            let ds = try options.open()
            mismatches = try ImageVerifier.mismatches(of: options.index(ds, snapshot), target: target, workers: chunkWorkers())
        }
        writeLines(mismatches)
        if !mismatches.isEmpty {
            printError("verify: \(mismatches.count) chunk(s) of \(options.archive) differ in \(target)")
            throw ExitCode(1)
        }
    }
}

/// Chunks in flight: `$PBS_STANDBY_CHUNK_WORKERS` (1…64) when set, else the library's default.
private func chunkWorkers() -> Int {
    if let text = ProcessInfo.processInfo.environment["PBS_STANDBY_CHUNK_WORKERS"], let n = Int(text), (1...64).contains(n) { return n }
    return defaultChunkWorkers()
}

/// Runs `body`; a ``DatastoreError`` is printed to stderr and becomes its exit code (2 or 3).
private func reportingErrors(_ body: () throws(DatastoreError) -> Void) throws {
    do { try body() } catch {
        printError("error: \(error.description)")
        throw ExitCode(error.exitCode)
    }
}

private func writeLines(_ numbers: [Int]) {
    guard !numbers.isEmpty else { return }
    FileHandle.standardOutput.write(Data((numbers.map(String.init).joined(separator: "\n") + "\n").utf8))
}

private func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

private func printSummary(_ verb: String, _ o: ImageWriter.Outcome, of plan: DeltaPlan, since start: ContinuousClock.Instant) {
    let d = ContinuousClock.now - start
    let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    printError("\(verb): \(plan.changed.count) of \(plan.to.chunkCount) chunks (\(o.dataChunks) read, \(o.zeroChunks) zero), "
        + "\(o.bytesWritten) bytes written, \(String(format: "%.3f", seconds)) s")
}
