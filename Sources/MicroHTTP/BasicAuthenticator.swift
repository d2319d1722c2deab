import CCrypt
import Foundation
import Synchronization

/// Checks HTTP basic-auth credentials against bcrypt hashes with libcrypt's `crypt_rn`
/// (libxcrypt implements `$2b$`/`$2y$`/`$2a$`; the cost stored in the hash is honoured).
///
/// bcrypt is slow on purpose (tens of milliseconds at cost 10), so, like exporter-toolkit,
/// credentials that passed once are remembered in a bounded in-memory set. Unknown users
/// are checked against a dummy hash so their answer takes as long as a known user's, and
/// the final comparison of hashes is constant-time.
public final class BasicAuthenticator: Sendable {
    private let users: [String: String]
    private let passed = Mutex<Set<String>>([])
    private static let cacheLimit = 1024
    /// bcrypt("not-a-password", cost 10); compared for unknown users to even out the timing.
    private static let dummyHash = "$2b$10$5W4/Wyc6MwEKKeCUuRnFlepeetp5JRAg7OMxO9wB1i98tYiywjHo2"

    /// Creates an authenticator for user → bcrypt hash.
    public init(users: [String: String]) {
        self.users = users
    }

    /// Whether any users are configured (no users = no authentication).
    public var isEnabled: Bool { !users.isEmpty }

    /// Whether the string has the shape of a bcrypt hash that libxcrypt checks.
    public static func isBcrypt(_ hash: String) -> Bool {
        guard ["$2y$", "$2b$", "$2a$"].contains(where: hash.hasPrefix), hash.utf8.count == 60,
              let cost = Int(hash.dropFirst(4).prefix(2)) else { return false }
        return (4...31).contains(cost)
    }

    /// Checks an `Authorization: Basic …` header value; returns the user name when valid.
    public func authenticate(authorizationHeader: String?) -> String? {
        guard let header = authorizationHeader else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let data = Data(base64Encoded: parts[1].trimmingCharacters(in: .whitespaces)),
              let decoded = String(data: data, encoding: .utf8),
              let colon = decoded.firstIndex(of: ":") else { return nil }
        let user = String(decoded[..<colon])
        let password = String(decoded[decoded.index(after: colon)...])
        return check(user: user, password: password) ? user : nil
    }

    /// Checks a user name and password.
    public func check(user: String, password: String) -> Bool {
        let hash = users[user]
        let cacheKey = "\(user)\u{0}\(hash ?? "")\u{0}\(password)"
        if hash != nil, passed.withLock({ $0.contains(cacheKey) }) { return true }
        let ok = Self.bcryptMatches(password: password, hash: hash ?? Self.dummyHash) && hash != nil
        if ok {
            passed.withLock { set in
                if set.count >= Self.cacheLimit { set.removeAll() }
                set.insert(cacheKey)
            }
        }
        return ok
    }

    /// Runs crypt(3) with the hash as setting and compares the result in constant time.
    static func bcryptMatches(password: String, hash: String) -> Bool {
        let size = Int(pbs_crypt_data_size())
        let data = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { data.deallocate() }
        memset(data, 0, size)
        guard let out = crypt_rn(password, hash, data, Int32(size)) else { return false }
        return constantTimeEquals(Array(String(cString: out).utf8), Array(hash.utf8))
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
