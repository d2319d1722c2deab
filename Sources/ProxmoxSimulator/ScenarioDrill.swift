import ConfigSupport
import Foundation
import ProxmoxAPI

// MARK: - Scenario keys for DR drills: boot behaviour, guest memory and config, node memory

extension Scenario {
    /// How a guest behaves once its start task ended (`boot:` entry): it is `running` at once;
    /// with mode `ok` it has booted `bootSeconds` later (its guest agent answers if it has one),
    /// with `fails` it powers off `bootSeconds` after the start (a crashed guest), with `hangs` it
    /// stays running and never boots. `boots: false` is `fails`.
    public struct BootBehaviour: Sendable, Codable, Equatable {
        /// What happens after the start.
        public enum Mode: String, Sendable, Codable, CaseIterable { case ok, fails, hangs }
        /// `boots` (default true); false is the same as mode `fails`.
        public var boots: Bool
        /// `boot_seconds` (default 10): from the end of the start task to booted (or powered off).
        public var bootSeconds: Double
        /// `agent` (default false): a QEMU guest agent runs in the guest once booted.
        public var agent: Bool
        /// `mode` (default ok).
        public var mode: Mode

        /// A behaviour (the defaults: boots in 10 s, no agent).
        public init(boots: Bool = true, bootSeconds: Double = 10, agent: Bool = false, mode: Mode = .ok) {
            self.boots = boots
            self.bootSeconds = bootSeconds
            self.agent = agent
            self.mode = mode
        }

        /// The mode in effect (`boots: false` → `fails`).
        public var effectiveMode: Mode { boots ? mode : .fails }
    }

    /// Keys a scenario's `extra_config` may not set: the simulator renders them from other keys.
    static let renderedConfigKeys: Set<String> = ["digest", "lock", "parent", "vmgenid", "name", "hostname", "tags",
                                                  "description", "onboot", "protection", "snapshots", "pending"]

    /// `memory_mib` (16 to 4194304) and `extra_config` (a mapping of config keys to scalar
    /// values) of one `backups:` entry.
    static func parseDrillKeys(_ m: StrictMapping, into g: inout BackedUpGuest) throws(ConfigError) {
        if let mib = try m.int("memory_mib", range: 16...4_194_304) { g.memoryMiB = mib }
        guard let em = try m.mapping("extra_config") else { return }
        for key in em.keys {
            guard let first = key.first, first.isASCII, first.isLowercase,
                  key.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || "_.-".contains($0)) }) else {
                throw em.error(key, em.node(key), "'\(key)' is not a config key (lower-case letters, digits, _ . -)")
            }
            guard !renderedConfigKeys.contains(key) else {
                throw em.error(key, em.node(key), "'\(key)' is rendered by the simulator from other scenario keys")
            }
            guard let value = try em.string(key), !value.isEmpty, !value.contains("\n") else {
                throw em.error(key, em.node(key), "expected a one-line value")
            }
            g.extraConfig[key] = value
        }
        try em.finish()
    }

    /// The top-level `boot:` map (VMID → `{boots, boot_seconds, agent, mode}`),
    /// `node_memory_bytes` and `node_memory_used_bytes`.
    static func parseDrillTopLevel(_ root: StrictMapping, into s: inout Scenario) throws(ConfigError) {
        if let total = try root.int("node_memory_bytes", range: 1 << 20...1 << 50) { s.nodeMemoryBytes = Int64(total) }
        if let used = try root.int("node_memory_used_bytes", range: 0...1 << 50) {
            guard Int64(used) <= s.nodeMemoryBytes else {
                throw root.error("node_memory_used_bytes", root.node("node_memory_used_bytes"), "must not exceed node_memory_bytes (\(s.nodeMemoryBytes))")
            }
            s.nodeMemoryUsedBytes = Int64(used)
        }
        guard let bm = try root.mapping("boot") else { return }
        for key in bm.keys {
            guard let vmid = Int(key), (100...999_999_999).contains(vmid) else {
                throw bm.error(key, bm.node(key), "expected a VMID from 100 to 999999999 as key")
            }
            guard let m = try bm.mapping(key) else { throw bm.error(key, nil, "expected a mapping {boots, boot_seconds, agent, mode}") }
            var b = BootBehaviour()
            b.boots = try m.bool("boots") ?? true
            b.bootSeconds = try m.double("boot_seconds", range: 0...86_400) ?? 10
            b.agent = try m.bool("agent") ?? false
            if let text = try m.string("mode") {
                guard let mode = BootBehaviour.Mode(rawValue: text) else { throw m.error("mode", m.node("mode"), "expected ok, fails or hangs") }
                b.mode = mode
            }
            try m.finish()
            s.boot[vmid] = b
        }
        try bm.finish()
    }
}
