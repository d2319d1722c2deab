import Foundation
import ProxmoxAPI

/// A guest's config as `GET …/config` renders it, and the config a restore writes from a backup.
extension PVESimulator {
    // MARK: - GET …/config

    /// The body of `GET /nodes/{node}/{qemu|lxc}/{vmid}/config` (reference §5.3): by default with
    /// pending values applied, with `current` the active ones (qemu-server API2/Qemu.pm:1790-1806
    /// `vm_config`; pve-guest-common AbstractConfig.pm:229-252 `load_current_config`). A CT's raw
    /// `lxc.*` keys come as `lxc: [[key, value], …]` (pve-container API2/LXC/Config.pm:61-67).
    func configObject(_ g: SimGuest, current: Bool = false) -> [String: JSONValue] {
        var o: [String: JSONValue] = ["digest": .string(g.digest)]
        o[g.type == .vm ? "name" : "hostname"] = .string(g.name)
        if let d = g.description { o["description"] = .string(d) }
        if !g.tags.isEmpty { o["tags"] = .string(g.tags.joined(separator: ";")) }
        if let l = g.lock { o["lock"] = .string(l) }
        if g.protection { o["protection"] = .number(1) }
        // `vmgenid` is a VM config key (§3.1 step 2); `onboot` appears only when set [unverified:
        // PVE omits keys at their default from the config file].
        if g.type == .vm, let id = g.vmgenid { o["vmgenid"] = .string(id) }
        if g.onboot { o["onboot"] = .number(1) }
        if let parent = g.parent { o["parent"] = .string(parent) }  // the current snapshot (AbstractConfig.pm:808)
        if g.type == .vm {
            // The disks as PVE writes them: `scsiN: STORAGE:vm-VMID-disk-N,size=…` (a restore
            // maps each backed-up drive to a new volume, §3.1; the delta executor reads them).
            for (i, d) in g.disks.enumerated() { o["scsi\(i)"] = .string("\(g.storage(ofDisk: i)):vm-\(g.vmid)-disk-\(i),size=\(max(1, d >> 30))G") }
        } else if let root = g.disks.first {
            o["rootfs"] = .string("\(g.storage(ofDisk: 0)):\(ctVolname(storage: g.storage(ofDisk: 0), vmid: g.vmid, disk: 0)),size=\(max(1, root >> 30))G")
        }
        var extra = g.extraConfig
        if !current { for (k, v) in g.pending { extra[k] = v } }
        var lxc: [(String, String)] = []
        for (k, v) in extra {
            if g.type == .ct, k.hasPrefix("lxc.") { lxc.append((k, v)) } else { o[k] = .string(v) }
        }
        if !lxc.isEmpty { o["lxc"] = .array(lxc.sorted { $0.0 < $1.0 }.map { .array([.string($0.0), .string($0.1)]) }) }
        return o
    }

    /// ``configObject(_:current:)`` as text per key, without `digest`: numbers as integers, each
    /// `lxc` pair under its own key.
    func flatConfig(_ g: SimGuest) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in configObject(g) where k != "digest" {
            switch v {
            case .string(let t): out[k] = t
            case .number(let n): out[k] = String(Int(n))
            case .array(let pairs):
                for p in pairs { if let kv = p.array, kv.count == 2, let a = kv[0].string, let b = kv[1].string { out[a] = b } }
            default: out[k] = "\(v)"
            }
        }
        return out
    }

    /// A CT volume's name on `storage` (pve-container src/PVE/LXC.pm:2580-2612 `alloc_disk`): a
    /// `subvol` on zfspool, a raw file `<vmid>/vm-<vmid>-disk-N.raw` on a storage with a path
    /// (dir, nfs, cifs, btrfs, cephfs), else a raw volume `vm-<vmid>-disk-N` (lvm, lvmthin, rbd).
    func ctVolname(storage: String, vmid: Int, disk: Int) -> String {
        switch scenario.targetStorages.first(where: { $0.id == storage })?.type ?? "lvmthin" {
        case "zfspool", "zfs": return "subvol-\(vmid)-disk-\(disk)"
        case "dir", "nfs", "cifs", "btrfs", "cephfs": return "\(vmid)/vm-\(vmid)-disk-\(disk).raw"
        default: return "vm-\(vmid)-disk-\(disk)"
        }
    }

    // MARK: - What a restore writes

    /// The NIC MAC of the backed-up config (deterministic, datacenter prefix `BC:24:11`).
    static func backupMAC(vmid: Int, nic i: Int) -> String {
        "BC:24:11:00:\(String(format: "%02X", i)):\(String(format: "%02X", vmid % 256))"
    }

    /// A new MAC as `PVE::Tools::random_ether_addr` draws it with the datacenter's `mac_prefix`
    /// (BC:24:11 [unverified: the default prefix]), from the id stream so runs repeat.
    func randomMAC(_ s: inout State) -> String {
        var r = s.idRng ?? SplitMix64(state: scenario.seed ^ Self.idStreamSalt)
        let x = r.next()
        s.idRng = r
        return String(format: "BC:24:11:%02X:%02X:%02X", (x >> 16) & 0xFF, (x >> 8) & 0xFF, x & 0xFF)
    }

    /// How guest `vmid` of this node boots (a `setBootBehaviour` override, else `boot:`, else the defaults).
    func bootBehaviour(_ s: State, _ vmid: Int) -> Scenario.BootBehaviour {
        s.bootOverrides?[vmid] ?? scenario.boot[vmid] ?? Scenario.BootBehaviour()
    }

    /// The config keys a restore of `src` into `vmid` writes besides name, tags, description,
    /// onboot, vmgenid and the disks, with the WARN lines of a CT restore. As the backed-up config
    /// has them (``backedUpConfigText(_:)``): VM `boot`, `memory`, `netN` (MACs kept;
    /// new ones with `unique=1`, qemu-server QemuServer.pm:6716-6733), `hostpciN`, `usbN`, and
    /// `agent: 1` when the guest of `vmid` has an agent (`boot:`); CT `arch`, `memory`, `netN`
    /// (pve-container LXC/Create.pm:568-573 for `unique`), `mpN` re-created on the target storage
    /// (volumes) or kept (bind, device), `unprivileged`. Then `extra_config`, except that a CT's raw
    /// `lxc.*` keys are skipped with a warning unless the caller is root@pam (LXC/Create.pm:554-566).
    /// Then the call's own `netN`, `memory`, `agent` (§3.1 "any VM config key overrides").
    func restoredConfig(_ s: inout State, _ src: Scenario.BackedUpGuest, vmid: Int, type: GuestType, storage: String,
                        _ p: [String: String]) -> (config: [String: String], warnings: [String]) {
        let unique = p["unique"].flatMap(Self.parseBoolean) ?? false
        var c: [String: String] = [:]
        var warnings: [String] = []
        for (i, b) in src.bridges.enumerated() {
            let mac = unique ? randomMAC(&s) : Self.backupMAC(vmid: src.vmid, nic: i)
            c["net\(i)"] = type == .vm ? "virtio=\(mac),bridge=\(b)" : "name=eth\(i),bridge=\(b),hwaddr=\(mac),ip=dhcp,type=veth"
        }
        if type == .vm {
            c["boot"] = "order=scsi0"
            c["memory"] = String(src.memoryMiB ?? 2048)
            for (i, v) in src.hostpci.enumerated() { c["hostpci\(i)"] = v }
            for (i, v) in src.usb.enumerated() { c["usb\(i)"] = v }
            if bootBehaviour(s, vmid).agent { c["agent"] = "1" }
        } else {
            c["arch"] = "amd64"
            c["memory"] = String(src.memoryMiB ?? 512)
            var disk = 1
            for m in src.mountpoints {
                switch m.kind {
                case .volume:
                    let size = disk < src.disks.count ? src.disks[disk] >> 30 : 8
                    c[m.mp] = "\(storage):\(ctVolname(storage: storage, vmid: vmid, disk: disk)),mp=/mnt/\(m.mp),size=\(size)G"
                    disk += 1
                case .bind: c[m.mp] = "/srv/\(m.mp),mp=/mnt/\(m.mp)"
                case .device: c[m.mp] = "/dev/sdb1,mp=/mnt/\(m.mp)"
                }
            }
            let unprivileged = p["unprivileged"].flatMap(Self.parseBoolean) ?? !src.privileged
            if unprivileged { c["unprivileged"] = "1" }
        }
        let raw = src.extraConfig.filter { type == .ct && $0.key.hasPrefix("lxc.") }.sorted { $0.key < $1.key }
        for (k, v) in src.extraConfig where raw.isEmpty || !k.hasPrefix("lxc.") || scenario.callerIsRoot { c[k] = v }
        if !raw.isEmpty, !scenario.callerIsRoot {
            // `$rpcenv->warn` prints `WARN: ` before the (multi-line) message [unverified: line split].
            warnings = ["WARN: skipping custom lxc options, restore manually as root:", "--------------------------------"]
                + raw.map { "\($0.key): \($0.value)" } + ["--------------------------------"]
        }
        for (k, v) in p where k == "memory" || (type == .vm && k == "agent") || Self.numbered(k, "net") != nil { c[k] = v }
        return (c, warnings)
    }

    /// N when `key` is `prefix` followed by digits only.
    static func numbered(_ key: String, _ prefix: String) -> Int? {
        guard key.hasPrefix(prefix), key.count > prefix.count else { return nil }
        return Int(key.dropFirst(prefix.count))
    }

    /// The memory of a guest in MiB: `memory` of its active config (a VM's `[current=]N`,
    /// qemu-server QemuServer/Memory.pm:68-77; a CT's integer, pve-container LXC/Config.pm:594-600),
    /// else PVE's default 512 for both.
    static func memoryMiB(_ g: SimGuest) -> Int64 {
        guard let text = g.extraConfig["memory"]?.split(separator: ",").first else { return 512 }
        return Int64(text.hasPrefix("current=") ? text.dropFirst(8) : text) ?? 512
    }

    /// Whether the active config enables the agent (`agent: [enabled=]1[,…]`, qemu-server
    /// QemuServer/Agent.pm:23-73 `parse_guest_agent`: `enabled` is the default key).
    static func agentEnabled(_ value: String?) -> Bool {
        guard let value else { return false }
        for part in value.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 1 || kv[0] == "enabled" { return parseBoolean(String(kv.last!)) ?? false }
        }
        return false
    }
}
