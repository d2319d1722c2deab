import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// `resume`: clears holds and failovers (a failed-over guest only with --discard-changes).
struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume restores of held or failed-over guests (and of guests blocked after a failed drill cleanup).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID.") var guests: [String]
    @Flag(name: .customLong("discard-changes"), help: "Required for failed-over guests: the next restore overwrites what they wrote since.")
    var discardChanges = false

    func run() async throws {
        try await exitOnError {
            let ctx = try await GuestCommandContext(global, guests)
            for m in ctx.matches where try ctx.store.guest(m.key)?.failedOver == true && !discardChanges {
                throw UsageError(message: "\(m.key) is failed over: resuming lets the next restore overwrite what it wrote since the failover; repeat with --discard-changes")
            }
            // PVE first: a flag left in PVE would keep the guest frozen (the safe side).
            let keys = ctx.matches.map(\.key)
            var ok = await ctx.mirror(Marker.heldTag, set: false, keys)
            if discardChanges { ok = await ctx.mirror(Marker.failedOverTag, set: false, keys) && ok }
            for m in ctx.matches {
                let blocked = try ctx.store.guest(m.key)?.drillBlocked
                try ctx.store.update(m.key, targetVmid: m.target) { r in
                    r.held = false
                    r.drillBlocked = nil  // the operator put the copy back after a failed drill cleanup
                    if discardChanges { r.failedOver = false }
                }
                print("resumed \(m.key)" + (blocked.map { " (drill block cleared: \($0))" } ?? ""))
            }
            if !ok { throw ExitCode(1) }
        }
    }
}
