import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes images from chunks: a delta (``apply(_:target:progress:)``) or a whole image
/// (``restore(_:target:overwrite:progress:)``), always in two passes so a bad chunk is found
/// before anything is written, with memory bounded by one chunk per worker:
///
/// 1. verify pass: read and verify every chunk to be written, then drop it;
/// 2. write pass: read and verify each chunk again, then write it (a chunk that changed between
///    the passes fails before its own write); fsync at the end.
///
/// All-zero chunks (``FixedIndex/isZeroChunk(_:)``) are never read: they are written as zeros,
/// or skipped when the target is known to be zeros already (a freshly created sparse file).
///
/// With a ``cacheBytes`` budget, chunks verified in the first pass are kept (up to the budget)
/// and written in the second without being read and verified again — the verified bytes, so a
/// chunk file changing between the passes cannot matter; memory then stays below the budget plus
/// one chunk per worker.
public struct ImageWriter: Sendable {
    /// Where chunks come from.
    public let source: any ChunkSource
    /// How many chunks are in flight at once.
    public let workers: Int
    /// Bytes of verified chunk data kept between the passes (0: every chunk is read twice).
    public let cacheBytes: Int

    /// What a run did.
    public struct Outcome: Sendable, Equatable {
        /// Chunks written with data read from the source.
        public var dataChunks = 0
        /// Zero chunks written as zeros (or skipped on a zeroed target).
        public var zeroChunks = 0
        /// Bytes written to the target.
        public var bytesWritten: UInt64 = 0
    }

    /// A writer reading from `source` with `workers` chunks in flight.
    public init(source: any ChunkSource, workers: Int = defaultChunkWorkers(), cacheBytes: Int = 0) {
        self.source = source
        self.workers = max(1, workers)
        self.cacheBytes = max(0, cacheBytes)
    }

    /// Turns `target` (a file or block device assumed to hold `plan.from`) into `plan.to` by
    /// writing the changed chunks. Only the first `plan.to.size` bytes are touched; the target
    /// may be larger, never smaller.
    ///
    /// - Parameter progress: called with the cumulative bytes written, from worker threads.
    /// - Parameter willWrite: called once, after every chunk was verified and before the first
    ///   write: an error thrown before it left the target untouched, one after it may not have.
    /// - Throws: ``DatastoreError/notFound(path:what:)`` for a missing target,
    ///   ``DatastoreError/targetTooSmall(path:size:needed:)`` and chunk errors (with the chunk
    ///   index) before anything is written; I/O errors of the target, or a chunk that changed
    ///   between the passes, during the writes.
    @discardableResult
    public func apply(_ plan: DeltaPlan, target: String, progress: (@Sendable (UInt64) -> Void)? = nil,
                      willWrite: (() -> Void)? = nil) throws(DatastoreError) -> Outcome {
        let file = try openTarget(target, flags: O_RDWR)
        let size = try file.size()
        guard size >= plan.to.size else { throw .targetTooSmall(path: target, size: size, needed: plan.to.size) }
        let cache = try verifiedChunks(plan)
        willWrite?()
        return try write(plan, to: file, targetIsZeroed: false, cache: cache, progress: progress)
    }

    /// Writes the whole image of `index` to a new file `target` (or over an existing one with
    /// `overwrite`). On any error a file created here is removed; an existing file is left
    /// untouched when the error is found in the verify pass.
    @discardableResult
    public func restore(_ index: FixedIndex, target: String, overwrite: Bool,
                        progress: (@Sendable (UInt64) -> Void)? = nil) throws(DatastoreError) -> Outcome {
        let plan = DeltaPlan.full(index)
        let fd = open(target, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        let created = fd >= 0
        let file: FileHandleFD
        if fd >= 0 {
            file = FileHandleFD(adopting: fd, path: target)
        } else if errno == EEXIST {
            guard overwrite else { throw .targetExists(path: target) }
            file = try openTarget(target, flags: O_RDWR)
        } else if errno == ENOENT {
            throw .notFound(path: target, what: "directory of target")
        } else {
            throw targetError(target, errno)
        }
        let regular = file.isRegularFile()
        do throws(DatastoreError) {
            if !regular {  // a block device: never truncated, never removed, must be large enough
                let size = try file.size()
                guard size >= index.size else { throw DatastoreError.targetTooSmall(path: target, size: size, needed: index.size) }
            }
            let cache = try verifiedChunks(plan)
            if regular {
                // Truncating to 0 and back leaves a sparse file of zeros: zero chunks need no write.
                try file.truncate(to: 0)
                try file.truncate(to: index.size)
            }
            return try write(plan, to: file, targetIsZeroed: regular, cache: cache, progress: progress)
        } catch {
            if created { unlink(target) }
            throw error
        }
    }

    /// The verify pass alone: reads and verifies every non-zero chunk of `plan`, keeping none.
    public func verifyChunks(_ plan: DeltaPlan) throws(DatastoreError) {
        _ = try ImageWriter(source: source, workers: workers, cacheBytes: 0).verifiedChunks(plan)
    }

    /// The verify pass: reads and verifies every non-zero chunk of `plan`, keeping verified data
    /// up to ``cacheBytes`` for the write pass.
    func verifiedChunks(_ plan: DeltaPlan) throws(DatastoreError) -> VerifiedChunks {
        let index = plan.to, source = self.source, cache = VerifiedChunks(budget: cacheBytes)
        try parallelForEach(count: plan.changed.count, workers: workers) { (k: Int) throws(DatastoreError) in
            let i = plan.changed[k]
            if index.isZeroChunk(i) { return }
            do throws(DatastoreError) { cache.offer(i, try source.read(digest: index.digests[i], length: index.length(ofChunk: i))) } catch {
                throw .atChunk(index: i, error)
            }
        }
        return cache
    }

    /// The write pass: reads, verifies and writes each chunk (flushing in the background as it
    /// goes, see ``Flusher``), then fsyncs.
    func write(_ plan: DeltaPlan, to file: FileHandleFD, targetIsZeroed: Bool, cache: VerifiedChunks,
               progress: (@Sendable (UInt64) -> Void)?) throws(DatastoreError) -> Outcome {
        let index = plan.to, source = self.source
        let zeros = [UInt8](repeating: 0, count: Int(index.chunkSize))
        let counters = Counters(), flusher = Flusher(file: file)
        defer { flusher.wait() }
        try parallelForEach(count: plan.changed.count, workers: workers) { (k: Int) throws(DatastoreError) in
            let i = plan.changed[k]
            let range = index.range(ofChunk: i), length = index.length(ofChunk: i)
            do throws(DatastoreError) {
                if index.isZeroChunk(i) {
                    counters.zero.add(1, ordering: .relaxed)
                    if targetIsZeroed { return }
                    try file.write(zeros, count: length, at: range.lowerBound)
                } else {
                    let data: [UInt8]
                    if let verified = cache.take(i) { data = verified } else { data = try source.read(digest: index.digests[i], length: length) }
                    try file.write(data, count: length, at: range.lowerBound)
                    counters.data.add(1, ordering: .relaxed)
                }
            } catch {
                throw .atChunk(index: i, error)
            }
            let total = counters.bytes.add(UInt64(length), ordering: .relaxed).newValue
            flusher.wrote(UInt64(length))
            progress?(total)
        }
        try flusher.finish()
        return Outcome(dataChunks: counters.data.load(ordering: .relaxed), zeroChunks: counters.zero.load(ordering: .relaxed),
                       bytesWritten: counters.bytes.load(ordering: .relaxed))
    }
}

/// Chunk data verified in the first pass, kept up to a byte budget for the second.
final class VerifiedChunks: Sendable {
    private let budget: Int
    private let kept = Mutex<(chunks: [Int: [UInt8]], bytes: Int)>(([:], 0))

    init(budget: Int) { self.budget = budget }

    /// Keeps chunk `i`'s verified data when it fits in the budget.
    func offer(_ i: Int, _ data: [UInt8]) {
        guard budget > 0 else { return }
        kept.withLock { k in
            guard k.bytes + data.count <= budget else { return }
            k.chunks[i] = data
            k.bytes += data.count
        }
    }

    /// Chunk `i`'s verified data, handed over once (nil: read it again).
    func take(_ i: Int) -> [UInt8]? {
        kept.withLock { k in
            guard let data = k.chunks.removeValue(forKey: i) else { return nil }
            k.bytes -= data.count
            return data
        }
    }
}

private final class Counters: Sendable {
    let data = Atomic<Int>(0)
    let zero = Atomic<Int>(0)
    let bytes = Atomic<UInt64>(0)
}
