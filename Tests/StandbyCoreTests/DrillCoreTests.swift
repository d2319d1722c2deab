import ConfigSupport
import ProxmoxModel
import StandbyCore
import Testing

/// Issue 16 in the pure core: config, isolation, the planner's drilling rules, the readiness verdict.
@Suite("DR drills: config, isolation, planning, readiness")
struct DrillCoreTests {
    static let base = "sources:\n  - storage: pbs\n"

    func parse(_ extra: String) throws -> StandbyConfig { try StandbyConfig.parse(yaml: Self.base + extra) }
    func error(_ extra: String) -> ConfigError? {
        do { _ = try parse(extra); return nil } catch { return error as? ConfigError }
    }

    @Test func drillConfigParsesWithDefaults() throws {
        let c = try parse("drill:\n  schedule: sun 03:00\n  max_parallel: 2\n  min_evidence: agent\n  scratch_vmids: 990000-990099\n  clone_without_snapshots: true\nguests:\n  \"101\":\n    drill: false\n")
        #expect(c.drill.schedule?.description == "sun 03:00")
        #expect(c.drill.maxParallel == 2 && c.drill.minEvidence == .agent && c.drill.scratchVmids == 990000...990099)
        #expect(c.drill.overdueAfter == .seconds(8 * 86_400) && c.drill.history == .seconds(400 * 86_400) && c.drill.bootTimeout == .seconds(600))
        #expect(!c.drillEnabled(vmid: 101) && c.drillEnabled(vmid: 102))
        #expect(try parse("").drill.schedule == nil, "no drill section: no scheduled drills")
    }

    @Test func badDrillConfigNamesKeyAndLine() {
        let bad = error("drill:\n  schedule: sun 25:61\n")
        #expect(bad?.path == "drill.schedule" && bad?.line == 4, "\(String(describing: bad)) \(bad?.path ?? "") \(bad?.line ?? -1)")
        #expect(error("drill:\n  min_evidence: ping\n")?.path == "drill.min_evidence")
        #expect(error("drill:\n  scratch_vmids: 5-3\n")?.path == "drill.scratch_vmids")
        #expect(error("drill:\n  clone_without_snapshots: true\n")?.path == "drill.clone_without_snapshots", "a clone needs a scratch range")
        #expect(error("drill:\n  boot_timeout: 1s\n")?.path == "drill.boot_timeout")
        #expect(error("drill:\n  frobnicate: 1\n")?.path == "drill.frobnicate", "unknown keys are errors")
        #expect(error("guests:\n  \"101\":\n    drill: maybe\n")?.path == "guests.101.drill")
    }

    @Test func scratchRangeIsPartOfTheSlotMap() {
        let overlap = error("    include: [100-199]\n    vmid_offset: 990000\ndrill:\n  scratch_vmids: 990150-990160\n")
        #expect(overlap?.path == "drill.scratch_vmids" && overlap?.message.contains("990150") == true, "\(String(describing: overlap))")
        #expect(error("    include: [100-199]\ndrill:\n  scratch_vmids: 990150-990160\n") == nil)
    }

    @Test func everyNICGetsLinkDownAndHostReachIsRefused() {
        let vm = ["net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1", "net1": "e1000=BC:24:11:00:00:02,bridge=vmbr1,link_down=0",
                  "scsi0": "local-lvm:vm-101-disk-0,size=32G", "ide2": "none,media=cdrom", "usb0": "spice"]
        guard case .isolatable(let changes) = DrillIsolation.verdict(type: .vm, config: vm) else { Issue.record("isolatable"); return }
        #expect(changes == ["net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,link_down=1", "net1": "e1000=BC:24:11:00:00:02,bridge=vmbr1,link_down=1"])
        #expect(!DrillIsolation.isIsolated(vm) && DrillIsolation.isIsolated(vm.merging(changes) { $1 }))
        for (key, value) in [("hostpci0", "0000:01:00.0"), ("usb1", "host=1234:5678"), ("virtiofs0", "dirid=share"), ("scsi1", "/dev/sdb"),
                             ("serial0", "/dev/ttyS0"), ("parallel0", "/dev/parport0"), ("args", "-netdev user,id=x"),
                             ("hookscript", "local:snippets/hook.pl")] {
            guard case .notIsolatable(let why) = DrillIsolation.verdict(type: .vm, config: vm.merging([key: value]) { $1 }) else {
                Issue.record("\(key) must make a VM not isolatable"); continue
            }
            #expect(why.count == 1 && why[0].hasPrefix(key))
        }
        let ct = ["net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:03,ip=dhcp,type=veth", "rootfs": "local-lvm:subvol-200-disk-0,size=8G",
                  "mp0": "local-lvm:vm-200-disk-1,mp=/data"]
        #expect(DrillIsolation.verdict(type: .ct, config: ct) == .isolatable(changes: ["net0": DrillIsolation.linkDown(ct["net0"]!)]))
        for (key, value) in [("mp1", "/srv/share,mp=/share"), ("dev0", "/dev/ttyUSB0"), ("lxc.net.1.type", "phys"), ("lxc.mount.entry", "/a b none bind"), ("lxc.include", "/etc/lxc/extra.conf"),
                             ("hookscript", "local:snippets/hook.pl")] {
            if case .isolatable = DrillIsolation.verdict(type: .ct, config: ct.merging([key: value]) { $1 }) { Issue.record("\(key) must make a CT not isolatable") }
        }
    }

    @Test func drillingGuestsWaitAndAFailedCleanupBlocks() {
        var g = GuestInput(source: "pbs", vmid: 100, type: .vm,
                           settings: GuestSettings(targetVmid: 100, targetStorage: nil, priority: 0, rpoTarget: .seconds(3600), startAfterRestore: false))
        g.latest = BackupEntry(volid: Volid(storage: "pbs", type: .vm, vmid: 100, backupTime: 2000), ctime: 2000, size: 1 << 30)
        g.drilling = true
        #expect(plan(g, now: 3000, rules: PlanRules()) == .drilling && Decision.drilling.state == .drilling)
        g.drilling = false
        g.drillBlocked = true
        #expect(plan(g, now: 3000, rules: PlanRules()) == .blocked(.drillCleanup))
        g.held = true
        #expect(plan(g, now: 3000, rules: PlanRules()) == .held, "a hold still shows first")
    }

    @Test func readinessVerdict() {
        let k = { GuestKey(source: "pbs", vmid: $0) }
        let guests = [
            FailoverReadiness.Guest(key: k(101), startable: true, copyAge: 1800, rpoTarget: 7200, drillResult: "passed", memory: 8 << 30, cores: 4),
            FailoverReadiness.Guest(key: k(102), startable: true, copyAge: 9000, rpoTarget: 7200, drillResult: "failed", memory: 16 << 30, cores: 8),
            FailoverReadiness.Guest(key: k(103), startable: false, copyAge: nil, rpoTarget: 7200, drillResult: nil, memory: 0),
            FailoverReadiness.Guest(key: k(104), startable: true, copyAge: 60, rpoTarget: 7200, drillResult: "passed", memory: 4 << 30, running: true),
        ]
        let fits = FailoverReadiness.summarize(guests, memoryAvailable: 32 << 30, memoryTotal: 64 << 30, nodeCores: 16)
        #expect(fits.startable == 3 && fits.memoryRequired == 24 << 30 && fits.fits && !fits.ready && fits.beyondRPO == 1 && fits.coresRequired == 12)
        #expect(fits.line == "Partly ready: 3 of 4 guests startable, oldest copy 2.5 h (1 beyond RPO), 1 drill failed, fits in 32 GiB free (needs 24)")
        let short = FailoverReadiness.summarize(guests, memoryAvailable: 20 << 30, memoryTotal: 64 << 30, nodeCores: 16)
        #expect(!short.fits && short.line.hasPrefix("Capacity short:") && short.line.hasSuffix("needs 24 GiB of memory, only 20 GiB free"))
    }
}
