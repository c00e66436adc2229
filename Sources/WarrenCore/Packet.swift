// Packet codec, parsing side: a zero-copy view of an Ethernet frame's layout.
//
// `FrameLayout.parse` walks Ethernet II, one 802.1Q tag, ARP, IPv4 (with options,
// fragments recognised), and the first bytes of ICMP / UDP / TCP, recording offsets
// into the caller's buffer — it never copies the frame. Every read is preceded by a
// length check, so a truncated or malformed frame yields a `FrameError`, never a crash
// or a read past the end. The IPv4 header checksum is verified (a router must not
// forward a corrupt header).
//
// Threading: pure functions over caller-owned memory; safe from any thread.

/// Well-known EtherType values.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
}

/// IP protocol numbers Warren understands.
public enum IPProtocolNumber {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
}

/// Why a frame could not be parsed. Each case is counted by the datapath.
public enum FrameError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncatedEthernet
    case truncatedVLAN
    case stackedVLAN
    case truncatedARP
    case unsupportedARP
    case truncatedIPv4
    case badIPVersion
    case badIPHeaderLength
    case badIPTotalLength
    case badIPChecksum
    case truncatedTransport
    case badTCPHeaderLength

    public var description: String {
        switch self {
        case .truncatedEthernet: "truncated Ethernet header"
        case .truncatedVLAN: "truncated 802.1Q tag"
        case .stackedVLAN: "stacked 802.1Q/802.1ad tags are not supported"
        case .truncatedARP: "truncated ARP packet"
        case .unsupportedARP: "ARP for other than Ethernet/IPv4"
        case .truncatedIPv4: "truncated IPv4 header"
        case .badIPVersion: "IP version is not 4"
        case .badIPHeaderLength: "IPv4 header length (IHL) below 5 or past the frame"
        case .badIPTotalLength: "IPv4 total length smaller than the header or past the frame"
        case .badIPChecksum: "IPv4 header checksum mismatch"
        case .truncatedTransport: "truncated ICMP/UDP/TCP header"
        case .badTCPHeaderLength: "TCP data offset below 5 or past the packet"
        }
    }

    /// A stable short name, for metrics labels.
    public var metricName: String {
        switch self {
        case .truncatedEthernet: "truncated_ethernet"
        case .truncatedVLAN: "truncated_vlan"
        case .stackedVLAN: "stacked_vlan"
        case .truncatedARP: "truncated_arp"
        case .unsupportedARP: "unsupported_arp"
        case .truncatedIPv4: "truncated_ipv4"
        case .badIPVersion: "bad_ip_version"
        case .badIPHeaderLength: "bad_ihl"
        case .badIPTotalLength: "bad_ip_length"
        case .badIPChecksum: "bad_ip_checksum"
        case .truncatedTransport: "truncated_l4"
        case .badTCPHeaderLength: "bad_tcp_offset"
        }
    }

    public static let allCases: [FrameError] = [
        .truncatedEthernet, .truncatedVLAN, .stackedVLAN, .truncatedARP, .unsupportedARP,
        .truncatedIPv4, .badIPVersion, .badIPHeaderLength, .badIPTotalLength, .badIPChecksum,
        .truncatedTransport, .badTCPHeaderLength,
    ]
}

// MARK: - Byte access

extension UnsafeRawBufferPointer {
    @inlinable @inline(__always) func be16(_ offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }
    @inlinable @inline(__always) func be32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16
            | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }
    @inlinable @inline(__always) func mac(_ offset: Int) -> UInt64 {
        UInt64(be16(offset)) << 32 | UInt64(be32(offset + 2))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable @inline(__always) func put16(_ offset: Int, _ v: UInt16) {
        self[offset] = UInt8(truncatingIfNeeded: v >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: v)
    }
    @inlinable @inline(__always) func put32(_ offset: Int, _ v: UInt32) {
        put16(offset, UInt16(truncatingIfNeeded: v >> 16))
        put16(offset + 2, UInt16(truncatingIfNeeded: v))
    }
    @inlinable @inline(__always) func putMAC(_ offset: Int, _ v: UInt64) {
        put16(offset, UInt16(truncatingIfNeeded: v >> 32))
        put32(offset + 2, UInt32(truncatingIfNeeded: v))
    }
}

// MARK: - Layout

/// Offsets of the headers in one frame. All offsets are from the start of the frame.
public struct FrameLayout: Sendable, Hashable {
    /// The 802.1Q tag control information, if the frame carries one tag.
    public var vlanTCI: UInt16?
    /// The EtherType after any VLAN tag.
    public var etherType: UInt16
    /// Start of the L3 header (14, or 18 with a VLAN tag).
    public var l3Offset: Int
    /// IPv4 header length in bytes (0 for non-IPv4).
    public var ipHeaderLength: Int = 0
    /// IPv4 total length (0 for non-IPv4).
    public var ipTotalLength: Int = 0
    /// Start of the ICMP/UDP/TCP header, or 0 when there is none (non-first fragments,
    /// other protocols, non-IPv4).
    public var l4Offset: Int = 0
    /// The IPv4 packet is a fragment (MF set or offset non-zero).
    public var isFragment = false
    /// The IPv4 packet is a fragment other than the first (offset non-zero).
    public var isLaterFragment = false

    @inlinable
    public init(vlanTCI: UInt16?, etherType: UInt16, l3Offset: Int) {
        self.vlanTCI = vlanTCI
        self.etherType = etherType
        self.l3Offset = l3Offset
    }

    /// Where the frame's meaningful bytes end (Ethernet padding excluded for IPv4).
    public var end: Int { etherType == EtherType.ipv4 ? l3Offset + ipTotalLength : -1 }

    /// Parses the headers of `frame`. Throws on anything truncated or malformed.
    @inlinable
    public static func parse(_ frame: UnsafeRawBufferPointer, verifyChecksum: Bool = true) throws(FrameError) -> FrameLayout {
        let n = frame.count
        guard n >= 14 else { throw .truncatedEthernet }
        var type = frame.be16(12)
        var l3 = 14
        var tci: UInt16? = nil
        if type == EtherType.vlan || type == EtherType.qinq {
            guard n >= 18 else { throw .truncatedVLAN }
            tci = frame.be16(14)
            type = frame.be16(16)
            l3 = 18
            if type == EtherType.vlan || type == EtherType.qinq { throw .stackedVLAN }
        }
        var layout = FrameLayout(vlanTCI: tci, etherType: type, l3Offset: l3)
        if type == EtherType.arp {
            guard n >= l3 + 28 else { throw .truncatedARP }
            // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4
            guard frame.be16(l3) == 1, frame.be16(l3 + 2) == EtherType.ipv4,
                  frame[l3 + 4] == 6, frame[l3 + 5] == 4 else { throw .unsupportedARP }
            return layout
        }
        guard type == EtherType.ipv4 else { return layout }
        guard n >= l3 + 20 else { throw .truncatedIPv4 }
        let vihl = frame[l3]
        guard vihl >> 4 == 4 else { throw .badIPVersion }
        let ihl = Int(vihl & 0x0F) * 4
        guard ihl >= 20, n >= l3 + ihl else { throw .badIPHeaderLength }
        let total = Int(frame.be16(l3 + 2))
        guard total >= ihl, n >= l3 + total else { throw .badIPTotalLength }
        if verifyChecksum {
            guard internetChecksum(UnsafeRawBufferPointer(rebasing: frame[l3..<(l3 + ihl)])) == 0
            else { throw .badIPChecksum }
        }
        layout.ipHeaderLength = ihl
        layout.ipTotalLength = total
        let fragField = frame.be16(l3 + 6)
        let offset = fragField & 0x1FFF
        layout.isFragment = (fragField & 0x2000 != 0) || offset != 0
        layout.isLaterFragment = offset != 0
        if layout.isLaterFragment { return layout }
        let l4 = l3 + ihl
        let l4Length = total - ihl
        switch frame[l3 + 9] {
        case IPProtocolNumber.icmp:
            guard l4Length >= 8 else { throw .truncatedTransport }
            layout.l4Offset = l4
        case IPProtocolNumber.udp:
            guard l4Length >= 8 else { throw .truncatedTransport }
            layout.l4Offset = l4
        case IPProtocolNumber.tcp:
            guard l4Length >= 20 else { throw .truncatedTransport }
            let dataOffset = Int(frame[l4 + 12] >> 4) * 4
            guard dataOffset >= 20, dataOffset <= l4Length else { throw .badTCPHeaderLength }
            layout.l4Offset = l4
        default:
            break
        }
        return layout
    }
}

// MARK: - Checksums

/// The Internet checksum (RFC 1071) of `bytes`, folded and complemented. Computing it
/// over a header that includes a correct checksum field gives 0.
@inlinable
public func internetChecksum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt16 {
    ~foldChecksum(checksumSum(bytes, initial: initial))
}

/// The unfolded one's-complement sum of `bytes` (16-bit big-endian words) plus `initial`.
@inlinable
public func checksumSum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
    var sum = UInt64(initial)
    var i = 0
    let n = bytes.count
    while i + 1 < n {
        sum &+= UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
        i += 2
    }
    if i < n { sum &+= UInt64(bytes[i]) << 8 }
    while sum >> 32 != 0 { sum = (sum & 0xFFFF_FFFF) &+ (sum >> 32) }
    return UInt32(truncatingIfNeeded: sum)
}

/// Folds a 32-bit one's-complement sum into 16 bits.
@inlinable @inline(__always)
public func foldChecksum(_ sum: UInt32) -> UInt16 {
    var s = sum
    s = (s & 0xFFFF) &+ (s >> 16)
    s = (s & 0xFFFF) &+ (s >> 16)
    return UInt16(truncatingIfNeeded: s)
}

/// Incremental checksum update (RFC 1624, eqn. 3): the new checksum after a 16-bit
/// word of the covered data changes from `old` to `new`.
@inlinable @inline(__always)
public func updateChecksum(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
    let sum = UInt32(~checksum) &+ UInt32(~old) &+ UInt32(new)
    return ~foldChecksum(sum)
}

/// Incremental checksum update for a 32-bit field (two 16-bit words).
@inlinable @inline(__always)
public func updateChecksum(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
    let c = updateChecksum(checksum, old: UInt16(truncatingIfNeeded: old >> 16), new: UInt16(truncatingIfNeeded: new >> 16))
    return updateChecksum(c, old: UInt16(truncatingIfNeeded: old), new: UInt16(truncatingIfNeeded: new))
}

/// The sum of the IPv4 pseudo-header used by UDP and TCP checksums.
@inlinable
public func pseudoHeaderSum(source: UInt32, destination: UInt32, protocolNumber: UInt8, length: Int) -> UInt32 {
    (source >> 16) &+ (source & 0xFFFF) &+ (destination >> 16) &+ (destination & 0xFFFF)
        &+ UInt32(protocolNumber) &+ UInt32(length)
}
