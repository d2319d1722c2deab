import Foundation
import ProxmoxModel

/// Cutting a drilled guest off the network and the host (issue 16 §2), from its PVE config alone.
///
/// Every `netN` gets `link_down=1` — an option of both VM NICs (qemu-server
/// src/PVE/QemuServer/Network.pm `link_down`) and CT NICs (pve-container src/PVE/LXC/Config.pm
/// `link_down`, applied by `update_pct_config`) — so the guest boots with its links down. What a
/// link flag cannot cut makes the guest not isolatable, and it is not started (VMs and CTs:
/// `hookscript`, root code on the host at each start):
/// - VM: `hostpciN` (a passed-through NIC or any PCI device reaches the host's hardware),
///   `usbN` other than SPICE redirection (a host device), `serialN`/`parallelN` on a host device,
///   `virtiofsN` (a host directory), a disk or CD-ROM on a host path (`/dev/…`), `args` (raw QEMU
///   arguments can add a NIC the API does not show).
/// - CT: a mount point on a host path (`mpN: /host/path,mp=…`, bind and device mounts), `devN`
///   (a device node passed through), raw `lxc.*` keys that add NICs, mounts, devices or hooks
///   (`lxc.net.*`, `lxc.mount*`, `lxc.cgroup*.devices.*`, `lxc.hook.*`, `lxc.include`; GET config returns them as
///   the `lxc` array, which the client turns into `lxc.<key>` entries).
public enum DrillIsolation {
    /// The config changes that isolate a guest, or why it cannot be isolated.
    public enum Verdict: Sendable, Equatable {
        /// Set these keys (each `netN` with `link_down=1`) and the guest is isolated; empty: no NIC.
        case isolatable(changes: [String: String])
        /// The keys that cannot be cut, each with why.
        case notIsolatable([String])
    }

    /// The verdict for a guest's current config (`raw`: every key as GET config returns it).
    public static func verdict(type: GuestType, config raw: [String: String]) -> Verdict {
        var changes: [String: String] = [:], problems: [String] = []
        for key in raw.keys.sorted() {
            let value = raw[key] ?? ""
            // VMs and CTs: a hook script runs as root on the host at each start (qemu-server
            // QemuServer.pm `exec_hookscript` pre-start/post-start; pve-container LXC.pm).
            if key == "hookscript" {
                problems.append("hookscript: runs as root on the host at the start")
                continue
            }
            if numbered(key, "net") != nil {
                changes[key] = linkDown(value)
                continue
            }
            if let why = type == .vm ? vmProblem(key, value) : ctProblem(key, value) { problems.append("\(key): \(why)") }
        }
        return problems.isEmpty ? .isolatable(changes: changes) : .notIsolatable(problems)
    }

    /// Whether every `netN` of a config has `link_down=1` (the journal check of the tests, and the
    /// re-check right before the start).
    public static func isIsolated(_ raw: [String: String]) -> Bool {
        raw.allSatisfy { key, value in numbered(key, "net") == nil || options(value)["link_down"] == "1" }
    }

    /// A NIC's property string with `link_down=1` (replacing any `link_down=` it had).
    public static func linkDown(_ value: String) -> String {
        let kept = value.split(separator: ",").filter { !$0.hasPrefix("link_down=") }
        return (kept + ["link_down=1"]).joined(separator: ",")
    }

    static func vmProblem(_ key: String, _ value: String) -> String? {
        if numbered(key, "hostpci") != nil { return "PCI passthrough reaches the host's hardware (a NIC passed through is not cut by link_down)" }
        if numbered(key, "usb") != nil, !firstPart(value).hasPrefix("spice") { return "a host USB device" }
        if numbered(key, "virtiofs") != nil { return "a host directory shared with virtiofs" }
        if numbered(key, "parallel") != nil { return "a host parallel port" }
        if numbered(key, "serial") != nil, firstPart(value).hasPrefix("/") { return "a host serial device" }
        if key == "args" { return "raw QEMU arguments may add devices or NICs the config does not show" }
        if ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"].contains(where: { numbered(key, $0) != nil }) {
            let volume = options(value)["file"] ?? firstPart(value)
            if volume.hasPrefix("/") { return "a disk on a host path (\(volume))" }
        }
        return nil
    }

    static func ctProblem(_ key: String, _ value: String) -> String? {
        if numbered(key, "mp") != nil, firstPart(value).hasPrefix("/") { return "a bind or device mount of the host path \(firstPart(value))" }
        if numbered(key, "dev") != nil { return "a host device passed through" }
        if key.hasPrefix("lxc.") {
            let k = key.dropFirst(4)
            if k.hasPrefix("net") { return "a raw LXC network key" }
            if k.hasPrefix("mount") { return "a raw LXC mount" }
            if k.hasPrefix("hook") { return "a raw LXC hook runs on the host" }
            if k.hasPrefix("cgroup"), k.contains("devices") { return "raw LXC device access" }
            if k.hasPrefix("include") { return "a raw LXC include of a host file (it may add NICs or mounts)" }
        }
        return nil
    }

    /// `N` of `prefixN` (`net0` → 0), nil for any other key.
    public static func numbered(_ key: String, _ prefix: String) -> Int? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        guard !rest.isEmpty, rest.allSatisfy(\.isNumber) else { return nil }
        return Int(rest)
    }

    static func firstPart(_ value: String) -> String {
        String(value.split(separator: ",", maxSplits: 1).first ?? "")
    }

    static func options(_ value: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in value.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { out[String(kv[0])] = String(kv[1]) }
        }
        return out
    }
}
