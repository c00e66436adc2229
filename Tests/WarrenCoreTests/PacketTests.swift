import WarrenCore
import XCTest

final class PacketTests: XCTestCase {
    func testAddressParsing() {
        XCTAssertEqual(IPv4Address("10.0.1.2")?.description, "10.0.1.2")
        XCTAssertNil(IPv4Address("10.0.1"))
        XCTAssertNil(IPv4Address("10.0.1.256"))
        XCTAssertNil(IPv4Address("010.0.0.1"))
        XCTAssertNil(IPv4Address("1.2.3.4 "))
        XCTAssertEqual(IPv4Prefix("10.1.0.0/16")?.description, "10.1.0.0/16")
        XCTAssertNil(IPv4Prefix("10.1.0.1/16"), "host bits set")
        XCTAssertNil(IPv4Prefix("10.1.0.0/33"))
        XCTAssertNil(IPv4Prefix("10.1.0.0/"))
        XCTAssertEqual(IPv4Interface("10.0.1.1/24")?.network.description, "10.0.1.0/24")
        XCTAssertNil(IPv4Interface("10.0.1.0/24"), "network address")
        XCTAssertNil(IPv4Interface("10.0.1.255/24"), "broadcast address")
        XCTAssertNotNil(IPv4Interface("169.254.10.1/31"))
        XCTAssertEqual(MACAddress("02:AB:cd:00:00:01")?.description, "02:ab:cd:00:00:01")
        XCTAssertNil(MACAddress("02:ab:cd:00:00"))
        XCTAssertNil(MACAddress("02:ab:cd:00:00:0g"))
        XCTAssertTrue(MACAddress.locallyAdministered(seed: 7).isUnicast)
        var g = SeededGenerator(seed: 1)
        let id = ResourceID.random(using: &g)
        XCTAssertEqual(ResourceID(id.description), id)
        XCTAssertNil(ResourceID("not-a-uuid"))
    }

    func testParseUDPWithVLANAndKey() throws {
        let f = udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2", sport: 1234, dport: 53, ttl: 9, vlan: 42)
        let layout = try FrameLayout.of(f)
        XCTAssertEqual(layout.vlanTCI, 42)
        XCTAssertEqual(layout.l3Offset, 18)
        XCTAssertEqual(layout.l4Offset, 38)
        let k = try FlowKey.of(f, inPort: 7)
        XCTAssertEqual(k.inPort, 7)
        XCTAssertEqual(k.vlanID, 42)
        XCTAssertEqual(k.ethSrc, mac(1))
        XCTAssertEqual(k.ethDst, mac(2))
        XCTAssertEqual(k.ethType, EtherType.ipv4)
        XCTAssertEqual(k.ipSrc, IPv4Address("100.64.0.1"))
        XCTAssertEqual(k.ipDst, IPv4Address("100.64.0.2"))
        XCTAssertEqual(k.ipProto, IPProtocolNumber.udp)
        XCTAssertEqual(k.ipTTL, 9)
        XCTAssertEqual(k.tpSrc, 1234)
        XCTAssertEqual(k.tpDst, 53)
    }

    func testParseARPICMPTCPAndOptions() throws {
        var s = PacketSpec()
        s.ethType = EtherType.arp
        s.ethDst = .broadcast
        s.ipDst = IPv4Address("100.64.0.9")!
        let arpKey = try FlowKey.of(s.frame(), inPort: 1)
        XCTAssertEqual(arpKey.arpOp, 1)
        XCTAssertEqual(arpKey.ipDst, IPv4Address("100.64.0.9"))

        var t = PacketSpec()
        t.ipProto = IPProtocolNumber.tcp
        t.srcPort = 40000
        t.dstPort = 22
        t.tcpFlags = TCPFlags.syn | TCPFlags.ack
        let tk = try FlowKey.of(t.frame(), inPort: 1)
        XCTAssertEqual(tk.tpDst, 22)
        XCTAssertEqual(tk.tcpFlags, TCPFlags.syn | TCPFlags.ack)

        let icmp = PacketSpec().frame()
        let ik = try FlowKey.of(icmp, inPort: 1)
        XCTAssertEqual(ik.tpSrc, 8, "ICMP type in tp_src")

        // IPv4 options (IHL 6) are skipped correctly.
        let payload = PacketBuilder.udp(src: IPv4Address("100.64.0.1")!, dst: IPv4Address("100.64.0.2")!, srcPort: 5, dstPort: 6, payload: [1, 2, 3])
        let ip = PacketBuilder.ipv4(src: IPv4Address("100.64.0.1")!, dst: IPv4Address("100.64.0.2")!, proto: IPProtocolNumber.udp,
                                    options: [1, 1, 1, 0], payload: payload)
        let f = PacketBuilder.ethernet(dst: mac(2), src: mac(1), type: EtherType.ipv4, payload: ip)
        let layout = try FrameLayout.of(f)
        XCTAssertEqual(layout.ipHeaderLength, 24)
        XCTAssertEqual(try FlowKey.of(f, inPort: 1).tpDst, 6)
    }

    func testFragmentsRecognised() throws {
        var s = PacketSpec()
        s.ipProto = IPProtocolNumber.udp
        s.moreFragments = true
        s.srcPort = 1; s.dstPort = 2
        let first = try FlowKey.of(s.frame(), inPort: 1)
        XCTAssertEqual(first.ipFrag, 1)
        XCTAssertEqual(first.tpDst, 2)
        s.fragmentOffset = 100
        s.moreFragments = false
        let later = try FlowKey.of(s.frame(), inPort: 1)
        XCTAssertEqual(later.ipFrag, 3)
        XCTAssertEqual(later.tpSrc, 0, "no L4 header in later fragments")
        XCTAssertEqual(try FrameLayout.of(s.frame()).l4Offset, 0)
    }

    func testMalformedFramesAreErrors() {
        let good = udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2")
        func err(_ f: [UInt8]) -> FrameError? {
            do { _ = try FrameLayout.of(f); return nil } catch { return error as? FrameError }
        }
        XCTAssertEqual(err(Array(good[0..<10])), .truncatedEthernet)
        XCTAssertEqual(err(Array(good[0..<20])), .truncatedIPv4)
        var badIHL = good; badIHL[14] = 0x44
        XCTAssertEqual(err(badIHL), .badIPHeaderLength)
        var badVersion = good; badVersion[14] = 0x65
        XCTAssertEqual(err(badVersion), .badIPVersion)
        var bogusLength = good; bogusLength[16] = 0xFF
        XCTAssertEqual(err(bogusLength), .badIPTotalLength)
        var badSum = good; badSum[24] ^= 0xFF
        XCTAssertEqual(err(badSum), .badIPChecksum)
        // Truncate the UDP header but keep the IP lengths consistent.
        let shortUDP = PacketBuilder.ethernet(dst: mac(2), src: mac(1), type: EtherType.ipv4,
                                              payload: PacketBuilder.ipv4(src: IPv4Address("100.64.0.1")!, dst: IPv4Address("100.64.0.2")!,
                                                                          proto: IPProtocolNumber.udp, payload: [1, 2, 3]))
        XCTAssertEqual(err(shortUDP), .truncatedTransport)
        var tagged = udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2", vlan: 5)
        XCTAssertEqual(err(Array(tagged[0..<16])), .truncatedVLAN)
        tagged[16] = 0x81; tagged[17] = 0x00
        XCTAssertEqual(err(tagged), .stackedVLAN)
        var arp = PacketSpec(); arp.ethType = EtherType.arp
        XCTAssertEqual(err(Array(arp.frame()[0..<30])), .truncatedARP)
    }

    /// Fuzz: random bytes, random truncations and random corruptions of valid frames
    /// never crash and never read past the end (the buffer is exactly the frame, so an
    /// overread would trip the sanitizer-free debug precondition in the subscripts).
    func testFuzzParserNeverCrashes() {
        var g = SeededGenerator(seed: 7)
        var templates: [[UInt8]] = []
        for proto in [IPProtocolNumber.icmp, IPProtocolNumber.udp, IPProtocolNumber.tcp, 47] {
            var s = PacketSpec(); s.ipProto = proto; templates.append(s.frame())
            s.vlan = 3; templates.append(s.frame())
        }
        var arp = PacketSpec(); arp.ethType = EtherType.arp; templates.append(arp.frame())
        var parsed = 0, failed = 0
        for i in 0..<60_000 {
            var bytes: [UInt8]
            if i % 3 == 0 {
                bytes = (0..<Int(g.next() % 80)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            } else {
                bytes = templates[Int(g.next() % UInt64(templates.count))]
                let cut = Int(g.next() % UInt64(bytes.count + 1))
                bytes = Array(bytes[0..<cut])
                if !bytes.isEmpty && i % 2 == 0 {
                    for _ in 0..<Int(g.next() % 4) { bytes[Int(g.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: g.next()) }
                }
            }
            // Copy into an exact-size allocation so nothing past the end is readable as frame.
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            defer { buf.deallocate() }
            buf.copyBytes(from: bytes)
            do {
                let l = try FrameLayout.parse(UnsafeRawBufferPointer(buf))
                _ = FlowKey(frame: UnsafeRawBufferPointer(buf), layout: l, inPort: 1)
                parsed += 1
            } catch {
                failed += 1
            }
        }
        XCTAssertGreaterThan(parsed, 1000)
        XCTAssertGreaterThan(failed, 1000)
    }

    func testIncrementalChecksumMatchesFullRecompute() {
        var g = SeededGenerator(seed: 3)
        for _ in 0..<2000 {
            var header = (0..<20).map { _ in UInt8(truncatingIfNeeded: g.next()) }
            header[10] = 0; header[11] = 0
            let c = header.withUnsafeBytes { internetChecksum($0) }
            header[10] = UInt8(c >> 8); header[11] = UInt8(c & 0xFF)
            let off = Int(g.next() % 10) * 2
            if off == 10 { continue }
            let old = UInt16(header[off]) << 8 | UInt16(header[off + 1])
            let new = UInt16(truncatingIfNeeded: g.next())
            header[off] = UInt8(new >> 8); header[off + 1] = UInt8(new & 0xFF)
            let updated = updateChecksum(c, old: old, new: new)
            header[10] = UInt8(updated >> 8); header[11] = UInt8(updated & 0xFF)
            XCTAssertEqual(header.withUnsafeBytes { internetChecksum($0) }, 0)
        }
    }

    func testBuiltChecksumsAreValid() throws {
        for proto in [IPProtocolNumber.udp, IPProtocolNumber.tcp, IPProtocolNumber.icmp] {
            var s = PacketSpec(); s.ipProto = proto; s.srcPort = 9; s.dstPort = 10
            let f = s.frame()
            let l = try FrameLayout.of(f)
            try f.withUnsafeBytes { raw in
                let l4 = UnsafeRawBufferPointer(rebasing: raw[l.l4Offset..<(l.l3Offset + l.ipTotalLength)])
                let pseudo = proto == IPProtocolNumber.icmp ? 0 : pseudoHeaderSum(source: raw.loadUnaligned(fromByteOffset: 26, as: UInt32.self).bigEndian,
                                                                                    destination: raw.loadUnaligned(fromByteOffset: 30, as: UInt32.self).bigEndian,
                                                                                    protocolNumber: proto, length: l4.count)
                XCTAssertEqual(internetChecksum(l4, initial: pseudo), 0, "protocol \(proto)")
                _ = try XCTUnwrap(Optional(l))
            }
        }
    }

    func testRewriteTTLMACsVLANAndMSS() throws {
        var s = PacketSpec()
        s.ipProto = IPProtocolNumber.tcp
        s.tcpFlags = TCPFlags.syn
        s.ttl = 10
        var f = s.frame()
        // Give the SYN an MSS option of 1460 (rebuild the TCP header with options).
        let tcp = PacketBuilder.tcp(src: s.ipSrc, dst: s.ipDst, srcPort: 1, dstPort: 2, seq: 1, ack: 0,
                                    flags: TCPFlags.syn, window: 100, options: [2, 4, 0x05, 0xB4], payload: [])
        f = PacketBuilder.ethernet(dst: s.ethDst, src: s.ethSrc, type: EtherType.ipv4,
                                   payload: PacketBuilder.ipv4(src: s.ipSrc, dst: s.ipDst, proto: IPProtocolNumber.tcp, ttl: 10, payload: tcp))
        let out = execute([.setEthSrc(mac(9)), .setEthDst(mac(8)), .decrementTTL, .pushVLAN(100), .clampMSS(1360), .output(5)], on: f)
        XCTAssertEqual(out.count, 1)
        let o = out[0].frame
        XCTAssertEqual(o.count, f.count + 4)
        let l = try FrameLayout.of(o)  // verifies the IP checksum
        XCTAssertEqual(l.vlanTCI, 100)
        let k = try FlowKey.of(o, inPort: 0)
        XCTAssertEqual(k.ethSrc, mac(9))
        XCTAssertEqual(k.ethDst, mac(8))
        XCTAssertEqual(k.ipTTL, 9)
        let l4 = l.l4Offset
        XCTAssertEqual(UInt16(o[l4 + 22]) << 8 | UInt16(o[l4 + 23]), 1360)
        o.withUnsafeBytes { raw in
            let seg = UnsafeRawBufferPointer(rebasing: raw[l4..<(l.l3Offset + l.ipTotalLength)])
            let pseudo = pseudoHeaderSum(source: k.ipSrc.rawValue, destination: k.ipDst.rawValue, protocolNumber: 6, length: seg.count)
            XCTAssertEqual(internetChecksum(seg, initial: pseudo), 0, "TCP checksum after MSS clamp")
        }
        // Pop the tag again, and restore between outputs.
        let back = execute([.popVLAN, .output(1), .restore, .output(2)], on: o)
        XCTAssertEqual(back[0].frame.count, f.count)
        XCTAssertEqual(try FrameLayout.of(back[0].frame).vlanTCI, nil)
        XCTAssertEqual(back[1].frame, o)
    }

    func testRepliesAndErrors() throws {
        var s = PacketSpec()
        s.payload = Array(0..<40)
        let echo = s.frame()
        let l = try FrameLayout.of(echo)
        let reply = echo.withUnsafeBytes { PacketBuilder.echoReply(to: $0, layout: l, toMAC: mac(1), mac: mac(7), ip: s.ipDst) }
        let rk = try FlowKey.of(reply, inPort: 0)
        XCTAssertEqual(rk.tpSrc, 0, "echo reply")
        XCTAssertEqual(rk.ipDst, s.ipSrc)
        XCTAssertEqual(rk.ipSrc, s.ipDst)
        XCTAssertEqual(Array(reply.suffix(40)), Array(0..<40))
        let err = echo.withUnsafeBytes { PacketBuilder.icmpError(type: 11, code: 0, about: $0, layout: l, toMAC: mac(1), fromMAC: mac(7), fromIP: IPv4Address("100.64.9.1")!) }
        let ek = try FlowKey.of(err, inPort: 0)
        XCTAssertEqual(ek.tpSrc, 11)
        XCTAssertEqual(ek.ipSrc, IPv4Address("100.64.9.1"))
        XCTAssertEqual(try FrameLayout.of(err).ipTotalLength, 20 + 8 + 28)
    }
}
