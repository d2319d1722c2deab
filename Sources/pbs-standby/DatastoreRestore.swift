import ArgumentParser
import Foundation
import PBSDatastore

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
            let outcome = try ImageWriter(source: ds.chunks, workers: chunkWorkers(), cacheBytes: applyCacheBytes()).restore(index, target: target, overwrite: overwrite)
            printSummary("restore", outcome, of: DeltaPlan.full(index), since: started)
        }
    }
}
