import WarrenCore
import WarrenDatapath
import WarrenLinux
import XCTest

typealias Port = WarrenCore.Port

/// The datapath driven synchronously through in-memory interfaces (no kernel): the
/// same forwarding rules the namespace end-to-end tests check for real.
final class DatapathTests: XCTestCase {
    final class Interfaces: @unchecked Sendable {
        var ios: [String: MemoryPacketIO] = [:]
        var missing: Set<String> = []
        let lock = NSLock()
        func factory(_ name: String) throws -> any PacketIO {
            try lock.withLock {
                if missing.contains(name) { throw NSError(domain: "test", code: 19, userInfo: [NSLocalizedDescriptionKey: "no such device"]) }
                let io = MemoryPacketIO(interfaceName: name)
                ios[name] = io
                return io
            }
        }
    }

    var g = SeededGenerator(seed: 9)
    var now: UInt64 = 1_000_000_000

    func id() -> ResourceID { ResourceID.random(using: &g) }

    func makeDatapath(_ interfaces: Interfaces) -> Datapath {
        let clockBox = ClockBox(now)
        return Datapath(clock: { clockBox.value }, ioFactory: { try interfaces.factory($0) })
    }

    final class ClockBox: @unchecked Sendable { var value: UInt64; init(_ v: UInt64) { value = v } }

    func testBridgeForwardsLearnsAndCaches() async throws {
        var t = Topology()
        let b = id()
        _ = try t.addBridge(Bridge(id: b, name: "b"))
        let p1 = Port(id: id(), name: "vm1", device: b, binding: .exterior(interface: "veth1"), mac: .locallyAdministered(seed: 1))
        let p2 = Port(id: id(), name: "vm2", device: b, binding: .exterior(interface: "veth2"), mac: .locallyAdministered(seed: 2))
        _ = try t.addPort(p1)
        _ = try t.addPort(p2)
        let ifs = Interfaces()
        let dp = makeDatapath(ifs)
        dp.apply(topology: t, invalidate: [])
        dp.runIteration()
        let a = MACAddress(0x02, 0, 0, 0, 0, 0xA), bm = MACAddress(0x02, 0, 0, 0, 0, 0xB)
        var s = PacketSpec()
        s.ethSrc = a; s.ethDst = bm; s.ipProto = 17; s.srcPort = 1; s.dstPort = 2
        for _ in 0..<10 { ifs.ios["veth1"]!.inject(s.frame()) }
        dp.runIteration()
        let out = ifs.ios["veth2"]!.takeSent()
        XCTAssertEqual(out.count, 10)
        XCTAssertEqual(out.first, s.frame(), "bridged frames are unchanged")
        XCTAssertTrue(ifs.ios["veth1"]!.takeSent().isEmpty, "never reflected")
        let stats = await dp.perform { view in (view.flowTable.counters, view.flowTable.liveFlows, view.learned.macEntryCount) }
        XCTAssertEqual(stats.0.misses, 1, "one simulation, then cache hits")
        XCTAssertEqual(stats.0.exactHits + stats.0.megaflowHits, 9)
        XCTAssertEqual(stats.2, 1)
        let ports = await dp.currentStatistics().ports
        XCTAssertEqual(ports.first { $0.port == "vm1" }?.counters.rxPackets, 10)
        XCTAssertEqual(ports.first { $0.port == "vm2" }?.counters.txPackets, 10)
    }

    func testRouterResolvesARPQueuesAndReplays() throws {
        var t = Topology()
        let r = id(), b1 = id(), b2 = id()
        _ = try t.addRouter(Router(id: r, name: "r"))
        _ = try t.addBridge(Bridge(id: b1, name: "b1"))
        _ = try t.addBridge(Bridge(id: b2, name: "b2"))
        let rp1 = Port(id: id(), name: "r1", device: r, address: IPv4Interface("100.64.1.1/24"), mac: .locallyAdministered(seed: 11))
        let rp2 = Port(id: id(), name: "r2", device: r, address: IPv4Interface("100.64.2.1/24"), mac: .locallyAdministered(seed: 12))
        _ = try t.addPort(rp1)
        _ = try t.addPort(rp2)
        let l1 = Port(id: id(), name: "l1", device: b1, binding: .interior(peer: rp1.id), mac: .locallyAdministered(seed: 13))
        let l2 = Port(id: id(), name: "l2", device: b2, binding: .interior(peer: rp2.id), mac: .locallyAdministered(seed: 14))
        _ = try t.addPort(l1)
        _ = try t.addPort(l2)
        _ = try t.addPort(Port(id: id(), name: "vm1", device: b1, binding: .exterior(interface: "veth1"), mac: .locallyAdministered(seed: 1)))
        _ = try t.addPort(Port(id: id(), name: "vm2", device: b2, binding: .exterior(interface: "veth2"), mac: .locallyAdministered(seed: 2)))
        let ifs = Interfaces()
        let dp = makeDatapath(ifs)
        dp.apply(topology: t, invalidate: [])
        let vm1 = MACAddress(0x02, 0, 0, 0, 1, 10), vm2 = MACAddress(0x02, 0, 0, 0, 2, 10)
        var ping = PacketSpec()
        ping.ethSrc = vm1; ping.ethDst = rp1.mac
        ping.ipSrc = IPv4Address("100.64.1.10")!; ping.ipDst = IPv4Address("100.64.2.10")!
        ifs.ios["veth1"]!.inject(ping.frame())
        dp.runIteration()
        // The router asked for vm2 on b2.
        let asked = ifs.ios["veth2"]!.takeSent()
        XCTAssertEqual(asked.count, 1)
        let req = try asked[0].withUnsafeBytes { try FlowKey.extract($0, inPort: 0) }
        XCTAssertEqual(req.arpOp, 1)
        XCTAssertEqual(req.ipDst, IPv4Address("100.64.2.10"))
        // vm2 answers; the queued ping is delivered with rewritten headers.
        var reply = PacketSpec()
        reply.ethType = EtherType.arp; reply.arpOp = 2; reply.ethSrc = vm2; reply.ethDst = rp2.mac
        reply.ipSrc = IPv4Address("100.64.2.10")!; reply.ipDst = IPv4Address("100.64.2.1")!
        ifs.ios["veth2"]!.inject(reply.frame())
        dp.runIteration()
        dp.runIteration()
        let delivered = ifs.ios["veth2"]!.takeSent()
        XCTAssertEqual(delivered.count, 1)
        let k = try delivered[0].withUnsafeBytes { try FlowKey.extract($0, inPort: 0) }
        XCTAssertEqual(k.ethDst, vm2)
        XCTAssertEqual(k.ethSrc, rp2.mac)
        XCTAssertEqual(k.ipTTL, 63)
        XCTAssertEqual(k.tpSrc, 8, "the original echo request")

        // A topology change takes effect for the next packet: a chain dropping ICMP.
        let chain = Chain(id: id(), name: "no-icmp", rules: [Rule(id: id(), match: RuleMatch(ipProto: 1), action: .drop)])
        var tags = try t.addChain(chain)
        var router = t.routers[r]!
        router.preRoutingChain = chain.id
        tags += try t.updateRouter(router)
        ifs.ios["veth1"]!.inject(ping.frame())
        dp.runIteration()
        XCTAssertEqual(ifs.ios["veth2"]!.takeSent().count, 1, "cached flow forwards")
        dp.apply(topology: t, invalidate: tags)
        ifs.ios["veth1"]!.inject(ping.frame())
        dp.runIteration()
        XCTAssertEqual(ifs.ios["veth2"]!.takeSent().count, 0, "dropped right after the change")
    }

    func testMalformedFramesAreCountedAndForwardingContinues() async throws {
        var t = Topology()
        let b = id()
        _ = try t.addBridge(Bridge(id: b, name: "b"))
        _ = try t.addPort(Port(id: id(), name: "vm1", device: b, binding: .exterior(interface: "veth1"), mac: .locallyAdministered(seed: 1)))
        _ = try t.addPort(Port(id: id(), name: "vm2", device: b, binding: .exterior(interface: "veth2"), mac: .locallyAdministered(seed: 2)))
        let ifs = Interfaces()
        let dp = makeDatapath(ifs)
        dp.apply(topology: t, invalidate: [])
        let good = PacketSpec().frame()
        var badIHL = good; badIHL[14] = 0x43
        var bogusLength = good; bogusLength[16] = 0xFF
        let io = ifs.ios["veth1"]!
        io.inject(Array(good[0..<9]))
        io.inject(badIHL)
        io.inject(bogusLength)
        io.inject(good)
        dp.runIteration()
        XCTAssertEqual(ifs.ios["veth2"]!.takeSent(), [good])
        let s = await dp.currentStatistics()
        XCTAssertEqual(s.ports.first { $0.port == "vm1" }?.counters.rxMalformed, 3)
        XCTAssertEqual(s.malformed["truncated_ethernet"], 1)
        XCTAssertEqual(s.malformed["bad_ihl"], 1)
        XCTAssertEqual(s.malformed["bad_ip_length"], 1)
    }

    /// `settle` returns only after the datapath thread installed what `apply` handed it
    /// (the agent acknowledges a mutation after it: a port just bound is already open), and
    /// it does not hang once the thread has stopped.
    func testSettleWaitsForTheThreadToInstall() async throws {
        var t = Topology()
        let b = id()
        _ = try t.addBridge(Bridge(id: b, name: "b"))
        let ifs = Interfaces()
        let dp = makeDatapath(ifs)
        dp.start()
        for i in 1...20 {
            _ = try t.addPort(Port(id: id(), name: "vm\(i)", device: b, binding: .exterior(interface: "veth\(i)"),
                                   mac: .locallyAdministered(seed: UInt64(i))))
            dp.apply(topology: t, invalidate: [])
            await dp.settle()
            XCTAssertNotNil(ifs.lock.withLock { ifs.ios["veth\(i)"] }, "veth\(i) is open when settle returns")
        }
        dp.stop()
        _ = try t.addPort(Port(id: id(), name: "late", device: b, binding: .exterior(interface: "late0"), mac: .locallyAdministered(seed: 99)))
        dp.apply(topology: t, invalidate: [])
        await dp.settle()
    }

    func testMissingInterfaceIsRetried() throws {
        var t = Topology()
        let b = id()
        _ = try t.addBridge(Bridge(id: b, name: "b"))
        _ = try t.addPort(Port(id: id(), name: "vm1", device: b, binding: .exterior(interface: "later0"), mac: .locallyAdministered(seed: 1)))
        let ifs = Interfaces()
        ifs.missing = ["later0"]
        let clock = ClockBox(1_000_000_000)
        let dp = Datapath(clock: { clock.value }, ioFactory: { try ifs.factory($0) })
        dp.apply(topology: t, invalidate: [])
        dp.runIteration()
        XCTAssertTrue(dp.statistics.ports[0].state.hasPrefix("waiting for interface later0"), dp.statistics.ports[0].state)
        ifs.lock.withLock { ifs.missing = [] }
        clock.value += 2_000_000_000
        dp.runIteration()
        XCTAssertEqual(dp.statistics.ports[0].state, "up")
    }

    func testOffloadedChecksumIsCompleted() throws {
        var s = PacketSpec()
        s.ipProto = 17; s.srcPort = 7; s.dstPort = 9
        var frame = s.frame()
        let l = try frame.withUnsafeBytes { try FrameLayout.parse($0) }
        let good = frame
        // Emulate CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
        let udpLength = l.ipTotalLength - l.ipHeaderLength
        let pseudo = foldChecksum(pseudoHeaderSum(source: s.ipSrc.rawValue, destination: s.ipDst.rawValue, protocolNumber: 17, length: udpLength))
        frame[l.l4Offset + 6] = UInt8(pseudo >> 8)
        frame[l.l4Offset + 7] = UInt8(pseudo & 0xFF)
        var h = VirtioNetHeader()
        h.flags = VirtioNetHeader.needsChecksum
        h.checksumStart = UInt16(l.l4Offset)
        h.checksumOffset = 6
        XCTAssertTrue(frame.withUnsafeMutableBytes { completeOffloadedChecksum($0, header: h) })
        XCTAssertEqual(frame, good)
        h.checksumStart = UInt16(frame.count)
        XCTAssertFalse(frame.withUnsafeMutableBytes { completeOffloadedChecksum($0, header: h) }, "out of range is refused")
    }
}
