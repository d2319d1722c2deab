import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A deliberately low-level HTTP/1.1 client over a blocking loopback socket, so tests control
/// every byte: keep-alive, garbage input, truncated headers, idle connections.
final class RawConnection {
    let fd: Int32

    struct Response {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Connects to `host:port`; from the IPv4 address `source` when given (any of 127.0.0.0/8
    /// works on Linux loopback, so tests can act as several clients).
    init(port: UInt16, host: String = "127.0.0.1", source: String? = nil) throws {
        let v6 = host.contains(":")
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed") }
        var rc: Int32
        if let source, !v6 {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            inet_pton(AF_INET, source, &local.sin_addr)
            rc = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0 else { close(fd); throw Failure(description: "bind to \(source) failed: errno \(errno)") }
        }
        if v6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &sa.sin6_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &sa.sin_addr)
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0 else { close(fd); throw Failure(description: "connect to \(host):\(port) failed: errno \(errno)") }
    }

    deinit { close(fd) }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Failure(description: "send failed: errno \(errno)") }
            off += n
        }
    }

    private var buffer: [UInt8] = []

    /// Reads more bytes; nil on EOF or error, [] on timeout.
    private func fill(timeout: Double) -> [UInt8]? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = poll(&p, 1, Int32(timeout * 1000))
        if r == 0 { return [] }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { return nil }
        return Array(chunk[0..<n])
    }

    /// Reads one response (Content-Length framed); `head` for HEAD requests (no body).
    func readResponse(timeout: Double = 5, head: Bool = false) throws -> Response {
        let deadline = Date().addingTimeInterval(timeout)
        func more() throws {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure(description: "timed out reading a response") }
            guard let data = fill(timeout: left) else { throw Failure(description: "connection closed") }
            buffer += data
        }
        var headerEnd: Int?
        while headerEnd == nil {
            if let r = buffer.firstRange(of: Array("\r\n\r\n".utf8)) { headerEnd = r.upperBound } else { try more() }
        }
        let headText = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let statusLine = lines.removeFirst()
        let status = Int(statusLine.split(separator: " ")[1]) ?? 0
        let headers = lines.compactMap { line -> (String, String)? in
            guard let c = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<c]), line[line.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
        var response = Response(status: status, headers: headers, body: [])
        let length = head ? 0 : Int(response.header("Content-Length") ?? "0") ?? 0
        while buffer.count < headerEnd! + length { try more() }
        response.body = Array(buffer[headerEnd!..<(headerEnd! + length)])
        buffer.removeFirst(headerEnd! + length)
        return response
    }

    /// Whether the peer closes the connection within `timeout` seconds (data before EOF is dropped).
    func closedByPeer(within timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while deadline.timeIntervalSinceNow > 0 {
            guard let data = fill(timeout: deadline.timeIntervalSinceNow) else { return true }
            if data.isEmpty { return false }
        }
        return false
    }

    /// Sends a request and reads its response.
    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: String? = nil) throws -> Response {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        try send(text)
        return try readResponse(head: method == "HEAD")
    }
}

/// One request on a new connection (from the IPv4 address `source` when given).
func fetch(_ port: UInt16, _ method: String = "GET", _ path: String, headers: [String: String] = [:], body: String? = nil,
           source: String? = nil) throws -> RawConnection.Response {
    try RawConnection(port: port, source: source).request(method, path, headers: headers, body: body)
}

/// Runs a command and returns (exit status, stdout, stderr).
@discardableResult
func runCommand(_ path: String, _ args: [String]) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A temporary directory removed at the end of the scope that owns this value.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "pbs-standby-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}
