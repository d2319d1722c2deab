import Foundation
import ProxmoxAPI

/// What happens inside a guest after its start task ended (scenario `boot:`): booting, booted,
/// hung, or powered off again. Evaluated lazily from the clock's `now`, like `unknownUntil`.
extension PVESimulator {
    /// The boot phases a running guest goes through (``guestBootPhase(vmid:)``).
    public enum BootPhase: String, Sendable {
        /// Not running.
        case stopped
        /// Running, `boot_seconds` not over yet.
        case booting
        /// Running and booted: its guest agent answers if it has one.
        case booted
        /// Running, `boot_seconds` over, never booted (mode `hangs`).
        case hung
    }

    /// Sets how guest `vmid` boots from now on (nil: the scenario's `boot:` entry or the defaults).
    public func setBootBehaviour(_ vmid: Int, _ behaviour: Scenario.BootBehaviour?) {
        state.withLock { s in
            var o = s.bootOverrides ?? [:]
            o[vmid] = behaviour
            s.bootOverrides = o
        }
    }

    /// Where guest `vmid` is in its boot now (nil when absent).
    public func guestBootPhase(vmid: Int) -> BootPhase? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid].map { bootPhase(s, $0, now: now) }
        }
    }

    /// The next ``SimGuest/dataGeneration``: unique across the simulator.
    func nextDataGeneration(_ s: inout State) -> Int {
        let n = (s.dataCounter ?? 0) + 1
        s.dataCounter = n
        return n
    }

    /// A guest becomes running (at `time`) or stopped. Both apply the VM's pending changes:
    /// `vm_start` does before it starts QEMU (qemu-server QemuServer.pm:5598-5599), a stop in
    /// `vm_stop_cleanup` (:6195-6232, called with `apply_pending_changes` at :6298, :6329). A start
    /// records `startedAt` and gives the volumes a new data generation (the guest writes them).
    func setPowerState(_ s: inout State, _ vmid: Int, running: Bool, at time: Double) {
        guard var g = s.guests[vmid] else { return }
        let wasRunning = g.status == "running"
        g.status = running ? "running" : "stopped"
        applyPending(&g)
        if running, !wasRunning {
            g.startedAt = time
            g.dataGeneration = nextDataGeneration(&s)
            g.paused = g.type == .vm && Self.parseBoolean(g.extraConfig["freeze"] ?? "0") == true ? true : nil
        } else if !running {
            g.startedAt = nil
            g.paused = nil
        }
        s.guests[vmid] = g
    }

    /// Moves a VM's pending config into its active config.
    func applyPending(_ g: inout SimGuest) {
        guard !g.pending.isEmpty else { return }
        for (k, v) in g.pending { g.extraConfig[k] = v }
        g.pending = [:]
        g.configDigestCounter += 1
    }

    /// Guests whose boot fails power off `boot_seconds` after their start: a guest that shuts
    /// itself down or crashes is `stopped` without any task (qmeventd's cleanup runs no worker
    /// [unverified]). Called by ``settle(_:now:)``.
    func settleBoots(_ s: inout State, now: Double) {
        var failing = Set(scenario.boot.filter { $0.value.effectiveMode == .fails }.keys)
        for (vmid, b) in s.bootOverrides ?? [:] {
            if b.effectiveMode == .fails { failing.insert(vmid) } else { failing.remove(vmid) }
        }
        for vmid in failing {
            guard let g = s.guests[vmid], g.status == "running", g.paused != true, let started = g.startedAt,
                  started + bootBehaviour(s, vmid).bootSeconds <= now else { continue }
            setPowerState(&s, vmid, running: false, at: started + bootBehaviour(s, vmid).bootSeconds)
        }
    }

    /// The boot phase of `g` at `now`. A guest running since before the simulator knew it has booted.
    func bootPhase(_ s: State, _ g: SimGuest, now: Double) -> BootPhase {
        guard g.status == "running" else { return .stopped }
        if g.paused == true { return .booting }  // CPUs stopped (`freeze`): nothing runs yet
        guard let started = g.startedAt else { return .booted }
        let b = bootBehaviour(s, g.vmid)
        if now < started + b.bootSeconds { return .booting }
        switch b.effectiveMode {
        case .ok: return .booted
        case .hangs: return .hung
        case .fails: return .booting  // powered off by settleBoots
        }
    }

    /// `POST …/qemu/{vmid}/status/resume` (qemu-server API2/Qemu.pm `vm_resume`, `VM.PowerMgmt`;
    /// RunState.pm `vm_resume`: `cont`, nothing to do when already running): a VM started with
    /// `freeze: 1` runs from now — its boot clock starts here.
    func resumeVM(_ s: inout State, now: Double, _ g: SimGuest) -> SimResult {
        if let e = permissionCheck(s, "/vms/\(g.vmid)", "VM.PowerMgmt") { return .error(status: 403, message: e + "\n", errors: [:]) }
        guard g.status == "running" else { return .error(status: 500, message: "VM \(g.vmid) not running\n", errors: [:]) }
        if g.paused == true {
            var ng = g
            ng.paused = nil
            ng.startedAt = now
            s.guests[g.vmid] = ng
        }
        return .ok(.string(newTask(&s, now: now, type: "qmresume", vmid: g.vmid, duration: 1, lines: [], error: nil, effect: .none).description))
    }

    /// Seconds since the guest became running (0 when stopped); since the simulator started for a
    /// guest running before it.
    func uptime(_ g: SimGuest, now: Double) -> Int {
        g.status == "running" ? max(0, Int(now - (g.startedAt ?? startTime))) : 0
    }

    /// `GET …/status/current` (reference §5.2; qemu-server QemuServer.pm `vmstatus`): `status`,
    /// `name`, `uptime` (seconds, 0 when stopped), `maxmem`/`mem` (bytes: the config's `memory`,
    /// all of it in use while running [unverified: real guests use less]), `cpus`, and for VMs
    /// `qmpstatus` and `agent` (1 when the config enables it) — what a drill reads as evidence
    /// ("running N seconds") when no agent answers. `lock` and `tags` when set.
    func statusCurrent(_ g: SimGuest, now: Double) -> JSONValue {
        let maxmem = Double(Self.memoryMiB(g) << 20)
        var o: [String: JSONValue] = [
            "vmid": .number(Double(g.vmid)), "status": .string(g.status), "name": .string(g.name),
            "uptime": .number(Double(uptime(g, now: now))), "maxmem": .number(maxmem),
            "mem": .number(g.status == "running" ? maxmem : 0), "cpus": .number(2),
        ]
        if g.type == .vm {
            o["qmpstatus"] = .string(g.paused == true ? "prelaunch" : g.status)
            if Self.agentEnabled(g.extraConfig["agent"]) { o["agent"] = .number(1) }
        }
        if let l = g.lock { o["lock"] = .string(l) }
        if !g.tags.isEmpty { o["tags"] = .string(g.tags.joined(separator: ";")) }
        return .object(o)
    }
}
