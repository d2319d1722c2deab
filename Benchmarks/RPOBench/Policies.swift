import Foundation
import Logging
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore

/// Runs the real reconciler (planner, scheduling policy, queue, workers following PVE tasks)
/// against the in-process simulator on a discrete-event clock.
func runReconciler(_ w: Workload, policyName: String, policy: @escaping @Sendable ([RestoreCandidate]) -> [RestoreCandidate],
                   listingMax: Int64, start: Double, warmup: Double, days: Double, scenario: Scenario? = nil, delta: Bool = false,
                   bounds: (lower: Double, cap: Double)? = nil) async throws -> Result {
    let wallStart = Date()
    let manual = ManualClock(start: start)
    let clock = SteppedClock(manual)
    let sim = PVESimulator(scenario: scenario ?? w.scenario(), clock: manual)
    var config = StandbyConfig()
    config.proxmox.node = sim.scenario.node
    config.statePath = ":memory:"
    config.restore.workers = w.workers
    config.restore.pollInterval = .seconds(60)
    config.restore.listingMaxInterval = .seconds(max(60, listingMax))
    config.restore.taskTimeout = .seconds(30 * 86400)
    var source = StandbyConfig.Source(storage: "pbs")
    source.targetStorage = "lvm"
    source.delta = delta ? .auto : .off
    config.sources = [source]
    for g in w.guests where g.priority != 0 || g.rpoTarget != nil {
        config.guests[g.vmid] = .init(priority: g.priority, rpoTarget: g.rpoTarget.map { .seconds(Int64($0)) })
    }
    var logger = Logger(label: "rpo-bench")
    logger.logLevel = .critical
    let store = try StateStore()
    // Workload d's deltas: the modelled executor (WorkloadD.swift) in place of the real one.
    var overrides: [ExecutorKind: any RestoreExecutor] = [:]
    if delta {
        overrides[.delta] = ModelledDeltaExecutor(client: ProxmoxClient(transport: InProcessTransport(simulator: sim)), clock: clock,
                                                  node: sim.scenario.node, intervals: Dictionary(uniqueKeysWithValues: w.guests.map { ($0.vmid, $0.interval) }),
                                                  bytesPerSecond: w.workerBytesPerSecond)
    }
    let rt = StandbyRuntime(config: config, transport: InProcessTransport(simulator: sim), store: store, clock: clock,
                            logger: logger, schedulingPolicy: policy, executorOverrides: overrides)
    let end = start + warmup + days * 86400
    var recorder = AgeRecorder(measureStart: start + warmup)
    let priority = Set(w.guests.filter { $0.priority > 0 }.map(\.vmid))
    let reconciler = rt.reconciler

    func copies() -> [Int: Double?] {
        var out: [Int: Double?] = [:]
        for g in w.guests { out[g.vmid] = .some(nil) }
        for g in reconciler.snapshot.guests { out[g.key.vmid] = g.restored.map { Double($0.backupTime) } }
        return out
    }
    await SimulationDriver(reconciler: reconciler, clock: clock).run(until: end) { _, next in
        recorder.sample(to: next, copies: copies(), priority: priority)
    }
    let history = try store.allHistory()
    let successes = history.filter { $0.result == "success" }
    var result = Result(workload: w.name, policy: policyName, recorder: recorder, restores: history.count, redundant: 0,
                        bytes: successes.map { Double($0.bytesWritten ?? $0.bytes) }.reduce(0, +),
                        lower: bounds?.lower ?? Bounds.lower(w), cap: bounds?.cap ?? Bounds.capacityAware(w),
                        wall: Date().timeIntervalSince(wallStart))
    result.listingsPerHour = Double(reconciler.snapshot.sources.first?.listings ?? 0) / ((end - start) / 3600)
    return result
}

/// FIFO by backup time: the oldest waiting backup first, no priorities.
let fifoPolicy: @Sendable ([RestoreCandidate]) -> [RestoreCandidate] = { c in
    c.sorted { ($0.backupTime, $0.key) < ($1.backupTime, $1.key) }
}

/// The old cron script: every minute, if no pass is running, restore the newest complete backup of
/// every guest in VMID order, one after another, whether or not it changed. The guest has no
/// valid copy while it is being rewritten (the script destroyed it first).
func runOldScript(_ w: Workload, start: Double, warmup: Double, days: Double) -> Result {
    let wallStart = Date()
    let end = start + warmup + days * 86400
    let guests = w.guests.sorted { $0.vmid < $1.vmid }
    var copy: [Int: Double?] = [:]
    for g in guests { copy[g.vmid] = .some(nil) }
    var recorder = AgeRecorder(measureStart: start + warmup)
    let priority = Set(w.guests.filter { $0.priority > 0 }.map(\.vmid))
    var restores = 0, redundant = 0
    var bytes = 0.0
    var t = start
    func newest(_ g: BenchGuest, at t: Double) -> Double? {
        let b = Double(g.size) / w.backupBytesPerSecond
        var k = ((t - g.offset) / g.interval).rounded(.down)
        while k * g.interval + g.offset + b > t { k -= 1 }
        let time = k * g.interval + g.offset
        return time >= start - g.interval ? time : nil   // history: one backup before the start
    }
    while t < end {
        for g in guests where t < end {
            guard let backup = newest(g, at: t) else { continue }
            let r = Double(g.size) / w.workerBytesPerSecond
            recorder.sample(to: t, copies: copy, priority: priority)
            if case .some(.some(let c)) = copy[g.vmid], c == backup { redundant += 1 }
            copy[g.vmid] = .some(nil)
            t += r
            recorder.sample(to: min(t, end), copies: copy, priority: priority)
            copy[g.vmid] = backup
            restores += 1
            bytes += Double(g.size)
        }
        let nextMinute = (t / 60).rounded(.up) * 60
        recorder.sample(to: min(nextMinute, end), copies: copy, priority: priority)
        t = max(nextMinute, t + 1)
    }
    return Result(workload: w.name, policy: "old-script", recorder: recorder, restores: restores, redundant: redundant,
                  bytes: bytes, lower: Bounds.lower(w), cap: Bounds.capacityAware(w), wall: Date().timeIntervalSince(wallStart))
}
