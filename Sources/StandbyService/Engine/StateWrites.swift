import Foundation
import StandbyStore

/// A state write that failed and must land before the engine acts again.
struct PendingWrite: Sendable {
    var what: String
    var apply: @Sendable (StateStore) throws -> Void
}

/// Whether the state file takes writes, and the writes it still owes.
struct StateHealth: Sendable {
    var error: String?
    var since: Double?
    var failures = 0
    var pending: [PendingWrite] = []

    var writable: Bool { error == nil }
}

extension Reconciler {
    /// Runs one state write. On failure the error is published (status JSON, `/-/ready`,
    /// `pbs_standby_state_writable`) and, with `replay`, the write is kept and retried before the
    /// next pass plans: until it lands the records the planner would read are stale (a restore
    /// that succeeded would look undone), so no restore starts.
    @discardableResult
    func persist<T>(_ what: String, replay: Bool = true, _ write: @escaping @Sendable (StateStore) throws -> T) -> T? {
        do {
            let value = try write(store)
            stateWriteSucceeded()
            return value
        } catch {
            stateWriteFailed(what, error, pending: replay ? PendingWrite(what: what, apply: { _ = try write($0) }) : nil)
            return nil
        }
    }

    /// Before a pass acts: writes the heartbeat (a real write, so a full disk is noticed before a
    /// restore starts) and replays owed writes in order. Returns whether the state is up to date
    /// and writable.
    func stateReadyForPass(now: Double) -> Bool {
        let pending = state.withLock { $0.stateHealth.pending }
        var landed = 0
        for write in pending {
            do { try write.apply(store) } catch {
                stateWriteFailed(write.what, error, pending: nil)
                break
            }
            landed += 1
        }
        if landed > 0 {
            state.withLock { $0.stateHealth.pending.removeFirst(min(landed, $0.stateHealth.pending.count)) }
            logger.notice("owed state writes saved", metadata: ["count": "\(landed)"])
        }
        guard landed == pending.count else { return false }
        return persist("heartbeat", replay: false) { try $0.heartbeat(at: now) } != nil
    }

    private func stateWriteFailed(_ what: String, _ error: any Error, pending: PendingWrite?) {
        let now = clock.now()
        let first = state.withLock { s in
            let first = s.stateHealth.error == nil
            s.stateHealth.error = "\(what): \(error)"
            if first { s.stateHealth.since = now }
            s.stateHealth.failures += 1
            if let pending { s.stateHealth.pending.append(pending) }
            return first
        }
        // Once per episode at error level, then quieter: a full disk must not flood the journal.
        if first {
            logger.error("cannot write the state file; no restore starts until it can be written again",
                         metadata: ["path": "\(store.path)", "write": "\(what)", "error": "\(error)"])
        } else {
            logger.debug("state write failed", metadata: ["write": "\(what)", "error": "\(error)"])
        }
        publish()
    }

    private func stateWriteSucceeded() {
        let recovered = state.withLock { s -> Double? in
            guard s.stateHealth.error != nil, s.stateHealth.pending.isEmpty else { return nil }
            defer { s.stateHealth.error = nil; s.stateHealth.since = nil }
            return s.stateHealth.since
        }
        if let since = recovered {
            logger.notice("the state file takes writes again", metadata: ["path": "\(store.path)", "failing_seconds": "\(Int(clock.now() - since))"])
        }
    }
}
