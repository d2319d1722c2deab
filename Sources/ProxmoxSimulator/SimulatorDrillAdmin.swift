import Foundation
import ProxmoxAPI

/// Test accessors for DR drills: a guest's whole config, and a fingerprint of its volumes.
extension PVESimulator {
    /// Guest `vmid`'s config as `GET …/config` renders it now (pending values applied), without
    /// `digest`, every value as text (`onboot: "1"`; a CT's `lxc` pairs under their own keys);
    /// nil when absent. Unlike ``guestConfigSnapshot(_:)`` (a few typed fields), this is the
    /// whole config, to compare a guest before and after a drill.
    public func guestConfigSnapshot(vmid: Int) -> [String: String]? {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid].map { flatConfig($0) }
        }
    }

    /// A fingerprint of guest `vmid`'s volumes (nil when absent): changes when their content
    /// does — a restore, a start (a running guest writes its disks), a clone's new volumes —
    /// and comes back when a rollback brings back the snapshot's content. Made of the disk sizes
    /// and storages, the data generation (SimulatorState.swift `dataGeneration`), and with
    /// `image_dir` the bytes of each VM image file.
    public func guestVolumeFingerprint(vmid: Int) -> String? {
        let now = clock.now()
        let found: SimGuest? = state.withLock { s in
            settle(&s, now: now)
            return s.guests[vmid]
        }
        guard let g = found else { return nil }
        var h = FNV64()
        h.add("\(g.type.rawValue)|\(g.dataGeneration)")
        for (i, d) in g.disks.enumerated() {
            h.add("|\(g.storage(ofDisk: i)):\(d)")
            if g.type == .vm, let file = images?.imagePath(storage: g.storage(ofDisk: i), vmid: vmid, disk: i),
               let handle = FileHandle(forReadingAtPath: file) {
                while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty { h.add(chunk) }
                try? handle.close()
            }
        }
        return String(format: "%016llx", h.value)
    }

    /// The node's memory as `GET /nodes/{node}/status` reports it (bytes).
    public func nodeMemoryUse() -> (total: Int64, used: Int64) {
        let now = clock.now()
        return state.withLock { s in
            settle(&s, now: now)
            return nodeMemory(s)
        }
    }
}

/// FNV-1a, 64 bits: a cheap, stable digest for fingerprints (not for security).
struct FNV64 {
    /// The digest so far.
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    /// Mixes in bytes.
    mutating func add(_ bytes: some Sequence<UInt8>) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }

    /// Mixes in a text's UTF-8 bytes.
    mutating func add(_ text: String) { add(Array(text.utf8)) }
}
