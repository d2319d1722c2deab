import Foundation
import MicroHTTP
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// The simulator's model of what an operator does outside the API token (create, clone, migrate,
/// retag, roll back, reboot) and of what PVE shows about it: `vmgenid`, `onboot`, the guest's
/// node, and the node's task list (reference §3.1, §4, §5, §6, §13.5).
@Suite("Simulator: operator actions, vmgenid, onboot, nodes, task list")
struct SimulatorAdminTests {
    let node = "pve-standby"

    /// The contract scenario plus 103, a VM whose backups have `onboot: 0`.
    static func scenario() -> Scenario {
        var s = Harness.scenario()
        s.backedUp.append(.init(vmid: 103, type: .vm, name: "batch", storage: "pbs-prod", disks: [2 * Harness.gib],
                                interval: 3600, offset: 1200, onboot: false))
        return s
    }

    static func make() -> (PVESimulator, ManualClock) {
        let clock = ManualClock(start: Harness.start)
        return (PVESimulator(scenario: scenario(), clock: clock), clock)
    }

    // MARK: helpers

    @discardableResult
    func ok(_ sim: PVESimulator, _ method: APIMethod, _ path: String, _ params: [(String, String)] = [],
            sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue {
        switch sim.handle(method, path, params) {
        case .ok(let v): return v
        case .error(let status, let message, let errors):
            Issue.record("\(method.rawValue) \(path) failed: \(status) \(message) \(errors)", sourceLocation: sourceLocation)
            throw SimulatorError("call failed")
        }
    }

    func failure(_ sim: PVESimulator, _ method: APIMethod, _ path: String, _ params: [(String, String)] = []) -> (Int, String)? {
        if case .error(let status, let message, _) = sim.handle(method, path, params) { return (status, message) }
        return nil
    }

    func config(_ sim: PVESimulator, _ vmid: Int, _ type: GuestType = .vm) throws -> JSONValue {
        try ok(sim, .get, "/nodes/\(node)/\(type.apiType)/\(vmid)/config")
    }

    /// The newest complete backup of `vmid`.
    func latest(_ sim: PVESimulator, _ vmid: Int) throws -> String {
        let list = try ok(sim, .get, "/nodes/\(node)/storage/pbs-prod/content", [("vmid", String(vmid))])
        let volid = list.array?.filter { ($0["size"]?.int ?? 0) > 1 }.last?["volid"]?.string
        return try #require(volid)
    }

    /// Restores the newest backup of `vmid` over (force) and lets the task finish; returns the UPID.
    @discardableResult
    func restore(_ sim: PVESimulator, _ clock: ManualClock, _ vmid: Int, type: GuestType = .vm,
                 extra: [(String, String)] = []) throws -> UPID {
        var params: [(String, String)] = [("vmid", String(vmid)), ("force", "1"), ("storage", "local-lvm")]
        params += type == .vm ? [("archive", try latest(sim, vmid))] : [("ostemplate", try latest(sim, vmid)), ("restore", "1")]
        let answer = try ok(sim, .post, "/nodes/\(node)/\(type.apiType)", params + extra)
        clock.advance(by: 3600)
        return try #require(answer.string.flatMap(UPID.init(parsing:)))
    }

    func taskList(_ sim: PVESimulator, _ params: [(String, String)]) throws -> [JSONValue] {
        try ok(sim, .get, "/nodes/\(node)/tasks", params).array ?? []
    }

    /// Lower-case 8-4-4-4-12, version 4, RFC 4122 variant.
    static func isUUID(_ s: String) -> Bool {
        s.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/) != nil
    }

    // MARK: restore (§3.1)

    /// §3.1 step 2: every VM restore writes a new vmgenid; `onboot` comes from the backup's config
    /// unless the restore passes it (an override key); VM override tags are stored as given
    /// (§13.5), a CT's normalised (§5.3).
    @Test func restoreGivesANewVMGenIDAndTakesOnbootFromTheBackupOrTheOverride() throws {
        let (sim, clock) = Self.make()
        try restore(sim, clock, 101)
        let first = try config(sim, 101)
        let id1 = try #require(first["vmgenid"]?.string)
        #expect(Self.isUUID(id1), "UUID format: \(id1)")
        #expect(first["onboot"]?.int == 1, "the backup's onboot (the default, on)")
        #expect(sim.guestConfigSnapshot(101)?.onboot == true)

        try restore(sim, clock, 101, extra: [("onboot", "0"), ("tags", "Zeta;alpha")])
        let second = try config(sim, 101)
        let id2 = try #require(second["vmgenid"]?.string)
        #expect(id2 != id1, "a new vmgenid on every restore")
        #expect(second["onboot"] == nil, "the override onboot=0 is stored")
        #expect(second["tags"]?.string == "Zeta;alpha", "VM override tags as given (§13.5)")

        try restore(sim, clock, 103)
        #expect(try config(sim, 103)["onboot"] == nil, "backup with onboot off")
        try restore(sim, clock, 103, extra: [("onboot", "1")])
        #expect(try config(sim, 103)["onboot"]?.int == 1, "override onboot=1")

        try restore(sim, clock, 201, type: .ct, extra: [("tags", "B;a")])
        let ct = try config(sim, 201, .ct)
        #expect(ct["vmgenid"] == nil, "containers have no vmgenid")
        #expect(ct["tags"]?.string == "a;b", "CT tags normalised")

        // Reproducible: the same scenario gives the same ids.
        let (again, clock2) = Self.make()
        try restore(again, clock2, 101)
        #expect(again.guestConfigSnapshot(101)?.vmgenid == id1)

        #expect(failure(sim, .post, "/nodes/\(node)/qemu", [("vmid", "101"), ("archive", try latest(sim, 101)), ("force", "1"), ("onboot", "maybe")])?.0 == 400)
    }

    /// §3.1 step 3: a failed forced VM restore leaves the temporary config: no vmgenid, no onboot.
    @Test func aFailedForcedRestoreLeavesTheTemporaryConfig() throws {
        let (sim, clock) = Self.make()
        try restore(sim, clock, 101)
        #expect(sim.guestConfigSnapshot(101)?.vmgenid != nil)
        sim.setRestoreFails(101, true)
        let upid = try restore(sim, clock, 101)
        let status = try ok(sim, .get, "/nodes/\(node)/tasks/\(upid)/status")
        #expect(status["exitstatus"]?.string != "OK")
        let c = try config(sim, 101)
        #expect(c["vmgenid"] == nil && c["onboot"] == nil && c["memory"]?.string == "128")
    }

    // MARK: operator actions

    /// A clone copies tags, description, disks and onboot, gets a new vmgenid, and is listed as a
    /// `qmclone` task of root@pam under the source VMID — and is not in the journal.
    @Test func aCloneIsAnOperatorTaskUnderTheSourceVMID() throws {
        let (sim, _) = Self.make()
        #expect(sim.adminCreate(vmid: 300, type: .vm, name: "tmpl", tags: ["Web", "pbs-standby"],
                                description: "pbs-standby: restored from somewhere", onboot: true))
        #expect(!sim.adminCreate(vmid: 150, type: .vm), "VMID in use")
        #expect(sim.adminClone(from: 300, to: 301))
        #expect(!sim.adminClone(from: 300, to: 301), "target in use")
        #expect(!sim.adminClone(from: 999, to: 302), "no source")
        let src = try #require(sim.guestConfigSnapshot(300)), copy = try #require(sim.guestConfigSnapshot(301))
        #expect(copy.type == .vm && copy.tags == ["pbs-standby", "web"] && copy.tags == src.tags)
        #expect(copy.description == src.description && copy.onboot && copy.status == "stopped" && copy.node == node)
        #expect(copy.vmgenid != nil && copy.vmgenid != src.vmgenid)
        #expect(try config(sim, 301)["name"]?.string == "Copy-of-tmpl")

        let clones = try taskList(sim, [("vmid", "300"), ("typefilter", "qmclone")])
        #expect(clones.count == 1)
        #expect(clones.first?["user"]?.string == "root@pam" && clones.first?["tokenid"] == nil)
        #expect(clones.first?["status"]?.string == "OK" && clones.first?["starttime"]?.int == Int(Harness.start))
        #expect(sim.tasksFor(vmid: 300).map(\.type) == ["qmcreate", "qmclone"])
        #expect(sim.tasksFor(vmid: 301).isEmpty, "the clone task carries the source VMID")
        #expect(sim.journal().isEmpty, "operator actions are not API calls of the service")

        // Destroy and roll back: tasks by root@pam; a rollback changes the vmgenid and the digest.
        let digest = try config(sim, 300)["digest"]?.string
        #expect(sim.adminSnapshotRollback(vmid: 300))
        #expect(sim.guestConfigSnapshot(300)?.vmgenid != src.vmgenid)
        #expect(try config(sim, 300)["digest"]?.string != digest)
        #expect(sim.adminStart(vmid: 301))
        #expect(!sim.adminDestroy(vmid: 301), "running: destroy refused (§5.4)")
        #expect(sim.adminStop(vmid: 301) && sim.adminDestroy(vmid: 301))
        #expect(sim.guestConfigSnapshot(301) == nil)
        #expect(sim.tasksFor(vmid: 301).map(\.type) == ["qmstart", "qmstop", "qmdestroy"])
        #expect(sim.tasksFor(vmid: 301).allSatisfy { $0.user == "root@pam" })
    }

    /// A guest migrated to another node keeps its VMID cluster-wide (§6) but has no config under
    /// this node (§5.2); `/cluster/resources` lists it with the other node (§5.1).
    @Test func aGuestMigratedAwayIsListedWithTheOtherNodeOnly() throws {
        let (sim, _) = Self.make()
        #expect(sim.adminMigrateAway(vmid: 150, toNode: "pve-prod"))
        let missing = failure(sim, .get, "/nodes/\(node)/qemu/150/config")
        #expect(missing?.0 == 500 && missing?.1 == "Configuration file 'nodes/\(node)/qemu-server/150.conf' does not exist\n")
        #expect(failure(sim, .get, "/nodes/\(node)/qemu/150/status/current")?.0 == 500)
        #expect(failure(sim, .post, "/nodes/\(node)/qemu/150/status/stop")?.0 == 500)
        let resources = try ok(sim, .get, "/cluster/resources", [("type", "vm")]).array ?? []
        let entry = try #require(resources.first { $0["vmid"]?.int == 150 })
        #expect(entry["node"]?.string == "pve-prod" && entry["status"]?.string == "running")
        #expect(sim.guestSnapshot(150)?.node == "pve-prod")
        let archive = try latest(sim, 150)
        for force in ["0", "1"] {
            let refused = failure(sim, .post, "/nodes/\(node)/qemu", [("vmid", "150"), ("archive", archive), ("force", force)])
            #expect(refused?.0 == 500 && refused?.1 == "unable to restore VM 150 - VM 150 already exists on node 'pve-prod'\n", "force=\(force)")
        }
        #expect(!sim.adminCreate(vmid: 150, type: .ct), "the VMID is taken cluster-wide")
        #expect(sim.tasksFor(vmid: 150).map(\.type) == ["qmigrate"])

        #expect(sim.adminMigrateHere(vmid: 150))
        #expect(try config(sim, 150)["name"]?.string == "foreign")
        #expect(sim.tasksFor(vmid: 150).map(\.type) == ["qmigrate"], "the incoming migration's task is on the source node")
    }

    /// A reboot stops every guest of the node, then `startall` starts the onboot ones only; a
    /// restore running at the reboot is killed (`unexpected status`, `lock: create`).
    @Test func aRebootStartsOnbootGuestsOnly() throws {
        let (sim, clock) = Self.make()
        #expect(sim.adminCreate(vmid: 300, type: .vm, onboot: true))
        #expect(sim.adminCreate(vmid: 301, type: .ct, status: "running"))
        #expect(sim.adminCreate(vmid: 302, type: .vm, status: "running", onboot: true))
        #expect(sim.adminCreate(vmid: 303, type: .vm, status: "running", onboot: true))
        #expect(sim.adminMigrateAway(vmid: 303, toNode: "pve-prod"))

        // 103 (onboot off in its backup) restored and started; it has just ended: `unknown` (§5.1).
        try ok(sim, .post, "/nodes/\(node)/qemu", [("vmid", "103"), ("archive", try latest(sim, 103)), ("storage", "local-lvm"), ("start", "1")])
        clock.advance(by: 8)
        #expect(sim.guestSnapshot(103)?.status == "unknown")
        #expect(sim.guestConfigSnapshot(103)?.status == "running")
        let running = try ok(sim, .post, "/nodes/\(node)/qemu", [("vmid", "101"), ("archive", try latest(sim, 101)), ("storage", "local-lvm")])
        let upid = try #require(running.string.flatMap(UPID.init(parsing:)))
        clock.advance(by: 5)

        sim.rebootNode()
        #expect(sim.guestSnapshot(103)?.status == "stopped", "booted: reported, and its onboot is off")
        #expect(sim.guestConfigSnapshot(300)?.status == "running")
        #expect(sim.guestConfigSnapshot(302)?.status == "running")
        #expect(sim.guestConfigSnapshot(301)?.status == "stopped", "no onboot")
        #expect(sim.guestConfigSnapshot(150)?.status == "stopped", "the foreign VM has no onboot")
        #expect(sim.guestConfigSnapshot(250)?.status == "stopped")
        #expect(sim.guestConfigSnapshot(303)?.status == "running", "another node's guest is untouched")
        #expect(sim.tasksFor(vmid: 303).map(\.type) == ["qmcreate", "qmigrate"])
        let startall = try taskList(sim, [("typefilter", "startall")])
        #expect(startall.count == 1 && startall.first?["id"]?.string == "" && startall.first?["user"]?.string == "root@pam")
        #expect(sim.tasksFor(vmid: 300).last?.type == "qmstart" && sim.tasksFor(vmid: 301).last?.type == "vzshutdown")

        let killed = try ok(sim, .get, "/nodes/\(node)/tasks/\(upid)/status")
        #expect(killed["status"]?.string == "stopped" && killed["exitstatus"]?.string == "unexpected status")
        let stub = try config(sim, 101)
        #expect(stub["lock"]?.string == "create" && stub["vmgenid"] == nil && stub["onboot"] == nil)
        clock.advance(by: 3600)
        #expect(try config(sim, 101)["lock"]?.string == "create", "the killed restore's effect never applies")
    }

    // MARK: config PUT (§5.3)

    @Test func putAcceptsOnbootAndDeleteAndBumpsTheDigest() throws {
        let (sim, _) = Self.make()
        let path = "/nodes/\(node)/qemu/150/config"
        let d0 = try #require(try config(sim, 150)["digest"]?.string)
        try ok(sim, .put, path, [("onboot", "1"), ("digest", d0)])
        let c1 = try config(sim, 150)
        #expect(c1["onboot"]?.int == 1 && c1["digest"]?.string != d0)
        #expect(failure(sim, .put, path, [("onboot", "0"), ("digest", d0)])?.1 == "checksum mismatch (file change by other user?)\n")
        try ok(sim, .put, path, [("delete", "onboot"), ("digest", c1["digest"]!.string!)])
        let c2 = try config(sim, 150)
        #expect(c2["onboot"] == nil && c2["digest"]?.string != c1["digest"]?.string)
        try ok(sim, .put, path, [("description", "hello"), ("delete", "tags")])
        let c3 = try config(sim, 150)
        #expect(c3["description"]?.string == "hello" && c3["tags"] == nil)
        try ok(sim, .put, path, [("delete", "description,onboot")])
        #expect(try config(sim, 150)["description"] == nil)
        #expect(failure(sim, .put, path, [("onboot", "maybe")])?.0 == 400)
        #expect(failure(sim, .put, path, [("tags", "a"), ("delete", "tags")])?.0 == 400)
        #expect(failure(sim, .put, "/nodes/\(node)/qemu/151/config", [("onboot", "1")])?.1 == "VM is locked (backup)\n")
    }

    // MARK: task list (§4, §13.5)

    @Test func runningTasksShowStatusRUNNINGAndTokenTasksTheirTokenID() throws {
        let (sim, clock) = Self.make()
        let answer = try ok(sim, .post, "/nodes/\(node)/qemu", [("vmid", "101"), ("archive", try latest(sim, 101)), ("storage", "local-lvm")])
        let upid = try #require(answer.string)
        clock.advance(by: 1)
        let all = try taskList(sim, [("source", "all"), ("vmid", "101")])
        let entry = try #require(all.first)
        #expect(entry["upid"]?.string == upid && entry["status"]?.string == "RUNNING" && entry["endtime"] == nil)
        #expect(entry["user"]?.string == "pbs-standby@pve" && entry["tokenid"]?.string == "standby")
        #expect(entry["starttime"]?.int == Int(Harness.start))
        #expect(try taskList(sim, [("source", "active")]).count == 1)
        #expect(try taskList(sim, []).isEmpty, "archive (the default) lists finished tasks only")
        clock.advance(by: 3600)
        let done = try #require(try taskList(sim, [("vmid", "101")]).first)
        #expect(done["status"]?.string == "OK" && done["endtime"] != nil)
        // start/limit page through the matching entries, newest first.
        #expect(sim.adminCreate(vmid: 300, type: .vm) && sim.adminStart(vmid: 300) && sim.adminStop(vmid: 300))
        let page = try taskList(sim, [("vmid", "300"), ("start", "1"), ("limit", "1")])
        #expect(page.map { $0["type"]?.string } == ["qmstart"])
        #expect(try taskList(sim, [("userfilter", "root@pam")]).count == 3)
    }

    /// `Saved` carries the new fields.
    @Test func savedStateKeepsVMGenIDOnbootAndNode() throws {
        let (sim, clock) = Self.make()
        #expect(sim.adminCreate(vmid: 300, type: .vm, onboot: true))
        #expect(sim.adminMigrateAway(vmid: 150, toNode: "pve-prod"))
        let data = try JSONEncoder().encode(sim.saved())
        let resumed = try PVESimulator(scenario: Self.scenario(), clock: ManualClock(start: clock.now()),
                                       saved: try JSONDecoder().decode(PVESimulator.Saved.self, from: data))
        let a = try #require(sim.guestConfigSnapshot(300)), b = try #require(resumed.guestConfigSnapshot(300))
        #expect(a.vmgenid == b.vmgenid && b.onboot && resumed.guestConfigSnapshot(150)?.node == "pve-prod")
        #expect(resumed.adminCreate(vmid: 301, type: .vm) && sim.adminCreate(vmid: 301, type: .vm))
        #expect(resumed.guestConfigSnapshot(301)?.vmgenid == sim.guestConfigSnapshot(301)?.vmgenid, "the id stream is saved too")
    }

    // MARK: HTTP hook

    /// `POST /_sim/admin` with a form body (create), then a JSON body (clone), then a refusal.
    @Test func adminHookOverHTTP() async throws {
        let (sim, _) = Self.make()
        let server = try SimulatorServer(simulator: sim, address: .init(host: "127.0.0.1", port: 0), tls: false)
        let url = try server.start()
        defer { server.stop() }
        let auth = "Authorization: " + sim.token.headerValue

        let created = try curl(["-X", "POST", "-H", auth, "--data", "action=create&vmid=400&type=vm&name=app&tags=Web%3Bprod&onboot=1",
                                url + "/_sim/admin"])
        #expect(created.status == 200, "\(created.body)")
        #expect(created.json?["guest"]?["tags"]?.string == "prod;web" && created.json?["guest"]?["onboot"]?.int == 1)
        let genid = try #require(created.json?["guest"]?["vmgenid"]?.string)

        let cloned = try curl(["-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                               "--data", #"{"action":"clone","vmid":400,"to":401}"#, url + "/_sim/admin"])
        #expect(cloned.status == 200, "\(cloned.body)")
        #expect(cloned.json?["vmid"]?.int == 401 && cloned.json?["from"]?.int == 400)
        #expect(cloned.json?["guest"]?["vmgenid"]?.string.map { $0 != genid } == true)

        let again = try curl(["-X", "POST", "-H", auth, "--data", "action=clone&vmid=400&to=401", url + "/_sim/admin"])
        #expect(again.status == 409 && again.json?["error"]?.string == "VM 401 already exists on node 'pve-standby'")
        #expect(try curl(["-X", "POST", "-H", auth, "--data", "action=fly&vmid=1", url + "/_sim/admin"]).status == 400)
        #expect(try curl(["-X", "POST", "--data", "action=reboot", url + "/_sim/admin"]).status == 401)

        // Through the API: the clone is a task of root@pam under the source VMID; the journal is empty.
        let client = ProxmoxClient(transport: try HTTPSTransport(url: url, token: sim.token, verification: .system))
        let tasks = try await client.tasks(node: node, vmid: 400)
        #expect(Set(tasks.map(\.upid.type)) == ["qmcreate", "qmclone"] && tasks.allSatisfy { $0.upid.user == "root@pam" })
        #expect(try await client.guestConfig(node: node, type: .vm, vmid: 401).name == "Copy-of-app")
        let journal = try curl(["-H", auth, url + "/_sim/journal"])
        #expect(journal.body.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    /// Runs curl; returns the HTTP status and body.
    func curl(_ args: [String]) throws -> (status: Int, body: String, json: JSONValue?) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sS", "-w", "\n%{http_code}"] + args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.last ?? "") ?? 0
        let body = lines.dropLast().joined(separator: "\n")
        return (status, body, try? JSONValue.parse(Array(body.utf8), path: "/_sim"))
    }
}
