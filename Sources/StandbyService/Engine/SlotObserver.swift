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
    private let cache = Mutex<[Int: Entry]>([:])

    init(client: ProxmoxClient, store: StateStore, adoptUnmarked: Bool, maxAge: Double = 600) {
        self.client = client
        self.store = store
        self.tokenUser = client.transport.taskUser
        self.adoptUnmarked = adoptUnmarked
        self.maxAge = maxAge
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
    func startedBy(_ upid: String?, vmid: Int, node: String) async -> Bool {
        guard let upid else { return false }
        guard let tasks = try? await client.tasks(node: node, vmid: vmid, limit: 500) else { return false }
        let starts = tasks.filter { ["qmstart", "vzstart"].contains($0.upid.type) }
        return starts.max { ($0.upid.startTime, $0.upid.pid) < ($1.upid.startTime, $1.upid.pid) }?.upid.description == upid
    }

    /// Whether no task of `vmid` is running on the node (a `lock: create` without one is stale).
    /// False when the task list cannot be read (no decision on missing evidence).
    func noTaskRuns(vmid: Int, node: String) async -> Bool {
        guard let tasks = try? await client.tasks(node: node, vmid: vmid, limit: 500) else { return false }
        return !tasks.contains { $0.status == nil || $0.status == "RUNNING" }
    }

    /// Forgets the proof of a VMID (after any action of ours on it).
    func invalidate(_ vmid: Int) { _ = cache.withLock { $0.removeValue(forKey: vmid) } }

    /// The identity of the guest at `vmid` now (for `pbs-standby adopt`); nil when it cannot be read.
    func identity(vmid: Int, guest: GuestResource, node: String) async -> String? {
        guard let config = try? await client.guestConfig(node: node, type: guest.type, vmid: vmid) else { return nil }
        if let id = guestIdentity(vmid: vmid, config: config, tasks: nil) { return id }
        guard let tasks = try? await client.tasks(node: node, vmid: vmid, limit: 500) else { return nil }
        return guestIdentity(vmid: vmid, config: config, tasks: tasks)
    }
}
