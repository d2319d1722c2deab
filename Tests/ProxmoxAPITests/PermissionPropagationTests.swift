import ConfigSupport
import Foundation
import ProxmoxAPI
import ProxmoxSimulator
import Testing

/// ACL propagation (pve-access-control `AccessControl.pm` `roles`, `RPCEnvironment.pm`
/// `compile_acl_path`/`get_effective_permissions`, public copies; reference §13.1): an ACL set
/// with `--propagate 0` holds on its path only; `GET /access/permissions` lists `{priv: flag}`
/// per path; an unlisted path inherits only the flag-1 privileges of its nearest listed ancestor.
@Suite("Permission propagation")
struct PermissionPropagationTests {
    static let node = "pve-standby"

    static func scenario(_ acls: [Scenario.ACL]) -> Scenario {
        var s = PermissionFixture.scenario(acls: acls)
        s.node = node
        return s
    }

    // MARK: - the simulator (e)

    /// `Sys.Audit` on `/` without propagation: listed at `/` with flag 0, absent below, and the
    /// token's task list is its own only (pve-manager Tasks.pm `node_tasks` wants it on /nodes/<node>).
    @Test(arguments: [TransportKind.inProcess, .https])
    func nonPropagatingACLHoldsAtItsPathOnly(_ kind: TransportKind) async throws {
        let h = try Harness(kind, scenario: Self.scenario([
            .init(path: "/", privs: ["Sys.Audit"], propagate: false),
            .init(path: "/vms", privs: ["VM.Allocate", "VM.Audit"]),
            .init(path: "/vms/150", privs: ["VM.Audit"], propagate: false),
        ]))
        guard case .ok(let raw) = h.simulator.handle(.get, "/access/permissions", []) else { Issue.record("no answer"); return }
        #expect(raw == .object([
            "/": .object(["Sys.Audit": .number(0)]),
            "/vms": .object(["VM.Allocate": .number(1), "VM.Audit": .number(1)]),
            "/vms/150": .object(["VM.Audit": .number(0)]),
        ]), "\(raw)")
        let perms = try await h.client.permissions()
        #expect(perms.paths == ["/": ["Sys.Audit": false], "/vms": ["VM.Allocate": true, "VM.Audit": true], "/vms/150": ["VM.Audit": false]])
        #expect(PVEPermissions.has("Sys.Audit", at: "/", in: perms))
        #expect(!PVEPermissions.has("Sys.Audit", at: "/nodes/\(Self.node)", in: perms), "flag 0 on / does not reach /nodes/<node>")
        #expect(PVEPermissions.privileges(at: "/vms/150", in: perms) == ["VM.Audit"])
        #expect(PVEPermissions.privileges(at: "/vms/150/x", in: perms) == ["VM.Allocate", "VM.Audit"],
                "below a non-propagating ACL the privileges from above hold again")
        #expect(PVEPermissions.privileges(at: "/vms/1500", in: perms) == ["VM.Allocate", "VM.Audit"])
        // `?path=`: that path only, as PVE's `permissions($user, $path)`.
        #expect(try await h.client.permissions(path: "/nodes/\(Self.node)").paths == ["/nodes/\(Self.node)": [:]])
        #expect(try await h.client.permissions(path: "/").paths == ["/": ["Sys.Audit": false]])
        #expect(try await h.client.permissions(path: "/vms/101").paths == ["/vms/101": ["VM.Allocate": true, "VM.Audit": true]])
        // Without Sys.Audit on /nodes/<node> the token sees its own tasks only.
        h.simulator.adminStart(vmid: 101)
        #expect(try await h.client.tasks(node: Self.node, vmid: 101, limit: 50).isEmpty, "root@pam's start is not listed")
        h.simulator.setACLs([.init(path: "/", privs: ["Sys.Audit"])])
        #expect(try await h.client.tasks(node: Self.node, vmid: 101, limit: 50).count == 1)
    }

    /// A deeper ACL that does not propagate replaces what its own path gets, not what the paths
    /// below it inherit from above (`roles`: an ancestor applies only `if ($final || $propagate)`).
    @Test func nonPropagatingDeeperACLLeavesInheritedPrivilegesBelow() throws {
        let acls: [Scenario.ACL] = [
            .init(path: "/", privs: ["Sys.Audit"]),
            .init(path: "/nodes", privs: ["Sys.Modify"], propagate: false),
            .init(path: "/storage", privs: ["Datastore.AllocateSpace"], propagate: false),
            .init(path: "/storage", privs: ["Datastore.Audit"]),
        ]
        let sim = PVESimulator(scenario: Self.scenario(acls), clock: ManualClock(start: 1_800_000_000))
        func at(_ path: String) -> JSONValue? {
            guard case .ok(let v) = sim.handle(.get, "/access/permissions", [("path", path)]) else { return nil }
            return v[path]
        }
        #expect(at("/nodes") == .object(["Sys.Modify": .number(0)]))
        #expect(at("/nodes/\(Self.node)") == .object(["Sys.Audit": .number(1)]))
        #expect(at("/storage") == .object(["Datastore.AllocateSpace": .number(0), "Datastore.Audit": .number(1)]))
        #expect(at("/storage/local-lvm") == .object(["Datastore.Audit": .number(1)]))
    }

    /// `propagate` in the scenario YAML: a boolean, true when left out.
    @Test func scenarioACLsParsePropagate() throws {
        let s = try Scenario.parse(yaml: """
            acls:
              - {path: /, privs: [Sys.Audit], propagate: false}
              - {path: /vms, privs: [VM.Audit]}
            """)
        #expect(s.acls == [.init(path: "/", privs: ["Sys.Audit"], propagate: false), .init(path: "/vms", privs: ["VM.Audit"], propagate: true)])
        #expect(throws: ConfigError.self) { try Scenario.parse(yaml: "acls: [{path: /, privs: [Sys.Audit], propagate: maybe}]\n") }
        // Saved states from before the flag read as propagating.
        let old = try JSONDecoder().decode(Scenario.ACL.self, from: Data(#"{"path":"/vms","privs":["VM.Audit"]}"#.utf8))
        #expect(old.propagate)
    }

    /// The client's lookup from the full listing answers what the simulator answers for the path
    /// itself, for random ACL sets (non-empty roles: an empty one is PVE's `NoAccess`, not listed).
    @Test func lookupFromTheListingMatchesThePathAnswer() async throws {
        let tree = ["/", "/vms", "/vms/100", "/vms/100/x", "/vms/1000", "/nodes", "/nodes/\(Self.node)", "/storage", "/storage/local-lvm",
                    "/sdn", "/sdn/zones", "/sdn/zones/localnetwork", "/sdn/zones/localnetwork/vmbr0", "/pool/p1", "/mapping/pci/gpu"]
        let privs = ["Sys.Audit", "VM.Allocate", "VM.Audit", "SDN.Use", "Datastore.AllocateSpace"]
        var rng = SplitMix64(state: 7)
        let sim = PVESimulator(scenario: Self.scenario([]), clock: ManualClock(start: 1_800_000_000))
        let client = ProxmoxClient(transport: InProcessTransport(simulator: sim))
        for round in 0..<400 {
            let acls: [Scenario.ACL] = (0..<Int(rng.next() % 6)).map { _ in
                let chosen = privs.filter { _ in rng.next() % 3 == 0 }
                return .init(path: tree[Int(rng.next() % UInt64(tree.count))], privs: chosen.isEmpty ? [privs[Int(rng.next() % 5)]] : chosen,
                             propagate: rng.next() % 2 == 0)
            }
            sim.setACLs(acls)
            let listing = try await client.permissions()
            for path in tree {
                let direct = Set(try await client.permissions(path: path).paths[path]?.keys.map { $0 } ?? [])
                #expect(PVEPermissions.privileges(at: path, in: listing) == direct, "round \(round) \(path) \(acls) \(listing.paths)")
            }
        }
    }

    // MARK: - the client's lookup (f)

    /// An unlisted path inherits only the flag-1 privileges of its nearest listed ancestor; an
    /// ancestor listing only flag-0 privileges does not reach below, so the walk goes on.
    @Test func lookupInheritsOnlyPropagatingPrivileges() {
        let map = PVEPermissionMap([
            "/": ["Sys.Audit": false, "VM.Audit": true],
            "/vms": ["VM.Allocate": true, "VM.Backup": false],
            "/vms/100": ["VM.PowerMgmt": false],
            "/sdn/zones/localnetwork/vmbr0/5": ["SDN.Use": false],
        ])
        #expect(PVEPermissions.privileges(at: "/", in: map) == ["Sys.Audit", "VM.Audit"])
        #expect(PVEPermissions.privileges(at: "/nodes/pve", in: map) == ["VM.Audit"])
        #expect(!PVEPermissions.has("Sys.Audit", at: "/nodes/pve", in: map))
        #expect(PVEPermissions.privileges(at: "/vms", in: map) == ["VM.Allocate", "VM.Backup"])
        #expect(PVEPermissions.privileges(at: "/vms/101", in: map) == ["VM.Allocate"])
        #expect(PVEPermissions.privileges(at: "/vms/100/", in: map) == ["VM.PowerMgmt"])
        #expect(PVEPermissions.privileges(at: "/vms/100/disk", in: map) == ["VM.Allocate"], "/vms/100 lists flag 0 only: from /vms")
        // A VLAN path's SDN.Use holds there, flag 0 or 1 (`check_sdn_bridge`).
        #expect(PVEPermissions.canUseBridge("vmbr0", in: map))
        #expect(!PVEPermissions.canUseBridge("vmbr1", in: map))
        // A map of sets reads as propagating (source compatibility).
        #expect(PVEPermissions.has("VM.Audit", at: "/vms/1/x", in: ["/vms": ["VM.Audit"]] as [String: Set<String>]))
        let literal: PVEPermissionMap = ["/vms": ["VM.Audit"]]
        #expect(literal.paths == ["/vms": ["VM.Audit": true]] && literal["/vms"] == ["VM.Audit"] && literal.count == 1)
    }

    /// The propagate flag as PVE's JSON may carry it: 1/0, true/false, "1"/"0", "" (Perl's false
    /// from `$user_privs->{$_} && $privs->{$_}`); null is "not set".
    @Test func permissionsDecodeThePropagateFlag() async throws {
        struct Fixed: ProxmoxTransport {
            let value: JSONValue
            func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
                      onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue { value }
            var runsTasksSynchronously: Bool { false }
            var endpointDescription: String { "fixed" }
        }
        let client = ProxmoxClient(transport: Fixed(value: .object([
            "/": .object(["Sys.Audit": .number(0), "VM.Audit": .bool(true), "SDN.Use": .string("1"), "Sys.Modify": .string(""), "Pool.Audit": .null]),
        ])))
        let perms = try await client.permissions()
        #expect(perms.paths == ["/": ["Sys.Audit": false, "VM.Audit": true, "SDN.Use": true, "Sys.Modify": false]])
        let bad = ProxmoxClient(transport: Fixed(value: .object(["/": .object(["Sys.Audit": .string("yes please")])])))
        await #expect(throws: ProxmoxError.self) { _ = try await bad.permissions() }
    }
}

/// What a forced VM restore frees on the target storage (the engine's space rule).
@Suite("Disk bytes on a storage")
struct DiskBytesTests {
    @Test func countsOnlyDrivesOnThatStorage() {
        let c = GuestConfig(raw: ["scsi0": "local-lvm:vm-101-disk-0,size=32G", "virtio1": "other:vm-101-disk-1,size=100G",
                                  "ide2": "local-lvm:iso/x.iso,media=cdrom,size=1G", "efidisk0": "local-lvm:vm-101-disk-2,size=4M",
                                  "net0": "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0", "scsihw": "virtio-scsi-pci"])
        #expect(c.diskBytes(onStorage: "local-lvm") == 32 * 1_073_741_824 + 4 * 1_048_576)
        #expect(c.diskBytes(onStorage: "other") == 100 * 1_073_741_824)
        #expect(c.diskBytes(onStorage: "none") == 0)
    }
}
