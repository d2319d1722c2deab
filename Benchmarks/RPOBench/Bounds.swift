import Foundation

/// Reference figures for a workload (documented in the README's Performance section).
enum Bounds {
    /// Lower bound of the mean age, no queueing: mean over guests of I/2 + backup duration + restore time.
    /// Assumes a restore starts the instant a backup completes and never waits for a worker.
    static func lower(_ w: Workload) -> Double {
        var total = 0.0
        for g in w.guests {
            let size = Double(g.size)
            total += g.interval / 2 + size / w.backupBytesPerSecond + size / w.workerBytesPerSecond
        }
        return total / Double(w.guests.count)
    }

    /// Capacity-aware bound: if guest g gets a new copy every T_g on average its mean age is at
    /// least T_g/2 + b_g + r_g, with T_g ≥ max(I_g, r_g) and Σ r_g/T_g ≤ workers. Minimising
    /// Σ T_g/2 under that constraint (Lagrange: T_g = max(L_g, √(2λ r_g)), λ by bisection) gives the
    /// best mean age any policy can reach with this capacity.
    static func capacityAware(_ w: Workload) -> Double {
        capacityAware(w, restore: w.guests.map { Double($0.size) / w.workerBytesPerSecond }, backup: w.guests.map { Double($0.size) / w.backupBytesPerSecond })
    }

    /// ``capacityAware(_:)`` with given restore and backup seconds per guest (workload d: deltas,
    /// backups of changed bytes).
    static func capacityAware(_ w: Workload, restore r: [Double], backup b: [Double]) -> Double {
        let low = zip(w.guests, r).map { max($0.interval, $1) }
        func periods(_ lambda: Double) -> [Double] { zip(low, r).map { max($0, (2 * lambda * $1).squareRoot()) } }
        func load(_ t: [Double]) -> Double { zip(r, t).map { $0 / $1 }.reduce(0, +) }
        var t = periods(0)
        if load(t) > Double(w.workers) {
            var lo = 0.0, hi = 1.0
            while load(periods(hi)) > Double(w.workers) { hi *= 2 }
            for _ in 0..<200 {
                let mid = (lo + hi) / 2
                if load(periods(mid)) > Double(w.workers) { lo = mid } else { hi = mid }
            }
            t = periods(hi)
        }
        var total = 0.0
        for i in 0..<w.guests.count { total += t[i] / 2 + b[i] + r[i] }
        return total / Double(w.guests.count)
    }
}
