import Foundation
import Synchronization
import Testing
@testable import MicroHTTP

#if canImport(Glibc)
import Glibc
#endif

private func basic(_ credentials: String) -> [String: String] {
    ["Authorization": "Basic " + Data(credentials.utf8).base64EncodedString()]
}

/// bcrypt bounded on libmicrohttpd's threads, request bodies refused early; over real loopback sockets.
@Suite("HTTP server hardening")
struct HardeningTests {
    /// A burst of wrong passwords from one address is answered 429 (with Retry-After) after the
    /// failure budget, without bcrypt, while a scraper on another address is served throughout.
    @Test func wrongPasswordBurstFromOneClientIsThrottledWithoutBcrypt() throws {
        let server = try startServer { $0.web = WebConfig(basicAuthUsers: ["alice": aliceHash]) }
        defer { server.stop() }
        let auth = server.context.authenticator
        #expect(try fetch(server.port, "GET", "/hello", headers: basic("alice:s3cret")).status == 200)
        let afterLogin = auth.bcryptRuns
        #expect(afterLogin == 1)

        let port = server.port
        let attacker = Mutex<[RawConnection.Response?]>([])
        let scraper = Mutex<[Int]>([])
        // Four connections at a time send 200 wrong passwords from 127.0.0.2; meanwhile the
        // scraper (127.0.0.1, cached credentials) keeps asking.
        DispatchQueue.concurrentPerform(iterations: 5) { worker in
            if worker == 0 {
                for _ in 0..<20 {
                    let status = (try? fetch(port, "GET", "/hello", headers: basic("alice:s3cret")))?.status ?? 0
                    scraper.withLock { $0.append(status) }
                }
                return
            }
            for i in 0..<50 {
                let r = try? fetch(port, "GET", "/hello", headers: basic("alice:guess-\(worker)-\(i)"), source: "127.0.0.2")
                attacker.withLock { $0.append(r) }
            }
        }
        let scraped = scraper.withLock { $0 }
        #expect(scraped == Array(repeating: 200, count: 20), "the authenticated client is served during the burst")
        let answers = attacker.withLock { $0 }
        #expect(answers.count == 200 && answers.allSatisfy { $0 != nil }, "every bad request got an answer")
        let unauthorized = answers.filter { $0?.status == 401 }.count
        let throttled = answers.compactMap { $0 }.filter { $0.status == 429 }
        // 503: another of the four connections held the bcrypt slot at that moment.
        let busy = answers.compactMap { $0 }.filter { $0.status == 503 }
        #expect(unauthorized + throttled.count + busy.count == 200)
        #expect(throttled.count + busy.count >= 180, "most bad requests are answered without bcrypt")
        // How the bad requests split between 429 and 503 depends on how long bcrypt takes on this
        // machine against a loopback round trip (CI measured 145 : 44), so the split is not asserted;
        // the sequential phase below shows that, once no check runs, the limiter answers them all.
        #expect(throttled.count >= 1)
        #expect((throttled + busy).allSatisfy { Int($0.header("Retry-After") ?? "") ?? 0 >= 1 })
        // Exactly one bcrypt check per 401; none for a 429 or 503, none for the cached scraper.
        #expect(auth.bcryptRuns - afterLogin == unauthorized)
        #expect(unauthorized >= 10 && unauthorized <= 12, "the burst (10) plus at most one refill per 6 s")

        // One at a time (no bcrypt running, so no 503): every further bad request is answered 429.
        let sequential = try (0..<20).map { i in
            try fetch(port, "GET", "/hello", headers: basic("alice:again-\(i)"), source: "127.0.0.2").status
        }
        #expect(sequential == Array(repeating: 429, count: 20), "the limiter answers once the budget is spent")
        #expect(auth.bcryptRuns - afterLogin == unauthorized)

        // The throttled address is refused even with the right password: the limit also caps guessing.
        let right = try fetch(port, "GET", "/hello", headers: basic("alice:s3cret"), source: "127.0.0.2")
        #expect(right.status == 429)
        #expect(auth.bcryptRuns - afterLogin == unauthorized)
        // A third address still has its own budget.
        #expect(try fetch(port, "GET", "/hello", headers: basic("alice:wrong"), source: "127.0.0.3").status == 401)
    }

    /// While the only bcrypt slot is taken, another client's check is answered 503 at once
    /// (not queued on a connection thread), and a client with cached credentials is served.
    @Test func concurrentBcryptChecksAreCapped() throws {
        let entered = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let server = try startServer {
            $0.web = WebConfig(basicAuthUsers: ["alice": aliceHash])
            $0.passwordVerifier = { password, hash in
                if password == "held" { entered.signal(); release.wait() }
                return BasicAuthenticator.bcryptMatches(password: password, hash: hash)
            }
        }
        defer { server.stop() }
        let auth = server.context.authenticator
        #expect(try fetch(server.port, "GET", "/hello", headers: basic("alice:s3cret")).status == 200)

        let port = server.port
        let held = Mutex<Int>(0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let status = (try? fetch(port, "GET", "/hello", headers: basic("alice:held"), source: "127.0.0.4"))?.status ?? 0
            held.withLock { $0 = status }
            done.signal()
        }
        #expect(entered.wait(timeout: .now() + 10) == .success, "the held check started")
        let busy = try fetch(port, "GET", "/hello", headers: basic("alice:other"), source: "127.0.0.5")
        #expect(busy.status == 503)
        #expect(busy.header("Retry-After") == "1")
        #expect(try fetch(port, "GET", "/hello", headers: basic("alice:s3cret")).status == 200, "cached credentials need no slot")
        #expect(auth.bcryptRuns == 2, "the login and the held check; the refused one ran none")
        release.signal()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(held.withLock { $0 } == 401)
        // The refused client lost nothing from its budget and can try again.
        #expect(try fetch(port, "GET", "/hello", headers: basic("alice:s3cret"), source: "127.0.0.5").status == 200)
    }

    /// An unknown user name costs one bcrypt check, against a dummy hash of the configured cost.
    @Test func unknownUserIsCheckedAgainstDummyHashOfTheSameCost() throws {
        let server = try startServer { $0.web = WebConfig(basicAuthUsers: ["alice": aliceHash]) }
        defer { server.stop() }
        #expect(try fetch(server.port, "GET", "/hello", headers: basic("mallory:s3cret")).status == 401)
        #expect(server.context.authenticator.bcryptRuns == 1)

        let seen = Mutex<[String]>([])
        let auth = BasicAuthenticator(users: ["alice": aliceHash], limits: .init(), verifier: { password, hash in
            seen.withLock { $0.append(hash) }
            return BasicAuthenticator.bcryptMatches(password: password, hash: hash)
        })
        #expect(!auth.check(user: "mallory", password: "s3cret"))
        #expect(seen.withLock { $0 } == [auth.dummyHash])
        #expect(auth.dummyHash.hasPrefix("$2b$05$"), "cost 05 like alice's hash")
        #expect(BasicAuthenticator.isBcrypt(auth.dummyHash))
        // libcrypt really runs bcrypt on it (a refused setting would answer at once).
        let out = BasicAuthenticator.crypt(password: "x", setting: auth.dummyHash)
        #expect(out?.count == 60 && out?.hasPrefix(String(auth.dummyHash.prefix(29))) == true)

        let cost12 = "$2b$12$" + aliceHash.dropFirst(7)
        #expect(BasicAuthenticator.dummyHash(matching: [aliceHash, cost12]).hasPrefix("$2b$12$"))
        #expect(BasicAuthenticator.dummyHash(matching: []).hasPrefix("$2b$10$"))
    }

    /// A body on a route that takes none is refused from the headers alone: 413 before
    /// authentication, without waiting for (or buffering) the body, and the connection closes.
    @Test func requestBodiesAreRefusedBeforeAuthAndBeforeReading() throws {
        let server = try startServer {
            $0.web = WebConfig(basicAuthUsers: ["alice": aliceHash])
            $0.maxBodyBytes = 1024
        }
        defer { server.stop() }
        for head in [
            "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
            "GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HEAD /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
            "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            "GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
            // A route that takes a body still refuses one over the limit before it arrives.
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
        ] {
            let c = try RawConnection(port: server.port)
            try c.send(head)  // the body is never sent: an answer proves the server did not wait for it
            let r = try c.readResponse(timeout: 10, head: head.hasPrefix("HEAD"))
            #expect(r.status == 413, "\(head.prefix(while: { $0 != "\r" }))")
            #expect(r.header("Connection")?.lowercased() == "close")
            #expect(c.closedByPeer(within: 10))
        }
        #expect(server.context.authenticator.bcryptRuns == 0, "refused before authentication")
        // No body, or an empty one: on to authentication as before.
        #expect(try fetch(server.port, "GET", "/hello").status == 401)
        #expect(try fetch(server.port, "GET", "/hello", headers: ["Content-Length": "0"]).status == 401)
        let echoed = try fetch(server.port, "POST", "/echo", headers: basic("alice:s3cret"), body: "payload")
        #expect(echoed.status == 201 && echoed.text == "payload")
    }
}

@Suite("Failure limiter, client keys, exposure warning")
struct HardeningUnitTests {
    /// A manual clock for the limiter.
    final class Clock: Sendable {
        let start = ContinuousClock.now
        let offset = Mutex<Duration>(.zero)
        func advance(_ d: Duration) { offset.withLock { $0 += d } }
        var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
    }

    @Test func tokenBucketPerClient() {
        let clock = Clock()
        let limiter = AuthFailureLimiter(burst: 3, refillInterval: .seconds(6), maxClients: 2, now: { clock.now })
        for _ in 0..<3 { #expect(limiter.acquire(client: "a") == nil) }
        #expect(limiter.acquire(client: "a") == 6, "empty: wait for one token")
        #expect(limiter.retryAfter(client: "a") == 6)
        #expect(limiter.retryAfter(client: "b") == nil, "another client has its own budget")
        clock.advance(.seconds(4))
        #expect(limiter.retryAfter(client: "a") == 2)
        clock.advance(.seconds(2))
        #expect(limiter.acquire(client: "a") == nil, "one token back after 6 s")
        #expect(limiter.acquire(client: "a") != nil)
        limiter.refund(client: "a")
        #expect(limiter.acquire(client: "a") == nil, "a refunded token can be used again")
        // The table is bounded: a third client makes room.
        #expect(limiter.acquire(client: "b") == nil)
        #expect(limiter.acquire(client: "c") == nil)
        #expect(limiter.trackedClients <= 2)
        #expect(limiter.retryAfter(client: "a") != nil, "the emptiest bucket is kept")
    }

    @Test func clientKeys() {
        func key(_ family: Int32, _ text: String) -> String {
            if family == AF_INET {
                var sa = sockaddr_in()
                sa.sin_family = sa_family_t(AF_INET)
                inet_pton(AF_INET, text, &sa.sin_addr)
                return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { ClientAddress.key($0) } }
            }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            inet_pton(AF_INET6, text, &sa.sin6_addr)
            return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { ClientAddress.key($0) } }
        }
        #expect(key(AF_INET, "192.0.2.7") == "192.0.2.7")
        #expect(key(AF_INET6, "::ffff:192.0.2.7") == "192.0.2.7", "a dual-stack socket's IPv4 client")
        #expect(key(AF_INET6, "2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64")
        #expect(key(AF_INET6, "2001:db8:1:2:bbbb::9") == key(AF_INET6, "2001:db8:1:2:aaaa::1"), "one /64, one budget")
        #expect(ClientAddress.key(nil) == "unknown")
    }

    @Test func exposureWarning() throws {
        func warning(_ address: String, users: [String: String] = [:]) throws -> String? {
            HTTPServerConfiguration(address: try ListenAddress(parsing: address), web: WebConfig(basicAuthUsers: users)).exposureWarning()
        }
        for exposed in [":8216", "0.0.0.0:8216", "[::]:8216", "192.168.1.10:8216", "[2001:db8::1]:8216"] {
            let text = try warning(exposed)
            #expect(text?.contains("without basic auth") == true, "\(exposed)")
            #expect(text?.contains("basic_auth_users") == true, "\(exposed): says what to do")
        }
        for loopback in ["127.0.0.1:8216", "127.0.0.2:8216", "localhost:8216", "[::1]:8216"] {
            #expect(try warning(loopback) == nil, "\(loopback)")
        }
        #expect(try warning("0.0.0.0:8216", users: ["alice": aliceHash]) == nil, "basic auth configured")
        #expect(try warning(":8216", users: ["alice": aliceHash]) == nil)
    }
}
