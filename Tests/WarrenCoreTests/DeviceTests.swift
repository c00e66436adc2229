import WarrenCore
import XCTest

final class BridgeTests: XCTestCase {
    func testLearningFloodingAndNoReflection() {
        var n = TestNet()
        let b = n.bridge("b")
        let p1 = n.exteriorPort("vm1", on: b), p2 = n.exteriorPort("vm2", on: b), p3 = n.exteriorPort("vm3", on: b)
        // Unknown unicast floods to every other port, never back.
        var r = n.send(udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2"), on: p1)
        XCTAssertEqual(Set(r.outputs), [p2.number, p3.number])
        XCTAssertTrue(r.cacheable)
        XCTAssertTrue(r.effects.contains(.mac(bridge: b, vlan: 0, mac: mac(1), port: p1.id)))
        // The reply goes only to where mac(1) was learned.
        r = n.send(udp(from: mac(2), to: mac(1), "100.64.0.2", "100.64.0.1"), on: p2)
        XCTAssertEqual(r.outputs, [p1.number])
        XCTAssertEqual(r.actions, [.output(p1.number)])
        // Now mac(2) is known: unicast only.
        r = n.send(udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2"), on: p1)
        XCTAssertEqual(r.outputs, [p2.number])
        // Bridge decisions do not look at L3: the megaflow wildcards IP fields.
        XCTAssertEqual(r.mask.intersection(.ipDst), .wildcardAll)
        XCTAssertNotEqual(r.mask.intersection(.ethDst), .wildcardAll)
        // A frame to a MAC learned on its own ingress port is dropped (no reflection).
        r = n.send(udp(from: mac(3), to: mac(1), "100.64.0.3", "100.64.0.1"), on: p1)
        XCTAssertTrue(r.outputs.isEmpty)
        XCTAssertTrue(r.drops[0].contains("behind the ingress port"))
        // Broadcast floods.
        r = n.send(udp(from: mac(1), to: .broadcast, "100.64.0.1", "100.64.0.255"), on: p1)
        XCTAssertEqual(Set(r.outputs), [p2.number, p3.number])
    }

    func testMACAgingAndMoveInvalidate() {
        var n = TestNet()
        let b = n.bridge("b")
        let p1 = n.exteriorPort("vm1", on: b), p2 = n.exteriorPort("vm2", on: b), _ = n.exteriorPort("vm3", on: b)
        n.send(udp(from: mac(1), to: mac(2), "100.64.0.1", "100.64.0.2"), on: p1)
        // A move to another port yields the MAC's tag.
        let tags = n.learned.apply(.mac(bridge: b, vlan: 0, mac: mac(1), port: p2.id), now: n.now)
        XCTAssertEqual(tags, [.mac(bridge: b, vlan: 0, mac: mac(1))])
        XCTAssertEqual(n.learned.apply(.mac(bridge: b, vlan: 0, mac: mac(1), port: p2.id), now: n.now), [], "refresh changes nothing")
        // After the aging time the entry is gone and traffic floods again.
        n.now += 301 * 1_000_000_000
        let expired = n.learned.expire(now: n.now, topology: n.topology)
        XCTAssertTrue(expired.contains(.mac(bridge: b, vlan: 0, mac: mac(1))))
        let r = n.simulate(udp(from: mac(2), to: mac(1), "100.64.0.2", "100.64.0.1"), on: p2)
        XCTAssertEqual(r.outputs.count, 2)
    }

    func testVLANAccessAndTrunkPorts() {
        var n = TestNet()
        let b = n.bridge("b")
        let a10 = n.exteriorPort("a10", on: b, vlan: 10)
        let a20 = n.exteriorPort("a20", on: b, vlan: 20)
        let trunk = n.exteriorPort("trunk", on: b)
        // Untagged from an access port reaches the trunk tagged, never the other VLAN.
        var r = n.send(udp(from: mac(1), to: .broadcast, "100.64.0.1", "100.64.0.255"), on: a10)
        XCTAssertEqual(r.outputs, [trunk.number])
        XCTAssertEqual(r.actions, [.pushVLAN(10), .output(trunk.number)])
        // Tagged 20 from the trunk reaches a20 untagged.
        r = n.send(udp(from: mac(2), to: .broadcast, "100.64.0.2", "100.64.0.255", vlan: 20), on: trunk)
        XCTAssertEqual(r.outputs, [a20.number])
        XCTAssertEqual(r.actions, [.popVLAN, .output(a20.number)])
        let out = execute(r.actions, on: udp(from: mac(2), to: .broadcast, "100.64.0.2", "100.64.0.255", vlan: 20))
        XCTAssertNil(try FrameLayout.of(out[0].frame).vlanTCI)
        // A tagged frame on an access port is dropped.
        r = n.send(udp(from: mac(3), to: .broadcast, "100.64.0.3", "100.64.0.255", vlan: 10), on: a10)
        XCTAssertTrue(r.outputs.isEmpty)
        // MAC tables are per VLAN.
        r = n.send(udp(from: mac(4), to: mac(1), "100.64.0.4", "100.64.0.1", vlan: 10), on: trunk)
        XCTAssertEqual(r.outputs, [a10.number], "mac(1) learned in VLAN 10 on a10")
        r = n.send(udp(from: mac(5), to: mac(1), "100.64.0.5", "100.64.0.1", vlan: 20), on: trunk)
        XCTAssertEqual(r.outputs, [a20.number], "unknown in VLAN 20: flood within VLAN 20 only")
    }

    func testAdminDownAndUnboundPorts() throws {
        var n = TestNet()
        let b = n.bridge("b")
        let p1 = n.exteriorPort("vm1", on: b), p2 = n.exteriorPort("vm2", on: b)
        var p = p2
        p.adminUp = false
        let tags = try n.topology.updatePort(p)
        XCTAssertTrue(tags.contains(.port(p2.id)))
        var r = n.simulate(udp(from: mac(1), to: .broadcast, "100.64.0.1", "100.64.0.255"), on: p1)
        XCTAssertTrue(r.outputs.isEmpty)
        XCTAssertTrue(r.tags.contains(.port(p2.id)))
        p.adminUp = true
        _ = try n.topology.updatePort(p)
        _ = try n.topology.setBinding(p2.id, .unbound)
        r = n.simulate(udp(from: mac(1), to: .broadcast, "100.64.0.1", "100.64.0.255"), on: p1)
        XCTAssertTrue(r.outputs.isEmpty, "unbound ports are not flooded to")
    }
}

final class RouterTests: XCTestCase {
    /// vm1 (100.64.1.10) — bridge b1 — router r — bridge b2 — vm2 (100.64.2.10)
    struct TwoSubnets {
        var n = TestNet()
        var r: ResourceID, b1: ResourceID, b2: ResourceID
        var rp1: Port, rp2: Port, vm1: Port, vm2: Port

        init() {
            r = n.router("r")
            b1 = n.bridge("b1")
            b2 = n.bridge("b2")
            rp1 = n.routerPort("r-b1", on: r, "100.64.1.1/24")
            rp2 = n.routerPort("r-b2", on: r, "100.64.2.1/24")
            vm1 = n.exteriorPort("vm1", on: b1)
            vm2 = n.exteriorPort("vm2", on: b2)
            n.link(bridge: b1, to: rp1, name: "b1-r")
            n.link(bridge: b2, to: rp2, name: "b2-r")
            rp1 = n.topology.ports[rp1.id]!
            rp2 = n.topology.ports[rp2.id]!
        }
    }

    func testAnswersARPForItsAddressAndLearnsSender() throws {
        var t = TwoSubnets()
        var s = PacketSpec()
        s.ethType = EtherType.arp
        s.ethSrc = mac(1)
        s.ethDst = .broadcast
        s.ipSrc = IPv4Address("100.64.1.10")!
        s.ipDst = IPv4Address("100.64.1.1")!
        let r = t.n.send(s.frame(), on: t.vm1)
        XCTAssertFalse(r.cacheable)
        let reply = try XCTUnwrap(r.generated.first { $0.port == t.vm1.number })
        let k = try FlowKey.of(reply.frame, inPort: 0)
        XCTAssertEqual(k.arpOp, 2)
        XCTAssertEqual(k.ethSrc, t.rp1.mac)
        XCTAssertEqual(k.ethDst, mac(1))
        XCTAssertEqual(k.ipSrc, IPv4Address("100.64.1.1"))
        XCTAssertTrue(r.effects.contains(.arp(router: t.r, ip: IPv4Address("100.64.1.10")!, mac: mac(1), port: t.rp1.id)))
        XCTAssertNotNil(t.n.learned.arpLookup(router: t.r, ip: IPv4Address("100.64.1.10")!, now: t.n.now, aging: 1_000_000_000))
    }

    func testForwardingRewritesAndDecrementsTTL() throws {
        var t = TwoSubnets()
        t.n.learnARP(router: t.r, ip: "100.64.2.10", mac: mac(2), port: t.rp2)
        let f = udp(from: mac(1), to: t.rp1.mac, "100.64.1.10", "100.64.2.10", ttl: 64)
        let r = t.n.send(f, on: t.vm1)
        XCTAssertEqual(r.outputs, [t.vm2.number])
        XCTAssertTrue(r.cacheable)
        XCTAssertEqual(r.actions, [.setEthSrc(t.rp2.mac), .setEthDst(mac(2)), .decrementTTL, .output(t.vm2.number)])
        let out = execute(r.actions, on: f)
        let k = try FlowKey.of(out[0].frame, inPort: 0)
        XCTAssertEqual(k.ipTTL, 63)
        XCTAssertEqual(k.ethDst, mac(2))
        // The megaflow matches the destination by the connected /24's depth, not exactly.
        XCTAssertTrue(FlowMask.ipDst(prefix: 24).isSubset(of: r.mask))
        XCTAssertTrue(r.tags.contains(.route(router: t.r, prefix: IPv4Prefix("100.64.2.0/24")!)))
        XCTAssertTrue(r.tags.contains(.arp(router: t.r, ip: IPv4Address("100.64.2.10")!)))
        let devices = r.trace.map(\.device).reduce(into: [String]()) { if $0.last != $1 { $0.append($1) } }
        XCTAssertEqual(devices, ["b1", "r", "b2"])
    }

    func testUnresolvedNextHopSendsARPAndWaits() throws {
        var t = TwoSubnets()
        let f = udp(from: mac(1), to: t.rp1.mac, "100.64.1.10", "100.64.2.10")
        let r = t.n.send(f, on: t.vm1)
        XCTAssertTrue(r.outputs.isEmpty)
        XCTAssertFalse(r.cacheable)
        XCTAssertEqual(r.pending, [PendingResolution(router: t.r, ip: IPv4Address("100.64.2.10")!, port: t.rp2.id)])
        // The ARP request went through b2 (flooded) to vm2.
        let req = try XCTUnwrap(r.generated.first)
        XCTAssertEqual(req.port, t.vm2.number)
        let k = try FlowKey.of(req.frame, inPort: 0)
        XCTAssertEqual(k.arpOp, 1)
        XCTAssertEqual(k.ipDst, IPv4Address("100.64.2.10"))
        XCTAssertEqual(k.ethSrc, t.rp2.mac)
        // vm2 answers; the router learns; the packet now goes through.
        var s = PacketSpec()
        s.ethType = EtherType.arp; s.arpOp = 2; s.ethSrc = mac(2); s.ethDst = t.rp2.mac
        s.ipSrc = IPv4Address("100.64.2.10")!; s.ipDst = IPv4Address("100.64.2.1")!
        let ans = t.n.send(s.frame(), on: t.vm2)
        XCTAssertTrue(ans.effects.contains(.arp(router: t.r, ip: IPv4Address("100.64.2.10")!, mac: mac(2), port: t.rp2.id)))
        XCTAssertEqual(t.n.send(f, on: t.vm1).outputs, [t.vm2.number])
    }

    func testEchoReplyTimeExceededAndUnreachable() throws {
        var t = TwoSubnets()
        // Ping the far-side router address.
        var s = PacketSpec()
        s.ethSrc = mac(1); s.ethDst = t.rp1.mac
        s.ipSrc = IPv4Address("100.64.1.10")!; s.ipDst = IPv4Address("100.64.2.1")!
        var r = t.n.send(s.frame(), on: t.vm1)
        var k = try FlowKey.of(XCTUnwrap(r.generated.first).frame, inPort: 0)
        XCTAssertEqual(k.tpSrc, 0, "echo reply")
        XCTAssertEqual(k.ipSrc, IPv4Address("100.64.2.1"))
        XCTAssertEqual(k.ethDst, mac(1))
        XCTAssertEqual(r.generated.first?.port, t.vm1.number)
        // TTL 1: time exceeded from the ingress port's address.
        r = t.n.send(udp(from: mac(1), to: t.rp1.mac, "100.64.1.10", "100.64.2.10", ttl: 1), on: t.vm1)
        k = try FlowKey.of(XCTUnwrap(r.generated.first).frame, inPort: 0)
        XCTAssertEqual(k.tpSrc, 11)
        XCTAssertEqual(k.ipSrc, IPv4Address("100.64.1.1"))
        XCTAssertTrue(r.outputs.isEmpty)
        // No route: net unreachable.
        r = t.n.send(udp(from: mac(1), to: t.rp1.mac, "100.64.1.10", "203.0.113.7"), on: t.vm1)
        k = try FlowKey.of(XCTUnwrap(r.generated.first).frame, inPort: 0)
        XCTAssertEqual(k.tpSrc, 3)
        XCTAssertEqual(k.tpDst, 0)
        XCTAssertTrue(r.tags.contains(.route(router: t.r, prefix: .any)))
        // UDP to the router: port unreachable.
        r = t.n.send(udp(from: mac(1), to: t.rp1.mac, "100.64.1.10", "100.64.1.1"), on: t.vm1)
        k = try FlowKey.of(XCTUnwrap(r.generated.first).frame, inPort: 0)
        XCTAssertEqual(k.tpSrc, 3)
        XCTAssertEqual(k.tpDst, 3)
    }

    func testStaticRoutesWeightsAndECMP() throws {
        var n = TestNet()
        let r = n.router("r")
        let inside = n.routerPort("in", on: r, "100.64.1.1/24", exterior: true)
        let a = n.routerPort("a", on: r, "169.254.10.1/30", exterior: true)
        let b = n.routerPort("b", on: r, "169.254.11.1/30", exterior: true)
        n.learnARP(router: r, ip: "169.254.10.2", mac: mac(0xA), port: a)
        n.learnARP(router: r, ip: "169.254.11.2", mac: mac(0xB), port: b)
        let dst = IPv4Prefix("198.51.100.0/24")!
        var g = n.rng
        let ra = Route(id: .random(using: &g), router: r, destination: dst, nextHopPort: a.id,
                       nextHopGateway: IPv4Address("169.254.10.2"), weight: 100, source: .learned)
        var rb = Route(id: .random(using: &g), router: r, destination: dst, nextHopPort: b.id,
                       nextHopGateway: IPv4Address("169.254.11.2"), weight: 200, source: .learned)
        _ = try n.topology.addRoute(ra)
        _ = try n.topology.addRoute(rb)
        let f = udp(from: mac(1), to: inside.mac, "100.64.1.10", "198.51.100.7")
        XCTAssertEqual(n.simulate(f, on: inside).outputs, [a.number], "lower weight wins")
        // Equal weights: ECMP by flow hash — both paths used across flows, each flow stable.
        _ = try n.topology.removeRoute(rb.id)
        rb.weight = 100
        _ = try n.topology.addRoute(rb)
        var used = Set<UInt32>()
        for sport in 1000..<1064 {
            let pkt = udp(from: mac(1), to: inside.mac, "100.64.1.10", "198.51.100.7", sport: UInt16(sport))
            let r1 = n.simulate(pkt, on: inside), r2 = n.simulate(pkt, on: inside)
            XCTAssertEqual(r1.outputs, r2.outputs)
            XCTAssertTrue(FlowMask.tpSrc.isSubset(of: r1.mask), "ECMP reads the ports")
            used.formUnion(r1.outputs)
        }
        XCTAssertEqual(used, [a.number, b.number])
        // Port a down: everything moves to b.
        var pa = n.topology.ports[a.id]!
        pa.adminUp = false
        _ = try n.topology.updatePort(pa)
        XCTAssertEqual(n.simulate(f, on: inside).outputs, [b.number])
        // Validation: gateway outside the port's subnet.
        let bad = Route(id: .random(using: &g), router: r, destination: dst, nextHopPort: a.id, nextHopGateway: IPv4Address("100.64.1.9"))
        XCTAssertThrowsError(try n.topology.addRoute(bad)) { e in
            XCTAssertEqual((e as? TopologyError)?.field, "nextHopGateway")
        }
    }

    func testMSSClampOnTunnelPortBothDirections() throws {
        var n = TestNet()
        let r = n.router("r")
        let inside = n.routerPort("in", on: r, "100.64.1.1/24", exterior: true)
        var tun = n.routerPort("tun", on: r, "169.254.252.1/30", exterior: true)
        tun.mssClamp = 1360
        _ = try n.topology.updatePort(tun)
        var g = n.rng
        _ = try n.topology.addRoute(Route(id: .random(using: &g), router: r, destination: IPv4Prefix("100.64.200.0/24")!,
                                          nextHopPort: tun.id, nextHopGateway: IPv4Address("169.254.252.2")))
        n.learnARP(router: r, ip: "169.254.252.2", mac: mac(0x22), port: tun)
        n.learnARP(router: r, ip: "100.64.1.10", mac: mac(0x10), port: inside)
        func syn(from src: String, to dst: String, dstMAC: MACAddress) -> [UInt8] {
            let tcp = PacketBuilder.tcp(src: IPv4Address(src)!, dst: IPv4Address(dst)!, srcPort: 40000, dstPort: 22, seq: 1, ack: 0,
                                        flags: TCPFlags.syn, window: 1000, options: [2, 4, 0x05, 0xB4], payload: [])
            return PacketBuilder.ethernet(dst: dstMAC, src: mac(0x99), type: EtherType.ipv4,
                                          payload: PacketBuilder.ipv4(src: IPv4Address(src)!, dst: IPv4Address(dst)!, proto: 6, payload: tcp))
        }
        func mss(_ frame: [UInt8]) throws -> Int {
            let l = try FrameLayout.of(frame)
            return Int(frame[l.l4Offset + 22]) << 8 | Int(frame[l.l4Offset + 23])
        }
        let out = syn(from: "100.64.1.10", to: "100.64.200.10", dstMAC: n.topology.ports[inside.id]!.mac)
        let r1 = n.simulate(out, on: inside)
        XCTAssertTrue(r1.actions.contains(.clampMSS(1360)))
        XCTAssertEqual(try mss(execute(r1.actions, on: out)[0].frame), 1360, "into the tunnel")
        let back = syn(from: "100.64.200.10", to: "100.64.1.10", dstMAC: n.topology.ports[tun.id]!.mac)
        let r2 = n.simulate(back, on: tun)
        XCTAssertEqual(try mss(execute(r2.actions, on: back)[0].frame), 1360, "out of the tunnel")
        // Non-TCP traffic is untouched, and the decision reads the protocol.
        var ping = PacketSpec(); ping.ethDst = n.topology.ports[inside.id]!.mac; ping.ipSrc = IPv4Address("100.64.1.10")!; ping.ipDst = IPv4Address("100.64.200.10")!
        let r3 = n.simulate(ping.frame(), on: inside)
        XCTAssertFalse(r3.actions.contains(.clampMSS(1360)))
        XCTAssertTrue(FlowMask.ipProto.isSubset(of: r3.mask))
    }

    func testTwoRoutersThroughInteriorLinkResolveEachOther() throws {
        var n = TestNet()
        let r1 = n.router("r1"), r2 = n.router("r2")
        let vmPort = n.routerPort("r1-vm", on: r1, "100.64.1.1/24", exterior: true)
        let l1 = n.routerPort("r1-r2", on: r1, "169.254.0.1/30")
        let l2 = n.routerPort("r2-r1", on: r2, "169.254.0.2/30")
        let out = n.routerPort("r2-out", on: r2, "100.64.2.1/24", exterior: true)
        _ = try n.topology.setBinding(l1.id, .interior(peer: l2.id))
        var g = n.rng
        _ = try n.topology.addRoute(Route(id: .random(using: &g), router: r1, destination: IPv4Prefix("100.64.2.0/24")!,
                                          nextHopPort: l1.id, nextHopGateway: IPv4Address("169.254.0.2")))
        n.learnARP(router: r2, ip: "100.64.2.10", mac: mac(2), port: out)
        let f = udp(from: mac(1), to: vmPort.mac, "100.64.1.10", "100.64.2.10")
        // First packet: r1 ARPs for r2 through the interior link; r2 answers inside the
        // same simulation, so the answer is learned as an effect.
        let first = n.send(f, on: vmPort)
        XCTAssertTrue(first.effects.contains { if case .arp(r1, IPv4Address("169.254.0.2")!, _, _) = $0 { true } else { false } })
        let second = n.send(f, on: vmPort)
        XCTAssertEqual(second.outputs, [out.number])
        let k = try FlowKey.of(execute(second.actions, on: f)[0].frame, inPort: 0)
        XCTAssertEqual(k.ipTTL, 62, "two routers, two decrements")
    }

    func testLoopBecomesDrop() throws {
        var n = TestNet()
        let r1 = n.router("r1"), r2 = n.router("r2")
        let vmPort = n.routerPort("vm", on: r1, "100.64.1.1/24", exterior: true)
        let l1 = n.routerPort("l1", on: r1, "169.254.0.1/30")
        let l2 = n.routerPort("l2", on: r2, "169.254.0.2/30")
        _ = try n.topology.setBinding(l1.id, .interior(peer: l2.id))
        var g = n.rng
        let dst = IPv4Prefix("203.0.113.0/24")!
        _ = try n.topology.addRoute(Route(id: .random(using: &g), router: r1, destination: dst, nextHopPort: l1.id, nextHopGateway: IPv4Address("169.254.0.2")))
        _ = try n.topology.addRoute(Route(id: .random(using: &g), router: r2, destination: dst, nextHopPort: l2.id, nextHopGateway: IPv4Address("169.254.0.1")))
        n.learnARP(router: r1, ip: "169.254.0.2", mac: l2.mac, port: l1)
        n.learnARP(router: r2, ip: "169.254.0.1", mac: l1.mac, port: l2)
        let r = n.simulate(udp(from: mac(1), to: vmPort.mac, "100.64.1.10", "203.0.113.5", ttl: 255), on: vmPort)
        XCTAssertTrue(r.outputs.isEmpty)
        XCTAssertTrue(r.drops.contains { $0.contains("loop") }, "\(r.drops)")
    }
}

final class ChainTests: XCTestCase {
    func testDropTCP22AcceptPingAndRejectSendsReset() throws {
        var t = RouterTests.TwoSubnets()
        t.n.learnARP(router: t.r, ip: "100.64.2.10", mac: mac(2), port: t.rp2)
        var g = t.n.rng
        let ruleID = ResourceID.random(using: &g)
        let chain = Chain(id: .random(using: &g), name: "no-ssh",
                          rules: [Rule(id: ruleID, match: RuleMatch(ipProto: 6, dstPortMin: 22, dstPortMax: 22), action: .drop)])
        _ = try t.n.topology.addChain(chain)
        var router = t.n.topology.routers[t.r]!
        router.preRoutingChain = chain.id
        let tags = try t.n.topology.updateRouter(router)
        XCTAssertTrue(tags.contains(.device(t.r)))
        var ssh = PacketSpec()
        ssh.ethSrc = mac(1); ssh.ethDst = t.rp1.mac; ssh.ipSrc = IPv4Address("100.64.1.10")!; ssh.ipDst = IPv4Address("100.64.2.10")!
        ssh.ipProto = 6; ssh.srcPort = 5555; ssh.dstPort = 22
        var r = t.n.simulate(ssh.frame(), on: t.vm1)
        XCTAssertTrue(r.outputs.isEmpty)
        XCTAssertTrue(r.cacheable, "a drop is a cacheable flow")
        XCTAssertTrue(r.tags.contains(.chain(chain.id)))
        XCTAssertTrue(FlowMask.tpDst.isSubset(of: r.mask))
        var ping = ssh; ping.ipProto = 1
        XCTAssertEqual(t.n.simulate(ping.frame(), on: t.vm1).outputs, [t.vm2.number])
        var http = ssh; http.dstPort = 80
        XCTAssertEqual(t.n.simulate(http.frame(), on: t.vm1).outputs, [t.vm2.number])
        // Reject answers with a TCP reset.
        var c2 = chain
        c2.rules[0].action = .reject
        _ = try t.n.topology.updateChain(c2)
        r = t.n.simulate(ssh.frame(), on: t.vm1)
        let k = try FlowKey.of(XCTUnwrap(r.generated.first).frame, inPort: 0)
        XCTAssertEqual(k.ipProto, 6)
        XCTAssertNotEqual(k.tcpFlags & TCPFlags.rst, 0)
        XCTAssertEqual(k.ipSrc, IPv4Address("100.64.2.10"))
        // Removing the chain from the router is allowed only after detaching it.
        XCTAssertThrowsError(try t.n.topology.removeChain(chain.id))
    }
}

final class TopologyValidationTests: XCTestCase {
    func testErrorsNameTheFieldAndChangeNothing() throws {
        var n = TestNet()
        let b = n.bridge("b")
        let r = n.router("r")
        let before = n.topology.version
        var g = n.rng
        func field(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch { return (error as? TopologyError)?.field }
        }
        XCTAssertEqual(field { _ = try n.topology.addBridge(Bridge(id: .random(using: &g), name: "b")) }, "name")
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "x", device: r, mac: mac(1))) }, "address")
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "x", device: b, address: IPv4Interface("100.64.0.1/24"), mac: mac(1))) }, "address")
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "x", device: .random(using: &g), mac: mac(1))) }, "device")
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "x", device: b, binding: .exterior(interface: "a/b"), mac: mac(1))) }, "interface")
        XCTAssertEqual(n.topology.version, before, "nothing changed")
        XCTAssertNil(n.topology.resolve(.port, "x"), "refused port left nothing behind")
        let p = n.exteriorPort("p1", on: b)
        XCTAssertThrowsError(try n.topology.removeDevice(b)) { e in
            guard case .inUse = e as? TopologyError else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "p2", device: b, binding: .exterior(interface: "p1"), mac: mac(1))) }, "id")
        _ = try n.topology.removePort(p.id)
        _ = try n.topology.removeDevice(b)
        XCTAssertNil(n.topology.resolve(.bridge, "b"))
        // Overlapping router port subnets are refused.
        n.routerPort("r1", on: r, "100.64.1.1/24")
        XCTAssertEqual(field { _ = try n.topology.addPort(Port(id: .random(using: &g), name: "r2", device: r, address: IPv4Interface("100.64.1.2/25"), mac: mac(2))) }, "address")
    }
}
