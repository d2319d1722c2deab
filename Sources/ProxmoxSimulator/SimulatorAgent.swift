import Foundation
import ProxmoxAPI

/// The QEMU guest agent endpoints a drill uses (qemu-server src/PVE/API2/Qemu/Agent.pm).
extension PVESimulator {
    /// The OS a booted guest's agent reports (`guest-get-osinfo`).
    static let agentOSInfo: JSONValue = .object([
        "id": .string("debian"), "name": .string("Debian GNU/Linux"), "pretty-name": .string("Debian GNU/Linux 12 (bookworm)"),
        "version-id": .string("12"), "kernel-release": .string("6.1.0-18-amd64"), "machine": .string("x86_64"),
    ])

    /// `…/qemu/{vmid}/agent[/{command}]`: `POST ping`, `GET get-osinfo`, `GET get-host-name`;
    /// `GET agent` lists the commands (Agent.pm:120-168). Other commands and methods: 501.
    /// 1. Permission (Agent.pm:170-186, :25-118): `VM.GuestAgent.Audit` or
    ///    `VM.GuestAgent.Unrestricted` on `/vms/{vmid}` (`any => 1`), else 403.
    /// 2. `assert_agent_available` (qemu-server src/PVE/QemuServer/Agent.pm:109-113), each a 500:
    ///    no `agent` key in the config (even `agent: 0` passes) → `No QEMU guest agent configured`;
    ///    not running → `VM {vmid} is not running`; the agent does not answer `guest-ping`
    ///    (disabled in the config, the guest still booting, hung, or without an agent inside,
    ///    scenario `boot:`) → `QEMU guest agent is not running`. PVE waits up to 3 s for that
    ///    ping (Agent.pm:82-89); the simulator answers at once.
    /// 3. `{"result": …}` (Agent.pm:228-241): `{}` for ping, the OS for get-osinfo,
    ///    `{"host-name": <guest name>}` for get-host-name.
    func agentCall(_ s: State, now: Double, _ method: APIMethod, _ g: SimGuest, _ rest: [String], path: String) -> SimResult {
        let commands: [String: APIMethod] = ["ping": .post, "get-osinfo": .get, "get-host-name": .get]
        if rest.isEmpty, method == .get {
            return .ok(.array(commands.keys.sorted().map { .object(["name": .string($0)]) }))
        }
        guard rest.count == 1, let expected = commands[rest[0]], expected == method else { return notImplemented(method, path) }
        let vmPath = "/vms/\(g.vmid)"
        if permissionCheck(s, vmPath, "VM.GuestAgent.Audit") != nil, permissionCheck(s, vmPath, "VM.GuestAgent.Unrestricted") != nil {
            // [unverified] the text of an `any => 1` check names the first privilege.
            return .error(status: 403, message: "Permission check failed (\(vmPath), VM.GuestAgent.Audit)\n", errors: [:])
        }
        guard g.extraConfig["agent"] != nil else { return .error(status: 500, message: "No QEMU guest agent configured\n", errors: [:]) }
        guard g.status == "running" else { return .error(status: 500, message: "VM \(g.vmid) is not running\n", errors: [:]) }
        guard agentAnswers(s, g, now: now) else { return .error(status: 500, message: "QEMU guest agent is not running\n", errors: [:]) }
        switch rest[0] {
        case "ping": return .ok(.object(["result": .object([:])]))
        case "get-osinfo": return .ok(.object(["result": Self.agentOSInfo]))
        default: return .ok(.object(["result": .object(["host-name": .string(g.name)])]))
        }
    }

    /// The agent of running VM `g` answers: enabled in its active config (a change made while it
    /// runs is pending, SimulatorConfigPut.swift), booted, and with an agent inside (`boot:` `agent`).
    func agentAnswers(_ s: State, _ g: SimGuest, now: Double) -> Bool {
        Self.agentEnabled(g.extraConfig["agent"]) && bootPhase(s, g, now: now) == .booted && bootBehaviour(s, g.vmid).agent
    }
}
