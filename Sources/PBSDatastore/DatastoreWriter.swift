import CZstd
import Crypto
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a PBS datastore in the layout the readers of this module read (reference §9,
/// proxmox-backup 3.2.4): unencrypted chunk blobs in `.chunks/XXXX/<digest>`, `.fidx` indexes,
/// blobs and the `index.json.blob` manifest of each snapshot, namespaces as `ns/<a>/ns/<b>/…`.
///
/// What PBS does that this writer does too:
/// * a chunk is a data blob, zstd level 1 when the compressed payload is strictly shorter, else
///   plain; CRC-32 over the payload (`DataBlob::encode`, pbs-datastore/src/data_blob.rs); the
///   zstd frame carries no content size (`zstd::stream::copy_encode`, data_blob.rs);
/// * a chunk that is already stored is not written again (`insert_chunk` in chunk_store.rs
///   returns early when the file exists) — dedup;
/// * files are written to a temporary name and renamed (`replace_file`, `FixedIndexWriter`'s
///   `.tmp_fidx`, fixed_index.rs), the manifest last (reference §9.6).
///
/// What it does not do: encryption, dynamic indexes, `.gc-status`, the 65 536 prefix
/// directories up front (they are created as chunks need them; readers do not care).
public struct DatastoreWriter: Sendable {
    /// The datastore root.
    public let path: String
    /// The chunk store below it (also usable to read back).
    public let chunks: ChunkStore

    /// Opens (creating when missing) a datastore at `path`: the root, `.chunks` and `.lock`.
    /// - Throws: ``DatastoreError/io(path:operation:errno:)`` when a directory cannot be made.
    public init(path: String) throws(DatastoreError) {
        var root = path
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        try makeDirectories(root + "/.chunks")
        let lock = open(root + "/.lock", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw .io(path: root + "/.lock", operation: "open", errno: errno) }
        close(lock)
        self.path = root
        chunks = ChunkStore(directory: root + "/.chunks")
    }

    /// Stores `data` as a chunk unless a chunk of that digest exists already.
    /// - Returns: the digest and whether a file was written.
    @discardableResult
    public func insertChunk(_ data: [UInt8]) throws(DatastoreError) -> (digest: ChunkDigest, isNew: Bool) {
        let digest = data.withUnsafeBytes { ChunkDigest.of(buffer: $0) }
        let file = chunks.path(of: digest)
        if pathExists(file) { return (digest, false) }
        try makeDirectories(chunks.directory + "/" + digest.prefix)
        try writeFileAtomically(file, Self.encodeBlob(data))
        return (digest, true)
    }

    /// Starts snapshot `ref` (creating its directory and the group's `owner` file); add archives
    /// and blobs to the returned writer, then ``SnapshotWriter/finish(notes:)`` writes the manifest.
    /// - Throws: ``DatastoreError/invalidArgument(_:)`` when the snapshot has a manifest already.
    public func beginSnapshot(_ ref: SnapshotRef, owner: String = "root@pam") throws(DatastoreError) -> SnapshotWriter {
        let dir = path + "/" + ref.relativePath
        if pathExists(dir + "/" + Manifest.fileName) { throw .invalidArgument("snapshot \(ref) exists already in \(path)") }
        try makeDirectories(dir)
        // The group's owner file (`set_owner`, datastore.rs); [unverified] the trailing newline.
        let ownerFile = (dir as NSString).deletingLastPathComponent + "/owner"
        if !pathExists(ownerFile) { try writeFileAtomically(ownerFile, Array((owner + "\n").utf8)) }
        return SnapshotWriter(datastore: self, ref: ref, directory: dir)
    }

    /// A data blob of `data`: zstd (level 1, no content size in the frame) when `compress` and the
    /// result is strictly shorter, else uncompressed; CRC-32 of the payload at offset 8.
    public static func encodeBlob(_ data: [UInt8], compress: Bool = true) -> [UInt8] {
        if compress, let packed = data.withUnsafeBytes({ Zstd.compress($0) }) {
            let crc = CRC32.checksum(packed)
            return Magic.compressedBlob + withUnsafeBytes(of: crc.littleEndian) { Array($0) } + packed
        }
        return DataBlob.encodeUncompressed(data)
    }
}

/// One snapshot being written. Not thread-safe: one writer per snapshot.
public final class SnapshotWriter {
    /// The datastore written to.
    public let datastore: DatastoreWriter
    /// The snapshot.
    public let ref: SnapshotRef
    /// Its absolute directory.
    public let directory: String
    /// The manifest entries so far, in the order written.
    public private(set) var files: [Manifest.FileInfo] = []

    init(datastore: DatastoreWriter, ref: SnapshotRef, directory: String) {
        self.datastore = datastore
        self.ref = ref
        self.directory = directory
    }

    /// Writes archive `archive` (a `.fidx` name) of an image of `size` bytes whose chunk `i`
    /// (`chunkSize` bytes, the last one possibly shorter) `chunk(i)` returns, in order, one at a
    /// time: only one chunk is held at once. Chunks already stored are not written again.
    ///
    /// The index header is that of `FixedIndexWriter::close` (fixed_index.rs): random uuid,
    /// `ctime` (default now, the server's time, reference §9 second reading), index_csum =
    /// SHA-256 of the digests, size, chunk size.
    /// - Throws: ``DatastoreError/invalidArgument(_:)`` for a bad name, size, chunk size or a
    ///   chunk of the wrong length; I/O errors.
    @discardableResult
    public func writeImage(archive: String, size: UInt64, chunkSize: Int = FormatLimits.defaultChunkSize,
                           ctime: Int64? = nil, chunk: (Int) throws(DatastoreError) -> [UInt8]) throws(DatastoreError) -> FixedIndex {
        try Datastore.checkArchiveName(archive)
        guard chunkSize > 0, chunkSize & (chunkSize - 1) == 0, chunkSize <= FormatLimits.maxBlobSize else {
            throw .invalidArgument("chunk size \(chunkSize) is not a power of two up to \(FormatLimits.maxBlobSize)")
        }
        guard size > 0 else { throw .invalidArgument("archive \(archive): image size is 0") }
        let cs = UInt64(chunkSize)
        let count = Int(size / cs + (size % cs == 0 ? 0 : 1))
        var digests: [ChunkDigest] = []
        digests.reserveCapacity(count)
        for i in 0..<count {
            let data = try chunk(i)
            let expected = Int(min(cs, size - UInt64(i) * cs))
            guard data.count == expected else {
                throw .invalidArgument("archive \(archive): chunk \(i) is \(data.count) bytes, expected \(expected)")
            }
            digests.append(try datastore.insertChunk(data).digest)
        }
        var uuid = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for k in uuid.indices { uuid[k] = UInt8.random(in: 0...255, using: &rng) }
        let bytes = FixedIndex.encode(size: size, chunkSize: cs, digests: digests, uuid: uuid,
                                      ctime: ctime ?? Int64(Date().timeIntervalSince1970))
        let file = directory + "/" + archive
        try writeFileAtomically(file, bytes)
        let index = try FixedIndex(bytes: bytes, path: file)
        // The manifest's entry of an index: its logical size and index_csum (reference §9.7).
        record(Manifest.FileInfo(filename: archive, cryptMode: "none", size: size, csum: index.indexCsum))
        return index
    }

    /// ``writeImage(archive:size:chunkSize:ctime:chunk:)`` from a sequence of chunks in order.
    @discardableResult
    public func writeImage<S: Sequence>(archive: String, size: UInt64, chunkSize: Int = FormatLimits.defaultChunkSize,
                                        ctime: Int64? = nil, chunks: S) throws(DatastoreError) -> FixedIndex where S.Element == [UInt8] {
        var iterator = chunks.makeIterator()
        return try writeImage(archive: archive, size: size, chunkSize: chunkSize, ctime: ctime) { (i: Int) throws(DatastoreError) -> [UInt8] in
            guard let next = iterator.next() else { throw .invalidArgument("archive \(archive): the sequence ended before chunk \(i)") }
            return next
        }
    }

    /// ``writeImage(archive:size:chunkSize:ctime:chunk:)`` from an image file, read chunk by chunk.
    @discardableResult
    public func writeImage(archive: String, imageFile: String, chunkSize: Int = FormatLimits.defaultChunkSize,
                           ctime: Int64? = nil) throws(DatastoreError) -> FixedIndex {
        let file = try openTarget(imageFile, flags: O_RDONLY)
        let size = try file.size()
        let cs = UInt64(chunkSize)
        return try writeImage(archive: archive, size: size, chunkSize: chunkSize, ctime: ctime) { (i: Int) throws(DatastoreError) -> [UInt8] in
            let length = Int(min(cs, size - UInt64(i) * cs))
            var failure: DatastoreError?
            let data = [UInt8](unsafeUninitializedCapacity: length) { buf, n in
                do throws(DatastoreError) { n = try file.read(into: UnsafeMutableRawBufferPointer(buf), at: UInt64(i) * cs) } catch {
                    failure = error
                    n = 0
                }
            }
            if let failure { throw failure }
            return data
        }
    }

    /// Writes blob `name` (e.g. `qemu-server.conf.blob`) holding `data`; the manifest lists the
    /// raw blob's length and SHA-256 (`upload_blob`, pbs-client/src/backup_writer.rs, §9.7).
    public func writeBlob(name: String, data: [UInt8], compress: Bool = true) throws(DatastoreError) {
        guard name.hasSuffix(".blob"), name != Manifest.fileName, !name.contains("/"), !name.hasPrefix(".") else {
            throw .invalidArgument("blob '\(name)': expected a plain name ending in .blob other than \(Manifest.fileName)")
        }
        let raw = DatastoreWriter.encodeBlob(data, compress: compress)
        try writeFileAtomically(directory + "/" + name, raw)
        record(Manifest.FileInfo(filename: name, cryptMode: "none", size: UInt64(raw.count), csum: Array(SHA256.hash(data: raw))))
    }

    /// Writes `index.json.blob` (last, so an unfinished snapshot has no manifest): pretty JSON with
    /// sorted keys (reference §9 second reading), `signature: null`, `unprotected` with empty
    /// `chunk_upload_stats` and the notes when given (`BackupManifest`, manifest.rs).
    public func finish(notes: String? = nil) throws(DatastoreError) {
        guard let time = Self.epoch(ref.time) else { throw .invalidArgument("snapshot \(ref): unreadable time") }
        var unprotected: [String: Any] = ["chunk_upload_stats": [String: Any]()]
        if let notes { unprotected["notes"] = notes }
        let doc: [String: Any] = [
            "backup-type": ref.backupType, "backup-id": ref.backupID, "backup-time": time,
            "files": files.map { f -> [String: Any] in
                ["filename": f.filename, "crypt-mode": f.cryptMode, "size": f.size, "csum": ChunkDigest.hexString(f.csum)]
            },
            "signature": NSNull(), "unprotected": unprotected,
        ]
        let json: Data
        do { json = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]) } catch {
            throw .invalidArgument("manifest of \(ref): \(error)")
        }
        try writeFileAtomically(directory + "/" + Manifest.fileName, DatastoreWriter.encodeBlob(Array(json)))
    }

    /// Replaces an earlier entry of the same name.
    private func record(_ info: Manifest.FileInfo) {
        files.removeAll { $0.filename == info.filename }
        files.append(info)
    }

    /// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
    static func epoch(_ text: String) -> Int64? {
        let digits = text.utf8.filter { $0 >= 48 && $0 <= 57 }.map { Int($0) - 48 }
        guard digits.count == 14 else { return nil }
        func num(_ a: Int, _ n: Int) -> Int { digits[a..<(a + n)].reduce(0) { $0 * 10 + $1 } }
        var tm = tm()
        tm.tm_year = Int32(num(0, 4) - 1900)
        tm.tm_mon = Int32(num(4, 2) - 1)
        tm.tm_mday = Int32(num(6, 2))
        tm.tm_hour = Int32(num(8, 2))
        tm.tm_min = Int32(num(10, 2))
        tm.tm_sec = Int32(num(12, 2))
        return Int64(timegm(&tm))
    }
}

extension Zstd {
    /// zstd level 1 of `src` without the content size in the frame header (as PBS's streaming
    /// encoder writes it); nil when the result would not be strictly shorter than `src`.
    static func compress(_ src: UnsafeRawBufferPointer) -> [UInt8]? {
        guard src.count > 1, let cctx = ZSTD_createCCtx() else { return nil }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)
        let capacity = src.count - 1
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: capacity) { buf, count in
            let rc = ZSTD_compress2(cctx, buf.baseAddress, capacity, src.baseAddress, src.count)
            ok = ZSTD_isError(rc) == 0
            count = ok ? rc : 0
        }
        return ok ? out : nil
    }
}

/// `mkdir -p`.
func makeDirectories(_ path: String) throws(DatastoreError) {
    if isDirectory(path) { return }
    let parent = (path as NSString).deletingLastPathComponent
    if !parent.isEmpty, parent != path { try makeDirectories(parent) }
    guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw .io(path: path, operation: "mkdir", errno: errno) }
}

/// Writes `bytes` to `<path>.tmp_<pid>` and renames it onto `path`.
func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(DatastoreError) {
    let tmp = "\(path).tmp_\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw .io(path: tmp, operation: "open", errno: errno) }
    let file = FileHandleFD(adopting: fd, path: tmp)
    do throws(DatastoreError) {
        try file.write(bytes, count: bytes.count, at: 0)
    } catch {
        unlink(tmp)
        throw error
    }
    guard rename(tmp, path) == 0 else {
        let code = errno
        unlink(tmp)
        throw .io(path: path, operation: "rename", errno: code)
    }
}
