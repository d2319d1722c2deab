import ConfigSupport
import Synchronization

/// A budget of password checks per client: a token bucket of `burst` tokens per client key,
/// refilled by one token every `refillInterval`.
///
/// Every bcrypt check costs a token, taken before the check; a successful check gives it
/// back. So a client that keeps sending wrong passwords runs at most `burst` bcrypt checks,
/// then one per `refillInterval`, and is told to retry later in between (no bcrypt at all).
/// At most `maxClients` buckets are kept: when full, buckets that have refilled are dropped,
/// then the fullest ones, so the table cannot grow with the number of addresses seen.
final class AuthFailureLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    /// Checks a client may fail in a row before it must wait.
    let burst: Int
    /// The time that gives a client one check back.
    let refillInterval: Duration
    /// Most clients tracked at once.
    let maxClients: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let buckets = Mutex<[String: Bucket]>([:])

    /// A limiter; `now` is the clock (tests move it by hand).
    init(burst: Int, refillInterval: Duration, maxClients: Int = 4096,
         now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.burst = max(1, burst)
        self.refillInterval = refillInterval > .zero ? refillInterval : .seconds(1)
        self.maxClients = max(1, maxClients)
        self.now = now
    }

    /// Seconds the client must wait before its next check, or nil when it has a token now.
    /// Takes nothing.
    func retryAfter(client: String) -> Int? {
        let t = now()
        return buckets.withLock { table in
            guard var bucket = table[client] else { return nil }
            refill(&bucket, at: t)
            return bucket.tokens >= 1 ? nil : secondsUntilToken(bucket)
        }
    }

    /// Takes a token for one check: nil when taken, else the seconds to wait (nothing taken).
    func acquire(client: String) -> Int? {
        let t = now()
        return buckets.withLock { table in
            var bucket = table[client] ?? Bucket(tokens: Double(burst), updated: t)
            refill(&bucket, at: t)
            guard bucket.tokens >= 1 else {
                table[client] = bucket
                return secondsUntilToken(bucket)
            }
            bucket.tokens -= 1
            if table[client] == nil, table.count >= maxClients { makeRoom(&table, at: t) }
            table[client] = bucket
            return nil
        }
    }

    /// Gives back the token of a check that succeeded (or was not run).
    func refund(client: String) {
        let t = now()
        buckets.withLock { table in
            guard var bucket = table[client] else { return }
            refill(&bucket, at: t)
            bucket.tokens = min(Double(burst), bucket.tokens + 1)
            table[client] = bucket
        }
    }

    /// The number of clients tracked (tests).
    var trackedClients: Int { buckets.withLock { $0.count } }

    private func refill(_ bucket: inout Bucket, at t: ContinuousClock.Instant) {
        let gained = (t - bucket.updated) / refillInterval
        if gained > 0 {
            bucket.tokens = min(Double(burst), bucket.tokens + gained)
            bucket.updated = t
        }
    }

    private func secondsUntilToken(_ bucket: Bucket) -> Int {
        let seconds = (1 - bucket.tokens) * refillInterval.seconds
        return max(1, Int((seconds - 1e-6).rounded(.up)))  // 1e-6: 2.0000000000000004 s is 2 s
    }

    private func makeRoom(_ table: inout [String: Bucket], at t: ContinuousClock.Instant) {
        for (key, var bucket) in table {
            refill(&bucket, at: t)
            if bucket.tokens >= Double(burst) { table[key] = nil } else { table[key] = bucket }
        }
        while table.count >= maxClients, let fullest = table.max(by: { $0.value.tokens < $1.value.tokens })?.key {
            table[fullest] = nil
        }
    }
}
