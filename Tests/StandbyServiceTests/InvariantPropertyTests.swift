import Foundation
import PropertyBased
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import TestSupport
import Testing

/// Random scenarios (guests, sizes, intervals, existing guests in every unsafe condition, random
/// task failures), several passes each on virtual time; the invariants must hold in all of them.
@Suite("Invariants over random scenarios")
struct InvariantPropertyTests {
    struct Unsafe: Sendable { var vmid: Int; var why: String }

    static func scenario(seed: Int) -> (Scenario, [Unsafe], held: Set<Int>) {
        var r = Seeded(seed: UInt64(seed))
        var s = Scenario()
        s.seed = UInt64(seed)
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "s")]
        s.targetStorages = [.init(id: "local-lvm", total: 10 << 40)]
        s.taskFailureProbability = Double(r.next() % 40) / 100
        var unsafe: [Unsafe] = []
        var held = Set<Int>()
        let count = 3 + Int(r.next() % 8)
        for i in 0..<count {
            let vmid = 100 + i
            let type: GuestType = r.next() % 3 == 0 ? .ct : .vm
            let interval = [900.0, 3600, 14400, 86400][Int(r.next() % 4)]
            s.backedUp.append(.init(vmid: vmid, type: type, name: "g\(vmid)", storage: "pbs-prod",
                                    disks: [Int64(1 + r.next() % 50) << 30], interval: interval,
                                    offset: Double(r.next() % UInt64(interval)), history: Int(r.next() % 3)))
            let marker = "pbs-standby: restored from pbs-prod:backup/\(type.rawValue)/\(vmid)/2020-01-01T00:00:00Z at 2020-01-01T00:00:00Z"
            switch r.next() % 8 {
            case 0:
                s.existing.append(.init(vmid: vmid, type: type, name: "foreign", tags: ["other"]))
                unsafe.append(.init(vmid: vmid, why: "foreign"))
            case 1:
                s.existing.append(.init(vmid: vmid, type: type, name: "run", status: "running", tags: ["pbs-standby"], description: marker))
                unsafe.append(.init(vmid: vmid, why: "running"))
            case 2:
                s.existing.append(.init(vmid: vmid, type: type, name: "lock", lock: "backup", tags: ["pbs-standby"], description: marker))
                unsafe.append(.init(vmid: vmid, why: "locked"))
            case 3:
                s.existing.append(.init(vmid: vmid, type: type, name: "prot", tags: ["pbs-standby"], description: marker, protection: true))
                unsafe.append(.init(vmid: vmid, why: "protected"))
            case 4:
                held.insert(vmid)
                unsafe.append(.init(vmid: vmid, why: "held"))
            default:
                break
            }
        }
        return (s, unsafe, held)
    }

    @Test func safetyAndNoDuplicateRestores() async throws {
        await propertyCheck(count: 25, input: Gen.int(in: 0...1_000_000)) { seed in
            let (scenario, unsafe, held) = Self.scenario(seed: seed)
            guard let rig = try? Rig(scenario: scenario, configure: { c in
                c.restore.workers = 1 + seed % 3
                c.restore.backoff = [.seconds(120), .seconds(600)]
            }) else { Issue.record("rig"); return }
            for vmid in held {
                _ = try? rig.store.update(GuestKey(source: "pbs-prod", vmid: vmid), targetVmid: vmid) { $0.held = true }
            }
            for _ in 0..<4 {
                await rig.once()
                rig.clock.advance(by: Double(600 + seed % 7200))
            }
            let journal = rig.simulator.journal()
            for u in unsafe {
                #expect(!journal.contains { $0.vmid == u.vmid }, "seed \(seed): \(u.why) guest \(u.vmid) touched: \(journal.filter { $0.vmid == u.vmid })")
            }
            let history = (try? rig.store.allHistory()) ?? []
            let successes = history.filter { $0.result == "success" }
            var seen = Set<String>()
            var lastTime: [Int: Int] = [:]
            for h in successes {
                #expect(seen.insert("\(h.vmid) \(h.volid)").inserted, "seed \(seed): \(h.volid) restored twice")
                let t = Volid(parsing: h.volid)!.backupTime
                #expect(t > lastTime[h.vmid, default: 0], "seed \(seed): older backup after a newer one for \(h.vmid)")
                lastTime[h.vmid] = t
            }
            #expect(!history.contains { $0.result == "running" }, "once leaves nothing running")
        }
    }
}

/// The simulator's SplitMix64, seeded from the property's input.
typealias Seeded = SplitMix64

extension SplitMix64 {
    init(seed: UInt64) { self.init(state: seed &+ 0x9E37_79B9_7F4A_7C15) }
}
