import Foundation

/// What PVE's storage layer says about one volume (`GET /nodes/{node}/storage/{storage}/content/{volume}`).
public struct VolumeInfo: Sendable, Equatable {
    /// The file or block device behind the volume (`/dev/pve/vm-101-disk-0`, `/var/lib/vz/images/…`).
    public var path: String?
    /// `raw`, `qcow2`, `vmdk`, `subvol`.
    public var format: String?
    /// The volume's size in bytes.
    public var size: Int64?
}

/// Volumes and VM snapshots: what the delta executor needs from PVE (issue 15).
extension ProxmoxClient {
    /// `GET /nodes/{node}/storage/{storage}/content/{volume}` (pve-storage `API2/Storage/Content.pm`
    /// `info`): the volume's path, format and size. The volume is not activated by this call.
    public func volumeInfo(node: String, volume: String) async throws(ProxmoxError) -> VolumeInfo {
        guard let colon = volume.firstIndex(of: ":") else {
            throw .decoding(path: "/nodes/\(node)/storage", field: "volume", message: "'\(volume)' is not a PVE volume id (STORAGE:NAME)")
        }
        let storage = String(volume[..<colon])
        // A directory storage's volume names carry a `/` (`local:101/vm-101-disk-0.raw`): sent
        // as %2F so it stays one path segment [unverified: how PVE's router matches such a segment].
        let encoded = volume.replacingOccurrences(of: "/", with: "%2F")
        let path = "/nodes/\(node)/storage/\(storage)/content/\(encoded)"
        let r = try FieldReader(try await transport.call(.get, path), path: path)
        return VolumeInfo(path: r.optionalString("path"), format: r.optionalString("format"), size: (try? r.optionalInt("size")).flatMap { $0 }.map(Int64.init))
    }

    /// `POST /nodes/{node}/{qemu|lxc}/{vmid}/snapshot` (`qmsnapshot`/`vzsnapshot` task) → UPID.
    public func createSnapshot(node: String, type: GuestType = .vm, vmid: Int, name: String, description: String) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/snapshot"
        return try upid(path, try await transport.call(.post, path, parameters: [("snapname", name), ("description", description)]))
    }

    /// `POST /nodes/{node}/{qemu|lxc}/{vmid}/snapshot/{name}/rollback` (`qmrollback`/`vzrollback` task) → UPID.
    public func rollbackSnapshot(node: String, type: GuestType = .vm, vmid: Int, name: String) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/snapshot/\(name)/rollback"
        return try upid(path, try await transport.call(.post, path))
    }

    /// `DELETE /nodes/{node}/{qemu|lxc}/{vmid}/snapshot/{name}` (`qmdelsnapshot`/`vzdelsnapshot` task) → UPID.
    public func deleteSnapshot(node: String, type: GuestType = .vm, vmid: Int, name: String) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/snapshot/\(name)"
        return try upid(path, try await transport.call(.delete, path))
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/snapshot`: the names of the guest's snapshots (without `current`).
    public func snapshots(node: String, type: GuestType = .vm, vmid: Int) async throws(ProxmoxError) -> [String] {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/snapshot"
        return try await list(path) { r throws(ProxmoxError) in try r.string("name") }.filter { $0 != "current" }
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config` with `description`, guarded by `digest`; with
    /// `clearLock` also `delete=lock` and `skiplock=1` (root@pam only, qemu-server `update_vm`).
    public func setDescription(node: String, vmid: Int, description: String, digest: String?, clearLock: Bool = false) async throws(ProxmoxError) {
        guard clearLock else { return try await setGuestConfig(node: node, type: .vm, vmid: vmid, description: description, digest: digest) }
        var params: [(String, String)] = [("description", description), ("delete", "lock"), ("skiplock", "1")]
        if let digest { params.append(("digest", digest)) }
        _ = try await transport.call(.put, "/nodes/\(node)/qemu/\(vmid)/config", parameters: params)
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config` with `lock=VALUE` on an unlocked VM: a start (GUI,
    /// `qm start`, HA) then fails inside its task with `VM is locked (VALUE)`. Only root@pam may set
    /// `lock` (qemu-server API2/Qemu.pm `$check_vm_modify_config_perm`), so only under pvesh.
    public func setVMLock(node: String, vmid: Int, lock: String, digest: String?) async throws(ProxmoxError) {
        var params: [(String, String)] = [("lock", lock)]
        if let digest { params.append(("digest", digest)) }
        _ = try await transport.call(.put, "/nodes/\(node)/qemu/\(vmid)/config", parameters: params)
    }
}

/// A PBS storage as storage.cfg defines it (`GET /storage?type=pbs`).
public struct PBSStorageConfig: Sendable, Equatable {
    /// The storage id.
    public var storage: String
    /// The PBS host (`server`).
    public var server: String
    /// The datastore name on that PBS.
    public var datastore: String
    /// The namespace (`ns`), empty for the root.
    public var namespace: String
}

extension ProxmoxClient {
    /// `GET /storage?type=pbs` (pve-storage API2/Storage/Config.pm `index`; needs `Datastore.Audit`
    /// or `Datastore.AllocateSpace` on each storage): server, datastore and namespace of each.
    public func pbsStorageConfigs() async throws(ProxmoxError) -> [PBSStorageConfig] {
        try await list("/storage", [("type", "pbs")]) { r throws(ProxmoxError) in
            PBSStorageConfig(storage: try r.string("storage"), server: r.optionalString("server") ?? "",
                             datastore: r.optionalString("datastore") ?? "", namespace: r.optionalString("namespace") ?? "")
        }.filter { !$0.datastore.isEmpty }
    }
}
