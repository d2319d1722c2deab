import ProxmoxSimulator
import StandbyCore
import StandbyService

extension StandbyRuntime {
    /// The demo's configuration against the built-in scenario: one PBS source, two workers,
    /// short backoff so a failing guest is retried visibly.
    public static func demoConfig(scenario: Scenario, statePath: String) -> StandbyConfig {
        var c = StandbyConfig()
        c.proxmox.node = scenario.node
        c.proxmox.transport = .https
        c.statePath = statePath
        c.restore.workers = 2
        c.restore.pollInterval = .seconds(60)
        c.restore.rpoTarget = .seconds(2 * 3600)
        c.restore.backoff = [.seconds(300), .seconds(600), .seconds(900), .seconds(1800)]
        c.restore.retriesPerBackup = 3
        c.sources = scenario.pbsStorages.map { p in
            var s = StandbyConfig.Source(storage: p.id)
            s.targetStorage = scenario.targetStorages.first?.id
            // The simulator's real datastore (when the scenario has one): VM copies are then
            // brought up to date by delta restores; the writes run as children (no systemd here).
            s.datastorePath = scenario.datastoreDirectory
            s.datastoreNamespace = p.namespace ?? ""
            return s
        }
        c.restore.deltaDetach = false
        c.guests[101] = .init(priority: 10, rpoTarget: .seconds(1800), startAfterRestore: nil, targetStorage: nil)
        return c
    }
}
