import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// `failover`: freeze restores persistently (state file and PVE tag), wait for a running restore,
/// then start the proven copies in priority order (``Failover`` in StandbyService).
struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "failover", abstract: "Freeze restores and start the standby copies.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID (or --all).") var guests: [String] = []
    @Flag(help: "Every selected guest with a standby copy.") var all = false
    @Flag(name: .customLong("no-start"), help: "Only freeze restores.") var noStart = false
    @Flag(help: "First live-restore VMs whose copy is behind a newer eligible backup: into the free keep_previous slot (the copy stays and is started if the live restore fails). Not for held guests.")
    var latest = false
    @Flag(help: "With --latest and without keep_previous: live-restore over the copy (PVE destroys the copy's disks first; if streaming fails no copy is left).")
    var replace = false
    @Option(name: .customLong("wait"), help: "How long to wait for a restore already running (seconds).") var wait: Double = 3600
    @Flag(name: .customLong("dry-run"), help: "Change nothing: per guest the copy that would start, its age against the RPO target, its last drill and whether --latest would live-restore; then whether the copies fit in the node's free memory (exit 1 when they do not).")
    var dryRun = false

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            guard all || !guests.isEmpty else { throw UsageError(message: "name the guests to fail over, or --all") }
            guard !replace || latest else { throw UsageError(message: "--replace goes with --latest") }
            let ctx = try await GuestCommandContext(global, all ? [] : guests)
            let keys: [GuestKey] = all ? try ctx.store.guests().values.filter { $0.restoredVolid != nil }.map(\.key) : ctx.matches.map(\.key)
            if dryRun {
                let summary = try await Failover(operations: ctx.operations).dryRun(keys) { print($0) }
                if !summary.fits { throw ExitCode(1) }
                return
            }
            let ok = try await Failover(operations: ctx.operations).run(
                keys, options: .init(start: !noStart, latest: latest, replace: replace, waitSeconds: wait)) { print($0) }
            if !ok { throw ExitCode(1) }
        }
    }
}
