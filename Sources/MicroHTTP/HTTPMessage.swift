import Foundation
import Synchronization

/// HTTP request methods the server routes. Anything else is answered 405 (or 501 by libmicrohttpd).
public enum HTTPMethod: String, Sendable, Hashable, CaseIterable {
    case get = "GET"
    case head = "HEAD"
    case post = "POST"
    case put = "PUT"
    case delete = "DELETE"
}

/// One request as the handlers see it: everything copied out of libmicrohttpd, so it is a plain value.
///
/// Header names are matched case-insensitively, as HTTP requires.
public struct HTTPRequest: Sendable {
    /// The request method.
    public var method: HTTPMethod
    /// The path without the query string, percent-decoded by libmicrohttpd.
    public var path: String
    /// Query arguments (`?a=1&b=2`), decoded; a key without a value maps to "".
    public var query: [String: String]
    /// Request headers as sent; look them up with ``header(_:)``.
    public var headers: [(name: String, value: String)]
    /// The request body (POST/PUT), at most the server's body limit.
    public var body: [UInt8]
    /// Path parameters captured by the route pattern, e.g. `vmid` for `/api/v1/guests/{vmid}`.
    public var pathParameters: [String: String]
    /// The authenticated basic-auth user, when the web config asks for authentication.
    public var user: String?

    /// Creates a request value; the server builds these, tests may too.
    public init(method: HTTPMethod, path: String, query: [String: String] = [:],
                headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                pathParameters: [String: String] = [:], user: String? = nil) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.pathParameters = pathParameters
        self.user = user
    }

    /// The first value of a header, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }
}

/// A complete response. The body is bytes already; the server adds Content-Length itself.
public struct HTTPResponse: Sendable {
    /// The status code.
    public var status: Int
    /// Extra headers (Content-Type is its own field).
    public var headers: [(name: String, value: String)]
    /// The media type of the body.
    public var contentType: String
    /// The body; shared, not copied, when the same response is served many times.
    public var body: ResponseBody

    /// Creates a response from a body that may be shared between requests.
    public init(status: Int = 200, contentType: String, body: ResponseBody,
                headers: [(name: String, value: String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    /// Creates a response from bytes.
    public init(status: Int = 200, contentType: String, bytes: [UInt8],
                headers: [(name: String, value: String)] = []) {
        self.init(status: status, contentType: contentType, body: ResponseBody(bytes), headers: headers)
    }

    /// A UTF-8 text response.
    public static func text(_ text: String, status: Int = 200,
                            contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, contentType: contentType, bytes: Array(text.utf8))
    }

    /// A JSON response from already-encoded bytes.
    public static func json(_ bytes: [UInt8], status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", bytes: bytes)
    }

    /// A small JSON error body `{"error": "..."}` with the given status.
    public static func jsonError(_ message: String, status: Int) -> HTTPResponse {
        // A one-key object of a String cannot fail to encode.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let body = (try? encoder.encode(["error": message])) ?? Data(#"{"error":"unencodable message"}"#.utf8)
        return .json(Array(body) + [0x0A], status: status)
    }
}

/// Immutable response bytes in memory that this object owns, so a cached body is handed to
/// libmicrohttpd without copying: the server retains the object until the response is sent.
/// The gzip form is computed at most once per body and kept with it.
public final class ResponseBody: @unchecked Sendable {
    // Written once in init, never mutated: safe to share between threads.
    let storage: UnsafeMutableRawBufferPointer
    private let gzipForm = Mutex<ResponseBody?>(nil)

    /// Copies bytes into a new body.
    public init(_ bytes: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { src in
            if let base = src.baseAddress { storage.baseAddress!.copyMemory(from: base, byteCount: src.count) }
        }
        self.storage = storage
        count = bytes.count
    }

    deinit { storage.deallocate() }

    /// The number of bytes.
    public let count: Int

    /// A copy of the bytes.
    public var bytes: [UInt8] { Array(UnsafeRawBufferPointer(rebasing: storage[0..<count])) }

    /// The gzip-compressed body, computed once (nil when compression fails).
    public func gzipped() -> ResponseBody? {
        if let done = gzipForm.withLock({ $0 }) { return done }
        guard let compressed = Gzip.compress(UnsafeRawBufferPointer(rebasing: storage[0..<count])) else { return nil }
        let body = ResponseBody(compressed)
        gzipForm.withLock { $0 = body }
        return body
    }
}

/// Reason phrases for the statuses this project sends.
enum HTTPStatusText {
    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        default: "Status \(status)"
        }
    }
}

extension String {
    /// ASCII case-insensitive equality, enough for header names.
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            let lx = (x >= 65 && x <= 90) ? x + 32 : x
            let ly = (y >= 65 && y <= 90) ? y + 32 : y
            if lx != ly { return false }
        }
        return true
    }
}

