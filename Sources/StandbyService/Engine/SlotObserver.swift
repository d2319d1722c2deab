import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyStore
import Synchronization

/// Proves who owns the guest at a slot's VMID (``proveOwnership(of:node:evidence:)``) from what
/// PVE shows: the guest's config (marker, `vmgenid`) and, where needed, the node's task list for
/// that VMID. A proof is cached while the guest's `/cluster/resources` entry (node, type, tags,
/// lock, name) is unchanged and for at most `maxAge`; `fresh` reads bypass the cache (the re-check
/// immediately before a stop, a forced restore or a destroy), and every action of ours on a VMID
/// drops its entry.
final class SlotObserver: Sendable {
    struct Entry: Sendable {
        var fingerprint: String
        var slot: Slot
        var ownership: Ownership
        var config: GuestConfig?
        var at: Double
    }

    let client: ProxmoxClient
    let store: StateStore
    let tokenUser: String?
    let adoptUnmarked: Bool
    let maxAge: Double
    /// The node whose task list the proofs read.
    let node: String
    /// Whether the caller is root@pam (pvesh): it sees every task.
    let callerIsRoot: Bool
    private let cache = Mutex<[Int: Entry]>([:])
    /// Whether the node's task list shows other users' tasks to us (nil: not known yet), and when that was read.
    private let visibility = Mutex<(complete: Bool?, at: Double)>((nil, -.infinity))

    init(client: ProxmoxClient, store: StateStore, adoptUnmarked: Bool, node: String, callerIsRoot: Bool, maxAge: Double = 600) {
        self.client = client
        self.store = store
        self.tokenUser = client.transport.taskUser
        self.adoptUnmarked = adoptUnmarked
        self.node = node
        self.callerIsRoot = callerIsRoot
        self.maxAge = maxAge
    }

    /// Why the node's task list cannot prove anything, or nil when it shows every user's tasks.
    static func partialTaskListReason(node: String) -> String {
        "cannot be proven: the token lacks Sys.Audit on /nodes/\(node), so PVE lists only its own tasks and an "
            + "administrator's create, restore or start at this VMID would be invisible; grant Sys.Audit on /nodes/\(node) (README: Permissions)"
    }

    /// Whether the task list shows every user's tasks: without `Sys.Audit` on `/nodes/<node>` PVE
    /// lists only the token's own (pve-manager PVE/API2/Tasks.pm `node_tasks`), and a proof from it
    /// would miss an administrator's tasks. Read from `GET /access/permissions?path=/nodes/<node>`
    /// at most every `maxAge`; unknown (never read) counts as partial.
    func taskListComplete(now: Double) async -> Bool {
        if callerIsRoot { return true }
        let known = visibility.withLock { $0 }
        if let c = known.complete, now - known.at < maxAge { return c }
        let path = "/nodes/\(node)"
        guard let perms = try? await client.permissions(path: path) else { return known.complete ?? false }
        let complete = PVEPermissions.has("Sys.Audit", at: path, in: perms)
        visibility.withLock { $0 = (complete, now) }
        return complete
    }

    /// The node's tasks of `vmid` when the list is complete (see ``taskListComplete(now:)``), else nil.
    private func tasks(vmid: Int, now: Double) async -> [TaskSummary]? {
        guard await taskListComplete(now: now) else { return nil }
        return try? await client.tasks(node: node, vmid: vmid, limit: 500)
    }

    /// The ownership of `slot`, with the config read for it (nil when nothing was read).
    func ownership(of slot: Slot, guest: GuestResource?, node: String, adoptedIdentity: String?, now: Double,
                   fresh: Bool = false) async -> (Ownership, GuestConfig?) {
        guard let guest else {
            invalidate(slot.target)
            return (.free, nil)
        }
        let base = proveOwnership(of: slot, node: node, evidence: SlotEvidence(guest: guest))
        guard base == .unverified else { return (base, nil) }
        let fingerprint = "\(guest.node)|\(guest.type)|\(guest.tags.joined(separator: ";"))|\(guest.lock ?? "")|\(adoptedIdentity ?? "")"
        if !fresh, let e = cache.withLock({ $0[slot.target] }), e.slot == slot, e.fingerprint == fingerprint, now - e.at < maxAge {
            return (e.ownership, e.config)
        }
        guard let config = try? await client.guestConfig(node: node, type: guest.type, vmid: guest.vmid) else { return (.unverified, nil) }
        let ours = (try? store.restoreUPIDs(targetVmid: slot.target)) ?? []
        var evidence = SlotEvidence(guest: guest, config: config, ourUPIDs: ours, tokenUser: tokenUser, adoptedIdentity: adoptedIdentity,
                                    adoptUnmarked: adoptUnmarked)
        var result = proveOwnership(of: slot, node: node, evidence: evidence)
        if result == .unverified {
            // The proof needs the node's task history for this VMID.
            // 500: console sessions, starts and config changes of the VMID must not push the
            // identity-changing tasks out of the window.
            guard await taskListComplete(now: now) else {
                return (.notOurs(Self.partialTaskListReason(node: node)), config)  // not cached: re-read once granted
            }
            guard let tasks = try? await client.tasks(node: node, vmid: slot.target, limit: 500) else { return (.unverified, config) }
            evidence.tasks = tasks
            result = proveOwnership(of: slot, node: node, evidence: evidence)
        }
        let entry = Entry(fingerprint: fingerprint, slot: slot, ownership: result, config: config, at: now)
        cache.withLock { $0[slot.target] = entry }
        return (result, config)
    }

    /// Whether the running guest at `vmid` was started by the start task we recorded (the newest
    /// start task listed for that VMID is `upid`): an operator's later start is not ours to stop.
    func startedBy(_ upid: String?, vmid: Int, node: String, now: Double) async -> Bool {
        guard let upid else { return false }
        guard let tasks = await tasks(vmid: vmid, now: now) else { return false }
        let starts = tasks.filter { ["qmstart", "vzstart"].contains($0.upid.type) }
        return starts.max { ($0.upid.startTime, $0.upid.pid) < ($1.upid.startTime, $1.upid.pid) }?.upid.description == upid
    }

    /// Whether no task of `vmid` is running on the node (a `lock: create` without one is stale).
    /// False when the task list cannot be read or is partial (an invisible task may run).
    func noTaskRuns(vmid: Int, node: String, now: Double) async -> Bool {
        guard let tasks = await tasks(vmid: vmid, now: now) else { return false }
        return !tasks.contains { $0.status == nil || $0.status == "RUNNING" }
    }

    /// Forgets the proof of a VMID (after any action of ours on it).
    func invalidate(_ vmid: Int) { _ = cache.withLock { $0.removeValue(forKey: vmid) } }

    /// The identity of the guest at `vmid` now (for `pbs-standby adopt`); nil when it cannot be read.
    func identity(vmid: Int, guest: GuestResource, node: String, now: Double) async -> String? {
        guard let config = try? await client.guestConfig(node: node, type: guest.type, vmid: vmid) else { return nil }
        if let id = guestIdentity(vmid: vmid, config: config, tasks: nil) { return id }
        guard let tasks = await tasks(vmid: vmid, now: now) else { return nil }
        return guestIdentity(vmid: vmid, config: config, tasks: tasks)
    }
}
