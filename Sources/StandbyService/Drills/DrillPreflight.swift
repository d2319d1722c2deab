import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore

/// What a drill will do with one guest, decided from reads only (also `drill --dry-run`).
public struct DrillPlan: Sendable {
    /// The guest.
    public var key: GuestKey
    /// `vm` or `ct`.
    public var type: GuestType
    /// The copy drilled (or cloned from).
    public var copyVmid: Int
    /// The backup the copy holds.
    public var volid: String
    /// The `netN` values that isolate the guest.
    public var isolation: [String: String]
    /// The evidence the drill waits for: the agent (a VM with `agent` enabled) or running.
    public var evidence: DrillEvidence
    /// Drill a full clone (storage without snapshots, `drill.clone_without_snapshots`).
    public var clone: Bool
    /// The guest's configured memory in bytes.
    public var memory: Int64
    /// The copy's config as read (compared with the config after the drill).
    public var configBefore: [String: String]
}

/// Why a guest is not drilled now: the reason and what exactly stands in the way.
public struct DrillSkip: Sendable, Error, Equatable {
    /// The reason (``DrillSkipReason``).
    public var reason: DrillSkipReason
    /// Detail for the report.
    public var detail: String
    /// Whether the condition passes by itself soon (a restore, a lock, memory): a scheduled drill
    /// then waits and is tried again next pass, without a record.
    public var transient: Bool {
        [.restoring, .running, .locked, .insufficientMemory, .failedOver].contains(reason)
    }
}

extension DrillEnvironment {
    /// Storage types whose volumes PVE can snapshot in any format (pve-storage
    /// `volume_has_feature('snapshot')`: LvmThinPlugin.pm, ZFSPoolPlugin.pm, RBDPlugin.pm,
    /// BTRFSPlugin.pm); any
    /// storage can snapshot a qcow2 volume (Plugin.pm:1575-1582).
    static let snapshotStorageTypes: Set<String> = ["lvmthin", "zfspool", "zfs", "rbd", "btrfs"]

    /// The read-only checks of issue 16 §5, in order: frozen or blocked, a restore running, the
    /// copy proven ours, not running and not locked, isolatable, the evidence available, snapshots
    /// (or clones), and the node's free memory.
    public func preflight(_ key: GuestKey) async -> Result<DrillPlan, DrillSkip> {
        let record = try? store.guest(key)
        if let blocked = record?.drillBlocked { return .failure(DrillSkip(reason: .cleanupBlocked, detail: blocked)) }
        if record?.held == true { return .failure(DrillSkip(reason: .held, detail: "held by the operator")) }
        if record?.failedOver == true { return .failure(DrillSkip(reason: .failedOver, detail: "the guest is failed over")) }
        if let other = ((try? store.guests()) ?? [:]).values.first(where: \.failedOver) {
            return .failure(DrillSkip(reason: .failedOver, detail: "drills pause while a guest is failed over (\(other.key))"))
        }
        if ((try? store.runningRestores()) ?? []).contains(where: { $0.source == key.source && $0.vmid == key.vmid }) {
            return .failure(DrillSkip(reason: .restoring, detail: "a restore of the guest runs"))
        }
        let copy: GuestOperations.ProvenCopy?
        do { copy = try await operations.provenCopy(of: key) } catch {
            return .failure(DrillSkip(reason: .notOurs, detail: "PVE cannot be read to prove the copy ours: \(error)"))
        }
        guard let copy else {
            return .failure(record?.restoredVolid != nil
                ? DrillSkip(reason: .notOurs, detail: "no guest on the node is provably this guest's copy")
                : DrillSkip(reason: .noCopy, detail: "no copy restored yet"))
        }
        let vmid = copy.slot.target, type = copy.slot.type
        if copy.marker.rewriting != nil { return .failure(DrillSkip(reason: .restoring, detail: "a delta restore is rewriting VMID \(vmid)")) }
        if copy.guest.status == "running" { return .failure(DrillSkip(reason: .running, detail: "VMID \(vmid) runs")) }
        guard let cfg = try? await client.guestConfig(node: node, type: type, vmid: vmid) else {
            return .failure(DrillSkip(reason: .locked, detail: "the config of VMID \(vmid) cannot be read"))
        }
        if let lock = cfg.lock { return .failure(DrillSkip(reason: .locked, detail: "VMID \(vmid) is locked (\(lock))")) }
        // A snapshot of that name from an earlier drill (or an operator): a drill would fail to
        // take its own, and nothing may roll back to one it did not take.
        if ((try? await client.snapshots(node: node, type: type, vmid: vmid)) ?? []).contains(Self.snapshotName) {
            return .failure(DrillSkip(reason: .cleanupBlocked, detail: "VMID \(vmid) still has a snapshot \(Self.snapshotName) (an earlier drill's cleanup did not finish): see the runbook 'blocked (drill_cleanup)'"))
        }
        let changes: [String: String]
        switch DrillIsolation.verdict(type: type, config: cfg.raw) {
        case .notIsolatable(let why): return .failure(DrillSkip(reason: .notIsolatable, detail: why.joined(separator: "; ")))
        case .isolatable(let c): changes = c
        }
        let agent = type == .vm && Self.agentEnabled(cfg.raw["agent"])
        if !agent && config.drill.minEvidence == .agent {
            return .failure(DrillSkip(reason: .noAgent, detail: type == .ct ? "a container has no guest agent and drill.min_evidence is agent"
                                                                             : "VMID \(vmid) has no guest agent enabled and drill.min_evidence is agent"))
        }
        var clone = false
        let storages = (try? await client.storages(node: node)) ?? []
        if let without = Self.volumesWithoutSnapshots(type: type, config: cfg.raw, storages: storages), !without.isEmpty {
            guard config.drill.cloneWithoutSnapshots else {
                return .failure(DrillSkip(reason: .noSnapshots, detail: "\(without.joined(separator: ", ")) cannot be snapshotted (drill.clone_without_snapshots is off)"))
            }
            clone = true
        }
        let memory = Self.memoryBytes(type: type, config: cfg.raw)
        if let node = try? await client.nodeMemory(node: self.node), memory + config.drill.memoryMargin > node.available {
            return .failure(DrillSkip(reason: .insufficientMemory,
                                      detail: "VMID \(vmid) needs \(memory >> 20) MiB + \(config.drill.memoryMargin >> 20) MiB margin; the node has \(node.available >> 20) MiB free"))
        }
        return .success(DrillPlan(key: key, type: type, copyVmid: vmid, volid: copy.marker.volid.description, isolation: changes,
                                  evidence: agent ? .agent : .running, clone: clone, memory: memory, configBefore: cfg.raw))
    }

    /// `agent: 1` or `agent: enabled=1,…` (qemu-server `agent` property string, `enabled` its default key).
    static func agentEnabled(_ value: String?) -> Bool {
        guard let value else { return false }
        let first = value.split(separator: ",").first.map(String.init) ?? ""
        if first == "1" || first == "enabled=1" { return true }
        return value.split(separator: ",").contains("enabled=1")
    }

    /// The guest's `memory` in bytes (MiB in the config; PVE's default 512 MiB for both types —
    /// qemu-server `memory` default, pve-container `memory` default).
    static func memoryBytes(type: GuestType, config: [String: String]) -> Int64 {
        let text = config["memory"].map { $0.split(separator: ",").first.map(String.init) ?? $0 }
        let mib = text.flatMap { Int64($0.hasPrefix("current=") ? String($0.dropFirst(8)) : $0) } ?? 512
        return mib << 20
    }

    /// The volumes of the guest that cannot be snapshotted (nil when the storages are unknown).
    static func volumesWithoutSnapshots(type: GuestType, config: [String: String], storages: [StorageInfo]) -> [String]? {
        guard !storages.isEmpty else { return nil }
        let diskKeys = type == .vm ? ["ide", "sata", "scsi", "virtio", "efidisk", "tpmstate"] : ["rootfs", "mp"]
        var out: [String] = []
        for (key, value) in config.sorted(by: { $0.key < $1.key }) {
            guard diskKeys.contains(where: { key == $0 || (key.hasPrefix($0) && key.dropFirst($0.count).allSatisfy(\.isNumber) && key.count > $0.count) }) else { continue }
            guard !value.contains("media=cdrom"), let volume = value.split(separator: ",").first.map(String.init), volume != "none",
                  let colon = volume.firstIndex(of: ":") else { continue }
            let storage = String(volume[..<colon])
            let kind = storages.first { $0.storage == storage }?.type ?? ""
            if !snapshotStorageTypes.contains(kind) && !(type == .vm && volume.hasSuffix(".qcow2")) { out.append("\(key) on \(storage) (\(kind.isEmpty ? "unknown" : kind))") }
        }
        return out
    }
}
