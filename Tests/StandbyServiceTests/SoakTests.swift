import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore
import Logging
import Testing

/// A simulated week at high speed with random faults (task failures, API errors), keep_previous
/// on, checking at every step: unsafe guests untouched, never without a good copy once one
/// existed, no backup restored twice; resident memory sampled each simulated day stays flat.
@Suite("Soak: a simulated week with random faults")
struct SoakTests {
    @Test func simulatedWeek() async throws {
        var s = Scenario()
        s.seed = 99
        s.pbsStorages = [.init(id: "pbs", datastore: "s")]
        s.targetStorages = [.init(id: "lvm", total: 1 << 50)]
        s.taskFailureProbability = 0.15
        s.faults = [.init(method: "GET", path: "/content", status: 503, message: "busy", probability: 0.05),
                    .init(method: "GET", path: "/status", status: 595, message: "No route to host", probability: 0.05)]
        var r = Seeded(seed: 99)
        let intervals: [Double] = [1800, 3600, 14400]
        for i in 0..<12 {
            let size: Int64 = Int64(2 + r.next() % 30) << 30
            let interval = intervals[Int(r.next() % 3)]
            let offset = Double(r.next() % 900)
            let type: GuestType = i % 4 == 3 ? .ct : .vm
            s.backedUp.append(.init(vmid: 100 + i, type: type, name: "g\(i)", storage: "pbs",
                                    disks: [size], interval: interval, offset: offset, history: 1))
        }
        let marker = "pbs-standby: restored from pbs:backup/vm/1/2020-01-01T00:00:00Z at 2020-01-01T00:00:00Z"
        let unsafe = [200, 201, 202, 203]
        for (i, vmid) in unsafe.enumerated() {
            s.backedUp.append(.init(vmid: vmid, type: .vm, name: "u\(vmid)", storage: "pbs", disks: [2 << 30], interval: 3600))
            switch i {
            case 0: s.existing.append(.init(vmid: vmid, type: .vm, name: "foreign", tags: ["x"]))
            case 1: s.existing.append(.init(vmid: vmid, type: .vm, name: "running", status: "running", tags: ["pbs-standby"], description: marker))
            case 2: s.existing.append(.init(vmid: vmid, type: .vm, name: "locked", lock: "migrate", tags: ["pbs-standby"], description: marker))
            default: s.existing.append(.init(vmid: vmid, type: .vm, name: "protected", tags: ["pbs-standby"], description: marker, protection: true))
            }
        }
        let manual = ManualClock(start: 1_795_000_000)
        let clock = SteppedClock(manual)
        let sim = PVESimulator(scenario: s, clock: manual)
        var config = StandbyRuntime.demoConfig(scenario: s, statePath: ":memory:")
        config.restore.workers = 2
        config.restore.keepPrevious = true
        config.restore.previousVmidOffset = 10_000
        config.restore.backoff = [.seconds(120), .seconds(600)]
        config.restore.taskPollInterval = .seconds(5)
        config.sources = [{ var x = StandbyConfig.Source(storage: "pbs"); x.targetStorage = "lvm"; return x }()]
        let store = try StateStore()
        var logger = Logger(label: "soak")
        logger.logLevel = .critical
        let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: store, clock: clock, logger: logger)
        let held = 115
        try store.update(GuestKey(source: "pbs", vmid: held), targetVmid: held) { $0.held = true }

        var everHadCopy = Set<Int>()
        var violations: [String] = []
        var rss: [Double] = []
        var nextDay = manual.now() + 86400
        let end = manual.now() + 7 * 86400
        await SimulationDriver(reconciler: rt.reconciler, clock: clock).run(until: end) { now, _ in
            // Never without a good copy: one of the two slots carries our marker and a volid.
            for g in s.backedUp where g.vmid < 200 && g.vmid != held {
                let good = [g.vmid, g.vmid + 10_000].contains { v in
                    guard let r = sim.guestSnapshot(v), Marker.isTagged(r.tags) else { return false }
                    return Marker.volid(inDescription: sim.guestDescription(v)) != nil
                }
                if good { everHadCopy.insert(g.vmid) } else if everHadCopy.contains(g.vmid) {
                    violations.append("\(Int(now)): \(g.vmid) lost its good copy")
                }
            }
            if now >= nextDay {
                rss.append(Self.residentMB())
                nextDay += 86400
            }
        }
        #expect(violations.isEmpty, "\(violations.prefix(5))")
        #expect(everHadCopy.count >= 9, "most guests got a copy despite the faults: \(everHadCopy.count)")
        let journal = sim.journal()
        for vmid in unsafe + [held, held + 10_000] {
            #expect(!journal.contains { $0.vmid == vmid }, "unsafe guest \(vmid) touched")
        }
        var seen = Set<String>()
        for h in try store.allHistory() where h.result == "success" {
            #expect(seen.insert("\(h.vmid) \(h.volid)").inserted, "\(h.volid) restored twice")
        }
        let failures = try store.allHistory().filter { $0.result == "failure" }.count
        #expect(failures > 0, "the faults did happen")
        // Memory: flat once the simulator's bounded task log is full (day 3 on); the engine keeps
        // a fixed-size view per guest. Sampled per simulated day.
        print("soak RSS per simulated day (MB): \(rss.map { String(format: "%.1f", $0) })")
        if rss.count >= 6 {
            #expect(rss[5] - rss[2] < 10, "RSS per simulated day: \(rss)")
        }
    }

    static func residentMB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
        }
        return 0
    }
}
