import Foundation

/// What the node's status says of its memory (`GET /nodes/{node}/status`).
public struct NodeMemory: Sendable, Equatable {
    /// Physical memory in bytes (`memory.total`).
    public var total: Int64
    /// Memory in use in bytes (`memory.used`; on ZFS nodes the ARC counts as used).
    public var used: Int64
    /// CPU threads (`cpuinfo.cpus`), when given.
    public var cpus: Int?
    /// Memory not in use: `total − used`.
    public var available: Int64 { max(0, total - used) }
    /// A reading.
    public init(total: Int64, used: Int64, cpus: Int? = nil) {
        self.total = total
        self.used = used
        self.cpus = cpus
    }
}

/// What the QEMU guest agent said about the OS (`agent/get-osinfo`, `agent/get-host-name`).
public struct AgentFacts: Sendable, Equatable {
    /// `pretty-name` (or `name` and `version`) of get-osinfo.
    public var os: String?
    /// `host-name` of get-host-name.
    public var hostName: String?
}

/// Calls of DR drills (issue 16): config changes, the guest agent, clones, the node's memory.
extension ProxmoxClient {
    /// `PUT /nodes/{node}/{qemu|lxc}/{vmid}/config` with the given keys, guarded by `digest`
    /// (`netN` needs `VM.Config.Network`: qemu-server `$check_vm_modify_config_perm`,
    /// pve-container `check_ct_modify_config_perm`). A stopped guest takes the change at once.
    public func updateConfig(node: String, type: GuestType, vmid: Int, set values: [String: String], digest: String?) async throws(ProxmoxError) {
        var params = values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if let digest { params.append(("digest", digest)) }
        _ = try await transport.call(.put, "/nodes/\(node)/\(type.apiType)/\(vmid)/config", parameters: params)
    }

    /// `POST /nodes/{node}/qemu/{vmid}/agent/ping` (qemu-server src/PVE/API2/Qemu/Agent.pm; needs
    /// `VM.GuestAgent.Audit` on PVE 9, `VM.Monitor` before): returns when the agent answered,
    /// throws while the VM is not running, has no agent configured, or the agent does not answer.
    public func agentPing(node: String, vmid: Int) async throws(ProxmoxError) {
        _ = try await transport.call(.post, "/nodes/\(node)/qemu/\(vmid)/agent/ping")
    }

    /// `GET …/agent/get-osinfo` and `GET …/agent/get-host-name`, each best effort.
    public func agentFacts(node: String, vmid: Int) async -> AgentFacts {
        var facts = AgentFacts()
        if let v = try? await transport.call(.get, "/nodes/\(node)/qemu/\(vmid)/agent/get-osinfo"), let r = v["result"] {
            facts.os = r["pretty-name"]?.string ?? [r["name"]?.string, r["version"]?.string].compactMap { $0 }.joined(separator: " ")
        }
        if let v = try? await transport.call(.get, "/nodes/\(node)/qemu/\(vmid)/agent/get-host-name"), let r = v["result"] {
            facts.hostName = r["host-name"]?.string
        }
        return facts
    }

    /// `POST /nodes/{node}/{qemu|lxc}/{vmid}/clone` with `newid` and `full=1` (qemu-server
    /// API2/Qemu.pm `clone_vm`, pve-container API2/LXC.pm `clone_vm`; needs `VM.Clone` on the
    /// source, `VM.Allocate` on the new VMID and `Datastore.AllocateSpace` on the storage) → UPID.
    public func clone(node: String, type: GuestType, vmid: Int, newid: Int, name: String, description: String) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/clone"
        let params = [("newid", "\(newid)"), ("full", "1"), (type == .vm ? "name" : "hostname", name), ("description", description)]
        return try upid(path, try await transport.call(.post, path, parameters: params))
    }

    /// `POST /nodes/{node}/qemu/{vmid}/status/resume` (`qmresume` task; `VM.PowerMgmt`): a VM
    /// started with `freeze: 1` runs from here (qemu-server RunState.pm `vm_resume`: `cont`).
    public func resume(node: String, vmid: Int) async throws(ProxmoxError) -> UPID {
        let path = "/nodes/\(node)/qemu/\(vmid)/status/resume"
        return try upid(path, try await transport.call(.post, path))
    }

    /// `GET /nodes/{node}/{qemu|lxc}/{vmid}/snapshot`: each snapshot's name and description.
    public func snapshotList(node: String, type: GuestType, vmid: Int) async throws(ProxmoxError) -> [(name: String, description: String)] {
        let path = "/nodes/\(node)/\(type.apiType)/\(vmid)/snapshot"
        return try await list(path) { r throws(ProxmoxError) in (try r.string("name"), r.optionalString("description") ?? "") }.filter { $0.name != "current" }
    }

    /// `GET /nodes/{node}/status` (pve-manager PVE/API2/Nodes.pm `status`; needs `Sys.Audit` on
    /// `/nodes/{node}`): the node's memory.
    public func nodeMemory(node: String) async throws(ProxmoxError) -> NodeMemory {
        let path = "/nodes/\(node)/status"
        let value = try await transport.call(.get, path)
        guard let mem = value["memory"] else { throw .decoding(path: path, field: "memory", message: "missing") }
        let m = try FieldReader(mem, path: path + ".memory")
        let cpus = value["cpuinfo"]?["cpus"]?.int
        return NodeMemory(total: Self.clampBytes(try m.int("total")), used: Self.clampBytes(try m.int("used")), cpus: cpus)
    }
}
