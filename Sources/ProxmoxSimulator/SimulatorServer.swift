import Foundation
import Logging
import MicroHTTP
import ProxmoxAPI

/// Serves a ``PVESimulator`` over HTTP or HTTPS at `/api2/json/…` through MicroHTTP, with PVE's
/// envelope (reference §1.2) and token auth (§1.4: 401 with an empty body), plus test hooks
/// (token-authenticated like the API):
/// - `GET /_sim/journal`: mutating calls as JSON;
/// - `POST /_sim/advance?seconds=N`: moves a manual clock;
/// - `POST /_sim/faults?method=&path=&status=&message=&times=&delay=`: adds a fault rule
///   (`path` is a substring of the API path), `DELETE /_sim/faults` removes them all;
/// - `POST /_sim/restore-fails?vmid=N&fails=1|0`: restores of a guest fail inside the task;
/// - `POST /_sim/admin`: an operator's action outside the API token (not journaled; listed as a
///   finished `root@pam` task), fields in the query, a form body or a JSON object body: `action`
///   (create|clone|destroy|start|stop|migrate-away|migrate-here|set-tags|set-description|rollback|
///   reboot), `vmid`, `to`, `type`, `name`, `status`, `tags`, `description`, `onboot`, `node`.
///   200 with `{"action","ok","vmid","guest":{…}}`, 409 `{"error","action"}` when refused, 400
///   for bad fields (see ``PVESimulator/adminCreate(vmid:type:name:status:tags:description:onboot:)``).
/// Connection refused is a stopped simulator process (`simulator --state-dir` keeps its state).
public final class SimulatorServer: Sendable {
    /// The simulator served.
    public let simulator: PVESimulator
    /// The HTTP server.
    public let server: HTTPServer
    /// `https://127.0.0.1:PORT` (or http).
    public let baseURLPrefix: String
    /// The served certificate's SHA-256 fingerprint in PVE's form (nil without TLS).
    public let fingerprint: String?
    /// PEM of the served certificate (for CA-file verification in tests).
    public let certificatePEM: String?

    /// Creates the server; with `tls` it serves `certificate`, or a self-signed certificate for
    /// 127.0.0.1/localhost generated with `openssl` at start.
    public init(simulator: PVESimulator, address: ListenAddress, tls: Bool, certificate: SelfSignedCertificate? = nil,
                logger: Logger = Logger(label: "pbs-standby.simulator")) throws {
        self.simulator = simulator
        var web = WebConfig()
        if tls {
            let cert = try certificate ?? SelfSignedCertificate.generate()
            web.tls = .init(certificatePEM: cert.certificatePEM, keyPEM: cert.keyPEM)
            fingerprint = cert.fingerprint
            certificatePEM = cert.certificatePEM
            simulator.setServedFingerprint(cert.fingerprint)
        } else {
            fingerprint = nil
            certificatePEM = nil
        }
        var config = HTTPServerConfiguration(address: address, web: web)
        config.threads = 4
        config.connectionLimit = 512
        server = HTTPServer(configuration: config, router: Self.router(simulator), logger: logger)
        let host = address.host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "127.0.0.1"
        baseURLPrefix = "\(tls ? "https" : "http")://\(host)"
    }

    /// Starts listening; returns the base URL (`https://127.0.0.1:PORT`).
    @discardableResult
    public func start() throws -> String {
        try server.start()
        return url
    }

    /// The base URL once started.
    public var url: String { "\(baseURLPrefix):\(server.port)" }

    /// Stops the server.
    public func stop() { server.stop() }

    static func router(_ sim: PVESimulator) -> Router {
        var router = Router()
        let api: HTTPHandler = { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else {
                // PVE answers 401 "No ticket"/"Authentication failed!" with an empty body (and a 3 s delay,
                // not simulated).
                return HTTPResponse(status: 401, contentType: "application/json;charset=UTF-8", bytes: [])
            }
            guard let method = APIMethod(rawValue: req.method.rawValue) else { return .text("", status: 501) }
            let path = "/" + (req.pathParameters["path"] ?? "")
            var params = req.query.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }
            if !req.body.isEmpty {
                params += formDecode(String(decoding: req.body, as: UTF8.self))
            }
            let delay = sim.pendingDelay(method, path)
            // `after` delays the answer of a call PVE has already carried out (a restore task
            // forked, the answer lost or slow): the case where a client must not post again.
            let after = sim.delaysAfterHandling(method, path)
            if delay > 0, !after { usleep(UInt32(min(delay, 60) * 1_000_000)) }
            let result = sim.handle(method, path, params)
            if delay > 0, after { usleep(UInt32(min(delay, 60) * 1_000_000)) }
            switch result {
            case .ok(let data):
                return HTTPResponse(contentType: "application/json;charset=UTF-8",
                                    bytes: Array("{\"data\":\(data.serialized())}".utf8))
            case .error(let status, let message, let errors):
                var body: [String: JSONValue] = ["data": .null, "message": .string(message)]
                if !errors.isEmpty { body["errors"] = .object(errors.mapValues { .string($0) }) }
                return HTTPResponse(status: status, contentType: "application/json;charset=UTF-8",
                                    bytes: Array(JSONValue.object(body).serialized().utf8))
            }
        }
        for m in [MicroHTTP.HTTPMethod.get, .post, .put, .delete] { router.add(m, "/api2/json/{path...}", api) }
        router.get("/_sim/journal") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            let data = (try? JSONEncoder().encode(sim.journal())) ?? Data("[]".utf8)
            return .json(Array(data))
        }
        router.post("/_sim/advance") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            guard let clock = sim.clock as? ManualClock else { return .jsonError("the simulator runs on a real clock", status: 409) }
            guard let seconds = req.query["seconds"].flatMap(Double.init), seconds >= 0 else {
                return .jsonError("query parameter 'seconds' must be a non-negative number", status: 400)
            }
            clock.advance(by: seconds)
            return .json(Array("{\"now\":\(clock.now())}".utf8))
        }
        router.post("/_sim/faults") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            var fault = Scenario.Fault()
            fault.method = req.query["method"].map { $0.uppercased() }
            fault.path = req.query["path"]
            if let m = req.query["message"] { fault.message = m }
            if req.query["after"] == "1" { fault.after = true }
            for (key, value) in req.query where ["status", "times", "delay"].contains(key) {
                guard let number = Double(value), number >= 0, number < 1e6 else {
                    return .jsonError("query parameter '\(key)' must be a non-negative number", status: 400)
                }
                switch key {
                case "status": fault.status = Int(number)
                case "times": fault.times = Int(number)
                default: fault.delay = number
                }
            }
            sim.addFault(fault)
            return .json(Array("{\"added\":true}".utf8))
        }
        router.add(.delete, "/_sim/faults") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            sim.clearFaults()
            return .json(Array("{\"cleared\":true}".utf8))
        }
        router.post("/_sim/restore-fails") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            guard let vmid = req.query["vmid"].flatMap(Int.init), let fails = req.query["fails"], ["0", "1"].contains(fails) else {
                return .jsonError("query parameters 'vmid' (a number) and 'fails' (0 or 1) are required", status: 400)
            }
            sim.setRestoreFails(vmid, fails == "1")
            return .json(Array("{\"vmid\":\(vmid)}".utf8))
        }
        router.post("/_sim/kill-task") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            guard let text = req.query["upid"], let upid = UPID(parsing: text) else {
                return .jsonError("query parameter 'upid' (a UPID) is required", status: 400)
            }
            return sim.killTask(upid) ? .json(Array("{\"killed\":true}".utf8)) : .jsonError("no running task \(text)", status: 409)
        }
        router.post("/_sim/admin") { req in
            guard sim.token.matches(authorizationHeader: req.header("Authorization")) else { return .text("", status: 401) }
            var fields = req.query
            if !req.body.isEmpty {
                let text = String(decoding: req.body, as: UTF8.self)
                if req.header("Content-Type")?.lowercased().contains("json") == true || text.first == "{" {
                    guard case .object(let o)? = try? JSONValue.parse(req.body, path: "/_sim/admin") else {
                        return .jsonError("the body must be a JSON object", status: 400)
                    }
                    for (k, v) in o {
                        switch v {
                        case .bool(let b): fields[k] = b ? "1" : "0"
                        case .array(let items): fields[k] = items.compactMap(\.string).joined(separator: ";")
                        default: if let t = v.string { fields[k] = t }
                        }
                    }
                } else {
                    for (k, v) in formDecode(text) { fields[k] = v }
                }
            }
            let (status, body) = sim.performAdmin(fields)
            return .json(Array(body.serialized().utf8) + [0x0A], status: status)
        }
        return router
    }
}

/// A throw-away self-signed certificate for the simulator's HTTPS frontend, made by `openssl`.
public struct SelfSignedCertificate: Sendable, Codable {
    public var certificatePEM: String
    public var keyPEM: String
    /// SHA-256 fingerprint in PVE's `AB:CD:…` form.
    public var fingerprint: String

    /// Generates an RSA-2048 certificate for CN=localhost with SANs localhost and 127.0.0.1, ::1.
    public static func generate() throws -> SelfSignedCertificate {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pbs-standby-sim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = dir.appendingPathComponent("key.pem").path, cert = dir.appendingPathComponent("cert.pem").path
        try run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30",
                 "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"])
        let fpLine = try run(["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"])
        guard let eq = fpLine.firstIndex(of: "=") else { throw SimulatorError("openssl printed no fingerprint: \(fpLine)") }
        return SelfSignedCertificate(
            certificatePEM: try String(contentsOfFile: cert, encoding: .utf8),
            keyPEM: try String(contentsOfFile: key, encoding: .utf8),
            fingerprint: fpLine[fpLine.index(after: eq)...].trimmingCharacters(in: .whitespacesAndNewlines).uppercased())
    }

    @discardableResult
    private static func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw SimulatorError("cannot run /usr/bin/openssl to make the simulator's certificate: \(error)") }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw SimulatorError("openssl \(args.first ?? "") failed: \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }
}

/// A simulator set-up error.
public struct SimulatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
