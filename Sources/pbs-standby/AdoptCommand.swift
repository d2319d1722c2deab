import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// `adopt`: lets the next restore overwrite the named guests once (guests without a marker, e.g.
/// copies made by the old script or an older pbs-standby); the restore then marks them ours.
struct AdoptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adopt", abstract: "Take over the guests at these VMIDs: the next restore may overwrite them.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: target VMIDs (primary or keep_previous slot), backed-up VMIDs or SOURCE:VMID (their primary slot).") var guests: [String]

    func run() async throws {
        try await exitOnError {
            let ctx = try await GuestCommandContext(global, guests)
            for m in ctx.matches {
                let id = try await ctx.operations.adopt(m.key, vmid: m.slot)
                print("adopted VMID \(m.slot) for \(m.key) (\(id)): the next restore may overwrite this guest, and no other at that VMID")
            }
        }
    }
}
