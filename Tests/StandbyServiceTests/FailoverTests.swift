import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore
import Synchronization
import TestSupport
import Testing

/// `failover` as a service operation (issue 12 item 11, issue 13 item 3): it starts only proven
/// copies, never destroys the last good copy with `--latest`, and keeps a held copy.
@Suite("Failover: proven copies, --latest never costs the last copy")
struct FailoverTests {
    static let key = GuestKey(source: "pbs-prod", vmid: 101)

    static func rig(keep: Bool, fails: Bool = false) throws -> Rig {
        try Rig(scenario: SafetyRegressionTests.one()) { c in
            SafetyRegressionTests.configure(&c)
            c.restore.keepPrevious = keep
        }
    }

    static func failover(_ rig: Rig, _ options: Failover.Options) async throws -> (Bool, [String]) {
        let lines = Mutex<[String]>([])
        // Simulated time must move while failover follows a live restore to its end.
        let ticking = Task { while !Task.isCancelled { rig.clock.advance(by: 30); try? await Task.sleep(for: .milliseconds(5)) } }
        defer { ticking.cancel() }
        let ok = try await Failover(operations: rig.operations).run([key], options: options) { l in lines.withLock { $0.append(l) } }
        return (ok, lines.withLock { $0 })
    }

    /// keep_previous: the newer backup is live-restored into the free slot; the copy stays.
    @Test func latestGoesIntoTheFreeSlotAndKeepsTheCopy() async throws {
        let rig = try Self.rig(keep: true)
        await rig.once()
        rig.clock.advance(by: 3600)
        let (ok, lines) = try await Self.failover(rig, .init(latest: true))
        #expect(ok, "\(lines)")
        let live = try #require(rig.restores(vmid: 100_101).last)
        #expect(live.parameters["live-restore"] == "1" && live.parameters["force"] == nil, "no force into the free slot")
        #expect(rig.simulator.guestSnapshot(101) != nil && rig.restores(vmid: 101).count == 1, "the copy stays as it was")
        #expect(try rig.store.guest(Self.key)?.liveVmid == 100_101)
    }

    /// keep_previous: when the live restore fails, the existing copy is started instead.
    @Test func failedLiveRestoreStartsTheExistingCopy() async throws {
        let rig = try Self.rig(keep: true)
        await rig.once()
        rig.clock.advance(by: 3600)
        rig.simulator.setRestoreFails(101, true)
        let (ok, lines) = try await Self.failover(rig, .init(latest: true))
        #expect(ok, "\(lines)")
        #expect(lines.contains { $0.contains("live-restore failed") } && lines.contains { $0.contains("starting 101") })
        #expect(rig.mutations(vmid: 101).contains { $0.path.hasSuffix("/status/start") })
    }

    /// Without keep_previous, --latest starts the existing copy and names the newer backup;
    /// only --replace live-restores over it (forced, over the proven copy).
    @Test func latestWithoutASecondSlotNeedsReplace() async throws {
        let rig = try Self.rig(keep: false)
        await rig.once()
        rig.clock.advance(by: 3600)
        let (ok, lines) = try await Self.failover(rig, .init(latest: true))
        #expect(ok && lines.contains { $0.contains("a newer backup") && $0.contains("--replace") }, "\(lines)")
        #expect(rig.restores(vmid: 101).count == 1, "not restored over")
        _ = rig.simulator.adminStop(vmid: 101)
        let (ok2, lines2) = try await Self.failover(rig, .init(latest: true, replace: true))
        #expect(ok2, "\(lines2)")
        #expect(rig.restores(vmid: 101).last?.parameters["force"] == "1" && rig.restores(vmid: 101).last?.parameters["live-restore"] == "1")
    }

    /// A held guest keeps its held copy: --latest does not restore over it or beside it.
    @Test func heldGuestStartsTheHeldCopy() async throws {
        let rig = try Self.rig(keep: true)
        await rig.once()
        try rig.store.update(Self.key, targetVmid: 101) { $0.held = true }
        rig.clock.advance(by: 3600)
        let (ok, lines) = try await Self.failover(rig, .init(latest: true))
        #expect(ok && lines.contains { $0.contains("held") }, "\(lines)")
        #expect(rig.restores(vmid: 100_101).isEmpty && rig.mutations(vmid: 101).contains { $0.path.hasSuffix("/status/start") })
    }

    /// Review finding: a hold that arrives while the restore into the other slot runs ends up on
    /// both copies, so after the state file is lost neither is restored over.
    @Test func holdDuringARestoreFollowsTheNewCopyAndSurvivesStateLoss() async throws {
        let box = Mutex<Rig?>(nil)
        let armed = Mutex(false)
        let rig = try Rig(scenario: SafetyRegressionTests.one(), configure: { c in
            SafetyRegressionTests.configure(&c)
            c.restore.keepPrevious = true
        }, transport: { inner in
            HookTransport(inner: inner) { method, path in
                guard method == .post, path.hasSuffix("/qemu"), armed.withLock({ $0 }) else { return }
                armed.withLock { $0 = false }
                guard let rig = box.withLock({ $0 }) else { return }
                _ = try? rig.store.update(Self.key, targetVmid: 101) { $0.held = true }
                // What `pbs-standby hold` does next: tag the proven copy (A at 101), from another thread.
                let done = DispatchSemaphore(value: 0)
                Task.detached { _ = try? await rig.operations.mirror(Marker.heldTag, on: Self.key, set: true); done.signal() }
                done.wait()
            }
        })
        box.withLock { $0 = rig }
        await rig.once()
        armed.withLock { $0 = true }
        rig.clock.advance(by: 3600)
        await rig.once()
        #expect(rig.simulator.guestSnapshot(101)?.tags.contains(Marker.heldTag) == true)
        #expect(rig.simulator.guestSnapshot(100_101)?.tags.contains(Marker.heldTag) == true, "the hold follows to the copy that finished")
        try rig.loseStateFile()
        rig.clock.advance(by: 3600)
        let posts = rig.simulator.journal().filter { $0.method == "POST" && $0.path.hasSuffix("/qemu") }.count
        await rig.once()
        #expect(rig.simulator.journal().filter { $0.method == "POST" && $0.path.hasSuffix("/qemu") }.count == posts)
        #expect(rig.guest(101)?.state == .held)
    }

    /// Review finding: an adoption holds only for the guest that was adopted; an admin's new guest
    /// at that VMID afterwards is not overwritten.
    @Test func adoptionEndsWhenAnotherGuestTakesTheVMID() async throws {
        var s = SafetyRegressionTests.one()
        s.existing = [.init(vmid: 101, type: .vm, name: "old-script-copy")]
        let rig = try Rig(scenario: s, configure: SafetyRegressionTests.configure)
        let id = try await rig.operations.adopt(Self.key, vmid: 101)
        #expect(id.hasPrefix("vmgenid:"))
        #expect(rig.simulator.adminDestroy(vmid: 101) && rig.simulator.adminCreate(vmid: 101, type: .vm, name: "admins-new-vm"))
        await rig.once()
        #expect(rig.restores(vmid: 101).isEmpty)
        #expect(rig.guest(101)?.blockedReason == .notOwned)
        // Adopting the guest that is there now works.
        _ = try await rig.operations.adopt(Self.key, vmid: 101)
        await rig.once()
        #expect(rig.restores(vmid: 101).count == 1 && rig.restores(vmid: 101)[0].parameters["force"] == "1")
    }
}
