import ProxmoxAPI
import StandbyCore

/// What `check-config --probe` says about one guest before anything is restored: the reasons
/// PVE would refuse its restore, found from the token's effective permissions
/// (`GET /access/permissions`), the backup's own config (`GET …/vzdump/extractconfig`) and the
/// node's storages (`GET /nodes/{node}/storage`) — reference §3.1, §3.2, §13.1, §13.4.
///
/// Why before: a refused restore fails only inside PVE's task, after the service has planned it,
/// and a privilege that is missing stays missing; a user's first deployment should learn it from
/// the probe, not from a failing guest.
public enum RestoreProbe {
    /// What is known about the node and the token.
    public struct Context: Sendable {
        /// The token's effective privileges per path with their propagate flags
        /// (`GET /access/permissions`); nil for `root@pam` (the pvesh transport), whom none of
        /// these checks refuses.
        public var permissions: PVEPermissionMap?
        /// The node's storages by id (enabled on the node).
        public var storages: [String: StorageInfo]
        /// The guests of the cluster (does a CT copy exist at the target already?); nil: unknown,
        /// read as "no copy yet".
        public var guests: [GuestResource]?
        /// The standby node the restores run on.
        public var node: String

        /// A context with the permission map as read.
        public init(permissions: PVEPermissionMap?, storages: [String: StorageInfo], guests: [GuestResource]?, node: String) {
            self.permissions = permissions
            self.storages = storages
            self.guests = guests
            self.node = node
        }

        /// Privilege sets per path, each read as propagating (an ACL's default).
        public init(permissions: [String: Set<String>], storages: [String: StorageInfo], guests: [GuestResource]?, node: String) {
            self.init(permissions: PVEPermissionMap(propagating: permissions), storages: storages, guests: guests, node: node)
        }
    }

    /// The reasons PVE would refuse restoring `volid` with `settings` (empty: none found).
    /// `config` is the backup's config text (nil when it could not be read: only the checks that
    /// do not need it are made); `pool` the source's pool.
    public static func refusals(volid: Volid, config text: String?, settings: GuestSettings, pool: String?,
                                context c: Context) -> [String] {
        var out: [String] = []
        let config = text.map { BackupConfig(parsing: $0, type: volid.type) }
        let target = settings.targetVmid
        let targetGuest = c.guests?.first { $0.vmid == target }
        let copyExists = targetGuest.map { $0.type == volid.type && $0.node == c.node } ?? false

        // Storages (§13.4): a given target storage must exist and take the guest's content; a VM
        // without one puts each disk on the storage id recorded in the backup; a CT without one
        // goes to `local`.
        let content = volid.type == .vm ? "images" : "rootdir"
        let what = volid.type == .vm ? "VM disks" : "container directories"
        if let ts = settings.targetStorage {
            if let s = c.storages[ts] {
                if !s.content.contains(content) { out.append("target storage '\(ts)' does not allow \(what) (content \(content))") }
                if !s.enabled || !s.active {
                    // A VM restore activates the storage only when it allocates, after freeing the
                    // old disks (QemuServer.pm:7055 then :7058); a CT restore activates it before it
                    // locks the config (pve-container LXC.pm:358, :419).
                    let consequence = volid.type == .vm ? "a forced restore would free the copy's disks and then fail"
                        : "PVE refuses the restore before changing anything"
                    out.append("target storage '\(ts)' is not \(s.enabled ? "active" : "enabled") on node \(c.node) (\(consequence))")
                }
            } else {
                out.append("target storage '\(ts)' does not exist on node \(c.node)")
            }
        } else if volid.type == .vm, let config {
            // Each disk goes to the storage its `#qmdump#map` line names (QemuServer.pm:6617-6628):
            // an unknown id or one without `images` ends the task before anything is freed; an
            // inactive one fails at allocation, after the old disks are freed.
            for d in config.disks {
                guard let s = c.storages[d.storage] else {
                    out.append("disk \(d.key) is on storage '\(d.storage)' in the backup, which does not exist on node \(c.node): set target_storage")
                    continue
                }
                if !s.content.contains("images") {
                    out.append("disk \(d.key) is on storage '\(d.storage)' in the backup, which does not allow VM disks (content images): set target_storage")
                } else if !s.enabled || !s.active {
                    out.append("disk \(d.key) is on storage '\(d.storage)' in the backup, which is not \(s.enabled ? "active" : "enabled") on node \(c.node) (a forced restore would free the copy's disks and then fail): set target_storage")
                }
            }
        } else if volid.type == .ct {
            if let local = c.storages["local"] {
                if !local.content.contains("rootdir") {
                    out.append("no target_storage: PVE puts the container on 'local', which does not allow container directories (content rootdir)")
                }
            } else {
                out.append("no target_storage: PVE puts the container on 'local', which does not exist on node \(c.node)")
            }
        }

        guard let perms = c.permissions else { return out }
        func has(_ priv: String, _ path: String) -> Bool { PVEPermissions.has(priv, at: path, in: perms) }
        func missing(_ priv: String, _ path: String, _ why: String = "") -> String { "missing \(priv) on \(path)\(why.isEmpty ? "" : " (\(why))")" }

        // Before the task (§3.1 step 1, §3.2): the right to create, the target storage, the archive.
        let vmPath = "/vms/\(target)"
        if !has("VM.Allocate", vmPath) && !(pool.map { has("VM.Allocate", "/pool/\($0)") } ?? false)
            && !(copyExists && has("VM.Backup", vmPath)) {
            out.append(missing("VM.Allocate", vmPath, pool.map { "or on /pool/\($0); PVE answers 403 \"Permission check failed\"" }
                               ?? "PVE answers 403 \"Permission check failed\""))
        }
        var storages: [String] = []
        if let ts = settings.targetStorage { storages = [ts] } else if volid.type == .ct { storages = ["local"] } else if let config {
            // qemu-server checks each disk's storage while reading the backup's `#qmdump#map` hints,
            // inside the task before any old disk is freed (QemuServer.pm:6602-6607 `$check_storage`,
            // called at :6628).
            storages = config.diskStorages.filter { c.storages[$0] != nil }
        }
        for s in storages where !has("Datastore.AllocateSpace", "/storage/\(s)") {
            out.append(missing("Datastore.AllocateSpace", "/storage/\(s)", "the target storage"))
        }
        if volid.vmid != target && !has("Datastore.Allocate", "/storage/\(volid.storage)") {
            // pve-storage `check_volume_access`: a backup of another VMID than the target.
            if !has("Datastore.AllocateSpace", "/storage/\(volid.storage)") {
                out.append(missing("Datastore.AllocateSpace", "/storage/\(volid.storage)", "reading the backup"))
            }
            if !has("VM.Backup", "/vms/\(volid.vmid)") { out.append(missing("VM.Backup", "/vms/\(volid.vmid)", "reading the backup")) }
        }
        guard let config else { return out }

        // Inside the task, on the backed-up config (§13.1): bridges, host devices, privileged CTs,
        // bind/device mount points. Only the literal root@pam is exempt.
        for nic in config.nics where !PVEPermissions.canUseBridge(nic.bridge, in: perms) {
            out.append(missing("SDN.Use", PVEPermissions.bridgePath(nic.bridge), "\(nic.key) is bridged to \(nic.bridge)"))
        }
        for d in config.hostDevices where !d.spice {
            let kind = d.key.hasPrefix("usb") ? "USB" : "PCI"
            if let path = d.mappingPath {
                if !has("Mapping.Use", path) { out.append(missing("Mapping.Use", path, "\(d.key) is a mapped host \(kind) device")) }
            } else {
                out.append("\(d.key) is a host \(kind) device: only root@pam can restore it (a resource mapping with Mapping.Use would do)")
            }
        }
        if volid.type == .ct && !config.unprivileged && !copyExists && !has("Sys.Modify", "/") {
            out.append(missing("Sys.Modify", "/", "the backup is of a privileged container; its first restore needs it"))
        }
        for m in config.mountPoints where m.kind != .volume {
            out.append("\(m.key) is a \(m.kind.rawValue) mount point: only root@pam can restore it")
        }
        return out
    }
}
