// Flow keys, masks and wildcard matches.
//
// A `FlowKey` is every header field the simulator may base a decision on, packed into
// five 64-bit words so that masking is five ANDs, equality five compares and hashing a
// few multiplies — the fast path's whole cost. A `FlowMask` has the same layout; a set
// bit means "this bit of the key matters". A `FlowMatch` is a masked key.
//
// Word layout (bit 0 = least significant):
//   w0: in_port 0–31 | eth_type 32–47 | vlan_tci 48–63 (CFI bit 12 of the TCI = "tagged")
//   w1: eth_src 0–47 | ip_proto 48–55 | ip_tos 56–63
//   w2: eth_dst 0–47 | ip_ttl 48–55   | ip_frag 56–63 (bit 0 fragment, bit 1 later fragment)
//   w3: ip_src (ARP sender IP) 0–31   | ip_dst (ARP target IP) 32–63
//   w4: tp_src (ICMP type) 0–15 | tp_dst (ICMP code) 16–31 | arp_op 32–47 | tcp_flags 48–59
//
// Invariant: `FlowKey.extract` fills every field from the frame and zero for absent
// headers, so two frames with equal headers give equal keys.
// Threading: plain values.

/// The header fields of one packet plus its ingress port.
public struct FlowKey: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64
    public var w1: UInt64
    public var w2: UInt64
    public var w3: UInt64
    public var w4: UInt64

    @inlinable public init(w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0, w4: UInt64 = 0) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3; self.w4 = w4
    }

    public static let zero = FlowKey()

    // MARK: fields
    @inlinable public var inPort: UInt32 {
        get { UInt32(truncatingIfNeeded: w0) }
        set { w0 = w0 & ~0xFFFF_FFFF | UInt64(newValue) }
    }
    @inlinable public var ethType: UInt16 {
        get { UInt16(truncatingIfNeeded: w0 >> 32) }
        set { w0 = w0 & ~(0xFFFF << 32) | UInt64(newValue) << 32 }
    }
    /// The VLAN TCI with the CFI bit (0x1000) set when the frame is tagged; 0 when untagged.
    @inlinable public var vlanTCI: UInt16 {
        get { UInt16(truncatingIfNeeded: w0 >> 48) }
        set { w0 = w0 & ~(0xFFFF << 48) | UInt64(newValue) << 48 }
    }
    /// The VLAN ID, or nil when untagged.
    @inlinable public var vlanID: UInt16? {
        vlanTCI & 0x1000 != 0 ? vlanTCI & 0x0FFF : nil
    }
    @inlinable public var ethSrc: MACAddress {
        get { MACAddress(rawValue: w1 & 0xFFFF_FFFF_FFFF) }
        set { w1 = w1 & ~0xFFFF_FFFF_FFFF | newValue.rawValue }
    }
    @inlinable public var ipProto: UInt8 {
        get { UInt8(truncatingIfNeeded: w1 >> 48) }
        set { w1 = w1 & ~(0xFF << 48) | UInt64(newValue) << 48 }
    }
    @inlinable public var ipTOS: UInt8 {
        get { UInt8(truncatingIfNeeded: w1 >> 56) }
        set { w1 = w1 & ~(0xFF << 56) | UInt64(newValue) << 56 }
    }
    @inlinable public var ethDst: MACAddress {
        get { MACAddress(rawValue: w2 & 0xFFFF_FFFF_FFFF) }
        set { w2 = w2 & ~0xFFFF_FFFF_FFFF | newValue.rawValue }
    }
    @inlinable public var ipTTL: UInt8 {
        get { UInt8(truncatingIfNeeded: w2 >> 48) }
        set { w2 = w2 & ~(0xFF << 48) | UInt64(newValue) << 48 }
    }
    /// Bit 0: the packet is a fragment; bit 1: it is not the first fragment.
    @inlinable public var ipFrag: UInt8 {
        get { UInt8(truncatingIfNeeded: w2 >> 56) }
        set { w2 = w2 & ~(0xFF << 56) | UInt64(newValue) << 56 }
    }
    @inlinable public var ipSrc: IPv4Address {
        get { IPv4Address(rawValue: UInt32(truncatingIfNeeded: w3)) }
        set { w3 = w3 & ~0xFFFF_FFFF | UInt64(newValue.rawValue) }
    }
    @inlinable public var ipDst: IPv4Address {
        get { IPv4Address(rawValue: UInt32(truncatingIfNeeded: w3 >> 32)) }
        set { w3 = w3 & 0xFFFF_FFFF | UInt64(newValue.rawValue) << 32 }
    }
    /// UDP/TCP source port, or the ICMP type.
    @inlinable public var tpSrc: UInt16 {
        get { UInt16(truncatingIfNeeded: w4) }
        set { w4 = w4 & ~0xFFFF | UInt64(newValue) }
    }
    /// UDP/TCP destination port, or the ICMP code.
    @inlinable public var tpDst: UInt16 {
        get { UInt16(truncatingIfNeeded: w4 >> 16) }
        set { w4 = w4 & ~(0xFFFF << 16) | UInt64(newValue) << 16 }
    }
    @inlinable public var arpOp: UInt16 {
        get { UInt16(truncatingIfNeeded: w4 >> 32) }
        set { w4 = w4 & ~(0xFFFF << 32) | UInt64(newValue) << 32 }
    }
    /// TCP flags (12 bits), 0 for other protocols.
    @inlinable public var tcpFlags: UInt16 {
        get { UInt16(truncatingIfNeeded: w4 >> 48) & 0x0FFF }
        set { w4 = w4 & ~(0xFFFF << 48) | UInt64(newValue & 0x0FFF) << 48 }
    }

    // MARK: operations
    @inlinable @inline(__always)
    public func masked(by m: FlowMask) -> FlowKey {
        FlowKey(w0: w0 & m.w0, w1: w1 & m.w1, w2: w2 & m.w2, w3: w3 & m.w3, w4: w4 & m.w4)
    }

    /// A well-mixed 64-bit hash, stable across processes.
    @inlinable @inline(__always)
    public var hash64: UInt64 {
        // Each word times a distinct odd constant (a bijection per word), summed, then
        // one full avalanche. Cheap enough for one hash per subtable probe.
        let h = w0 &* 0x9E37_79B9_7F4A_7C15 &+ w1 &* 0xC2B2_AE3D_27D4_EB4F &+ w2 &* 0x1656_67B1_9E37_79F9
            &+ w3 &* 0x27D4_EB2F_1656_67C5 &+ w4 &* 0x94D0_49BB_1331_11EB
        return mix64(h)
    }

    public var description: String {
        var parts = ["in_port=\(inPort)", "eth_type=0x\(String(ethType, radix: 16))"]
        if let v = vlanID { parts.append("vlan=\(v)") }
        parts.append("eth_src=\(ethSrc)")
        parts.append("eth_dst=\(ethDst)")
        if ethType == EtherType.ipv4 {
            parts += ["ip_src=\(ipSrc)", "ip_dst=\(ipDst)", "ip_proto=\(ipProto)", "ttl=\(ipTTL)",
                      "tos=\(ipTOS)", "frag=\(ipFrag)", "tp_src=\(tpSrc)", "tp_dst=\(tpDst)"]
        } else if ethType == EtherType.arp {
            parts += ["arp_op=\(arpOp)", "arp_spa=\(ipSrc)", "arp_tpa=\(ipDst)"]
        }
        return parts.joined(separator: ",")
    }

    // MARK: extraction

    /// Extracts the key of `frame` received on `inPort`, given its parsed layout.
    @inlinable
    public init(frame: UnsafeRawBufferPointer, layout: FrameLayout, inPort: UInt32) {
        w0 = UInt64(inPort) | UInt64(layout.etherType) << 32
        if let tci = layout.vlanTCI { w0 |= UInt64(tci | 0x1000) << 48 }
        w1 = frame.mac(6)
        w2 = frame.mac(0)
        w3 = 0
        w4 = 0
        let l3 = layout.l3Offset
        if layout.etherType == EtherType.arp {
            w4 = UInt64(frame.be16(l3 + 6)) << 32
            w3 = UInt64(frame.be32(l3 + 14)) | UInt64(frame.be32(l3 + 24)) << 32
        } else if layout.etherType == EtherType.ipv4 && layout.ipHeaderLength > 0 {
            let proto = frame[l3 + 9]
            w1 |= UInt64(proto) << 48 | UInt64(frame[l3 + 1]) << 56
            let frag: UInt64 = (layout.isFragment ? 1 : 0) | (layout.isLaterFragment ? 2 : 0)
            w2 |= UInt64(frame[l3 + 8]) << 48 | frag << 56
            w3 = UInt64(frame.be32(l3 + 12)) | UInt64(frame.be32(l3 + 16)) << 32
            let l4 = layout.l4Offset
            if l4 != 0 {
                switch proto {
                case IPProtocolNumber.icmp:
                    w4 = UInt64(frame[l4]) | UInt64(frame[l4 + 1]) << 16
                case IPProtocolNumber.udp:
                    w4 = UInt64(frame.be16(l4)) | UInt64(frame.be16(l4 + 2)) << 16
                case IPProtocolNumber.tcp:
                    w4 = UInt64(frame.be16(l4)) | UInt64(frame.be16(l4 + 2)) << 16
                        | UInt64(frame.be16(l4 + 12) & 0x0FFF) << 48
                default: break
                }
            }
        }
    }

    /// Parses `frame` and extracts its key.
    @inlinable
    public static func extract(_ frame: UnsafeRawBufferPointer, inPort: UInt32) throws(FrameError) -> FlowKey {
        let layout = try FrameLayout.parse(frame)
        return FlowKey(frame: frame, layout: layout, inPort: inPort)
    }
}

/// Which bits of a `FlowKey` matter. Same layout as the key.
public struct FlowMask: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64
    public var w1: UInt64
    public var w2: UInt64
    public var w3: UInt64
    public var w4: UInt64

    @inlinable public init(w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0, w4: UInt64 = 0) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3; self.w4 = w4
    }

    /// Matches nothing in particular: every packet.
    public static let wildcardAll = FlowMask()
    /// Every bit matters.
    public static let exact = FlowMask(w0: ~0, w1: ~0, w2: ~0, w3: ~0, w4: ~0)

    // Field masks, each a mask with only that field's bits set.
    public static let inPort = FlowMask(w0: 0xFFFF_FFFF)
    public static let ethType = FlowMask(w0: 0xFFFF << 32)
    public static let vlanTCI = FlowMask(w0: 0xFFFF << 48)
    public static let ethSrc = FlowMask(w1: 0xFFFF_FFFF_FFFF)
    public static let ipProto = FlowMask(w1: 0xFF << 48)
    public static let ipTOS = FlowMask(w1: 0xFF << 56)
    public static let ethDst = FlowMask(w2: 0xFFFF_FFFF_FFFF)
    public static let ipTTL = FlowMask(w2: 0xFF << 48)
    public static let ipFrag = FlowMask(w2: 0xFF << 56)
    public static let ipSrc = FlowMask(w3: 0xFFFF_FFFF)
    public static let ipDst = FlowMask(w3: 0xFFFF_FFFF << 32)
    public static let tpSrc = FlowMask(w4: 0xFFFF)
    public static let tpDst = FlowMask(w4: 0xFFFF << 16)
    public static let arpOp = FlowMask(w4: 0xFFFF << 32)
    public static let tcpFlags = FlowMask(w4: 0x0FFF << 48)

    /// The mask for the first `length` bits of the source address.
    public static func ipSrc(prefix length: UInt8) -> FlowMask {
        FlowMask(w3: UInt64(IPv4Prefix.netmask(length)))
    }
    /// The mask for the first `length` bits of the destination address.
    public static func ipDst(prefix length: UInt8) -> FlowMask {
        FlowMask(w3: UInt64(IPv4Prefix.netmask(length)) << 32)
    }

    @inlinable @inline(__always)
    public func union(_ o: FlowMask) -> FlowMask {
        FlowMask(w0: w0 | o.w0, w1: w1 | o.w1, w2: w2 | o.w2, w3: w3 | o.w3, w4: w4 | o.w4)
    }
    @inlinable @inline(__always)
    public mutating func formUnion(_ o: FlowMask) {
        w0 |= o.w0; w1 |= o.w1; w2 |= o.w2; w3 |= o.w3; w4 |= o.w4
    }
    @inlinable @inline(__always)
    public func intersection(_ o: FlowMask) -> FlowMask {
        FlowMask(w0: w0 & o.w0, w1: w1 & o.w1, w2: w2 & o.w2, w3: w3 & o.w3, w4: w4 & o.w4)
    }

    /// True if every bit set in `self` is set in `other`.
    public func isSubset(of other: FlowMask) -> Bool {
        w0 & ~other.w0 == 0 && w1 & ~other.w1 == 0 && w2 & ~other.w2 == 0
            && w3 & ~other.w3 == 0 && w4 & ~other.w4 == 0
    }

    public var description: String {
        let names: [(FlowMask, String)] = [
            (.inPort, "in_port"), (.ethType, "eth_type"), (.vlanTCI, "vlan"), (.ethSrc, "eth_src"),
            (.ethDst, "eth_dst"), (.ipProto, "ip_proto"), (.ipTOS, "tos"), (.ipTTL, "ttl"),
            (.ipFrag, "frag"), (.ipSrc, "ip_src"), (.ipDst, "ip_dst"), (.tpSrc, "tp_src"),
            (.tpDst, "tp_dst"), (.arpOp, "arp_op"), (.tcpFlags, "tcp_flags"),
        ]
        return names.filter { self.intersection($0.0) != .wildcardAll }.map(\.1).joined(separator: ",")
    }
}

/// A key whose unmasked bits are zero, together with its mask: one megaflow.
public struct FlowMatch: Hashable, Sendable, CustomStringConvertible {
    public let key: FlowKey
    public let mask: FlowMask

    public init(key: FlowKey, mask: FlowMask) {
        self.key = key.masked(by: mask)
        self.mask = mask
    }

    @inlinable @inline(__always)
    public func matches(_ k: FlowKey) -> Bool { k.masked(by: mask) == key }

    /// True if some key matches both.
    public func overlaps(_ o: FlowMatch) -> Bool {
        let common = mask.intersection(o.mask)
        return key.masked(by: common) == o.key.masked(by: common)
    }

    public var description: String {
        var parts: [String] = []
        let k = key, m = mask
        func has(_ f: FlowMask) -> Bool { m.intersection(f) != .wildcardAll }
        if has(.inPort) { parts.append("in_port=\(k.inPort)") }
        if has(.ethType) { parts.append("eth_type=0x\(String(k.ethType, radix: 16))") }
        if has(.vlanTCI) { parts.append(k.vlanID.map { "vlan=\($0)" } ?? "vlan=none") }
        if has(.ethSrc) { parts.append("eth_src=\(k.ethSrc)") }
        if has(.ethDst) { parts.append("eth_dst=\(k.ethDst)") }
        if has(.ipSrc) {
            let len = UInt8((m.w3 & 0xFFFF_FFFF).nonzeroBitCount)
            parts.append("ip_src=\(k.ipSrc)/\(len)")
        }
        if has(.ipDst) {
            let len = UInt8((m.w3 >> 32).nonzeroBitCount)
            parts.append("ip_dst=\(k.ipDst)/\(len)")
        }
        if has(.ipProto) { parts.append("ip_proto=\(k.ipProto)") }
        if has(.ipTOS) { parts.append("tos=\(k.ipTOS)") }
        if has(.ipTTL) { parts.append("ttl=\(k.ipTTL)") }
        if has(.ipFrag) { parts.append("frag=\(k.ipFrag)") }
        if has(.tpSrc) { parts.append("tp_src=\(k.tpSrc)") }
        if has(.tpDst) { parts.append("tp_dst=\(k.tpDst)") }
        if has(.arpOp) { parts.append("arp_op=\(k.arpOp)") }
        if has(.tcpFlags) { parts.append("tcp_flags=0x\(String(k.tcpFlags, radix: 16))") }
        return parts.isEmpty ? "any" : parts.joined(separator: ",")
    }
}
