import ProxmoxAPI

/// Calls the simulator directly, without HTTP (tests, demo, benchmarks). Worker calls return a
/// UPID at once, as over HTTPS.
public struct InProcessTransport: ProxmoxTransport {
    /// The simulator called.
    public let simulator: PVESimulator

    /// Creates a transport to `simulator`.
    public init(simulator: PVESimulator) { self.simulator = simulator }

    public var runsTasksSynchronously: Bool { false }
    public var endpointDescription: String { "simulator (in-process)" }
    public var taskUser: String? { simulator.token.tokenID }

    public func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
                     onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        switch simulator.handle(method, path, parameters) {
        case .ok(let v): return v
        case .error(let status, let message, let errors):
            throw ProxmoxError.classify(path: path, status: status, message: message, errors: errors)
        }
    }
}
