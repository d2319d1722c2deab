import BuildInfo
import Foundation
import Logging
import ProxmoxAPI
import ServiceLifecycle
import StandbyCore
import StandbyStore
import Synchronization

/// What every part of the engine shares: configuration, the PVE client, the state store and its
/// writer, the clock, the ownership prover and the event queue back to the loop.
struct EngineContext: Sendable {
    let config: StandbyConfig
    let client: ProxmoxClient
    let clock: any EngineClock
    let logger: Logger
    let observer: SlotObserver
    let writer: StateWriter
    let events: EventQueue
    let sink: (any RestoreEventSink)?
    var store: StateStore { writer.store }
    var node: String { config.proxmox.node }
}

/// The engine, a controller loop: **observe** (``observe(now:)``: what PVE and the state file
/// show, reads only) → **plan** (``planFleet(config:observation:inFlight:context:)``, pure, in
/// StandbyCore) → **act** (``act(_:observation:spawn:)``: side actions, then restores handed to
/// workers that run a ``RestoreExecutor`` and report back as ``EngineEvent``s). The loop is the
/// only writer of guest views and of the in-flight set; it wakes on events or the poll timer.
/// Runs as a `Service`.
public final class Reconciler: Service, Sendable {
    public let config: StandbyConfig
    let context: EngineContext
    /// Orders restore candidates; swappable so the RPO benchmark can compare policies.
    let schedulingPolicy: @Sendable ([RestoreCandidate]) -> [RestoreCandidate]
    /// Carries out restores, by the kind an action names.
    let executors: [ExecutorKind: any RestoreExecutor]
    /// The delta executor (also: open deltas after a restart, the indexes kept after a restore).
    let delta: DeltaExecutor
    /// This process's executable (`pbs-standby`, which writes a delta's disks as `datastore apply`).
    static var ownExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
    let state: Mutex<LoopState>
    /// Workers running now (parked or not), for the discrete-event driver.
    private let running = Atomic<Int>(0)
    /// The latest published snapshot.
    public let published: Mutex<StatusSnapshot>

    /// What only the loop writes.
    struct LoopState: Sendable {
        var inFlight: [GuestKey: InFlight] = [:]
        var sources: [String: StatusSnapshot.Source] = [:]
        var listings: [String: SourceListing] = [:]
        var queue: [GuestKey] = []
        var views: [GuestKey: StatusSnapshot.Guest] = [:]
        /// Rows of superseded backup groups (the other type of a VMID), shown after their guest.
        var supersededViews: [GuestKey: StatusSnapshot.Guest] = [:]
        /// The record each view's history was loaded for: history is re-read only when it changed.
        var historyFor: [GuestKey: GuestRecord] = [:]
        /// Position of each guest in the published snapshot (progress updates in place).
        var publishedIndex: [GuestKey: Int] = [:]
        /// Bytes per second observed in successful restores (exponentially smoothed).
        var throughput: Double = 300 * 1_048_576
        /// `once`: stop following a task after PVE was unreachable this long; nil in `run`.
        var unreachableGiveUp: Double?
        /// `once`: guests a restore was started for in this run (each at most once); nil in `run`.
        var startedThisOnce: Set<GuestKey>?
        /// Guests this process drills now (issue 16).
        var drilling: Set<GuestKey> = []
        /// Each guest's drills as the status shows them.
        var drillViews: [GuestKey: StatusSnapshot.Drill] = [:]
        /// Failover readiness of the last pass.
        var readiness: StatusSnapshot.Readiness?
        /// Drills ended since start, per source and result.
        var drillCounts: [String: [String: Int]] = [:]
        /// When ended drills were last pruned (`drill.history`).
        var drillsPrunedAt: Double = 0
        /// A graceful stop began: running drills abort and undo themselves, none starts.
        var drillsStopping = false
    }

    struct InFlight: Sendable {
        var volid: Volid
        var startedAt: Double
        var upid: UPID?
        var progress: Double = 0
    }

    /// Creates the engine.
    public init(config: StandbyConfig, client: ProxmoxClient, store: StateStore, clock: any EngineClock,
                logger: Logger = Logger(label: "pbs-standby.engine"), events: (any RestoreEventSink)? = nil,
                schedulingPolicy: @escaping @Sendable ([RestoreCandidate]) -> [RestoreCandidate] = SchedulingPolicy.order,
                executable: String? = nil, executorOverrides: [ExecutorKind: any RestoreExecutor] = [:]) {
        self.config = config
        self.schedulingPolicy = schedulingPolicy
        let queue = EventQueue()
        let observer = SlotObserver(client: client, store: store, adoptUnmarked: config.restore.adopt, node: config.proxmox.node,
                                    callerIsRoot: config.proxmox.transport == .pvesh)
        context = EngineContext(config: config, client: client, clock: clock, logger: logger, observer: observer,
                                writer: StateWriter(store: store, clock: clock, logger: logger, events: queue), events: queue, sink: events)
        let full = PVETaskExecutor(context: context)
        let stateDir = (config.statePath as NSString).deletingLastPathComponent
        // PBS_STANDBY_DELTA_EXECUTABLE: another pbs-standby (or a wrapper of it) for the disk writes.
        let writer = DeltaWriter(executable: executable ?? ProcessInfo.processInfo.environment["PBS_STANDBY_DELTA_EXECUTABLE"] ?? Self.ownExecutable,
                                 systemdRun: config.restore.deltaDetach ? config.proxmox.systemdRunPath : nil,
                                 directory: ((stateDir.isEmpty ? "." : stateDir) as NSString).appendingPathComponent("delta-runs"))
        delta = DeltaExecutor(context: context, full: full, writer: writer, keeper: IndexKeeper(statePath: config.statePath))
        executors = [.pveTask: full, .delta: delta].merging(executorOverrides) { $1 }
        state = Mutex(LoopState())
        published = Mutex(.initial(version: pbsStandbyVersion, startedAt: clock.now(), workers: config.restore.workers))
    }

    /// The latest snapshot.
    public var snapshot: StatusSnapshot { published.withLock { $0 } }

    /// Keys of restores running now.
    public var inFlightKeys: Set<GuestKey> { state.withLock { Set($0.inFlight.keys) } }

    /// Workers running now (the discrete-event driver waits until each is parked on the clock).
    public var workersRunning: Int { running.load(ordering: .acquiring) }

    /// Whether a restore ended since the last pass (the loop passes again at once).
    public var restoreFinished: Bool { context.events.hasFinished }

    /// Sources that refreshed at least once (readiness).
    public var anySourceRefreshed: Bool { state.withLock { $0.sources.values.contains { $0.lastRefreshAt != nil } } }

    // MARK: - Service

    /// Re-attaches to restores recorded as running, then passes every `poll_interval` — at once
    /// when a restore ended — until graceful shutdown. PVE tasks keep running on shutdown.
    public func run() async throws {
        // A discarding group: finished workers are freed at once (weeks of restores must not pile up).
        await withDiscardingTaskGroup { group in
            // Drills a crash or kill left open are undone before any restore (issue 16 §5).
            state.withLock { $0.drillsStopping = false }
            await finishInterruptedDrills()
            await reattach { group.addTask(operation: $0) }
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await pass { group.addTask(operation: $0) }
                // Wait for the poll interval or a finished restore; progress is published as it
                // comes; a graceful shutdown wakes the wait at once (systemd's stop timeout is
                // shorter than a poll interval may be).
                let until = context.clock.now() + config.restore.pollInterval.seconds
                await withGracefulShutdownHandler {
                    while !Task.isCancelled, !Task.isShuttingDownGracefully, !context.events.hasFinished {
                        let left = until - context.clock.now()
                        if left <= 0 { break }
                        await context.events.wait(upTo: left, clock: context.clock)
                        if context.events.hasFinished || applyEvents() { break }
                    }
                } onGracefulShutdown: { [events = context.events] in
                    events.emit(.shutdown)
                }
            }
            // Restores run on in PVE (re-attached at the next start); drills are undone first.
            if !Task.isCancelled { await stopDrills() }
            group.cancelAll()
        }
    }

    /// One pass and then waits for every restore it started (the `once` command). Returns whether
    /// every restore started succeeded and the state file took every write.
    ///
    /// `giveUpAfterUnreachable`: when PVE cannot be reached for this long while a task is followed,
    /// stop waiting for it (it runs on in PVE; the next `once` or `run` re-attaches to it).
    public func runOnce(giveUpAfterUnreachable: Double? = nil) async -> Bool {
        state.withLock {
            $0.unreachableGiveUp = giveUpAfterUnreachable
            $0.startedThisOnce = []
        }
        defer { state.withLock { $0.startedThisOnce = nil } }
        let before = Set(((try? context.store.allHistory()) ?? []).compactMap(\.id))
        await finishInterruptedDrills()
        await withTaskGroup(of: Void.self) { group in
            await reattach { group.addTask(operation: $0) }
            await pass { group.addTask(operation: $0) }
            // Guests queued behind busy workers get their turn as workers free up.
            while await group.next() != nil {
                if state.withLock({ !$0.queue.isEmpty }) { await pass { group.addTask(operation: $0) } }
            }
        }
        applyEvents()
        publish()
        let new = ((try? context.store.allHistory()) ?? []).filter { !before.contains($0.id ?? -1) }
        return new.allSatisfy { $0.result == "success" } && snapshot.service.stateWritable
    }

    // MARK: - Pass

    /// Observe → plan → act → publish. Restores start through `spawn` (a task group's addTask).
    public func pass(spawn: (@escaping @Sendable () async -> Void) -> Void) async {
        applyEvents()
        await resumeOpenDeltas(spawn: spawn)
        let now = context.clock.now()
        guard let observation = await observe(now: now) else {
            publish(loopAt: now)
            return
        }
        let (inFlight, planContext) = state.withLock { s in
            (Set(s.inFlight.keys), PlanContext(policy: schedulingPolicy, throughput: s.throughput, startedThisOnce: s.startedThisOnce,
                                               canClearLocks: config.proxmox.transport == .pvesh))
        }
        let plan = planFleet(config: config, observation: observation.core, inFlight: inFlight, context: planContext)
        await act(plan, observation: observation, spawn: spawn)
        await drillPass(plan, observation: observation, spawn: spawn)
        publish(loopAt: now)
    }

    /// Counts a worker in and out (see ``workersRunning``).
    func worker(_ body: @escaping @Sendable () async -> Void) -> @Sendable () async -> Void {
        running.add(1, ordering: .releasing)
        return { [self] in
            await body()
            running.subtract(1, ordering: .releasing)
        }
    }
}

/// Receives restore outcomes (the metric catalogue counts them).
public protocol RestoreEventSink: Sendable {
    func restoreSucceeded(source: String, type: GuestType, duration: Double, bytes: Int64, facts: RestoreFacts)
    /// A delta restore was not possible; PVE restored in full (`pbs_standby_delta_fallbacks_total`).
    func deltaFellBack(source: String, reason: String)
    /// A restore that succeeded with `TASK WARNINGS: N`.
    func restoreWarned(source: String, warnings: Int)
    func restoreFailed(source: String, reason: String)
    func sourceRefreshFailed(source: String)
}
