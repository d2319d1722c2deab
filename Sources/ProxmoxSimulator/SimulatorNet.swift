import Foundation
import ProxmoxAPI

/// Why a NIC property string was refused: the text of the 400 `errors` entry.
struct NetFormatError: Error {
    /// The `errors` entry for the key.
    let message: String
}

/// NIC property strings (`netN`) as PVE parses and prints them.
extension PVESimulator {
    /// qemu-server's NIC models (src/PVE/QemuServer/Network.pm:16-31), each also a key whose value
    /// is the MAC (`virtio=BC:24:11:…`, `keyAlias`, :66).
    static let nicModels: Set<String> = [
        "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er",
        "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
    ]

    /// The value kinds of NIC options.
    private enum NetValue { case text, integer, number, boolean, mac }

    /// VM NIC options (qemu-server Network.pm:48-129 `$net_fmt`, `macaddr` and `model` apart).
    private static let vmNetOptions: [String: NetValue] = [
        "bridge": .text, "queues": .integer, "rate": .number, "tag": .integer, "trunks": .text,
        "firewall": .boolean, "link_down": .boolean, "mtu": .integer, "host-tunnel": .boolean,
    ]

    /// CT NIC options (pve-container src/PVE/LXC/Config.pm:852-957 `$netconf_desc`; `name` required).
    private static let ctNetOptions: [String: NetValue] = [
        "type": .text, "name": .text, "bridge": .text, "hwaddr": .mac, "mtu": .integer, "ip": .text, "gw": .text,
        "ip6": .text, "gw6": .text, "firewall": .boolean, "tag": .integer, "trunks": .text, "rate": .number,
        "link_down": .boolean, "host-managed": .boolean,
    ]

    /// Parses a `netN` value as PVE's schema check does and prints it as PVE writes it
    /// (pve-common JSONSchema.pm `print_property_string`: the default key first — a VM's
    /// `<model>=<MAC>` — then required keys — a CT's `name` — then the rest sorted by key). A
    /// missing MAC is generated: a VM's by `parse_net` (Network.pm:208-222, called by
    /// `$update_vm_api`, Qemu.pm:2182-2186), a CT's by `parse_lxc_network` (LXC/Config.pm:1570-1577).
    /// Booleans must be 0 or 1 [unverified: pve-common's property-string boolean check]; error
    /// texts follow pve-common's `format error` style [unverified: wording].
    func normalizeNet(_ s: inout State, type: GuestType, key: String, _ value: String) -> Result<String, NetFormatError> {
        func fail(_ m: String) -> Result<String, NetFormatError> { .failure(NetFormatError(message: "invalid format - format error\n\(key).\(m)\n")) }
        var options: [String: String] = [:]
        var model: String?
        let table = type == .vm ? Self.vmNetOptions : Self.ctNetOptions
        for (i, part) in value.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 1 {
                // The default key: a VM's model (`virtio`); a CT's NIC has none.
                guard type == .vm, i == 0, Self.nicModels.contains(kv[0]) else {
                    return .failure(NetFormatError(message: "invalid format - value without key, but schema does not define a default key\n"))
                }
                model = kv[0]
                continue
            }
            let (k, v) = (kv[0], kv[1])
            if type == .vm, Self.nicModels.contains(k) || k == "model" || k == "macaddr" {
                if k == "macaddr" {
                    guard options["macaddr"] == nil else { return fail("macaddr: duplicate key") }
                    options["macaddr"] = v
                } else {
                    guard model == nil else { return fail("model: duplicate key") }
                    model = k == "model" ? v : k
                    if k != "model" { options["macaddr"] = v }
                }
                continue
            }
            guard let kind = table[k] else { return fail("\(k): property is not defined in schema and the schema does not allow additional properties") }
            guard options[k] == nil else { return fail("\(k): duplicate key") }
            switch kind {
            case .boolean: guard v == "0" || v == "1" else { return fail("\(k): type check ('boolean') failed - got '\(v)'") }
            case .integer: guard Int(v) != nil else { return fail("\(k): type check ('integer') failed - got '\(v)'") }
            case .number: guard Double(v) != nil else { return fail("\(k): type check ('number') failed - got '\(v)'") }
            case .mac: guard Self.isMAC(v) else { return fail("\(k): value does not match the regex pattern") }
            case .text: break
            }
            options[k] = v
        }
        if type == .vm {
            guard let model, Self.nicModels.contains(model) else { return fail("model: property is missing and it is not optional") }
            if let mac = options["macaddr"], !Self.isMAC(mac) { return fail("macaddr: value does not match the regex pattern") }
            let mac = options.removeValue(forKey: "macaddr") ?? randomMAC(&s)
            return .success(([ "\(model)=\(mac)" ] + options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: ","))
        }
        guard let name = options.removeValue(forKey: "name") else { return fail("name: property is missing and it is not optional") }
        if let t = options["type"], t != "veth" { return fail("type: value '\(t)' does not have a value in the enumeration 'veth'") }
        if options["hwaddr"] == nil { options["hwaddr"] = randomMAC(&s) }
        return .success((["name=\(name)"] + options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: ","))
    }

    /// Six colon-separated hex pairs.
    static func isMAC(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }
    }

    /// A NIC's `link_down` is set (`link_down=1`).
    static func linkDown(_ value: String) -> Bool { value.split(separator: ",").contains("link_down=1") }
}
