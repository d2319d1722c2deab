import Foundation
import ProxmoxAPI
import Synchronization
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import TestSupport
import Testing

/// Generated administrator behaviour against the service (issue 12): between and during passes
/// an admin creates guests at free target VMIDs, clones our copies into slots, destroys copies,
/// starts copies, migrates them away and back, reboots the node, holds guests between passes and
/// in the middle of a pass, restores fail or are refused, backup groups change type, and the
/// state file is lost; a second source's slots may overlap the first's. The oracle knows every
/// guest the admin made and checks the simulator's journal: no mutating call of the service ever
/// changed a guest it had not made itself or touched a VMID two guests claim, no guest held in the
/// middle of a pass was restored in that pass, no guest frozen by `hold`/`failover` (flag mirrored
/// in PVE) was restored, stopped or destroyed even after the state file was lost, and with
/// keep_previous every guest that had a copy still has one.
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
        // Sometimes production replaced the guest: an older backup group of the other type.
        let superseded = guests.filter { _ in roll(5) == 0 }.map { g -> Scenario.BackedUpGuest in
            .init(vmid: g.vmid, type: g.type == .vm ? .ct : .vm, name: "old", storage: "pbs-prod", disks: [1 << 30], interval: 0, history: 1)
        }
        // Sometimes a second source whose slots overlap the first's (offset equal to the
        // keep_previous offset, or 0): every VMID claimed twice must stay untouched.
        let overlap = roll(4) == 0
        let second = overlap ? guests.filter { _ in roll(2) == 0 }.map { g -> Scenario.BackedUpGuest in
            .init(vmid: g.vmid, type: g.type, name: "b\(g.vmid)", storage: "pbs-b", disks: [1 << 30], interval: 3600, history: 1)
        } : []
        let secondOffset = keep ? 100_000 : 0
        var scenario = Rig.scenario(backedUp: guests + superseded + second)
        if overlap { scenario.pbsStorages.append(.init(id: "pbs-b", datastore: "b")) }
        func slotsOf(_ vmid: Int, offset: Int) -> [Int] { keep ? [vmid + offset, vmid + offset + 100_000] : [vmid + offset] }
        let claims = guests.flatMap { slotsOf($0.vmid, offset: 0) } + second.flatMap { slotsOf($0.vmid, offset: secondOffset) }
        let claimedTwice = Set(Dictionary(grouping: claims, by: { $0 }).filter { $0.value.count > 1 }.keys)
        scenario.seed = UInt64(seed)
        scenario.taskFailureProbability = Double(roll(3)) / 10
        // A hold written in the middle of a pass (after the plan read the state): armed per pass.
        let midPass = Mutex<(key: GuestKey?, store: StateStore?, fired: Bool)>((nil, nil, false))
        guard let rig = try? Rig(scenario: scenario, configure: { c in
            c.restore.keepPrevious = keep
            c.restore.startAfterRestore = roll(3) == 0
            c.restore.backoff = [.seconds(60)]
            c.restore.workers = 1 + roll(2)
            if overlap {
                c.sources = [StandbyConfig.Source(storage: "pbs-prod"), StandbyConfig.Source(storage: "pbs-b")]
                c.sources[1].vmidOffset = secondOffset
            }
            for i in c.sources.indices { c.sources[i].targetStorage = "local-lvm" }
        }, transport: { inner in
            HookTransport(inner: inner) { method, path in
                guard method == .get, path.contains("/storage/"), path.hasSuffix("/status") else { return }
                midPass.withLock { m in
                    guard let key = m.key, !m.fired else { return }
                    m.fired = true
                    _ = try? m.store?.update(key, targetVmid: key.vmid) { $0.held = true }
                }
            }
        }, logLevel: .critical) else { return "seed \(seed): rig" }
        defer { try? FileManager.default.removeItem(atPath: rig.dir) }
        // VMIDs whose current guest the admin made (the oracle), and since when (journal index).
        var foreign = Set<Int>()
        var hadCopy = Set<Int>()  // backed-up VMIDs with a copy of ours at the end of the last pass
        var frozen = Set<Int>()  // guests held or failed over with the flag mirrored on a copy in PVE
        func owner(_ slot: Int) -> Int { slot > 100_000 ? slot - 100_000 : slot }
        let slots = guests.flatMap { keep ? [$0.vmid, $0.vmid + 100_000] : [$0.vmid] }
        for pass in 0..<3 {
            // Admin actions between passes.
            for _ in 0..<roll(3) {
                let vmid = slots[roll(UInt64(slots.count))]
                switch roll(11) {
                case 9, 10:
                    // `failover --no-start` or `hold`: the state file, then the tag on the proven copies.
                    let g = guests[roll(UInt64(guests.count))], key = GuestKey(source: "pbs-prod", vmid: g.vmid)
                    let failover = roll(2) == 0
                    _ = try? rig.store.update(key, targetVmid: g.vmid) { if failover { $0.failedOver = true } else { $0.held = true } }
                    let tagged = (try? await rig.operations.mirror(failover ? Marker.failedOverTag : Marker.heldTag, on: key, set: true)) ?? []
                    if !tagged.isEmpty { frozen.insert(g.vmid) }
                case 6:
                    frozen.remove(owner(vmid))
                    _ = rig.simulator.adminMigrateAway(vmid: vmid, toNode: "pve-other")
                case 7:
                    _ = rig.simulator.adminMigrateHere(vmid: vmid)
                case 8:
                    rig.simulator.rebootNode()
                case 0 where rig.simulator.guestSnapshot(vmid) == nil:
                    if rig.simulator.adminCreate(vmid: vmid, type: roll(2) == 0 ? .vm : .ct, name: "admin") { foreign.insert(vmid) }
                case 1:
                    let to = slots[roll(UInt64(slots.count))]
                    if rig.simulator.guestSnapshot(to) == nil, rig.simulator.adminClone(from: vmid, to: to) { foreign.insert(to) }
                case 2 where !foreign.contains(vmid):
                    if rig.simulator.adminDestroy(vmid: vmid) {
                        hadCopy.remove(owner(vmid))
                        frozen.remove(owner(vmid))
                    }
                case 3:
                    _ = rig.simulator.adminStart(vmid: vmid)
                case 4 where !frozen.isEmpty || roll(2) == 0:
                    let g = guests[roll(UInt64(guests.count))]
                    if !frozen.contains(g.vmid) {
                        _ = try? rig.store.update(GuestKey(source: "pbs-prod", vmid: g.vmid), targetVmid: g.vmid) { $0.held.toggle() }
                    }
                default:
                    if pass > 0, roll(3) == 0 { try? rig.loseStateFile() }
                }
            }
            let heldMidPass = roll(4) == 0 ? guests[roll(UInt64(guests.count))].vmid : nil
            midPass.withLock { $0 = (heldMidPass.map { GuestKey(source: "pbs-prod", vmid: $0) }, rig.store, false) }
            let before = rig.simulator.journal().count
            await rig.once()
            let fired = midPass.withLock { m in defer { m.key = nil }; return m.fired }
            for e in rig.simulator.journal().dropFirst(before) {
                if let vmid = e.vmid, claimedTwice.contains(vmid) {
                    return "seed \(seed): \(e.method) \(e.path) on VMID \(vmid), which two guests claim"
                }
                guard let vmid = e.vmid, foreign.contains(vmid), e.method != "GET" else { continue }
                // A refused call changed nothing (PVE refused it); anything else touched the admin's guest.
                if e.status == 200 { return "seed \(seed): \(e.method) \(e.path) \(e.parameters) hit the admin's guest at \(vmid)" }
                if e.parameters["force"] == "1" { return "seed \(seed): forced restore attempted on the admin's guest at \(vmid)" }
            }
            // A guest frozen with its flag in PVE is never restored, stopped or destroyed — even
            // after the state file was lost.
            for e in rig.simulator.journal().dropFirst(before) where e.method != "GET" {
                guard let vmid = e.vmid, frozen.contains(owner(vmid)), !e.path.hasSuffix("/config") else { continue }
                return "seed \(seed): \(e.method) \(e.path) on VMID \(vmid) of a guest frozen in PVE"
            }
            if let h = heldMidPass, fired {
                let slotsOfHeld: Set<Int> = [h, h + 100_000]
                if let e = rig.simulator.journal().dropFirst(before).first(where: { e in
                    e.method == "POST" && (e.path.hasSuffix("/qemu") || e.path.hasSuffix("/lxc")) && e.vmid.map(slotsOfHeld.contains) == true }) {
                    return "seed \(seed): guest \(h) held during the pass, restored anyway: \(e.path) \(e.parameters)"
                }
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
