import Foundation
import ProxmoxAPI

/// A guest on the simulated standby node.
struct SimGuest: Codable {
    var vmid: Int
    var type: GuestType
    var name: String
    var status: String
    var lock: String?
    var tags: [String]
    var description: String?
    var protection: Bool
    var disks: [Int64]
    /// The storage of the disks (of the first disk when ``diskStorages`` names each).
    var storage: String
    /// The storage of each disk, when they differ (a VM restored without `storage` keeps each
    /// disk's production storage, reference §13.4); empty: every disk on ``storage``.
    var diskStorages: [String] = []
    /// `status` reads `unknown` until this time (pvestatd has not reported yet, reference §5.1).
    var unknownUntil: Double?
    /// The VMID was new to this node when its restore began: pvestatd reports it `unknown` for a
    /// while after the restore (§5.1); a VMID it already knew keeps its status (§13.5).
    var newToNode = false
    var configDigestCounter = 1
    var extraConfig: [String: String] = [:]
    /// VMs only: the VM generation id PVE writes at create, clone, restore (§3.1 step 2 "new
    /// `vmgenid`") and snapshot rollback [unverified: rollback and clone are not in the reference].
    var vmgenid: String? = nil
    /// `onboot: 1`: started by `startall` when the node boots [unverified: startall is not in the reference].
    var onboot = false
    /// The cluster node the guest's config lives on (pmxcfs `nodes/<node>/…`, §5.1 `node`, §5.2).
    var node: String
    /// Snapshots, oldest first (the config's `[snapname]` sections, SimulatorSnapshots.swift).
    var snapshots: [SimVMSnapshot] = []
    /// `parent`: the snapshot the current state derives from.
    var parent: String?
    /// When the guest last became `running` here (the end of its start task); nil while stopped,
    /// or for a guest running since before the simulator knew it (SimulatorBoot.swift).
    var startedAt: Double?
    /// Started with `freeze: 1`: QEMU runs with its CPUs stopped (`-S`, qemu-server
    /// QemuServer.pm:3455; `qmpstatus` `prelaunch`) until `status/resume` (`cont`, RunState.pm
    /// `vm_resume`); the guest does not boot meanwhile. Optional: older saved states lack it.
    var paused: Bool?
    /// VM config changes waiting for the next stop or start (`pending` section; a running VM's
    /// `memory` and `agent` changes, SimulatorConfigPut.swift).
    var pending: [String: String] = [:]
    /// Which content the volumes hold: a new value on every restore, clone and start (a running
    /// guest writes its disks); a rollback brings back the snapshot's (SimulatorDrillAdmin.swift).
    var dataGeneration = 0

    var digest: String { String(format: "%040x", configDigestCounter) }

    init(vmid: Int, type: GuestType, name: String, status: String, lock: String?, tags: [String], description: String?,
         protection: Bool, disks: [Int64], storage: String, node: String, vmgenid: String? = nil, onboot: Bool = false) {
        self.vmid = vmid
        self.type = type
        self.name = name
        self.status = status
        self.lock = lock
        self.tags = tags
        self.description = description
        self.protection = protection
        self.disks = disks
        self.storage = storage
        self.node = node
        self.vmgenid = vmgenid
        self.onboot = onboot
    }

    private enum CodingKeys: String, CodingKey {
        case vmid, type, name, status, lock, tags, description, protection, disks, storage, unknownUntil
        case configDigestCounter, extraConfig, vmgenid, onboot, node, newToNode, diskStorages, snapshots, parent
        case startedAt, pending, dataGeneration
    }

    /// Reads states saved before `vmgenid`/`onboot`/`node` existed too (`node` then reads "" and
    /// ``PVESimulator/init(scenario:clock:saved:token:)`` sets the scenario's node).
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vmid = try c.decode(Int.self, forKey: .vmid)
        type = try c.decode(GuestType.self, forKey: .type)
        name = try c.decode(String.self, forKey: .name)
        status = try c.decode(String.self, forKey: .status)
        lock = try c.decodeIfPresent(String.self, forKey: .lock)
        tags = try c.decode([String].self, forKey: .tags)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        protection = try c.decode(Bool.self, forKey: .protection)
        disks = try c.decode([Int64].self, forKey: .disks)
        storage = try c.decode(String.self, forKey: .storage)
        unknownUntil = try c.decodeIfPresent(Double.self, forKey: .unknownUntil)
        configDigestCounter = try c.decodeIfPresent(Int.self, forKey: .configDigestCounter) ?? 1
        extraConfig = try c.decodeIfPresent([String: String].self, forKey: .extraConfig) ?? [:]
        vmgenid = try c.decodeIfPresent(String.self, forKey: .vmgenid)
        onboot = try c.decodeIfPresent(Bool.self, forKey: .onboot) ?? false
        node = try c.decodeIfPresent(String.self, forKey: .node) ?? ""
        newToNode = try c.decodeIfPresent(Bool.self, forKey: .newToNode) ?? false
        diskStorages = try c.decodeIfPresent([String].self, forKey: .diskStorages) ?? []
        snapshots = try c.decodeIfPresent([SimVMSnapshot].self, forKey: .snapshots) ?? []
        parent = try c.decodeIfPresent(String.self, forKey: .parent)
        startedAt = try c.decodeIfPresent(Double.self, forKey: .startedAt)
        pending = try c.decodeIfPresent([String: String].self, forKey: .pending) ?? [:]
        dataGeneration = try c.decodeIfPresent(Int.self, forKey: .dataGeneration) ?? 0
    }

    /// The storage disk `i` is on.
    func storage(ofDisk i: Int) -> String { i < diskStorages.count ? diskStorages[i] : storage }

    /// Bytes used per storage by the disks.
    var usage: [String: Int64] {
        var u: [String: Int64] = [:]
        for (i, d) in disks.enumerated() { u[storage(ofDisk: i), default: 0] += d }
        return u
    }

    func visibleStatus(at now: Double) -> String {
        if let u = unknownUntil, now < u { return "unknown" }
        return status
    }
}

/// A simulated worker task with its whole log precomputed against time.
struct SimTask {
    var upid: UPID
    var start: Double
    var end: Double
    /// (time at which the line appears, text); the last line is `TASK OK` / `TASK ERROR: …`.
    var lines: [(Double, String)]
    var exitStatus: String
    /// Applied once when the task ends (restore effect, start, destroy).
    var effect: Effect
    var applied = false

    enum Effect: Codable {
        case none
        /// `onboot`: the backup's value or the override (§3.1 "any VM config key overrides"); nil in
        /// states saved before it existed (read as the backup default, on).
        /// `diskStorages`: each disk's storage (nil in states saved before it existed: all on `storage`).
        /// `config`: the restored config keys beyond those modelled (memory, NICs, devices, mount
        /// points, `extra_config`; nil in states saved before it existed: none).
        case restoreSucceeded(vmid: Int, type: GuestType, name: String, tags: [String], description: String?, disks: [Int64], storage: String, start: Bool, onboot: Bool? = nil, diskStorages: [String]? = nil, config: [String: String]? = nil)
        /// `release`: the bytes per storage to give back when the task ends (the new volumes a
        /// failure frees; the old ones were accounted when the task began). nil in states saved
        /// before it existed: the guest's disks are given back.
        case restoreFailedVM(vmid: Int, release: [String: Int64]? = nil)
        /// As ``restoreFailedVM(vmid:release:)``; the container and its config are gone.
        case restoreFailedCT(vmid: Int, release: [String: Int64]? = nil)
        case unlock(vmid: Int)
        case setStatus(vmid: Int, status: String)
        case destroy(vmid: Int)
        /// `qmsnapshot` ended well: the snapshot is committed (SimulatorSnapshots.swift).
        case snapshotCreated(vmid: Int, snapname: String)
        /// `qmrollback` ended well: disks and config are the snapshot's; `start` the VM then.
        case snapshotRolledBack(vmid: Int, snapname: String, start: Bool)
        /// `qmdelsnapshot` ended well: the snapshot is gone.
        case snapshotDeleted(vmid: Int, snapname: String)
        /// `qmclone`/`vzclone` ended well: the clone `newid` is unlocked, so is a CT source
        /// (SimulatorClone.swift).
        case cloneFinished(source: Int, newid: Int)
        /// A clone failed or was killed: the clone `newid` and its volumes (`release`) are gone,
        /// a CT source is unlocked.
        case cloneFailed(source: Int, newid: Int, release: [String: Int64])
    }
}

extension SimTask: Codable {
    private enum CodingKeys: String, CodingKey { case upid, start, end, lines, exitStatus, effect, applied }
    private struct Line: Codable {
        var at: Double
        var text: String
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(upid: try c.decode(UPID.self, forKey: .upid), start: try c.decode(Double.self, forKey: .start),
                  end: try c.decode(Double.self, forKey: .end),
                  lines: try c.decode([Line].self, forKey: .lines).map { ($0.at, $0.text) },
                  exitStatus: try c.decode(String.self, forKey: .exitStatus), effect: try c.decode(Effect.self, forKey: .effect),
                  applied: try c.decode(Bool.self, forKey: .applied))
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(upid, forKey: .upid)
        try c.encode(start, forKey: .start)
        try c.encode(end, forKey: .end)
        try c.encode(lines.map { Line(at: $0.0, text: $0.1) }, forKey: .lines)
        try c.encode(exitStatus, forKey: .exitStatus)
        try c.encode(effect, forKey: .effect)
        try c.encode(applied, forKey: .applied)
    }
}

/// One mutating call, as `/_sim/journal` lists it.
public struct JournalEntry: Sendable, Codable, Equatable {
    public var time: Double
    public var method: String
    public var path: String
    public var vmid: Int?
    public var parameters: [String: String]
    /// HTTP status the simulator answered (200 or the error).
    public var status: Int
}

/// The simulator's answer to one call.
public enum SimResult: Sendable {
    case ok(JSONValue)
    case error(status: Int, message: String, errors: [String: String])
}

/// Small deterministic PRNG (SplitMix64): fault dice, generated fleets, benchmark workloads and
/// fuzz inputs are reproducible from their seed.
public struct SplitMix64: RandomNumberGenerator, Sendable, Codable {
    public var state: UInt64
    /// Starts from `state`.
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
