import CompressNIO
import Foundation
import NIOCore
import Testing
@testable import MicroHTTP

/// bcrypt of "s3cret" at cost 5 (generated with libxcrypt; a fixture, not a secret).
let aliceHash = "$2b$05$SlRN1JIKHdSrTucB0oEHhuw2cjULdE7ALkcJww7NeayVfXOmmZXP2"

func makeRouter() -> Router {
    var router = Router()
    router.get("/hello") { _ in .text("hello\n") }
    router.get("/items/{id}") { req in .text("item \(req.pathParameters["id"] ?? "?")\n") }
    router.get("/items/special") { _ in .text("special\n") }
    router.get("/query") { req in .text("a=\(req.query["a"] ?? "-")\n") }
    router.post("/echo") { req in HTTPResponse(status: 201, contentType: "application/octet-stream", bytes: req.body) }
    let big = ResponseBody(Array(String(repeating: "metric_line{label=\"value\"} 1\n", count: 2000).utf8))
    router.get("/big") { _ in HTTPResponse(contentType: "text/plain; version=0.0.4", body: big) }
    router.get("/slow") { _ in usleep(300_000); return .text("slow done\n") }
    return router
}

func startServer(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws -> HTTPServer {
    var config = HTTPServerConfiguration(address: try ListenAddress(parsing: "127.0.0.1:0"))
    configure(&config)
    let server = HTTPServer(configuration: config, router: makeRouter())
    try server.start()
    return server
}

@Suite("HTTP server on loopback")
struct HTTPServerTests {
    @Test func routesAndPathParameters() throws {
        let server = try startServer()
        defer { server.stop() }
        #expect(server.port != 0)
        let r = try fetch(server.port, "GET", "/hello")
        #expect(r.status == 200)
        #expect(r.text == "hello\n")
        #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
        #expect(r.header("Content-Length") == "6")
        #expect(try fetch(server.port, "GET", "/items/101").text == "item 101\n")
        #expect(try fetch(server.port, "GET", "/items/special").text == "special\n", "literal routes win over parameters")
        #expect(try fetch(server.port, "GET", "/query?a=x%20y&b").text == "a=x y\n")
    }

    @Test func unknownPathIs404AndWrongMethodIs405WithAllow() throws {
        let server = try startServer()
        defer { server.stop() }
        #expect(try fetch(server.port, "GET", "/nope").status == 404)
        let r = try fetch(server.port, "POST", "/hello")
        #expect(r.status == 405)
        #expect(r.header("Allow") == "GET, HEAD")
        let d = try fetch(server.port, "DELETE", "/echo")
        #expect(d.status == 405)
        #expect(d.header("Allow") == "POST")
    }

    @Test func postBodyAndBodyLimit() throws {
        let server = try startServer { $0.maxBodyBytes = 1024 }
        defer { server.stop() }
        let ok = try fetch(server.port, "POST", "/echo", body: "payload")
        #expect(ok.status == 201)
        #expect(ok.text == "payload")
        let tooBig = try fetch(server.port, "POST", "/echo", body: String(repeating: "x", count: 5000))
        #expect(tooBig.status == 413)
    }

    @Test func headHasLengthButNoBody() throws {
        let server = try startServer()
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        let r = try c.request("HEAD", "/hello")
        #expect(r.status == 200)
        #expect(r.header("Content-Length") == "6")
        // The connection is still usable and no stray body bytes precede the next response.
        let next = try c.request("GET", "/hello")
        #expect(next.status == 200 && next.text == "hello\n")
    }

    @Test func keepAliveServesTwoRequestsOnOneConnection() throws {
        let server = try startServer()
        defer { server.stop() }
        let c = try RawConnection(port: server.port)
        let a = try c.request("GET", "/hello")
        let b = try c.request("GET", "/items/7")
        #expect(a.status == 200 && b.status == 200)
        #expect(b.text == "item 7\n")
        #expect(a.header("Connection")?.lowercased() != "close")
    }

    @Test func gzipWhenAcceptedOnly() throws {
        let server = try startServer()
        defer { server.stop() }
        let plain = try fetch(server.port, "GET", "/big")
        #expect(plain.header("Content-Encoding") == nil)
        #expect(plain.header("Vary") == "Accept-Encoding")
        let gz = try fetch(server.port, "GET", "/big", headers: ["Accept-Encoding": "gzip"])
        #expect(gz.header("Content-Encoding") == "gzip")
        #expect(gz.body.count * 5 < plain.body.count)
        var buf = ByteBuffer(bytes: gz.body)
        let unzipped = try buf.decompress(with: .gzip())
        #expect(Array(unzipped.readableBytesView) == plain.body)
        let refused = try fetch(server.port, "GET", "/big", headers: ["Accept-Encoding": "gzip;q=0, identity"])
        #expect(refused.header("Content-Encoding") == nil)
    }

    @Test func basicAuthGoodWrongMissing() throws {
        let server = try startServer { $0.web = WebConfig(basicAuthUsers: ["alice": aliceHash]) }
        defer { server.stop() }
        let missing = try fetch(server.port, "GET", "/hello")
        #expect(missing.status == 401)
        #expect(missing.header("WWW-Authenticate")?.hasPrefix("Basic realm=") == true)
        let wrong = try fetch(server.port, "GET", "/hello",
                              headers: ["Authorization": "Basic " + Data("alice:wrong".utf8).base64EncodedString()])
        #expect(wrong.status == 401)
        let unknown = try fetch(server.port, "GET", "/hello",
                                headers: ["Authorization": "Basic " + Data("mallory:s3cret".utf8).base64EncodedString()])
        #expect(unknown.status == 401)
        let good = try fetch(server.port, "GET", "/hello",
                             headers: ["Authorization": "Basic " + Data("alice:s3cret".utf8).base64EncodedString()])
        #expect(good.status == 200)
        // A cached success must not let a different password through.
        let wrongAfter = try fetch(server.port, "GET", "/hello",
                                   headers: ["Authorization": "Basic " + Data("alice:s3cret2".utf8).base64EncodedString()])
        #expect(wrongAfter.status == 401)
        let garbage = try fetch(server.port, "GET", "/hello", headers: ["Authorization": "Basic !!!notbase64"])
        #expect(garbage.status == 401)
    }

    @Test func tlsWithGeneratedCertificate() throws {
        let dir = TempDir()
        let (rc, _, err) = try runCommand("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.file("key.pem"),
            "-out", dir.file("cert.pem"), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        #expect(rc == 0, "openssl: \(err)")
        try """
        tls_server_config:
          cert_file: cert.pem
          key_file: key.pem
        basic_auth_users:
          alice: \(aliceHash)
        """.write(toFile: dir.file("web.yml"), atomically: true, encoding: .utf8)
        let web = try WebConfig.load(path: dir.file("web.yml"))
        let server = try startServer { $0.web = web }
        defer { server.stop() }
        #expect(server.isTLS)
        let (code, out, cerr) = try runCommand("/usr/bin/curl", [
            "-sS", "--cacert", dir.file("cert.pem"), "-u", "alice:s3cret",
            "https://127.0.0.1:\(server.port)/hello"])
        #expect(code == 0, "curl: \(cerr)")
        #expect(out == "hello\n")
        // Plain HTTP to a TLS port gets no HTTP answer.
        let plain = try RawConnection(port: server.port)
        try plain.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect((try? plain.readResponse(timeout: 2)) == nil)
    }

    @Test func idleConnectionIsClosedAfterTimeout() throws {
        let server = try startServer { $0.idleTimeoutSeconds = 1 }
        defer { server.stop() }
        let idle = try RawConnection(port: server.port)
        try idle.send("GET /hel")  // a slowloris-style partial request line
        #expect(idle.closedByPeer(within: 4))
    }

    @Test func malformedInputGets4xxOrCloseNeverACrash() throws {
        let server = try startServer()
        defer { server.stop() }
        var garbage: [UInt8] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<4096 { garbage.append(UInt8.random(in: 0...255, using: &rng)) }
        garbage += Array("\r\n\r\n".utf8)
        for payload: [UInt8] in [
            garbage,
            Array("NOT-HTTP\r\n\r\n".utf8),
            Array("GET / HTTP/1.1\r\nHost: x\r\nBroken header line without colon\r\n\r\n".utf8),
            Array("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n".utf8),
        ] {
            let c = try RawConnection(port: server.port)
            try? c.send(payload)
            if let r = try? c.readResponse(timeout: 3) {
                #expect((400..<500).contains(r.status), "got \(r.status)")
            } else {
                #expect(c.closedByPeer(within: 3))
            }
        }
        // Truncated headers, then the client goes away.
        do {
            let c = try RawConnection(port: server.port)
            try c.send("GET /hello HTTP/1.1\r\nHost: ")
        }
        // Still serving.
        #expect(try fetch(server.port, "GET", "/hello").status == 200)
    }

    @Test func ipv6Loopback() throws {
        var config = HTTPServerConfiguration(address: try ListenAddress(parsing: "[::1]:0"))
        config.threads = 1
        let server = HTTPServer(configuration: config, router: makeRouter())
        do { try server.start() } catch {
            // Some sandboxes have no IPv6 loopback; then there is nothing to test.
            #expect(error.description.contains("cannot listen"))
            return
        }
        defer { server.stop() }
        let r = try RawConnection(port: server.port, host: "::1").request("GET", "/hello")
        #expect(r.status == 200)
    }

    @Test func gracefulStopAnswersRequestsInFlight() async throws {
        let server = try startServer()
        let port = server.port
        let inflight = Task.detached { try fetch(port, "GET", "/slow") }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        await server.stopGracefully()
        let took = ContinuousClock.now - started
        let r = try await inflight.value
        #expect(r.status == 200)
        #expect(r.text == "slow done\n")
        #expect(took < .milliseconds(1500))
        #expect(throws: (any Error).self) { try RawConnection(port: port).request("GET", "/hello") }
    }

    @Test func startFailureNamesTheAddress() throws {
        let first = try startServer()
        defer { first.stop() }
        let second = HTTPServer(configuration: .init(address: .init(host: "127.0.0.1", port: first.port)), router: Router())
        #expect(throws: HTTPServerError.self) { try second.start() }
        do { try second.start() } catch { #expect(error.description.contains("127.0.0.1:\(first.port)")) }
    }
}

@Suite("Listen address and web config")
struct ConfigTests {
    @Test func listenAddresses() throws {
        #expect(try ListenAddress(parsing: ":8216") == ListenAddress(host: nil, port: 8216))
        #expect(try ListenAddress(parsing: "127.0.0.1:9") == ListenAddress(host: "127.0.0.1", port: 9))
        #expect(try ListenAddress(parsing: "[::1]:80") == ListenAddress(host: "::1", port: 80))
        #expect(try ListenAddress(parsing: "localhost:1").host == "127.0.0.1")
        #expect(throws: HTTPServerError.self) { try ListenAddress(parsing: "8216") }
        #expect(throws: HTTPServerError.self) { try ListenAddress(parsing: "host:99999") }
        #expect(throws: HTTPServerError.self) { try ListenAddress(parsing: "pve.example:80") }
    }

    @Test func webConfigErrorsNameTheKey() {
        func error(_ yaml: String) -> String {
            do { _ = try WebConfig.parse(yaml: yaml); return "no error" } catch { return error.description }
        }
        #expect(error("basic_auth_user:\n  a: b\n").contains("basic_auth_user (line 1): unknown key"))
        #expect(error("basic_auth_users:\n  alice: plaintext\n").contains("basic_auth_users.alice"))
        #expect(error("tls_server_config:\n  key_file: k\n").contains("tls_server_config.cert_file"))
        #expect(error("tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: k\n").contains("tls_server_config.cert_file"))
        #expect(error("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n").contains("client_auth_type"))
        #expect(error("http_server_config:\n  http2: true\n").contains("http_server_config.http2"))
        #expect(error("basic_auth_users: [\n").contains("not valid YAML"))
        #expect(error("") == "no error")
    }

    @Test func bcryptShapeAndConstantTimeCompare() {
        #expect(BasicAuthenticator.isBcrypt(aliceHash))
        #expect(!BasicAuthenticator.isBcrypt("$1$abc"))
        #expect(BasicAuthenticator.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!BasicAuthenticator.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!BasicAuthenticator.constantTimeEquals([1, 2], [1, 2, 3]))
        let auth = BasicAuthenticator(users: ["alice": aliceHash])
        #expect(auth.check(user: "alice", password: "s3cret"))
        #expect(!auth.check(user: "alice", password: "S3cret"))
    }

    @Test func routerMatching() {
        var r = Router()
        r.get("/") { _ in .text("root") }
        r.get("/a/{x}/b") { _ in .text("") }
        if case .handler(_, let p) = r.match(.get, path: "/a/42/b") { #expect(p["x"] == "42") } else { Issue.record("no match") }
        if case .handler = r.match(.head, path: "/") {} else { Issue.record("HEAD falls back to GET") }
        if case .notFound = r.match(.get, path: "/a//b") {} else { Issue.record("empty parameter must not match") }
        if case .methodNotAllowed(let m) = r.match(.post, path: "/") { #expect(m == [.get, .head]) } else { Issue.record("405") }
    }
}
