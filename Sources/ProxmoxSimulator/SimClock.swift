import Foundation
import Synchronization

/// The simulator's notion of now, in Unix seconds. Injected so tests advance time by hand and the
/// demo runs on an accelerated clock; no test sleeps to wait for a restore.
public protocol SimClock: Sendable {
    /// The current time (Unix seconds, fractional).
    func now() -> Double
}

/// A clock that moves only when told to (tests, benchmarks).
public final class ManualClock: SimClock {
    private let value: Mutex<Double>

    /// Starts at `start` Unix seconds.
    public init(start: Double) { value = Mutex(start) }

    public func now() -> Double { value.withLock { $0 } }

    /// Moves time forward.
    public func advance(by seconds: Double) { value.withLock { $0 += max(0, seconds) } }

    /// Sets the time (never backwards).
    public func set(_ t: Double) { value.withLock { $0 = max($0, t) } }
}

/// Real time scaled by `speed` from `epoch` (speed 1 = real time).
public final class AcceleratedClock: SimClock {
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
}

/// The wall clock.
public struct SystemClock: SimClock {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
}
