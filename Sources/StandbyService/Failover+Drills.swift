import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

extension Failover {
    /// Aborts a DR drill of the guest before its copy is started (issue 16 §5): the service
    /// running the drill sees the failover flag (written first) at its next check and undoes the
    /// drill; after up to 60 s without that (the service is down or hung) the failover undoes it
    /// itself. Returns false when the copy could not be put back (then it is not started).
    func abortDrill(_ k: GuestKey, say: (String) -> Void) async -> Bool {
        let store = operations.store
        guard let open = ((try? store.openDrills()) ?? []).first(where: { $0.key == k }) else { return blockedByDrill(k, say: say) }
        if let clone = open.cloneVmid {
            // A clone drill boots a scratch clone: the copy itself is untouched and starts now;
            // the drill sees the failover flag and destroys its clone.
            say("\(k): a DR drill runs on the scratch clone \(clone); the copy itself is untouched")
            return blockedByDrill(k, say: say)
        }
        say("\(k): a DR drill of VMID \(open.targetVmid) runs; aborting it (stop, roll back: the links come up again)")
        let deadline = Date().addingTimeInterval(open.processAlive ? 60 : 0)
        while Date() < deadline, ((try? store.openDrills()) ?? []).contains(where: { $0.id == open.id }) {
            try? await Task.sleep(for: .seconds(1))
        }
        if ((try? store.openDrills()) ?? []).contains(where: { $0.id == open.id }) {
            say("\(k): the drill's process \(open.processAlive ? "did not end it within 60 s" : "is gone"); undoing it here")
            var r = open
            // A process that is alive but hung keeps its claim: the failover then takes it over by
            // force (the copy must serve); a dead one's record is claimed in one transaction.
            if !open.processAlive, (try? store.claimDrill(&r)) != true { return blockedByDrill(k, say: say) }
            let problem = await DrillCleanup(environment: DrillEnvironment(operations: operations, clock: WallClock())).clean(&r)
            r.result = DrillResult.aborted.rawValue
            r.reason = "aborted by failover" + (problem.map { "; cleanup failed: \($0)" } ?? "")
            r.finishedAt = Date().timeIntervalSince1970
            try? store.saveDrill(r)
            if let problem { try? store.setDrillBlocked(k, targetVmid: r.targetVmid, "drill \(r.id ?? 0) aborted by failover; cleanup failed: \(problem)") }
        }
        return blockedByDrill(k, say: say)
    }

    private func blockedByDrill(_ k: GuestKey, say: (String) -> Void) -> Bool {
        guard let blocked = (try? operations.store.guest(k))?.drillBlocked else { return true }
        say("\(k): not started — a drill's cleanup failed: \(blocked). See README 'blocked (drill_cleanup)'; start the copy by hand once it is put back.")
        return false
    }

    /// `failover --dry-run`: per guest the copy a failover would start, its age against the RPO
    /// target, its last drill and whether `--latest` would live-restore; then the memory check.
    /// Changes nothing. Returns the summary (``FailoverReadiness/Summary/fits`` for the exit code).
    public func dryRun(_ keys: [GuestKey], say: (String) -> Void) async throws -> FailoverReadiness.Summary {
        let client = operations.client, node = config.proxmox.node, now = Date().timeIntervalSince1970
        let drills = (try? operations.store.latestDrills()) ?? [:]
        let resources = Dictionary(try await client.guests().map { ($0.vmid, $0) }) { a, _ in a }
        var rows: [FailoverReadiness.Guest] = []
        for k in keys.sorted() {
            let rpo = config.sources.first { $0.storage == k.source }.map { config.effective(source: $0, vmid: k.vmid).rpoTarget.seconds } ?? config.restore.rpoTarget.seconds
            let drill = drills[k]?.latest
            let drillText = drill.map { "last drill \($0.result) \(iso8601($0.finishedAt ?? $0.startedAt))" } ?? "never drilled"
            guard let copy = try await operations.provenCopy(of: k) else {
                say("\(k): no copy proven ours — would not start; \(drillText)")
                rows.append(.init(key: k, startable: false, copyAge: nil, rpoTarget: rpo, drillResult: drill?.result, memory: 0))
                continue
            }
            let blocked = (try? operations.store.guest(k))?.drillBlocked
            let age = max(0, now - Double(copy.marker.volid.backupTime))
            let res = resources[copy.slot.target]
            let cfg = try? await client.guestConfig(node: node, type: copy.slot.type, vmid: copy.slot.target)
            let memory = res?.maxmem ?? DrillEnvironment.memoryBytes(type: copy.slot.type, config: cfg?.raw ?? [:])
            let cores = cfg?.raw["cores"].flatMap(Int.init).map { $0 * (cfg?.raw["sockets"].flatMap(Int.init) ?? 1) }
            let newer = copy.slot.type == .vm ? try? await newerEligible(k, than: copy) : nil
            var line = "\(k): would start VMID \(copy.slot.target) (\(copy.marker.volid)), copy \(FailoverReadiness.Summary.age(age)) old "
                + "(RPO target \(FailoverReadiness.Summary.age(rpo))\(age > rpo ? ", BEYOND" : "")), \(drillText), \(memory >> 20) MiB"
            if let cores { line += ", \(cores) cores" }
            if let newer { line += "; --latest would live-restore \(newer.volid)" }
            if res?.status == "running" { line += "; already running" }
            if let blocked { line = "\(k): NOT startable — drill cleanup failed: \(blocked)" }
            say(line)
            rows.append(.init(key: k, startable: blocked == nil, copyAge: age, rpoTarget: rpo, drillResult: drill?.result, memory: memory,
                              cores: cores, running: res?.status == "running"))
        }
        let mem = try? await client.nodeMemory(node: node)
        let summary = FailoverReadiness.summarize(rows, memoryAvailable: mem?.available, memoryTotal: mem?.total, nodeCores: mem?.cpus)
        let gib = { (b: Int64) in String(format: "%.1f GiB", Double(b) / 1_073_741_824) }
        if let mem {
            say("capacity: the copies need \(gib(summary.memoryRequired)) of memory; node \(node) has \(gib(mem.available)) not in use of \(gib(mem.total))"
                + " (a ZFS ARC counts as used and shrinks under pressure) — \(summary.fits ? "fits" : "SHORT by \(gib(summary.memoryRequired - mem.available))")")
            say("cores: the copies have \(summary.coresRequired) cores; the node has \(mem.cpus.map(String.init) ?? "?") threads (reported, not judged: cores are usually overcommitted)")
        } else {
            say("capacity: the node's memory cannot be read (GET /nodes/\(node)/status needs Sys.Audit); not judged")
        }
        say(summary.line)
        return summary
    }
}
