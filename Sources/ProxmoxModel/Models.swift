import Foundation

/// Guest kind as PBS and volids name it (`vm` | `ct`); PVE's API names them `qemu` | `lxc`.
public enum GuestType: String, Sendable, Hashable, Codable, CaseIterable {
    case vm, ct

    /// The PVE API path segment and `/cluster/resources` type: `qemu` or `lxc`.
    public var apiType: String { self == .vm ? "qemu" : "lxc" }

    /// From `qemu`/`lxc` or `vm`/`ct`.
    public init?(apiType: String) {
        switch apiType {
        case "qemu", "vm": self = .vm
        case "lxc", "ct": self = .ct
        default: return nil
        }
    }
}

/// A PBS backup volid: `<storeid>:backup/<vm|ct>/<id>/<YYYY-MM-DDTHH:MM:SSZ>` (reference §2).
public struct Volid: Sendable, Hashable, Codable, CustomStringConvertible, Comparable {
    /// The PVE storage id.
    public var storage: String
    /// vm or ct.
    public var type: GuestType
    /// The backed-up guest's id.
    public var vmid: Int
    /// The backup time (Unix seconds, UTC).
    public var backupTime: Int

    /// Builds a volid.
    public init(storage: String, type: GuestType, vmid: Int, backupTime: Int) {
        self.storage = storage
        self.type = type
        self.vmid = vmid
        self.backupTime = backupTime
    }

    /// Parses a volid; nil when it is not a PBS backup volid of a numeric guest id.
    public init?(parsing text: String) {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let storage = String(text[..<colon])
        let parts = text[text.index(after: colon)...].split(separator: "/", omittingEmptySubsequences: false)
        guard !storage.isEmpty, parts.count == 4, parts[0] == "backup",
              let type = GuestType(rawValue: String(parts[1])),
              let vmid = Int(parts[2]), vmid > 0,
              let time = Volid.parseTime(String(parts[3])) else { return nil }
        self.init(storage: storage, type: type, vmid: vmid, backupTime: time)
    }

    /// The snapshot part: `vm/100/2024-01-01T00:00:00Z`.
    public var snapshot: String { "\(type.rawValue)/\(vmid)/\(Volid.formatTime(backupTime))" }

    /// The volid text.
    public var description: String { "\(storage):backup/\(snapshot)" }

    public static func < (a: Volid, b: Volid) -> Bool { a.description.lowercased() < b.description.lowercased() }

    /// `strftime("%FT%TZ", gmtime(t))`.
    public static func formatTime(_ t: Int) -> String {
        var tt = time_t(t)
        var tmv = tm()
        gmtime_r(&tt, &tmv)
        var out = [UInt8](repeating: 0, count: 20)
        func put(_ v: Int32, _ at: Int, _ width: Int) {
            var v = v
            for i in stride(from: at + width - 1, through: at, by: -1) { out[i] = UInt8(48 + v % 10); v /= 10 }
        }
        put(tmv.tm_year + 1900, 0, 4); out[4] = 45
        put(tmv.tm_mon + 1, 5, 2); out[7] = 45
        put(tmv.tm_mday, 8, 2); out[10] = 84
        put(tmv.tm_hour, 11, 2); out[13] = 58
        put(tmv.tm_min, 14, 2); out[16] = 58
        put(tmv.tm_sec, 17, 2); out[19] = 90
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ` (exactly that shape).
    public static func parseTime(_ s: String) -> Int? {
        let u = Array(s.utf8)
        guard u.count == 20, u[4] == 45, u[7] == 45, u[10] == 84, u[13] == 58, u[16] == 58, u[19] == 90 else { return nil }
        func num(_ r: Range<Int>) -> Int32? {
            var v: Int32 = 0
            for i in r { guard u[i] >= 48 && u[i] <= 57 else { return nil }; v = v * 10 + Int32(u[i] - 48) }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13),
              let mi = num(14..<16), let se = num(17..<19), (1...12).contains(mo), (1...31).contains(d),
              h < 24, mi < 60, se < 61 else { return nil }
        var tmv = tm()
        tmv.tm_year = y - 1900; tmv.tm_mon = mo - 1; tmv.tm_mday = d
        tmv.tm_hour = h; tmv.tm_min = mi; tmv.tm_sec = se
        return Int(timegm(&tmv))
    }
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content?content=backup` (reference §2).
public struct BackupEntry: Sendable, Hashable {
    /// The parsed volid.
    public var volid: Volid
    /// `ctime`: the PBS backup time.
    public var ctime: Int
    /// Size in bytes; **1 means PBS gave none**: the snapshot is in progress or unreadable (§2, §8.2).
    public var size: Int64
    /// PBS verification state (`ok`, `failed`), nil when never verified.
    public var verification: String?
    /// First line of the snapshot notes.
    public var notes: String?
    /// Whether the snapshot is protected.
    public var protected: Bool
    /// The key fingerprint (or "1") when encrypted.
    public var encrypted: String?

    /// Creates an entry.
    public init(volid: Volid, ctime: Int, size: Int64, verification: String? = nil, notes: String? = nil,
                protected: Bool = false, encrypted: String? = nil) {
        self.volid = volid
        self.ctime = ctime
        self.size = size
        self.verification = verification
        self.notes = notes
        self.protected = protected
        self.encrypted = encrypted
    }

    /// A backup is complete (restorable) when PBS reported a size; size 1 is PVE's placeholder.
    public var isComplete: Bool { size > 1 }
}

/// A guest from `GET /cluster/resources?type=vm` (reference §5.1).
public struct GuestResource: Sendable, Hashable {
    public var vmid: Int
    public var type: GuestType
    public var node: String
    /// `running`, `stopped`, … or `unknown` briefly after a restore.
    public var status: String
    public var name: String?
    public var lock: String?
    /// Tags as a list (PVE sends them `;`-joined).
    public var tags: [String]
    public var template: Bool
    public var maxdisk: Int64?
    /// Configured memory in bytes (`maxmem`): what a start of the guest needs.
    public var maxmem: Int64?

    /// Creates a resource.
    public init(vmid: Int, type: GuestType, node: String, status: String, name: String? = nil, lock: String? = nil,
                tags: [String] = [], template: Bool = false, maxdisk: Int64? = nil, maxmem: Int64? = nil) {
        self.maxmem = maxmem
        self.vmid = vmid
        self.type = type
        self.node = node
        self.status = status
        self.name = name
        self.lock = lock
        self.tags = tags
        self.template = template
        self.maxdisk = maxdisk
    }
}

/// A guest's configuration, the keys this service reads (reference §5.3).
public struct GuestConfig: Sendable, Hashable {
    public var name: String?
    public var description: String?
    public var tags: [String]
    public var lock: String?
    public var protection: Bool
    public var digest: String?
    /// Every key as text, for what is not modelled.
    public var raw: [String: String]

    /// Creates a config.
    public init(name: String? = nil, description: String? = nil, tags: [String] = [], lock: String? = nil,
                protection: Bool = false, digest: String? = nil, raw: [String: String] = [:]) {
        self.name = name
        self.description = description
        self.tags = tags
        self.lock = lock
        self.protection = protection
        self.digest = digest
        self.raw = raw
    }
}

/// A node from `GET /nodes`.
public struct NodeInfo: Sendable, Hashable {
    public var node: String
    public var status: String
    public var sslFingerprint: String?
    public init(node: String, status: String, sslFingerprint: String? = nil) {
        self.node = node
        self.status = status
        self.sslFingerprint = sslFingerprint
    }
}

/// A storage of a node, from `GET /nodes/{node}/storage` or `.../status`.
public struct StorageInfo: Sendable, Hashable {
    public var storage: String
    public var type: String
    public var content: [String]
    public var active: Bool
    public var enabled: Bool
    public var total: Int64?
    public var used: Int64?
    public var avail: Int64?
    public init(storage: String, type: String, content: [String], active: Bool, enabled: Bool,
                total: Int64? = nil, used: Int64? = nil, avail: Int64? = nil) {
        self.storage = storage
        self.type = type
        self.content = content
        self.active = active
        self.enabled = enabled
        self.total = total
        self.used = used
        self.avail = avail
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status` (reference §4.2).
public struct TaskStatus: Sendable, Hashable {
    public var upid: UPID
    /// `running` or `stopped`.
    public var running: Bool
    /// When stopped: `OK`, `WARNINGS: n`, or the error text.
    public var exitStatus: String?

    public init(upid: UPID, running: Bool, exitStatus: String?) {
        self.upid = upid
        self.running = running
        self.exitStatus = exitStatus
    }

    /// N of `WARNINGS: N` (0 for `OK` or anything else).
    public static func warningCount(_ exitStatus: String?) -> Int {
        guard let e = exitStatus, e.hasPrefix("WARNINGS") else { return 0 }
        return Int(e.drop { !$0.isNumber }.prefix { $0.isNumber }) ?? 1
    }

    /// `OK` and `WARNINGS: n` are success (pve-common `status_is_error`).
    public var succeeded: Bool {
        guard let e = exitStatus, !running else { return false }
        return e == "OK" || e.hasPrefix("WARNINGS")
    }
}

/// One line of a task log: `{"n": 1-based number, "t": text}`.
public struct TaskLogLine: Sendable, Hashable {
    public var n: Int
    public var t: String
    public init(n: Int, t: String) {
        self.n = n
        self.t = t
    }
}

/// An entry of `GET /nodes/{node}/tasks` (used to find tasks again after a restart).
public struct TaskSummary: Sendable, Hashable {
    public var upid: UPID
    /// Exit status text for finished tasks; `RUNNING` while running (PVE 9, reference §13.5), nil
    /// from versions that send none.
    public var status: String?
    public var endTime: Int?
    public init(upid: UPID, status: String?, endTime: Int?) {
        self.upid = upid
        self.status = status
        self.endTime = endTime
    }
}
