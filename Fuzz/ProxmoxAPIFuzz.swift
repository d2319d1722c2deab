// libFuzzer harness for the PVE-facing parsers: the JSON decoders behind ProxmoxClient, the
// UPID and volid parsers, and the task-log progress parser. scripts/fuzz.sh compiles it together
// with Sources/ProxmoxAPI (without the NIO transport) using `swiftc -sanitize=fuzzer`, so the
// parsers are coverage-instrumented. The first input byte picks the target; the rest is the input.
// Properties: an error or a value, never a crash; parsed UPIDs and volids print back to themselves;
// the progress ratio stays within 0…1.
import Foundation

struct CannedTransport: ProxmoxTransport {
    let body: [UInt8]
    var runsTasksSynchronously: Bool { false }
    var endpointDescription: String { "canned" }
    func call(_ method: APIMethod, _ path: String, parameters: [(String, String)],
              onOutput: (@Sendable (String) -> Void)?) async throws(ProxmoxError) -> JSONValue {
        try JSONValue.parse(body, path: path)["data"] ?? .null
    }
}

/// Runs `body` to completion from libFuzzer's synchronous callback.
func blocking(_ body: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await body()
        done.signal()
    }
    done.wait()
}

let fuzzUPID = UPID(parsing: "UPID:pve:0002A3F1:01B7C2D4:6592E100:qmrestore:100:root@pam:")!

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let text = String(decoding: bytes, as: UTF8.self)
    switch data[0] % 4 {
    case 0:
        let client = ProxmoxClient(transport: CannedTransport(body: bytes))
        blocking {
            _ = try? await client.backups(node: "n", storage: "pbs")
            _ = try? await client.guests()
            _ = try? await client.taskStatus(fuzzUPID)
            _ = try? await client.taskLog(fuzzUPID)
            _ = try? await client.guestConfig(node: "n", type: .vm, vmid: 100)
            _ = try? await client.storageStatus(node: "n", storage: "local-lvm")
            _ = try? await client.tasks(node: "n")
        }
    case 1:
        if let u = UPID(parsing: text), UPID(parsing: u.description) != u {
            fatalError("UPID round trip changed \(text.debugDescription) into \(u.description.debugDescription)")
        }
    case 2:
        if let v = Volid(parsing: text), Volid(parsing: v.description) != v {
            fatalError("volid round trip changed \(text.debugDescription) into \(v.description.debugDescription)")
        }
    default:
        var tracker = RestoreProgress(diskSizes: [1 << 30, 4 << 30])
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            _ = RestoreProgress.parseProgress(String(line))
            _ = RestoreProgress.parseComplete(String(line))
            tracker.consume(String(line))
            guard (0...1).contains(tracker.ratio) else { fatalError("progress ratio \(tracker.ratio) after \(line.debugDescription)") }
        }
        _ = formDecode(text)
    }
    return 0
}
