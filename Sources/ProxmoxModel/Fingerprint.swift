import Foundation

/// SHA-256 certificate fingerprints in PVE's `AB:CD:…` form (reference §1.1). Compared case-insensitively.
public enum Fingerprint {
    /// Normalises `AB:CD:…` or plain hex to 64 lower-case hex digits; nil when not 32 bytes.
    public static func normalize(_ text: String) -> String? {
        let hex = text.replacingOccurrences(of: ":", with: "").lowercased()
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        return hex
    }

    /// Formats 32 bytes as PVE does: upper-case hex pairs joined by `:` [unverified: upper case].
    public static func format(_ digest: some Sequence<UInt8>) -> String {
        digest.map { String($0, radix: 16, uppercase: true).paddedHexPair }.joined(separator: ":")
    }
}

private extension String {
    /// A one-digit hex byte gets its leading zero.
    var paddedHexPair: String { count < 2 ? String(repeating: "0", count: 2 - count) + self : self }
}
