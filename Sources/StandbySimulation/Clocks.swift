import ProxmoxModel
import Foundation
import ProxmoxSimulator
import StandbyService

// The RPO benchmark's discrete-event time over the simulator's manual clock. The engine sees only
// ``EngineClock``; the simulator's ManualClock and AcceleratedClock are EngineClocks themselves.

/// A discrete-event clock: `sleep` parks the caller until the driver moves time past its
/// deadline. Time moves only when the driver calls ``advance(to:)``, so a simulated week runs in
/// seconds and every restore completes at its exact simulated time (the RPO benchmark).
public final class SteppedClock: EngineClock, @unchecked Sendable {
    /// The underlying time source, shared with the simulator.
    public let manual: ManualClock
    private let lock = NSLock()
    private var waiters: [(deadline: Double, continuation: CheckedContinuation<Void, Never>)] = []

    /// Wraps a manual clock.
    public init(_ manual: ManualClock) { self.manual = manual }

    public func now() -> Double { manual.now() }

    public func sleep(_ seconds: Double) async throws {
        let deadline = now() + max(0, seconds)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            lock.lock()
            waiters.append((deadline, c))
            lock.unlock()
        }
    }

    /// Callers parked in `sleep`.
    public var sleeperCount: Int { lock.lock(); defer { lock.unlock() }; return waiters.count }

    /// The earliest deadline of a parked caller.
    public var nextDeadline: Double? { lock.lock(); defer { lock.unlock() }; return waiters.map(\.deadline).min() }

    /// Moves time to `t` and wakes every caller whose deadline has come.
    public func advance(to t: Double) {
        manual.set(t)
        lock.lock()
        let due = waiters.filter { $0.deadline <= t }
        waiters.removeAll { $0.deadline <= t }
        lock.unlock()
        for w in due { w.continuation.resume() }
    }
}
