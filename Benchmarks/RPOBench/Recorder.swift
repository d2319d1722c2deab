import Foundation

/// Samples every guest's standby age on a regular grid of simulated time.
/// Age = now − backup time of the copy on the standby; no copy counts as "guest-time without a copy".
struct AgeRecorder {
    let measureStart: Double
    let step: Double
    private(set) var ages: [Float] = []
    private(set) var priorityAges: [Float] = []
    private(set) var samples = 0
    private(set) var withoutCopy = 0
    private var nextGrid: Double

    init(measureStart: Double, step: Double = 60) {
        self.measureStart = measureStart
        self.step = step
        nextGrid = measureStart
    }

    /// Samples the grid points in [from, to) with the copies held constant over that span.
    mutating func sample(to: Double, copies: [Int: Double?], priority: Set<Int>) {
        while nextGrid < to {
            for (vmid, copy) in copies {
                samples += 1
                guard let c = copy else { withoutCopy += 1; continue }
                let age = Float(nextGrid - c)
                ages.append(age)
                if priority.contains(vmid) { priorityAges.append(age) }
            }
            nextGrid += step
        }
    }

    static func mean(_ a: [Float]) -> Double { a.isEmpty ? 0 : a.reduce(0.0) { $0 + Double($1) } / Double(a.count) }
    static func percentile(_ a: [Float], _ p: Double) -> Double {
        guard !a.isEmpty else { return 0 }
        let sorted = a.sorted()
        return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
    }
}

/// The figures of one workload × policy.
struct Result {
    var workload: String
    var policy: String
    var meanAge: Double
    var p95Age: Double
    var maxAge: Double
    var withoutCopyFraction: Double
    var restores: Int
    var redundant: Int
    var bytesRestored: Double
    var prioMean: Double
    var prioMax: Double
    var lowerBound: Double
    var capBound: Double
    var wallSeconds: Double
    /// Backup listings per simulated hour (the engine only; nil for the old script).
    var listingsPerHour: Double?

    init(workload: String, policy: String, recorder r: AgeRecorder, restores: Int, redundant: Int, bytes: Double,
         lower: Double, cap: Double, wall: Double) {
        self.workload = workload
        self.policy = policy
        meanAge = AgeRecorder.mean(r.ages)
        p95Age = AgeRecorder.percentile(r.ages, 0.95)
        maxAge = Double(r.ages.max() ?? 0)
        withoutCopyFraction = r.samples == 0 ? 0 : Double(r.withoutCopy) / Double(r.samples)
        self.restores = restores
        self.redundant = redundant
        bytesRestored = bytes
        prioMean = AgeRecorder.mean(r.priorityAges)
        prioMax = Double(r.priorityAges.max() ?? 0)
        lowerBound = lower
        capBound = cap
        wallSeconds = wall
    }
}
