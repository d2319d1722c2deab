import ProxmoxModel
import StandbyCore
import Testing

func entry(_ vmid: Int, _ t: Int, size: Int64 = 10 << 30, verification: String? = "ok") -> BackupEntry {
    BackupEntry(volid: Volid(storage: "pbs", type: .vm, vmid: vmid, backupTime: t), ctime: t, size: size, verification: verification)
}

func input(latest: BackupEntry?, restored: Int? = nil, target: GuestResource? = nil, tagged: Bool = false) -> GuestInput {
    var g = GuestInput(source: "pbs", vmid: 100, type: .vm,
                       settings: GuestSettings(targetVmid: 100, targetStorage: "lvm", priority: 0, rpoTarget: .seconds(3600), startAfterRestore: false))
    g.latest = latest
    g.restoredBackupTime = restored
    g.target = target
    let marker = Marker.Info(volid: Volid(storage: "pbs", type: .vm, vmid: 100, backupTime: 1000), targetVmid: 100)
    g.ownership = target == nil ? .free : tagged ? .ours(marker) : .notOurs("no marker")
    return g
}

@Suite("Planner and safety rules")
struct PlannerTests {
    let rules = PlanRules()
    let stopped = GuestResource(vmid: 100, type: .vm, node: "n", status: "stopped", tags: ["pbs-standby"])

    @Test func table() {
        let b = entry(100, 2000)
        #expect(plan(input(latest: b), now: 3000, rules: rules) == .restore(backup: b, stopFirst: false, force: false), "no copy yet: no force")
        #expect(plan(input(latest: b, restored: 2000, target: stopped, tagged: true), now: 3000, rules: rules) == .upToDate, "same backup")
        #expect(plan(input(latest: b, restored: 2500, target: stopped, tagged: true), now: 3000, rules: rules) == .upToDate, "never older")
        #expect(plan(input(latest: nil), now: 3000, rules: rules) == .upToDate)
        var foreign = stopped; foreign.tags = []
        #expect(plan(input(latest: b, target: foreign), now: 3000, rules: rules) == .blocked(.notOwned))
        var adopted = input(latest: b, target: foreign); adopted.ownership = .adopted
        #expect(plan(adopted, now: 3000, rules: rules) == .restore(backup: b, stopFirst: false, force: true))
        var remains = input(latest: b, target: foreign); remains.ownership = .remains
        #expect(plan(remains, now: 3000, rules: rules) == .restore(backup: b, stopFirst: false, force: true), "our failed restore's remains")
        var unverified = input(latest: b, target: stopped); unverified.ownership = .unverified
        #expect(plan(unverified, now: 3000, rules: rules) == .verify, "never act on an unverified target")
        var conflict = input(latest: b); conflict.slotConflict = "VMID 100 is also the target of other/100"
        #expect(plan(conflict, now: 3000, rules: rules) == .blocked(.slotConflict))
        var running = stopped; running.status = "running"
        #expect(plan(input(latest: b, target: running, tagged: true), now: 3000, rules: rules) == .blocked(.running))
        var ours = input(latest: b, target: running, tagged: true)
        ours.startedByUs = true
        ours.settings.startAfterRestore = true
        #expect(plan(ours, now: 3000, rules: rules) == .restore(backup: b, stopFirst: true, force: true))
        var locked = stopped; locked.lock = "backup"
        #expect(plan(input(latest: b, target: locked, tagged: true), now: 3000, rules: rules) == .blocked(.locked))
        var prot = input(latest: b, target: stopped, tagged: true); prot.targetProtected = true
        #expect(plan(prot, now: 3000, rules: rules) == .blocked(.protected))
        var held = input(latest: b); held.held = true
        #expect(plan(held, now: 3000, rules: rules) == .held)
        var fo = input(latest: b); fo.failedOver = true
        #expect(plan(fo, now: 3000, rules: rules) == .failedOver)
        var busy = input(latest: b); busy.inFlight = true
        #expect(plan(busy, now: 3000, rules: rules) == .restoring)
        var backoff = input(latest: b); backoff.nextRetryAt = 4000
        #expect(plan(backoff, now: 3000, rules: rules) == .waiting(until: 4000))
        var limit = input(latest: b); limit.failedAttemptsOfLatest = 5
        #expect(plan(limit, now: 3000, rules: rules) == .waiting(until: nil))
        var space = input(latest: b); space.targetFreeBytes = 5 << 30
        #expect(plan(space, now: 3000, rules: rules) == .blocked(.insufficientSpace))
    }

    @Test func newestEligibleSkipsInProgressUnsettledUnverified() {
        let entries = [entry(1, 100), entry(1, 300, size: 1), entry(1, 200, verification: "failed"), entry(1, 250)]
        #expect(newestEligible(entries, now: 1000, settle: 0, requireVerified: false)?.volid.backupTime == 250)
        #expect(newestEligible(entries, now: 1000, settle: 0, requireVerified: true)?.volid.backupTime == 250)
        #expect(newestEligible(entries, now: 300, settle: 100, requireVerified: false)?.volid.backupTime == 200)
    }

    @Test func backoffSteps() {
        let steps: [Duration] = [.seconds(300), .seconds(600), .seconds(900), .seconds(1800)]
        #expect((1...6).map { backoffDelay(failures: $0, steps: steps) } == [300, 600, 900, 1800, 1800, 1800])
    }

    @Test func schedulingPolicy() {
        func c(_ vmid: Int, prio: Int = 0, copy: Bool = true, gain: Double, secs: Double) -> RestoreCandidate {
            RestoreCandidate(key: GuestKey(source: "s", vmid: vmid), priority: prio, hasCopy: copy, gainSeconds: gain, expectedSeconds: secs, backupTime: vmid)
        }
        let order = SchedulingPolicy.order([c(1, gain: 3600, secs: 600), c(2, gain: 3600, secs: 60), c(3, copy: false, gain: 1, secs: 1000), c(4, prio: 5, gain: 1, secs: 9999)])
        #expect(order.map(\.key.vmid) == [4, 3, 2, 1])
    }
}

@Suite("Configuration")
struct ConfigTests {
    @Test func contractExampleParses() throws {
        let yaml = """
        proxmox:
          transport: https
          url: https://127.0.0.1:8006
          token_file: /etc/pbs-standby/token
          fingerprint: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
          node: pve-standby
          timeout: 30s
        state:
          path: /var/lib/pbs-standby/state.db
        restore:
          workers: 1
          poll_interval: 30s
          settle: 0s
          start_after_restore: false
          keep_previous: false
          previous_vmid_offset: 100000
          require_verified: false
          rpo_target: 2h
          task_timeout: 12h
          adopt: false
        sources:
          - storage: pbs-prod
            target_storage: local-lvm
            include: ["100-199", "4*", 300]
            exclude: [150]
            vmid_offset: 0
            priority: 0
            rpo_target: 1h
        guests:
          "101": { priority: 100, rpo_target: 15m, start_after_restore: true, target_storage: fast-lvm }
        web:
          listen_address: ":8216"
        """
        let c = try StandbyConfig.parse(yaml: yaml)
        let s = c.sources[0]
        #expect(s.include.contains(150) && s.exclude.contains(150))
        #expect(s.include.contains(42) && s.include.contains(300) && !s.include.contains(200))
        let e = c.effective(source: s, vmid: 101)
        #expect(e.priority == 100 && e.rpoTarget == .seconds(900) && e.startAfterRestore && e.targetStorage == "fast-lvm")
        #expect(c.effective(source: s, vmid: 120).rpoTarget == .seconds(3600))
    }

    /// Globs match in time linear in pattern × VMID length: a pattern of many stars once took
    /// exponential time (backtracking per star), so one config line could hang every pass.
    @Test func globsMatchWithoutBacktrackingBlowUp() throws {
        let stars = String(repeating: "*", count: 60)
        let s = try Selection.parse([stars + "7", "1?3", "4*2*", "*9"], path: "sources[0].include", line: 3)
        #expect(s.contains(999_999_997) && !s.contains(999_999_998), "the stars then 7")
        #expect(s.contains(123) && s.contains(193) && !s.contains(1234))
        #expect(s.contains(42) && s.contains(4_112) && s.contains(402) && !s.contains(4_113))
        #expect(s.contains(9) && s.contains(19) && !s.contains(91))
        let none = try Selection.parse([stars + "x"].map { $0.replacingOccurrences(of: "x", with: "?0") }, path: "p", line: nil)
        #expect(!none.contains(999_999_991) && none.contains(10))
    }

    @Test func errorsNameKeyAndLine() {
        func error(_ yaml: String) -> String {
            do { _ = try StandbyConfig.parse(yaml: yaml); return "no error" } catch { return error.description }
        }
        let base = "sources:\n  - storage: pbs\n"
        #expect(error(base + "restore:\n  workers: many\n") == "restore.workers (line 4): expected an integer, got 'many'")
        #expect(error(base + "restore:\n  wokers: 2\n") == "restore.wokers (line 4): unknown key")
        #expect(error(base + "restore:\n  poll_interval: soon\n").hasPrefix("restore.poll_interval (line 4)"))
        #expect(error("restore: {}\n").hasPrefix("sources"))
        #expect(error(base.replacingOccurrences(of: "pbs\n", with: "pbs\n    include: [abc]\n")).hasPrefix("sources[0].include[0]"))
        #expect(error(base + "proxmox:\n  fingerprint: nope\n").hasPrefix("proxmox.fingerprint (line 4)"))
    }
}
