// libFuzzer harness for the operator-facing parsers: the config file (StrictYAML over Yams, then
// StandbyConfig), durations and VMID selections. scripts/fuzz.sh compiles it together with
// Sources/ConfigSupport, Sources/StandbyCore/Config.swift and Sources/ProxmoxAPI as one module
// (their imports of each other dropped) using `swiftc -sanitize=fuzzer`, and links the Yams objects
// SwiftPM built (not instrumented: coverage guides through our code, not libyaml's).
// The first input byte picks the target; the rest is the input.
// Properties: an error or a value, never a crash or a hang (libFuzzer's -timeout); a config error
// names a key path and, when it gives a line, a line of the file; a formatted duration parses back
// to itself; a selection answers for any VMID.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data + 1, count: size - 1), as: UTF8.self)
    switch data[0] % 3 {
    case 0:
        do {
            _ = try StandbyConfig.parse(yaml: text)
        } catch {
            // YAML breaks lines at \n, \r, \r\n, NEL, LS and PS; Character.isNewline covers
            // those (and VT/FF too, which only loosens the bound). Counted over the text's
            // characters, not a filtered String, where "\r" and "\n" would join into one "\r\n".
            let lines = text.reduce(1) { $0 + ($1.isNewline ? 1 : 0) }
            if error.description.isEmpty { fatalError("empty config error for \(text.debugDescription)") }
            if let line = error.line, !(1...max(lines, 1) + 1).contains(line) {
                fatalError("config error at line \(line) of a \(lines)-line file: \(error)")
            }
        }
    case 1:
        if let d = parseDuration(text), parseDuration(formatDuration(d)).map({ $0.components.seconds }) != d.components.seconds {
            fatalError("duration \(text.debugDescription) formats as \(formatDuration(d)), which does not parse back")
        }
    default:
        let items = text.split(separator: "\n").map(String.init)
        if let selection = try? Selection.parse(items, path: "sources[0].include", line: 1) {
            for vmid in [100, 101, 4242, 999_999_999] { _ = selection.contains(vmid) }
        }
    }
    return 0
}
