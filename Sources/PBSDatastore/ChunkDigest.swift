import Crypto
import Foundation
import Synchronization

/// A chunk's identity: SHA-256 of its plain data (unencrypted backups; `DataChunkBuilder` and
/// `verify_digest` in pbs-datastore/src/data_blob.rs).
public struct ChunkDigest: Hashable, Sendable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    /// A digest from exactly 32 bytes; nil for any other length.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 32 else { return nil }
        self.bytes = Array(bytes)
    }

    /// A digest from 64 hex digits (either case); nil otherwise.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = Self.nibble(utf8[2 * i]), let lo = Self.nibble(utf8[2 * i + 1]) else { return nil }
            out[i] = hi << 4 | lo
        }
        bytes = out
    }

    /// SHA-256 of `data`.
    public static func of<D: DataProtocol>(_ data: D) -> ChunkDigest {
        ChunkDigest(bytes: Array(SHA256.hash(data: data)))!
    }

    /// SHA-256 of the bytes in `buffer`.
    public static func of(buffer: UnsafeRawBufferPointer) -> ChunkDigest {
        ChunkDigest(bytes: Array(SHA256.hash(data: buffer)))!
    }

    /// The digest of `length` zero bytes (cached per length).
    ///
    /// pbs-restore recognises a chunk whose digest equals that of an all-zero chunk of the index's
    /// chunk size and writes zeros without fetching it (proxmox-backup-qemu `src/restore.rs`,
    /// `DataChunkBuilder::build_zero_chunk` in data_blob.rs). For 4 MiB this is
    /// `bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8` [computed here:
    /// SHA-256 of 4 194 304 zero bytes; the reference's §9 names the rule, not the value].
    /// A digest equal to `zero(length:)` proves the data is zeros whatever the index says, so
    /// this library also applies it to a short last chunk (hashed over its own length).
    public static func zero(length: Int) -> ChunkDigest {
        if let cached = zeroCache.withLock({ $0[length] }) { return cached }
        let digest = ChunkDigest.of([UInt8](repeating: 0, count: length))
        zeroCache.withLock { $0[length] = digest }
        return digest
    }

    /// 64 lower-case hex digits, as in chunk file names (`hex::encode`, chunk_store.rs).
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The chunk store's prefix directory: the first two bytes as four hex digits
    /// (`digest_to_prefix` in pbs-datastore/src/chunk_store.rs).
    public var prefix: String { String(hex.prefix(4)) }

    public var description: String { hex }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static let zeroCache = Mutex<[Int: ChunkDigest]>([:])
}
