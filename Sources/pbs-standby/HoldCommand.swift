import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// `hold`: persistent per-guest pause, in the state file and as a tag on the copy in PVE.
struct HoldCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hold", abstract: "Pause restores of guests (backed-up VMID, target VMID or SOURCE:VMID).",
        discussion: "The hold is written to the state file and mirrored as the tag 'pbs-standby-held' on the copy, so it survives the loss of the state file. A restore a pass began just before is waited for.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID.") var guests: [String]
    @Option(name: .customLong("wait"), help: "How long to wait for a restore already running (seconds).") var wait: Double = 3600

    func run() async throws {
        try await exitOnError {
            let ctx = try await GuestCommandContext(global, guests)
            for m in ctx.matches {
                try ctx.store.update(m.key, targetVmid: m.target) { $0.held = true }
                print("held \(m.key) (target VMID \(m.target))")
            }
            let keys = ctx.matches.map(\.key)
            _ = await ctx.mirror(Marker.heldTag, set: true, keys)
            let settled = await ctx.waitForRunning(keys, timeout: wait)
            // Again after the wait: a copy that was being restored (locked) can be tagged now.
            let mirrored = await ctx.mirror(Marker.heldTag, set: true, keys)
            if !mirrored || !settled { throw ExitCode(1) }
        }
    }
}
