#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A plain-HTTP GET to the local service (`pbs-standby status`), with no external program and no
/// FoundationNetworking: one HTTP/1.0 request over a socket, the whole answer read until the
/// server closes. Only for the service's own loopback endpoint; TLS and redirects are not spoken.
enum LocalHTTP {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// `GET path` from `host:port`; returns the status code and the body. Times out after `timeout` seconds.
    static func get(host: String, port: Int, path: String, timeout: Int = 10) throws -> (status: Int, body: [UInt8]) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var tv = timeval(tv_sec: timeout, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
                lastError = String(cString: strerror(errno))
                continue
            }
            let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\nAccept: application/json\r\nConnection: close\r\n\r\n".utf8)
            guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
                throw Failure(description: "cannot send to \(host):\(port): \(String(cString: strerror(errno)))")
            }
            var response: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n == 0 { break }
                guard n > 0 else { throw Failure(description: "reading from \(host):\(port): \(String(cString: strerror(errno)))") }
                response += buffer[0..<n]
                if response.count > 64 << 20 { throw Failure(description: "answer from \(host):\(port) larger than 64 MiB") }
            }
            return try parse(response, from: "\(host):\(port)")
        }
        throw Failure(description: "cannot connect to \(host):\(port): \(lastError)")
    }

    /// Splits an HTTP/1.x answer into status code and body.
    static func parse(_ response: [UInt8], from origin: String) throws -> (status: Int, body: [UInt8]) {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = response.indices.first(where: { response[$0...].starts(with: separator) }) else {
            throw Failure(description: "incomplete HTTP answer from \(origin)")
        }
        let head = String(decoding: response[..<end], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]) else {
            throw Failure(description: "not an HTTP answer from \(origin): \(statusLine)")
        }
        return (code, Array(response[(end + 4)...]))
    }
}
