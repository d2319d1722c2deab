import Foundation
import PBSDatastore
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// The simulator with real bytes: backups as PBS snapshots in `datastore_dir`, standby disks as
/// sparse files in `image_dir`, VM snapshots copying them. Driven in-process on a manual clock.
@Suite("Simulator images, datastore and snapshots")
struct SimulatorImagesTests {
    static let node = "pve-standby"
    static let mib: Int64 = 1 << 20

    /// A scratch directory with a datastore and an image directory, removed at the end.
    final class Bench: @unchecked Sendable {
        let root: URL
        let clock = ManualClock(start: 1_800_000_100)
        let sim: PVESimulator
        var datastore: String { root.appendingPathComponent("ds").path }
        var imageDir: String { root.appendingPathComponent("images").path }

        init(imageBytes: Int64 = 40 << 20, changeRate: Double = 0.2) {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("simimages-\(UUID().uuidString)")
            var s = Scenario()
            s.node = SimulatorImagesTests.node
            s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1", namespace: "prod/a")]
            s.targetStorages = [.init(id: "local-lvm", type: "lvmthin", total: 100 << 30),
                                .init(id: "dirstore", type: "dir", total: 100 << 30)]
            var g = Scenario.BackedUpGuest(vmid: 100, type: .vm, name: "web", storage: "pbs-prod", disks: [4 << 30], interval: 3600, history: 3)
            g.imageBytes = [imageBytes]
            g.changeRate = changeRate
            s.backedUp = [g]
            s.datastoreDirectory = root.appendingPathComponent("ds").path
            s.imageDirectory = root.appendingPathComponent("images").path
            sim = PVESimulator(scenario: s, clock: clock)
        }

        deinit { try? FileManager.default.removeItem(at: root) }

        /// The complete backups of VM 100, oldest first.
        func backups() throws -> [String] {
            guard case .ok(.array(let entries)) = sim.handle(.get, "/nodes/\(node)/storage/pbs-prod/content", []) else { throw Failure("no listing") }
            return entries.filter { $0["size"]?.int != 1 }.compactMap { $0["volid"]?.string }
        }

        /// Runs a call that answers a UPID, lets the task end; its exit status.
        @discardableResult
        func run(_ method: APIMethod, _ path: String, _ params: [(String, String)] = []) throws -> String {
            guard case .ok(.string(let upid)) = sim.handle(method, "/nodes/\(node)/\(path)", params) else { throw Failure("\(path): no UPID") }
            clock.advance(by: 60)
            guard case .ok(let st) = sim.handle(.get, "/nodes/\(node)/tasks/\(upid)/status", []), let exit = st["exitstatus"]?.string else {
                throw Failure("no task status")
            }
            return exit
        }

        /// The snapshot reference of a PBS volid on `pbs-prod` (namespace prod/a).
        func ref(_ volid: String) throws -> SnapshotRef {
            try SnapshotRef(parsing: String(volid.split(separator: "/", maxSplits: 1)[1]), namespace: "prod/a")
        }

        func config(_ vmid: Int) -> JSONValue? {
            guard case .ok(let c) = sim.handle(.get, "/nodes/\(node)/qemu/\(vmid)/config", []) else { return nil }
            return c
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// A full restore leaves the target file holding exactly the snapshot's image (the same bytes
    /// as the datastore library's restore), then zeros up to the LVM-rounded size; the content
    /// route answers the file; destroy removes it.
    @Test func restoreWritesTheImageAndTheContentRouteAnswersIt() throws {
        let b = Bench(imageBytes: 10 * Self.mib + 12_345)
        let newest = try #require(try b.backups().last)
        #expect(try b.run(.post, "qemu", [("vmid", "100"), ("archive", newest), ("storage", "local-lvm")]) == "OK")
        let file = b.imageDir + "/local-lvm/vm-100-disk-0.raw"
        let target = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(target.count == 12 << 20)  // 10 MiB + 12345 rounded up to 4 MiB extents

        let ds = try Datastore(path: b.datastore)
        let index = try ds.openFixedIndex(snapshot: try b.ref(newest), archive: "drive-scsi0.img.fidx")
        let expected = b.root.appendingPathComponent("expected.raw").path
        try ImageWriter(source: ds.chunks).restore(index, target: expected, overwrite: false)
        let image = try Data(contentsOf: URL(fileURLWithPath: expected))
        #expect(image.count == 10 << 20 + 12_345)
        #expect(target.prefix(image.count) == image)
        #expect(target.dropFirst(image.count).allSatisfy { $0 == 0 })
        let conf = try #require(try Manifest.load(snapshotDirectory: ds.directory(of: try b.ref(newest))))
        #expect(conf.file(named: "qemu-server.conf.blob") != nil)

        guard case .ok(let info) = b.sim.handle(.get, "/nodes/\(Self.node)/storage/local-lvm/content/local-lvm:vm-100-disk-0", []) else {
            throw Failure("content route failed")
        }
        #expect(info["path"]?.string == file && info["format"]?.string == "raw" && info["size"]?.int == 12 << 20 && info["used"]?.int == 0)
        guard case .ok(let pbsInfo) = b.sim.handle(.get, "/nodes/\(Self.node)/storage/pbs-prod/content/\(newest)", []) else {
            throw Failure("PBS content route failed")
        }
        #expect(pbsInfo["format"]?.string == "pbs-vm" && pbsInfo["path"]?.string?.hasPrefix("pbs://") == true)

        #expect(try b.run(.delete, "qemu/100") == "OK")
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    /// Consecutive backups differ in about `change_rate` of their chunks; the first has a zero chunk.
    @Test func consecutiveBackupsDifferByTheChangeRate() throws {
        let b = Bench(imageBytes: 40 << 20, changeRate: 0.2)
        let volids = try b.backups()
        #expect(volids.count >= 3)
        let ds = try Datastore(path: b.datastore)
        let indexes = try volids.map { try ds.openFixedIndex(snapshot: try b.ref($0), archive: "drive-scsi0.img.fidx") }
        #expect(indexes[0].isZeroChunk(1))
        for (a, c) in zip(indexes, indexes.dropFirst()) {
            let differing = (0..<a.chunkCount).filter { a.digests[$0] != c.digests[$0] }.count
            #expect((1...3).contains(differing), "10 chunks at 0.2 should change about 2, changed \(differing)")
        }
    }

    /// A snapshot on lvmthin copies the image, a rollback restores bytes and config (new
    /// vmgenid), a delete removes it; the tasks are listed and lock the VM as PVE does. On a
    /// `dir` storage the snapshot is refused with PVE's text.
    @Test func snapshotRollbackAndRefusalOnDir() throws {
        let b = Bench(imageBytes: 8 * Self.mib)
        let newest = try #require(try b.backups().last)
        #expect(try b.run(.post, "qemu", [("vmid", "100"), ("archive", newest), ("storage", "local-lvm")]) == "OK")
        let file = URL(fileURLWithPath: b.imageDir + "/local-lvm/vm-100-disk-0.raw")
        let original = try Data(contentsOf: file)
        let genid = b.config(100)?["vmgenid"]?.string

        guard case .ok(.string) = b.sim.handle(.post, "/nodes/\(Self.node)/qemu/100/snapshot", [("snapname", "s1"), ("description", "before")]) else {
            throw Failure("snapshot refused")
        }
        #expect(b.config(100)?["lock"]?.string == "snapshot")
        b.clock.advance(by: 10)
        #expect(b.config(100)?["lock"] == nil && b.config(100)?["parent"]?.string == "s1")
        try Data(repeating: 0xAB, count: 4096).write(to: file)
        let exit = try b.run(.post, "qemu/100/snapshot/s1/rollback")
        #expect(exit == "OK")
        #expect(try Data(contentsOf: file) == original)
        #expect(b.config(100)?["vmgenid"]?.string != genid)
        guard case .ok(.array(let list)) = b.sim.handle(.get, "/nodes/\(Self.node)/qemu/100/snapshot", []) else { throw Failure("no list") }
        #expect(list.map { $0["name"]?.string } == ["s1", "current"] && list[1]["parent"]?.string == "s1")
        #expect(try b.run(.delete, "qemu/100/snapshot/s1") == "OK")
        #expect(!FileManager.default.fileExists(atPath: b.imageDir + "/local-lvm/snap_vm-100-disk-0_s1.raw"))
        guard case .ok(.array(let tasks)) = b.sim.handle(.get, "/nodes/\(Self.node)/tasks", [("limit", "0")]) else { throw Failure("no tasks") }
        let types = Set(tasks.compactMap { $0["type"]?.string })
        #expect(types.isSuperset(of: ["qmsnapshot", "qmrollback", "qmdelsnapshot"]))

        // The same backup restored as VM 300 onto a dir storage (raw): no snapshots there.
        #expect(try b.run(.post, "qemu", [("vmid", "300"), ("archive", newest), ("storage", "dirstore")]) == "OK")
        #expect(FileManager.default.fileExists(atPath: b.imageDir + "/dirstore/vm-300-disk-0.raw"))
        #expect(try b.run(.post, "qemu/300/snapshot", [("snapname", "s1")]) == "snapshot feature is not available")
        guard case .error(let status, let message, _) = b.sim.handle(.post, "/nodes/\(Self.node)/qemu/300/snapshot", [("snapname", "current")]) else {
            throw Failure("reserved name accepted")
        }
        #expect(status == 500 && message == "unable to use snapshot name 'current' (reserved name)\n")
    }

    /// The YAML keys.
    @Test func yamlKeys() throws {
        let s = try Scenario.parse(yaml: """
            datastore_dir: /tmp/ds
            image_dir: /tmp/img
            pbs_storages:
              - id: pbs-prod
            backups:
              - vmid: 100
                disks_gib: [8, 16]
                image_bytes: [1048576, 2097152]
                change_rate: 0.1
              - vmid: 101
            """)
        #expect(s.datastoreDirectory == "/tmp/ds" && s.imageDirectory == "/tmp/img")
        #expect(s.backedUp[0].imageSize(ofDisk: 1) == 2_097_152 && s.backedUp[0].changeRate == 0.1)
        #expect(s.backedUp[1].imageSize(ofDisk: 0) == 16 << 20 && s.backedUp[1].changeRate == 0.02)
        #expect(throws: (any Error).self) { try Scenario.parse(yaml: "backups:\n  - vmid: 1\n    change_rate: 2\n") }
    }
}
