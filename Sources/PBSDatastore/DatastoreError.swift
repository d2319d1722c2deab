/// Everything that can go wrong reading a datastore or writing an image, typed so the CLI can map
/// it to an exit code: ``exitCode`` is 2 for usage and configuration errors, 3 for data errors.
public enum DatastoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A malformed argument (snapshot name, namespace, archive name, …).
    case invalidArgument(String)
    /// Something the operator named does not exist (datastore, snapshot, archive, target).
    case notFound(path: String, what: String)
    /// `restore` onto an existing file without permission to overwrite it.
    case targetExists(path: String)
    /// A target that cannot be opened or created (no such directory, permission, read-only, …).
    case targetUnusable(path: String, errno: Int32)
    /// A `.didx` archive: containers are not supported.
    case dynamicIndexUnsupported(path: String)
    /// A chunk or blob with an encrypted magic, or a manifest entry with `crypt-mode: encrypt`.
    case encryptedUnsupported(path: String)
    /// A chunk file that does not exist.
    case missingChunk(path: String, digest: ChunkDigest)
    /// A blob that cannot be decoded: bad magic, bad CRC, bad zstd frame, wrong length.
    case corruptBlob(path: String, reason: String)
    /// A chunk whose decoded data does not hash to its digest.
    case digestMismatch(path: String, expected: ChunkDigest, actual: ChunkDigest)
    /// A `.fidx` that is malformed or whose checksum is wrong.
    case corruptIndex(path: String, reason: String)
    /// A manifest that cannot be read, or that disagrees with an index.
    case manifestMismatch(path: String, reason: String)
    /// Two indexes that cannot be diffed (chunk size or image size differ).
    case incompatibleIndexes(String)
    /// A target shorter than the image.
    case targetTooSmall(path: String, size: UInt64, needed: UInt64)
    /// A system call failed on `path`.
    case io(path: String, operation: String, errno: Int32)
    /// An error while handling chunk `index` (0-based) of an image.
    indirect case atChunk(index: Int, DatastoreError)

    /// 2: usage or configuration error; 3: data error.
    public var exitCode: Int32 {
        switch self {
        case .invalidArgument, .notFound, .targetExists, .targetUnusable, .dynamicIndexUnsupported: 2
        case .atChunk(_, let inner): inner.exitCode
        default: 3
        }
    }

    public var description: String {
        switch self {
        case .invalidArgument(let m): m
        case .notFound(let path, let what): "\(what) not found: \(path)"
        case .targetExists(let path): "target \(path) exists (pass --overwrite to replace it)"
        case .targetUnusable(let path, let errno): "cannot open target \(path): \(String(cString: strerror(errno)))"
        case .dynamicIndexUnsupported(let path): "\(path): dynamic indexes (containers) are not supported"
        case .encryptedUnsupported(let path): "\(path): encrypted chunks are not supported"
        case .missingChunk(let path, let digest): "missing chunk \(digest): \(path) does not exist"
        case .corruptBlob(let path, let reason): "corrupt blob \(path): \(reason)"
        case .digestMismatch(let path, let expected, let actual):
            "corrupt chunk \(path): data hashes to \(actual), expected digest \(expected)"
        case .corruptIndex(let path, let reason): "corrupt index \(path): \(reason)"
        case .manifestMismatch(let path, let reason): "manifest \(path): \(reason)"
        case .incompatibleIndexes(let m): m
        case .targetTooSmall(let path, let size, let needed):
            "target \(path) is too small: \(size) bytes, the image needs \(needed) bytes"
        case .io(let path, let op, let errno): "\(op) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .atChunk(let index, let inner): "chunk \(index): \(inner.description)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
