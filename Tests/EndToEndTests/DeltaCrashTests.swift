import Foundation
import Testing

/// Crash safety of the delta restore through real processes (issue 15 "Crash safety"): the
/// service is killed with SIGKILL while a delta's disk write runs in its own process; after a
/// restart the delta ends — the write that outlived the service is taken (its status 0), or a
/// write killed too is run again — and the copy equals a full restore of the new backup.
@Suite("Delta restore: kill -9 of the service in the middle of a delta", .serialized)
struct DeltaCrashTests {
    @Test(arguments: [false, true])
    func killDuringADeltaThenRestart(killWriterToo: Bool) async throws {
        let root = NSTemporaryDirectory() + "delta-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let scenario = """
        node: pve-standby
        datastore_dir: \(root)/ds
        image_dir: \(root)/images
        pbs_storages: [{id: pbs-prod, datastore: store1}]
        target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}]
        backups:
          - {vmid: 300, type: vm, name: big, disks_gib: [4], interval: 1d, history: 1, image_bytes: 33554432, change_rate: 0.5}
        """
        let sim = try SimulatorProcess(scenario: scenario)
        defer { sim.stop() }
        // The disk writes go through a wrapper that announces itself and waits, so the kill
        // lands while the write runs.
        let wrapper = root + "/writer.sh"
        try """
        #!/bin/sh
        echo "$$ $PPID" > '\(root)/writer.tmp' && mv '\(root)/writer.tmp' '\(root)/writer.started'
        sleep 3
        exec '\(binary)' "$@"
        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper)
        let state = root + "/state/state.db"
        let config = try sim.config(statePath: state, settings: """
            restore:
              workers: 1
              poll_interval: 1s
              listing_max_interval: 1s
              delta_detach: false
            sources:
              - storage: pbs-prod
                target_storage: local-lvm
                datastore_path: \(root)/ds
            """)
        let port = Int.random(in: 55001...59000)
        func startService() throws -> Process {
            try serviceProcess(config: config, port: port, log: root + "/service-\(UUID().uuidString).log",
                               environment: ProcessInfo.processInfo.environment.merging(["PBS_STANDBY_DELTA_EXECUTABLE": wrapper]) { $1 })
        }
        /// The services' logs (shown when an expectation fails).
        func logs() -> String {
            ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { $0.hasPrefix("service-") }
                .compactMap { try? String(contentsOfFile: root + "/" + $0, encoding: .utf8) }.joined(separator: "\n---\n")
        }
        func history() -> [[String: Any]] {
            guard let body = curl("http://127.0.0.1:\(port)/api/v1/guests/300"),
                  let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
            return (o["history"] as? [[String: Any]]) ?? []
        }
        let first = try startService()
        defer { if first.isRunning { first.terminate(); first.waitUntilExit() } }
        // The first copy: PVE's full restore (simulated time must run for its task to end).
        sim.startTicking(step: 30)
        var full = false
        for _ in 0..<200 where !full {
            full = history().contains { $0["result"] as? String == "success" && $0["mode"] as? String == "full" }
            if !full { try await Task.sleep(for: .milliseconds(100)) }
        }
        await sim.stopTicking()
        #expect(full, "the first copy was restored")
        // A newer backup: the delta starts; kill -9 once its writer runs.
        sim.advance(86400 + 120)  // the next daily backup, complete (4 GiB at 500 MiB/s); no other comes during the test
        sim.startTicking(step: 5)  // the snapshot task before the delta's first write must end
        for _ in 0..<300 where !FileManager.default.fileExists(atPath: root + "/writer.started") { try await Task.sleep(for: .milliseconds(50)) }
        #expect(FileManager.default.fileExists(atPath: root + "/writer.started"), "\(history())\n\(logs())")
        let started = try String(contentsOfFile: root + "/writer.started", encoding: .utf8).split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int32($0) }
        #expect(started.count == 2, "the delta's writer started")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        if killWriterToo { for pid in started { kill(pid, SIGKILL) } }
        try FileManager.default.removeItem(atPath: root + "/writer.started")
        // Restart: the delta ends as a success, from the write that went on or from a new one.
        let second = try startService()
        defer { second.terminate(); second.waitUntilExit() }
        var delta: [String: Any]?
        for _ in 0..<300 where delta == nil {
            delta = history().first { $0["mode"] as? String == "delta" && $0["result"] as? String == "success" }
            if delta == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        await sim.stopTicking()
        let d = try #require(delta, "the delta ended after the restart: \(history())\n\(logs())")
        let volid = try #require(d["volid"] as? String)
        #expect(history().filter { $0["volid"] as? String == volid }.count == 1, "one attempt, resumed — not a second one")
        #expect(FileManager.default.fileExists(atPath: root + "/writer.started") == killWriterToo, "a killed write is run again; one that went on is not")
        // The copy equals a full restore of the new backup.
        let snapshot = String(volid.split(separator: ":", maxSplits: 1)[1].dropFirst("backup/".count))
        let fullImage = root + "/full.img"
        let (rc, _, err) = try run(["datastore", "restore", "--datastore", root + "/ds", "--snapshot", snapshot,
                                    "--archive", "drive-scsi0.img.fidx", "--target", fullImage])
        #expect(rc == 0, "\(err)")
        let copy = try FileHandle(forReadingFrom: URL(fileURLWithPath: root + "/images/local-lvm/vm-300-disk-0.raw"))
        let copied = try copy.read(upToCount: 33_554_432) ?? Data()
        try copy.close()
        #expect(copied == (try Data(contentsOf: URL(fileURLWithPath: fullImage))), "the copy holds the new backup byte for byte")
        // `pbs-standby verify` agrees, then finds a byte changed in the copy.
        let (vrc, vout, verr) = try run(["verify", "300", "--config.file", config])
        #expect(vrc == 0 && vout.contains("8 chunks, ok"), "\(vout)\(verr)")
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: root + "/images/local-lvm/vm-300-disk-0.raw"))
        try h.seek(toOffset: 3 * (4 << 20))
        h.write(Data([1, 2, 3]))
        try h.close()
        let (brc, bout, _) = try run(["verify", "300", "--config.file", config])
        #expect(brc == 1 && bout.contains("MISMATCH in 1 chunks: 3"), "\(bout)")
        // `check-config --probe` says the next restore of that changed copy would be a full one, and why.
        let (prc, pout, perr) = try run(["check-config", "--probe", "--config.file", config])
        #expect(prc == 0 && pout.contains("next restore: full (copy_modified): local-lvm:vm-300-disk-0: chunk 3"), "\(pout)\(perr)")
    }

    /// `check-config --probe` with a PBS storage whose server is this node and no datastore_path:
    /// the datastore directory comes from datastore.cfg (`PBS_STANDBY_DATASTORE_CFG` stands in for
    /// /etc/proxmox-backup/datastore.cfg).
    @Test func checkConfigDetectsTheDatastoreOfALocalPBS() throws {
        let root = NSTemporaryDirectory() + "ds-detect-e2e-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sim = try SimulatorProcess(scenario: """
            node: pve-standby
            pbs_storages: [{id: pbs-prod, datastore: store1, server: 127.0.0.1}]
            target_storages: [{id: local-lvm, type: lvmthin, total_gib: 4000}]
            backups:
              - {vmid: 300, type: vm, name: big, disks_gib: [4], interval: 1h}
            """)
        defer { sim.stop() }
        let cfg = root + "/datastore.cfg"
        try "datastore: store1\n\tpath \(root)/store1\n\tgc-schedule daily\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        let config = try sim.config(statePath: root + "/state.db")
        let (rc, out, err) = try run(["check-config", "--probe", "--config.file", config], env: ["PBS_STANDBY_DATASTORE_CFG": cfg])
        #expect(rc == 0 && out.contains("probe: datastore detection: pbs-prod: datastore 'store1' at \(root)/store1 (PBS on this node)"), "\(out)\(err)")
        #expect(out.contains("next restore: full: first copy"), "\(out)")
    }
}
