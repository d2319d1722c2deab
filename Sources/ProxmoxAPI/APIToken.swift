import Foundation

/// A PVE API token `USER@REALM!TOKENID=SECRET` (reference §1.4). Read only from a file or the
/// environment, never from argv; its description never shows the secret.
public struct APIToken: Sendable, CustomStringConvertible {
    /// `USER@REALM!TOKENID`.
    public let tokenID: String
    private let secret: String

    /// Parses the one-line form; the split is at the last `=` as PVE does.
    public init(parsing line: String) throws(ProxmoxError) {
        let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let eq = text.lastIndex(of: "=") else {
            throw .configuration("API token: expected USER@REALM!TOKENID=SECRET (no '=' found)")
        }
        let id = String(text[..<eq]), secret = String(text[text.index(after: eq)...])
        let idPattern = #"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+$"#
        guard id.range(of: idPattern, options: .regularExpression) != nil else {
            throw .configuration("API token: the id '\(id)' is not USER@REALM!TOKENID")
        }
        guard !secret.isEmpty else { throw .configuration("API token: the secret after '=' is empty") }
        self.tokenID = id
        self.secret = secret
    }

    /// Loads the token from `PBS_STANDBY_TOKEN` if set, else from the file. Like ssh with a
    /// private key, a file that group or others may read is refused (it must be `chmod 600`).
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ProxmoxError) -> APIToken {
        if let env = environment["PBS_STANDBY_TOKEN"], !env.isEmpty { return try APIToken(parsing: env) }
        guard let file else { throw .configuration("no API token: set proxmox.token_file or PBS_STANDBY_TOKEN") }
        var info = stat()
        guard stat(file, &info) == 0 else {
            throw .configuration("cannot read the API token file '\(file)': \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o7777
        guard mode & 0o077 == 0 else {
            throw .configuration("the API token file '\(file)' has mode \(String(format: "%04o", mode)): "
                + "group or others may read or change it (like ssh with a key, this is refused); run chmod 600 '\(file)'")
        }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw .configuration("cannot read the API token file '\(file)'")
        }
        guard let line = text.split(whereSeparator: \.isNewline).first(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty && !$0.hasPrefix("#") }) else {
            throw .configuration("the API token file '\(file)' is empty")
        }
        return try APIToken(parsing: String(line))
    }

    /// The `Authorization` header value.
    public var headerValue: String { "PVEAPIToken=\(tokenID)=\(secret)" }

    /// Whether a presented header carries this token (constant-time on the secret).
    public func matches(authorizationHeader: String?) -> Bool {
        guard let h = authorizationHeader else { return false }
        let a = Array(h.utf8), b = Array(headerValue.utf8)
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// The whole `USER@REALM!ID=SECRET` (for the simulator to print once; never log it).
    public var fullText: String { "\(tokenID)=\(secret)" }

    public var description: String { "\(tokenID)=<redacted>" }
}
