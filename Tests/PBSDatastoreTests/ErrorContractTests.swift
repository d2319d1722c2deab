import Foundation
import PBSDatastore
import Testing

/// Exit codes 2 (usage, configuration) and 3 (data): what is refused, and that a refused
/// `apply` leaves the target's bytes exactly as they were.
@Suite("datastore error contract")
struct ErrorContractTests {
    let cs = 64 * 1024

    /// A (chunks of random and text data) and B = A with chunks 1 (random: plain blob),
    /// 5 (text: zstd blob) and the short last chunk 12 (random: plain blob) changed.
    func fixture(_ s: Scratch) throws -> (a: [UInt8], digests: [String]) {
        let size = 12 * cs + 999
        let a = image(size: size, chunkSize: cs, kinds: { $0 % 2 == 0 ? .text : .random }, seed: 11)
        var b = a
        b.replaceSubrange(cs..<(2 * cs), with: fill(.random, length: cs, seed: 70))
        b.replaceSubrange((5 * cs)..<(6 * cs), with: fill(.text, length: cs, seed: 71))
        b.replaceSubrange((12 * cs)..<size, with: fill(.random, length: 999, seed: 72))
        try writeSnapshot(s, "vm/100/\(t0)", chunkSize: cs, archives: [disk: a])
        let info = try writeSnapshot(s, "vm/100/\(t1)", chunkSize: cs, archives: [disk: b])[disk]!
        #expect(info.kinds[1] == "plain" && info.kinds[5] == "zstd" && info.kinds[12] == "plain")
        return (a, info.digests)
    }

    func applyArgs(_ s: Scratch, _ target: String) -> [String] {
        ["apply", "--datastore", s.datastore, "--archive", disk, "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", target]
    }

    /// Runs apply on a copy of A and checks exit 3, the message, and an untouched target.
    func expectRefusedApply(_ s: Scratch, _ a: [UInt8], mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let target = s.path("target-\(UUID().uuidString)")
        try save(a, target)
        let r = try datastoreCLI(applyArgs(s, target))
        #expect(r.status == 3, "\(r.stderr)", sourceLocation: sourceLocation)
        for m in mentions { #expect(r.stderr.contains(m), "stderr names \(m): \(r.stderr)", sourceLocation: sourceLocation) }
        #expect(try bytes(target) == a, "target untouched", sourceLocation: sourceLocation)
        // The last line says so (the service's delta writer keeps the copy only on this line).
        #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("apply: nothing was written"), "\(r.stderr)",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: [("bad-crc", 12, "CRC32 mismatch"), ("bad-digest", 12, "expected digest"), ("bad-digest", 5, "expected digest"),
                      ("missing", 12, "missing chunk"), ("truncated", 5, "zstd"), ("encrypted", 5, "encrypted chunks are not supported")])
    func corruptChunkIsADataErrorBeforeAnyWrite(how: String, chunk: Int, message: String) throws {
        let s = try Scratch()
        let (a, digests) = try fixture(s)
        try writerTool(["tamper-chunk", "--datastore", s.datastore, "--digest", digests[chunk], "--how", how])
        try expectRefusedApply(s, a, mentions: [message, "chunk \(chunk)", digests[chunk]])
        // restore: the newly created file is removed again.
        let fresh = s.path("fresh.img")
        let r = try datastoreCLI(["restore", "--datastore", s.datastore, "--archive", disk, "--snapshot", "vm/100/\(t1)", "--target", fresh])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fresh))
        // restore --overwrite: an existing file is left as it was.
        try save(a, fresh)
        let o = try datastoreCLI(["restore", "--datastore", s.datastore, "--archive", disk, "--snapshot", "vm/100/\(t1)",
                                  "--target", fresh, "--overwrite"])
        #expect(o.status == 3, "\(o.stderr)")
        #expect(try bytes(fresh) == a, "an existing file is left as it was")
    }

    @Test func targetSmallerThanImage() throws {
        let s = try Scratch()
        let (a, _) = try fixture(s)
        try expectRefusedApply(s, Array(a.dropLast(1)), mentions: ["too small"])
    }

    @Test func indexChecksumMustMatchTheManifest() throws {
        let s = try Scratch()
        let (a, _) = try fixture(s)
        let snap = ["--datastore", s.datastore, "--snapshot", "vm/100/\(t1)", "--archive", disk]
        try writerTool(["edit-manifest"] + snap + ["--csum", String(repeating: "ab", count: 32)])
        try expectRefusedApply(s, a, mentions: ["wrong index checksum", "index.json.blob"])
        let target = s.path("t.img")
        try save(a, target)
        #expect(try datastoreCLI(["verify"] + snap + ["--target", target]).status == 3)
        #expect(try datastoreCLI(["diff", "--datastore", s.datastore, "--archive", disk, "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"]).status == 3)
    }

    @Test func manifestSizeAndCryptModeAreChecked() throws {
        let s = try Scratch()
        let (a, _) = try fixture(s)
        let snap = ["--datastore", s.datastore, "--snapshot", "vm/100/\(t1)", "--archive", disk]
        try writerTool(["edit-manifest"] + snap + ["--size", "4096"])
        try expectRefusedApply(s, a, mentions: ["wrong size"])
        try writerTool(["edit-manifest"] + snap + ["--size", String(12 * cs + 999), "--crypt-mode", "encrypt"])
        try expectRefusedApply(s, a, mentions: ["encrypted chunks are not supported"])
    }

    @Test(arguments: ["digest-no-csum", "truncate"])
    func corruptIndexIsADataError(how: String) throws {
        let s = try Scratch()
        let (a, _) = try fixture(s)
        try writerTool(["tamper-index", "--datastore", s.datastore, "--snapshot", "vm/100/\(t1)", "--archive", disk, "--how", how])
        try expectRefusedApply(s, a, mentions: ["corrupt index", disk])
    }

    @Test func withoutManifestTheIndexAloneIsTrusted() throws {
        let s = try Scratch()
        let a = image(size: 4 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 4)
        let b = image(size: 4 * cs, chunkSize: cs, kinds: { _ in .random }, seed: 5)
        try writeSnapshot(s, "ct/7/\(t0)", chunkSize: cs, archives: [disk: a], manifest: false)
        try writeSnapshot(s, "ct/7/\(t1)", chunkSize: cs, archives: [disk: b], manifest: false)
        let target = s.path("t.img")
        try save(a, target)
        let r = try datastoreCLI(["apply", "--datastore", s.datastore, "--archive", disk, "--from", "ct/7/\(t0)", "--to", "ct/7/\(t1)", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try bytes(target) == b)
    }

    @Test func usageAndConfigurationErrorsExit2() throws {
        let s = try Scratch()
        _ = try fixture(s)
        let ds = s.datastore, t = s.path("t.img")
        let cases: [([String], String)] = [
            ([], "USAGE"),
            (["frobnicate"], "frobnicate"),
            (["diff", "--datastore", ds, "--archive", disk, "--from", "vm/100/\(t0)"], "--to"),
            (["diff", "--datastore", ds, "--archive", disk, "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--bogus"], "--bogus"),
            (["diff", "--datastore", ds, "--archive", disk, "--from", "vm/100", "--to", "vm/100/\(t1)"], "vm/100"),
            (["diff", "--datastore", ds, "--archive", disk, "--from", "qemu/100/\(t0)", "--to", "vm/100/\(t1)"], "qemu"),
            (["diff", "--datastore", ds, "--archive", "root.pxar.didx", "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"],
             "dynamic indexes (containers) are not supported"),
            (["diff", "--datastore", ds, "--archive", "../x.fidx", "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"], "archive"),
            (["diff", "--datastore", s.path("nope"), "--archive", disk, "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"], "not found"),
            (["diff", "--datastore", ds, "--archive", "drive-scsi9.img.fidx", "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)"], "not found"),
            (["diff", "--datastore", ds, "--archive", disk, "--from", "vm/100/2024-05-05T00:00:00Z", "--to", "vm/100/\(t1)"], "not found"),
            (["apply", "--datastore", ds, "--archive", disk, "--from", "vm/100/\(t0)", "--to", "vm/100/\(t1)", "--target", t], "not found"),
            (["verify", "--datastore", ds, "--archive", disk, "--snapshot", "vm/100/\(t1)", "--target", t], "not found"),
            (["restore", "--datastore", ds, "--archive", disk, "--snapshot", "vm/100/\(t1)"], "--target"),
            (["restore", "--datastore", ds, "--archive", disk, "--snapshot", "vm/100/\(t1)", "--target", s.path("no/dir/x.img")], "not found"),
            (["restore", "--datastore", ds, "--archive", disk, "--snapshot", "vm/100/\(t1)", "--target", s.url.path], "exists"),
            (["verify", "--datastore", ds, "--archive", disk, "--snapshot", "vm/100/\(t1)", "--target", t, "--overwrite"], "--overwrite"),
        ]
        for (args, mention) in cases {
            let r = try datastoreCLI(args)
            #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(mention), "\(args): stderr names \(mention): \(r.stderr)")
            #expect(r.stdout.isEmpty, "\(args): nothing on stdout")
        }
        let help = try datastoreCLI(["--help"])
        #expect(help.status == 0 && help.stdout.contains("apply"))
        let top = try runProcess(binary, ["--help"])
        #expect(top.stdout.contains("  datastore "))
    }
}
