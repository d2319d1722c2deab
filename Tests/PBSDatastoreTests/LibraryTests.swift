import Foundation
import PBSDatastore
import Synchronization
import Testing

/// The format pieces, checked against values derived independently of the library.
@Suite("PBSDatastore format")
struct LibraryTests {
    func hex(_ s: String) -> [UInt8] { ChunkDigest(hex: s + String(repeating: "0", count: 64 - s.count))!.bytes.prefix(s.count / 2).map { $0 } }

    /// file_formats.rs: each magic is sha256(<string>)[0..8].
    @Test func magicsAreSha256PrefixesOfTheirStrings() {
        let table: [(String, [UInt8])] = [
            ("Proxmox Backup uncompressed blob v1.0", Magic.uncompressedBlob),
            ("Proxmox Backup zstd compressed blob v1.0", Magic.compressedBlob),
            ("Proxmox Backup encrypted blob v1.0", Magic.encryptedBlob),
            ("Proxmox Backup zstd compressed encrypted blob v1.0", Magic.encryptedCompressedBlob),
            ("Proxmox Backup fixed sized chunk index v1.0", Magic.fixedIndex),
            ("Proxmox Backup dynamic sized chunk index v1.0", Magic.dynamicIndex),
        ]
        for (text, magic) in table { #expect(Array(ChunkDigest.of(Array(text.utf8)).bytes.prefix(8)) == magic, "\(text)") }
        #expect(Magic.fixedIndex == hex("2f7f41ed91fd0fcd"))
        #expect(Magic.compressedBlob == hex("31b958426fb6a37f"))
    }

    /// The reference's §9.2 test vector [computed there]: plain blob of "hello". That crc32fast
    /// computes zlib's CRC-32 is [unverified] against a file written by a real PBS.
    @Test func blobTestVectorAndCRC() throws {
        let blob = DataBlob.encodeUncompressed(Array("hello".utf8))
        #expect(blob == hex("42ab3807be8370a186a6103668656c6c6f"))
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)  // the CRC-32/IEEE check value
        let long = fill(.random, length: 100_003, seed: 3)
        #expect(CRC32.checksum(long) == UInt32(crc32Reference(long)))
        #expect(try DataBlob.decode(blob, path: "hello.blob") == Array("hello".utf8))
        var bad = blob
        bad[12] ^= 1
        #expect(throws: DatastoreError.self) { try DataBlob.decode(bad, path: "x") }
    }

    /// pbs-restore's zero chunk for the default 4 MiB chunk size. The reference (§9.5) names the
    /// rule but not the value; this is SHA-256 of 4 194 304 zero bytes, computed with
    /// `python3 -c "import hashlib; print(hashlib.sha256(bytes(4<<20)).hexdigest())"`.
    @Test func zeroChunkDigestFor4MiB() {
        #expect(ChunkDigest.zero(length: 4 << 20).hex == "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8")
        #expect(ChunkDigest.zero(length: 4 << 20).prefix == "bb9f")
    }

    /// A header built byte by byte from the layout in fixed_index.rs (not with the library's encoder).
    @Test func parsesAFixedIndexHeader() throws {
        let d0 = ChunkDigest.of([UInt8](repeating: 1, count: 10)), d1 = ChunkDigest.of([UInt8](repeating: 2, count: 5))
        var h = Magic.fixedIndex + Array(0..<16) + le(UInt64(bitPattern: 1_704_067_200))
        h += ChunkDigest.of(d0.bytes + d1.bytes).bytes + le(20) + le(16)  // 2 chunks, the last 4 bytes long
        h += [UInt8](repeating: 0, count: 4096 - h.count)
        let index = try FixedIndex(bytes: h + d0.bytes + d1.bytes, path: "t.fidx")
        #expect(index.uuid == Array(0..<16) && index.ctime == 1_704_067_200)
        #expect(index.size == 20 && index.chunkSize == 16 && index.chunkCount == 2)
        #expect(index.range(ofChunk: 1) == 16..<20 && index.length(ofChunk: 1) == 4)
        #expect(index.indexCsum == index.computedCsum && index.digests == [d0, d1])
        #expect(FixedIndex.encode(size: 20, chunkSize: 16, digests: [d0, d1], uuid: Array(0..<16), ctime: 1_704_067_200) == h + d0.bytes + d1.bytes)
        // One digest short of what size and chunk size require.
        #expect(throws: DatastoreError.self) { try FixedIndex(bytes: h + d0.bytes, path: "t.fidx") }
    }

    @Test func rejectsMalformedIndexes() throws {
        let d = ChunkDigest.of([1])
        let good = FixedIndex.encode(size: 100, chunkSize: 64, digests: [d, d])
        #expect(throws: Never.self) { try FixedIndex(bytes: good, path: "a") }
        var didx = good
        didx.replaceSubrange(0..<8, with: Magic.dynamicIndex)
        #expect(throws: DatastoreError.dynamicIndexUnsupported(path: "a")) { try FixedIndex(bytes: didx, path: "a") }
        var csum = good
        csum[40] ^= 1
        #expect(throws: DatastoreError.self) { try FixedIndex(bytes: csum, path: "a") }
        #expect(throws: DatastoreError.self) { try FixedIndex(bytes: FixedIndex.encode(size: 100, chunkSize: 48, digests: [d, d, d]), path: "a") }
        #expect(throws: DatastoreError.self) { try FixedIndex(bytes: Array(good.dropLast()), path: "a") }
        #expect(DatastoreError.corruptIndex(path: "a", reason: "").exitCode == 3)
        #expect(DatastoreError.dynamicIndexUnsupported(path: "a").exitCode == 2)
    }

    @Test func snapshotNamesAndNamespaces() throws {
        let s = try SnapshotRef(parsing: "vm/100/2024-01-01T00:00:00Z", namespace: "a/b")
        #expect(s.relativePath == "ns/a/ns/b/vm/100/2024-01-01T00:00:00Z")
        #expect(try SnapshotRef(parsing: "ct/web-1.x/2024-01-01T00:00:00Z").relativePath == "ct/web-1.x/2024-01-01T00:00:00Z")
        for bad in ["vm/100", "vm/100/2024-01-01", "vm/../2024-01-01T00:00:00Z", "lxc/1/2024-01-01T00:00:00Z", "vm/100/2024-01-01T00:00:00Z/x"] {
            #expect(throws: DatastoreError.self, "\(bad)") { try SnapshotRef(parsing: bad) }
        }
        for bad in ["..", "a//b", "/a", "a/b/c/d/e/f/g/h/i", "a/.hidden"] {
            #expect(throws: DatastoreError.self, "\(bad)") { try SnapshotRef.parseNamespace(bad) }
        }
        #expect(try SnapshotRef.parseNamespace("a/b/c/d/e/f/g/h").count == 8)
    }

    /// Frames as the zstd CLI writes them: without a content size (as PBS does) and with one.
    @Test(arguments: [false, true])
    func decodesZstdBlobs(withContentSize: Bool) throws {
        let data = fill(.text, length: 70_000, seed: 1)
        var args = ["zstd", "-1", "-q", "-c", "--no-check"]
        if withContentSize { args += ["--check", "--stream-size=\(data.count)"] }
        let input = try Scratch()
        try save(data, input.path("in"))
        let r = try runProcess("/usr/bin/env", ["sh", "-c", args.joined(separator: " ") + " < '\(input.path("in"))' > '\(input.path("out"))'"])
        #expect(r.status == 0)
        let frame = try bytes(input.path("out"))
        let blob = Magic.compressedBlob + le32(UInt32(crc32Reference(frame))) + frame
        #expect(try DataBlob.decode(blob, path: "c") == data)
        #expect(try DataBlob.decode(blob, path: "c", capacity: data.count) == data)
        #expect(throws: DatastoreError.self) { try DataBlob.decode(blob, path: "c", capacity: data.count - 1) }
        let encrypted = Magic.encryptedBlob + le32(0) + [UInt8](repeating: 0, count: 40)
        #expect(throws: DatastoreError.encryptedUnsupported(path: "e")) { try DataBlob.decode(encrypted, path: "e") }
    }

    @Test func manifestKeysInAnyOrder() throws {
        let json = """
            {"unprotected": {"notes": "x"}, "signature": null, "files": [
              {"size": 512, "filename": "qemu-server.conf.blob", "csum": "\(String(repeating: "0a", count: 32))"},
              {"crypt-mode": "none", "csum": "\(String(repeating: "FF", count: 32))", "filename": "drive-scsi0.img.fidx", "size": 34359738368}],
             "backup-time": 1704067200, "backup-id": "100", "backup-type": "vm"}
            """
        let m = try Manifest(json: Array(json.utf8), path: "index.json.blob")
        #expect(m.backupType == "vm" && m.backupID == "100" && m.backupTime == 1_704_067_200)
        #expect(m.file(named: "qemu-server.conf.blob")?.cryptMode == "none")
        #expect(m.file(named: "drive-scsi0.img.fidx")?.size == 34_359_738_368)
        #expect(m.file(named: "drive-scsi0.img.fidx")?.csum == [UInt8](repeating: 0xFF, count: 32))
    }

    @Test func diffComparesDigests() throws {
        let x = ChunkDigest.of([1]), y = ChunkDigest.of([2])
        let a = try FixedIndex(bytes: FixedIndex.encode(size: 300, chunkSize: 128, digests: [x, x, x]), path: "a")
        let b = try FixedIndex(bytes: FixedIndex.encode(size: 300, chunkSize: 128, digests: [x, y, y]), path: "b")
        #expect(try DeltaPlan.diff(from: a, to: b).changed == [1, 2])
        #expect(try DeltaPlan.diff(from: a, to: b).changedBytes == 128 + 44)
        let c = try FixedIndex(bytes: FixedIndex.encode(size: 300, chunkSize: 256, digests: [x, x]), path: "c")
        #expect(throws: DatastoreError.self) { try DeltaPlan.diff(from: a, to: c) }
    }
}

/// Bitwise CRC-32 (IEEE), the textbook definition, to check the table-driven one.
func crc32Reference(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

func le(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
