import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts writeback while the write pass is still running: once `interval` bytes have been
/// written since the last flush began, one `fdatasync` runs in the background (never two at
/// once). The disk then works while the next chunks are read and checked, instead of all data
/// waiting in the page cache for the final fsync.
final class Flusher: @unchecked Sendable {  // DispatchGroup is thread-safe
    private let file: FileHandleFD
    private let interval: UInt64
    private let pending = Atomic<UInt64>(0)
    private let running = Atomic<Bool>(false)
    private let group = DispatchGroup()
    private let failure = Mutex<DatastoreError?>(nil)

    init(file: FileHandleFD, interval: UInt64 = 64 << 20) {
        self.file = file
        self.interval = interval
    }

    /// Records `bytes` written; may start a background flush.
    func wrote(_ bytes: UInt64) {
        guard pending.add(bytes, ordering: .relaxed).newValue >= interval,
              running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        pending.store(0, ordering: .relaxed)
        group.enter()
        DispatchQueue.global().async { [self] in
            if fdatasync(file.fd) != 0 {
                let code = errno
                failure.withLock { $0 = $0 ?? .io(path: file.path, operation: "fdatasync", errno: code) }
            }
            running.store(false, ordering: .releasing)
            group.leave()
        }
    }

    /// Waits for a background flush still running.
    func wait() { group.wait() }

    /// Waits for a background flush, reports its failure, then fsyncs everything.
    func finish() throws(DatastoreError) {
        wait()
        if let error = failure.withLock({ $0 }) { throw error }
        try file.sync()
    }
}
