import ConfigSupport
import StandbyCore
import Testing

/// `proxmox.url`: the token goes in clear text over http://, so http:// is allowed only to a
/// literal loopback address; the URL is parsed, not prefix-matched.
@Suite("Config: proxmox.url")
struct ConfigSecurityTests {
    /// The error for a config whose proxmox.url is `url` (on line 3), or nil when accepted.
    func error(url: String, transport: String = "https") -> ConfigError? {
        let yaml = """
        proxmox:
          transport: \(transport)
          url: "\(url)"
        sources:
          - storage: pbs-prod
        """
        do { _ = try StandbyConfig.parse(yaml: yaml); return nil } catch { return error }
    }

    @Test(arguments: [
        "http://localhost.attacker.example",
        "http://127.0.0.1.nip.io",
        "http://127.0.0.1.nip.io:8006",
        "http://127.0.0.1@attacker.example",
        "http://pve.example:8006",
        "http://192.168.1.10:8006",
        "http://[::2]:8006",
        "http://[::ffff:192.168.1.10]:8006",
    ])
    func plainHTTPBeyondLoopbackIsRefused(_ url: String) throws {
        let e = try #require(error(url: url), "\(url) was accepted")
        #expect(e.path == "proxmox.url")
        #expect(e.line == 3)
        #expect(e.description.hasPrefix("proxmox.url (line 3): "))
        if !url.contains("@") { #expect(e.message.contains("clear text"), "\(e)") }
    }

    @Test func localhostByNameIsRefusedSayingWhy() throws {
        let e = try #require(error(url: "http://localhost:8006"))
        #expect(e.path == "proxmox.url" && e.line == 3)
        #expect(e.message.contains("'localhost' is a name"), "\(e)")
        #expect(e.message.contains("http://127.0.0.1:PORT"), "\(e)")
    }

    @Test(arguments: [
        "https://127.0.0.1:8006",
        "https://pve.example:8006",
        "https://pve.example:8006/",
        "https://[2001:db8::5]:8006",
        "HTTPS://pve.example",
        "http://127.0.0.1:8006",
        "http://127.9.8.7:18006",
        "http://[::1]:8006",
        "http://[::1]",
    ])
    func acceptedURLs(_ url: String) {
        #expect(error(url: url) == nil, "\(error(url: url).map(String.init(describing:)) ?? "")")
    }

    @Test(arguments: [
        ("ftp://pve.example", "not an https:// URL"),
        ("pve.example:8006", "not an https:// URL"),
        ("https://", "not a host name"),
        ("https://pve.example:99999", "port '99999'"),
        ("https://pve.example:+80", "port '+80'"),
        ("https://pve.example:8006/api2/json", "unexpected '/api2/json'"),
        ("https://pve.example:8006?x=1", "unexpected '?x=1'"),
        ("https://[::1:8006", "no closing ']'"),
        ("https://pve_example!:8006", "not a host name"),
    ])
    func malformedURLsNameTheProblem(_ url: String, _ expected: String) throws {
        let e = try #require(error(url: url), "\(url) was accepted")
        #expect(e.path == "proxmox.url" && e.line == 3)
        #expect(e.message.contains(expected), "\(e)")
    }

    /// The pvesh transport does not use the URL.
    @Test func pveshTransportIgnoresTheURL() {
        #expect(error(url: "http://pve.example", transport: "pvesh") == nil)
    }
}
