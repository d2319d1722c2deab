import Foundation
import PBSDatastore
import Testing

/// The Swift datastore writer against this module's reader and the independent Python writer.
@Suite("Datastore writer")
struct DatastoreWriterTests {
    static let chunk = 1 << 16

    /// An image of `chunks` full chunks plus a short tail: random, zero and compressible chunks.
    static func image(chunks: Int, tail: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededBytes(state: seed)
        var out: [UInt8] = []
        for i in 0..<chunks {
            switch i % 3 {
            case 0: out += rng.bytes(chunk)
            case 1: out += [UInt8](repeating: 0, count: chunk)
            default: out += Array(repeating: Array("compressible text \(i) ".utf8), count: chunk / 20 + 1).flatMap { $0 }.prefix(chunk)
            }
        }
        return out + rng.bytes(tail)
    }

    /// A snapshot written in Swift reads back through Datastore/FixedIndex/ChunkStore, verifies
    /// against the manifest, restores byte for byte, dedups, and has the index checksum the Python
    /// writer computes for the same image.
    @Test func writesWhatTheReaderReadsAndMatchesPython() throws {
        let scratch = try Scratch("dswriter")
        let bytes = Self.image(chunks: 5, tail: 1234, seed: 7)
        let writer = try DatastoreWriter(path: scratch.path("swift"))
        let ref = try SnapshotRef(parsing: "vm/100/2024-01-01T00:00:00Z", namespace: "prod/a")
        let snap = try writer.beginSnapshot(ref)
        try snap.writeBlob(name: "qemu-server.conf.blob", data: Array("memory: 2048\n".utf8))
        var chunkSeq: [[UInt8]] = []
        for start in stride(from: 0, to: bytes.count, by: Self.chunk) { chunkSeq.append(Array(bytes[start..<min(start + Self.chunk, bytes.count)])) }
        let written = try snap.writeImage(archive: "drive-scsi0.img.fidx", size: UInt64(bytes.count), chunkSize: Self.chunk, chunks: chunkSeq)
        try snap.finish(notes: "from swift")

        #expect(FileManager.default.fileExists(atPath: scratch.path("swift/ns/prod/ns/a/vm/100/owner")))
        let ds = try Datastore(path: scratch.path("swift"))
        let index = try ds.openFixedIndex(snapshot: ref, archive: "drive-scsi0.img.fidx")
        #expect(index.indexCsum == written.indexCsum)
        #expect(index.size == UInt64(bytes.count) && index.chunkSize == UInt64(Self.chunk) && index.chunkCount == 6)
        let manifest = try #require(try Manifest.load(snapshotDirectory: ds.directory(of: ref)))
        #expect(manifest.backupTime == 1_704_067_200 && manifest.backupID == "100" && manifest.files.count == 2)
        // A compressible chunk is stored zstd, a random one plain.
        let kinds = try index.digests.map { d in try #require(DataBlob.kind(ofFile: ds.chunks.path(of: d))) }
        #expect(kinds.contains(.zstd) && kinds.contains(.uncompressed))
        // Byte for byte through the module's own restore.
        let target = scratch.path("restored.raw")
        try ImageWriter(source: ds.chunks).restore(index, target: target, overwrite: false)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == Data(bytes))
        #expect(try ImageVerifier.mismatches(of: index, target: target).isEmpty)
        // Dedup: a second snapshot of the same image writes no chunk.
        let before = try chunkFiles(scratch.path("swift/.chunks"))
        let second = try writer.beginSnapshot(try SnapshotRef(parsing: "vm/100/2024-01-02T00:00:00Z", namespace: "prod/a"))
        try second.writeImage(archive: "drive-scsi0.img.fidx", size: UInt64(bytes.count), chunkSize: Self.chunk, chunks: chunkSeq)
        try second.finish()
        #expect(try chunkFiles(scratch.path("swift/.chunks")) == before)
        // The independent writer computes the same index checksum (digests) for the same image.
        let py = try writeSnapshot(scratch, "vm/100/2024-01-01T00:00:00Z", chunkSize: Self.chunk, archives: ["drive-scsi0.img.fidx": bytes])
        let info = try #require(py["drive-scsi0.img.fidx"])
        #expect(info.csum == written.indexCsum.map { String(format: "%02x", $0) }.joined())
        #expect(info.digests == written.digests.map(\.hex))
    }

    /// An image file is written chunk by chunk; a wrong-length chunk is refused.
    @Test func fromFileAndRefusals() throws {
        let scratch = try Scratch("dswriter")
        let bytes = Self.image(chunks: 2, tail: 0, seed: 9)
        try Data(bytes).write(to: URL(fileURLWithPath: scratch.path("img")))
        let writer = try DatastoreWriter(path: scratch.path("ds"))
        let snap = try writer.beginSnapshot(try SnapshotRef(parsing: "vm/5/2024-01-01T00:00:00Z"))
        let index = try snap.writeImage(archive: "drive-scsi0.img.fidx", imageFile: scratch.path("img"), chunkSize: Self.chunk)
        #expect(index.chunkCount == 2)
        #expect(throws: DatastoreError.self) {
            try snap.writeImage(archive: "drive-scsi1.img.fidx", size: 10, chunkSize: Self.chunk) { _ in [1, 2, 3] }
        }
        #expect(throws: DatastoreError.self) { try snap.writeBlob(name: "index.json.blob", data: []) }
    }

    private func chunkFiles(_ dir: String) throws -> Set<String> {
        Set(FileManager.default.enumerator(atPath: dir)?.compactMap { $0 as? String } ?? [])
    }
}

/// Deterministic bytes for test images.
struct SeededBytes {
    var state: UInt64
    mutating func bytes(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }
}

extension DataBlob {
    /// The kind of the blob file at `path` (nil when unreadable).
    static func kind(ofFile path: String) -> Kind? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return Array(data).withUnsafeBytes { kind(of: $0) }
    }
}
