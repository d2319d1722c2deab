import ProxmoxAPI
import StandbyCore
@testable import StandbyService
import Testing

/// The per-guest families written from the snapshot: exposition-format escaping, the series a
/// guest without a copy has, exactly one state at 1, counters as integers.
@Suite("Per-guest exposition")
struct GuestExpositionTests {
    static func guest(name: String, restored: StatusSnapshot.Backup?, state: GuestState) -> StatusSnapshot.Guest {
        StatusSnapshot.Guest(
            key: GuestKey(source: "pbs-prod", vmid: 101), type: .vm, name: name, targetVmid: 101, targetNode: "pve-standby",
            state: state, blockedReason: nil, blockedDetail: nil, restored: restored,
            latest: .init(volid: "pbs-prod:backup/vm/101/2026-11-26T10:00:00Z", backupTime: 1_795_000_000, size: 1),
            pendingBackups: 1, rpoTarget: 7200, priority: 0, progress: 0.25, consecutiveFailures: 2,
            lastAttemptAt: nil, lastSuccessAt: nil, lastDuration: nil, nextRetryAt: nil, lastError: nil,
            restoresSucceeded: 3, restoresFailed: 2, restoredBytesTotal: 1 << 33, history: [])
    }

    @Test func labelValuesAreEscapedAndAGuestWithoutCopyHasNoLag() {
        var buffer: [UInt8] = []
        GuestExposition.write([Self.guest(name: "we\"b\\1\nx", restored: nil, state: .restoring)], now: 1_795_003_600, into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.contains(#"pbs_standby_guest_info{source="pbs-prod",vmid="101",type="vm",name="we\"b\\1\nx",target_vmid="101",target_node="pve-standby"} 1.0"#))
        #expect(!text.contains("pbs_standby_restore_lag_seconds"), "no copy, no lag series")
        #expect(text.contains(#"pbs_standby_restore_progress_ratio{source="pbs-prod",vmid="101",type="vm"} 0.25"#))
        #expect(text.contains(#"pbs_standby_restores_total{source="pbs-prod",vmid="101",type="vm",result="failure"} 2"#))
        #expect(text.contains(#"pbs_standby_restored_bytes_total{source="pbs-prod",vmid="101",type="vm"} 8589934592"#))
        let states = text.split(separator: "\n").filter { $0.hasPrefix("pbs_standby_guest_state{") }
        #expect(states.count == GuestState.allCases.count)
        #expect(states.filter { $0.hasSuffix(" 1.0") } == [#"pbs_standby_guest_state{source="pbs-prod",vmid="101",type="vm",state="restoring"} 1.0"#])
        // Every sample line belongs to a family announced by HELP and TYPE.
        let families = Set(text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(families.contains(line.prefix { $0 != "{" }), "\(line)")
        }
    }

    @Test func lagIsComputedAtRenderTime() {
        var buffer: [UInt8] = []
        let restored = StatusSnapshot.Backup(volid: "pbs-prod:backup/vm/101/2026-11-26T10:00:00Z", backupTime: 1_795_000_000, size: 1)
        GuestExposition.write([Self.guest(name: "web", restored: restored, state: .idle)], now: 1_795_003_600, into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.contains(#"pbs_standby_restore_lag_seconds{source="pbs-prod",vmid="101",type="vm"} 3600.0"#))
        #expect(text.contains(#"pbs_standby_restored_backup_timestamp_seconds{source="pbs-prod",vmid="101",type="vm"} 1795000000.0"#))
        #expect(text.contains(#"pbs_standby_restore_progress_ratio{source="pbs-prod",vmid="101",type="vm"} 0.0"#), "0 when not restoring")
    }

    @Test func noGuestsWriteNothing() {
        var buffer: [UInt8] = []
        GuestExposition.write([], now: 0, into: &buffer)
        #expect(buffer.isEmpty)
    }
}
