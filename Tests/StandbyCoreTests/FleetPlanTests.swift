import ProxmoxModel
import StandbyCore
import Testing

/// The whole-fleet plan (`planFleet`), pure: table tests and a property test over random
/// observations. No simulator, no store, no clock.
@Suite("Fleet plan (pure)")
struct FleetPlanTests {
    static let now = 1_795_000_000.0
    static let backupTime = 1_794_990_000

    static func config(_ change: (inout StandbyConfig) -> Void = { _ in }) -> StandbyConfig {
        var c = StandbyConfig()
        c.proxmox.node = "standby"
        c.restore.workers = 2
        var s = StandbyConfig.Source(storage: "pbs")
        s.targetStorage = "lvm"
        c.sources = [s]
        change(&c)
        return c
    }

    static func backup(_ vmid: Int, _ time: Int = backupTime, type: GuestType = .vm, size: Int64 = 10 << 30, storage: String = "pbs") -> BackupEntry {
        BackupEntry(volid: Volid(storage: storage, type: type, vmid: vmid, backupTime: time), ctime: time, size: size)
    }

    static func marker(_ vmid: Int, _ time: Int = backupTime, into target: Int? = nil) -> Marker.Info {
        Marker.Info(volid: Volid(storage: "pbs", type: .vm, vmid: vmid, backupTime: time), targetVmid: target ?? vmid)
    }

    static func observation(_ vmids: [Int], _ change: (inout Observation) -> Void = { _ in }) -> Observation {
        var o = Observation(now: now, catalogue: ["pbs": Dictionary(uniqueKeysWithValues: vmids.map { ($0, [backup($0)]) })])
        for v in vmids { o.slots[GuestKey(source: "pbs", vmid: v)] = SlotObservation(live: v, restoreInto: v) }
        change(&o)
        return o
    }

    static func key(_ vmid: Int) -> GuestKey { GuestKey(source: "pbs", vmid: vmid) }

    @Test func newGuestIsRestoredIntoItsPrimarySlotWithoutForce() {
        let p = planFleet(config: Self.config(), observation: Self.observation([101]), inFlight: [], context: PlanContext())
        let a = try! #require(p.starts.first)
        #expect(p.starts.count == 1 && a.targetVmid == 101 && !a.force && !a.stopFirst && a.executor == .pveTask && a.node == "standby")
        #expect(p.guests.first?.decision.state == .queued && p.queue.isEmpty)
    }

    @Test func upToDateCopyIsIdleAndRecordedWhenTheStateFileDoesNotKnowIt() {
        let o = Self.observation([101]) { o in
            o.guests[101] = GuestResource(vmid: 101, type: .vm, node: "standby", status: "stopped", tags: ["pbs-standby"])
            o.slots[Self.key(101)] = SlotObservation(live: 101, restoreInto: 101, liveMarker: Self.marker(101), intoOwnership: .ours(Self.marker(101)))
        }
        let p = planFleet(config: Self.config(), observation: o, inFlight: [], context: PlanContext())
        #expect(p.starts.isEmpty && p.guests.first?.decision == .upToDate)
        #expect(p.actions == [.recordCopy(Self.key(101), live: 101, marker: Self.marker(101))])
    }

    @Test func workerLimitsQueueTheRestInPolicyOrder() {
        let c = Self.config { $0.restore.workers = 2; $0.sources[0].workers = 1 }
        let p = planFleet(config: c, observation: Self.observation([101, 102, 103]), inFlight: [], context: PlanContext())
        #expect(p.starts.count == 1, "per-source limit 1")
        #expect(p.queue.count == 2 && Set(p.queue + p.starts.map(\.key)) == Set([101, 102, 103].map(Self.key)))
        let busy = planFleet(config: Self.config(), observation: Self.observation([101, 102, 103, 104]), inFlight: [Self.key(104)],
                             context: PlanContext())
        #expect(busy.starts.count == 1, "one of two workers is busy")
        #expect(busy.guests.first { $0.key == Self.key(104) }?.decision == .restoring)
    }

    @Test func nothingStartsWhileTheStateFileTakesNoWrites() {
        let p = planFleet(config: Self.config(), observation: Self.observation([101]) { $0.stateWritable = false }, inFlight: [],
                          context: PlanContext())
        #expect(p.starts.isEmpty && p.queue == [Self.key(101)])
    }

    @Test func overlappingSlotsBlockBothClaimants() {
        let c = Self.config {
            var b = StandbyConfig.Source(storage: "pbs2")
            b.vmidOffset = 0
            $0.sources.append(b)
        }
        let o = Self.observation([101]) { $0.catalogue["pbs2"] = [101: [Self.backup(101, storage: "pbs2")]] }
        let p = planFleet(config: c, observation: o, inFlight: [], context: PlanContext())
        #expect(p.starts.isEmpty)
        #expect(p.guests.count == 2 && p.guests.allSatisfy { $0.blockedReason == .slotConflict && $0.blockedDetail?.contains("VMID 101") == true })
    }

    @Test func keepPreviousRestoresIntoTheOtherSlotAndRemembersTheLiveOne() {
        let c = Self.config { $0.restore.keepPrevious = true; $0.restore.previousVmidOffset = 1000 }
        let o = Self.observation([101]) { o in
            o.catalogue["pbs"]![101] = [Self.backup(101), Self.backup(101, Self.backupTime + 3600)]
            o.guests[101] = GuestResource(vmid: 101, type: .vm, node: "standby", status: "stopped", tags: ["pbs-standby"])
            o.slots[Self.key(101)] = SlotObservation(live: 101, restoreInto: 1101, liveMarker: Self.marker(101), intoOwnership: .free)
        }
        let a = try! #require(planFleet(config: c, observation: o, inFlight: [], context: PlanContext()).starts.first)
        #expect(a.targetVmid == 1101 && a.liveVmid == 101 && !a.force && a.backup.volid.backupTime == Self.backupTime + 3600)
    }

    @Test func freezesInFlightAndNotOursNeverStart() {
        let o = Self.observation([101, 102, 103, 104]) { o in
            o.slots[Self.key(101)]!.copyTags = [Marker.heldTag]
            o.memory[Self.key(102)] = GuestMemory(failedOver: true)
            o.guests[104] = GuestResource(vmid: 104, type: .vm, node: "standby", status: "stopped")
            o.slots[Self.key(104)]!.intoOwnership = .notOurs("an administrator's VM")
        }
        let p = planFleet(config: Self.config { $0.restore.workers = 8 }, observation: o, inFlight: [Self.key(103)], context: PlanContext())
        #expect(p.starts.isEmpty)
        let d = Dictionary(uniqueKeysWithValues: p.guests.map { ($0.key.vmid, $0) })
        #expect(d[101]?.decision == .held && d[102]?.decision == .failedOver && d[103]?.decision == .restoring)
        #expect(d[104]?.blockedReason == .notOwned && d[104]?.blockedDetail == "an administrator's VM")
    }

    @Test func staleLockOfOurVMIsClearedOnlyWhenTheCallerIsRoot() {
        let o = Self.observation([101]) { o in
            o.catalogue["pbs"]![101] = [Self.backup(101, Self.backupTime + 60)]
            o.guests[101] = GuestResource(vmid: 101, type: .vm, node: "standby", status: "stopped", lock: "create", tags: ["pbs-standby"])
            o.slots[Self.key(101)] = SlotObservation(live: 101, restoreInto: 101, intoOwnership: .remains, staleLock: true)
        }
        let token = planFleet(config: Self.config(), observation: o, inFlight: [], context: PlanContext())
        #expect(token.actions.isEmpty && token.guests[0].blockedReason == .staleLock && token.guests[0].blockedDetail?.contains("qm unlock 101") == true)
        let root = planFleet(config: Self.config(), observation: o, inFlight: [], context: PlanContext(canClearLocks: true))
        #expect(root.actions == [.clearStaleLock(Slot(source: "pbs", vmid: 101, type: .vm, target: 101))])
        #expect(root.starts.isEmpty)
    }

    /// A forced VM restore frees the copy's disks first — but only disks on the target storage
    /// make room there (review finding: a copy on another storage frees nothing where PVE allocates).
    @Test func onlyTheCopysDisksOnTheTargetStorageCountAsReclaimable() {
        func observed(reclaimable: Int64) -> Observation {
            Self.observation([101]) { o in
                o.catalogue["pbs"]![101] = [Self.backup(101, Self.backupTime + 3600, size: 100 << 30)]
                o.guests[101] = GuestResource(vmid: 101, type: .vm, node: "standby", status: "stopped", tags: ["pbs-standby"], maxdisk: 100 << 30)
                o.slots[Self.key(101)] = SlotObservation(live: 101, restoreInto: 101, liveMarker: Self.marker(101),
                                                          intoOwnership: .ours(Self.marker(101)), reclaimableBytes: reclaimable)
                o.freeBytes["lvm"] = 20 << 30
            }
        }
        let elsewhere = planFleet(config: Self.config(), observation: observed(reclaimable: 0), inFlight: [], context: PlanContext())
        #expect(elsewhere.guests[0].blockedReason == .insufficientSpace, "maxdisk alone must not count")
        let here = planFleet(config: Self.config(), observation: observed(reclaimable: 100 << 30), inFlight: [], context: PlanContext())
        #expect(here.starts.first?.force == true)
    }

    @Test func onceRestoresEachGuestAtMostOnceAndDownSourcesAreNamed() {
        let c = Self.config { $0.sources.append(StandbyConfig.Source(storage: "down")) }
        let p = planFleet(config: c, observation: Self.observation([101, 102]), inFlight: [],
                          context: PlanContext(startedThisOnce: [Self.key(101)]))
        #expect(p.starts.map(\.key) == [Self.key(102)] && p.downSources == ["down"])
    }

    /// Random observations: the plan never starts more than the free workers, never a guest in
    /// flight, frozen, in a slot conflict or whose target is not proven ours, forces only over a
    /// proven guest, and never starts and queues the same guest.
    @Test func propertiesOverRandomObservations() {
        var r = CoreRandom(state: 11)
        for _ in 0..<3000 {
            let workers = Int(r.next() % 4) + 1
            let c = Self.config { c in
                c.restore.workers = workers
                c.restore.keepPrevious = r.next() % 2 == 0
                c.restore.previousVmidOffset = 5
                if r.next() % 3 == 0 { c.sources.append(StandbyConfig.Source(storage: "pbs2")) }
            }
            let vmids = (0..<Int(r.next() % 8)).map { _ in 100 + Int(r.next() % 12) }
            var o = Observation(now: Self.now, stateWritable: r.next() % 5 != 0)
            for src in c.sources.map(\.storage) where r.next() % 6 != 0 {
                o.catalogue[src] = Dictionary(vmids.map { ($0, [Self.backup($0, Self.backupTime + Int(r.next() % 3) * 3600, storage: src)]) },
                                              uniquingKeysWith: { a, _ in a })
            }
            var inFlight = Set<GuestKey>()
            for src in c.sources.map(\.storage) {
                for v in Set(vmids) {
                    let k = GuestKey(source: src, vmid: v)
                    if r.next() % 6 == 0 { inFlight.insert(k) }
                    if r.next() % 4 != 0 {
                        let owners: [Ownership] = [.free, .ours(Self.marker(v)), .remains, .adopted, .notOurs("x"), .unverified]
                        var s = SlotObservation(live: v, restoreInto: v, intoOwnership: owners[Int(r.next() % 6)])
                        if r.next() % 5 == 0 { s.copyTags = [Marker.heldTag] }
                        o.slots[k] = s
                    }
                    if r.next() % 3 == 0 { o.guests[v] = GuestResource(vmid: v, type: .vm, node: "standby", status: r.next() % 4 == 0 ? "running" : "stopped") }
                }
            }
            let p = planFleet(config: c, observation: o, inFlight: inFlight, context: PlanContext())
            let claims = slotConflicts(c, selectGuests(c, catalogue: o.catalogue))
            #expect(p.starts.count <= max(0, workers - inFlight.count))
            #expect(Set(p.starts.map(\.key)).isDisjoint(with: p.queue))
            for a in p.starts {
                #expect(o.stateWritable && !inFlight.contains(a.key) && claims[a.key] == nil)
                let s = o.slots[a.key]
                #expect(s?.copyTags.contains(Marker.heldTag) != true)
                if o.guests[a.targetVmid] != nil { #expect(s?.intoOwnership.isOurs == true && a.force) } else { #expect(!a.force) }
            }
        }
    }
}

/// A seeded SplitMix64, so the core's tests need nothing but the core.
struct CoreRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
