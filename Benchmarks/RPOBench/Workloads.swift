import Foundation
import ProxmoxAPI
import ProxmoxSimulator

/// One guest of a workload.
struct BenchGuest {
    var vmid: Int
    var interval: Double
    var offset: Double
    var size: Int64
    var priority: Int = 0
    var rpoTarget: Double? = nil
}

/// A seeded, documented workload (issue 7).
struct Workload {
    var name: String
    var guests: [BenchGuest]
    var workers: Int
    var workerBytesPerSecond: Double = 300 * 1_048_576
    var backupBytesPerSecond: Double = 500 * 1_048_576

    static let gib: Double = 1_073_741_824

    /// (a) comfortable: 30 guests, every 4 h, offsets U[0, 4 h), sizes U[10, 100] GiB, 1 worker.
    static func a() -> Workload {
        var r = Rng(seed: 1)
        let guests = (0..<30).map { i in
            BenchGuest(vmid: 100 + i, interval: 4 * 3600, offset: r.uniform(0, 4 * 3600), size: Int64(r.uniform(10, 100) * gib))
        }
        return Workload(name: "a", guests: guests, workers: 1)
    }

    /// (b) mixed fleet: 200 guests, intervals 1 h / 4 h / 24 h (0.2 / 0.3 / 0.5), offsets U[0, I),
    /// sizes log-normal (median 20 GiB, σ = 1) clipped to [2 GiB, 2 TiB], 3 workers.
    static func b() -> Workload {
        var r = Rng(seed: 2)
        let guests = (0..<200).map { i -> BenchGuest in
            let u = r.uniform(0, 1)
            let interval = u < 0.2 ? 3600.0 : (u < 0.5 ? 4 * 3600.0 : 24 * 3600.0)
            let size = min(max(20 * exp(r.normal()), 2), 2048) * gib
            return BenchGuest(vmid: 100 + i, interval: interval, offset: r.uniform(0, interval), size: Int64(size))
        }
        return Workload(name: "b", guests: guests, workers: 3)
    }

    /// (c) overload: the guests of (b) with 1 worker; 10 hourly guests get priority and a 2 h RPO target.
    static func c() -> Workload {
        var w = b()
        w.name = "c"
        w.workers = 1
        var n = 0
        for i in w.guests.indices where w.guests[i].interval == 3600 && n < 10 {
            w.guests[i].priority = 10
            w.guests[i].rpoTarget = 7200
            n += 1
        }
        return w
    }

    /// The simulator scenario for this workload: every guest has one complete backup at the start.
    func scenario() -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs", datastore: "store")]
        s.targetStorages = [.init(id: "lvm", total: 1 << 50)]
        s.restoreBytesPerSecond = workerBytesPerSecond
        s.backupBytesPerSecond = backupBytesPerSecond
        s.keepLast = 3
        s.backedUp = guests.map {
            .init(vmid: $0.vmid, type: .vm, name: "g\($0.vmid)", storage: "pbs", disks: [$0.size], interval: $0.interval,
                  offset: $0.offset, history: 1)
        }
        return s
    }
}

/// Uniform and normal draws from the simulator's SplitMix64 (seeded: the workloads are the same
/// on every run).
struct Rng {
    var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(state: seed) }
    mutating func next() -> UInt64 { generator.next() }
    mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u1 = max(uniform(0, 1), 1e-12), u2 = uniform(0, 1)
        return sqrt(-2 * log(u1)) * cos(2 * .pi * u2)
    }
}
