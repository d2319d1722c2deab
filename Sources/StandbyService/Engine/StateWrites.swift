import ProxmoxModel
import Foundation
import Logging
import StandbyStore
import Synchronization

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

/// Every write of the engine to the state file goes through here: a failed write is published
/// (status JSON, `/-/ready`, `pbs_standby_state_writable`) and, when it must land, kept and
/// replayed before the next pass plans — until then the records are stale (a restore that
/// succeeded would look undone), so no restore starts.
final class StateWriter: Sendable {
    let store: StateStore
    private let clock: any EngineClock
    private let logger: Logger
    private let events: EventQueue
    private let health = Mutex(StateHealth())

    init(store: StateStore, clock: any EngineClock, logger: Logger, events: EventQueue) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.events = events
    }

    /// The state file's health now.
    var current: StateHealth { health.withLock { $0 } }

    /// Runs one state write; with `replay` a failed one is kept and retried before the next pass.
    @discardableResult
    func persist<T>(_ what: String, replay: Bool = true, _ write: @escaping @Sendable (StateStore) throws -> T) -> T? {
        do {
            let value = try write(store)
            succeeded()
            return value
        } catch {
            failed(what, error, pending: replay ? PendingWrite(what: what, apply: { _ = try write($0) }) : nil)
            return nil
        }
    }

    /// Before a pass acts: writes the heartbeat (a real write, so a full disk is noticed before a
    /// restore starts) and replays owed writes in order. Returns whether the state is up to date
    /// and writable.
    func readyForPass(now: Double) -> Bool {
        let pending = health.withLock { $0.pending }
        var landed = 0
        for write in pending {
            do { try write.apply(store) } catch {
                failed(write.what, error, pending: nil)
                break
            }
            landed += 1
        }
        if landed > 0 {
            health.withLock { $0.pending.removeFirst(min(landed, $0.pending.count)) }
            logger.notice("owed state writes saved", metadata: ["count": "\(landed)"])
        }
        guard landed == pending.count else { return false }
        return persist("heartbeat", replay: false) { try $0.heartbeat(at: now) } != nil
    }

    private func failed(_ what: String, _ error: any Error, pending: PendingWrite?) {
        let now = clock.now()
        let first = health.withLock { h in
            let first = h.error == nil
            h.error = "\(what): \(error)"
            if first { h.since = now }
            h.failures += 1
            if let pending { h.pending.append(pending) }
            return first
        }
        // Once per episode at error level, then quieter: a full disk must not flood the journal.
        if first {
            logger.error("cannot write the state file; no restore starts until it can be written again",
                         metadata: ["path": "\(store.path)", "write": "\(what)", "error": "\(error)"])
        } else {
            logger.debug("state write failed", metadata: ["write": "\(what)", "error": "\(error)"])
        }
        events.emit(.stateHealthChanged)
    }

    private func succeeded() {
        let recovered = health.withLock { h -> Double? in
            guard h.error != nil, h.pending.isEmpty else { return nil }
            defer { h.error = nil; h.since = nil }
            return h.since
        }
        if let since = recovered {
            logger.notice("the state file takes writes again", metadata: ["path": "\(store.path)", "failing_seconds": "\(Int(clock.now() - since))"])
            events.emit(.stateHealthChanged)
        }
    }
}
