import Foundation
import ProxmoxAPI

/// `PUT /nodes/{node}/{qemu|lxc}/{vmid}/config` (reference §5.3).
extension PVESimulator {
    /// `PUT …/config`: `tags`, `description`, `onboot`, `lock` (root), `netN`, `memory`, VM
    /// `agent`, and `delete` (keys separated by `,`, `;` or spaces); every change bumps the digest.
    /// In PVE's order:
    /// 1. schema checks, 400 (`skiplock` root only, VM; no such parameter for CTs);
    /// 2. VM (qemu-server API2/Qemu.pm `$update_vm_api`, :2080-2252): the privileges per key
    ///    (`$check_vm_modify_config_perm`, :995-1041: `netN` `VM.Config.Network`, `memory`
    ///    `VM.Config.Memory`, `agent` `VM.Config.Options`; `lock` root only), `SDN.Use` on each new
    ///    NIC's bridge (`check_bridge_access`, QemuServer.pm:6417-6430), then `checksum mismatch`,
    ///    then the lock; the old NIC's bridge when one is replaced (Qemu.pm:2497-2504);
    /// 3. CT (pve-container API2/LXC/Config.pm:150-215): the lock first, then the digest
    ///    (pve-common `assert_if_modified`: `detected modified configuration - file changed by
    ///    other user? Try again.`), then `check_ct_modify_config_perm` (LXC.pm:1655-1690: `memory`
    ///    `VM.Config.Memory`, `netN` `VM.Config.Network` and `SDN.Use` on the old and new bridge).
    /// A stopped guest takes every change at once (`vmconfig_apply_pending`). A running VM takes
    /// `netN` at once (network hotplug is on by default, QemuServer.pm:253-262, `vmconfig_update_net`)
    /// but keeps `memory` (no memory hotplug by default) and `agent` (`vmconfig_update_agent`,
    /// :5207-5228) pending until it stops; a running CT hotplugs both (LXC/Config.pm:1624-1690).
    /// Privileges of `tags`, `description` and `onboot` are not checked [simplification].
    func putConfig(_ s: inout State, _ g: SimGuest, kind: String, _ p: [String: String]) -> SimResult {
        let skiplock = p["skiplock"].flatMap(Self.parseBoolean) ?? false
        if skiplock, !scenario.callerIsRoot || g.type == .ct {
            // qemu-server: root@pam only; pve-container's config update has no skiplock at all.
            return .error(status: 400, message: "Parameter verification failed.\n",
                          errors: ["skiplock": g.type == .ct ? "property is not defined in schema and the schema does not allow additional properties"
                                                              : "Only root may use this option."])
        }
        var errors: [String: String] = [:]
        var onboot: Bool?
        if let text = p["onboot"] {
            onboot = Self.parseBoolean(text)
            if onboot == nil { errors["onboot"] = "type check ('boolean') failed - got '\(text)'" }  // [unverified] wording
        }
        let deletes = ProxmoxClient.splitTags(p["delete"])
        for key in deletes where p[key] != nil {
            // [unverified] wording of PVE's refusal to set and delete one key in one call.
            errors["delete"] = "you can't use '-\(key)' and '-delete \(key)' at the same time"
        }
        // `lock` is a config property only root@pam may set or delete (qemu-server API2/Qemu.pm
        // `$check_vm_modify_config_perm`: "only root can set 'lock' config"), one of the enum of
        // QemuServer.pm confdesc `lock`.
        let lockValues: Set<String> = ["backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended"]
        if let l = p["lock"], !lockValues.contains(l) { errors["lock"] = "value '\(l)' does not have a value in the enumeration '\(lockValues.sorted().joined(separator: ", "))'" }
        // The keys a drill changes, checked against their schema and normalised.
        var values: [String: String] = [:]
        for (key, value) in p {
            if Self.numbered(key, "net") != nil {
                switch normalizeNet(&s, type: g.type, key: key, value) {
                case .success(let v): values[key] = v
                case .failure(let e): errors[key] = e.message
                }
            } else if key == "memory" {
                let text = value.hasPrefix("current=") ? String(value.dropFirst(8)) : value
                if let mib = Int(text), mib >= 16 { values[key] = value } else {
                    errors[key] = g.type == .vm ? "invalid format - format error\nmemory.current: type check ('integer') failed - got '\(text)'\n"  // [unverified] wording
                                                : "type check ('integer') failed - got '\(value)'"
                }
            } else if key == "freeze", g.type == .vm {
                // qemu-server confdesc `freeze` (boolean); a power option: `VM.PowerMgmt` (Qemu.pm:843, :1020).
                if let b = Self.parseBoolean(value) { values[key] = b ? "1" : "0" } else { errors[key] = "type check ('boolean') failed - got '\(value)'" }
            } else if key == "agent", g.type == .vm {
                if Self.parseAgent(value) { values[key] = value } else { errors[key] = "invalid format - format error\nagent.enabled: type check ('boolean') failed - got '\(value)'\n" }  // [unverified] wording
            }
        }
        guard errors.isEmpty else { return .error(status: 400, message: "Parameter verification failed.\n", errors: errors) }
        let drillKeys = Set(values.keys).union(deletes.filter { $0 == "memory" || $0 == "agent" || $0 == "freeze" || Self.numbered($0, "net") != nil })
        let lockChange = p["lock"] != nil || deletes.contains("lock")
        func forbidden(_ m: String) -> SimResult { .error(status: 403, message: m + "\n", errors: [:]) }
        if g.type == .vm {
            if let e = configPrivilegeRefusal(s, g, keys: drillKeys, newValues: values) { return forbidden(e) }
            if lockChange, !scenario.callerIsRoot { return .error(status: 500, message: "only root can set 'lock' config\n", errors: [:]) }
            if let d = p["digest"], d != g.digest { return .error(status: 500, message: "checksum mismatch (file change by other user?)\n", errors: [:]) }
            if let l = g.lock, !skiplock { return .error(status: 500, message: "\(kind) is locked (\(l))\n", errors: [:]) }
            if let e = oldBridgeRefusal(s, g, keys: drillKeys) { return forbidden(e) }  // also a deleted NIC's (Qemu.pm:2379-2386)
        } else {
            if let l = g.lock { return .error(status: 500, message: "\(kind) is locked (\(l))\n", errors: [:]) }
            if let d = p["digest"], d != g.digest {
                return .error(status: 500, message: "detected modified configuration - file changed by other user? Try again.\n", errors: [:])
            }
            if lockChange { return .error(status: 500, message: "only root can set 'lock' config\n", errors: [:]) }  // [unverified] CT text
            if let e = configPrivilegeRefusal(s, g, keys: drillKeys, newValues: values) ?? oldBridgeRefusal(s, g, keys: drillKeys) {
                return forbidden(e)
            }
        }
        var ng = g
        if let l = p["lock"] { ng.lock = l }
        if let t = p["tags"] { ng.tags = Self.normalizeTags(t) }
        if let d = p["description"] { ng.description = d }
        if let onboot { ng.onboot = onboot }
        let running = g.status == "running"
        for (key, value) in values {
            if g.type == .vm, running, key == "memory" || key == "agent" { ng.pending[key] = value } else { ng.extraConfig[key] = value }
        }
        for key in deletes {
            switch key {
            case "onboot": ng.onboot = false
            case "description": ng.description = nil
            case "tags": ng.tags = []
            case "lock": ng.lock = nil  // a fast-plug option: applied at once (§5.3)
            // Other keys: removed when the simulator holds them; deleting an unset key only warns
            // [unverified: qemu-server's "cannot delete '<key>' - not set in current configuration!"].
            default: ng.extraConfig[key] = nil
            }
        }
        ng.configDigestCounter += 1
        s.guests[g.vmid] = ng
        return .ok(.null)
    }

    /// The 403 text for the first key the token may not change, or nil: `netN` needs
    /// `VM.Config.Network` (and `SDN.Use` on its new bridge), `memory` `VM.Config.Memory`, a
    /// VM's `agent` `VM.Config.Options` on `/vms/{vmid}` (see ``putConfig(_:_:kind:_:)``).
    private func configPrivilegeRefusal(_ s: State, _ g: SimGuest, keys: Set<String>, newValues: [String: String]) -> String? {
        guard !scenario.callerIsRoot else { return nil }  // both checks return 1 for root@pam first
        let path = "/vms/\(g.vmid)"
        for key in keys.sorted() {
            let priv = key == "memory" ? "VM.Config.Memory" : key == "agent" ? "VM.Config.Options" : key == "freeze" ? "VM.PowerMgmt" : "VM.Config.Network"
            if let e = permissionCheck(s, path, priv) { return e }
            if let b = newValues[key].flatMap(Self.netBridge), let e = bridgeCheck(s, b) { return e }
        }
        return nil
    }

    /// `SDN.Use` on the bridge of each NIC being replaced or deleted, or nil.
    private func oldBridgeRefusal(_ s: State, _ g: SimGuest, keys: Set<String>) -> String? {
        guard !scenario.callerIsRoot else { return nil }
        for key in keys.sorted() where Self.numbered(key, "net") != nil {
            if let b = g.extraConfig[key].flatMap(Self.netBridge), let e = bridgeCheck(s, b) { return e }
        }
        return nil
    }

    /// The `bridge=` of a NIC property string.
    static func netBridge(_ value: String) -> String? {
        value.split(separator: ",").first { $0.hasPrefix("bridge=") }.map { String($0.dropFirst(7)) }
    }

    /// Whether `agent` parses as qemu-server's agent format (`[enabled=]<0|1>`, `fstrim_cloned_disks`,
    /// `freeze-fs` (aliases `freeze-fs-on-backup`, `guest-fsfreeze`), `type=virtio|isa`;
    /// QemuServer/Agent.pm:23-62).
    static func parseAgent(_ value: String) -> Bool {
        let booleans: Set<String> = ["enabled", "fstrim_cloned_disks", "freeze-fs", "freeze-fs-on-backup", "guest-fsfreeze"]
        for (i, part) in value.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            if kv.count == 1 { if i != 0 || parseBoolean(kv[0]) == nil { return false }; continue }
            if booleans.contains(kv[0]) { if parseBoolean(kv[1]) == nil { return false } }
            else if kv[0] == "type" { if kv[1] != "virtio" && kv[1] != "isa" { return false } }
            else { return false }
        }
        return true
    }
}
