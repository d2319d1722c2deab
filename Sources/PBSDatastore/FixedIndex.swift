import Crypto

/// A fixed index (`.fidx`, VM disk images), parsed and checked.
///
/// Layout (`FixedIndexHeader` in pbs-datastore/src/fixed_index.rs; docs/file-formats.rst),
/// all integers little-endian:
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic ``Magic/fixedIndex`` |
/// | 8 | 16 | uuid (random per index) |
/// | 24 | 8 | ctime, i64 (when the index was created on the server) |
/// | 32 | 32 | index_csum = SHA-256(digest0 ‖ digest1 ‖ …): the digests only, not the size |
/// | 64 | 8 | size, u64 (image bytes) |
/// | 72 | 8 | chunk_size, u64 |
/// | 80 | 4016 | reserved |
/// | 4096 | 32·n | digests, n = ceil(size / chunk_size) |
///
/// `FixedIndexWriter::close` computes index_csum as `sha256` over the mapped digest area;
/// `FixedIndexReader::new` rejects a file whose length is not 4096 + 32·n.
public struct FixedIndex: Sendable {
    /// Where the index was read from (for messages).
    public let path: String
    /// The header's uuid.
    public let uuid: [UInt8]
    /// The header's ctime (seconds since the epoch).
    public let ctime: Int64
    /// The header's index_csum (equal to ``computedCsum``; checked on parse).
    public let indexCsum: [UInt8]
    /// The image size in bytes.
    public let size: UInt64
    /// The chunk size in bytes (a power of two).
    public let chunkSize: UInt64
    /// One digest per chunk, chunk 0 first.
    public let digests: [ChunkDigest]

    /// Reads and parses the index at `path`. A missing file is ``DatastoreError/notFound(path:what:)``.
    public init(path: String) throws(DatastoreError) {
        // 2 TiB of 4 MiB chunks is 16 MiB of digests; allow far more, but not unbounded.
        guard let bytes = try readWholeFile(path, limit: 1 << 30) else { throw .notFound(path: path, what: "archive") }
        try self.init(bytes: bytes, path: path)
    }

    /// Parses an index from its bytes; `path` names it in errors.
    ///
    /// - Throws: ``DatastoreError/dynamicIndexUnsupported(path:)`` for the `.didx` magic,
    ///   ``DatastoreError/corruptIndex(path:reason:)`` for a bad magic, a chunk size that is not a
    ///   power of two, a length that does not fit the header, or an index_csum that is not the
    ///   SHA-256 of the digests.
    public init(bytes: [UInt8], path: String) throws(DatastoreError) {
        let h = FormatLimits.fixedIndexHeaderSize
        guard bytes.count >= h else { throw .corruptIndex(path: path, reason: "only \(bytes.count) bytes, shorter than the 4096-byte header") }
        let magic = Array(bytes[0..<8])
        if magic == Magic.dynamicIndex { throw .dynamicIndexUnsupported(path: path) }
        guard magic == Magic.fixedIndex else {
            throw .corruptIndex(path: path, reason: "unknown magic \(ChunkDigest.hexString(magic))")
        }
        func u64(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian } }
        let size = u64(64), chunkSize = u64(72)
        guard chunkSize > 0, chunkSize & (chunkSize - 1) == 0 else {
            throw .corruptIndex(path: path, reason: "chunk size \(chunkSize) is not a power of two")
        }
        guard size > 0 else { throw .corruptIndex(path: path, reason: "image size is 0") }
        let count = size / chunkSize + (size % chunkSize == 0 ? 0 : 1)
        let expected = UInt64(h) + 32 * count
        guard UInt64(bytes.count) == expected else {
            throw .corruptIndex(path: path, reason:
                "file is \(bytes.count) bytes; size \(size) and chunk size \(chunkSize) need \(count) digests, \(expected) bytes")
        }
        let headerCsum = Array(bytes[32..<64])
        let computed = Array(SHA256.hash(data: bytes[h...]))
        guard computed == headerCsum else {
            throw .corruptIndex(path: path, reason:
                "index checksum \(ChunkDigest.hexString(headerCsum)) is not SHA-256 of the digests (\(ChunkDigest.hexString(computed)))")
        }
        self.path = path
        uuid = Array(bytes[8..<24])
        ctime = Int64(bitPattern: u64(24))
        indexCsum = headerCsum
        self.size = size
        self.chunkSize = chunkSize
        digests = (0..<Int(count)).map { i in ChunkDigest(bytes: bytes[(h + 32 * i)..<(h + 32 * i + 32)])! }
    }

    /// The number of chunks.
    public var chunkCount: Int { digests.count }

    /// The byte range chunk `i` covers: `[i·chunkSize, min((i+1)·chunkSize, size))`
    /// (`chunk_info` in fixed_index.rs); only the last chunk can be short.
    public func range(ofChunk i: Int) -> Range<UInt64> {
        let start = UInt64(i) * chunkSize
        return start..<min(start + chunkSize, size)
    }

    /// The length in bytes of chunk `i`.
    public func length(ofChunk i: Int) -> Int {
        let r = range(ofChunk: i)
        return Int(r.upperBound - r.lowerBound)
    }

    /// SHA-256 over the concatenated digests, recomputed (`compute_csum` in fixed_index.rs).
    public var computedCsum: [UInt8] {
        var hasher = SHA256()
        for d in digests { hasher.update(data: d.bytes) }
        return Array(hasher.finalize())
    }

    /// Whether chunk `i` is all zeros, judged by its digest alone (see ``ChunkDigest/zero(length:)``).
    public func isZeroChunk(_ i: Int) -> Bool {
        digests[i] == ChunkDigest.zero(length: length(ofChunk: i))
    }

    /// Builds the bytes of an index (header with index_csum, then digests). For tests and tools.
    public static func encode(size: UInt64, chunkSize: UInt64, digests: [ChunkDigest],
                              uuid: [UInt8] = Array(repeating: 0, count: 16), ctime: Int64 = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: FormatLimits.fixedIndexHeaderSize)
        out.replaceSubrange(0..<8, with: Magic.fixedIndex)
        out.replaceSubrange(8..<24, with: uuid.prefix(16))
        func put(_ v: UInt64, _ at: Int) { withUnsafeBytes(of: v.littleEndian) { out.replaceSubrange(at..<(at + 8), with: $0) } }
        put(UInt64(bitPattern: ctime), 24)
        put(size, 64)
        put(chunkSize, 72)
        var hasher = SHA256()
        for d in digests { hasher.update(data: d.bytes); out += d.bytes }
        out.replaceSubrange(32..<64, with: Array(hasher.finalize()))
        return out
    }
}
