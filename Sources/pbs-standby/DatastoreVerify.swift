import ArgumentParser
import Foundation
import PBSDatastore

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
