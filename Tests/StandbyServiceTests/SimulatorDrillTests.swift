import ConfigSupport
import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// The simulator's model of what a DR drill does on PVE (issue 16): restored NIC and device
/// config, `netN` changes, boot behaviour, the guest agent, CT snapshots, full clones, the node's
/// memory, and the accessors tests compare a guest with before and after a drill.
@Suite("Simulator drills: NICs, boot, agent, CT snapshots, clones, node memory")
struct SimulatorDrillTests {
    static let node = "pve-standby"

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// VM 100 (two NICs, a mapped PCI device, spice USB, 4 GiB disk) and CT 200 (rootfs and one
    /// volume mount point) backed up on `pbs-prod`; `local-lvm` (lvmthin) and `thick` (lvm).
    final class Bench: @unchecked Sendable {
        let clock = ManualClock(start: 1_800_000_100)
        let sim: PVESimulator

        init(_ edit: (inout Scenario) -> Void = { _ in }) {
            var s = Scenario()
            s.node = SimulatorDrillTests.node
            s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1")]
            s.targetStorages = [.init(id: "local-lvm", type: "lvmthin", total: 1 << 40), .init(id: "thick", type: "lvm", total: 1 << 40)]
            var vm = Scenario.BackedUpGuest(vmid: 100, type: .vm, name: "web", storage: "pbs-prod", disks: [4 << 30], interval: 3600)
            vm.bridges = ["vmbr0", "vmbr1"]
            vm.hostpci = ["mapping=gpu"]
            vm.usb = ["spice"]
            var ct = Scenario.BackedUpGuest(vmid: 200, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 << 30, 1 << 30], interval: 3600)
            ct.mountpoints = [.init(mp: "mp0", kind: .volume)]
            s.backedUp = [vm, ct]
            edit(&s)
            sim = PVESimulator(scenario: s, clock: clock)
        }

        func path(_ p: String) -> String { "/nodes/\(SimulatorDrillTests.node)/\(p)" }

        @discardableResult
        func ok(_ m: APIMethod, _ p: String, _ params: [(String, String)] = []) throws -> JSONValue {
            switch sim.handle(m, path(p), params) {
            case .ok(let v): return v
            case .error(let st, let msg, let errors): throw Failure("\(m.rawValue) \(p): \(st) \(msg) \(errors)")
            }
        }

        func failure(_ m: APIMethod, _ p: String, _ params: [(String, String)] = []) -> (Int, String)? {
            if case .error(let st, let msg, let errors) = sim.handle(m, path(p), params) {
                return (st, errors.isEmpty ? msg : errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; "))
            }
            return nil
        }

        /// Starts a task, advances `wait` seconds, returns the task's exit status (nil: running).
        @discardableResult
        func run(_ m: APIMethod, _ p: String, _ params: [(String, String)] = [], wait: Double = 60) throws -> String? {
            guard let upid = try ok(m, p, params).string else { throw Failure("\(p): no UPID") }
            clock.advance(by: wait)
            return try ok(.get, "tasks/\(upid)/status")["exitstatus"]?.string
        }

        /// Restores the newest backup of `source` into `vmid` (storage `local-lvm`).
        func restore(_ source: Int, into vmid: Int, type: GuestType, _ extra: [(String, String)] = []) throws {
            let list = try ok(.get, "storage/pbs-prod/content", [("vmid", String(source))])
            guard let volid = list.array?.filter({ ($0["size"]?.int ?? 0) > 1 }).last?["volid"]?.string else { throw Failure("no backup") }
            let params = type == .vm ? [("vmid", "\(vmid)"), ("archive", volid), ("storage", "local-lvm")]
                                     : [("vmid", "\(vmid)"), ("ostemplate", volid), ("restore", "1"), ("storage", "local-lvm")]
            let exit = try run(.post, type.apiType, params + extra)
            guard exit == "OK" || exit?.hasPrefix("WARNINGS") == true else { throw Failure("restore: \(exit ?? "running")") }
        }

        func config(_ type: GuestType, _ vmid: Int, _ params: [(String, String)] = []) throws -> JSONValue {
            try ok(.get, "\(type.apiType)/\(vmid)/config", params)
        }
    }

    // MARK: - Scenario keys

    @Test func yamlReadsTheDrillKeysAndRefusesMistakes() throws {
        let s = try Scenario.parse(yaml: """
            node_memory_bytes: 34359738368
            node_memory_used_bytes: 4294967296
            pbs_storages: [{id: pbs-prod}]
            backups:
              - vmid: 100
                memory_mib: 4096
                extra_config: {virtiofs0: share1, scsi1: /dev/sdb}
              - {vmid: 200, type: ct, extra_config: {lxc.net.0.type: veth}}
            boot:
              100: {boots: true, boot_seconds: 20, agent: true, mode: ok}
              200: {boots: false}
              300: {mode: hangs}
            """)
        #expect(s.nodeMemoryBytes == 32 << 30 && s.nodeMemoryUsedBytes == 4 << 30)
        #expect(s.backedUp[0].memoryMiB == 4096 && s.backedUp[0].extraConfig == ["virtiofs0": "share1", "scsi1": "/dev/sdb"])
        #expect(s.backedUp[1].memoryMiB == nil && s.backedUp[1].extraConfig == ["lxc.net.0.type": "veth"])
        #expect(s.boot[100] == .init(boots: true, bootSeconds: 20, agent: true, mode: .ok))
        #expect(s.boot[200]?.effectiveMode == .fails && s.boot[300] == .init(mode: .hangs))
        #expect(try Scenario.parse(yaml: "node: x\n").nodeMemoryBytes == 64 << 30)
        func error(_ yaml: String) -> ConfigError? {
            do { _ = try Scenario.parse(yaml: yaml); return nil } catch { return error }
        }
        let b = "pbs_storages: [{id: p}]\nbackups:\n  - vmid: 100\n"
        #expect(error("boot:\n  100: {mode: sideways}\n")?.path == "boot.100.mode")
        #expect(error("boot:\n  100: {color: red}\n")?.path == "boot.100.color")
        #expect(error("boot:\n  web: {mode: ok}\n")?.path == "boot.web")
        #expect(error(b + "    memory_mib: 8\n")?.path == "backups[0].memory_mib")
        #expect(error(b + "    memory: 4\n")?.path == "backups[0].memory")
        let locked = error(b + "    extra_config: {lock: backup}\n")
        #expect(locked?.path == "backups[0].extra_config.lock" && locked?.line == 4)
        #expect(error("node_memory_bytes: 1073741824\nnode_memory_used_bytes: 2147483648\n")?.path == "node_memory_used_bytes")
    }

    // MARK: - 1. Restored config

    @Test func restoredCopiesCarryNICsDevicesMemoryAgentAndExtraKeys() throws {
        let b = Bench { s in
            s.backedUp[0].memoryMiB = 4096
            s.backedUp[0].extraConfig = ["virtiofs0": "share1", "scsi1": "/dev/sdb"]
            s.boot[300] = .init(agent: true)
        }
        try b.restore(100, into: 300, type: .vm)
        let c = try #require(b.sim.guestConfigSnapshot(vmid: 300))
        #expect(c["net0"] == "virtio=BC:24:11:00:00:64,bridge=vmbr0" && c["net1"] == "virtio=BC:24:11:00:01:64,bridge=vmbr1")
        #expect(c["hostpci0"] == "mapping=gpu" && c["usb0"] == "spice" && c["memory"] == "4096" && c["agent"] == "1")
        #expect(c["virtiofs0"] == "share1" && c["scsi1"] == "/dev/sdb" && c["scsi0"]?.hasPrefix("local-lvm:vm-300-disk-0") == true)
        #expect(c["digest"] == nil && c["name"] == "web")
        // The backed-up config says the same (extractconfig), MACs included.
        let list = try b.ok(.get, "storage/pbs-prod/content", [("vmid", "100")])
        let volid = try #require(list.array?.last(where: { ($0["size"]?.int ?? 0) > 1 })?["volid"]?.string)
        let text = try #require(try b.ok(.get, "vzdump/extractconfig", [("volume", volid)]).string)
        #expect(text.contains("net0: virtio=BC:24:11:00:00:64,bridge=vmbr0\n") && text.contains("memory: 4096\n") && text.contains("scsi1: /dev/sdb\n"))
        // `unique=1`: new MACs; no `boot:` agent entry: no `agent` key.
        try b.restore(100, into: 301, type: .vm, [("unique", "1")])
        let u = try #require(b.sim.guestConfigSnapshot(vmid: 301))
        #expect(u["net0"]?.hasPrefix("virtio=BC:24:11:") == true && u["net0"] != c["net0"] && u["agent"] == nil)
    }

    @Test func restoredContainersCarryNICsMountPointsAndSkipRawLXCKeysForAToken() throws {
        let b = Bench { s in s.backedUp[1].extraConfig = ["lxc.net.0.type": "veth", "mp1": "/srv/data,mp=/data"] }
        let list = try b.ok(.get, "storage/pbs-prod/content", [("vmid", "200")])
        let volid = try #require(list.array?.last(where: { ($0["size"]?.int ?? 0) > 1 })?["volid"]?.string)
        let upid = try #require(try b.ok(.post, "lxc", [("vmid", "400"), ("ostemplate", volid), ("restore", "1"), ("storage", "local-lvm")]).string)
        b.clock.advance(by: 60)
        #expect(try b.ok(.get, "tasks/\(upid)/status")["exitstatus"]?.string == "WARNINGS: 1")
        let log = try b.ok(.get, "tasks/\(upid)/log", [("limit", "0")]).array?.compactMap { $0["t"]?.string } ?? []
        #expect(log.contains("WARN: skipping custom lxc options, restore manually as root:") && log.contains("lxc.net.0.type: veth"))
        let c = try b.config(.ct, 400)
        #expect(c["net0"]?.string == "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:C8,ip=dhcp,type=veth")
        #expect(c["mp0"]?.string == "local-lvm:vm-400-disk-1,mp=/mnt/mp0,size=1G" && c["mp1"]?.string == "/srv/data,mp=/data")
        #expect(c["rootfs"]?.string == "local-lvm:vm-400-disk-0,size=2G" && c["memory"]?.string == "512" && c["lxc"] == nil)
        // As root@pam the raw keys are restored and come back as `lxc: [[key, value]]`.
        let root = Bench { s in s.backedUp[1].extraConfig = ["lxc.net.0.type": "veth"]; s.callerIsRoot = true }
        try root.restore(200, into: 400, type: .ct)
        #expect(try root.config(.ct, 400)["lxc"] == .array([.array([.string("lxc.net.0.type"), .string("veth")])]))
        #expect(root.sim.guestConfigSnapshot(vmid: 400)?["lxc.net.0.type"] == "veth")
    }

    // MARK: - 2. netN, memory and agent changes

    @Test func netChangesAreNormalisedAndGuardedByDigestLockAndPrivileges() throws {
        let b = Bench()
        try b.restore(100, into: 300, type: .vm)
        let d0 = try #require(try b.config(.vm, 300)["digest"]?.string)
        try b.ok(.put, "qemu/300/config", [("net0", "virtio=BC:24:11:00:00:64,link_down=1,bridge=vmbr0"), ("digest", d0)])
        let c1 = try b.config(.vm, 300)
        #expect(c1["net0"]?.string == "virtio=BC:24:11:00:00:64,bridge=vmbr0,link_down=1" && c1["digest"]?.string != d0)
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio=BC:24:11:00:01:64,bridge=vmbr1,link_down=1"), ("digest", d0)])?.1
                == "checksum mismatch (file change by other user?)\n")
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio,bridge=vmbr1,link_down=yes")])?.0 == 400)
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio,bridge=vmbr1,flux=1")])?.0 == 400)
        // Without a MAC PVE makes one (parse_net).
        try b.ok(.put, "qemu/300/config", [("net2", "e1000,bridge=vmbr0")])
        #expect(try b.config(.vm, 300)["net2"]?.string?.hasPrefix("e1000=BC:24:11:") == true)
        b.sim.modifyGuest(300, lock: .some("backup"))
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio,bridge=vmbr1")])?.1 == "VM is locked (backup)\n")
        b.sim.modifyGuest(300, lock: .some(nil))
        // VM.Config.Network on /vms/300, and SDN.Use on the bridge.
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Audit", "VM.Config.Options"])])
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio,bridge=vmbr1,link_down=1")])?.1 == "Permission check failed (/vms/300, VM.Config.Network)\n")
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Config.Network"])])
        #expect(b.failure(.put, "qemu/300/config", [("net1", "virtio,bridge=vmbr1,link_down=1")])?.1
                == "Permission check failed (/sdn/zones/localnetwork/vmbr1, SDN.Use)\n")
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Config.Network"]), .init(path: "/sdn/zones/localnetwork", privs: ["SDN.Use"])])
        try b.ok(.put, "qemu/300/config", [("net1", "virtio=BC:24:11:00:01:64,bridge=vmbr1,link_down=1")])
        #expect(b.failure(.put, "qemu/300/config", [("memory", "1024")])?.1 == "Permission check failed (/vms/300, VM.Config.Memory)\n")
    }

    @Test func containerNetChangesAndARunningVMsPendingMemory() throws {
        let b = Bench()
        try b.restore(200, into: 400, type: .ct)
        let d0 = try #require(try b.config(.ct, 400)["digest"]?.string)
        #expect(b.failure(.put, "lxc/400/config", [("net0", "bridge=vmbr0,link_down=1")])?.1.contains("net0.name: property is missing") == true)
        try b.ok(.put, "lxc/400/config", [("net0", "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:C8,ip=dhcp,type=veth,link_down=1"), ("digest", d0)])
        #expect(try b.config(.ct, 400)["net0"]?.string == "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:C8,ip=dhcp,link_down=1,type=veth")
        #expect(b.failure(.put, "lxc/400/config", [("memory", "1024"), ("digest", d0)])?.1
                == "detected modified configuration - file changed by other user? Try again.\n")
        // A running VM: NICs hotplug, memory waits for the stop (GET shows pending values, current=1 the active ones).
        try b.restore(100, into: 300, type: .vm)
        try b.run(.post, "qemu/300/status/start", wait: 3)
        try b.ok(.put, "qemu/300/config", [("memory", "4096"), ("net0", "virtio=BC:24:11:00:00:64,bridge=vmbr0,link_down=1")])
        #expect(try b.config(.vm, 300)["memory"]?.string == "4096" && b.sim.nodeMemoryUse().used == (8 << 30) + (2048 << 20))
        #expect(try b.config(.vm, 300, [("current", "1")])["memory"]?.string == "2048")
        #expect(try b.config(.vm, 300, [("current", "1")])["net0"]?.string?.hasSuffix("link_down=1") == true)
        try b.run(.post, "qemu/300/status/stop", wait: 3)
        #expect(try b.config(.vm, 300, [("current", "1")])["memory"]?.string == "4096")
    }

    // MARK: - 3, 4. Boot and the guest agent

    @Test func bootPhasesAndTheAgentAnswers() throws {
        let b = Bench { s in s.boot[300] = .init(bootSeconds: 20, agent: true) }
        try b.restore(100, into: 300, type: .vm)
        #expect(b.failure(.post, "qemu/300/agent/ping")?.1 == "VM 300 is not running\n")
        try b.run(.post, "qemu/300/status/start", wait: 2)
        #expect(b.sim.guestBootPhase(vmid: 300) == .booting)
        #expect(b.failure(.post, "qemu/300/agent/ping")?.1 == "QEMU guest agent is not running\n")
        b.clock.advance(by: 20)
        #expect(b.sim.guestBootPhase(vmid: 300) == .booted)
        #expect(try b.ok(.post, "qemu/300/agent/ping") == .object(["result": .object([:])]))
        #expect(try b.ok(.get, "qemu/300/agent/get-osinfo")["result"]?["pretty-name"]?.string == "Debian GNU/Linux 12 (bookworm)")
        #expect(try b.ok(.get, "qemu/300/agent/get-host-name")["result"]?["host-name"]?.string == "web")
        #expect(b.failure(.get, "qemu/300/agent/ping")?.0 == 501)
        let status = try b.ok(.get, "qemu/300/status/current")
        #expect(status["uptime"]?.int == 20 && status["agent"]?.int == 1 && status["status"]?.string == "running")
        // VM.GuestAgent.Audit or VM.GuestAgent.Unrestricted.
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Audit"])])
        #expect(b.failure(.post, "qemu/300/agent/ping")?.0 == 403)
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.GuestAgent.Unrestricted"])])
        try b.ok(.post, "qemu/300/agent/ping")
        b.sim.setACLs(nil)
        // A stop resets the boot: the next start boots again from zero.
        try b.run(.post, "qemu/300/status/stop", wait: 2)
        #expect(try b.ok(.get, "qemu/300/status/current")["uptime"]?.int == 0)
        try b.run(.post, "qemu/300/status/start", wait: 2)
        #expect(b.sim.guestBootPhase(vmid: 300) == .booting)
        // No `agent` key at all.
        try b.restore(100, into: 301, type: .vm)
        try b.run(.post, "qemu/301/status/start", wait: 30)
        #expect(b.failure(.post, "qemu/301/agent/ping")?.1 == "No QEMU guest agent configured\n")
        // Configured, but no agent inside the guest.
        try b.ok(.put, "qemu/301/config", [("agent", "1")])  // pending while running
        try b.run(.post, "qemu/301/status/stop", wait: 2)
        try b.run(.post, "qemu/301/status/start", wait: 30)
        #expect(b.failure(.post, "qemu/301/agent/ping")?.1 == "QEMU guest agent is not running\n")
    }

    @Test func failingGuestsPowerOffAndHungOnesNeverBoot() throws {
        let b = Bench { s in
            s.boot[300] = .init(bootSeconds: 15, agent: true, mode: .fails)
            s.boot[301] = .init(bootSeconds: 5, agent: true, mode: .hangs)
        }
        try b.restore(100, into: 300, type: .vm)
        try b.restore(100, into: 301, type: .vm)
        try b.run(.post, "qemu/300/status/start", wait: 2)  // 300 runs from t
        try b.run(.post, "qemu/301/status/start", wait: 2)  // 301 from t + 2
        b.clock.advance(by: 12)
        #expect(try b.ok(.get, "qemu/300/status/current")["status"]?.string == "running")
        b.clock.advance(by: 1)
        #expect(try b.ok(.get, "qemu/300/status/current")["status"]?.string == "stopped")
        #expect(b.sim.guestBootPhase(vmid: 301) == .hung)
        b.clock.advance(by: 3600)
        #expect(try b.ok(.get, "qemu/301/status/current")["uptime"]?.int == 3613)
        #expect(b.failure(.post, "qemu/301/agent/ping")?.1 == "QEMU guest agent is not running\n")
        // `boots: false` is `fails`, also for containers; a test can change it at run time.
        try b.restore(200, into: 400, type: .ct)
        b.sim.setBootBehaviour(400, .init(boots: false, bootSeconds: 10))
        try b.run(.post, "lxc/400/status/start", wait: 2)
        b.clock.advance(by: 10)
        #expect(b.sim.guestSnapshot(400)?.status == "stopped")
    }

    // MARK: - 5. Container snapshots

    @Test func containerSnapshotsRollBackTheConfigAndRefuseBindMounts() throws {
        let b = Bench()
        try b.restore(200, into: 400, type: .ct)
        let before = try #require(b.sim.guestConfigSnapshot(vmid: 400))
        #expect(try b.run(.post, "lxc/400/snapshot", [("snapname", "drill")]) == "OK")
        let net = try #require(before["net0"]) + ",link_down=1"
        try b.ok(.put, "lxc/400/config", [("net0", net)])
        let names = try b.ok(.get, "lxc/400/snapshot").array?.compactMap { $0["name"]?.string }
        #expect(names == ["drill", "current"])
        #expect(try b.run(.post, "lxc/400/snapshot/drill/rollback") == "OK")
        #expect(b.sim.guestConfigSnapshot(vmid: 400)?["net0"] == before["net0"])
        #expect(try b.run(.delete, "lxc/400/snapshot/drill") == "OK")
        #expect(b.sim.guestConfigSnapshot(vmid: 400) == before)
        let types = b.sim.tasksFor(vmid: 400).map(\.type)
        #expect(types.suffix(3) == ["vzsnapshot", "vzrollback", "vzdelsnapshot"])
        #expect(b.failure(.post, "lxc/400/snapshot", [("snapname", "vzdump")])?.1 == "unable to use snapshot name 'vzdump' (reserved name)\n")
        // A bind mount (a host path) cannot be snapshotted; nor can a VM's host-path disk.
        try b.ok(.put, "lxc/400/config", [("net0", before["net0"]!)])
        b.sim.adminSetConfig(vmid: 400, key: "mp1", "/srv/data,mp=/data")
        #expect(try b.run(.post, "lxc/400/snapshot", [("snapname", "bind")]) == "snapshot feature is not available")
        let vm = Bench { s in s.backedUp[0].extraConfig = ["scsi1": "/dev/sdb"] }
        try vm.restore(100, into: 300, type: .vm)
        #expect(try vm.run(.post, "qemu/300/snapshot", [("snapname", "bind")]) == "snapshot feature is not available")
    }

    // MARK: - 6. Full clones

    @Test func fullClonesCopyTheConfigWithNewMACsAndTakeTime() throws {
        let b = Bench()
        try b.restore(100, into: 300, type: .vm)
        let source = try #require(b.sim.guestConfigSnapshot(vmid: 300))
        let upid = try #require(try b.ok(.post, "qemu/300/clone", [("newid", "9300"), ("full", "1"), ("name", "drill-web"), ("description", "drill clone")]).string)
        #expect(upid.contains(":qmclone:300:"))
        b.clock.advance(by: 5)  // 4 GiB at 300 MiB/s: about 14 s
        #expect(b.sim.guestConfigSnapshot(vmid: 9300)?["lock"] == "clone")
        b.clock.advance(by: 30)
        let c = try #require(b.sim.guestConfigSnapshot(vmid: 9300))
        #expect(c["lock"] == nil && c["name"] == "drill-web" && c["description"] == "drill clone")
        #expect(c["net0"] != source["net0"] && c["net0"]?.hasSuffix(",bridge=vmbr0") == true && c["net0"]?.hasPrefix("virtio=BC:24:11:") == true)
        #expect(c["vmgenid"] != nil && c["vmgenid"] != source["vmgenid"] && c["memory"] == source["memory"])
        #expect(c["scsi0"] == "local-lvm:vm-9300-disk-0,size=4G")
        #expect(b.failure(.post, "qemu/300/clone", [("newid", "9300"), ("full", "1")])?.1 == "unable to create VM 9300: config file already exists\n")
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Audit", "VM.Allocate"])])
        #expect(b.failure(.post, "qemu/300/clone", [("newid", "9301"), ("full", "1")])?.1 == "Permission check failed (/vms/300, VM.Clone)\n")
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Clone", "VM.Allocate"])])
        #expect(b.failure(.post, "qemu/300/clone", [("newid", "9301"), ("full", "1")])?.1 == "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)\n")
        b.sim.setACLs(nil)
        // A container: `hostname`, the source locked `disk` meanwhile; bind mounts refused.
        try b.restore(200, into: 400, type: .ct)
        _ = try b.ok(.post, "lxc/400/clone", [("newid", "9400"), ("full", "1"), ("hostname", "drill-dns")])
        #expect(b.sim.guestConfigSnapshot(vmid: 400)?["lock"] == "disk" && b.sim.guestConfigSnapshot(vmid: 9400)?["lock"] == "create")
        b.clock.advance(by: 60)
        let ct = try #require(b.sim.guestConfigSnapshot(vmid: 9400))
        #expect(ct["hostname"] == "drill-dns" && ct["lock"] == nil && b.sim.guestConfigSnapshot(vmid: 400)?["lock"] == nil)
        #expect(ct["mp0"] == "local-lvm:vm-9400-disk-1,mp=/mnt/mp0,size=1G" && ct["net0"]?.contains("hwaddr=BC:24:11:00:00:C8") == false)
        b.sim.adminSetConfig(vmid: 400, key: "mp1", "/srv/data,mp=/data")
        #expect(b.failure(.post, "lxc/400/clone", [("newid", "9401"), ("full", "1")])?.1 == "unable to clone mountpoint 'mp1' (type bind)\n")
        #expect(b.failure(.post, "lxc/400/clone", [("newid", "9300"), ("full", "1")])?.1 == "VM 9300 already exists on node 'pve-standby'\n")
    }

    // MARK: - 7. Node memory

    @Test func nodeStatusCountsRunningGuestsMemory() throws {
        let b = Bench { s in s.nodeMemoryBytes = 16 << 30; s.nodeMemoryUsedBytes = 2 << 30; s.backedUp[0].memoryMiB = 4096 }
        try b.restore(100, into: 300, type: .vm)
        func memory() throws -> [Int] {
            let m = try b.ok(.get, "status")["memory"]
            return [m?["total"]?.int ?? -1, m?["used"]?.int ?? -1]
        }
        #expect(try memory() == [16 << 30, 2 << 30])
        try b.run(.post, "qemu/300/status/start", wait: 2)
        #expect(try memory() == [16 << 30, (2 << 30) + (4 << 30)])
        #expect(try b.ok(.get, "status")["cpuinfo"]?["cpus"]?.int == 16)
        let entry = try #require(try b.sim.handleValue(.get, "/cluster/resources", [("type", "vm")]).array?.first { $0["vmid"]?.int == 300 })
        #expect(entry["maxmem"]?.int == 4 << 30 && entry["mem"]?.int == 4 << 30)
        b.sim.setACLs([.init(path: "/vms", privs: ["VM.Audit"])])
        #expect(b.failure(.get, "status")?.1 == "Permission check failed (/nodes/pve-standby, Sys.Audit)\n")
    }

    // MARK: - 8. A whole drill, journaled, leaves the copy as it was

    @Test func aDrillIsJournaledAndLeavesConfigAndVolumesAsTheyWere() async throws {
        let b = Bench { s in s.boot[300] = .init(bootSeconds: 10, agent: true) }
        try b.restore(100, into: 300, type: .vm)
        let client = ProxmoxClient(transport: InProcessTransport(simulator: b.sim))
        let before = try #require(b.sim.guestConfigSnapshot(vmid: 300))
        let volumes = try #require(b.sim.guestVolumeFingerprint(vmid: 300))
        #expect(try b.run(.post, "qemu/300/snapshot", [("snapname", "drill")]) == "OK")
        let cfg = try await client.guestConfig(node: Self.node, type: .vm, vmid: 300)
        let isolated = cfg.raw.filter { $0.key.hasPrefix("net") }.mapValues { $0 + ",link_down=1" }
        try await client.updateConfig(node: Self.node, type: .vm, vmid: 300, set: isolated, digest: cfg.digest)
        try b.run(.post, "qemu/300/status/start", wait: 12)
        try await client.agentPing(node: Self.node, vmid: 300)
        #expect(await client.agentFacts(node: Self.node, vmid: 300).hostName == "web")
        #expect(b.sim.guestVolumeFingerprint(vmid: 300) != volumes, "a running guest writes its disks")
        #expect(try await client.nodeMemory(node: Self.node).used == (8 << 30) + (2048 << 20))
        try b.run(.post, "qemu/300/status/stop", wait: 3)
        #expect(try b.run(.post, "qemu/300/snapshot/drill/rollback") == "OK")
        #expect(try b.run(.delete, "qemu/300/snapshot/drill") == "OK")
        var after = try #require(b.sim.guestConfigSnapshot(vmid: 300))
        #expect(after["vmgenid"] != before["vmgenid"], "a rollback gives a new vmgenid")
        after["vmgenid"] = before["vmgenid"]
        #expect(after == before)
        #expect(b.sim.guestVolumeFingerprint(vmid: 300) == volumes)
        // The journal shows every NIC isolated before the start.
        let j = b.sim.journal().filter { $0.vmid == 300 }
        let start = try #require(j.firstIndex { $0.path.hasSuffix("/status/start") && $0.status == 200 })
        let puts = j[..<start].filter { $0.method == "PUT" && $0.path.hasSuffix("/config") && $0.status == 200 }
        #expect(Set(puts.flatMap { $0.parameters.filter { $0.key.hasPrefix("net") && $0.value.contains("link_down=1") }.keys }) == ["net0", "net1"])
    }
}

extension PVESimulator {
    /// The value of a call that must succeed (tests).
    fileprivate func handleValue(_ m: APIMethod, _ path: String, _ params: [(String, String)]) throws -> JSONValue {
        switch handle(m, path, params) {
        case .ok(let v): return v
        case .error(let st, let msg, _): throw SimulatorDrillTests.Failure("\(path): \(st) \(msg)")
        }
    }
}
