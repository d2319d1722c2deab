import Foundation
import ProxmoxAPI

/// What an operator does on the node outside pbs-standby's API token (GUI or shell as
/// `root@pam`): create, clone, destroy, start, stop, migrate, retag, roll back, reboot.
///
/// These changes are not API calls of the service: they are **not** in ``journal()``. Each one
/// that runs a worker on this node is in the node's task list (`GET /nodes/{node}/tasks`, §4) as
/// a task of `root@pam` that has already finished. Synchronous refusals (what PVE refuses before
/// forking a worker) leave no task; refusals PVE makes inside the worker leave a failed task.
/// Each action returns false when refused.
extension PVESimulator {
    /// The user of an operator's tasks (§4.1: `user@realm`, no token).
    static let operatorUser = "root@pam"

    // MARK: - Swift API

    /// Creates a guest (`qm create` / `pct create`: task `qmcreate`/`vzcreate`, id = vmid, §4.1)
    /// with one 8 GiB disk on the first target storage; a VM gets a fresh `vmgenid`. False when
    /// the VMID exists on any node (pmxcfs VMIDs are cluster-wide, §6 `check_vmid_unused`), when
    /// it is below 100, or `status` is neither `running` nor `stopped`.
    @discardableResult
    public func adminCreate(vmid: Int, type: GuestType, name: String? = nil, status: String = "stopped", tags: [String] = [],
                            description: String? = nil, onboot: Bool = false) -> Bool {
        admin { s, now in self.create(&s, now: now, vmid: vmid, type: type, name: name, status: status, tags: tags,
                                       description: description, onboot: onboot) } == nil
    }

    /// Clones guest `from` (on this node) to the unused VMID `to`: type, tags, description,
    /// disks, storage and onboot copied, name `Copy-of-<name>`, stopped, a new `vmgenid` for VMs.
    /// Task `qmclone`/`vzclone` with id = the **source** vmid [unverified: PVE forks the clone
    /// worker with the source vmid as task id]. False when the source is missing or locked, or
    /// `to` is in use.
    @discardableResult
    public func adminClone(from: Int, to: Int) -> Bool {
        admin { s, now in self.clone(&s, now: now, from: from, to: to) } == nil
    }

    /// Destroys a guest on this node (task `qmdestroy`/`vzdestroy`). Refused like the API (§5.4):
    /// running, protected, or locked (a VM's lock fails inside the task: a failed task is listed).
    @discardableResult
    public func adminDestroy(vmid: Int) -> Bool {
        admin { s, now in self.destroy(&s, now: now, vmid: vmid) } == nil
    }

    /// Starts a guest on this node (task `qmstart`/`vzstart` by root@pam; the status changes at
    /// once). A locked guest or a running VM gives a failed task; a running CT is refused.
    @discardableResult
    public func adminStart(vmid: Int) -> Bool {
        admin { s, now in self.power(&s, now: now, vmid: vmid, start: true) } == nil
    }

    /// Stops a guest on this node (task `qmstop`/`vzstop`). §5.4: a locked guest's task fails;
    /// stopping a stopped VM succeeds; a stopped CT is refused (§13.5 `CT N not running`).
    @discardableResult
    public func adminStop(vmid: Int) -> Bool {
        admin { s, now in self.power(&s, now: now, vmid: vmid, start: false) } == nil
    }

    /// Migrates a guest of this node to `toNode` (task `qmigrate`/`vzmigrate`, id = vmid, in this
    /// node's list [unverified: task type names are not in the reference]). The guest keeps its
    /// power state and its VMID, now listed in `/cluster/resources` with `toNode` (§5.1), and
    /// answers as missing under this node's paths (§5.2). False when locked.
    @discardableResult
    public func adminMigrateAway(vmid: Int, toNode: String) -> Bool {
        admin { s, now in self.migrateAway(&s, now: now, vmid: vmid, toNode: toNode) } == nil
    }

    /// Migrates a guest from another node to this one. The migration worker runs on the source
    /// node, so this node's task list gains no task [unverified: the reference does not cover
    /// migration; `/nodes/{node}/tasks` reads the node's own task index, §4.1]. False when the
    /// guest is missing, already here, or locked.
    @discardableResult
    public func adminMigrateHere(vmid: Int) -> Bool {
        admin { s, _ in self.migrateHere(&s, vmid: vmid) } == nil
    }

    /// Sets a guest's tags as an operator's config PUT does: normalised (§5.3), digest bumped, no
    /// task (a PUT is synchronous, §5.3). False when missing or locked (§5.3 `VM is locked`).
    @discardableResult
    public func adminSetTags(vmid: Int, tags: [String]) -> Bool {
        admin { s, _ in self.setConfig(&s, vmid: vmid) { $0.tags = Self.normalizeTags(tags.joined(separator: ";")) } } == nil
    }

    /// Sets (nil: deletes) a guest's description like a config PUT (§5.3); as ``adminSetTags(vmid:tags:)``.
    @discardableResult
    public func adminSetDescription(vmid: Int, _ description: String?) -> Bool {
        admin { s, _ in self.setConfig(&s, vmid: vmid) { $0.description = description } } == nil
    }

    /// Sets (nil: deletes) any other config key of a guest like a config PUT (§5.3), e.g. a
    /// second disk `scsi1` added by hand; as ``adminSetTags(vmid:tags:)``.
    @discardableResult
    public func adminSetConfig(vmid: Int, key: String, _ value: String?) -> Bool {
        admin { s, _ in self.setConfig(&s, vmid: vmid) { $0.extraConfig[key] = value } } == nil
    }

    /// Rolls a guest on this node back to a snapshot (task `qmrollback`/`vzrollback`, id = vmid
    /// [unverified: task type names]): a VM gets a new `vmgenid` [unverified: the reference states
    /// it for restores, §3.1 step 2]; the guest is stopped (rollback stops it first, and a
    /// disk-only snapshot does not restart it [unverified]); the digest changes. False when locked.
    @discardableResult
    public func adminSnapshotRollback(vmid: Int) -> Bool {
        admin { s, now in self.rollback(&s, now: now, vmid: vmid) } == nil
    }

    /// Reboots the node [unverified: the reference does not cover node boot]:
    /// 1. tasks still running are killed: they end now without a final log line, exit status
    ///    `unexpected status` (§4.2); a restore killed this way leaves the stub config with
    ///    `lock: create` and no disks (§13.2, the SIGKILL case);
    /// 2. `stopall` (task id empty, root@pam) shuts down every running guest of this node, one
    ///    `qmshutdown`/`vzshutdown` task each;
    /// 3. `startall` (task id empty, root@pam) starts every guest of this node with `onboot`,
    ///    in VMID order, one `qmstart`/`vzstart` task each (a locked guest's task fails).
    /// Afterwards no guest of the node shows `unknown` in `/cluster/resources` (pvestatd has
    /// reported during the boot).
    /// Guests on other nodes are untouched.
    public func rebootNode() {
        _ = admin { s, now in
            self.reboot(&s, now: now)
            return nil
        }
    }

    /// A guest's config as the simulator holds it (nil when absent on every node). `status` is the
    /// real power state (not the `unknown` that `/cluster/resources` shows right after a restore).
    public func guestConfigSnapshot(_ vmid: Int) -> (type: GuestType, tags: [String], description: String?, vmgenid: String?,
                                                     onboot: Bool, node: String, status: String)? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid].map { ($0.type, $0.tags, $0.description, $0.vmgenid, $0.onboot, $0.node, $0.status) }
        }
    }

    /// The UPIDs of this node's tasks whose id is `vmid` (API and operator tasks), oldest first.
    public func tasksFor(vmid: Int) -> [UPID] {
        let id = String(vmid)
        return state.withLock { s in s.taskOrder.compactMap { s.tasks[$0]?.upid }.filter { $0.id == id } }
    }

    // MARK: - HTTP hook

    /// `POST /_sim/admin` (see ``SimulatorServer``): `action` = create | clone | destroy | start |
    /// stop | migrate-away | migrate-here | set-tags | set-description | rollback | reboot, with
    /// `vmid`, `to` (clone target), `type` (vm|ct|qemu|lxc), `name`, `status`, `tags`,
    /// `description`, `onboot` (0/1), `node` (migrate-away target). Answers (200, result), (409,
    /// reason) when refused, (400, reason) for bad fields.
    func performAdmin(_ f: [String: String]) -> (status: Int, body: JSONValue) {
        func bad(_ m: String) -> (Int, JSONValue) { (400, .object(["error": .string(m)])) }
        guard let action = f["action"] else { return bad("field 'action' is required") }
        let actions = ["create", "clone", "destroy", "start", "stop", "migrate-away", "migrate-here", "set-tags", "set-description", "rollback", "reboot"]
        guard actions.contains(action) else { return bad("unknown action '\(action)' (expected one of \(actions.joined(separator: ", ")))") }
        if action == "reboot" {
            rebootNode()
            return (200, .object(["action": .string(action), "ok": .bool(true)]))
        }
        guard let vmid = f["vmid"].flatMap(Int.init) else { return bad("field 'vmid' (a number) is required") }
        var onboot = false
        if let text = f["onboot"] {
            guard let b = Self.parseBoolean(text) else { return bad("field 'onboot' must be 0 or 1") }
            onboot = b
        }
        let tags = ProxmoxClient.splitTags(f["tags"])
        let description = f["description"].flatMap { $0.isEmpty ? nil : $0 }
        var target = vmid
        let reason: String? = admin { s, now in
            switch action {
            case "create":
                guard let type = GuestType(apiType: f["type"] ?? "vm") ?? GuestType(rawValue: f["type"] ?? "") else {
                    return "field 'type' must be vm or ct"
                }
                return self.create(&s, now: now, vmid: vmid, type: type, name: f["name"], status: f["status"] ?? "stopped",
                                   tags: tags, description: description, onboot: onboot)
            case "clone":
                guard let to = f["to"].flatMap(Int.init) else { return "field 'to' (a number) is required" }
                target = to
                return self.clone(&s, now: now, from: vmid, to: to)
            case "destroy": return self.destroy(&s, now: now, vmid: vmid)
            case "start": return self.power(&s, now: now, vmid: vmid, start: true)
            case "stop": return self.power(&s, now: now, vmid: vmid, start: false)
            case "migrate-away":
                guard let node = f["node"] ?? f["to"] else { return "field 'node' (the target node) is required" }
                return self.migrateAway(&s, now: now, vmid: vmid, toNode: node)
            case "migrate-here": return self.migrateHere(&s, vmid: vmid)
            case "set-tags":
                return self.setConfig(&s, vmid: vmid) { $0.tags = Self.normalizeTags(tags.joined(separator: ";")) }
            case "set-description": return self.setConfig(&s, vmid: vmid) { $0.description = description }
            default: return self.rollback(&s, now: now, vmid: vmid)
            }
        }
        if let reason { return (409, .object(["error": .string(reason), "action": .string(action)])) }
        var out: [String: JSONValue] = ["action": .string(action), "ok": .bool(true), "vmid": .number(Double(target))]
        if action == "clone" { out["from"] = .number(Double(vmid)) }
        if let g = guestConfigSnapshot(target) {
            var o: [String: JSONValue] = ["type": .string(g.type.apiType), "node": .string(g.node), "status": .string(g.status),
                                          "tags": .string(g.tags.joined(separator: ";")), "onboot": .number(g.onboot ? 1 : 0)]
            if let d = g.description { o["description"] = .string(d) }
            if let id = g.vmgenid { o["vmgenid"] = .string(id) }
            out["guest"] = .object(o)
        }
        return (200, .object(out))
    }

    // MARK: - Implementation (each returns nil when done, else the refusal)

    /// Runs `body` under the state lock after settling tasks that ended; nil when it did not refuse.
    private func admin(_ body: (inout State, Double) -> String?) -> String? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            let r = body(&s, now)
            return r
        }
    }

    private func kind(_ type: GuestType) -> String { type == .vm ? "VM" : "CT" }

    /// An operator's task: by root@pam, already finished (duration 0), effect applied by the caller.
    @discardableResult
    private func operatorTask(_ s: inout State, now: Double, type: String, id: String, error: String? = nil) -> UPID {
        newTask(&s, now: now, type: type, id: id, user: Self.operatorUser, duration: 0, lines: [], error: error, effect: .none)
    }

    /// The guest `vmid` on this node, or the refusal PVE gives for a config file that is not here (§5.2).
    private func local(_ s: State, _ vmid: Int) -> Result<SimGuest, SimRefusal> {
        guard let g = s.guests[vmid], g.node == scenario.node else {
            let file = s.guests[vmid]?.type == .ct ? "lxc" : "qemu-server"
            return .failure(SimRefusal("Configuration file 'nodes/\(scenario.node)/\(file)/\(vmid).conf' does not exist"))
        }
        return .success(g)
    }

    private func inUse(_ s: State, _ vmid: Int) -> String? {
        guard let g = s.guests[vmid] else { return nil }
        return "\(kind(g.type)) \(vmid) already exists on node '\(g.node)'"  // §6 check_vmid_unused
    }

    private func allocate(_ s: inout State, _ g: SimGuest, sign: Int64) {
        adjustUsed(&s, g.usage, sign: sign)
    }

    private func create(_ s: inout State, now: Double, vmid: Int, type: GuestType, name: String?, status: String,
                        tags: [String], description: String?, onboot: Bool) -> String? {
        if let used = inUse(s, vmid) { return used }
        guard vmid >= 100 else { return "invalid VMID \(vmid) (PVE's VMIDs start at 100)" }  // [unverified] wording
        guard ["running", "stopped"].contains(status) else { return "status must be running or stopped" }
        // Stored like a config PUT: tags normalised (§5.3). The start of `status: running` happens
        // inside the create task [unverified].
        let g = SimGuest(vmid: vmid, type: type, name: name ?? (type == .vm ? "VM \(vmid)" : "CT\(vmid)"), status: status,
                         lock: nil, tags: Self.normalizeTags(tags.joined(separator: ";")), description: description,
                         protection: false, disks: [8 << 30], storage: scenario.targetStorages.first?.id ?? "local-lvm",
                         node: scenario.node, vmgenid: type == .vm ? newVMGenID(&s) : nil, onboot: onboot)
        s.guests[vmid] = g
        allocate(&s, g, sign: 1)
        operatorTask(&s, now: now, type: type == .vm ? "qmcreate" : "vzcreate", id: String(vmid))  // §4.1 task types
        return nil
    }

    private func clone(_ s: inout State, now: Double, from: Int, to: Int) -> String? {
        let src: SimGuest
        switch local(s, from) {
        case .failure(let r): return r.message
        case .success(let g): src = g
        }
        if let used = inUse(s, to) { return used }
        guard to >= 100 else { return "invalid VMID \(to) (PVE's VMIDs start at 100)" }  // [unverified] wording
        if let l = src.lock { return "\(kind(src.type)) is locked (\(l))" }  // [unverified] clone's lock check
        var g = SimGuest(vmid: to, type: src.type, name: "Copy-of-\(src.name)", status: "stopped", lock: nil, tags: src.tags,
                         description: src.description, protection: false, disks: src.disks, storage: src.storage,
                         node: scenario.node, vmgenid: src.type == .vm ? newVMGenID(&s) : nil, onboot: src.onboot)
        g.extraConfig = src.extraConfig
        g.diskStorages = src.diskStorages
        s.guests[to] = g
        allocate(&s, g, sign: 1)  // a full clone copies the disks
        operatorTask(&s, now: now, type: src.type == .vm ? "qmclone" : "vzclone", id: String(from))
        return nil
    }

    private func destroy(_ s: inout State, now: Double, vmid: Int) -> String? {
        let g: SimGuest
        switch local(s, vmid) {
        case .failure(let r): return r.message
        case .success(let x): g = x
        }
        // §5.4: protection and a running guest are refused synchronously; a VM's lock inside the
        // task, a CT's before it.
        if g.protection { return "can't remove \(kind(g.type)) \(vmid) - protection mode enabled" }
        if g.status == "running" {
            return g.type == .vm ? "VM \(vmid) is running - destroy failed" : "unable to destroy CT \(vmid) - container is running"
        }
        let taskType = g.type == .vm ? "qmdestroy" : "vzdestroy"
        if let l = g.lock {
            let msg = "\(kind(g.type)) is locked (\(l))"
            if g.type == .vm { operatorTask(&s, now: now, type: taskType, id: String(vmid), error: msg) }
            return msg
        }
        s.guests[vmid] = nil
        allocate(&s, g, sign: -1)
        operatorTask(&s, now: now, type: taskType, id: String(vmid))
        return nil
    }

    private func power(_ s: inout State, now: Double, vmid: Int, start: Bool) -> String? {
        var g: SimGuest
        switch local(s, vmid) {
        case .failure(let r): return r.message
        case .success(let x): g = x
        }
        let taskType = start ? (g.type == .vm ? "qmstart" : "vzstart") : (g.type == .vm ? "qmstop" : "vzstop")
        if !start, g.type == .ct, g.status != "running" { return "CT \(vmid) not running" }  // §13.5, synchronous
        if start, g.type == .ct, g.status == "running" { return "CT \(vmid) already running" }  // [unverified] synchronous
        // The lock check happens inside the task (§5.4 for stop; [unverified] for start).
        if let l = g.lock {
            let msg = "\(kind(g.type)) is locked (\(l))"
            operatorTask(&s, now: now, type: taskType, id: String(vmid), error: msg)
            return msg
        }
        if start, g.status == "running" {
            let msg = "VM \(vmid) already running"  // [unverified] qemu-server's in-task check
            operatorTask(&s, now: now, type: taskType, id: String(vmid), error: msg)
            return msg
        }
        // Stopping a stopped VM is a no-op success (§5.4).
        setPowerState(&s, vmid, running: start, at: now)
        operatorTask(&s, now: now, type: taskType, id: String(vmid))
        return nil
    }

    private func migrateAway(_ s: inout State, now: Double, vmid: Int, toNode: String) -> String? {
        var g: SimGuest
        switch local(s, vmid) {
        case .failure(let r): return r.message
        case .success(let x): g = x
        }
        guard toNode != scenario.node else { return "target node is local node." }  // [unverified] wording
        guard let first = toNode.first, first.isLetter || first.isNumber,
              toNode.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            return "invalid node name '\(toNode)'"
        }
        if let l = g.lock { return "\(kind(g.type)) is locked (\(l))" }  // [unverified] migrate's lock check
        operatorTask(&s, now: now, type: g.type == .vm ? "qmigrate" : "vzmigrate", id: String(vmid))
        allocate(&s, g, sign: -1)  // the local disks move with it
        g.node = toNode
        s.guests[vmid] = g
        return nil
    }

    private func migrateHere(_ s: inout State, vmid: Int) -> String? {
        guard var g = s.guests[vmid] else { return "no guest \(vmid) on any node" }
        guard g.node != scenario.node else { return "\(kind(g.type)) \(vmid) is already on node '\(scenario.node)'" }
        if let l = g.lock { return "\(kind(g.type)) is locked (\(l))" }  // [unverified]
        g.node = scenario.node
        s.guests[vmid] = g
        allocate(&s, g, sign: 1)
        return nil
    }

    private func setConfig(_ s: inout State, vmid: Int, _ change: (inout SimGuest) -> Void) -> String? {
        guard var g = s.guests[vmid] else { return "no guest \(vmid) on any node" }
        if let l = g.lock { return "\(kind(g.type)) is locked (\(l))" }  // §5.3
        change(&g)
        g.configDigestCounter += 1
        s.guests[vmid] = g
        return nil
    }

    private func rollback(_ s: inout State, now: Double, vmid: Int) -> String? {
        var g: SimGuest
        switch local(s, vmid) {
        case .failure(let r): return r.message
        case .success(let x): g = x
        }
        if let l = g.lock { return "\(kind(g.type)) is locked (\(l))" }  // [unverified]
        if g.type == .vm { g.vmgenid = newVMGenID(&s) }
        g.status = "stopped"
        g.startedAt = nil
        g.configDigestCounter += 1
        s.guests[vmid] = g
        operatorTask(&s, now: now, type: g.type == .vm ? "qmrollback" : "vzrollback", id: String(vmid))
        return nil
    }

    private func reboot(_ s: inout State, now: Double) {
        killRunningTasks(&s, now: now)
        let here = s.guests.values.filter { $0.node == scenario.node }.sorted { $0.vmid < $1.vmid }
        // A boot takes longer than pvestatd's first report: no guest of the node is still
        // `unknown` afterwards (§5.1) [unverified].
        for g in here { s.guests[g.vmid]?.unknownUntil = nil }
        operatorTask(&s, now: now, type: "stopall", id: "")
        for g in here where g.status == "running" {
            operatorTask(&s, now: now, type: g.type == .vm ? "qmshutdown" : "vzshutdown", id: String(g.vmid))
            setPowerState(&s, g.vmid, running: false, at: now)
        }
        operatorTask(&s, now: now, type: "startall", id: "")
        for g in here where g.onboot {
            let taskType = g.type == .vm ? "qmstart" : "vzstart"
            if let l = g.lock {
                operatorTask(&s, now: now, type: taskType, id: String(g.vmid), error: "\(kind(g.type)) is locked (\(l))")
                continue
            }
            operatorTask(&s, now: now, type: taskType, id: String(g.vmid))
            setPowerState(&s, g.vmid, running: true, at: now)
        }
    }

    /// Ends every running task now as a killed worker would (§4.2 `unexpected status`, §13.2).
    private func killRunningTasks(_ s: inout State, now: Double) {
        for key in s.unsettled {
            guard var t = s.tasks[key], !t.applied else { continue }
            t.lines = t.lines.filter { $0.0 <= now }
            t.end = now
            t.exitStatus = "unexpected status"
            t.applied = true
            s.tasks[key] = t
            let restoring: Int?
            switch t.effect {
            case .restoreSucceeded(let vmid, _, _, _, _, _, _, _, _, _, _): restoring = vmid
            case .restoreFailedVM(let vmid, _), .restoreFailedCT(let vmid, _): restoring = vmid
            default: restoring = nil  // .unlock keeps `lock: create`; start/stop/destroy did not happen
            }
            if let vmid = restoring, var g = s.guests[vmid] {
                // Old disks already freed, nothing merged: the stub config, still locked (§13.2).
                g.lock = "create"
                g.tags = []
                g.description = nil
                g.disks = []
                g.vmgenid = nil
                g.onboot = false
                g.name = g.type == .vm ? "VM \(vmid)" : "CT\(vmid)"
                g.extraConfig = g.type == .vm ? ["memory": "128"] : [:]
                g.status = "stopped"
                g.configDigestCounter += 1
                s.guests[vmid] = g
            }
        }
        s.unsettled.removeAll()
    }
}

/// Why an operator action was refused.
struct SimRefusal: Error {
    let message: String
    init(_ m: String) { message = m }
}
