import CCrypt
import Foundation
import Synchronization

/// Checks HTTP basic-auth credentials against bcrypt hashes with libcrypt's `crypt_rn`
/// (libxcrypt implements `$2b$`/`$2y$`/`$2a$`; the cost stored in the hash is honoured).
///
/// bcrypt is slow on purpose (tens of milliseconds at cost 10) and runs on libmicrohttpd's few
/// connection threads, so its use is bounded three ways:
/// - credentials that passed once are remembered in a bounded in-memory set, like
///   exporter-toolkit does: a scraper's requests run no bcrypt;
/// - each client (IPv4 address, IPv6 /64) has a budget of checks (``AuthFailureLimiter``):
///   after ``Limits/failureBurst`` failures it is answered 429 with `Retry-After`, without
///   bcrypt, until the budget refills. That holds even for the right password, or the limit
///   would not limit password guessing once a scraper has filled the cache;
/// - at most ``Limits/maxConcurrentChecks`` bcrypt checks run at once; a request beyond that is
///   answered 503 with `Retry-After` at once, so wrong passwords sent from many addresses
///   cannot occupy every connection thread.
///
/// Unknown users are checked against a dummy hash of the configured users' cost, so their answer
/// takes as long as a known user's, and the final comparison of hashes is constant-time.
public final class BasicAuthenticator: Sendable {
    /// What to answer a request's credentials.
    public enum Decision: Equatable, Sendable {
        /// Valid credentials of this user.
        case authenticated(user: String)
        /// Missing, malformed or wrong credentials: 401.
        case denied
        /// This client failed too often: 429, retry after so many seconds. No bcrypt ran.
        case throttled(retryAfter: Int)
        /// Every bcrypt slot is taken: 503, retry after so many seconds. No bcrypt ran.
        case busy(retryAfter: Int)
    }

    /// Bounds on the password checks.
    public struct Limits: Sendable, Equatable {
        /// Failed checks a client may make in a row before it must wait.
        public var failureBurst: Int
        /// The wait that gives a client one more check.
        public var failureRefillInterval: Duration
        /// bcrypt checks running at once, at most. With the server's default two threads, 1
        /// always leaves a thread for requests that need no bcrypt.
        public var maxConcurrentChecks: Int

        /// Limits: by default 10 failures in a row, then one check every 6 s; one check at a time.
        public init(failureBurst: Int = 10, failureRefillInterval: Duration = .seconds(6), maxConcurrentChecks: Int = 1) {
            self.failureBurst = failureBurst
            self.failureRefillInterval = failureRefillInterval
            self.maxConcurrentChecks = maxConcurrentChecks
        }
    }

    /// A bcrypt check: whether `password` matches `hash`.
    typealias Verifier = @Sendable (_ password: String, _ hash: String) -> Bool

    private let users: [String: String]
    private let passed = Mutex<Set<String>>([])
    private static let cacheLimit = 1024
    /// Checked for unknown user names: a hash of nothing, at the cost of the configured ones.
    let dummyHash: String
    private let limits: Limits
    private let limiter: AuthFailureLimiter
    private let verifier: Verifier
    private let checksRunning = Atomic<Int>(0)
    private let checksRun = Atomic<Int>(0)

    /// Creates an authenticator for user → bcrypt hash.
    public convenience init(users: [String: String], limits: Limits = Limits()) {
        self.init(users: users, limits: limits, verifier: nil)
    }

    /// Creates an authenticator whose bcrypt checks go through `verifier` (tests count or hold them).
    init(users: [String: String], limits: Limits, verifier: Verifier?,
         now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.users = users
        self.limits = limits
        self.dummyHash = Self.dummyHash(matching: users.values)
        self.limiter = AuthFailureLimiter(burst: limits.failureBurst, refillInterval: limits.failureRefillInterval, now: now)
        self.verifier = verifier ?? Self.bcryptMatches
    }

    /// Whether any users are configured (no users = no authentication).
    public var isEnabled: Bool { !users.isEmpty }

    /// bcrypt checks run so far, dummy ones included.
    public var bcryptRuns: Int { checksRun.load(ordering: .relaxed) }

    /// Whether the string has the shape of a bcrypt hash that libxcrypt checks.
    public static func isBcrypt(_ hash: String) -> Bool {
        guard ["$2y$", "$2b$", "$2a$"].contains(where: hash.hasPrefix), hash.utf8.count == 60,
              let cost = Int(hash.dropFirst(4).prefix(2)) else { return false }
        return (4...31).contains(cost)
    }

    /// Decides on an `Authorization: Basic …` header value sent by `client` (a key from the
    /// client's address), within the limits described on the type.
    public func authenticate(authorizationHeader: String?, client: String) -> Decision {
        guard let (user, password) = Self.credentials(authorizationHeader) else { return .denied }
        if let wait = limiter.retryAfter(client: client) { return .throttled(retryAfter: wait) }
        let hash = users[user]
        if hash != nil, isCached(user: user, hash: hash, password: password) { return .authenticated(user: user) }
        if let wait = limiter.acquire(client: client) { return .throttled(retryAfter: wait) }
        guard checksRunning.add(1, ordering: .acquiringAndReleasing).newValue <= max(1, limits.maxConcurrentChecks) else {
            checksRunning.subtract(1, ordering: .acquiringAndReleasing)
            limiter.refund(client: client)
            return .busy(retryAfter: 1)
        }
        let ok = verify(user: user, password: password, hash: hash)
        checksRunning.subtract(1, ordering: .acquiringAndReleasing)
        guard ok else { return .denied }
        limiter.refund(client: client)
        return .authenticated(user: user)
    }

    /// Checks a user name and password (the cache, then bcrypt), without the limits.
    public func check(user: String, password: String) -> Bool {
        let hash = users[user]
        if hash != nil, isCached(user: user, hash: hash, password: password) { return true }
        return verify(user: user, password: password, hash: hash)
    }

    /// The user name and password of a `Basic` header value; nil when missing or malformed.
    static func credentials(_ header: String?) -> (user: String, password: String)? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let data = Data(base64Encoded: parts[1].trimmingCharacters(in: .whitespaces)),
              let decoded = String(data: data, encoding: .utf8),
              let colon = decoded.firstIndex(of: ":") else { return nil }
        return (String(decoded[..<colon]), String(decoded[decoded.index(after: colon)...]))
    }

    private static func cacheKey(user: String, hash: String?, password: String) -> String {
        "\(user)\u{0}\(hash ?? "")\u{0}\(password)"
    }

    private func isCached(user: String, hash: String?, password: String) -> Bool {
        let key = Self.cacheKey(user: user, hash: hash, password: password)
        return passed.withLock { $0.contains(key) }
    }

    /// Runs bcrypt against the user's hash, or the dummy hash for an unknown user; remembers a success.
    private func verify(user: String, password: String, hash: String?) -> Bool {
        checksRun.add(1, ordering: .relaxed)
        let ok = verifier(password, hash ?? dummyHash) && hash != nil
        if ok {
            let key = Self.cacheKey(user: user, hash: hash, password: password)
            passed.withLock { set in
                if set.count >= Self.cacheLimit { set.removeAll() }
                set.insert(key)
            }
        }
        return ok
    }

    /// A bcrypt hash of no password, at the highest cost among `hashes` (10 when there are none),
    /// so checking an unknown user name costs what checking a known one does.
    static func dummyHash(matching hashes: some Sequence<String>) -> String {
        let cost = hashes.compactMap { Int($0.dropFirst(4).prefix(2)) }.filter { (4...31).contains($0) }.max() ?? 10
        // Salt and checksum of bcrypt("not-a-password", cost 10); only the cost is replaced.
        let tail = "$5W4/Wyc6MwEKKeCUuRnFlepeetp5JRAg7OMxO9wB1i98tYiywjHo2"
        return "$2b$" + (cost < 10 ? "0" : "") + String(cost) + tail
    }

    /// Runs crypt(3) with the hash as setting and compares the result in constant time.
    static func bcryptMatches(password: String, hash: String) -> Bool {
        guard let out = crypt(password: password, setting: hash) else { return false }
        return constantTimeEquals(Array(out.utf8), Array(hash.utf8))
    }

    /// crypt(3) through the reentrant `crypt_rn`; nil when libcrypt refuses the setting.
    static func crypt(password: String, setting: String) -> String? {
        let size = Int(pbs_crypt_data_size())
        let data = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { data.deallocate() }
        memset(data, 0, size)
        guard let out = crypt_rn(password, setting, data, Int32(size)) else { return nil }
        return String(cString: out)
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
