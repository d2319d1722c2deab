import Foundation

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
    /// The system clock.
    public init() {}
    /// Unix seconds from the system clock.
    public func now() -> Double { Date().timeIntervalSince1970 }
    /// Sleeps in real time (millisecond resolution; throws on cancellation).
    public func sleep(_ seconds: Double) async throws { try await Task.sleep(for: .milliseconds(Int64(max(0, seconds) * 1000))) }
}
