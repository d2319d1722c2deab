import ConfigSupport
import ProxmoxModel
import StandbyCore
import Testing

/// Ownership is a proof from what PVE shows (issue 12): the marker names the slot's source,
/// VMID, type and target VMID; a VM's vmgenid or the node's task history proves the instance.
@Suite("Ownership proof, marker, slot map")
struct OwnershipTests {
    static let node = "pve-standby"
    static let volid = Volid(storage: "pbs-prod", type: .vm, vmid: 101, backupTime: 1_795_000_000)
    static let slot = Slot(source: "pbs-prod", vmid: 101, type: .vm, target: 101)
    static let user = "pbs-standby@pve!standby"

    static func guest(_ vmid: Int = 101, type: GuestType = .vm, node: String = node) -> GuestResource {
        GuestResource(vmid: vmid, type: type, node: node, status: "stopped", tags: ["pbs-standby"])
    }
    static func config(marker: Marker.Info?, vmgenid: String? = "aaaa-1") -> GuestConfig {
        var raw: [String: String] = [:]
        if let vmgenid { raw["vmgenid"] = vmgenid }
        return GuestConfig(description: marker?.line, tags: ["pbs-standby"], raw: raw)
    }
    static func task(_ type: String, _ id: Int, user: String = user, start: Int = 1_795_000_100) -> TaskSummary {
        TaskSummary(upid: UPID(node: node, pid: UInt32(start % 65536), pstart: 1, startTime: start, type: type, id: String(id), user: user),
                    status: "OK", endTime: start + 60)
    }

    @Test func markerRoundTripsAndKeepsOtherLines() {
        let info = Marker.Info(volid: Self.volid, targetVmid: 101, restoredAt: "2026-11-26T10:05:00Z", vmgenid: "6f1c-9")
        #expect(Marker.parse(info.line) == info)
        let d = Marker.replacing(in: "old marker line?\nnotes", with: info)
        #expect(Marker.parse(d) == info && d.hasSuffix("notes"))
        let legacy = "pbs-standby: restored from \(Self.volid) at 2026-11-26T10:05:00Z"
        #expect(Marker.parse(legacy)?.targetVmid == nil, "markers of older versions name no target")
    }

    @Test func vmWithMatchingMarkerAndVmgenidIsOurs() {
        let m = Marker.Info(volid: Self.volid, targetVmid: 101, vmgenid: "aaaa-1")
        let e = SlotEvidence(guest: Self.guest(), config: Self.config(marker: m))
        #expect(proveOwnership(of: Self.slot, node: Self.node, evidence: e) == .ours(m))
    }

    /// Item 4: an admin's clone copies tags and description; at another VMID its marker names the
    /// VMID it was cloned from, and a clone back into the slot has another vmgenid.
    @Test func clonesAreNotOurs() {
        let m = Marker.Info(volid: Self.volid, targetVmid: 101, vmgenid: "aaaa-1")
        // The target-VMID rule alone (same vmgenid, our task newest): a marker naming 101 at 100101.
        let cloneSlot = Slot(source: "pbs-prod", vmid: 101, type: .vm, target: 100_101)
        let atOtherVMID = SlotEvidence(guest: Self.guest(100_101), config: Self.config(marker: m, vmgenid: "aaaa-1"),
                                       tasks: [Self.task("qmrestore", 100_101)], tokenUser: Self.user)
        #expect(!proveOwnership(of: cloneSlot, node: Self.node, evidence: atOtherVMID).isOurs)
        // The vmgenid rule alone (our task is the newest listed, the marker names this VMID).
        let backIntoSlot = SlotEvidence(guest: Self.guest(), config: Self.config(marker: m, vmgenid: "cccc-3"),
                                        tasks: [Self.task("qmrestore", 101)], tokenUser: Self.user)
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: backIntoSlot).isOurs)
        // A CT clone has no vmgenid: only the target VMID in its marker tells it apart.
        let ct = Marker.Info(volid: Volid(storage: "pbs-prod", type: .ct, vmid: 201, backupTime: 1), targetVmid: 201)
        let ctClone = SlotEvidence(guest: Self.guest(5000, type: .ct), config: Self.config(marker: ct, vmgenid: nil), tasks: [], tokenUser: Self.user)
        #expect(!proveOwnership(of: Slot(source: "pbs-prod", vmid: 201, type: .ct, target: 5000), node: Self.node, evidence: ctClone).isOurs)
    }

    /// An adoption holds only for the guest adopted (its identity), never for a successor.
    @Test func adoptionIsTiedToTheGuestsIdentity() {
        let cfg = Self.config(marker: nil, vmgenid: "aaaa-1")
        let same = SlotEvidence(guest: Self.guest(), config: cfg, adoptedIdentity: "vmgenid:aaaa-1")
        #expect(proveOwnership(of: Self.slot, node: Self.node, evidence: same) == .adopted)
        let other = SlotEvidence(guest: Self.guest(), config: Self.config(marker: nil, vmgenid: "bbbb-2"), adoptedIdentity: "vmgenid:aaaa-1")
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: other).isOurs)
    }

    @Test func containersNeedOurTaskAsTheNewestCreator() {
        let ctVolid = Volid(storage: "pbs-prod", type: .ct, vmid: 201, backupTime: 1_795_000_000)
        let slot = Slot(source: "pbs-prod", vmid: 201, type: .ct, target: 201)
        let m = Marker.Info(volid: ctVolid, targetVmid: 201)
        let g = Self.guest(201, type: .ct)
        let cfg = Self.config(marker: m, vmgenid: nil)
        #expect(proveOwnership(of: slot, node: Self.node, evidence: SlotEvidence(guest: g, config: cfg)) == .unverified, "needs the task list")
        let ours = SlotEvidence(guest: g, config: cfg, tasks: [Self.task("vzrestore", 201)], tokenUser: Self.user)
        #expect(proveOwnership(of: slot, node: Self.node, evidence: ours) == .ours(m))
        let adminRestoredLater = SlotEvidence(guest: g, config: cfg,
                                              tasks: [Self.task("vzrestore", 201), Self.task("vzrestore", 201, user: "root@pam", start: 1_795_000_900)],
                                              tokenUser: Self.user)
        #expect(!proveOwnership(of: slot, node: Self.node, evidence: adminRestoredLater).isOurs)
    }

    /// Item 1: a failed restore leaves remains (no marker); they are ours only while our recorded
    /// task is the newest that created the VMID — an admin's new guest there is not.
    @Test func remainsOfOurFailedRestoreOnlyWhileOurTaskIsNewest() {
        let ourTask = Self.task("qmrestore", 101)
        let cfg = Self.config(marker: nil, vmgenid: nil)
        let remains = SlotEvidence(guest: Self.guest(), config: cfg, tasks: [ourTask], ourUPIDs: [ourTask.upid.description])
        #expect(proveOwnership(of: Self.slot, node: Self.node, evidence: remains) == .remains)
        let adminCreated = SlotEvidence(guest: Self.guest(), config: cfg,
                                        tasks: [ourTask, Self.task("qmcreate", 101, user: "root@pam", start: 1_795_000_500)],
                                        ourUPIDs: [ourTask.upid.description])
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: adminCreated).isOurs)
        let neverOurs = SlotEvidence(guest: Self.guest(), config: cfg)
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: neverOurs).isOurs, "a state file without our UPIDs proves nothing")
    }

    @Test func otherNodeOtherTypeOtherSlotAreNotOurs() {
        let m = Marker.Info(volid: Self.volid, targetVmid: 101, vmgenid: "aaaa-1")
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: SlotEvidence(guest: Self.guest(node: "pve-prod"), config: Self.config(marker: m))).isOurs)
        #expect(!proveOwnership(of: Self.slot, node: Self.node, evidence: SlotEvidence(guest: Self.guest(type: .ct), config: Self.config(marker: m))).isOurs)
        let otherSource = Slot(source: "pbs-other", vmid: 101, type: .vm, target: 101)
        #expect(!proveOwnership(of: otherSource, node: Self.node, evidence: SlotEvidence(guest: Self.guest(), config: Self.config(marker: m))).isOurs)
        #expect(proveOwnership(of: Self.slot, node: Self.node, evidence: SlotEvidence(guest: nil)) == .free)
    }

    /// Item 5: a VMID with an old ct group and a newer vm group is a VM; the ct group is superseded.
    @Test func typeComesFromTheNewestGroup() {
        let ct = BackupEntry(volid: Volid(storage: "s", type: .ct, vmid: 101, backupTime: 100), ctime: 100, size: 10)
        let vm = BackupEntry(volid: Volid(storage: "s", type: .vm, vmid: 101, backupTime: 200), ctime: 200, size: 10)
        let running = BackupEntry(volid: Volid(storage: "s", type: .ct, vmid: 101, backupTime: 300), ctime: 300, size: 1)
        let g = BackupGroups([ct, vm, running])
        #expect(g.type == .vm && g.entries == [vm] && g.superseded == [ct, running])
    }

    /// Item 2: overlapping slot families are refused at load, naming both claimants and the keys.
    @Test func slotMapRefusesOverlapsAtLoad() throws {
        let overlap = """
            restore: {keep_previous: true}
            sources:
              - {storage: a}
              - {storage: b, vmid_offset: 100000}
            """
        #expect {
            _ = try StandbyConfig.parse(yaml: overlap)
        } throws: { e in
            let t = "\(e)"
            return t.contains("claimed twice") && t.contains("source 'a'") && t.contains("source 'b'") && t.contains("previous_vmid_offset")
        }
        let sameOffset = "sources:\n  - {storage: a, include: [\"100-199\"]}\n  - {storage: b, include: [150]}\n"
        #expect(throws: ConfigError.self) { _ = try StandbyConfig.parse(yaml: sameOffset) }
        let boundedShift = "sources:\n  - {storage: a, include: [\"100-1199\"]}\n  - {storage: b, include: [\"100-199\"], vmid_offset: 1000}\n"
        #expect(throws: ConfigError.self) { _ = try StandbyConfig.parse(yaml: boundedShift) }
        let beyond = "sources:\n  - {storage: a, include: [\"999999000-999999999\"], vmid_offset: 1000}\n"
        #expect(throws: ConfigError.self) { _ = try StandbyConfig.parse(yaml: beyond) }
        let disjoint = "restore: {keep_previous: true}\nsources:\n  - {storage: a, include: [\"100-199\"]}\n  - {storage: b, include: [\"100-199\"], vmid_offset: 1000}\n"
        _ = try StandbyConfig.parse(yaml: disjoint)
        let hugeMargin = "restore: {space_margin: 1e10}\nsources:\n  - {storage: a}\n"
        #expect(throws: ConfigError.self) { _ = try StandbyConfig.parse(yaml: hugeMargin) }
    }

    /// Found by the config fuzzer: a "glob" of digits Int() does not read (no `?`, no `*`) made
    /// the slot map pad a number to a negative width.
    @Test func globsWithoutWildcardsDoNotTrapTheSlotMap() throws {
        _ = try? StandbyConfig.parse(yaml: "sources:\n  - {storage: a, include: [\"١٢٣\"]}\n  - {storage: b, include: [\"1?3\"]}\n")
        let c = try StandbyConfig.parse(yaml: "sources:\n  - {storage: a, include: [\"1?3\"]}\n  - {storage: b, include: [\"2?3\"]}\n")
        #expect(c.sources.count == 2, "disjoint ? globs at the same offset are fine")
        #expect(throws: ConfigError.self) { _ = try StandbyConfig.parse(yaml: "sources:\n  - {storage: a, include: [\"1?3\"]}\n  - {storage: b, include: [153]}\n") }
    }

    @Test func slotConflictsBlockEveryClaimant() {
        let a = GuestKey(source: "a", vmid: 101), b = GuestKey(source: "b", vmid: 101)
        let c = SlotMap.conflicts([.init(key: a, target: 101, secondary: false), .init(key: a, target: 100_101, secondary: true),
                                   .init(key: b, target: 100_101, secondary: false)])
        #expect(Set(c.keys) == [a, b])
    }

    /// Item 11 as a property: random observations with sizes, free space, times and margins
    /// anywhere in their types' ranges never trap the planner or the scheduling policy.
    @Test func plannerArithmeticPropertyOverRandomObservations() {
        var r = CoreRandom(state: 12)
        for _ in 0..<20_000 {
            var g = GuestInput(source: "s", vmid: 100, type: .vm, settings: GuestSettings(targetVmid: 100, targetStorage: "t", priority: Int(truncatingIfNeeded: r.next()) % 1000, rpoTarget: .seconds(1), startAfterRestore: r.next() % 2 == 0))
            let t = Int(r.next() % 4_000_000_000)
            g.latest = BackupEntry(volid: Volid(storage: "s", type: .vm, vmid: 100, backupTime: t), ctime: t, size: Int64(bitPattern: r.next()))
            g.restoredBackupTime = r.next() % 3 == 0 ? nil : Int(r.next() % 4_000_000_000)
            g.targetFreeBytes = r.next() % 4 == 0 ? nil : Int64(bitPattern: r.next())
            g.target = r.next() % 2 == 0 ? nil : GuestResource(vmid: 100, type: .vm, node: "n", status: "stopped", maxdisk: Int64(bitPattern: r.next()))
            g.ownership = [.free, .adopted, .remains, .unverified, .notOurs("x")][Int(r.next() % 5)]
            g.nextRetryAt = r.next() % 2 == 0 ? nil : Double(bitPattern: r.next())
            g.failedAttemptsOfLatest = Int(truncatingIfNeeded: r.next())
            let d = plan(g, now: Double(bitPattern: r.next()), rules: PlanRules(retriesPerBackup: 5, spaceMargin: Double(r.next() % 1000) / 100))
            if case .restore(let b, _, _) = d {
                _ = SchedulingPolicy.order([RestoreCandidate(key: GuestKey(source: "s", vmid: 100), priority: g.settings.priority, hasCopy: true,
                                                             gainSeconds: Double(b.volid.backupTime) - Double(g.restoredBackupTime ?? 0),
                                                             expectedSeconds: Double(b.size) / 1, backupTime: b.volid.backupTime)])
            }
        }
    }

    /// Item 11: the planner's arithmetic never traps, whatever sizes PVE reports.
    @Test func plannerArithmeticDoesNotTrap() {
        for size in [Int64.max, Int64.max - 1, 8_400_000_000_000_000_000, -5, 0, 2] {
            for free in [Int64.max, 0, -1] {
                var g = GuestInput(source: "s", vmid: 100, type: .vm, settings: GuestSettings(targetVmid: 100, targetStorage: "t", priority: 0, rpoTarget: .seconds(1), startAfterRestore: false))
                g.latest = BackupEntry(volid: Volid(storage: "s", type: .vm, vmid: 100, backupTime: 10), ctime: 10, size: size)
                g.targetFreeBytes = free
                g.target = GuestResource(vmid: 100, type: .vm, node: "n", status: "stopped", maxdisk: Int64.max)
                g.ownership = .adopted
                _ = plan(g, now: 20, rules: PlanRules(spaceMargin: 10))
            }
        }
    }
}

