import Foundation
import Testing

/// Issue 16 end to end: the `pbs-standby` binary against a simulator process — every drill
/// outcome, isolation proved from the simulator's journal, each copy's config as before, a
/// `kill -9` during a scheduled drill cleaned up before any restore, and `failover --dry-run`
/// reporting a memory shortfall.
@Suite("DR drills against a simulator process", .serialized)
struct DrillEndToEndTests {
    static let scenario = """
    node: pve-standby
    pbs_storages: [{id: pbs-prod, datastore: store1}]
    target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}, {id: plain, type: dir, total_gib: 4000}]
    backups:
      - {vmid: 101, type: vm, name: agent-ok, disks_gib: [4], interval: 1d, bridges: [vmbr0, vmbr1], memory_mib: 2048, extra_config: {agent: "1"}}
      - {vmid: 102, type: vm, name: no-agent, disks_gib: [4], interval: 1d}
      - {vmid: 103, type: vm, name: crashes, disks_gib: [4], interval: 1d}
      - {vmid: 104, type: vm, name: hangs, disks_gib: [4], interval: 1d, extra_config: {agent: "1"}}
      - {vmid: 105, type: vm, name: host-share, disks_gib: [4], interval: 1d, extra_config: {virtiofs0: "dirid=share"}}
      - {vmid: 106, type: vm, name: on-dir, disks_gib: [4], interval: 1d}
      - {vmid: 107, type: vm, name: held, disks_gib: [4], interval: 1d}
      - {vmid: 201, type: ct, name: dns, disks_gib: [2], interval: 1d}
    boot:
      101: {boot_seconds: 20, agent: true}
      102: {boot_seconds: 10}
      103: {boot_seconds: 5, mode: fails}
      104: {agent: true, mode: hangs}
      201: {boot_seconds: 3}
    """

    static let settings = """
        restore:
          workers: 4
          poll_interval: 2s
          listing_max_interval: 2s
        sources:
          - storage: pbs-prod
            target_storage: local-lvm
        guests:
          "106": {target_storage: plain}
        drill:
          boot_timeout: 20s
          running_seconds: 5s
        """

    /// Restores every copy with `once` (simulated time running).
    static func restoreAll(_ sim: SimulatorProcess, config: String) async throws {
        let (code, out, err) = try await runOffPool(["once", "--config.file", config])
        #expect(code == 0, "once: \(out)\(err)")
    }

    static func config(_ sim: SimulatorProcess, vmid: Int, type: String = "qemu") -> [String: String] {
        guard let body = sim.call("GET", "/api2/json/nodes/pve-standby/\(type)/\(vmid)/config"),
              let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], let d = o["data"] as? [String: Any] else { return [:] }
        return d.compactMapValues { v in (v as? String) ?? (v as? NSNumber).map { "\($0)" } }
    }

    /// The `netN` keys of a config (this suite runs the binary only: no module of the package is imported).
    static func isNet(_ key: String) -> Bool { key.hasPrefix("net") && key.count > 3 && key.dropFirst(3).allSatisfy(\.isNumber) }
    static func nets(_ c: [String: String]) -> [String: String] { c.filter { isNet($0.key) } }
    /// Every NIC has `link_down=1`.
    static func isolated(_ nets: [String: String]) -> Bool { nets.values.allSatisfy { $0.split(separator: ",").contains("link_down=1") } }

    @Test func drillsAgainstASimulatorProcess() async throws {
        let sim = try SimulatorProcess(scenario: Self.scenario)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state, settings: Self.settings)
        sim.startTicking(step: 5)
        try await Self.restoreAll(sim, config: config)
        let (holdCode, _, _) = try await runOffPool(["hold", "--config.file", config, "107"])
        #expect(holdCode == 0)
        let before = Dictionary(uniqueKeysWithValues: [101, 102, 103, 104, 106].map { ($0, Self.config(sim, vmid: $0)) } + [(201, Self.config(sim, vmid: 201, type: "lxc"))])
        #expect(Self.nets(before[101]!).count == 2 && Self.nets(before[201]!).count == 1, "the copies carry their NICs: \(before[101]!)")

        let (dryCode, dry, _) = try await runOffPool(["drill", "--config.file", config, "--all", "--dry-run"])
        #expect(dryCode == 0 && dry.contains("pbs-prod/105: would skip — not_isolatable: virtiofs0") && dry.contains("pbs-prod/101: would drill VMID 101"), "\(dry)")
        let mark = sim.journal().count

        let (code, out, err) = try await runOffPool(["drill", "--config.file", config, "--all"], timeout: 300)
        #expect(code == 1, "a failed drill exits 1: \(out)\(err)")
        let (repCode, report, _) = try await runOffPool(["drill", "--config.file", config, "--report"])
        #expect(repCode == 0)
        let row = { (vmid: Int) in report.components(separatedBy: "\n").first { $0.hasPrefix("pbs-prod/\(vmid) ") } ?? "" }
        #expect(row(101).contains(": passed") && row(101).contains("guest agent answered"), "\(report)")
        #expect(row(102).contains(": passed") && row(102).contains("ran without stopping"), "\(report)")
        #expect(row(201).contains(": passed"), "\(report)")
        #expect(row(103).contains(": failed"), "\(report)")
        #expect(row(104).contains(": failed"), "\(report)")
        #expect(row(105).contains(": skipped") && report.contains("not_isolatable"), "\(report)")
        #expect(row(106).contains(": skipped") && report.contains("no_snapshots"), "\(report)")
        #expect(row(107).contains(": skipped") && report.contains("held"), "\(report)")

        // The journal: every start of a drilled guest saw link_down=1 on every NIC (replaying each
        // config change and a rollback's return to the values before).
        let entries = Array(sim.journal()[mark...]).filter { $0.status == 200 }
        for (vmid, cfg) in before {
            var nets = Self.nets(cfg)
            var starts = 0
            for e in entries where e.vmid == vmid {
                if e.method == "PUT", e.path.hasSuffix("/config") {
                    for (k, v) in e.parameters where Self.isNet(k) { nets[k] = v }
                } else if e.method == "POST", e.path.hasSuffix("/rollback") {
                    nets = Self.nets(cfg)
                } else if e.method == "POST", e.path.hasSuffix("/status/start") {
                    starts += 1
                    #expect(!nets.isEmpty && Self.isolated(nets), "VMID \(vmid) started with \(nets)")
                }
            }
            #expect(starts == ([106].contains(vmid) ? 0 : 1), "VMID \(vmid) started \(starts) times")
            // The copy afterwards: the same config (a rollback gives a VM a new vmgenid; the marker records it).
            let after = Self.config(sim, vmid: vmid, type: vmid == 201 ? "lxc" : "qemu")
            let changed = Set(after.keys).union(cfg.keys).subtracting(["vmgenid", "description", "digest"]).filter { after[$0] != cfg[$0] }
            #expect(changed.isEmpty, "VMID \(vmid) changed: \(changed)")
        }
        #expect(!entries.contains { $0.vmid == 105 && $0.method != "GET" }, "the not-isolatable guest was not touched")
        #expect(!entries.contains { $0.vmid == 107 && $0.method != "GET" }, "the held guest was not touched")
        // Still ours: the next pass restores nothing.
        let restores = sim.restorePosts().count
        try await Self.restoreAll(sim, config: config)
        #expect(sim.restorePosts().count == restores, "no copy lost its proof of ownership")
    }

    /// `kill -9` of the service while a scheduled drill boots a copy: the restart undoes the drill
    /// (stop, rollback, snapshot removed) before it restores anything.
    @Test func killDuringADrillIsCleanedUpBeforeAnyRestore() async throws {
        let sim = try SimulatorProcess(scenario: """
            node: pve-standby
            pbs_storages: [{id: pbs-prod, datastore: store1}]
            target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}]
            backups:
              - {vmid: 104, type: vm, name: hangs, disks_gib: [4], interval: 1h, extra_config: {agent: "1"}}
            boot:
              104: {agent: true, mode: hangs}
            """)
        defer { sim.stop() }
        let state = sim.dir.appendingPathComponent("state.db").path
        let config = try sim.config(statePath: state, settings: """
            restore:
              workers: 1
              poll_interval: 1s
              listing_max_interval: 1s
            sources:
              - storage: pbs-prod
                target_storage: local-lvm
            drill:
              schedule: "*:*:0/5"
              boot_timeout: 6h
            """)
        sim.startTicking(step: 2)
        let port = Int.random(in: 45001...49000)
        func service() throws -> Process { try serviceProcess(config: config, port: port) }
        let first = try service()
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() } }
        var booted = false
        let deadline = Date().addingTimeInterval(90)
        while !booted && Date() < deadline {
            booted = sim.journal().contains { $0.vmid == 104 && $0.path.hasSuffix("/status/start") && $0.status == 200 }
            if !booted { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(booted, "the scheduled drill started the copy")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        await sim.stopTicking()
        sim.advance(3600)  // a newer backup: the restart will restore it
        let mark = sim.journal().count
        sim.startTicking(step: 2)
        let second = try service()
        defer { if second.isRunning { second.terminate(); second.waitUntilExit() } }
        var restored = false
        let deadline2 = Date().addingTimeInterval(90)
        while !restored && Date() < deadline2 {
            restored = sim.journal()[mark...].contains { $0.method == "POST" && $0.path.hasSuffix("/qemu") && $0.vmid == 104 }
            if !restored { try await Task.sleep(for: .milliseconds(200)) }
        }
        let after = sim.journal()[mark...].filter { $0.vmid == 104 && $0.status == 200 }.map { "\($0.method) \($0.path)" }
        let stop = after.firstIndex { $0.hasSuffix("/status/stop") }, rollback = after.firstIndex { $0.hasSuffix("/rollback") }
        let delete = after.firstIndex { $0.hasPrefix("DELETE") && $0.contains("/snapshot/") }, restore = after.firstIndex { $0.hasSuffix("/qemu") }
        #expect(stop != nil && rollback != nil && delete != nil && restore != nil, "\(after)")
        if let stop, let rollback, let delete, let restore { #expect(stop < rollback && rollback < delete && delete < restore, "\(after)") }
    }

    /// `failover --dry-run` against guests that need more memory than the node has free: the
    /// shortfall is reported (exit 1) and nothing changes.
    @Test func failoverDryRunReportsAMemoryShortfall() async throws {
        let sim = try SimulatorProcess(scenario: """
            node: pve-standby
            node_memory_bytes: 17179869184
            node_memory_used_bytes: 4294967296
            pbs_storages: [{id: pbs-prod, datastore: store1}]
            target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}]
            backups:
              - {vmid: 101, type: vm, name: big1, disks_gib: [4], interval: 1d, memory_mib: 8192}
              - {vmid: 102, type: vm, name: big2, disks_gib: [4], interval: 1d, memory_mib: 8192}
            """)
        defer { sim.stop() }
        let config = try sim.config(statePath: sim.dir.appendingPathComponent("state.db").path)
        sim.startTicking(step: 5)
        try await Self.restoreAll(sim, config: config)
        let mark = sim.journal().count
        let (code, out, _) = try await runOffPool(["failover", "--config.file", config, "--all", "--dry-run"])
        #expect(code == 1, "\(out)")
        #expect(out.contains("pbs-prod/101: would start VMID 101") && out.contains("8192 MiB"), "\(out)")
        #expect(out.contains("SHORT by 4.0 GiB") && out.contains("Capacity short: 2 of 2 guests startable"), "\(out)")
        #expect(!sim.journal()[mark...].contains { $0.method != "GET" }, "a dry run changes nothing")
    }
}
