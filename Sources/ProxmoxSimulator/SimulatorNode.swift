import Foundation
import ProxmoxAPI

/// `GET /nodes/{node}/status` (pve-manager PVE/API2/Nodes.pm:352-535 `status`).
extension PVESimulator {
    /// The node's memory now: `total` = `node_memory_bytes`; `used` = `node_memory_used_bytes`
    /// plus the `memory` of every running guest of this node (all of it, [unverified]: real guests
    /// touch less, ballooning and KSM give back).
    func nodeMemory(_ s: State) -> (total: Int64, used: Int64) {
        let guests = s.guests.values.filter { $0.node == scenario.node && $0.status == "running" }.reduce(Int64(0)) { $0 + (Self.memoryMiB($1) << 20) }
        return (scenario.nodeMemoryBytes, scenario.nodeMemoryUsedBytes + guests)
    }

    /// The status object: `memory {total, used, free, available}` (bytes, Nodes.pm:519-525 from
    /// `/proc/meminfo`; here `free` = `available` = total − used, never below 0), `cpuinfo` (`cpus`,
    /// `sockets`, `cores`, `model`, `mhz`, `hvm`, `user_hz`; ProcFSTools `read_cpuinfo`, :513 —
    /// 16 threads [unverified: a fixed simulated CPU]), `uptime` (since the simulator started),
    /// `loadavg`, `cpu`, `wait`, `swap`, `ksm`, `rootfs`, `kversion`, `current-kernel`,
    /// `boot-info`, `pveversion`. Needs `Sys.Audit` on `/nodes/{node}` (:356-358), else 403.
    func nodeStatus(_ s: State, now: Double) -> SimResult {
        if !scenario.callerIsRoot, let e = permissionCheck(s, "/nodes/\(scenario.node)", "Sys.Audit") {
            return .error(status: 403, message: e + "\n", errors: [:])
        }
        let (total, used) = nodeMemory(s)
        let free = Double(max(0, total - used))
        let gib = Double(1 << 30)
        return .ok(.object([
            "memory": .object(["total": .number(Double(total)), "used": .number(Double(used)), "free": .number(free), "available": .number(free)]),
            "cpuinfo": .object(["cpus": .number(16), "sockets": .number(1), "cores": .number(8), "model": .string("Simulated CPU @ 2.40GHz"),
                                "mhz": .string("2400.000"), "hvm": .string("1"), "user_hz": .number(100)]),
            "uptime": .number(Double(Int(max(0, now - startTime)) + 3600)),
            "loadavg": .array([.string("0.10"), .string("0.20"), .string("0.30")]),
            "cpu": .number(0.02), "wait": .number(0),
            "swap": .object(["total": .number(8 * gib), "used": .number(0), "free": .number(8 * gib)]),
            "ksm": .object(["shared": .number(0)]),
            "rootfs": .object(["total": .number(100 * gib), "used": .number(10 * gib), "free": .number(90 * gib), "avail": .number(85 * gib)]),
            "kversion": .string("Linux 6.14.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"),
            "current-kernel": .object(["sysname": .string("Linux"), "release": .string("6.14.8-2-pve"),
                                       "version": .string("#1 SMP PREEMPT_DYNAMIC PMX 6.14.8-2 (2025-07-22T10:04Z)"), "machine": .string("x86_64")]),
            "boot-info": .object(["mode": .string("efi"), "secureboot": .number(0)]),
            "pveversion": .string("pve-manager/9.2.11/simulated"),
        ]))
    }
}
