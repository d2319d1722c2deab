import Foundation
import ProxmoxAPI
import Testing

/// A temporary directory removed when the value goes away.
private final class ScratchDir {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pbs-standby-secrets-\(UUID().uuidString)")
    init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// The API token: refused from a file others may read, never handed to a child process.
@Suite("API token handling")
struct SecretHandlingTests {
    static let token = "pbs-standby@pve!standby=0b1c7e2a-secret-value"

    /// Like ssh with a private key: a token file with group or other bits is refused, naming
    /// the file and its mode and saying `chmod 600`; 600 (and 400) load.
    @Test func tokenFileReadableByOthersIsRefused() throws {
        let dir = try ScratchDir()
        let file = dir.path("token")
        try (Self.token + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        for mode in [0o644, 0o640, 0o604, 0o620] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
            do {
                _ = try APIToken.load(file: file, environment: [:])
                Issue.record("mode \(String(mode, radix: 8)) was accepted")
            } catch {
                let text = "\(error)"
                #expect(text.contains(file), "names the file: \(text)")
                #expect(text.contains("0" + String(mode, radix: 8)), "names the mode: \(text)")
                #expect(text.contains("chmod 600"), "says what to do: \(text)")
                #expect(!text.contains("secret-value"), "never shows the secret")
            }
        }
        for mode in [0o600, 0o400] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file)
            let loaded = try APIToken.load(file: file, environment: [:])
            #expect(loaded.tokenID == "pbs-standby@pve!standby")
        }
        // A missing file is still named.
        #expect(throws: ProxmoxError.self) { try APIToken.load(file: dir.path("absent"), environment: [:]) }
    }

    /// pvesh (here a shell script that dumps its environment) does not receive our token
    /// variables, neither inherited nor through the transport's environment; other variables pass.
    @Test func pveshChildDoesNotSeeTheToken() async throws {
        let dir = try ScratchDir()
        let script = dir.path("pvesh"), dump = dir.path("env.txt")
        try """
        #!/bin/sh
        env > "$PBS_TEST_ENV_DUMP"
        echo '{"ok":1}'
        """.write(toFile: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: script)
        let transport = try PveshTransport(executable: script, environment: [
            "PBS_TEST_ENV_DUMP": dump,
            "PBS_STANDBY_TOKEN": Self.token,
            "PBS_STANDBY_SIM_TOKEN": Self.token,
        ])
        let result = try await transport.call(.get, "/version", parameters: [], onOutput: nil)
        #expect(result["ok"]?.int == 1)
        let seen = try String(contentsOfFile: dump, encoding: .utf8)
        #expect(seen.contains("PBS_TEST_ENV_DUMP=\(dump)"), "the child's environment was captured")
        #expect(!seen.contains("PBS_STANDBY_TOKEN"))
        #expect(!seen.contains("PBS_STANDBY_SIM_TOKEN"))
        #expect(!seen.contains("secret-value"))

        // The same filter applies to what the child inherits from this process.
        let env = PveshTransport.childEnvironment(
            inherited: ["PATH": "/usr/bin", "PBS_STANDBY_TOKEN": Self.token, "PBS_STANDBY_SIM_TOKEN": Self.token],
            extra: ["PVESH_STANDIN_URL": "http://127.0.0.1:1"])
        #expect(env == ["PATH": "/usr/bin", "PVESH_STANDIN_URL": "http://127.0.0.1:1"])
    }
}
