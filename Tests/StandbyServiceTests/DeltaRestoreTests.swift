import Crypto
import Foundation
import PBSDatastore
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
@testable import StandbyService
import StandbyStore
import TestSupport
import Testing

/// The delta executor in the service (issue 15): after a copy exists, a newer backup is brought
/// in by writing only the changed chunks from the simulator's real PBS datastore into the copy's
/// real image, byte for byte equal to a full restore; every fallback reason is exercised through
/// the engine; a corrupt chunk keeps the copy; an open delta left by a crash is run again.
/// The disk writes run `pbs-standby datastore apply` (the built binary) as a subprocess.
@Suite("Delta restore through the engine, against real images and a real datastore", .serialized)
struct DeltaRestoreTests {
    static let key = GuestKey(source: "pbs-prod", vmid: 101)

    /// A rig whose simulator writes a real datastore and real images under a temporary directory.
    static func rig(storageType: String = "lvmthin", imageBytes: Int64 = 24 << 20 + 123, changeRate: Double = 0.5,
                    withoutSnapshot: Bool = false, type: GuestType = .vm, disks: Int = 1, callerIsRoot: Bool = false,
                    configure: (inout StandbyConfig) -> Void = { _ in }) throws -> (Rig, String) {
        let dir = NSTemporaryDirectory() + "delta-rig-\(UUID().uuidString)"
        var s = Rig.scenario(backedUp: [.init(vmid: 101, type: type, name: "web1", storage: "pbs-prod", disks: Array(repeating: 4 * Rig.gib, count: disks),
                                              interval: 3600, history: 1)])
        s.targetStorages = [.init(id: "local-lvm", type: storageType, total: 4 << 40)]
        s.backedUp[0].imageBytes = [imageBytes]
        s.backedUp[0].changeRate = changeRate
        s.datastoreDirectory = dir + "/ds"
        s.imageDirectory = dir + "/images"
        s.callerIsRoot = callerIsRoot
        let rig = try Rig(scenario: s) { c in
            c.restore.backoff = [.seconds(60)]
            c.restore.deltaDetach = false
            for i in c.sources.indices {
                c.sources[i].targetStorage = "local-lvm"
                c.sources[i].datastorePath = dir + "/ds"
                c.sources[i].deltaWithoutSnapshot = withoutSnapshot
            }
            configure(&c)
        }
        return (rig, dir)
    }

    static func sha(_ path: String, bytes: Int) throws -> String {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        let data = try h.read(upToCount: bytes) ?? Data()
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// The image a full restore of `volid` writes (the datastore tool's restore, same code as PVE's stand-in).
    static func fullImage(_ dir: String, _ volid: String, disk: Int = 0) throws -> (path: String, size: Int) {
        let v = try #require(Volid(parsing: volid))
        let ds = try Datastore(path: dir + "/ds")
        let index = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: v.snapshot), archive: "drive-scsi\(disk).img.fidx")
        let out = dir + "/full-\(v.backupTime)-\(disk).img"
        try ImageWriter(source: ds.chunks).restore(index, target: out, overwrite: true)
        return (out, Int(index.size))
    }

    static func copyPath(_ rig: Rig, disk: Int = 0) async throws -> String {
        let info = try await rig.runtime.client.volumeInfo(node: rig.config.proxmox.node, volume: "local-lvm:vm-101-disk-\(disk)")
        return try #require(info.path)
    }

    static func last(_ rig: Rig) throws -> HistoryRecord { try #require(try rig.store.history(key, limit: 1).first) }

    /// The newest backup the engine lists for the guest.
    static func latest(_ rig: Rig) async throws -> Volid {
        let backups = try await rig.runtime.client.backups(node: rig.config.proxmox.node, storage: "pbs-prod", vmid: 101)
        return try #require(backups.filter(\.isComplete).max { $0.volid.backupTime < $1.volid.backupTime }?.volid)
    }

    /// What the executor writes before the first byte of a delta from `from` to `to` into the
    /// copy: the history row and the delta record, and with `mark` the copy's `rewriting` marker.
    /// Returns the history id.
    static func openDelta(_ rig: Rig, from: Volid, to: Volid, copy: String, mark: Bool) throws -> Int64 {
        guard case .started(let id) = try rig.store.beginRestore(key, targetVmid: 101, volid: to.description, bytes: 4 * Rig.gib, at: rig.clock.now()) else {
            throw CancellationError()
        }
        try rig.store.beginDelta(DeltaRecord(historyID: id, source: "pbs-prod", vmid: 101, targetVmid: 101, fromVolid: from.description,
                                             toVolid: to.description, disks: [DeltaDisk(drive: "scsi0", archive: "drive-scsi0.img.fidx",
                                             volume: "local-lvm:vm-101-disk-0", path: copy)], snapshot: nil, startedAt: rig.clock.now()))
        if mark {
            var marker = try #require(Marker.parse(rig.simulator.guestConfigSnapshot(101)?.description))
            marker.rewriting = to
            #expect(rig.simulator.adminSetDescription(vmid: 101, marker.line))
        }
        return id
    }

    /// The first copy (a full PVE restore), then a newer backup.
    static func copyThenNewBackup(_ rig: Rig) async throws {
        await rig.once()
        #expect(try last(rig).outcome == .success && last(rig).mode == "full")
        rig.clock.advance(by: 3600)
    }

    /// A delta: only changed chunks written, no restore POST, bytes equal to a full restore of the
    /// new backup (the image's short last chunk included), the snapshot taken and removed, the
    /// marker naming the new backup, metrics and status showing the delta.
    @Test func deltaEqualsAFullRestoreOfTheNewBackup() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let postsBefore = rig.restores(vmid: 101).count
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.outcome == .success, "\(h.error ?? "")")
        #expect(h.mode == "delta" && h.fallbackReason == nil, "\(h)")
        #expect(rig.restores(vmid: 101).count == postsBefore, "no PVE restore")
        let changed = try #require(h.chunksChanged), total = try #require(h.chunksTotal)
        #expect(changed > 0 && changed < total && total == 7, "24 MiB + 123 bytes: 6 full chunks and a short one")
        #expect(try #require(h.bytesWritten) <= Int64(changed) * (4 << 20))
        let (full, size) = try Self.fullImage(dir, h.volid)
        #expect(try Self.sha(try await Self.copyPath(rig), bytes: size) == Self.sha(full, bytes: size))
        let paths = rig.mutations(vmid: 101).map { "\($0.method) \($0.path)" }
        #expect(paths.contains { $0.hasPrefix("POST") && $0.hasSuffix("/snapshot") } && paths.contains { $0.hasPrefix("DELETE") && $0.contains("/snapshot/pbs-standby-delta") })
        let marker = try #require(Marker.parse(rig.simulator.guestConfigSnapshot(101)?.description))
        #expect(marker.volid.description == h.volid && marker.rewriting == nil)
        #expect(try rig.store.openDeltas().isEmpty)
        await rig.once()  // a pass with nothing to do refreshes the guest's view
        #expect(try rig.store.history(Self.key, limit: 10).filter { $0.volid == h.volid }.count == 1,
                "the copy's new marker is seen: the same backup is not restored again")
        let doc = String(decoding: StatusDocument(rig.runtime.reconciler.snapshot, now: rig.clock.now()).json(), as: UTF8.self)
        #expect(doc.contains("\"mode\":\"delta\"") && doc.contains("\"chunks_changed\":\(changed)"))
        let metrics = String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self)
        #expect(metrics.contains("pbs_standby_restored_bytes_written_total{source=\"pbs-prod\",mode=\"delta\"}"))
        #expect(metrics.contains("pbs_standby_delta_chunks_total{source=\"pbs-prod\",result=\"changed\"} \(changed)"))

        // And again: a third backup goes on from the second (the kept indexes and marker moved on).
        rig.clock.advance(by: 3600)
        await rig.once()
        let h3 = try Self.last(rig)
        #expect(h3.mode == "delta" && h3.volid != h.volid)
        let (full3, _) = try Self.fullImage(dir, h3.volid)
        #expect(try Self.sha(try await Self.copyPath(rig), bytes: size) == Self.sha(full3, bytes: size))
    }

    /// Each fallback reason the engine can meet here: PVE restores in full, the reason is kept
    /// and counted, and the copy is then equal to the new backup.
    @Test(arguments: ["touched_since_restore", "copy_modified", "no_snapshot", "old_index_missing", "chunk_missing", "config_changed", "no_datastore",
                      "layout_changed", "not_raw", "encrypted"])
    func fallbackRestoresInFull(reason: String) async throws {
        let (rig, dir) = try Self.rig(storageType: reason == "no_snapshot" ? "dir" : "lvmthin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let copy = try await Self.copyPath(rig)
        let v = try await Self.latest(rig), newVolid = v.description
        switch reason {
        case "touched_since_restore":
            #expect(rig.simulator.adminStart(vmid: 101) && rig.simulator.adminStop(vmid: 101))
        case "copy_modified":
            // A chunk that is the same in both backups, changed behind our back: the guard samples
            // every unchanged chunk of this small image.
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: copy))
            let ds = try Datastore(path: dir + "/ds")
            let oldVolid = try #require(Volid(parsing: try Self.last(rig).volid))
            let old = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: oldVolid.snapshot), archive: "drive-scsi0.img.fidx")
            let new = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: v.snapshot), archive: "drive-scsi0.img.fidx")
            let same = try #require((0..<old.chunkCount).first { old.digests[$0] == new.digests[$0] })
            try h.seek(toOffset: UInt64(same) * (4 << 20) + 100)
            h.write(Data("written by someone else".utf8))
            try h.close()
        case "old_index_missing":
            let oldVolid = try #require(Volid(parsing: try Self.last(rig).volid))
            try FileManager.default.removeItem(atPath: dir + "/ds/" + oldVolid.snapshot + "/drive-scsi0.img.fidx")
            try FileManager.default.removeItem(atPath: (rig.config.statePath as NSString).deletingLastPathComponent + "/delta-indexes")
        case "chunk_missing":
            let ds = try Datastore(path: dir + "/ds")
            let new = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: v.snapshot), archive: "drive-scsi0.img.fidx")
            let oldVolid = try #require(Volid(parsing: try Self.last(rig).volid))
            let old = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: oldVolid.snapshot), archive: "drive-scsi0.img.fidx")
            let i = try #require((0..<new.chunkCount).first { new.digests[$0] != old.digests[$0] && !new.isZeroChunk($0) })
            try FileManager.default.removeItem(atPath: ds.chunks.path(of: new.digests[i]))
        case "config_changed":
            let blob = dir + "/ds/" + v.snapshot + "/qemu-server.conf.blob"
            let text = (try #require(BackupConfigText.read(blob))) + "\nmemory: 8192\n"
            try Data(DataBlob.encodeUncompressed(Array(text.utf8))).write(to: URL(fileURLWithPath: blob))
        case "layout_changed":
            // A disk added to the copy by hand: the copy's disks no longer match the archives.
            #expect(rig.simulator.adminSetConfig(vmid: 101, key: "scsi1", "local-lvm:vm-101-disk-1,size=1G"))
        case "not_raw":
            try FileManager.default.removeItem(atPath: copy)  // e.g. an inactive LV: no device to open
        case "encrypted":
            // The new snapshot's manifest says its disk archive is encrypted.
            let path = dir + "/ds/" + v.snapshot + "/index.json.blob"
            let json = try #require(BackupConfigText.read(path)).replacingOccurrences(of: #""crypt-mode"\s*:\s*"none""#, with: #""crypt-mode": "encrypt""#,
                                                                                      options: .regularExpression)
            #expect(json.contains("encrypt"))
            try Data(DataBlob.encodeUncompressed(Array(json.utf8))).write(to: URL(fileURLWithPath: path))
        case "no_datastore":
            try FileManager.default.moveItem(atPath: dir + "/ds/.chunks", toPath: dir + "/chunks-elsewhere")
        default: break
        }
        await rig.once()
        let h = try Self.last(rig)
        if reason == "chunk_missing" || reason == "no_datastore" || reason == "encrypted" {
            // PVE's full restore reads the same datastore here: the simulator's task fails too.
            #expect(h.fallbackReason == nil || h.fallbackReason == reason)
        } else {
            #expect(h.outcome == .success && h.mode == "full" && h.fallbackReason == reason, "\(h)")
            let (full, size) = try Self.fullImage(dir, newVolid)
            #expect(try Self.sha(try await Self.copyPath(rig), bytes: size) == Self.sha(full, bytes: size))
        }
        #expect(String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self).contains("pbs_standby_delta_fallbacks_total{source=\"pbs-prod\",reason=\"\(reason)\"} 1"))
    }

    /// A container is never a delta (`not_vm`); an encrypted backup neither.
    @Test func containerFallsBackAsNotVM() async throws {
        let (rig, dir) = try Self.rig(type: .ct)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        await rig.once()
        #expect(try Self.last(rig).fallbackReason == "not_vm")
    }

    /// `delta_without_snapshot: true` on a storage without snapshots: the delta runs, no snapshot call.
    @Test func withoutSnapshotWhenAllowed() async throws {
        let (rig, dir) = try Self.rig(storageType: "dir", withoutSnapshot: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.mode == "delta", "\(h)")
        #expect(!rig.mutations(vmid: 101).contains { $0.path.contains("/snapshot") })
        let (full, size) = try Self.fullImage(dir, h.volid)
        #expect(try Self.sha(try await Self.copyPath(rig), bytes: size) == Self.sha(full, bytes: size))
    }

    /// A corrupt chunk in the datastore: nothing is written, the copy of the old backup is kept
    /// (no full restore that would free it), the failure is `source_corrupt`.
    @Test func corruptChunkKeepsTheCopy() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let copy = try await Self.copyPath(rig)
        let oldVolid = try Self.last(rig).volid
        let (oldFull, size) = try Self.fullImage(dir, oldVolid)
        let newVolid = try await Self.latest(rig)
        let ds = try Datastore(path: dir + "/ds")
        let new = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: newVolid.snapshot), archive: "drive-scsi0.img.fidx")
        let oldV = try #require(Volid(parsing: oldVolid))
        let old = try ds.openFixedIndex(snapshot: try SnapshotRef(parsing: oldV.snapshot), archive: "drive-scsi0.img.fidx")
        let i = try #require((0..<new.chunkCount).last { new.digests[$0] != old.digests[$0] && !new.isZeroChunk($0) })
        let chunk = ds.chunks.path(of: new.digests[i])
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: chunk)))
        bytes[bytes.count - 1] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: chunk))
        let posts = rig.restores(vmid: 101).count
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.outcome == .failure && (h.error ?? "").contains("kept"), "\(h)")
        #expect(rig.restores(vmid: 101).count == posts, "no full restore over the copy")
        #expect(try Self.sha(copy, bytes: size) == Self.sha(oldFull, bytes: size), "the copy is untouched")
        #expect(Marker.parse(rig.simulator.guestConfigSnapshot(101)?.description)?.rewriting == nil)
        #expect(String(decoding: rig.runtime.metrics.body().bytes, as: UTF8.self).contains("pbs_standby_restore_failures_total{source=\"pbs-prod\",reason=\"source_corrupt\"} 1"))
    }

    /// Crash safety: a delta recorded as open (the service died mid-write, half the chunks
    /// written) is run again at the next start from its record, and the bytes match.
    @Test func openDeltaIsRunAgainAfterACrash() async throws {
        let (rig, dir) = try Self.rig(storageType: "dir", withoutSnapshot: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let copy = try await Self.copyPath(rig)
        let from = try #require(Volid(parsing: try Self.last(rig).volid))
        let to = try await Self.latest(rig)
        // What the executor writes before its first byte: the history row, the record, the marker.
        let id = try Self.openDelta(rig, from: from, to: to, copy: copy, mark: true)
        // Half the changed chunks written by the writer that died.
        let ds = try Datastore(path: dir + "/ds")
        let plan = try DeltaPlan.diff(from: ds.openFixedIndex(snapshot: try SnapshotRef(parsing: from.snapshot), archive: "drive-scsi0.img.fidx"),
                                      to: ds.openFixedIndex(snapshot: try SnapshotRef(parsing: to.snapshot), archive: "drive-scsi0.img.fidx"))
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: copy))
        for i in plan.changed.prefix(max(1, plan.changed.count / 2)) {
            try file.seek(toOffset: UInt64(i) * plan.to.chunkSize)
            file.write(Data(try ds.chunks.read(digest: plan.to.digests[i], length: plan.to.length(ofChunk: i))))
        }
        try file.close()
        await rig.once()
        let all = try rig.store.allHistory()
        let h = try #require(all.first { $0.id == id })
        #expect(h.outcome == .success && h.mode == "delta", "\(h)")
        #expect(try rig.store.openDeltas().isEmpty)
        let (full, size) = try Self.fullImage(dir, to.description)
        #expect(try Self.sha(copy, bytes: size) == Self.sha(full, bytes: size))
        let after = try #require(Marker.parse(rig.simulator.guestConfigSnapshot(101)?.description))
        #expect(after.volid == to && after.rewriting == nil)
    }

    /// The old snapshot's index pruned from the datastore: the copy the service kept after the
    /// restore is used (`datastore apply --from-index`), and the delta still matches byte for byte.
    @Test func keptIndexOfAPrunedSnapshotStillGivesADelta() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let oldVolid = try #require(Volid(parsing: try Self.last(rig).volid))
        try FileManager.default.removeItem(atPath: dir + "/ds/" + oldVolid.snapshot + "/drive-scsi0.img.fidx")
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.mode == "delta", "\(h)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ds/" + oldVolid.snapshot + "/drive-scsi0.img.fidx"), "read from the kept copy")
        let (full, size) = try Self.fullImage(dir, h.volid)
        #expect(try Self.sha(try await Self.copyPath(rig), bytes: size) == Self.sha(full, bytes: size))
    }

    /// An open record that no longer matches the copy (its marker was never set to `rewriting`,
    /// or the copy holds another backup since) is ended without writing a byte; the restore then
    /// goes on as usual.
    @Test(arguments: [false, true])
    func staleOpenRecordIsEndedWithoutWriting(markerMovedOn: Bool) async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let copy = try await Self.copyPath(rig)
        let from = try #require(Volid(parsing: try Self.last(rig).volid)), to = try await Self.latest(rig)
        // A record naming another pair of backups than the marker shows (its attempt ended).
        let recordFrom = markerMovedOn ? Volid(parsing: "pbs-prod:backup/vm/101/2020-01-01T00:00:00Z")! : from
        let id = try Self.openDelta(rig, from: recordFrom, to: to, copy: copy, mark: false)
        try rig.store.finishRestore(id, result: .failure, error: "test", at: rig.clock.now())
        await rig.once()
        #expect(try rig.store.openDeltas().isEmpty, "the stale record is ended")
        let h = try Self.last(rig)
        #expect(h.outcome == .success && h.mode == "delta" && h.id != id, "\(h)")
        let (full, size) = try Self.fullImage(dir, to.description)
        #expect(try Self.sha(copy, bytes: size) == Self.sha(full, bytes: size))
    }

    /// An open delta whose copy was started meanwhile is not run again: a guest that ran wrote
    /// its disks. Nothing is written by a delta; the record ends, the copy keeps its `rewriting`
    /// marker (never taken as whole) and the next pass restores it in full with PVE.
    @Test func openDeltaOfAStartedCopyIsRestoredInFull() async throws {
        let (rig, dir) = try Self.rig(storageType: "dir", withoutSnapshot: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        let copy = try await Self.copyPath(rig)
        let from = try #require(Volid(parsing: try Self.last(rig).volid)), to = try await Self.latest(rig)
        let id = try Self.openDelta(rig, from: from, to: to, copy: copy, mark: true)
        rig.clock.advance(by: 5)
        #expect(rig.simulator.adminStart(vmid: 101) && rig.simulator.adminStop(vmid: 101))
        let before = try Self.sha(copy, bytes: 24 << 20)
        let posts = rig.restores(vmid: 101).count
        await rig.once()
        let h = try #require(try rig.store.historyRow(id))
        #expect(h.outcome == .skipped && (h.error ?? "").contains("cannot be finished"), "\(h)")
        #expect(try rig.store.openDeltas().isEmpty && rig.restores(vmid: 101).count == posts, "nothing written by a delta")
        #expect(try Self.sha(copy, bytes: 24 << 20) == before)
        #expect(Marker.parse(rig.simulator.guestConfigSnapshot(101)?.description)?.rewriting == to, "never taken as whole")
        rig.clock.advance(by: 60)
        await rig.once()
        let full = try Self.last(rig)
        #expect(full.outcome == .success && full.mode == "full" && full.fallbackReason == "old_index_missing", "\(full)")
        let (image, size) = try Self.fullImage(dir, to.description)
        #expect(try Self.sha(copy, bytes: size) == Self.sha(image, bytes: size))
    }

    /// A failed PVE restore leaves a config without our marker (§3.1 step 3): the next restore
    /// over it is a full one, `no_copy`.
    @Test func leftoverOfAFailedRestoreFallsBackAsNoCopy() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        #expect(rig.simulator.adminStart(vmid: 101) && rig.simulator.adminStop(vmid: 101))  // not a delta: touched
        rig.simulator.setRestoreFails(101, true)
        await rig.once()
        #expect(try Self.last(rig).outcome == .failure)
        rig.simulator.setRestoreFails(101, false)
        rig.clock.advance(by: 120)
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.outcome == .success && h.fallbackReason == "no_copy", "\(h)")
    }

    /// Two disks of different sizes: both written by their own `datastore apply`, both equal to a
    /// full restore of the new backup; the chunk counts add up over the disks.
    @Test func twoDisksInOneDelta() async throws {
        let (rig, dir) = try Self.rig(disks: 2)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        await rig.once()
        let h = try Self.last(rig)
        #expect(h.mode == "delta" && h.chunksTotal == 14, "\(h)")
        for disk in 0..<2 {
            let (full, size) = try Self.fullImage(dir, h.volid, disk: disk)
            #expect(try Self.sha(try await Self.copyPath(rig, disk: disk), bytes: size) == Self.sha(full, bytes: size), "disk \(disk)")
        }
    }

    /// `pbs-standby verify`'s check: every chunk of the copy against the backup its marker names —
    /// all match after a delta; a byte changed in the copy is found at its chunk.
    @Test func verifyFindsAChangedChunk() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        await rig.once()
        let verifier = CopyVerifier(operations: rig.operations)
        let good = await verifier.verify(Self.key)
        #expect(good.matches, "\(good)")
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: try await Self.copyPath(rig)))
        try h.seek(toOffset: 5 * (4 << 20) + 17)
        h.write(Data([0x42, 0x43]))
        try h.close()
        guard case .compared(let volid, 101, let disks) = await verifier.verify(Self.key) else { Issue.record("not compared"); return }
        #expect(volid == (try Self.last(rig).volid) && disks.map(\.mismatches) == [[5]] && disks.first?.chunks == 7)
    }

    /// `check-config --probe`'s line per guest: a delta with its changed chunks, or full and why.
    @Test func probeSaysDeltaOrFullAndWhy() async throws {
        let (rig, dir) = try Self.rig()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try #require(rig.config.sources.first)
        func explain(copy: Bool = true) async throws -> String {
            let backups = try await rig.runtime.client.backups(node: rig.config.proxmox.node, storage: "pbs-prod", vmid: 101)
            let newest = try #require(backups.filter(\.isComplete).max { $0.volid.backupTime < $1.volid.backupTime })
            return await DeltaProbe.explain(config: rig.config, client: rig.runtime.client, store: rig.store, source: source, vmid: 101,
                                            backup: newest, copyExists: copy)
        }
        #expect(try await explain(copy: false).hasPrefix("full: first copy"))
        try await Self.copyThenNewBackup(rig)
        let delta = try await explain()
        #expect(delta.hasPrefix("delta: ") && delta.contains("of 7 chunks changed"), "\(delta)")
        #expect(rig.simulator.adminStart(vmid: 101) && rig.simulator.adminStop(vmid: 101))
        #expect(try await explain().hasPrefix("full (touched_since_restore): task qm"))
    }

    /// Under pvesh (root@pam) the copy also carries PVE's `lock: rollback` while its disks are
    /// rewritten: a start from the GUI fails (`VM is locked (rollback)`). A delta left open by a
    /// crash is run again at the next start despite our own lock, which then goes.
    @Test func pveshLocksTheCopyWhileItIsRewritten() async throws {
        let (rig, dir) = try Self.rig(storageType: "dir", withoutSnapshot: true, callerIsRoot: true) { $0.proxmox.transport = .pvesh }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Self.copyThenNewBackup(rig)
        await rig.once()
        let locks = rig.mutations(vmid: 101).filter { $0.method == "PUT" && ($0.parameters["lock"] != nil || $0.parameters["delete"] == "lock") }
        #expect(locks.map { $0.parameters["lock"] ?? "-" } == ["rollback", "-"], "locked before the writes, unlocked with the final marker")
        #expect(locks.last?.parameters["skiplock"] == "1" && rig.simulator.guestSnapshot(101)?.lock == nil)
        #expect(try Self.last(rig).mode == "delta")
        // A crash mid-delta: record, marker and our lock stay; the GUI cannot start the copy.
        rig.clock.advance(by: 3600)
        let copy = try await Self.copyPath(rig)
        let from = try #require(Volid(parsing: try Self.last(rig).volid)), to = try await Self.latest(rig)
        _ = try Self.openDelta(rig, from: from, to: to, copy: copy, mark: true)
        rig.simulator.modifyGuest(101, lock: .some("rollback"))
        rig.simulator.adminStart(vmid: 101)
        #expect(rig.simulator.guestSnapshot(101)?.status == "stopped", "a locked copy does not start")
        await rig.once()
        #expect(try rig.store.openDeltas().isEmpty && rig.simulator.guestSnapshot(101)?.lock == nil)
        let (full, size) = try Self.fullImage(dir, to.description)
        #expect(try Self.sha(copy, bytes: size) == Self.sha(full, bytes: size))
    }
}

/// Reads a config blob as text (the test's own reader of the simulator's datastore).
enum BackupConfigText {
    static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), let bytes = try? DataBlob.decode([UInt8](data), path: path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// `datastore_path` detected when the PBS storage's server is this node (issue 15 "Configuration").
@Suite("Datastore detection from datastore.cfg")
struct DatastoreDetectionTests {
    @Test func parsesDatastoreCfgSections() {
        let text = """
        datastore: store1
        \tpath /mnt/datastore/store1
        \tgc-schedule daily

        datastore: usb
        \tpath usb-store
        \tbacking-device 4a1b-22cd

        datastore: broken
        \tcomment no path

        datastore: bucket
        \tpath /var/cache/bucket
        \tbackend type=s3,client=minio,bucket=pbs

        datastore: away
        \tpath /srv/away
        \tmaintenance-mode type=offline
        """
        #expect(DatastoreDetection.parse(text) == ["store1": "/mnt/datastore/store1", "usb": "/mnt/datastore/usb"])
    }

    @Test func pbsOnThisNodeIsFoundAndARemoteOneIsNot() async throws {
        let dir = NSTemporaryDirectory() + "ds-detect-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cfg = dir + "/datastore.cfg"
        try "datastore: store1\n\tpath \(dir)/store1\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        var s = Rig.scenario(backedUp: [])
        s.pbsStorages = [.init(id: "pbs-local", datastore: "store1", namespace: "prod", server: "127.0.0.1"),
                         .init(id: "pbs-remote", datastore: "store1", server: "pbs.example")]
        let rig = try Rig(scenario: s)
        var config = rig.config
        config.sources = [.init(storage: "pbs-local"), .init(storage: "pbs-remote")]
        let (resolved, notes) = await DatastoreDetection.resolve(config, client: rig.runtime.client, datastoreCfg: cfg)
        #expect(resolved.sources[0].datastorePath == dir + "/store1" && resolved.sources[0].datastoreNamespace == "prod")
        #expect(resolved.sources[0].deltaEnabled, "auto once a path is known")
        #expect(resolved.sources[1].datastorePath == nil && !resolved.sources[1].deltaEnabled)
        #expect(notes.contains { $0.contains("pbs-remote: PBS server pbs.example is not this node") }, "\(notes)")
    }
}

/// An inactive LVM-thin copy is activated as pve-storage does (`lvchange -ay -K VG/LV`) before a
/// delta opens it; anything else missing stays `not_raw`. Through a real subprocess (a stand-in
/// `lvchange` that creates the device node under a scratch /dev).
@Suite("Volume activation before a delta")
struct VolumeActivatorTests {
    @Test func inactiveThinVolumeIsActivated() throws {
        let root = NSTemporaryDirectory() + "lv-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/dev/pve", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let standin = root + "/lvchange"
        try """
        #!/bin/sh
        echo "$@" >> '\(root)/calls'
        [ "$1 $2" = "-ay -K" ] || { echo "unexpected $*" >&2; exit 5; }
        case "$3" in pve/missing) echo "Failed to find logical volume \\"$3\\"" >&2; exit 5 ;; esac
        : > '\(root)/dev/'"$3"
        """.write(toFile: standin, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: standin)
        let activator = VolumeActivator(lvchange: standin, devRoot: root + "/dev")
        #expect(activator.activate(path: root + "/dev/pve/vm-101-disk-0", storageType: "lvmthin") == nil)
        #expect(FileManager.default.fileExists(atPath: root + "/dev/pve/vm-101-disk-0"))
        #expect(activator.activate(path: root + "/dev/pve/vm-101-disk-0", storageType: "lvmthin") == nil, "active: no second call")
        #expect(try String(contentsOfFile: root + "/calls", encoding: .utf8) == "-ay -K pve/vm-101-disk-0\n")
        let failed = activator.activate(path: root + "/dev/pve/missing", storageType: "lvmthin")
        #expect(failed?.contains("activating LV 'pve/missing' failed (5): Failed to find logical volume") == true, "\(failed ?? "")")
        #expect(activator.activate(path: root + "/dev/vg/thick", storageType: "lvm")?.contains("not activated") == true)
    }
}
