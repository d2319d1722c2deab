#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The name under which the failure limiter counts a client: the IPv4 address, or the /64
/// prefix of an IPv6 address (one host usually holds a whole /64, so counting single IPv6
/// addresses would let it start afresh 2⁶⁴ times). An IPv4-mapped IPv6 address (a dual-stack
/// socket's IPv4 client) is its IPv4 address.
enum ClientAddress {
    /// The key of the client behind `address`; "unknown" when libmicrohttpd gave none.
    static func key(_ address: UnsafePointer<sockaddr>?) -> String {
        guard let address else { return "unknown" }
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var a = sin.pointee.sin_addr
                return format(AF_INET, &a, length: Int(INET_ADDRSTRLEN))
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                let bytes = withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) }
                if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                    return bytes[12...].map(String.init).joined(separator: ".")
                }
                var prefix = in6_addr()
                withUnsafeMutableBytes(of: &prefix) { out in
                    for i in 0..<8 { out[i] = bytes[i] }
                }
                return format(AF_INET6, &prefix, length: Int(INET6_ADDRSTRLEN)) + "/64"
            }
        default:
            return "unknown"
        }
    }

    private static func format(_ family: Int32, _ address: UnsafeRawPointer, length: Int) -> String {
        var buffer = [CChar](repeating: 0, count: length)
        guard inet_ntop(family, address, &buffer, socklen_t(length)) != nil else { return "unknown" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
