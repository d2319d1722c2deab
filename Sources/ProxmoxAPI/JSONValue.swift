import Foundation

/// A JSON value decoded leniently, the way PVE's Perl output needs: numbers may arrive as
/// numeric strings, booleans as 0/1, unknown fields are ignored, optional fields may be missing.
/// Accessors that must succeed throw ``ProxmoxError/decoding(path:field:message:)`` naming the field path.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses bytes; malformed JSON is an error naming the API path (never a crash).
    public static func parse(_ bytes: [UInt8], path: String) throws(ProxmoxError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            let preview = String(decoding: bytes.prefix(80), as: UTF8.self)
            throw .decoding(path: path, field: "", message: "malformed JSON (\(bytes.count) bytes, starts '\(preview)')")
        }
    }

    /// Member of an object, nil when absent or not an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Lenient integer: a number, a numeric string, or a boolean.
    public var int: Int? {
        switch self {
        case .number(let d): return d.isFinite && d == d.rounded() && abs(d) < 9.2e18 ? Int(d) : nil
        case .string(let s): return Int(s.trimmingCharacters(in: .whitespaces)) ?? Double(s).flatMap { $0 == $0.rounded() && abs($0) < 9.2e18 ? Int($0) : nil }
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Lenient floating-point number.
    public var double: Double? {
        switch self {
        case .number(let d): return d
        case .string(let s): return Double(s)
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Lenient boolean: true/false, 0/1, "0"/"1".
    public var bool: Bool? {
        switch self {
        case .bool(let b): return b
        case .number(let d): return d != 0
        case .string(let s): return s == "1" || s.lowercased() == "true" ? true : (s == "0" || s.lowercased() == "false" ? false : nil)
        default: return nil
        }
    }

    /// A string; numbers are rendered (PVE ids sometimes come as numbers).
    public var string: String? {
        switch self {
        case .string(let s): return s
        case .number(let d): return d == d.rounded() && abs(d) < 9.2e18 ? String(Int(d)) : String(d)
        default: return nil
        }
    }

    /// The elements of an array, or nil.
    public var array: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Serialises back to JSON text (sorted keys, as pvesh prints).
    public func serialized() -> String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d):
            return d == d.rounded() && abs(d) < 9.2e18 ? String(Int(d)) : String(d)
        case .string(let s): return JSONValue.quote(s)
        case .array(let a): return "[" + a.map { $0.serialized() }.joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { JSONValue.quote($0) + ":" + o[$0]!.serialized() }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

/// Reads fields of one JSON object with errors that name `path.field`.
public struct FieldReader {
    /// The API path and element, e.g. `/cluster/resources[3]`.
    public let path: String
    let object: [String: JSONValue]

    /// Wraps a value that must be an object.
    public init(_ value: JSONValue, path: String) throws(ProxmoxError) {
        guard case .object(let o) = value else {
            throw .decoding(path: path, field: "", message: "expected an object")
        }
        self.path = path
        self.object = o
    }

    /// A required integer.
    public func int(_ key: String) throws(ProxmoxError) -> Int {
        guard let v = object[key] else { throw .decoding(path: path, field: key, message: "missing") }
        guard let i = v.int else { throw .decoding(path: path, field: key, message: "expected an integer, got \(v.serialized().prefix(40))") }
        return i
    }

    /// A required string.
    public func string(_ key: String) throws(ProxmoxError) -> String {
        guard let v = object[key] else { throw .decoding(path: path, field: key, message: "missing") }
        guard let s = v.string else { throw .decoding(path: path, field: key, message: "expected a string, got \(v.serialized().prefix(40))") }
        return s
    }

    /// An optional integer; present but not numeric is an error.
    public func optionalInt(_ key: String) throws(ProxmoxError) -> Int? {
        guard let v = object[key], v != .null else { return nil }
        guard let i = v.int else { throw .decoding(path: path, field: key, message: "expected an integer, got \(v.serialized().prefix(40))") }
        return i
    }

    /// An optional number.
    public func optionalDouble(_ key: String) -> Double? { object[key]?.double }

    /// An optional string.
    public func optionalString(_ key: String) -> String? { object[key]?.string }

    /// An optional 0/1 flag (absent = false).
    public func flag(_ key: String) -> Bool { object[key]?.bool ?? false }

    /// A nested value.
    public func value(_ key: String) -> JSONValue? { object[key] }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let d = try? c.decode(Double.self) { self = .number(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
        self = .object(try c.decode([String: JSONValue].self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}
