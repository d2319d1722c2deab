import Foundation
import PBSDatastore
import Synchronization
import Testing

/// Random change sets (seeded, replayable), the real 4 MiB chunk size, and the library's
/// write pass re-verifying chunks.
@Suite("datastore apply properties")
struct PropertyTests {
    /// For random images and change sets: diff lists exactly the changed chunks, and apply of
    /// A→B onto A (with or without a tail past the image) gives B, the same bytes as a restore of B.
    @Test(arguments: 0..<10)
    func applyEqualsRestoreForRandomChangeSets(iteration: Int) throws {
        let seed = UInt64(0x5EED_0000 + iteration)
        var rng = SplitMix64(state: seed)
        let cs = [4096, 16384, 65536][Int.random(in: 0..<3, using: &rng)]
        let chunks = Int.random(in: 2...24, using: &rng)
        let size = chunks * cs - Int.random(in: 0..<cs, using: &rng)
        let kinds: [Fill] = (0..<chunks).map { _ in [.random, .random, .text, .zero][Int.random(in: 0..<4, using: &rng)] }
        let a = image(size: size, chunkSize: cs, kinds: { kinds[$0] }, seed: seed)
        var b = a
        let p = Double.random(in: 0...1, using: &rng)
        var expected: [Int] = []
        for i in 0..<chunks where Double.random(in: 0..<1, using: &rng) < p {
            let range = (i * cs)..<min((i + 1) * cs, size)
            let kind: Fill = [.random, .text, .zero][Int.random(in: 0..<3, using: &rng)]
            b.replaceSubrange(range, with: fill(kind, length: range.count, seed: seed &+ 1_000_003 &* UInt64(i + 1)))
            if b[range] != a[range] { expected.append(i) }
        }
        let ns = iteration % 3 == 0 ? "prop/n\(iteration)" : ""
        let s = try Scratch("pbsprop")
        try writeSnapshot(s, "vm/\(iteration)/\(t0)", ns: ns, chunkSize: cs, archives: [disk: a])
        try writeSnapshot(s, "vm/\(iteration)/\(t1)", ns: ns, chunkSize: cs, archives: [disk: b])
        let common = ["--datastore", s.datastore, "--ns", ns, "--archive", disk]
        let snaps = ["--from", "vm/\(iteration)/\(t0)", "--to", "vm/\(iteration)/\(t1)"]
        let note = Comment(rawValue: "seed \(seed), chunk size \(cs), \(chunks) chunks, size \(size), p \(p)")

        let diff = try datastoreCLI(["diff"] + common + snaps)
        #expect(diff.status == 0 && diff.indexes == expected, note)
        let tail = iteration % 2 == 0 ? [] : fill(.random, length: Int.random(in: 1...5000, using: &rng), seed: seed)
        let target = s.path("target")
        try save(a + tail, target)
        let r = try datastoreCLI(["apply"] + common + snaps + ["--target", target])
        #expect(r.status == 0, "\(note): \(r.stderr)")
        let applied = try bytes(target)
        #expect(applied == b + tail, note)
        let full = s.path("full")
        #expect(try datastoreCLI(["restore"] + common + ["--snapshot", "vm/\(iteration)/\(t1)", "--target", full]).status == 0, note)
        #expect(ChunkDigest.of(try bytes(full)) == ChunkDigest.of(Array(applied.prefix(size))), note)
        #expect(try datastoreCLI(["verify"] + common + ["--snapshot", "vm/\(iteration)/\(t1)", "--target", target]).status == 0, note)
    }

    /// The real chunk size: 4 MiB chunks, a ~40 MiB image with a short last chunk and zero chunks.
    @Test func fourMiBChunks() throws {
        let cs = 4 << 20, size = 10 * cs + 123_457
        let kinds: [Fill] = [.random, .text, .zero, .random, .text, .random, .random, .zero, .text, .random, .random]
        let a = image(size: size, chunkSize: cs, kinds: { kinds[$0] }, seed: 40)
        var b = a
        b.replaceSubrange((2 * cs)..<(3 * cs), with: fill(.random, length: cs, seed: 41))
        b.replaceSubrange((6 * cs)..<(7 * cs), with: fill(.zero, length: cs, seed: 0))
        b.replaceSubrange((10 * cs)..<size, with: fill(.text, length: size - 10 * cs, seed: 42))
        let s = try Scratch("pbs4m")
        try writeSnapshot(s, "vm/104/\(t0)", chunkSize: cs, archives: [disk: a])
        let info = try writeSnapshot(s, "vm/104/\(t1)", chunkSize: cs, archives: [disk: b])[disk]!
        #expect(info.digests[6] == "bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8", "the zero chunk digest")
        let common = ["--datastore", s.datastore, "--archive", disk]
        let diff = try datastoreCLI(["diff"] + common + ["--from", "vm/104/\(t0)", "--to", "vm/104/\(t1)"])
        #expect(diff.stdout == "2\n6\n10\n")
        let target = s.path("lv")
        try save(a + [UInt8](repeating: 7, count: 4 * cs - 123_457), target)  // rounded up to 4 MiB extents
        let r = try datastoreCLI(["apply"] + common + ["--from", "vm/104/\(t0)", "--to", "vm/104/\(t1)", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        let full = s.path("full")
        #expect(try datastoreCLI(["restore"] + common + ["--snapshot", "vm/104/\(t1)", "--target", full]).status == 0)
        let restored = try bytes(full)
        #expect(restored.count == size)
        #expect(ChunkDigest.of(restored) == ChunkDigest.of(b))
        #expect(ChunkDigest.of(Array(try bytes(target).prefix(size))) == ChunkDigest.of(restored))
        #expect(try datastoreCLI(["verify"] + common + ["--snapshot", "vm/104/\(t1)", "--target", target]).status == 0)
    }

    /// A chunk that is fine in the verify pass but corrupt when the write pass reads it again
    /// stops the run before that chunk is written (one worker: nothing after it is written either).
    @Test func chunkChangingBetweenPassesFailsBeforeItsWrite() throws {
        let cs = 16384
        let a = image(size: 6 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 8)
        let b = image(size: 6 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 9)  // every chunk differs
        let s = try Scratch()
        try writeSnapshot(s, "vm/1/\(t0)", chunkSize: cs, archives: [disk: a])
        try writeSnapshot(s, "vm/1/\(t1)", chunkSize: cs, archives: [disk: b])
        let ds = try Datastore(path: s.datastore)
        let from = try ds.openFixedIndex(snapshot: SnapshotRef(parsing: "vm/1/\(t0)"), archive: disk)
        let to = try ds.openFixedIndex(snapshot: SnapshotRef(parsing: "vm/1/\(t1)"), archive: disk)
        let plan = try DeltaPlan.diff(from: from, to: to)
        #expect(plan.changed == Array(0..<6))
        let source = SwapOnSecondRead(store: ds.chunks, victim: to.digests[3])
        let target = s.path("t")
        try save(a, target)
        let seen = Mutex<[UInt64]>([])
        #expect(throws: DatastoreError.self) {
            try ImageWriter(source: source, workers: 1).apply(plan, target: target) { n in seen.withLock { $0.append(n) } }
        }
        do { try ImageWriter(source: source, workers: 1).apply(plan, target: target) } catch {
            guard case .atChunk(let index, .corruptBlob) = error else { Issue.record("unexpected \(error)"); return }
            #expect(index == 3)
        }
        let now = try bytes(target)
        #expect(Array(now[0..<(3 * cs)]) == Array(b[0..<(3 * cs)]), "chunks before the bad one written")
        #expect(Array(now[(3 * cs)...]) == Array(a[(3 * cs)...]), "the bad chunk and those after it untouched")
        #expect(seen.withLock { $0 } == [UInt64(cs), UInt64(2 * cs), UInt64(3 * cs)], "progress counts bytes written")
    }

    /// With a cache budget the verified bytes of the first pass are written: the chunk is read
    /// once, and its file changing afterwards cannot matter.
    @Test func cachedChunksAreWrittenFromTheVerifiedPass() throws {
        let cs = 16384
        let a = image(size: 6 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 8)
        let b = image(size: 6 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 9)
        let s = try Scratch()
        try writeSnapshot(s, "vm/1/\(t0)", chunkSize: cs, archives: [disk: a])
        try writeSnapshot(s, "vm/1/\(t1)", chunkSize: cs, archives: [disk: b])
        let ds = try Datastore(path: s.datastore)
        let plan = try DeltaPlan.diff(from: ds.openFixedIndex(snapshot: SnapshotRef(parsing: "vm/1/\(t0)"), archive: disk),
                                      to: ds.openFixedIndex(snapshot: SnapshotRef(parsing: "vm/1/\(t1)"), archive: disk))
        let source = SwapOnSecondRead(store: ds.chunks, victim: plan.to.digests[3])
        let target = s.path("t")
        try save(a, target)
        try ImageWriter(source: source, workers: 2, cacheBytes: 1 << 20).apply(plan, target: target)
        #expect(try bytes(target) == b)
        #expect(source.reads.withLock { $0 } == 1, "read once")
        // A budget smaller than the changes (two chunks, one worker): the last chunk is beyond it,
        // read and verified again — and found changed before its write.
        let c = s.path("c")
        try save(a, c)
        let late = SwapOnSecondRead(store: ds.chunks, victim: plan.to.digests[5])
        #expect(throws: DatastoreError.self) { try ImageWriter(source: late, workers: 1, cacheBytes: 2 * cs).apply(plan, target: c) }
        #expect(late.reads.withLock { $0 } == 2)
        #expect(Array(try bytes(c)[(5 * cs)...]) == Array(a[(5 * cs)...]), "not written")
    }
}

/// Reads through a chunk store, but before the second read of `victim` flips a byte in its file,
/// as if the chunk had changed on disk between the verify pass and the write pass.
final class SwapOnSecondRead: ChunkSource {
    let store: ChunkStore
    let victim: ChunkDigest
    let reads = Mutex(0)
    init(store: ChunkStore, victim: ChunkDigest) { self.store = store; self.victim = victim }

    func read(digest: ChunkDigest, length: Int) throws(DatastoreError) -> [UInt8] {
        if digest == victim {
            let n = reads.withLock { $0 += 1; return $0 }
            if n == 2, var raw = try? bytes(store.path(of: digest)) {
                raw[raw.count - 1] ^= 0xFF
                try? save(raw, store.path(of: digest))
            }
        }
        return try store.read(digest: digest, length: length)
    }
}
