import Foundation

/// Time: now, and sleeping. The one clock protocol of the engine and the simulator, injected so
/// tests run on virtual time (``ManualClock`` in ProxmoxSimulator), the demo on an accelerated clock
/// and the RPO benchmark on discrete-event time, with the same engine code.
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
