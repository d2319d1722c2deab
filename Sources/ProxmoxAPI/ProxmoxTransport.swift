/// HTTP-like verbs of the PVE API (pvesh: get, create, set, delete).
public enum APIMethod: String, Sendable, Hashable {
    case get = "GET", post = "POST", put = "PUT", delete = "DELETE"

    /// The pvesh verb.
    public var pveshVerb: String {
        switch self {
        case .get: "get"
        case .post: "create"
        case .put: "set"
        case .delete: "delete"
        }
    }
}

/// One way of reaching the PVE API: HTTPS with a token, local pvesh, or the in-process simulator.
///
/// A transport returns the `data` part of PVE's answer, or a classified ``ProxmoxError``.
public protocol ProxmoxTransport: Sendable {
    /// Calls `method path` with form parameters (query string for GET/DELETE, body otherwise).
    /// `onOutput` receives task log lines for transports that run tasks synchronously (pvesh).
    func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
              onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue

    /// Whether worker calls (restore, start, stop) return only after the task ended (pvesh).
    var runsTasksSynchronously: Bool { get }

    /// A short description for logs (`https://host:8006`, `pvesh`, `simulator`), never a secret.
    var endpointDescription: String { get }

    /// The user PVE records in the UPIDs of tasks this transport starts (`USER@REALM!TOKENID` for
    /// an API token), when it identifies us; nil where an administrator's tasks carry the same
    /// user (pvesh as root@pam).
    var taskUser: String? { get }
}

extension ProxmoxTransport {
    /// No distinguishing task user by default.
    public var taskUser: String? { nil }
}

extension ProxmoxTransport {
    /// Calls without task output.
    public func call(_ method: APIMethod, _ path: String, parameters: [(String, String)] = []) async throws(ProxmoxError) -> JSONValue {
        try await call(method, path, parameters: parameters, onOutput: nil)
    }
}

/// Percent-encodes a path segment or form value (RFC 3986 unreserved characters stay).
public func percentEncode(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        default:
            out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
        }
    }
    return out
}

/// Encodes form parameters as `a=1&b=2`.
public func formEncode(_ parameters: [(String, String)]) -> String {
    parameters.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
}

/// Decodes `a=1&b=x%20y` (also `+` as space).
public func formDecode(_ text: String) -> [(String, String)] {
    text.split(separator: "&").compactMap { pair in
        let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let k = kv.first else { return nil }
        return (percentDecode(String(k)), kv.count > 1 ? percentDecode(String(kv[1])) : "")
    }
}

/// Decodes `%XX` escapes and `+`.
public func percentDecode(_ s: String) -> String {
    var bytes: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "+") { bytes.append(32); continue }
        if b == UInt8(ascii: "%"), it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
            bytes.append(v); it = it.dropFirst(2); continue
        }
        bytes.append(b)
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
