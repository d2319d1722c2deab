import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbyStore

/// Workload (d) of issue 15: large VMs with frequent, small backups — where only a delta restore
/// can keep a standby fresh. 50 VMs of 500 GiB, a backup every 15 min (offsets U[0, 15 min)),
/// 0.5 % of the chunks changed per backup; a backup takes changed bytes ÷ 500 MiB/s + 30 s (PBS
/// dirty bitmaps read only what changed); 1 worker writing 300 MiB/s. Every guest starts with a
/// copy of its backup from one interval before the start (the bench measures keeping up, not the
/// first fill).
struct DeltaWorkload {
    static let changeRate = 0.005
    /// Seconds a delta spends besides writing: snapshot, content guard, marker, snapshot removal.
    static let deltaOverhead = 5.0
    /// Bytes per second `datastore apply` reads, decompresses and hashes chunks (about 1 GB/s on
    /// this 2-core machine, README "PBS datastore tools"; `--verify-mib-per-s`).
    nonisolated(unsafe) static var verifyBytesPerSecond = 1000.0 * 1_048_576
    /// Chunks verified in the first pass and kept for the write pass (`PBS_STANDBY_APPLY_CACHE_MIB`).
    static let applyCache = 256.0 * 1_048_576

    /// Seconds a delta of `bytes` changed bytes takes: the verify pass, the second read of what
    /// the cache could not keep, the writes, and the fixed overhead.
    static func deltaSeconds(_ bytes: Double, writeBytesPerSecond: Double) -> Double {
        bytes / verifyBytesPerSecond + max(0, bytes - applyCache) / verifyBytesPerSecond + bytes / writeBytesPerSecond + deltaOverhead
    }

    static func workload() -> Workload {
        var r = Rng(seed: 4)
        let size = 500 * Workload.gib
        let guests = (0..<50).map { i in BenchGuest(vmid: 400 + i, interval: 900, offset: r.uniform(0, 900), size: Int64(size)) }
        return Workload(name: "d", guests: guests, workers: 1)
    }

    /// Seconds one backup takes.
    static func backupSeconds(_ g: BenchGuest, _ w: Workload) -> Double { changeRate * Double(g.size) / w.backupBytesPerSecond + 30 }

    /// The scenario: backups of changed-bytes duration, and a marked copy of each guest.
    static func scenario(_ w: Workload, start: Double) -> Scenario {
        var s = w.scenario()
        for i in s.backedUp.indices { s.backedUp[i].backupSeconds = backupSeconds(w.guests[i], w) }
        s.existing = w.guests.map { g in
            let held = Self.backupBefore(g, start - g.interval)
            let marker = Marker.description(volid: Volid(storage: "pbs", type: .vm, vmid: g.vmid, backupTime: Int(held)), targetVmid: g.vmid,
                                            restoredAt: start - 60)
            return .init(vmid: g.vmid, type: .vm, name: "g\(g.vmid)", tags: [Marker.tag], description: marker, disks: [g.size])
        }
        return s
    }

    /// The schedule point of `g` at or before `t`.
    static func backupBefore(_ g: BenchGuest, _ t: Double) -> Double { ((t - g.offset) / g.interval).rounded(.down) * g.interval + g.offset }

    /// Lower bound of the mean age with delta restores (no queueing): I/2 + backup + one backup's delta.
    static func lowerDelta(_ w: Workload) -> Double {
        w.guests.map { g in g.interval / 2 + backupSeconds(g, w) + deltaSeconds(changeRate * Double(g.size), writeBytesPerSecond: w.workerBytesPerSecond) }
            .reduce(0, +) / Double(w.guests.count)
    }

    /// Lower bound of the mean age with full restores only (no queueing): I/2 + backup + a full restore.
    static func lowerFull(_ w: Workload) -> Double {
        w.guests.map { g in g.interval / 2 + backupSeconds(g, w) + Double(g.size) / w.workerBytesPerSecond }.reduce(0, +) / Double(w.guests.count)
    }
}

/// The delta executor as a model, for the benchmark only: it takes the time a delta of this size
/// would take on the engine's clock — the chunks changed since the copy's backup, 1 − (1 − rate)^k
/// of the disk after k backups, verified (twice beyond the cache) and written, plus a fixed
/// overhead (``DeltaWorkload/deltaSeconds(_:writeBytesPerSecond:)``) — then marks the
/// copy with the new backup as the real executor does. The real executor writes real bytes and is
/// proven by the tests (DeltaRestoreTests, DeltaCrashTests); this measures what the engine's
/// scheduling makes of restores that short.
struct ModelledDeltaExecutor: RestoreExecutor {
    let client: ProxmoxClient
    let clock: any EngineClock
    let node: String
    let intervals: [Int: Double]
    let bytesPerSecond: Double

    func restore(_ action: RestoreAction, historyID: Int64, started: Double, run: RestoreRun) async -> RestoreOutcome {
        guard let cfg = try? await client.guestConfig(node: node, type: .vm, vmid: action.targetVmid),
              let marker = Marker.parse(cfg.description) else { return .failure(reason: .markerMissing, message: "modelled delta: no marker") }
        let k = max(1, (Double(action.volid.backupTime - marker.volid.backupTime) / (intervals[action.key.vmid] ?? 900)).rounded())
        let fraction = 1 - pow(1 - DeltaWorkload.changeRate, k)
        let bytes = fraction * Double(action.backup.size)
        do { try await clock.sleep(DeltaWorkload.deltaSeconds(bytes, writeBytesPerSecond: bytesPerSecond)) } catch { return .interrupted("stopped") }
        let info = Marker.Info(volid: action.volid, targetVmid: action.targetVmid, restoredAt: iso8601(started), vmgenid: cfg.raw["vmgenid"])
        do {
            try await client.setGuestConfig(node: node, type: .vm, vmid: action.targetVmid,
                                            description: Marker.replacing(in: cfg.description, with: info), digest: cfg.digest)
        } catch { return .failure(reason: .apiError, message: "modelled delta: \(error)") }
        let chunks = Int(action.backup.size / (4 << 20))
        return .success(CopyFacts(vmgenid: info.vmgenid, delta: RestoreFacts(mode: "delta", bytesWritten: Int64(bytes),
                                                                            chunksChanged: Int(fraction * Double(chunks)), chunksTotal: chunks)))
    }

    func reattach(_ action: RestoreAction, upid: UPID, historyID: Int64, run: RestoreRun) async -> RestoreOutcome {
        .interrupted("a modelled delta has no task")
    }
}
