import Foundation
import ProxmoxAPI
import StandbyCore
import StandbyService
import TestSupport
import Testing

/// The status document is one Codable type: what the server writes, `pbs-standby status` and the
/// tests read back unchanged; absent values are `null`, never missing keys (the schema requires
/// them; MonitoringTests validates the served document against deploy/api/status.schema.json).
@Suite("Status document")
struct StatusDocumentTests {
    @Test func roundTripsAndWritesNullsForAbsentValues() async throws {
        let rig = try Rig()
        await rig.once()
        let doc = StatusDocument(rig.runtime.reconciler.snapshot, now: rig.clock.now())
        #expect(doc.guests.count > 3)
        let bytes = doc.json()
        #expect(try StatusDocument.decode(bytes) == doc)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let guests = try #require(object["guests"] as? [[String: Any]])
        let blocked = try #require(guests.first { $0["vmid"] as? Int == 150 })
        #expect(blocked["restored"] is NSNull && blocked["lag_seconds"] is NSNull && blocked["progress"] is NSNull)
        #expect(blocked["blocked_reason"] as? String == "not_owned")
        let service = try #require(object["service"] as? [String: Any])
        #expect((service["state"] as? [String: Any])?["error"] is NSNull)
    }
}
