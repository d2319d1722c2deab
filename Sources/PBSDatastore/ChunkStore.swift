/// Where chunk data comes from: the local chunk store now, a remote PBS reader session later.
///
/// An implementation returns only verified data: blob CRC checked, payload decompressed,
/// SHA-256 of the data equal to `digest`, and length equal to `length`. It must be safe to call
/// from several threads at once.
public protocol ChunkSource: Sendable {
    /// The plain data of the chunk `digest`, which must be `length` bytes long.
    func read(digest: ChunkDigest, length: Int) throws(DatastoreError) -> [UInt8]
}

/// A datastore's `.chunks` directory. A chunk lives at `.chunks/<XXXX>/<digest hex>`, where
/// XXXX is the first two digest bytes in lower-case hex (`digest_to_prefix`, `chunk_path` in
/// pbs-datastore/src/chunk_store.rs), and is a data blob (``DataBlob``).
public struct ChunkStore: ChunkSource {
    /// The `.chunks` directory.
    public let directory: String

    /// A chunk store rooted at `directory` (the datastore's `.chunks`).
    public init(directory: String) {
        self.directory = directory
    }

    /// The file of chunk `digest`.
    public func path(of digest: ChunkDigest) -> String {
        "\(directory)/\(digest.prefix)/\(digest.hex)"
    }

    /// The chunk's plain data, verified: CRC, decompression, SHA-256 = `digest`. Any length up
    /// to ``FormatLimits/maxBlobSize``.
    public func read(digest: ChunkDigest) throws(DatastoreError) -> [UInt8] {
        try read(digest: digest, capacity: FormatLimits.maxBlobSize)
    }

    /// The chunk's plain data, verified as ``read(digest:)`` and also `length` bytes long
    /// (`verify_unencrypted` in pbs-datastore/src/data_blob.rs checks digest, then length).
    public func read(digest: ChunkDigest, length: Int) throws(DatastoreError) -> [UInt8] {
        let data = try read(digest: digest, capacity: length)
        guard data.count == length else {
            throw .corruptBlob(path: path(of: digest), reason: "chunk is \(data.count) bytes, the index expects \(length)")
        }
        return data
    }

    private func read(digest: ChunkDigest, capacity: Int) throws(DatastoreError) -> [UInt8] {
        let file = path(of: digest)
        // A zstd blob can in theory be a little larger than its data; PBS keeps the compressed
        // form only when smaller, so header + data bounds every valid chunk file.
        guard let raw = try readWholeFile(file, limit: capacity + FormatLimits.encryptedBlobHeaderSize) else {
            throw .missingChunk(path: file, digest: digest)
        }
        let data = try DataBlob.decode(raw, path: file, capacity: capacity)
        let actual = data.withUnsafeBytes { ChunkDigest.of(buffer: $0) }
        guard actual == digest else { throw .digestMismatch(path: file, expected: digest, actual: actual) }
        return data
    }
}
