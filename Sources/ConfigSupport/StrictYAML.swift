import Foundation
import Yams

/// A configuration error that names the key path, the line, and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Dotted key path, e.g. `sources[0].vmid_offset`.
    public var path: String
    /// 1-based line in the file, when known.
    public var line: Int?
    /// What is wrong, in words.
    public var message: String

    /// Creates an error.
    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        return path.isEmpty ? "\(message)\(at)" : "\(path)\(at): \(message)"
    }
}

/// Reads one YAML mapping strictly: typed getters that name the key and line on a bad value,
/// and ``finish()`` that rejects every key nobody asked for (a typo must not be ignored).
public final class StrictMapping {
    /// The key path of this mapping ("" at the top level).
    public let path: String
    /// The line of the mapping itself.
    public let line: Int?
    private let pairs: [(key: String, keyLine: Int?, value: Node)]
    private var consumed: Set<String> = []

    /// Parses a whole document; an empty document is an empty mapping.
    public static func parse(yaml: String) throws(ConfigError) -> StrictMapping {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError(path: "", line: Self.line(of: error), message: "not valid YAML: \(error)")
        } catch {
            throw ConfigError(path: "", line: nil, message: "not valid YAML: \(error)")
        }
        guard let node else { return try StrictMapping(node: Node([(Node, Node)]()), path: "") }
        return try StrictMapping(node: node, path: "")
    }

    /// Wraps a node that must be a mapping.
    public init(node: Node, path: String) throws(ConfigError) {
        self.path = path
        self.line = node.mark.map { $0.line }
        guard let mapping = node.mapping else {
            throw ConfigError(path: path, line: line, message: "expected a mapping of keys to values")
        }
        var seen = Set<String>()
        var pairs: [(String, Int?, Node)] = []
        for (k, v) in mapping {
            guard let key = k.string else {
                throw ConfigError(path: path, line: k.mark?.line, message: "keys must be strings")
            }
            guard seen.insert(key).inserted else {
                throw ConfigError(path: path.isEmpty ? key : "\(path).\(key)", line: k.mark?.line, message: "key appears twice")
            }
            pairs.append((key, k.mark?.line, v))
        }
        self.pairs = pairs.map { (key: $0.0, keyLine: $0.1, value: $0.2) }
    }

    /// All keys in file order (for maps keyed by user data, e.g. guest ids or user names).
    public var keys: [String] { pairs.map(\.key) }

    /// Whether the key is present (marks it as known).
    public func has(_ key: String) -> Bool {
        consumed.insert(key)
        return pairs.contains { $0.key == key }
    }

    /// The dotted path of a child key.
    public func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The raw node of a key (marks it as known).
    public func node(_ key: String) -> Node? {
        consumed.insert(key)
        guard let v = pairs.first(where: { $0.key == key })?.value else { return nil }
        if v.null != nil { return nil }
        return v
    }

    /// The line of a key, for messages.
    public func lineOf(_ key: String) -> Int? { pairs.first { $0.key == key }?.keyLine }

    /// A string value.
    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = node(key) else { return nil }
        guard case .scalar(let s) = v else { throw error(key, v, "expected a string") }
        return s.string
    }

    /// A non-negative or bounded integer value; also accepts quoted digits.
    public func int(_ key: String, range: ClosedRange<Int>? = nil) throws(ConfigError) -> Int? {
        guard let v = node(key) else { return nil }
        guard case .scalar(let s) = v, let i = Int(s.string) else {
            throw error(key, v, "expected an integer, got '\(Self.show(v))'")
        }
        if let range, !range.contains(i) {
            throw error(key, v, "\(i) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return i
    }

    /// A finite number value (integer or decimal), within `range` when given.
    public func double(_ key: String, range: ClosedRange<Double>? = nil) throws(ConfigError) -> Double? {
        guard let v = node(key) else { return nil }
        guard case .scalar(let s) = v, let d = Double(s.string), d.isFinite else {
            throw error(key, v, "expected a number, got '\(Self.show(v))'")
        }
        if let range, !range.contains(d) {
            throw error(key, v, "\(s.string) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return d
    }

    /// A boolean: true/false (also yes/no, on/off as YAML 1.1 allows).
    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = node(key) else { return nil }
        switch v.string?.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, v, "expected true or false, got '\(Self.show(v))'")
        }
    }

    /// A duration such as `30s`, `15m`, `2h`, `1d` (also `1h30m`, or plain seconds).
    public func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let v = node(key) else { return nil }
        guard case .scalar(let s) = v, let d = parseDuration(s.string) else {
            throw error(key, v, "expected a duration like 30s, 15m, 2h or 1d, got '\(Self.show(v))'")
        }
        return d
    }

    /// A nested mapping.
    public func mapping(_ key: String) throws(ConfigError) -> StrictMapping? {
        guard let v = node(key) else { return nil }
        return try StrictMapping(node: v, path: child(key))
    }

    /// A sequence of nodes.
    public func sequence(_ key: String) throws(ConfigError) -> [Node]? {
        guard let v = node(key) else { return nil }
        guard let seq = v.sequence else { throw error(key, v, "expected a list") }
        return Array(seq)
    }

    /// A list of scalars as strings; a single scalar counts as a one-element list.
    public func stringList(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = node(key) else { return nil }
        if case .scalar(let s) = v { return [s.string] }
        guard let seq = v.sequence else { throw error(key, v, "expected a list") }
        var out: [String] = []
        for (i, item) in seq.enumerated() {
            guard case .scalar(let s) = item else {
                throw ConfigError(path: "\(child(key))[\(i)]", line: item.mark?.line, message: "expected a scalar")
            }
            out.append(s.string)
        }
        return out
    }

    /// Rejects keys that were never read: unknown keys are errors, not silence.
    public func finish() throws(ConfigError) {
        for p in pairs where !consumed.contains(p.key) {
            throw ConfigError(path: child(p.key), line: p.keyLine, message: "unknown key")
        }
    }

    /// An error about a key's value.
    public func error(_ key: String, _ node: Node?, _ message: String) -> ConfigError {
        ConfigError(path: child(key), line: node?.mark?.line ?? lineOf(key), message: message)
    }

    private static func show(_ node: Node) -> String {
        node.string ?? (node.sequence != nil ? "a list" : "a mapping")
    }

    private static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        default:
            return nil
        }
    }
}

/// Parses `30s`, `15m`, `2h`, `1d`, `1h30m`, `500ms` or a plain number of seconds; at most
/// 100 years (a longer or overflowing value is not a duration, it is a typo).
public func parseDuration(_ text: String) -> Duration? {
    let t = text.trimmingCharacters(in: .whitespaces)
    if t.isEmpty { return nil }
    let limit: Int64 = 100 * 365 * 86_400_000
    if let secs = Double(t) {
        guard secs >= 0, secs * 1000 <= Double(limit) else { return nil }
        return .milliseconds(Int64((secs * 1000).rounded()))
    }
    var total: Int64 = 0
    var number = ""
    var i = t.startIndex
    var sawUnit = false
    while i < t.endIndex {
        let c = t[i]
        if c.isNumber { number.append(c); i = t.index(after: i); continue }
        var unit = String(c)
        let next = t.index(after: i)
        if c == "m", next < t.endIndex, t[next] == "s" { unit = "ms"; i = t.index(after: next) } else { i = next }
        guard let n = Int64(number) else { return nil }
        number = ""
        let ms: Int64
        switch unit {
        case "ms": ms = 1
        case "s": ms = 1000
        case "m": ms = 60_000
        case "h": ms = 3_600_000
        case "d": ms = 86_400_000
        case "w": ms = 7 * 86_400_000
        default: return nil
        }
        let (product, o1) = n.multipliedReportingOverflow(by: ms)
        let (sum, o2) = total.addingReportingOverflow(product)
        guard !o1, !o2, sum <= limit else { return nil }
        total = sum
        sawUnit = true
    }
    guard number.isEmpty, sawUnit else { return nil }
    return .milliseconds(total)
}

/// Formats a duration the way the config accepts it (`2h`, `15m`, `1h30m`, `45s`).
public func formatDuration(_ d: Duration) -> String {
    var s = d.components.seconds
    if s == 0 { return "0s" }
    var out = ""
    for (unit, size) in [("d", Int64(86400)), ("h", 3600), ("m", 60), ("s", 1)] where s >= size {
        out += "\(s / size)\(unit)"
        s %= size
    }
    return out
}

extension Duration {
    /// The duration in seconds as a Double.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
