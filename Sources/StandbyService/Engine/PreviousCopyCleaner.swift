import Foundation
import Logging
import ProxmoxAPI
import StandbyCore

/// What follows a good copy: the freeze carried over to it, the blue/green destroy of the older
/// copy (keep_previous) and the explicit start (start_after_restore).
struct PreviousCopyCleaner: Sendable {
    let context: EngineContext
    /// `once`: stop following a stop, destroy or start after PVE was unreachable this long.
    var giveUp: Double? = nil

    /// keep_previous: after the new copy is good (TASK OK + marker), destroy the older copy in the
    /// other slot — only when it is proven ours now, not held or failed over, not locked or
    /// protected; a running old copy is stopped first only when pbs-standby started it.
    /// Returns whether the old copy is still running (then the new one must not be started).
    func removePreviousCopy(_ action: RestoreAction) async -> Bool {
        let c = context
        guard let old = action.liveVmid, old != action.targetVmid else { return false }
        let meta: Logger.Metadata = ["vmid": "\(action.key.vmid)", "target_vmid": "\(old)"]
        if let why = try? c.store.frozen(action.key) {
            c.logger.info("previous copy kept: the guest is \(why)", metadata: meta)
            return false
        }
        let slot = Slot(source: action.key.source, vmid: action.key.vmid, type: action.type, target: old)
        guard let guests = try? await c.client.guests(), let g = guests.first(where: { $0.vmid == old }) else { return false }
        if let why = Marker.freeze(in: g.tags) {
            c.logger.info("previous copy kept: it is \(why) (tag in PVE)", metadata: meta)
            return g.status == "running"
        }
        let record = try? c.store.guest(action.key)
        let (own, cfg) = await c.observer.ownership(of: slot, guest: g, node: c.node, adoptedIdentity: nil, now: c.clock.now(), fresh: true)
        guard own.marker != nil, cfg?.protection != true, g.lock == nil else {
            c.logger.info("previous copy kept: not provably ours, locked or protected", metadata: meta)
            return g.status == "running"
        }
        let follower = TaskFollower(context: c, giveUp: giveUp)
        do {
            if g.status == "running" {
                guard await c.observer.startedBy(record?.startUPID, vmid: old, node: c.node, now: c.clock.now()) else {
                    c.logger.info("previous copy kept: it runs and pbs-standby did not start it", metadata: meta)
                    return true
                }
                _ = try await follower.follow(try await c.client.stop(node: c.node, type: g.type, vmid: old))
            }
            c.observer.invalidate(old)
            let upid = try await c.client.destroy(node: c.node, type: g.type, vmid: old)
            _ = try await follower.follow(upid)
            c.logger.info("previous copy destroyed", metadata: meta.merging(["upid": "\(upid)"]) { $1 })
            return false
        } catch {
            c.logger.warning("previous copy not destroyed", metadata: meta.merging(["error": "\(error)"]) { $1 })
            return (try? await c.client.guestStatus(node: c.node, type: g.type, vmid: old))?.status == "running"
        }
    }

    /// A restore that finished while its guest was held or failed over (the freeze came after it
    /// began): the new copy gets the freeze's tag too, so it survives the loss of the state file
    /// whichever copy is live.
    func carryFreeze(_ action: RestoreAction, meta: Logger.Metadata) async {
        let c = context
        var freeze = try? c.store.frozen(action.key)
        if freeze == nil, let guests = try? await c.client.guests() { freeze = Recheck.frozenInPVE(action, guests: guests) }
        guard let freeze else { return }
        let tag = freeze == "held" ? Marker.heldTag : Marker.failedOverTag
        do {
            let cfg = try await c.client.guestConfig(node: c.node, type: action.type, vmid: action.targetVmid)
            try await c.client.setGuestConfig(node: c.node, type: action.type, vmid: action.targetVmid, tags: cfg.tags + [tag], digest: cfg.digest)
            c.observer.invalidate(action.targetVmid)
        } catch {
            c.logger.warning("the new copy could not be tagged '\(tag)'", metadata: meta.merging(["error": "\(error)"]) { $1 })
        }
    }

    /// start_after_restore: starts the new copy explicitly (not `start=1` in the restore, whose
    /// failed start still ends `TASK OK`, reference §13.4) and records the start's UPID — the copy
    /// is ours to stop later only while that start is the newest one of its VMID.
    func startCopy(_ action: RestoreAction, meta: Logger.Metadata) async {
        let c = context
        if let why = try? c.store.frozen(action.key) {
            c.logger.info("new copy not started: the guest is \(why)", metadata: meta)
            return
        }
        if let guests = try? await c.client.guests(), let why = Recheck.frozenInPVE(action, guests: guests) {
            c.logger.info("new copy not started: the guest is \(why) (tag in PVE)", metadata: meta)
            return
        }
        do {
            let upid = try await c.client.start(node: c.node, type: action.type, vmid: action.targetVmid)
            let text = upid.description
            c.writer.persist("start of \(action.key)") { try $0.update(action.key, targetVmid: action.targetVmid) { $0.startUPID = text } }
            if case .failure(_, let message) = try await TaskFollower(context: c, giveUp: giveUp).follow(upid) {
                throw ProxmoxError.server(path: "start", status: 500, message: message)
            }
        } catch {
            c.logger.warning("the restored copy did not start", metadata: meta.merging(["error": "\(error)"]) { $1 })
            let message = "restored, but the start failed: \(error)"
            c.writer.persist("start failure of \(action.key)") { try $0.update(action.key, targetVmid: action.targetVmid) { $0.lastError = message } }
        }
    }
}
