import Foundation
import StandbyCore
import Testing

/// The bounded label values are a contract (shared/design/METRICS.md): every value the code can
/// emit is documented in the README.
@Suite("Label contract")
struct ContractTests {
    static let readme: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)) ?? ""
    }()

    /// The README paragraph that starts with `label` (up to the next blank line).
    static func paragraph(_ label: String) -> String {
        guard let start = readme.range(of: label) else { return "" }
        let rest = readme[start.lowerBound...]
        return String(rest[..<(rest.range(of: "\n\n")?.lowerBound ?? rest.endIndex)])
    }

    static func codes(in text: String) -> Set<String> {
        Set(text.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
            .filter { $0.range(of: "^[a-z_]+$", options: .regularExpression) != nil })
    }

    @Test func everyFailureReasonIsDocumented() {
        let documented = Self.codes(in: Self.paragraph("**Failure reasons**"))
        let code = Set(FailureReason.allCases.map(\.rawValue))
        #expect(code.isSubset(of: documented), "undocumented: \(code.subtracting(documented).sorted())")
    }

    @Test func blockedReasonsAndStatesAreDocumented() {
        let blocked = Self.codes(in: Self.paragraph("**Blocked reasons**"))
        #expect(Set(BlockReason.allCases.map(\.rawValue)).isSubset(of: blocked))
        for state in GuestState.allCases { #expect(Self.readme.contains("`\(state.rawValue)`"), "state \(state.rawValue)") }
    }
}
