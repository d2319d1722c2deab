#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Compares a target with an image without reading any chunk: for unencrypted backups a chunk's
/// digest is SHA-256 of its plain data, so hashing the target's bytes of chunk i and comparing
/// with digest i is exact (short last chunk included).
public enum ImageVerifier {
    /// The 0-based indexes of the chunks whose bytes in `target` differ from `index`, ascending.
    /// Only the first `index.size` bytes are read; the target may be larger.
    /// - Throws: ``DatastoreError/notFound(path:what:)`` for a missing target,
    ///   ``DatastoreError/targetTooSmall(path:size:needed:)`` for a short one.
    public static func mismatches(of index: FixedIndex, target: String, workers: Int = defaultChunkWorkers()) throws(DatastoreError) -> [Int] {
        let file = try openTarget(target, flags: O_RDONLY)
        let size = try file.size()
        guard size >= index.size else { throw .targetTooSmall(path: target, size: size, needed: index.size) }
        let found = MismatchList()
        try parallelForEach(count: index.chunkCount, workers: workers) { (i: Int) throws(DatastoreError) in
            let range = index.range(ofChunk: i), length = index.length(ofChunk: i)
            var failure: DatastoreError?
            let data = [UInt8](unsafeUninitializedCapacity: length) { buf, count in
                do throws(DatastoreError) { count = try file.read(into: UnsafeMutableRawBufferPointer(buf), at: range.lowerBound) } catch {
                    failure = error
                    count = 0
                }
            }
            if let failure { throw .atChunk(index: i, failure) }
            let same = data.count == length && data.withUnsafeBytes { ChunkDigest.of(buffer: $0) } == index.digests[i]
            if !same { found.list.withLock { $0.append(i) } }
        }
        return found.list.withLock { $0 }.sorted()
    }
}

private final class MismatchList: Sendable {
    let list = Mutex<[Int]>([])
}
