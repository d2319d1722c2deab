import Dispatch
import Synchronization

/// Runs `body(i)` for `i` in `0..<count` on up to `workers` threads, handing out items in
/// ascending order. After the first failure no further item starts; the failure of the lowest
/// item among those that failed is thrown, so a run reports the same error as a serial run
/// would whenever only one item is bad.
func parallelForEach(count: Int, workers: Int, _ body: @Sendable (Int) throws(DatastoreError) -> Void) throws(DatastoreError) {
    let state = ParallelState()
    let threads = max(1, min(workers, count))
    DispatchQueue.concurrentPerform(iterations: threads) { _ in
        while !state.failed.load(ordering: .relaxed) {
            let i = state.next.add(1, ordering: .relaxed).oldValue
            if i >= count { return }
            do throws(DatastoreError) { try body(i) } catch {
                state.failed.store(true, ordering: .relaxed)
                state.failure.withLock { current in
                    if current == nil || current!.0 > i { current = (i, error) }
                }
            }
        }
    }
    if let (_, error) = state.failure.withLock({ $0 }) { throw error }
}

private final class ParallelState: Sendable {
    let next = Atomic<Int>(0)
    let failed = Atomic<Bool>(false)
    let failure = Mutex<(Int, DatastoreError)?>(nil)
}

/// A default worker count: the machine's cores, at most 4 (reading, checking and writing a chunk
/// is CPU work for zstd and SHA-256; more threads only add memory).
public func defaultChunkWorkers() -> Int {
    min(4, max(1, System.coreCount))
}

enum System {
    static var coreCount: Int {
        #if canImport(Glibc)
        Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        Int(sysconf(_SC_NPROCESSORS_ONLN))
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
