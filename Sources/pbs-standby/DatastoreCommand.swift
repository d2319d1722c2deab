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
