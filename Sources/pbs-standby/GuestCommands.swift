import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// What `hold`, `resume`, `failover` and `adopt` share: config, the shared state store, PVE and
/// the guests the arguments name (backed-up VMIDs, target VMIDs or SOURCE:VMID; a list with any
/// argument that matches nothing or several guests is refused whole, exit 2).
struct GuestCommandContext {
    let config: StandbyConfig
    let store: StateStore
    let operations: GuestOperations
    let matches: [GuestSelector.Match]

    init(_ global: GlobalOptions, _ arguments: [String]) async throws {
        config = try loadConfig(global)
        store = try openStoreShared(config)
        operations = GuestOperations(config: config, client: ProxmoxClient(transport: try makeTransport(config)), store: store)
        let known = await operations.knownGuests()
        if known == nil { FileHandle.standardError.write(Data("warning: a source cannot be listed; guests are matched by the configured selection alone\n".utf8)) }
        do { matches = try GuestSelector.resolve(arguments, config: config, known: known) } catch { throw UsageError(message: error.message) }
    }

    /// Sets or clears a flag tag on each guest's proven copy in PVE; prints what changed.
    /// Returns false when PVE could not be changed for some guest (the state file still was).
    func mirror(_ tag: String, set: Bool, _ keys: [GuestKey]) async -> Bool {
        var ok = true
        for key in keys {
            do {
                let vmids = try await operations.mirror(tag, on: key, set: set)
                for vmid in vmids { print("  \(set ? "tagged" : "untagged") VMID \(vmid) '\(tag)' in PVE") }
                if vmids.isEmpty, set, try await operations.provenCopies(of: key).isEmpty {
                    print("  \(key): no copy in PVE to tag (the state file holds the flag)")
                }
            } catch {
                print("  \(key): not mirrored in PVE (the state file holds the flag): \(error)")
                ok = false
            }
        }
        return ok
    }

    /// Waits for restores that a pass began before the flag was written.
    func waitForRunning(_ keys: [GuestKey], timeout: Double) async -> Bool {
        let left = await operations.waitForRunningRestores(Set(keys), timeout: timeout) { h in
            print("  waiting for the running restore of \(h.source)/\(h.vmid) into \(h.targetVmid) (\(h.volid)) to end")
        }
        for h in left { print("  still running after \(Int(timeout)) s: restore of \(h.source)/\(h.vmid) (\(h.upid ?? "no UPID yet"))") }
        return left.isEmpty
    }
}

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

/// `resume`: clears holds and failovers (a failed-over guest only with --discard-changes).
struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume restores of held or failed-over guests.")
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
                try ctx.store.update(m.key, targetVmid: m.target) { r in
                    r.held = false
                    if discardChanges { r.failedOver = false }
                }
                print("resumed \(m.key)")
            }
            if !ok { throw ExitCode(1) }
        }
    }
}

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

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            guard all || !guests.isEmpty else { throw UsageError(message: "name the guests to fail over, or --all") }
            guard !replace || latest else { throw UsageError(message: "--replace goes with --latest") }
            let ctx = try await GuestCommandContext(global, guests)
            let keys: [GuestKey] = all ? try ctx.store.guests().values.filter { $0.restoredVolid != nil }.map(\.key) : ctx.matches.map(\.key)
            let ok = try await Failover(operations: ctx.operations).run(
                keys, options: .init(start: !noStart, latest: latest, replace: replace, waitSeconds: wait)) { print($0) }
            if !ok { throw ExitCode(1) }
        }
    }
}
