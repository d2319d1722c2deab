import Foundation
import Logging
import ProxmoxAPI
import ProxmoxSimulator
import StandbyCore
import StandbyService
import StandbySimulation
import StandbyStore

/// The engine against the in-process simulator on virtual time: no test sleeps to wait for a
/// restore. Shared by the engine, safety and fault suites.
public final class Rig: @unchecked Sendable {
    public let clock: ManualClock
    public let simulator: PVESimulator
    public private(set) var runtime: StandbyRuntime
    public private(set) var store: StateStore
    public let dir: String
    private let makeRuntime: (StateStore) -> StandbyRuntime
    public let config: StandbyConfig

    public init(scenario: Scenario = Rig.scenario(), configure: (inout StandbyConfig) -> Void = { _ in }, storePath: String? = nil,
         busyTimeout: TimeInterval = 5, transport wrap: (any ProxmoxTransport) -> any ProxmoxTransport = { $0 },
         logLevel: Logger.Level = .warning) throws {
        clock = ManualClock(start: 1_795_000_000)
        simulator = PVESimulator(scenario: scenario, clock: clock)
        dir = NSTemporaryDirectory() + "pbs-standby-rig-\(UUID().uuidString)"
        var config = StandbyRuntime.demoConfig(scenario: scenario, statePath: storePath ?? dir + "/state.db")
        config.restore.workers = 2
        configure(&config)
        store = try StateStore(path: config.statePath, busyTimeout: busyTimeout)
        var logger = Logger(label: "pbs-standby.engine")
        logger.logLevel = logLevel
        let transport = wrap(InProcessTransport(simulator: simulator)), engineClock = clock, cfg = config
        // The delta executor writes disks with `pbs-standby datastore apply` (the built binary).
        let executable = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/pbs-standby").path
        makeRuntime = { store in StandbyRuntime(config: cfg, transport: transport, store: store, clock: engineClock, logger: logger, executable: executable) }
        runtime = makeRuntime(store)
        self.config = config
    }

    /// The state file is lost (moved aside, the documented recovery): a new service starts with
    /// an empty one against the same PVE.
    public func loseStateFile() throws {
        let path = dir + "/state-\(UUID().uuidString).db"
        store = try StateStore(path: path)
        runtime = makeRuntime(store)
    }

    /// The operations the CLI's hold/resume/failover/adopt use, over this rig's PVE and store.
    public var operations: GuestOperations { GuestOperations(config: config, client: runtime.client, store: store) }

    /// One `once`-style pass: plan, restore, follow to the end (virtual time advances).
    @discardableResult
    public func once(giveUpAfterUnreachable: Double? = nil) async -> Bool {
        await runtime.reconciler.runOnce(giveUpAfterUnreachable: giveUpAfterUnreachable)
    }

    public func mutations(vmid: Int) -> [JournalEntry] { simulator.journal().filter { $0.vmid == vmid } }
    public func restores(vmid: Int) -> [JournalEntry] { mutations(vmid: vmid).filter { $0.method == "POST" && ($0.path.hasSuffix("/qemu") || $0.path.hasSuffix("/lxc")) } }
    public func guest(_ vmid: Int) -> StatusSnapshot.Guest? { runtime.reconciler.snapshot.guests.first { $0.key.vmid == vmid } }

    public static let gib: Int64 = 1 << 30

    /// One PBS storage `pbs-prod` and a 4 TiB `local-lvm`, with these guests backed up.
    public static func scenario(backedUp: [Scenario.BackedUpGuest]) -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "s")]
        s.targetStorages = [.init(id: "local-lvm", total: 4 << 40)]
        s.backedUp = backedUp
        return s
    }

    /// 101 VM (ok), 201 CT (ok), 102 VM with a backup in progress only, 150 foreign running,
    /// 151 locked ours, 152 protected ours, 160 whose restores fail, 170 running foreign? no: ours running.
    public static func scenario() -> Scenario {
        var s = Scenario()
        s.pbsStorages = [.init(id: "pbs-prod", datastore: "store1")]
        s.targetStorages = [.init(id: "local-lvm", total: 4 << 40)]
        let start = 1_795_000_000.0
        s.backedUp = [
            .init(vmid: 101, type: .vm, name: "web1", storage: "pbs-prod", disks: [8 * gib], interval: 3600, offset: 0),
            .init(vmid: 201, type: .ct, name: "dns", storage: "pbs-prod", disks: [2 * gib], interval: 3600, offset: 600),
            .init(vmid: 102, type: .vm, name: "db", storage: "pbs-prod", disks: [40 * gib], interval: 3600,
                  offset: (start - 5).truncatingRemainder(dividingBy: 3600), history: 1),
            .init(vmid: 150, type: .vm, name: "foreign", storage: "pbs-prod", disks: [2 * gib], interval: 3600),
            .init(vmid: 151, type: .vm, name: "locked", storage: "pbs-prod", disks: [2 * gib], interval: 3600),
            .init(vmid: 152, type: .vm, name: "protected", storage: "pbs-prod", disks: [2 * gib], interval: 3600),
            .init(vmid: 160, type: .vm, name: "broken", storage: "pbs-prod", disks: [2 * gib], interval: 3600, restoreFails: true),
            .init(vmid: 170, type: .vm, name: "running", storage: "pbs-prod", disks: [2 * gib], interval: 3600),
        ]
        // Our copies (markers naming their own slot), each in an unsafe condition.
        func marker(_ vmid: Int) -> String { "pbs-standby: restored from pbs-prod:backup/vm/\(vmid)/2026-01-01T00:00:00Z into \(vmid) at 2026-01-01T00:00:00Z" }
        s.existing = [
            .init(vmid: 150, type: .vm, name: "foreign", status: "stopped", tags: ["manual"]),
            .init(vmid: 151, type: .vm, name: "locked", lock: "backup", tags: ["pbs-standby"], description: marker(151)),
            .init(vmid: 152, type: .vm, name: "protected", tags: ["pbs-standby"], description: marker(152), protection: true),
            .init(vmid: 170, type: .vm, name: "running", status: "running", tags: ["pbs-standby"], description: marker(170)),
        ]
        return s
    }
}
