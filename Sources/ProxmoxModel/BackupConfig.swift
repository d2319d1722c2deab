import Foundation

/// The parts of a backed-up guest config (`GET /nodes/{node}/vzdump/extractconfig`, §13.1) that
/// decide whether a restore by a token is refused: bridged NICs (`SDN.Use`), CT mount points
/// (bind/device: root only), VM host devices (`hostpciN`/`usbN`: root only unless mapped), whether
/// a CT is privileged (`Sys.Modify` on `/` for its first restore), and the production storage ids
/// of the disks (where a VM restore without `storage` puts them, §13.4).
public struct BackupConfig: Sendable, Equatable {
    /// A network device with a bridge (`net0: virtio=…,bridge=vmbr0`).
    public struct NIC: Sendable, Equatable {
        public var key: String
        public var bridge: String
        public init(key: String, bridge: String) {
            self.key = key
            self.bridge = bridge
        }
    }

    /// A CT mount point (`mpN`): a volume on a storage, a host directory (bind) or a host device.
    public struct MountPoint: Sendable, Equatable {
        public enum Kind: String, Sendable { case volume, bind, device }
        public var key: String
        public var kind: Kind
        /// The storage id of a volume mount point.
        public var storage: String?
        public init(key: String, kind: Kind, storage: String?) {
            self.key = key
            self.kind = kind
            self.storage = storage
        }
    }

    /// A VM host device (`hostpciN`, `usbN`): real (root only), mapped (`Mapping.Use`) or, for USB,
    /// the SPICE redirection (no host device).
    public struct HostDevice: Sendable, Equatable {
        public var key: String
        /// The resource mapping's name (`mapping=NAME`), nil for a real device.
        public var mapping: String?
        /// `usbN: spice` (or `host=spice`): no host device.
        public var spice: Bool
        public init(key: String, mapping: String?, spice: Bool) {
            self.key = key
            self.mapping = mapping
            self.spice = spice
        }
        /// `/mapping/pci/NAME` or `/mapping/usb/NAME` for a mapped device.
        public var mappingPath: String? { mapping.map { "/mapping/\(key.hasPrefix("usb") ? "usb" : "pci")/\($0)" } }
    }

    /// A disk and the storage id it was on in production.
    public struct Disk: Sendable, Equatable {
        public var key: String
        public var storage: String
        /// The drive's `size=` in bytes, when given (K, M, G, T).
        public var size: Int64?
        public init(key: String, storage: String, size: Int64? = nil) {
            self.key = key
            self.storage = storage
            self.size = size
        }
    }

    public var type: GuestType
    public var nics: [NIC] = []
    public var mountPoints: [MountPoint] = []
    public var hostDevices: [HostDevice] = []
    public var disks: [Disk] = []
    /// CTs: `unprivileged: 1` in the backup (a CT without it is privileged).
    public var unprivileged = false
    /// `onboot: 1` in the backup (restores pass `onboot=0`; `failover` puts this back).
    public var onboot = false

    /// Reads the main section of a config text (snapshot and pending sections after the first
    /// `[` line are ignored). VM disks come from the `#qmdump#map` lines when there are any
    /// (§3.3: the storage a restore without `storage` uses), else from the drive keys.
    public init(parsing text: String, type: GuestType) {
        self.type = type
        var driveDisks: [Disk] = [], mapDisks: [Disk] = []
        var sizes: [String: Int64] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") { break }
            if line.hasPrefix("#qmdump#map:") {
                // #qmdump#map:<virtdev>:<devname>:<storeid>:<format>:
                let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                if f.count >= 4, !f[3].isEmpty { mapDisks.append(Disk(key: f[1], storage: f[3])) }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            let fields = value.split(separator: ",").map(String.init)
            let first = fields.first ?? ""
            func option(_ name: String) -> String? {
                fields.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
            }
            if let size = option("size").flatMap(Self.bytes) { sizes[key] = size }
            if Self.isIndexed(key, "net"), let bridge = option("bridge") {
                nics.append(NIC(key: key, bridge: bridge))
            } else if key == "unprivileged" {
                unprivileged = value == "1"
            } else if key == "onboot" {
                onboot = value == "1"
            } else if type == .ct && (key == "rootfs" || Self.isIndexed(key, "mp")) {
                let volume = option("volume") ?? (first.contains("=") ? "" : first)
                let kind: MountPoint.Kind = volume.hasPrefix("/dev/") ? .device : volume.hasPrefix("/") ? .bind : .volume
                let storage = kind == .volume ? volume.split(separator: ":").first.map(String.init) : nil
                if key != "rootfs" { mountPoints.append(MountPoint(key: key, kind: kind, storage: storage)) }
                if let storage { driveDisks.append(Disk(key: key, storage: storage)) }
            } else if type == .vm && (Self.isIndexed(key, "hostpci") || Self.isIndexed(key, "usb")) {
                let host = option("host") ?? (first.contains("=") ? nil : first)
                hostDevices.append(HostDevice(key: key, mapping: option("mapping"),
                                              spice: key.hasPrefix("usb") && host?.lowercased() == "spice"))
            } else if type == .vm && Self.isDrive(key) {
                if first == "none" || fields.contains("media=cdrom") || first.hasPrefix("/") { continue }
                let volume = option("file") ?? first
                if let storage = volume.split(separator: ":", maxSplits: 1).first, volume.contains(":") {
                    driveDisks.append(Disk(key: key, storage: String(storage)))
                }
            }
        }
        disks = (mapDisks.isEmpty ? driveDisks : mapDisks).map { d in
            var d = d
            d.size = sizes[d.key]
            return d
        }
    }

    /// Each disk's size in the order pbs-restore restores them (§3.3); empty when one is unknown.
    /// Known before a task is followed, they keep a multi-disk restore's progress from falling.
    public var diskSizes: [Int64] {
        let s = disks.compactMap(\.size)
        return s.count == disks.count ? s : []
    }

    /// `32G`, `512M`, `4K`, `1T` (or plain bytes) in bytes, clamped to 1 EiB.
    public static func bytes(_ text: String) -> Int64? {
        let units: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        guard let last = text.last else { return nil }
        let (number, factor) = units[last].map { (text.dropLast(), $0) } ?? (Substring(text), 1)
        guard let n = Double(number), n.isFinite, n >= 0 else { return nil }
        return Int64(min(n * factor, Double(1 << 60)))
    }

    /// The production storage ids of the disks, each once, in order.
    public var diskStorages: [String] {
        var seen = Set<String>()
        return disks.map(\.storage).filter { seen.insert($0).inserted }
    }

    static func isIndexed(_ key: String, _ prefix: String) -> Bool {
        key.hasPrefix(prefix) && key.count > prefix.count && key.dropFirst(prefix.count).allSatisfy(\.isNumber)
    }

    static func isDrive(_ key: String) -> Bool {
        ["scsi", "virtio", "sata", "ide"].contains { isIndexed(key, $0) } || key == "efidisk0" || key == "tpmstate0"
    }
}

extension GuestConfig {
    /// Bytes of this VM's disks on `storage` (`size=` of the drive keys `ideN`, `sataN`, `scsiN`,
    /// `virtioN`, `efidisk0`, `tpmstate0` whose volume is on it; CD-ROMs left out): what a forced
    /// restore frees there before it allocates. Reads the raw keys only (once per pass and guest).
    public func diskBytes(onStorage storage: String) -> Int64 {
        var total: Int64 = 0
        for (key, value) in raw where Self.isDriveKey(key) && value.hasPrefix(storage + ":") && !value.contains("media=cdrom") {
            for option in value.split(separator: ",") where option.hasPrefix("size=") {
                let (sum, overflow) = total.addingReportingOverflow(BackupConfig.bytes(String(option.dropFirst(5))) ?? 0)
                total = overflow ? .max : sum
            }
        }
        return total
    }

    /// `ideN`, `sataN`, `scsiN`, `virtioN`, `efidisk0`, `tpmstate0`: the keys whose value is a volume.
    static func isDriveKey(_ key: String) -> Bool {
        if key == "efidisk0" || key == "tpmstate0" { return true }
        for bus in ["ide", "sata", "scsi", "virtio"] where key.hasPrefix(bus) {
            let rest = key.dropFirst(bus.count)
            return !rest.isEmpty && rest.allSatisfy(\.isNumber)
        }
        return false
    }
}
