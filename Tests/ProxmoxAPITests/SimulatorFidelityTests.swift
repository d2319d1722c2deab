import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// Issue 13: details where the simulator used to differ from PVE (reference §13.5), one fixture each.
@Suite("Simulator fidelity (§13.5)")
struct SimulatorFidelityTests {
    static func forced(_ h: Harness, _ vmid: Int, _ volid: Volid, storage: String = "local-lvm") -> ProxmoxClient.RestoreRequest {
        var r = ProxmoxClient.RestoreRequest(node: h.node, vmid: vmid, archive: volid, storage: storage)
        r.force = true
        return r
    }

    static func latest(_ h: Harness, _ vmid: Int) async throws -> Volid {
        try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: vmid).filter(\.isComplete).last!.volid
    }

    @Test func vmProtectionTextHasTheDoubleDash() async throws {
        let h = try Harness(.inProcess)
        let upid = try await h.client.restore(.init(node: h.node, vmid: 101, archive: try await Self.latest(h, 101), storage: "local-lvm"))
        _ = try await h.finish(upid)
        h.simulator.modifyGuest(101, protection: true)
        let again = try await h.client.restore(Self.forced(h, 101, try await Self.latest(h, 101)))
        let status = try await h.finish(again)
        #expect(status.exitStatus == "unable to restore VM 101 - - protection mode enabled")
    }

    @Test func unknownStatusOnlyForAVMIDNewToTheNode() async throws {
        let h = try Harness(.inProcess)
        let first = try await h.client.restore(.init(node: h.node, vmid: 101, archive: try await Self.latest(h, 101), storage: "local-lvm"))
        _ = try await h.finish(first)
        #expect(try await h.client.guests().first { $0.vmid == 101 }?.status == "unknown", "new to the node (§5.1)")
        h.advance(30)
        let second = try await h.client.restore(Self.forced(h, 101, try await Self.latest(h, 101)))
        _ = try await h.finish(second)
        #expect(try await h.client.guests().first { $0.vmid == 101 }?.status == "stopped", "a VMID the node knew keeps its status")
    }

    @Test func stoppingAStoppedContainerIsASynchronousError() async throws {
        let h = try Harness(.inProcess)
        let upid = try await h.client.restore(.init(node: h.node, vmid: 201, archive: try await Self.latest(h, 201), storage: "local-lvm"))
        _ = try await h.finish(upid)
        await #expect(throws: ProxmoxError.server(path: "/nodes/pve-standby/lxc/201/status/stop", status: 500, message: "CT 201 not running")) {
            _ = try await h.client.stop(node: h.node, type: .ct, vmid: 201)
        }
    }

    @Test func containerRefusalOrderIsRunningProtectionLock() async throws {
        let h = try Harness(.inProcess)
        h.simulator.modifyGuest(250, lock: .some("backup"), protection: true)  // 250 runs
        await #expect(throws: ProxmoxError.refused(path: "/nodes/pve-standby/lxc", reason: .running, message: "can't overwrite running container")) {
            _ = try await h.client.restore(Self.forced(h, 250, try await Self.latest(h, 250)))
        }
        h.simulator.modifyGuest(250, status: "stopped")
        await #expect(throws: ProxmoxError.refused(path: "/nodes/pve-standby/lxc", reason: .protected, message: "unable to restore CT 250 - protection mode enabled")) {
            _ = try await h.client.restore(Self.forced(h, 250, try await Self.latest(h, 250)))
        }
    }

    @Test func aVMRestoreOntoAContainersVMIDIsRefused() async throws {
        let h = try Harness(.inProcess)
        await #expect(throws: ProxmoxError.self) {
            _ = try await h.client.restore(Self.forced(h, 250, try await Self.latest(h, 101)))
        }
        #expect(try await h.client.guests().first { $0.vmid == 250 }?.type == .ct, "still the CT")
    }

    @Test func pbsRestoreLogBeginsWithItsThreads() async throws {
        let h = try Harness(.inProcess)
        let upid = try await h.client.restore(.init(node: h.node, vmid: 101, archive: try await Self.latest(h, 101), storage: "local-lvm"))
        _ = try await h.finish(upid)
        let log = try await h.client.taskLog(upid).map(\.t)
        let i = try #require(log.firstIndex { $0.hasPrefix("restore proxmox backup image:") })
        #expect(log.filter { $0 == "using up to 4 threads" }.count == 2, "one per disk")
        #expect(log[i + 1] == "using up to 4 threads", "pbs-restore's output begins with it, after qemu-server's command line")
    }
}

/// Issue 13: the progress of a multi-disk VM must not go backwards. Estimated without disk sizes
/// the ratio falls when the second disk starts; with the sizes from the backup's config
/// (`vzdump/extractconfig`, §13.1) it only grows.
@Suite("Multi-disk progress")
struct MultiDiskProgressTests {
    @Test func ratioWithTheBackupsDiskSizesNeverFalls() async throws {
        let h = try Harness(.inProcess)
        let volid = try await h.client.backups(node: h.node, storage: "pbs-prod", vmid: 101).filter(\.isComplete).last!.volid
        let upid = try await h.client.restore(.init(node: h.node, vmid: 101, archive: volid, storage: "local-lvm"))
        _ = try await h.finish(upid)
        let log = try await h.client.taskLog(upid).map(\.t)
        let sizes = BackupConfig(parsing: try await h.client.backupConfig(node: h.node, volid: volid), type: .vm).diskSizes
        #expect(sizes == [2 * Harness.gib, 4 * Harness.gib])
        func ratios(_ sizes: [Int64]) -> [Double] {
            var p = RestoreProgress(diskSizes: sizes)
            return log.map { p.consume($0); return p.ratio }
        }
        let with = ratios(sizes)
        #expect(zip(with, with.dropFirst()).allSatisfy { $0 <= $1 } && with.last == 1)
        let without = ratios([])
        #expect(zip(without, without.dropFirst()).contains { $0 > $1 }, "without the sizes the estimate falls at the second disk")
    }
}
