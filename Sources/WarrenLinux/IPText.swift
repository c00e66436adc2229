// Parsing and formatting of IP addresses and CIDR prefixes that cross WarrenLinux's API as
// strings ("100.64.1.1", "100.64.1.0/24", "default"); WarrenLinux does not depend on
// WarrenCore's address types. Invalid text throws `ArgumentError` naming the argument.
// Threading: pure functions.

#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// An address or prefix in network byte order.
struct IPPrefix: Equatable, Sendable {
    var family: Int32          // AF_INET or AF_INET6
    var bytes: [UInt8]         // 4 or 16 bytes
    var prefixLength: Int

    var maxLength: Int { bytes.count * 8 }

    /// Parses "a.b.c.d", "a.b.c.d/n", IPv6 equivalents, or "default" (0.0.0.0/0) when allowed.
    /// Without "/n" the prefix is the full length.
    static func parse(_ text: String, argument: String, allowDefault: Bool = false,
                      requirePrefix: Bool = false) throws -> IPPrefix {
        if allowDefault && text == "default" { return IPPrefix(family: AF_INET, bytes: [0, 0, 0, 0], prefixLength: 0) }
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count <= 2, let addressText = pieces.first, !addressText.isEmpty else {
            throw ArgumentError(argument: argument, value: text, reason: "expected an address like 100.64.0.1 or a prefix like 100.64.0.0/24")
        }
        var result: IPPrefix
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, String(addressText), &v4) == 1 {
            result = IPPrefix(family: AF_INET, bytes: withUnsafeBytes(of: v4) { Array($0) }, prefixLength: 32)
        } else if inet_pton(AF_INET6, String(addressText), &v6) == 1 {
            result = IPPrefix(family: AF_INET6, bytes: withUnsafeBytes(of: v6) { Array($0) }, prefixLength: 128)
        } else {
            throw ArgumentError(argument: argument, value: text, reason: "\"\(addressText)\" is not an IPv4 or IPv6 address")
        }
        if pieces.count == 2 {
            guard let n = Int(pieces[1]), n >= 0, n <= result.maxLength else {
                throw ArgumentError(argument: argument, value: text, reason: "prefix length must be 0–\(result.maxLength)")
            }
            result.prefixLength = n
        } else if requirePrefix {
            throw ArgumentError(argument: argument, value: text, reason: "a prefix length (\"/n\") is required")
        }
        return result
    }

    /// Whether all bits after the prefix are zero (required of route destinations).
    var isNetworkAddress: Bool {
        for i in 0..<bytes.count {
            let bitsInByte = max(0, min(8, prefixLength - i * 8))
            let hostMask: UInt8 = bitsInByte == 8 ? 0 : (0xFF >> UInt8(bitsInByte))
            if bytes[i] & hostMask != 0 { return false }
        }
        return true
    }

    /// The prefix with host bits cleared.
    var network: IPPrefix {
        var copy = self
        for i in 0..<bytes.count {
            let bitsInByte = max(0, min(8, prefixLength - i * 8))
            let netMask: UInt8 = bitsInByte == 0 ? 0 : ~(0xFF >> UInt8(bitsInByte))
            copy.bytes[i] &= netMask
        }
        return copy
    }

    var addressText: String { Self.format(bytes, family: family) }
    var cidrText: String { "\(addressText)/\(prefixLength)" }

    static func format(_ bytes: [UInt8], family: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        return ok ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : "?"
    }

    /// A new libnl address (caller releases it with nl_addr_put).
    func makeNetlinkAddress() -> OpaquePointer? {
        let addr = bytes.withUnsafeBytes { raw in
            nl_addr_build(family, raw.baseAddress, raw.count)
        }
        if let addr { nl_addr_set_prefixlen(addr, Int32(prefixLength)) }
        return addr
    }

}

extension IPPrefix {
    /// Reads a libnl address; an empty address (e.g. a default route's destination) of
    /// `family` becomes the all-zero address with prefix length 0.
    init(netlink addr: OpaquePointer?, defaultFamily: Int32 = AF_INET) {
        guard let addr else {
            self.init(family: defaultFamily, bytes: defaultFamily == AF_INET6 ? [UInt8](repeating: 0, count: 16) : [0, 0, 0, 0], prefixLength: 0)
            return
        }
        var family = nl_addr_get_family(addr)
        if family != AF_INET && family != AF_INET6 { family = defaultFamily }
        let length = Int(nl_addr_get_len(addr))
        let width = family == AF_INET6 ? 16 : 4
        var bytes = [UInt8](repeating: 0, count: width)
        if length == width, let raw = nl_addr_get_binary_addr(addr) {
            bytes = Array(UnsafeRawBufferPointer(start: raw, count: width))
        }
        let prefix = length == 0 ? 0 : Int(nl_addr_get_prefixlen(addr))
        self.init(family: family, bytes: bytes, prefixLength: prefix)
    }
}

/// Parses "aa:bb:cc:dd:ee:ff" into 6 bytes.
func parseMAC(_ text: String, argument: String) throws -> [UInt8] {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
    guard parts.count == 6, bytes.count == 6 else {
        throw ArgumentError(argument: argument, value: text, reason: "expected a MAC address like 02:00:00:00:00:01")
    }
    return bytes
}

func formatMAC(_ bytes: UnsafeRawBufferPointer) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }.joined(separator: ":")
}
