import Foundation
import PBSDatastore
import Testing

/// `diff`, `apply`, `restore` and `verify` driven as an operator would, on datastores written by
/// the independent Python writer (scripts/pbs-datastore-writer.py).
@Suite("datastore diff/apply/restore/verify")
struct ApplyContractTests {
    let cs = 64 * 1024

    /// Two snapshots: A, and B = A with chunks 1 and 5 rewritten, chunk 7 zeroed and the short last chunk changed.
    func twoSnapshots(_ s: Scratch, ns: String = "") throws -> (a: [UInt8], b: [UInt8], info: ArchiveInfo) {
        let size = 20 * cs + 1234  // 21 chunks, the last one short
        let a = image(size: size, chunkSize: cs, kinds: { $0 % 3 == 0 ? .text : .random }, seed: 1)
        var b = a
        b.replaceSubrange(cs..<(2 * cs), with: fill(.random, length: cs, seed: 99))
        b.replaceSubrange((5 * cs)..<(6 * cs), with: fill(.text, length: cs, seed: 98))
        b.replaceSubrange((7 * cs)..<(8 * cs), with: fill(.zero, length: cs, seed: 0))
        b.replaceSubrange((20 * cs)..<size, with: fill(.random, length: 1234, seed: 97))
        try writeSnapshot(s, "vm/100/\(t0)", ns: ns, chunkSize: cs, archives: [disk: a])
        let info = try writeSnapshot(s, "vm/100/\(t1)", ns: ns, chunkSize: cs, archives: [disk: b])[disk]!
        return (a, b, info)
    }

    func common(_ s: Scratch) -> [String] { ["--datastore", s.datastore, "--archive", disk] }

    @Test func diffPrintsChangedChunkIndexesAscending() throws {
        let s = try Scratch()
        _ = try twoSnapshots(s)
        let r = try datastoreCLI(["diff"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "1\n5\n7\n20\n")
        let same = try datastoreCLI(["diff"] + common(s) + ["--from", "vm/100/\(t1)", "--to", "vm/100/\(t1)"])
        #expect(same.status == 0 && same.stdout.isEmpty)
    }

    @Test func applyTurnsImageAIntoImageB() throws {
        let s = try Scratch()
        let (a, b, info) = try twoSnapshots(s)
        #expect(info.kinds.contains("zstd") && info.kinds.contains("plain"), "both blob kinds are exercised")
        let target = s.path("target.img")
        try save(a, target)
        let r = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b)
        // The same bytes as a full restore of B.
        let full = s.path("full.img")
        let rr = try datastoreCLI(["restore"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", full])
        #expect(rr.status == 0, "\(rr.stderr)")
        #expect(ChunkDigest.of(try bytes(full)) == ChunkDigest.of(try bytes(target)))
        #expect(try datastoreCLI(["verify"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", target]).status == 0)
    }

    /// `--from-index`: the old snapshot was pruned from the datastore; a kept copy of its index
    /// gives the same result (what the service's delta executor passes).
    @Test func applyWithAKeptIndexOfAPrunedSnapshot() throws {
        let s = try Scratch()
        let (a, b, _) = try twoSnapshots(s)
        let kept = s.path("kept-\(disk)")
        try FileManager.default.copyItem(atPath: "\(s.datastore)/vm/100/\(t0)/\(disk)", toPath: kept)
        try FileManager.default.removeItem(atPath: "\(s.datastore)/vm/100/\(t0)")
        let target = s.path("target.img")
        try save(a, target)
        let pruned = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target])
        #expect(pruned.status == 2 && pruned.stderr.contains("not found"), "without the kept index: \(pruned.stderr)")
        let r = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target, "--from-index", kept])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b)
    }

    @Test func zeroChunksAreWrittenWithoutReadingTheirChunkFile() throws {
        let s = try Scratch()
        let (a, b, info) = try twoSnapshots(s)
        // Chunk 7 of B is all zeros: its digest is the well-known zero digest for 64 KiB.
        #expect(info.digests[7] == ChunkDigest.zero(length: cs).hex)
        try writerTool(["tamper-chunk", "--datastore", s.datastore, "--digest", info.digests[7], "--how", "missing"])
        let target = s.path("t.img")
        try save(a, target)
        let r = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b)
        let restored = s.path("r.img")
        #expect(try datastoreCLI(["restore"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", restored]).status == 0)
        #expect(try bytes(restored) == b)
    }

    @Test func targetLargerThanImageKeepsItsTail() throws {
        let s = try Scratch()
        let (a, b, _) = try twoSnapshots(s)
        let tail = [UInt8](repeating: 0xAB, count: 4 * 1024 * 1024 - a.count % (4 * 1024 * 1024))  // LVM rounds to 4 MiB
        let target = s.path("lv")
        try save(a + tail, target)
        let r = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b + tail)
        #expect(try datastoreCLI(["verify"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", target]).status == 0)
    }

    @Test func severalArchivesOfOneSnapshot() throws {
        let s = try Scratch()
        let a0 = image(size: 8 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 5)
        let a1 = image(size: 5 * cs + 17, chunkSize: cs, kinds: { _ in .text }, seed: 6)
        var b0 = a0, b1 = a1
        b0.replaceSubrange(0..<cs, with: fill(.random, length: cs, seed: 50))
        b1.replaceSubrange((3 * cs)..<(4 * cs), with: fill(.random, length: cs, seed: 51))
        let d1 = "drive-scsi1.img.fidx"
        try writeSnapshot(s, "vm/200/\(t0)", chunkSize: cs, archives: [disk: a0, d1: a1])
        try writeSnapshot(s, "vm/200/\(t1)", chunkSize: cs, archives: [disk: b0, d1: b1])
        for (name, from, to, changed) in [(disk, a0, b0, "0\n"), (d1, a1, b1, "3\n")] {
            let args = ["--datastore", s.datastore, "--archive", name, "--from", "vm/200/\(t0)", "--to", "vm/200/\(t1)"]
            #expect(try datastoreCLI(["diff"] + args).stdout == changed)
            let target = s.path(name + ".img")
            try save(from, target)
            let r = try datastoreCLI(["apply"] + args + ["--target", target])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try bytes(target) == to)
        }
    }

    @Test func namespacesNest() throws {
        let s = try Scratch()
        let (a, b, _) = try twoSnapshots(s, ns: "site/rack1")
        #expect(FileManager.default.fileExists(atPath: s.path("ds/ns/site/ns/rack1/vm/100/\(t0)/\(disk)")))
        let target = s.path("t.img")
        try save(a, target)
        let args = common(s) + ["--ns", "site/rack1", "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"]
        let r = try datastoreCLI(["apply"] + args + ["--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b)
        // Without --ns the snapshot is not in the root namespace: a configuration error.
        let root = try datastoreCLI(["diff"] + common(s) + ["--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"])
        #expect(root.status == 2 && root.stderr.contains("not found"), "\(root.stderr)")
        let bad = try datastoreCLI(["diff"] + args.dropLast(4) + ["--ns", "../x", "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"])
        #expect(bad.status == 2, "\(bad.stderr)")
    }

    @Test func verifyListsMismatchingChunks() throws {
        let s = try Scratch()
        let (_, b, _) = try twoSnapshots(s)
        var target = b
        target[3 * cs + 10] ^= 1
        target[b.count - 1] ^= 1  // in the short last chunk
        let path = s.path("t.img")
        try save(target, path)
        let args = ["verify"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", path]
        let r = try datastoreCLI(args)
        #expect(r.status == 1)
        #expect(r.stdout == "3\n20\n")
        try save(b, path)
        let ok = try datastoreCLI(args)
        #expect(ok.status == 0 && ok.stdout.isEmpty, "\(ok.stderr)")
        try save(Array(b.dropLast()), path)
        let short = try datastoreCLI(args)
        #expect(short.status == 3 && short.stderr.contains("too small"), "\(short.stderr)")
    }

    @Test func restoreRefusesAnExistingFileUnlessOverwrite() throws {
        let s = try Scratch()
        let (_, b, _) = try twoSnapshots(s)
        let path = s.path("exists.img")
        let garbage = [UInt8](repeating: 0x5A, count: b.count + 5000)
        try save(garbage, path)
        let args = ["restore"] + common(s) + ["--snapshot", "vm/100/\(t1)", "--target", path]
        let r = try datastoreCLI(args)
        #expect(r.status == 2 && r.stderr.contains("--overwrite"), "\(r.stderr)")
        #expect(try bytes(path) == garbage)
        let o = try datastoreCLI(args + ["--overwrite"])
        #expect(o.status == 0, "\(o.stderr)")
        #expect(try bytes(path) == b, "the file is exactly the image, zero chunks included")
    }

    @Test func differentChunkOrImageSizesAreDataErrors() throws {
        let s = try Scratch()
        let a = image(size: 8 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 1)
        try writeSnapshot(s, "vm/300/\(t0)", chunkSize: cs, archives: [disk: a])
        try writeSnapshot(s, "vm/300/\(t1)", chunkSize: 2 * cs, archives: [disk: a])
        try writeSnapshot(s, "vm/300/\(t2)", chunkSize: cs, archives: [disk: a + fill(.random, length: cs, seed: 3)])
        let r = try datastoreCLI(["diff"] + common(s) + ["--from", "vm/300/\(t0)", "--to", "vm/300/\(t1)"])
        #expect(r.status == 3 && r.stderr.contains("chunk sizes differ"), "\(r.stderr)")
        let target = s.path("t.img")
        try save(a + [UInt8](repeating: 0, count: cs), target)
        let before = try bytes(target)
        let r2 = try datastoreCLI(["apply"] + common(s) + ["--from", "vm/300/\(t0)", "--to", "vm/300/\(t2)", "--target", target])
        #expect(r2.status == 3 && r2.stderr.contains("image sizes differ"), "\(r2.stderr)")
        #expect(try bytes(target) == before)
    }
}
