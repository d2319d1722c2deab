import Foundation
import StandbyService

/// Runs a reconciler on a ``SteppedClock`` as a discrete-event simulation: passes every poll
/// interval (and at once when a worker finished, as `run()` does), time moved only when every
/// worker is parked, so each restore ends at its exact simulated time. Used by the RPO
/// benchmark and the soak test; `observe` sees every step before time moves on.
public struct SimulationDriver: Sendable {
    public let reconciler: Reconciler
    public let clock: SteppedClock

    public init(reconciler: Reconciler, clock: SteppedClock) {
        self.reconciler = reconciler
        self.clock = clock
    }

    /// Simulates until `end` (Unix seconds). `observe(now, next)` runs before each time step.
    public func run(until end: Double, observe: (Double, Double) async -> Void) async {
        let poll = reconciler.config.restore.pollInterval.seconds
        let reconciler = self.reconciler
        let clock = self.clock
        func settle() async {
            var spins = 0
            while clock.sleeperCount < reconciler.workersRunning && spins < 10_000_000 {
                await Task.yield()
                spins += 1
            }
        }
        await withDiscardingTaskGroup { group in
            var nextPass = clock.now()
            while clock.now() < end {
                let now = clock.now()
                if now >= nextPass || reconciler.restoreFinished {
                    await reconciler.pass { group.addTask(operation: $0) }
                    nextPass = now + poll
                    await settle()
                }
                let next = min(clock.nextDeadline ?? .infinity, nextPass, end)
                await observe(now, next)
                clock.advance(to: next)
                await settle()
            }
            group.cancelAll()
            clock.advance(to: .infinity)
        }
    }
}
