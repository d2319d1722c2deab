import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import Testing

/// Generated administrator behaviour against the service (issue 12): between and during passes
/// an admin creates guests at free target VMIDs, clones our copies into slots, destroys copies,
/// starts copies, holds guests mid-pass, restores fail or are refused, and the state file is
/// lost. The oracle knows every guest the admin made and checks the simulator's journal: no
/// mutating call of the service ever targeted a VMID holding a guest it had not made itself, and
/// with keep_previous every guest that once had a copy still has one.
@Suite("Ownership invariants over generated admin behaviour")
struct OwnershipInvariantTests {
    /// Scenarios per run: 10,000 in `make test` (INVARIANT_SCENARIOS overrides), seeded and reproducible.
    static let count = Int(ProcessInfo.processInfo.environment["INVARIANT_SCENARIOS"] ?? "") ?? 10_000

    @Test func noMutationEverTargetsAGuestThatIsNotOurs() async throws {
        var violations: [String] = []
        for seed in 0..<Self.count {
            if let v = await Self.run(seed: seed) { violations.append(v) }
            if violations.count >= 5 { break }
        }
        #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
    }

    /// One scenario; returns a violation, if any.
    static func run(seed: Int) async -> String? {
        var r = SplitMix64(state: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        func roll(_ n: UInt64) -> Int { Int(r.next() % n) }
        let keep = roll(2) == 0
        let guests = (0..<(1 + roll(3))).map { i -> Scenario.BackedUpGuest in
            .init(vmid: 101 + i, type: roll(3) == 0 ? .ct : .vm, name: "g\(i)", storage: "pbs-prod", disks: [Int64(1 + roll(4)) << 30],
                  interval: 3600, offset: Double(roll(3600)), history: 1, restoreFails: roll(6) == 0)
        }
        var scenario = Rig.scenario(backedUp: guests)
        scenario.seed = UInt64(seed)
        scenario.taskFailureProbability = Double(roll(3)) / 10
        guard let rig = try? Rig(scenario: scenario, configure: { c in
            c.restore.keepPrevious = keep
            c.restore.startAfterRestore = roll(3) == 0
            c.restore.backoff = [.seconds(60)]
            c.restore.workers = 1 + roll(2)
            for i in c.sources.indices { c.sources[i].targetStorage = "local-lvm" }
        }) else { return "seed \(seed): rig" }
        defer { try? FileManager.default.removeItem(atPath: rig.dir) }
        // VMIDs whose current guest the admin made (the oracle), and since when (journal index).
        var foreign = Set<Int>()
        var hadCopy = Set<Int>()  // backed-up VMIDs with a copy of ours at the end of the last pass
        let slots = guests.flatMap { keep ? [$0.vmid, $0.vmid + 100_000] : [$0.vmid] }
        for pass in 0..<3 {
            // Admin actions between passes.
            for _ in 0..<roll(3) {
                let vmid = slots[roll(UInt64(slots.count))]
                switch roll(6) {
                case 0 where rig.simulator.guestSnapshot(vmid) == nil:
                    if rig.simulator.adminCreate(vmid: vmid, type: roll(2) == 0 ? .vm : .ct, name: "admin") { foreign.insert(vmid) }
                case 1:
                    let to = slots[roll(UInt64(slots.count))]
                    if rig.simulator.guestSnapshot(to) == nil, rig.simulator.adminClone(from: vmid, to: to) { foreign.insert(to) }
                case 2 where !foreign.contains(vmid):
                    if rig.simulator.adminDestroy(vmid: vmid) { hadCopy.remove(vmid > 100_000 ? vmid - 100_000 : vmid) }
                case 3:
                    _ = rig.simulator.adminStart(vmid: vmid)
                case 4:
                    let g = guests[roll(UInt64(guests.count))]
                    _ = try? rig.store.update(GuestKey(source: "pbs-prod", vmid: g.vmid), targetVmid: g.vmid) { $0.held.toggle() }
                default:
                    if pass > 0, roll(3) == 0 { try? rig.loseStateFile() }
                }
            }
            let before = rig.simulator.journal().count
            await rig.once()
            for e in rig.simulator.journal().dropFirst(before) {
                guard let vmid = e.vmid, foreign.contains(vmid), e.method != "GET" else { continue }
                // A refused call changed nothing (PVE refused it); anything else touched the admin's guest.
                if e.status == 200 { return "seed \(seed): \(e.method) \(e.path) \(e.parameters) hit the admin's guest at \(vmid)" }
                if e.parameters["force"] == "1" { return "seed \(seed): forced restore attempted on the admin's guest at \(vmid)" }
            }
            // keep_previous: a guest that had a copy still has one (a failed restore into the
            // other slot never costs the live copy).
            for g in guests {
                let ours = [g.vmid, g.vmid + 100_000].filter { v in
                    !foreign.contains(v) && Marker.parse(rig.simulator.guestDescription(v)).map { $0.volid.vmid == g.vmid && $0.targetVmid == v } == true
                }
                if keep, hadCopy.contains(g.vmid), ours.isEmpty { return "seed \(seed): guest \(g.vmid) lost its only copy with keep_previous" }
                if ours.isEmpty { hadCopy.remove(g.vmid) } else { hadCopy.insert(g.vmid) }
            }
            rig.clock.advance(by: 3600 + Double(roll(600)))
        }
        return nil
    }
}
