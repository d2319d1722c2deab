/// The PBS data blob: every chunk file and every `*.blob` (pbs-datastore/src/data_blob.rs,
/// layout in file_formats.rs `DataBlobHeader` / `EncryptedDataBlobHeader`):
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 8 | magic (``Magic``) |
/// | 8 | 4 | CRC-32, little-endian, over every byte after the header |
/// | 12 | 16 + 16 | IV and AES-GCM tag (encrypted magics only; header then 44 bytes) |
/// | 12 or 44 | rest | payload: plain data, one zstd frame, or ciphertext |
public enum DataBlob {
    /// What a blob's magic says about its payload.
    public enum Kind: Sendable, Equatable {
        case uncompressed, zstd, encrypted, encryptedZstd
    }

    /// The kind named by the first 8 bytes of `raw`; nil for an unknown magic or a short buffer.
    public static func kind(of raw: UnsafeRawBufferPointer) -> Kind? {
        guard raw.count >= 8 else { return nil }
        let magic = Array(raw[0..<8])
        switch magic {
        case Magic.uncompressedBlob: return .uncompressed
        case Magic.compressedBlob: return .zstd
        case Magic.encryptedBlob: return .encrypted
        case Magic.encryptedCompressedBlob: return .encryptedZstd
        default: return nil
        }
    }

    /// Checks the CRC and returns the plain payload.
    ///
    /// - Parameters:
    ///   - raw: the whole blob file.
    ///   - path: where it came from (for error messages).
    ///   - capacity: the largest plain payload accepted: the chunk's length for chunks; for
    ///     other blobs ``FormatLimits/maxBlobSize``.
    /// - Throws: ``DatastoreError/encryptedUnsupported(path:)`` for an encrypted magic,
    ///   ``DatastoreError/corruptBlob(path:reason:)`` for anything malformed.
    public static func decode(_ raw: [UInt8], path: String, capacity: Int = FormatLimits.maxBlobSize) throws(DatastoreError) -> [UInt8] {
        let result: Result<[UInt8], DatastoreError> = raw.withUnsafeBytes { buf in
            guard buf.count >= FormatLimits.blobHeaderSize else {
                return .failure(.corruptBlob(path: path, reason: "only \(buf.count) bytes, shorter than a blob header"))
            }
            guard let kind = kind(of: buf) else {
                let hex = ChunkDigest.hexString(Array(buf[0..<8]))
                return .failure(.corruptBlob(path: path, reason: "unknown magic \(hex)"))
            }
            if kind == .encrypted || kind == .encryptedZstd { return .failure(.encryptedUnsupported(path: path)) }
            let stored = buf.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            let payload = UnsafeRawBufferPointer(rebasing: buf[FormatLimits.blobHeaderSize...])
            let computed = CRC32.checksum(payload)
            guard stored == computed else {
                return .failure(.corruptBlob(path: path, reason:
                    "CRC32 mismatch (stored \(hex32(stored)), computed \(hex32(computed)))"))
            }
            if kind == .uncompressed {
                guard payload.count <= capacity else {
                    return .failure(.corruptBlob(path: path, reason: "payload of \(payload.count) bytes exceeds \(capacity) bytes"))
                }
                return .success(Array(payload))
            }
            let decoded = capacity == FormatLimits.maxBlobSize
                ? Zstd.decompress(payload, limit: capacity) : Zstd.decompress(payload, capacity: capacity)
            switch decoded {
            case .success(let data): return .success(data)
            case .failure(let f) where f.outputTooSmall:
                return .failure(.corruptBlob(path: path, reason: "zstd payload decompresses to more than \(capacity) bytes"))
            case .failure(let f):
                return .failure(.corruptBlob(path: path, reason: "zstd: \(f.name)"))
            }
        }
        return try result.get()
    }

    /// Encodes `data` as an uncompressed, unencrypted blob (magic, CRC, data). Used by tests and tools.
    public static func encodeUncompressed(_ data: [UInt8]) -> [UInt8] {
        let crc = CRC32.checksum(data)
        return Magic.uncompressedBlob + withUnsafeBytes(of: crc.littleEndian) { Array($0) } + data
    }
}

extension ChunkDigest {
    /// Lower-case hex of any byte string.
    static func hexString(_ bytes: [UInt8]) -> String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined()
    }
}

/// Eight hex digits.
func hex32(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}
