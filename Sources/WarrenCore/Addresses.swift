// Addresses: MAC addresses, IPv4 addresses, IPv4 prefixes (CIDRs) and interface
// addresses ("10.0.1.1/24"), with strict parsing and canonical formatting.
//
// Invariants: every value is canonical — an `IPv4Prefix` never has host bits set
// (parsing "10.0.0.1/24" as a prefix is an error, not a silent truncation), a
// `MACAddress` holds 48 bits. Parsers return nil on anything malformed; callers at the
// API boundary turn that into an error naming the field.
// Threading: plain values, `Sendable`.

/// A 48-bit Ethernet MAC address.
public struct MACAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address in the low 48 bits, first octet most significant.
    public let rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue & 0xFFFF_FFFF_FFFF }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        rawValue = UInt64(b0) << 40 | UInt64(b1) << 32 | UInt64(b2) << 24
            | UInt64(b3) << 16 | UInt64(b4) << 8 | UInt64(b5)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let groups = parts.count == 6 ? parts : text.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var value: UInt64 = 0
        for g in groups {
            guard g.count == 2, let b = UInt8(g, radix: 16) else { return nil }
            value = value << 8 | UInt64(b)
        }
        rawValue = value
    }

    public static let broadcast = MACAddress(rawValue: 0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(rawValue: 0)

    @inlinable public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF_FFFF }
    /// Group bit set (broadcast included).
    @inlinable public var isMulticast: Bool { rawValue & 0x0100_0000_0000 != 0 }
    @inlinable public var isUnicast: Bool { !isMulticast && rawValue != 0 }

    public var octets: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64($0))) } }

    public var description: String {
        octets.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    public static func < (a: MACAddress, b: MACAddress) -> Bool { a.rawValue < b.rawValue }

    /// A locally administered unicast address derived from `seed` (stable for a seed).
    public static func locallyAdministered(seed: UInt64) -> MACAddress {
        var x = seed &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 29
        // 0x02 in the first octet: locally administered, unicast.
        return MACAddress(rawValue: (x & 0x00FF_FFFF_FFFF) | 0x0200_0000_0000)
    }
}

/// An IPv4 address.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address in host byte order (first octet most significant).
    public let rawValue: UInt32

    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad notation strictly: four decimal octets, no leading zeros
    /// (so "010.0.0.1" is rejected rather than read as octal or decimal).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  !(p.count > 1 && p.first == "0"), let n = UInt32(p), n <= 255
            else { return nil }
            value = value << 8 | n
        }
        rawValue = value
    }

    public static let any = IPv4Address(rawValue: 0)
    public static let broadcast = IPv4Address(rawValue: 0xFFFF_FFFF)

    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xFF).\(rawValue >> 8 & 0xFF).\(rawValue & 0xFF)"
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.rawValue < b.rawValue }

    @inlinable public var isMulticast: Bool { rawValue >> 28 == 0xE }
    @inlinable public var isLoopback: Bool { rawValue >> 24 == 127 }
    @inlinable public var isLinkLocal: Bool { rawValue >> 16 == 0xA9FE }
}

/// An IPv4 network: a base address and a prefix length, with no host bits set.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let address: IPv4Address
    public let length: UInt8

    /// Creates a prefix; returns nil if `length` > 32 or host bits are set.
    public init?(address: IPv4Address, length: UInt8) {
        guard length <= 32, address.rawValue & ~IPv4Prefix.netmask(length) == 0 else { return nil }
        self.address = address
        self.length = length
    }

    /// The prefix of `length` bits that contains `address` (host bits cleared).
    public init(containing address: IPv4Address, length: UInt8) {
        let l = min(length, 32)
        self.address = IPv4Address(rawValue: address.rawValue & IPv4Prefix.netmask(l))
        self.length = l
    }

    /// Parses "a.b.c.d/len" strictly; host bits must be zero.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPv4Address(String(parts[0])),
              parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              !(parts[1].count > 1 && parts[1].first == "0"),
              let l = UInt8(parts[1]) else { return nil }
        self.init(address: a, length: l)
    }

    @inlinable public static func netmask(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : UInt32.max << (32 - UInt32(min(length, 32)))
    }

    @inlinable public var netmask: UInt32 { IPv4Prefix.netmask(length) }

    @inlinable public func contains(_ a: IPv4Address) -> Bool {
        a.rawValue & netmask == address.rawValue
    }

    /// True if every address of `other` is in `self`.
    public func contains(_ other: IPv4Prefix) -> Bool {
        other.length >= length && contains(other.address)
    }

    public func overlaps(_ other: IPv4Prefix) -> Bool { contains(other) || other.contains(self) }

    public var broadcastAddress: IPv4Address { IPv4Address(rawValue: address.rawValue | ~netmask) }

    public static let any = IPv4Prefix(address: .any, length: 0)!

    public var description: String { "\(address)/\(length)" }

    public static func < (a: IPv4Prefix, b: IPv4Prefix) -> Bool {
        (a.address.rawValue, a.length) < (b.address.rawValue, b.length)
    }
}

/// An address assigned to an interface or router port: "10.0.1.1/24" (host bits allowed).
public struct IPv4Interface: Hashable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let length: UInt8

    public init?(address: IPv4Address, length: UInt8) {
        guard length <= 32 else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses "a.b.c.d/len". Rejects the network and broadcast addresses of prefixes
    /// shorter than /31, which cannot be assigned to a port.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let a = IPv4Address(String(parts[0])),
              parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              let l = UInt8(parts[1]), l <= 32 else { return nil }
        let net = IPv4Prefix(containing: a, length: l)
        if l < 31 && (a == net.address || a == net.broadcastAddress) { return nil }
        self.address = a
        self.length = l
    }

    public var network: IPv4Prefix { IPv4Prefix(containing: address, length: length) }

    public var description: String { "\(address)/\(length)" }
}
