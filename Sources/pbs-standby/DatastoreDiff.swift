import ArgumentParser
import Foundation
import PBSDatastore

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
