import ArgumentParser
import Foundation
import Logging
import ProxmoxAPI
import StandbyCore
import StandbyService
import StandbyStore

/// What `hold`, `resume`, `failover` and `adopt` share: config, the shared state store, PVE and
/// the guests the arguments name (backed-up VMIDs, target VMIDs or SOURCE:VMID; a list with any
/// argument that matches nothing or several guests is refused whole, exit 2).
struct GuestCommandContext {
    let config: StandbyConfig
    let store: StateStore
    let operations: GuestOperations
    let matches: [GuestSelector.Match]

    init(_ global: GlobalOptions, _ arguments: [String]) async throws {
        config = try loadConfig(global)
        store = try openStoreShared(config)
        operations = GuestOperations(config: config, client: ProxmoxClient(transport: try makeTransport(config)), store: store)
        let known = await operations.knownGuests()
        if known == nil { FileHandle.standardError.write(Data("warning: a source cannot be listed; guests are matched by the configured selection alone\n".utf8)) }
        do { matches = try GuestSelector.resolve(arguments, config: config, known: known) } catch { throw UsageError(message: error.message) }
    }

    /// Sets or clears a flag tag on each guest's proven copy in PVE; prints what changed.
    /// Returns false when PVE could not be changed for some guest (the state file still was).
    func mirror(_ tag: String, set: Bool, _ keys: [GuestKey]) async -> Bool {
        var ok = true
        for key in keys {
            do {
                let vmids = try await operations.mirror(tag, on: key, set: set)
                for vmid in vmids { print("  \(set ? "tagged" : "untagged") VMID \(vmid) '\(tag)' in PVE") }
                if vmids.isEmpty, set, try await operations.provenCopies(of: key).isEmpty {
                    print("  \(key): no copy in PVE to tag (the state file holds the flag)")
                }
            } catch {
                print("  \(key): not mirrored in PVE (the state file holds the flag): \(error)")
                ok = false
            }
        }
        return ok
    }

    /// Waits for restores that a pass began before the flag was written.
    func waitForRunning(_ keys: [GuestKey], timeout: Double) async -> Bool {
        let left = await operations.waitForRunningRestores(Set(keys), timeout: timeout) { h in
            print("  waiting for the running restore of \(h.source)/\(h.vmid) into \(h.targetVmid) (\(h.volid)) to end")
        }
        for h in left { print("  still running after \(Int(timeout)) s: restore of \(h.source)/\(h.vmid) (\(h.upid ?? "no UPID yet"))") }
        return left.isEmpty
    }
}
