import ProxmoxModel

/// One place a copy of a backed-up guest lives on the standby: the primary VMID, or with
/// `keep_previous` the second slot (primary + `previous_vmid_offset`).
public struct Slot: Sendable, Hashable, CustomStringConvertible {
    /// The source storage (PVE storage id of the PBS storage).
    public var source: String
    /// The backed-up guest's VMID.
    public var vmid: Int
    /// The backed-up guest's type.
    public var type: GuestType
    /// The VMID on the standby node.
    public var target: Int

    /// A slot.
    public init(source: String, vmid: Int, type: GuestType, target: Int) {
        self.source = source
        self.vmid = vmid
        self.type = type
        self.target = target
    }

    /// `source/type/vmid -> target`, for logs and messages.
    public var description: String { "\(source)/\(type.rawValue)/\(vmid) -> \(target)" }
}

/// What PVE shows about one slot's VMID, plus what the state file knows of our own tasks there.
/// Ownership is computed from this every time it matters; it is never simply remembered.
public struct SlotEvidence: Sendable {
    /// The guest holding the VMID anywhere in the cluster (`/cluster/resources`), nil when free.
    public var guest: GuestResource?
    /// Its configuration, when read (nil: not read yet).
    public var config: GuestConfig?
    /// The node's tasks for this VMID (`GET /nodes/{node}/tasks?vmid=`), when read.
    public var tasks: [TaskSummary]?
    /// UPIDs of restore tasks the state file recorded for this VMID.
    public var ourUPIDs: Set<String>
    /// The API token id our tasks run as (their UPIDs carry it); nil with pvesh, where tasks run
    /// as root@pam like an administrator's and only recorded UPIDs identify ours.
    public var tokenUser: String?
    /// The identity (``guestIdentity(vmid:config:tasks:)``) of the guest the operator adopted at
    /// this VMID with `pbs-standby adopt`; the adoption holds only while that same guest is there.
    public var adoptedIdentity: String?
    /// `restore.adopt: true` (migration from the old script): guests without any marker count as ours.
    public var adoptUnmarked: Bool

    /// Evidence; by default nothing read yet, no recorded task, no adoption.
    public init(guest: GuestResource?, config: GuestConfig? = nil, tasks: [TaskSummary]? = nil, ourUPIDs: Set<String> = [],
                tokenUser: String? = nil, adoptedIdentity: String? = nil, adoptUnmarked: Bool = false) {
        self.guest = guest
        self.config = config
        self.tasks = tasks
        self.ourUPIDs = ourUPIDs
        self.tokenUser = tokenUser
        self.adoptedIdentity = adoptedIdentity
        self.adoptUnmarked = adoptUnmarked
    }
}

/// Whose guest a slot's VMID holds.
public enum Ownership: Sendable, Equatable {
    /// Nothing at that VMID anywhere in the cluster.
    case free
    /// Our copy: its marker names this slot (source, VMID, type, target VMID) and its identity
    /// (VM: `vmgenid` in the marker; otherwise our task created it last) matches.
    case ours(Marker.Info)
    /// The remains of our own failed restore (no marker; the newest task that created the VMID is ours).
    case remains
    /// Adopted by the operator (`pbs-standby adopt`, or `restore.adopt` for an unmarked guest).
    case adopted
    /// Someone else's guest: the reason says what PVE shows.
    case notOurs(String)
    /// The configuration was not read yet: no decision that touches the guest may be taken.
    case unverified

    /// Whether pbs-standby may overwrite, stop or destroy what is there.
    public var isOurs: Bool {
        switch self {
        case .ours, .remains, .adopted: true
        case .free, .notOurs, .unverified: false
        }
    }

    /// The marker of a proven copy.
    public var marker: Marker.Info? { if case .ours(let m) = self { m } else { nil } }
}

/// Task types that change which guest a VMID holds on a node — create, restore, migrate in or
/// out, destroy (the newest one says who made what is there now). Starts and stops do not count.
/// A clone's task carries the *source* VMID as its id (qemu-server `fork_worker('qmclone', $vmid…)`,
/// pve-container `vzclone`: the source), so it is not listed for the target; the marker's target VMID catches clones, and the destroy that freed the VMID before
/// a clone was put there is listed.
public let identityTaskTypes: Set<String> = ["qmrestore", "vzrestore", "qmcreate", "vzcreate", "qmigrate", "vzmigrate", "qmdestroy", "vzdestroy"]

/// Proves who owns what is at `slot.target` from what PVE shows (pure).
///
/// Rules, in order: free VMID → `free`; a guest on another node or of the other type → not ours;
/// config not read, or the task list needed and not read → `unverified`; a marker naming this exact slot → ours if its identity holds
/// (VM: marker `vmgenid` = config `vmgenid`; CT or VM without `vmgenid`: the newest task listed
/// that created, restored, migrated or destroyed the VMID is ours, or none is listed any more); a
/// marker naming another VMID (a clone), another source, VMID or type → not ours; no marker →
/// `remains` when the newest such task is a VM restore we recorded, `adopted` when the operator
/// adopted it, else not ours.
public func proveOwnership(of slot: Slot, node: String, evidence e: SlotEvidence) -> Ownership {
    guard let guest = e.guest else { return .free }
    guard guest.node == node else { return .notOurs("VMID \(slot.target) is a guest on node '\(guest.node)'") }
    guard guest.type == slot.type else {
        let (have, want) = (guest.type == .vm ? "VM" : "CT", slot.type == .vm ? "VM" : "CT")
        return .notOurs("VMID \(slot.target) is a \(have); the newest backup is a \(want) (if it is our copy of the superseded \(have) group, "
            + "destroy it with `\(guest.type == .vm ? "qm" : "pct") destroy \(slot.target)` to let the \(want) be restored)")
    }
    guard let config = e.config else { return .unverified }
    if let adopted = e.adoptedIdentity {
        guard let now = guestIdentity(vmid: slot.target, config: config, tasks: e.tasks) else { return .unverified }
        if now == adopted { return .adopted }  // else: another guest is there now; the adoption is void
    }
    let newestCreate = newestIdentityTask(vmid: slot.target, tasks: e.tasks)
    func isOurs(_ t: TaskSummary) -> Bool {
        e.ourUPIDs.contains(t.upid.description) || (e.tokenUser.map { t.upid.user == $0 } ?? false)
    }
    guard let marker = Marker.parse(config.description) else {
        if !e.ourUPIDs.isEmpty && e.tasks == nil { return .unverified }  // remains of ours? needs the task list
        // Remains exist only after a failed VM restore (a failed CT restore destroys the CT, §3.2):
        // the newest task that changed the VMID must be that restore of ours.
        if slot.type == .vm, let t = newestCreate, t.upid.type == "qmrestore", e.ourUPIDs.contains(t.upid.description) { return .remains }
        if e.adoptUnmarked { return .adopted }
        return .notOurs("VMID \(slot.target) carries no pbs-standby marker")
    }
    let v = marker.volid
    guard v.storage == slot.source, v.vmid == slot.vmid, v.type == slot.type else {
        return .notOurs("VMID \(slot.target) holds the copy of \(v.storage)/\(v.type.rawValue)/\(v.vmid), not of \(slot.source)/\(slot.type.rawValue)/\(slot.vmid)")
    }
    guard let into = marker.targetVmid else {
        return .notOurs("VMID \(slot.target) carries a marker of an older pbs-standby without its target VMID; `pbs-standby adopt` it")
    }
    guard into == slot.target else {
        return .notOurs("VMID \(slot.target) is a copy of VMID \(into) (a clone carries the marker of the guest it was cloned from)")
    }
    let genid = config.raw["vmgenid"].flatMap { $0.isEmpty || $0 == "0" ? nil : $0 }
    if slot.type == .vm, let genid, let recorded = marker.vmgenid {
        return genid.lowercased() == recorded.lowercased()
            ? .ours(marker)
            : .notOurs("VMID \(slot.target) has vmgenid \(genid), the marker names \(recorded): another instance (clone, restore or rollback by someone else)")
    }
    // CTs, and VMs whose marker has no vmgenid yet: who created the VMID last.
    guard e.tasks != nil else { return .unverified }
    if let t = newestCreate, !isOurs(t) {
        return .notOurs("VMID \(slot.target) was last changed by \(t.upid.user) (task \(t.upid.type) \(t.upid.description))")
    }
    return .ours(marker)
}

/// The newest listed task that changed which guest `vmid` holds.
func newestIdentityTask(vmid: Int, tasks: [TaskSummary]?) -> TaskSummary? {
    tasks.flatMap { tasks in
        tasks.filter { identityTaskTypes.contains($0.upid.type) && $0.upid.id == String(vmid) }
            .max { ($0.upid.startTime, $0.upid.pid) < ($1.upid.startTime, $1.upid.pid) }
    }
}

/// What identifies the guest now at `vmid`, for `pbs-standby adopt`: a VM's `vmgenid`; else the
/// newest task that changed the VMID; else the config digest. Nil when the task list is needed
/// and not read.
public func guestIdentity(vmid: Int, config: GuestConfig, tasks: [TaskSummary]?) -> String? {
    if let genid = config.raw["vmgenid"], !genid.isEmpty, genid != "0" { return "vmgenid:\(genid.lowercased())" }
    guard let tasks else { return nil }
    if let t = newestIdentityTask(vmid: vmid, tasks: tasks) { return "task:\(t.upid.description)" }
    return "digest:\(config.digest ?? "")"
}
