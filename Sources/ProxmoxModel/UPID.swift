/// A PVE task id: `UPID:<node>:<pid 8X>:<pstart 8-9X>:<starttime 8X>:<type>:<id>:<user>:` (reference §4.1).
public struct UPID: Sendable, Hashable, Codable, CustomStringConvertible {
    public var node: String
    public var pid: UInt32
    public var pstart: UInt64
    public var startTime: Int
    /// Worker type, e.g. `qmrestore`, `vzrestore`, `qmstart`.
    public var type: String
    /// Task id, e.g. the vmid.
    public var id: String
    /// `user@realm` or `user@realm!token`.
    public var user: String

    /// Creates a UPID from parts.
    public init(node: String, pid: UInt32, pstart: UInt64, startTime: Int, type: String, id: String, user: String) {
        self.node = node
        self.pid = pid
        self.pstart = pstart
        self.startTime = startTime
        self.type = type
        self.id = id
        self.user = user
    }

    /// Parses per pve-common's `UPID.pm` decode regex; nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        // "UPID", node, pid, pstart, start, type, id, user, "" (trailing colon)
        guard parts.count == 9, parts[0] == "UPID", parts[8].isEmpty else { return nil }
        let node = parts[1]
        guard let first = node.first, first.isLetter || first.isNumber,
              node.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }),
              node.last != "-" else { return nil }
        func hex(_ s: Substring, _ lengths: ClosedRange<Int>) -> UInt64? {
            guard lengths.contains(s.count), s.allSatisfy(\.isHexDigit) else { return nil }
            return UInt64(s, radix: 16)
        }
        guard let pid = hex(parts[2], 8...8), let pstart = hex(parts[3], 8...9), let start = hex(parts[4], 8...8) else { return nil }
        let bad: (Substring) -> Bool = { $0.contains { $0 == "/" || $0.isWhitespace } }
        guard !parts[5].isEmpty, !bad(parts[5]), !bad(parts[6]), !parts[7].isEmpty, !bad(parts[7]) else { return nil }
        self.init(node: String(node), pid: UInt32(pid), pstart: pstart, startTime: Int(start),
                  type: String(parts[5]), id: String(parts[6]), user: String(parts[7]))
    }

    /// `sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", …)`.
    public var description: String {
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, 8 - s.count)) + s
        }
        return "UPID:\(node):\(hex(UInt64(pid))):\(hex(pstart)):\(hex(UInt64(startTime))):\(type):\(id):\(user):"
    }
}
