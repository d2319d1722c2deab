import CompressNIO
import Foundation
import NIOCore

/// gzip through zlib (compress-nio); no hand-written deflate.
enum Gzip {
    /// Compresses bytes into a gzip member; nil if zlib reports an error.
    static func compress(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        var input = ByteBuffer(bytes: bytes)
        guard let output = try? input.compress(with: .gzip()) else { return nil }
        return Array(output.readableBytesView)
    }

    /// Whether an `Accept-Encoding` value accepts gzip (and does not refuse it with q=0).
    static func accepts(_ acceptEncoding: String?) -> Bool {
        guard let acceptEncoding else { return false }
        for part in acceptEncoding.split(separator: ",") {
            let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let coding = fields.first?.lowercased(), coding == "gzip" || coding == "*" else { continue }
            let q = fields.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            return q > 0
        }
        return false
    }
}
