import Foundation
import Logging
import ProxmoxAPI
import ProxmoxSimulator
import ServiceLifecycle
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore
import TestSupport
import Testing

/// A graceful shutdown (SIGTERM from systemd) ends the loop's wait at once, not after the rest of
/// `poll_interval` (review of the redesign: with the defaults systemd's 30 s stop timeout would
/// have killed the service before it recorded anything).
@Suite("Graceful shutdown")
struct GracefulShutdownTests {
    @Test func theLoopStopsPromptlyDuringALongPollInterval() async throws {
        let scenario = Rig.scenario(backedUp: [.init(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [Rig.gib], interval: 86400)])
        let sim = PVESimulator(scenario: scenario, clock: ManualClock(start: 1_795_000_000))
        var config = StandbyRuntime.demoConfig(scenario: scenario, statePath: ":memory:")
        config.restore.pollInterval = .seconds(600)
        config.restore.listingMaxInterval = .seconds(600)
        var logger = Logger(label: "shutdown")
        logger.logLevel = .critical
        let runtime = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: try StateStore(),
                                     clock: WallClock(), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: runtime.reconciler)], logger: logger))
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // Let the first pass run and the loop settle into its 10-minute wait.
            while runtime.reconciler.snapshot.service.lastLoopAt == nil { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(300))
            let asked = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            #expect(ContinuousClock.now - asked < .seconds(5), "stopped \(ContinuousClock.now - asked) after the request")
        }
        #expect(ContinuousClock.now - started < .seconds(60))
    }
}
