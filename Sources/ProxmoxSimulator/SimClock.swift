import Foundation
import ProxmoxAPI
import Synchronization

// The simulator's clocks are ``EngineClock``s (ProxmoxModel): the engine that tests drive against
// the simulator runs on the very same clock; no test sleeps to wait for a restore.

/// A clock that moves only when told to (tests, benchmarks); sleeping advances it at once.
public final class ManualClock: EngineClock {
    private let value: Mutex<Double>

    /// Starts at `start` Unix seconds.
    public init(start: Double) { value = Mutex(start) }

    public func now() -> Double { value.withLock { $0 } }

    /// Moves time forward.
    public func advance(by seconds: Double) { value.withLock { $0 += max(0, seconds) } }

    /// Sets the time (never backwards).
    public func set(_ t: Double) { value.withLock { $0 = max($0, t) } }

    /// Virtual time: sleeping moves the clock forward at once.
    public func sleep(_ seconds: Double) async throws {
        try Task.checkCancellation()
        advance(by: seconds)
        await Task.yield()
    }
}

/// Real time scaled by `speed` from `epoch` (speed 1 = real time): the demo's clock.
public final class AcceleratedClock: EngineClock {
    /// Simulated seconds per real second.
    public let speed: Double
    private let startReal: Double
    private let startSim: Double

    /// A clock that shows `epoch` now and runs `speed` times faster than real time.
    public init(epoch: Double = Date().timeIntervalSince1970, speed: Double) {
        self.speed = speed
        self.startReal = Date().timeIntervalSince1970
        self.startSim = epoch
    }

    public func now() -> Double { startSim + (Date().timeIntervalSince1970 - startReal) * speed }

    /// Sleeping `s` takes `s / speed` real seconds.
    public func sleep(_ seconds: Double) async throws {
        try await Task.sleep(for: .milliseconds(Int64(max(0, seconds) / speed * 1000)))
    }
}
