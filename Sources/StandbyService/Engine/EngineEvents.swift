import ProxmoxAPI
import StandbyCore
import Synchronization

/// What workers report to the loop. Workers write the state store and emit events; only the loop
/// applies them to the engine's state and the published views (one writer).
enum EngineEvent: Sendable {
    /// A restore's progress (0–1) from its task log.
    case progress(GuestKey, Double)
    /// The UPID of a restore's task, once known.
    case upid(GuestKey, UPID)
    /// A restore ended (its outcome is in the store): the guest leaves the in-flight set; `state`
    /// is what its view shows until the next pass (nil: unchanged); `bytesPerSecond` feeds the
    /// throughput estimate; `error` is shown as the view's last error until the next pass (a
    /// restore that did not start because the state file takes no writes).
    case finished(GuestKey, state: GuestState?, bytesPerSecond: Double?, error: String? = nil)
    /// A DR drill of the guest ended (its record is in the store): it leaves the drilling set.
    case drillFinished(GuestKey)
    /// The state file's health changed (published at once).
    case stateHealthChanged
    /// The service is shutting down gracefully: the loop's wait ends at once.
    case shutdown
}

/// The queue between workers and the loop: `emit` from anywhere, `drain` and `wait` by the loop.
final class EventQueue: Sendable {
    private struct State {
        var events: [EngineEvent] = []
        var waiter: (id: Int, continuation: CheckedContinuation<Void, Never>)?
        var nextID = 0
    }
    private let state = Mutex(State())

    /// Queues an event and wakes the loop.
    func emit(_ event: EngineEvent) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.events.append(event)
            defer { s.waiter = nil }
            return s.waiter?.continuation
        }
        waiter?.resume()
    }

    /// Takes every queued event.
    func drain() -> [EngineEvent] { state.withLock { s in defer { s.events.removeAll() }; return s.events } }

    /// Whether a restore ended since the last drain (the loop passes again at once).
    var hasFinished: Bool {
        state.withLock { $0.events.contains { switch $0 { case .finished, .drillFinished: true; default: false } } }
    }

    /// Returns when an event is queued (at once if one is) or the calling task is cancelled.
    func next() async {
        let id = state.withLock { s -> Int in s.nextID += 1; return s.nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if !s.events.isEmpty || Task.isCancelled { return true }
                    s.waiter = (id, c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                guard let w = s.waiter, w.id == id else { return nil }
                s.waiter = nil
                return w.continuation
            }
            waiter?.resume()
        }
    }

    /// Waits until an event is queued or `seconds` of `clock` time have passed, whichever is first.
    func wait(upTo seconds: Double, clock: any EngineClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(seconds) }
            group.addTask { await self.next() }
            await group.next()
            group.cancelAll()
        }
    }
}
