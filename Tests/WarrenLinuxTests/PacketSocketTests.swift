// Tests for PacketSocket and MultiMessageBatch in a namespace (wlt-pk*) with a veth pair
// wlt0a/wlt0b: a batch sent with sendmmsg on one end arrives byte-for-byte via recvmmsg on
// the other; virtio-net headers show the kernel's checksum offload state; truncation is
// counted; errors name the interface and step.

import Foundation
import XCTest
@testable import WarrenLinux

final class PacketSocketTests: XCTestCase {
    let scratch = ScratchNamespaces()
    override func tearDown() { scratch.removeAll() }

    private func vethNamespace(_ suffix: String) throws -> (String, Netlink) {
        let ns = try scratch.make(suffix)
        let nl = try Netlink(namespace: ns)
        try nl.createVethPair("wlt0a", peer: "wlt0b")
        try nl.setLinkUp("wlt0a", true)
        try nl.setLinkUp("wlt0b", true)
        // Disable IPv6 so no router solicitations/DAD frames show up on the wire.
        try NetworkNamespace.setSysctl("net.ipv6.conf.all.disable_ipv6", "1", namespace: ns)
        return (ns, nl)
    }

    /// A test frame: broadcast dst, fixed src, ethertype 0x88B5 (local experimental), payload
    /// identifying the frame.
    private func frame(_ i: Int, length: Int) -> [UInt8] {
        var f: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x88, 0xb5]
        while f.count < length { f.append(UInt8(truncatingIfNeeded: i &* 31 &+ f.count)) }
        f[14] = UInt8(i)
        return f
    }

    /// Sends one UDP datagram ("warren") from the namespace's own stack out of wlt0a, which
    /// leaves it with its checksum still to be completed (veth offload). Returns the payload.
    private func sendKernelUDP(_ ns: String, _ nl: Netlink) throws -> [UInt8] {
        try nl.addAddress("100.64.5.1/24", to: "wlt0a")
        try mustShell("ip -n \(ns) neigh add 100.64.5.2 lladdr 02:00:00:00:05:02 dev wlt0a")
        let udp = try NetworkNamespace.run(in: ns) { socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0) }
        XCTAssertGreaterThanOrEqual(udp, 0)
        defer { close(udp) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = in_port_t(UInt16(5555).bigEndian)
        inet_pton(AF_INET, "100.64.5.2", &to.sin_addr)
        let payload = Array("warren".utf8)
        let sent = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { sendto(udp, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        XCTAssertEqual(sent, payload.count)
        return payload
    }

    /// Receives until `count` frames arrived or 2 s passed.
    private func receiveAll(_ socket: PacketSocket, batch: MultiMessageBatch, frames: UnsafeMutableRawPointer,
                            slotSize: Int, count: Int, truncated: inout Int) throws -> [[UInt8]] {
        var got: [[UInt8]] = []
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: batch.capacity)
        defer { lengths.deallocate() }
        let deadline = Date().addingTimeInterval(2)
        while got.count < count && Date() < deadline {
            var p = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            let n = try batch.receive(from: socket, lengths: lengths, truncated: &truncated)
            for i in 0..<n {
                got.append(Array(UnsafeRawBufferPointer(start: frames + i * slotSize, count: lengths[i])))
            }
        }
        return got
    }

    func testBatchSentWithSendmmsgArrivesIntactViaRecvmmsg() throws {
        let (ns, _) = try vethNamespace("pk1")
        let a = try PacketSocket(interface: "wlt0a", namespace: ns)
        let b = try PacketSocket(interface: "wlt0b", namespace: ns)
        XCTAssertGreaterThan(a.ifindex, 1)
        XCTAssertEqual(b.interfaceName, "wlt0b")
        let slot = 2048, n = 32
        let txFrames = UnsafeMutableRawPointer.allocate(byteCount: slot * n, alignment: 64)
        let rxFrames = UnsafeMutableRawPointer.allocate(byteCount: slot * n, alignment: 64)
        defer { txFrames.deallocate(); rxFrames.deallocate() }
        let sent = (0..<n).map { frame($0, length: 60 + $0 * 40) }
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { lengths.deallocate() }
        for (i, f) in sent.enumerated() {
            f.withUnsafeBytes { (txFrames + i * slot).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
            lengths[i] = f.count
        }
        let tx = MultiMessageBatch(capacity: n, frames: txFrames, slotSize: slot, headers: nil)
        let rx = MultiMessageBatch(capacity: n, frames: rxFrames, slotSize: slot, headers: nil)
        var total = 0
        while total < n {
            let k = try tx.send(on: a, count: n - total, lengths: lengths + total)
            XCTAssertGreaterThan(k, 0)
            // Shift the remaining frames to the front (sendmmsg took the first k).
            if k < n - total {
                (txFrames).copyMemory(from: txFrames + k * slot, byteCount: (n - total - k) * slot)
            }
            total += k
        }
        var truncated = 0
        let got = try receiveAll(b, batch: rx, frames: rxFrames, slotSize: slot, count: n, truncated: &truncated)
        XCTAssertEqual(truncated, 0)
        XCTAssertEqual(got.count, n)
        XCTAssertEqual(got, sent)
        // ignoreOutgoing: the sender does not see its own frames.
        var t2 = 0
        XCTAssertEqual(try rx.receive(from: a, lengths: lengths, truncated: &t2), 0)
        a.close()
        a.close() // idempotent
        XCTAssertTrue(a.isClosed)
    }

    func testOversizedFramesAreCountedAsTruncated() throws {
        let (ns, _) = try vethNamespace("pk2")
        let a = try PacketSocket(interface: "wlt0a", namespace: ns)
        let b = try PacketSocket(interface: "wlt0b", namespace: ns)
        let big = frame(7, length: 1000)
        let tx = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 64)
        let rx = UnsafeMutableRawPointer.allocate(byteCount: 4 * 128, alignment: 64)
        defer { tx.deallocate(); rx.deallocate() }
        big.withUnsafeBytes { tx.copyMemory(from: $0.baseAddress!, byteCount: big.count) }
        var length = big.count
        XCTAssertEqual(try MultiMessageBatch(capacity: 1, frames: tx, slotSize: 2048, headers: nil).send(on: a, count: 1, lengths: &length), 1)
        var truncated = 0
        let rxBatch = MultiMessageBatch(capacity: 4, frames: rx, slotSize: 128, headers: nil)
        let got = try receiveAll(b, batch: rxBatch, frames: rx, slotSize: 128, count: 1, truncated: &truncated)
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(truncated, 1)
        XCTAssertEqual(got.first, Array(big.prefix(128)))
    }

    func testVnetHeaderReportsChecksumOffloadOfKernelTraffic() throws {
        let (ns, nl) = try vethNamespace("pk3")
        let b = try PacketSocket(interface: "wlt0b", namespace: ns, options: .init(vnetHeader: true))
        // A UDP datagram from the namespace's stack leaves wlt0a with its checksum still to
        // be completed (veth offload): the header must say so.
        let payload = try sendKernelUDP(ns, nl)
        let slot = 2048
        let frames = UnsafeMutableRawPointer.allocate(byteCount: slot * 8, alignment: 64)
        let headers = UnsafeMutableRawPointer.allocate(byteCount: VirtioNetHeader.size * 8, alignment: 16)
        defer { frames.deallocate(); headers.deallocate() }
        let rx = MultiMessageBatch(capacity: 8, frames: frames, slotSize: slot, headers: headers)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        defer { lengths.deallocate() }
        var found: (VirtioNetHeader, [UInt8])?
        let deadline = Date().addingTimeInterval(2)
        while found == nil && Date() < deadline {
            var p = pollfd(fd: b.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            var truncated = 0
            let n = try rx.receive(from: b, lengths: lengths, truncated: &truncated)
            for i in 0..<n {
                let f = Array(UnsafeRawBufferPointer(start: frames + i * slot, count: lengths[i]))
                if f.count >= 42, f[12] == 0x08, f[13] == 0x00, f[23] == 17 { // IPv4 UDP
                    found = (VirtioNetHeader(headers + i * VirtioNetHeader.size), f)
                }
            }
        }
        let (header, udpFrame) = try XCTUnwrap(found, "the UDP datagram did not arrive on wlt0b")
        XCTAssertEqual(Array(udpFrame[0..<6]), [0x02, 0, 0, 0, 0x05, 0x02])
        XCTAssertEqual(Array(udpFrame.suffix(payload.count)), payload)
        XCTAssertEqual(header.flags & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum, "\(header)")
        XCTAssertEqual(header.checksumStart, 14 + 20, "checksum starts at the UDP header")
        XCTAssertEqual(header.checksumOffset, 6, "UDP checksum field offset")
        XCTAssertEqual(header.gsoType, VirtioNetHeader.gsoNone)
    }

    /// Drains `ring` until `count` frames arrived or 2 s passed.
    private func receiveAll(_ socket: PacketSocket, ring: PacketReceiveRing, count: Int, headers: Bool,
                            truncated: inout Int) -> [(VirtioNetHeader?, [UInt8])] {
        let slot = 2048, cap = 16
        let frames = UnsafeMutableRawPointer.allocate(byteCount: slot * cap, alignment: 64)
        let hdrs = UnsafeMutableRawPointer.allocate(byteCount: VirtioNetHeader.size * cap, alignment: 16)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: cap)
        defer { frames.deallocate(); hdrs.deallocate(); lengths.deallocate() }
        var got: [(VirtioNetHeader?, [UInt8])] = []
        let deadline = Date().addingTimeInterval(2)
        while got.count < count && Date() < deadline {
            var p = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            let n = ring.receive(capacity: cap, frames: frames, slotSize: slot, headers: headers ? hdrs : nil,
                                 headerSize: VirtioNetHeader.size, lengths: lengths, truncated: &truncated)
            for i in 0..<n {
                got.append((headers ? VirtioNetHeader(hdrs + i * VirtioNetHeader.size) : nil,
                            Array(UnsafeRawBufferPointer(start: frames + i * slot, count: lengths[i]))))
            }
        }
        return got
    }

    /// The TPACKET_V2 ring delivers every frame intact and in order across many laps of a
    /// small ring, restores stripped 802.1Q tags, carries the virtio-net header of kernel
    /// traffic, and counts frames longer than the batch slot.
    func testReceiveRingDeliversFramesTagsAndVnetHeaders() throws {
        XCTAssertTrue(PacketReceiveRing.isSupported, "this kernel writes vnet headers into ring slots")
        let (ns, nl) = try vethNamespace("pk5")
        let a = try PacketSocket(interface: "wlt0a", namespace: ns)
        let b = try PacketSocket(interface: "wlt0b", namespace: ns, options: .init(vnetHeader: true))
        let ring = try PacketReceiveRing(socket: b, maxFrame: 2048, headerSize: VirtioNetHeader.size, frames: 40)
        XCTAssertGreaterThanOrEqual(ring.slots, 40)
        XCTAssertLessThan(ring.slots, 200, "the test laps the ring several times")
        let slot = 2048
        let tx = UnsafeMutableRawPointer.allocate(byteCount: slot * 16, alignment: 64)
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: 16)
        defer { tx.deallocate(); lengths.deallocate() }
        let sender = MultiMessageBatch(capacity: 16, frames: tx, slotSize: slot, headers: nil)
        var sent: [[UInt8]] = [], got: [[UInt8]] = []
        var truncated = 0
        for round in 0..<25 {
            let batch = (0..<16).map { k in frame((round * 16 + k) % 256, length: 60 + (round * 16 + k) * 3 % 1400) }
            for (i, f) in batch.enumerated() {
                f.withUnsafeBytes { (tx + i * slot).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
                lengths[i] = f.count
            }
            XCTAssertEqual(try sender.send(on: a, count: 16, lengths: lengths), 16)
            sent += batch
            got += receiveAll(b, ring: ring, count: 16, headers: true, truncated: &truncated).map(\.1)
        }
        XCTAssertEqual(truncated, 0)
        XCTAssertEqual(got.count, sent.count)
        XCTAssertTrue(got == sent, "400 frames through a ring of \(ring.slots) slots arrive intact and in order")

        // An 802.1Q-tagged frame: the kernel strips the tag on receive; the ring puts it back.
        var tagged: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x81, 0x00, 0x20, 0x64, 0x88, 0xb5]
        tagged += (0..<60).map { UInt8($0) }
        tagged.withUnsafeBytes { tx.copyMemory(from: $0.baseAddress!, byteCount: tagged.count) }
        lengths[0] = tagged.count
        XCTAssertEqual(try sender.send(on: a, count: 1, lengths: lengths), 1)
        let vlan = receiveAll(b, ring: ring, count: 1, headers: true, truncated: &truncated)
        XCTAssertEqual(vlan.first?.1, tagged, "VLAN 100 (PCP 1) restored after the MAC addresses")

        // Kernel UDP leaves wlt0a with its checksum to be completed: the ring's vnet header says so.
        let payload = try sendKernelUDP(ns, nl)
        var udpFrame: (VirtioNetHeader?, [UInt8])?
        let deadline = Date().addingTimeInterval(2)
        while udpFrame == nil && Date() < deadline {
            udpFrame = receiveAll(b, ring: ring, count: 1, headers: true, truncated: &truncated)
                .first { $0.1.count >= 42 && $0.1[12] == 0x08 && $0.1[13] == 0x00 && $0.1[23] == 17 }
        }
        let (header, f) = try XCTUnwrap(udpFrame, "the UDP datagram did not arrive through the ring")
        XCTAssertEqual(Array(f.suffix(payload.count)), payload)
        XCTAssertEqual((header?.flags ?? 0) & VirtioNetHeader.needsChecksum, VirtioNetHeader.needsChecksum, "\(String(describing: header))")
        XCTAssertEqual(header?.checksumStart, 14 + 20)
        XCTAssertEqual(header?.checksumOffset, 6)

        // A frame longer than the batch slot is counted and skipped.
        let small = UnsafeMutableRawPointer.allocate(byteCount: 128 * 2, alignment: 64)
        let smallLengths = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { small.deallocate(); smallLengths.deallocate() }
        let big = frame(9, length: 1000)
        big.withUnsafeBytes { tx.copyMemory(from: $0.baseAddress!, byteCount: big.count) }
        lengths[0] = big.count
        XCTAssertEqual(try sender.send(on: a, count: 1, lengths: lengths), 1)
        var cut = 0
        let until = Date().addingTimeInterval(2)
        while cut == 0 && Date() < until {
            var p = pollfd(fd: b.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            XCTAssertEqual(ring.receive(capacity: 2, frames: small, slotSize: 128, headers: nil, headerSize: 0,
                                        lengths: smallLengths, truncated: &cut), 0)
        }
        XCTAssertEqual(cut, 1)
    }

    func testVirtioNetHeaderRoundTrip() {
        let h = VirtioNetHeader(flags: 1, gsoType: 4, headerLength: 66, gsoSize: 1448, checksumStart: 54, checksumOffset: 16)
        var raw = [UInt8](repeating: 0, count: 10)
        raw.withUnsafeMutableBytes { h.write(to: $0.baseAddress!) }
        XCTAssertEqual(raw, [1, 4, 66, 0, 0xa8, 0x05, 54, 0, 16, 0])
        XCTAssertEqual(VirtioNetHeader(bytes: raw), h)
        XCTAssertNil(VirtioNetHeader(bytes: raw.prefix(9)))
    }

    func testOpeningOnAMissingInterfaceNamesIt() throws {
        let ns = try scratch.make("pk4")
        XCTAssertThrowsError(try PacketSocket(interface: "wlt-nope", namespace: ns)) { error in
            XCTAssertEqual("\(error)", "opening a packet socket on wlt-nope in \(ns) (looking up the interface): No such device")
        }
        // The socket is made in the namespace: lo exists there; a root-only name does not.
        XCTAssertNoThrow(try PacketSocket(interface: "lo", namespace: ns))
    }
}
