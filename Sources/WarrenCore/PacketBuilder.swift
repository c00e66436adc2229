// Packet codec, building side: frames for ARP, IPv4, ICMP, UDP and TCP with correct
// checksums. Used by the simulator for the packets it generates (ARP requests and
// replies, ICMP echo replies and errors, TCP resets), by `packet.trace` to turn a
// field description into a frame, and by tests and benchmarks.
//
// These run on the slow path only; they allocate.
// Threading: pure functions.

/// A description of a packet by its header fields; any field may be omitted and gets
/// a sensible default. `frame()` builds the bytes.
public struct PacketSpec: Sendable, Hashable {
    public var ethSrc = MACAddress(0x02, 0, 0, 0, 0, 1)
    public var ethDst = MACAddress(0x02, 0, 0, 0, 0, 2)
    public var vlan: UInt16? = nil
    /// `ipv4` (default) or `arp`.
    public var ethType: UInt16 = EtherType.ipv4
    public var ipSrc = IPv4Address(100, 64, 0, 1)
    public var ipDst = IPv4Address(100, 64, 0, 2)
    public var ipProto: UInt8 = IPProtocolNumber.icmp
    public var ttl: UInt8 = 64
    public var tos: UInt8 = 0
    public var srcPort: UInt16 = 0
    public var dstPort: UInt16 = 0
    /// ICMP type/code (default echo request).
    public var icmpType: UInt8 = 8
    public var icmpCode: UInt8 = 0
    public var tcpFlags: UInt16 = TCPFlags.syn
    /// ARP operation (1 request, 2 reply) when `ethType` is ARP; sender = ipSrc/ethSrc,
    /// target = ipDst.
    public var arpOp: UInt16 = 1
    /// A fragment: more-fragments flag and offset in 8-byte units.
    public var moreFragments = false
    public var fragmentOffset: UInt16 = 0
    public var payload: [UInt8] = Array(repeating: 0x61, count: 16)

    public init() {}

    /// The frame these fields describe.
    public func frame() -> [UInt8] {
        if ethType == EtherType.arp {
            return PacketBuilder.arp(op: arpOp, senderMAC: ethSrc, senderIP: ipSrc,
                                     targetMAC: arpOp == 1 ? .zero : ethDst, targetIP: ipDst,
                                     ethDst: ethDst, ethSrc: ethSrc, vlan: vlan)
        }
        let l4: [UInt8]
        if fragmentOffset != 0 {
            l4 = payload
        } else {
            switch ipProto {
            case IPProtocolNumber.icmp:
                l4 = PacketBuilder.icmp(type: icmpType, code: icmpCode, rest: 0x1234_0001, payload: payload)
            case IPProtocolNumber.udp:
                l4 = PacketBuilder.udp(src: ipSrc, dst: ipDst, srcPort: srcPort, dstPort: dstPort, payload: payload)
            case IPProtocolNumber.tcp:
                l4 = PacketBuilder.tcp(src: ipSrc, dst: ipDst, srcPort: srcPort, dstPort: dstPort,
                                       seq: 1000, ack: 0, flags: tcpFlags, window: 65535, payload: payload)
            default:
                l4 = payload
            }
        }
        let ip = PacketBuilder.ipv4(src: ipSrc, dst: ipDst, proto: ipProto, ttl: ttl, tos: tos,
                                    identification: 1, moreFragments: moreFragments,
                                    fragmentOffset: fragmentOffset, payload: l4)
        return PacketBuilder.ethernet(dst: ethDst, src: ethSrc, type: EtherType.ipv4, vlan: vlan, payload: ip)
    }
}

/// TCP flag bits.
public enum TCPFlags {
    public static let fin: UInt16 = 0x01
    public static let syn: UInt16 = 0x02
    public static let rst: UInt16 = 0x04
    public static let psh: UInt16 = 0x08
    public static let ack: UInt16 = 0x10
}

/// Builders for headers with correct checksums.
public enum PacketBuilder {
    public static func ethernet(dst: MACAddress, src: MACAddress, type: UInt16, vlan: UInt16? = nil, payload: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(18 + payload.count)
        out += dst.octets
        out += src.octets
        if let v = vlan {
            out += [0x81, 0x00, UInt8(v >> 8 & 0x0F), UInt8(v & 0xFF)]
        }
        out += [UInt8(type >> 8), UInt8(type & 0xFF)]
        out += payload
        return out
    }

    public static func arp(op: UInt16, senderMAC: MACAddress, senderIP: IPv4Address,
                           targetMAC: MACAddress, targetIP: IPv4Address,
                           ethDst: MACAddress, ethSrc: MACAddress, vlan: UInt16? = nil) -> [UInt8] {
        var p: [UInt8] = [0, 1, 0x08, 0x00, 6, 4, UInt8(op >> 8), UInt8(op & 0xFF)]
        p += senderMAC.octets
        p += be32(senderIP.rawValue)
        p += targetMAC.octets
        p += be32(targetIP.rawValue)
        return ethernet(dst: ethDst, src: ethSrc, type: EtherType.arp, vlan: vlan, payload: p)
    }

    public static func ipv4(src: IPv4Address, dst: IPv4Address, proto: UInt8, ttl: UInt8 = 64,
                            tos: UInt8 = 0, identification: UInt16 = 0, dontFragment: Bool = false,
                            moreFragments: Bool = false, fragmentOffset: UInt16 = 0,
                            options: [UInt8] = [], payload: [UInt8]) -> [UInt8] {
        precondition(options.count % 4 == 0 && options.count <= 40, "IPv4 options must be padded to 4 bytes")
        let hl = 20 + options.count
        let total = hl + payload.count
        var flags: UInt16 = fragmentOffset & 0x1FFF
        if dontFragment { flags |= 0x4000 }
        if moreFragments { flags |= 0x2000 }
        var h: [UInt8] = [UInt8(0x40 | hl / 4), tos, UInt8(total >> 8 & 0xFF), UInt8(total & 0xFF),
                          UInt8(identification >> 8), UInt8(identification & 0xFF),
                          UInt8(flags >> 8), UInt8(flags & 0xFF), ttl, proto, 0, 0]
        h += be32(src.rawValue)
        h += be32(dst.rawValue)
        h += options
        let c = h.withUnsafeBytes { internetChecksum($0) }
        h[10] = UInt8(c >> 8)
        h[11] = UInt8(c & 0xFF)
        return h + payload
    }

    /// An ICMP message; `rest` is the second 32-bit word (identifier/sequence for echo,
    /// unused/next-hop MTU for errors).
    public static func icmp(type: UInt8, code: UInt8, rest: UInt32, payload: [UInt8]) -> [UInt8] {
        var m: [UInt8] = [type, code, 0, 0] + be32(rest) + payload
        let c = m.withUnsafeBytes { internetChecksum($0) }
        m[2] = UInt8(c >> 8)
        m[3] = UInt8(c & 0xFF)
        return m
    }

    public static func udp(src: IPv4Address, dst: IPv4Address, srcPort: UInt16, dstPort: UInt16, payload: [UInt8]) -> [UInt8] {
        let len = 8 + payload.count
        var m: [UInt8] = [UInt8(srcPort >> 8), UInt8(srcPort & 0xFF), UInt8(dstPort >> 8), UInt8(dstPort & 0xFF),
                          UInt8(len >> 8 & 0xFF), UInt8(len & 0xFF), 0, 0] + payload
        let pseudo = pseudoHeaderSum(source: src.rawValue, destination: dst.rawValue, protocolNumber: IPProtocolNumber.udp, length: len)
        var c = m.withUnsafeBytes { internetChecksum($0, initial: pseudo) }
        if c == 0 { c = 0xFFFF }
        m[6] = UInt8(c >> 8)
        m[7] = UInt8(c & 0xFF)
        return m
    }

    public static func tcp(src: IPv4Address, dst: IPv4Address, srcPort: UInt16, dstPort: UInt16,
                           seq: UInt32, ack: UInt32, flags: UInt16, window: UInt16,
                           options: [UInt8] = [], payload: [UInt8]) -> [UInt8] {
        precondition(options.count % 4 == 0, "TCP options must be padded to 4 bytes")
        let hl = 20 + options.count
        var m: [UInt8] = [UInt8(srcPort >> 8), UInt8(srcPort & 0xFF), UInt8(dstPort >> 8), UInt8(dstPort & 0xFF)]
        m += be32(seq)
        m += be32(ack)
        m += [UInt8(hl / 4) << 4 | UInt8(flags >> 8 & 0x0F), UInt8(flags & 0xFF),
              UInt8(window >> 8), UInt8(window & 0xFF), 0, 0, 0, 0]
        m += options
        m += payload
        let pseudo = pseudoHeaderSum(source: src.rawValue, destination: dst.rawValue, protocolNumber: IPProtocolNumber.tcp, length: m.count)
        let c = m.withUnsafeBytes { internetChecksum($0, initial: pseudo) }
        m[16] = UInt8(c >> 8)
        m[17] = UInt8(c & 0xFF)
        return m
    }

    @inline(__always) static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }
}

// MARK: - Replies and errors derived from a received packet

extension PacketBuilder {
    /// An ARP reply to `request` (a parsed ARP request frame) saying `ip` is at `mac`.
    public static func arpReply(to request: UnsafeRawBufferPointer, layout: FrameLayout, mac: MACAddress) -> [UInt8] {
        let l3 = layout.l3Offset
        let senderMAC = MACAddress(rawValue: request.mac(l3 + 8))
        let senderIP = IPv4Address(rawValue: request.be32(l3 + 14))
        let targetIP = IPv4Address(rawValue: request.be32(l3 + 24))
        return arp(op: 2, senderMAC: mac, senderIP: targetIP, targetMAC: senderMAC, targetIP: senderIP,
                   ethDst: senderMAC, ethSrc: mac)
    }

    /// An ARP request for `target`, broadcast from `mac`/`ip`.
    public static func arpRequest(target: IPv4Address, fromMAC mac: MACAddress, fromIP ip: IPv4Address) -> [UInt8] {
        arp(op: 1, senderMAC: mac, senderIP: ip, targetMAC: .zero, targetIP: target,
            ethDst: .broadcast, ethSrc: mac)
    }

    /// An ICMP echo reply to the echo request in `frame`, from the router port
    /// (`mac`, `ip`) back to the sender's MAC.
    public static func echoReply(to frame: UnsafeRawBufferPointer, layout: FrameLayout, toMAC: MACAddress,
                                 mac: MACAddress, ip: IPv4Address) -> [UInt8] {
        let l3 = layout.l3Offset, l4 = layout.l4Offset
        let end = l3 + layout.ipTotalLength
        let rest = frame.be32(l4 + 4)
        let payload = Array(frame[(l4 + 8)..<end])
        let src = IPv4Address(rawValue: frame.be32(l3 + 12))
        let icmpMessage = icmp(type: 0, code: 0, rest: rest, payload: payload)
        let ipPacket = ipv4(src: ip, dst: src, proto: IPProtocolNumber.icmp, ttl: 64, identification: frame.be16(l3 + 4), payload: icmpMessage)
        return ethernet(dst: toMAC, src: mac, type: EtherType.ipv4, payload: ipPacket)
    }

    /// An ICMP error (destination unreachable, time exceeded, ...) about the IPv4 packet
    /// in `frame`, quoting its header and first 8 bytes of payload (RFC 792), sent from
    /// `ip` to the packet's source via the Ethernet address the packet came from.
    public static func icmpError(type: UInt8, code: UInt8, about frame: UnsafeRawBufferPointer, layout: FrameLayout,
                                 toMAC: MACAddress, fromMAC mac: MACAddress, fromIP ip: IPv4Address, rest: UInt32 = 0) -> [UInt8] {
        let l3 = layout.l3Offset
        let quoteLength = min(layout.ipHeaderLength + 8, layout.ipTotalLength)
        let quote = Array(frame[l3..<(l3 + quoteLength)])
        let src = IPv4Address(rawValue: frame.be32(l3 + 12))
        let icmpMessage = icmp(type: type, code: code, rest: rest, payload: quote)
        let ipPacket = ipv4(src: ip, dst: src, proto: IPProtocolNumber.icmp, ttl: 64, payload: icmpMessage)
        return ethernet(dst: toMAC, src: mac, type: EtherType.ipv4, payload: ipPacket)
    }

    /// A TCP reset answering the TCP segment in `frame` (RFC 793 reset generation),
    /// appearing to come from the segment's destination.
    public static func tcpReset(to frame: UnsafeRawBufferPointer, layout: FrameLayout, toMAC: MACAddress, fromMAC mac: MACAddress) -> [UInt8] {
        let l3 = layout.l3Offset, l4 = layout.l4Offset
        let src = IPv4Address(rawValue: frame.be32(l3 + 12))
        let dst = IPv4Address(rawValue: frame.be32(l3 + 16))
        let sport = frame.be16(l4), dport = frame.be16(l4 + 2)
        let seq = frame.be32(l4 + 4), ackIn = frame.be32(l4 + 8)
        let flags = frame.be16(l4 + 12) & 0x0FFF
        let dataOffset = Int(frame[l4 + 12] >> 4) * 4
        var segLen = UInt32(layout.ipTotalLength - layout.ipHeaderLength - dataOffset)
        if flags & TCPFlags.syn != 0 { segLen += 1 }
        if flags & TCPFlags.fin != 0 { segLen += 1 }
        let segment: [UInt8]
        if flags & TCPFlags.ack != 0 {
            segment = tcp(src: dst, dst: src, srcPort: dport, dstPort: sport, seq: ackIn, ack: 0,
                          flags: TCPFlags.rst, window: 0, payload: [])
        } else {
            segment = tcp(src: dst, dst: src, srcPort: dport, dstPort: sport, seq: 0, ack: seq &+ segLen,
                          flags: TCPFlags.rst | TCPFlags.ack, window: 0, payload: [])
        }
        let ipPacket = ipv4(src: dst, dst: src, proto: IPProtocolNumber.tcp, ttl: 64, payload: segment)
        return ethernet(dst: toMAC, src: mac, type: EtherType.ipv4, payload: ipPacket)
    }
}
