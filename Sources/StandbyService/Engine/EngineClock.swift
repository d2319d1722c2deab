import Foundation
import ProxmoxSimulator

/// Time as the engine sees it: now, and sleeping. Injected so tests run on virtual time and the
/// demo on an accelerated clock, with the same engine code.
public protocol EngineClock: Sendable {
    /// Unix seconds.
    func now() -> Double
    /// Sleeps `seconds` of this clock's time (throws on cancellation).
    func sleep(_ seconds: Double) async throws
}

/// Real time.
public struct WallClock: EngineClock {
    public init() {}
    public func now() -> Double { Date().timeIntervalSince1970 }
    public func sleep(_ seconds: Double) async throws { try await Task.sleep(for: .milliseconds(Int64(max(0, seconds) * 1000))) }
}

/// The simulator's accelerated clock: sleeping `s` takes `s / speed` real seconds.
public struct ScaledClock: EngineClock {
    public let clock: AcceleratedClock
    public init(_ clock: AcceleratedClock) { self.clock = clock }
    public func now() -> Double { clock.now() }
    public func sleep(_ seconds: Double) async throws {
        try await Task.sleep(for: .milliseconds(Int64(max(0, seconds) / clock.speed * 1000)))
    }
}

/// Virtual time for tests and benchmarks: sleeping advances the manual clock at once.
public struct VirtualClock: EngineClock {
    public let clock: ManualClock
    public init(_ clock: ManualClock) { self.clock = clock }
    public func now() -> Double { clock.now() }
    public func sleep(_ seconds: Double) async throws {
        try Task.checkCancellation()
        clock.advance(by: seconds)
        await Task.yield()
    }
}
