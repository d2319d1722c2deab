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

    init(_ global: GlobalOptions, _ arguments: [String]) throws {
        config = try loadConfig(global)
        do { matches = try GuestSelector.resolve(arguments, config: config) } catch { throw UsageError(message: error.message) }
        store = try openStoreShared(config)
        operations = GuestOperations(config: config, client: ProxmoxClient(transport: try makeTransport(config)), store: store)
    }

    /// Sets or clears a flag tag on each guest's proven copy in PVE; prints what changed.
    /// Returns false when PVE could not be changed for some guest (the state file still was).
    func mirror(_ tag: String, set: Bool, _ keys: [GuestKey]) async -> Bool {
        var ok = true
        for key in keys {
            do {
                if let vmid = try await operations.mirror(tag, on: key, set: set) {
                    print("  \(set ? "tagged" : "untagged") VMID \(vmid) '\(tag)' in PVE")
                } else {
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
            let ctx = try GuestCommandContext(global, guests)
            for m in ctx.matches {
                try ctx.store.update(m.key, targetVmid: m.target) { $0.held = true }
                print("held \(m.key) (target VMID \(m.target))")
            }
            let keys = ctx.matches.map(\.key)
            let mirrored = await ctx.mirror(Marker.heldTag, set: true, keys)
            let settled = await ctx.waitForRunning(keys, timeout: wait)
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
            let ctx = try GuestCommandContext(global, guests)
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
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID (the primary target VMID is adopted).") var guests: [String]

    func run() async throws {
        try await exitOnError {
            let ctx = try GuestCommandContext(global, guests)
            for m in ctx.matches {
                try ctx.store.update(m.key, targetVmid: m.target) { $0.adoptVmid = m.target }
                print("adopted VMID \(m.target) for \(m.key): the next restore may overwrite it")
            }
        }
    }
}

/// `failover`: freeze restores persistently (state file and PVE tag), wait for a running restore,
/// then start the proven copies in priority order.
struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "failover", abstract: "Freeze restores and start the standby copies.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID (or --all).") var guests: [String] = []
    @Flag(help: "Every selected guest with a standby copy.") var all = false
    @Flag(name: .customLong("no-start"), help: "Only freeze restores.") var noStart = false
    @Flag(help: "First live-restore VMs whose copy is behind a newer complete backup (not for held guests).")
    var latest = false
    @Option(name: .customLong("wait"), help: "How long to wait for a restore already running (seconds).") var wait: Double = 3600

    func run() async throws {
        global.bootstrapLogging()
        try await exitOnError {
            guard all || !guests.isEmpty else { throw UsageError(message: "name the guests to fail over, or --all") }
            let ctx = try GuestCommandContext(global, guests)
            let config = ctx.config
            let records = try ctx.store.guests()
            let keys: [GuestKey] = all ? records.values.filter { $0.restoredVolid != nil }.map(\.key) : ctx.matches.map(\.key)
            func priority(_ k: GuestKey) -> Int {
                config.sources.first { $0.storage == k.source }.map { config.effective(source: $0, vmid: k.vmid).priority } ?? 0
            }
            let ordered = keys.sorted { a, b in priority(a) != priority(b) ? priority(a) > priority(b) : a < b }
            // Freeze first (persistently, in the state file and in PVE), then wait for a restore a
            // pass began before the freeze, then start: a restore never overwrites a started copy.
            for k in ordered {
                try ctx.store.update(k, targetVmid: records[k]?.targetVmid ?? k.vmid) { $0.failedOver = true }
                print("frozen \(k)")
            }
            var failed = !(await ctx.mirror(Marker.failedOverTag, set: true, ordered))
            if !(await ctx.waitForRunning(ordered, timeout: wait)) { failed = true }
            guard !noStart else {
                if failed { throw ExitCode(1) }
                return
            }
            let client = ctx.operations.client, node = config.proxmox.node
            for k in ordered {
                guard let copy = try await ctx.operations.provenCopy(of: k) else {
                    print("\(k): no standby copy proven ours in PVE; nothing started")
                    failed = true
                    continue
                }
                let vmid = copy.slot.target
                if latest, copy.slot.type == .vm, records[k]?.held != true,
                   let newer = try? await client.backups(node: node, storage: k.source, vmid: k.vmid)
                    .filter({ $0.isComplete && $0.volid.type == .vm && $0.volid.backupTime > copy.marker.volid.backupTime })
                    .max(by: { $0.volid.backupTime < $1.volid.backupTime }) {
                    var request = ProxmoxClient.RestoreRequest(node: node, vmid: vmid, archive: newer.volid,
                                                               storage: config.sources.first { $0.storage == k.source }.flatMap { config.effective(source: $0, vmid: k.vmid).targetStorage })
                    request.liveRestore = true
                    request.force = true  // the copy at `vmid` was just proven ours
                    request.tags = [Marker.tag, Marker.failedOverTag]
                    request.description = Marker.description(volid: newer.volid, targetVmid: vmid, restoredAt: Date().timeIntervalSince1970)
                    do {
                        let upid = try await client.restore(request)
                        print("\(k): live-restoring \(newer.volid) into \(vmid) (\(upid)); recorded when its task ends")
                        let end = try await ctx.operations.followToEnd(upid)
                        if end.succeeded {
                            try ctx.store.update(k, targetVmid: vmid) { g in
                                g.restoredVolid = newer.volid.description
                                g.restoredBackupTime = newer.volid.backupTime
                                g.liveVmid = vmid
                            }
                            print("\(k): live-restore of \(newer.volid) ended \(end.exitStatus ?? "OK")")
                        } else {
                            print("\(k): live-restore failed: \(end.exitStatus ?? "unknown")")
                            failed = true
                        }
                        continue
                    } catch {
                        print("\(k): live-restore not started, starting the existing copy: \(error)")
                    }
                }
                do {
                    let upid = try await client.start(node: node, type: copy.slot.type, vmid: vmid)
                    print("\(k): starting \(vmid) (\(copy.marker.volid)) (\(upid))")
                } catch {
                    print("\(k): start failed: \(error)")
                    failed = true
                }
            }
            if failed { throw ExitCode(1) }
        }
    }
}
