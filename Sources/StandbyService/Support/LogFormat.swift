import Foundation
import Logging

/// Log line formats of `--log.format`, as Prometheus' own tools offer them.
public enum LogFormat: String, Sendable, CaseIterable {
    /// `ts=… level=info msg="…" key=value`
    case logfmt
    /// One JSON object per line.
    case json
}

/// A swift-log handler writing logfmt or JSON lines to standard error.
///
/// Metadata keys are shared across the code base (`vmid`, `volid`, `upid`, `attempt`, …), so
/// lines can be filtered the same way whatever logged them.
public struct LineLogHandler: LogHandler {
    /// Metadata added to every line (an event's own metadata wins on a clash).
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level
    /// The logger's label (the `logger` field).
    let label: String
    /// logfmt or JSON lines.
    let format: LogFormat

    /// Creates a handler.
    public init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    /// One metadata value of the handler.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes one line: `ts`, `level`, `logger`, `msg`, then the metadata keys in sorted order.
    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("ts", Self.timestamp()), ("level", event.level.rawValue), ("logger", label), ("msg", "\(event.message)"),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for key in merged.keys.sorted() { fields.append((key, "\(merged[key]!)")) }
        let line: String
        switch format {
        case .logfmt:
            line = fields.map { "\($0.0)=\(Self.logfmtValue($0.1))" }.joined(separator: " ")
        case .json:
            line = "{" + fields.map { "\(Self.jsonString($0.0)):\(Self.jsonString($0.1))" }.joined(separator: ",") + "}"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// Now as ISO-8601 UTC with fractional seconds (the `ts` field).
    static func timestamp() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    /// A logfmt value: quoted and escaped when empty or holding a space, `=`, `"` or a line feed.
    static func logfmtValue(_ v: String) -> String {
        let needsQuotes = v.isEmpty || v.contains { $0 == " " || $0 == "=" || $0 == "\"" || $0 == "\n" }
        guard needsQuotes else { return v }
        return "\"" + v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n") + "\""
    }

    /// A JSON string literal, quoted and escaped by JSONSerialization.
    static func jsonString(_ v: String) -> String {
        let data = try? JSONSerialization.data(withJSONObject: [v], options: [.withoutEscapingSlashes])
        let s = data.map { String(decoding: $0, as: UTF8.self) } ?? "[\"\"]"
        return String(s.dropFirst().dropLast())
    }
}
