import ArgumentParser
import Foundation
import PBSDatastore

struct DatastoreApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Turn an image of --from into an image of --to: verify every changed chunk, then write them.")

    @OptionGroup var options: DatastoreOptions
    @Option(help: "The snapshot the target holds now.") var from: String
    @Option(help: "The snapshot to turn it into.") var to: String
    @Option(help: "The file or block device holding the --from image (may be larger than the image).") var target: String
    @Option(help: ArgumentHelp("Read the index of --from from this .fidx file instead of the datastore (a copy kept after the snapshot was pruned).",
                               valueName: "file"))
    var fromIndex: String?

    func run() throws {
        // Whether the write pass began: the last stderr line of a failure says whether the target
        // may be partly written (the service's delta writer reads it).
        final class Began: @unchecked Sendable { var value = false }
        let began = Began()
        do {
            try reportingErrors { () throws(DatastoreError) in
                let ds = try options.open()
                let old: FixedIndex
                if let fromIndex { old = try FixedIndex(path: fromIndex) } else { old = try options.index(ds, from) }
                let plan = try DeltaPlan.diff(from: old, to: options.index(ds, to))
                let started = ContinuousClock.now
                let outcome = try ImageWriter(source: ds.chunks, workers: chunkWorkers(), cacheBytes: applyCacheBytes())
                    .apply(plan, target: target, willWrite: { began.value = true })
                printSummary("apply", outcome, of: plan, since: started)
            }
        } catch {
            printError(began.value ? "apply: the target may be partly written" : "apply: nothing was written")
            throw error
        }
    }
}
