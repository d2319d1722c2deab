/// What went wrong talking to PVE, classified by what the caller can do about it.
public enum ProxmoxError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Worth retrying soon: connection refused/reset, timeouts, 502/503/504/595, a server busy.
    case transient(path: String, message: String)
    /// PVE refused the call for a reason about the guest (locked, running, exists, protected);
    /// the message is PVE's own text.
    case refused(path: String, reason: Refusal, message: String)
    /// 401/403: the token is wrong or lacks a privilege.
    case auth(path: String, status: Int, message: String)
    /// 400 with PVE's per-parameter `errors` map.
    case badRequest(path: String, message: String, errors: [String: String])
    /// Any other error answer (500 business errors, 501, unknown guest …).
    case server(path: String, status: Int, message: String)
    /// The answer could not be decoded; names the API path and field.
    case decoding(path: String, field: String, message: String)
    /// Local set-up problem (pvesh missing, token file unreadable, bad fingerprint format).
    case configuration(String)

    /// Refusals with a bounded reason (used as a metric label).
    public enum Refusal: String, Sendable, Equatable {
        case locked, running, exists, protected
    }

    /// Whether retrying the same call later can help.
    public var isTransient: Bool {
        if case .transient = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .transient(let path, let m): return "\(path): temporary failure: \(m)"
        case .refused(let path, let r, let m): return "\(path): refused (\(r.rawValue)): \(m)"
        case .auth(let path, let s, let m): return "\(path): HTTP \(s) authentication/permission failure: \(m)"
        case .badRequest(let path, let m, let errors):
            let detail = errors.keys.sorted().map { "\($0): \(errors[$0]!)" }.joined(separator: "; ")
            return "\(path): bad request: \(m)\(detail.isEmpty ? "" : " (\(detail))")"
        case .server(let path, let s, let m): return "\(path): HTTP \(s): \(m)"
        case .decoding(let path, let f, let m): return "\(path)\(f.isEmpty ? "" : ".\(f)"): cannot decode: \(m)"
        case .configuration(let m): return m
        }
    }

    /// Classifies an error answer of PVE (status + message) into the cases above.
    public static func classify(path: String, status: Int, message: String, errors: [String: String] = [:]) -> ProxmoxError {
        let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        switch status {
        case 400: return .badRequest(path: path, message: text, errors: errors)
        case 401, 403: return .auth(path: path, status: status, message: text.isEmpty ? "authentication failed" : text)
        case 502, 503, 504, 595, 596: return .transient(path: path, message: "HTTP \(status) \(text)")
        default: break
        }
        if let reason = refusal(in: text) { return .refused(path: path, reason: reason, message: text) }
        if status >= 500, text.contains("got timeout") || text.contains("timeout") || text.contains("temporarily") || text.contains("cfs-lock") {
            return .transient(path: path, message: "HTTP \(status) \(text)")
        }
        return .server(path: path, status: status, message: text)
    }

    /// The refusal reason named by a PVE error text (reference §6), if any.
    public static func refusal(in text: String) -> Refusal? {
        let t = text.lowercased()
        if t.contains("is locked") { return .locked }
        if t.contains("is running") || t.contains("running container") { return .running }
        if t.contains("already exists") { return .exists }
        if t.contains("protection mode enabled") { return .protected }
        return nil
    }
}

import Foundation
