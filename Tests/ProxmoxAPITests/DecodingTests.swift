import Foundation
import ProxmoxAPI
import Testing

/// Returns canned JSON for one path: decoding tests of fixtures made from the reference's examples.
struct FixtureTransport: ProxmoxTransport {
    let body: String
    var runsTasksSynchronously: Bool { false }
    var endpointDescription: String { "fixture" }
    func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
              onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        try JSONValue.parse(Array(body.utf8), path: path)["data"] ?? .null
    }
}

func client(_ json: String) -> ProxmoxClient { ProxmoxClient(transport: FixtureTransport(body: json)) }

@Suite("Decoding PVE answers")
struct DecodingTests {
    /// Reference §2 example (verification, protected, encrypted, notes).
    @Test func backupListingSection2() async throws {
        let json = """
        {"data": [
          {"volid": "pbs-main:backup/ct/200/2024-01-02T00:00:00Z", "format": "pbs-ct",
           "content": "backup", "subtype": "lxc", "vmid": 200, "ctime": 1704153600, "size": 2147483648},
          {"volid": "pbs-main:backup/vm/100/2024-01-01T00:00:00Z", "format": "pbs-vm",
           "content": "backup", "subtype": "qemu", "vmid": 100, "ctime": 1704067200,
           "size": 34359739904, "notes": "nightly",
           "verification": {"state": "ok", "upid": "UPID:pbs1:000004D2:0001E240:00000003:6592F000:verify_snapshot:store1\\\\x3a-vm-100-65920080:root@pam:"},
           "protected": 1, "encrypted": "3b:6e:e0"},
          {"volid": "pbs-main:backup/host/pbs/2024-01-01T00:00:00Z", "vmid": "x", "ctime": 1, "size": 1}
        ]}
        """
        let entries = try await client(json).backups(node: "n", storage: "pbs-main")
        #expect(entries.count == 2, "host backups are skipped as PVE does")
        #expect(entries[0].volid == Volid(storage: "pbs-main", type: .ct, vmid: 200, backupTime: 1704153600))
        #expect(entries[1].verification == "ok" && entries[1].protected && entries[1].encrypted == "3b:6e:e0")
        #expect(entries[1].notes == "nightly" && entries[1].size == 34359739904)
        #expect(!entries[0].protected, "protected is absent when not set")
    }

    @Test func lenientNumbersAndBooleans() async throws {
        let json = """
        {"data": [{"volid": "s:backup/vm/7/2024-01-01T00:00:00Z", "vmid": "7", "ctime": "1704067200", "size": "1", "protected": "0", "extra": {"x": 1}}]}
        """
        let e = try #require(try await client(json).backups(node: "n", storage: "s").first)
        #expect(e.size == 1 && !e.isComplete, "size 1 means in progress (§2)")
        #expect(e.ctime == 1704067200 && !e.protected)
    }

    /// Reference §5.1 example.
    @Test func clusterResourcesSection5() async throws {
        let json = """
        {"data":[{"id":"qemu/100","vmid":100,"type":"qemu","node":"pve-standby","status":"stopped",
          "name":"web1","template":0,"maxcpu":2,"cpu":0,"maxmem":2147483648,"mem":0,
          "maxdisk":34359738368,"disk":0,"netin":0,"netout":0,"diskread":0,"diskwrite":0,
          "uptime":0,"memhost":0,"tags":"restored;standby","lock":"create"},
          {"id":"storage/x","type":"storage"}]}
        """
        let guests = try await client(json).guests()
        #expect(guests == [GuestResource(vmid: 100, type: .vm, node: "pve-standby", status: "stopped", name: "web1",
                                         lock: "create", tags: ["restored", "standby"], template: false, maxdisk: 34359738368, maxmem: 2147483648)])
    }

    @Test func malformedAndTruncatedInputsAreErrorsNamingThePath() async {
        for body in ["{\"data\": [", "", "<html>", "{\"data\": [{\"vmid\": \"abc\", \"type\": \"qemu\"}]}", "{\"data\": {\"not\": \"a list\"}}", "{\"data\": [42]}"] {
            let error = await proxmoxError { () async throws(ProxmoxError) in _ = try await client(body).guests() }
            guard case .decoding(let path, _, _)? = error else { Issue.record("\(body): got \(String(describing: error))"); continue }
            #expect(path.hasPrefix("/cluster/resources"))
        }
        let error = await proxmoxError { () async throws(ProxmoxError) in _ = try await client("{\"data\": [{\"type\": \"qemu\", \"vmid\": \"x1\"}]}").guests() }
        #expect(error?.description.contains("/cluster/resources[0].vmid") == true)
    }

    /// Reference §4.1 example and encoder.
    @Test func upidParsing() {
        let text = "UPID:pve-standby:0002A3F1:01B7C2D4:6592E100:qmrestore:100:root@pam:"
        let u = UPID(parsing: text)
        // The reference's "[computed]" pid 172017 is a slip: 0x0002A3F1 is 173041.
        #expect(u?.pid == 173041 && u?.startTime == 1704124672 && u?.type == "qmrestore" && u?.id == "100")
        #expect(u?.description == text)
        #expect(UPID(parsing: "UPID:n:0002A3F1:101B7C2D4:6592E100:qmrestore:100:svc@pve!restore:")?.pstart == 0x101B7C2D4, "9-digit pstart")
        for bad in ["UPID:n:1:2:3:t:i:u:", "UPID:-n:0002A3F1:01B7C2D4:6592E100:t:i:u:", "UPID:n:0002A3F1:01B7C2D4:6592E100:t:i:u",
                    "XUPID:n:0002A3F1:01B7C2D4:6592E100:t:i:u:", "UPID:n:0002A3F1:01B7C2D4:6592E100::i:u:", ""] {
            #expect(UPID(parsing: bad) == nil, "\(bad)")
        }
    }

    /// Reference §4.4 formats.
    @Test func progressLines() {
        let p = RestoreProgress.parseProgress("progress 42% (read 41943040 bytes, zeroes = 30% (12582912 bytes), duration 3 sec)")
        #expect(p?.percent == 42 && p?.bytes == 41943040 && p?.seconds == 3)
        #expect(RestoreProgress.parseProgress("progress 42% (read x bytes)") == nil)
        #expect(RestoreProgress.parseProgress("progress 420% (read 1 bytes, zeroes = 0% (0 bytes), duration 0 sec)") == nil)
        #expect(RestoreProgress.parseComplete("restore image complete (bytes=34359738368, duration=95.41s, speed=343.45MB/s)") == 34359738368)
        var tracker = RestoreProgress(diskSizes: [100, 300])
        tracker.consume("progress 50% (read 50 bytes, zeroes = 0% (0 bytes), duration 1 sec)")
        #expect(tracker.ratio == 0.125)
        tracker.consume("restore image complete (bytes=100, duration=1.00s, speed=1.00MB/s)")
        tracker.consume("progress 50% (read 150 bytes, zeroes = 0% (0 bytes), duration 1 sec)")
        #expect(tracker.ratio == 0.625)
        tracker.consume("TASK OK")
        #expect(tracker.ratio == 1)
    }

    @Test func volids() {
        let v = Volid(parsing: "pbs-prod:backup/vm/100/2024-01-01T00:00:00Z")
        #expect(v?.backupTime == 1704067200 && v?.type == .vm)
        #expect(v?.description == "pbs-prod:backup/vm/100/2024-01-01T00:00:00Z")
        for bad in ["pbs:backup/vm/x/2024-01-01T00:00:00Z", "pbs:backup/host/1/2024-01-01T00:00:00Z", "backup/vm/1/2024-01-01T00:00:00Z",
                    "pbs:backup/vm/1/2024-13-01T00:00:00Z", "pbs:backup/vm/1/2024-01-01 00:00:00"] {
            #expect(Volid(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func errorClassification() {
        #expect(ProxmoxError.classify(path: "/p", status: 500, message: "unable to restore VM 1 - VM is locked (backup)\n") ==
                .refused(path: "/p", reason: .locked, message: "unable to restore VM 1 - VM is locked (backup)"))
        #expect(ProxmoxError.classify(path: "/p", status: 595, message: "No route to host").isTransient)
        #expect(ProxmoxError.classify(path: "/p", status: 503, message: "").isTransient)
        if case .auth = ProxmoxError.classify(path: "/p", status: 401, message: "") {} else { Issue.record("401 is auth") }
        if case .server = ProxmoxError.classify(path: "/p", status: 500, message: "storage 'x' does not exist") {} else { Issue.record("500 business error") }
    }

    @Test func tokens() throws {
        let t = try APIToken(parsing: "svc@pve!restore=aaaa-bbbb\n")
        #expect(t.tokenID == "svc@pve!restore" && t.headerValue == "PVEAPIToken=svc@pve!restore=aaaa-bbbb")
        #expect(!"\(t)".contains("aaaa"), "the description never shows the secret")
        #expect(throws: ProxmoxError.self) { try APIToken(parsing: "no-equals") }
        #expect(throws: ProxmoxError.self) { try APIToken(parsing: "svc!x=1") }
        #expect(Fingerprint.normalize("AB:" + String(repeating: "cd:", count: 30) + "EF") == "ab" + String(repeating: "cd", count: 30) + "ef")
    }
}
