import WarrenCore
import XCTest

/// Oracle and property tests on random inputs (the wireguard-go allowedips_rand_test idea).
final class ClassifierOracleTests: XCTestCase {
    /// Random non-overlapping megaflows; every lookup agrees with a linear scan, through
    /// installs, invalidations, expiry and re-installs.
    func testClassifierAgainstLinearScan() {
        var g = SeededGenerator(seed: 11)
        let masks: [FlowMask] = [
            .inPort.union(.ethDst),
            .inPort.union(.ethSrc).union(.ethDst),
            .inPort.union(.ethType).union(.ipDst(prefix: 24)),
            .inPort.union(.ethType).union(.ipDst(prefix: 16)).union(.ipProto).union(.tpDst),
            .inPort.union(.ethType).union(.ipSrc(prefix: 8)).union(.ipDst(prefix: 32)),
            .exact,
        ]
        func randomKey() -> FlowKey {
            var k = FlowKey()
            k.inPort = UInt32(g.next() % 4) + 1
            k.ethType = g.next() % 4 == 0 ? EtherType.arp : EtherType.ipv4
            k.ethSrc = MACAddress(rawValue: g.next() % 8 + 1)
            k.ethDst = MACAddress(rawValue: g.next() % 8 + 1)
            k.ipSrc = IPv4Address(rawValue: 0x6440_0000 | UInt32(g.next() % 1024))
            k.ipDst = IPv4Address(rawValue: 0x6440_0000 | UInt32(g.next() % 4096) << 4 | UInt32(g.next() % 3))
            k.ipProto = [1, 6, 17][Int(g.next() % 3)]
            k.tpSrc = UInt16(g.next() % 4)
            k.tpDst = UInt16(g.next() % 4)
            k.ipTTL = 64
            return k
        }
        let table = FlowTable(configuration: FlowTableConfiguration(maxFlows: 100_000, exactMatchEntries: 256, idleTimeout: 1_000))
        var installed: [(match: FlowMatch, action: UInt32, tag: FlowTag)] = []
        func linear(_ k: FlowKey) -> UInt32? { installed.first { $0.match.matches(k) }?.action }
        var now: UInt64 = 0
        for round in 0..<40 {
            // Install up to 100 new non-overlapping flows.
            for _ in 0..<100 {
                let m = FlowMatch(key: randomKey(), mask: masks[Int(g.next() % UInt64(masks.count))])
                if installed.contains(where: { $0.match.overlaps(m) }) { continue }
                let action = UInt32(g.next() % 1000)
                let tag = FlowTag(rawValue: g.next() % 50)
                table.install(m, actions: [.output(action)], tags: [tag], now: now)
                installed.append((m, action, tag))
            }
            for _ in 0..<2000 {
                let k = randomKey()
                let f = table.lookup(k, now: now)
                let expect = linear(k)
                if let e = expect {
                    XCTAssertGreaterThanOrEqual(f, 0, "round \(round): classifier missed \(k)")
                    if f >= 0 { XCTAssertEqual(Array(table.actions(of: f)), [.output(e)]) }
                    // The same key again is served by the exact-match cache, with the same answer.
                    XCTAssertEqual(table.lookup(k, now: now), f)
                } else {
                    XCTAssertEqual(f, -1, "round \(round): classifier hit for \(k) with no matching flow")
                }
            }
            // Invalidate a few tags, then occasionally expire everything idle.
            for _ in 0..<3 {
                let tag = FlowTag(rawValue: g.next() % 50)
                let n = table.invalidate(tags: [tag])
                let before = installed.count
                installed.removeAll { $0.tag == tag }
                XCTAssertEqual(n, before - installed.count)
            }
            if round % 10 == 9 {
                now += 10_000
                XCTAssertEqual(table.expire(now: now), installed.count)
                installed.removeAll()
            }
            XCTAssertEqual(table.liveFlows, installed.count)
        }
        XCTAssertGreaterThan(table.counters.exactHits, 0)
        XCTAssertGreaterThan(table.counters.megaflowHits, 0)
    }

    func testFlowLimitEvictsLeastRecentlyUsed() {
        let table = FlowTable(configuration: FlowTableConfiguration(maxFlows: 100, exactMatchEntries: 64))
        for i in 0..<100 {
            var k = FlowKey(); k.inPort = UInt32(i)
            table.install(FlowMatch(key: k, mask: .inPort), actions: [.output(1)], tags: [], now: UInt64(i))
        }
        // Touch flow 0 so it is recent.
        var k0 = FlowKey(); k0.inPort = 0
        XCTAssertGreaterThanOrEqual(table.lookup(k0, now: 1000), 0)
        for i in 100..<150 {
            var k = FlowKey(); k.inPort = UInt32(i)
            table.install(FlowMatch(key: k, mask: .inPort), actions: [.output(1)], tags: [], now: 2000)
        }
        XCTAssertEqual(table.liveFlows, 100)
        XCTAssertEqual(table.counters.evictions, 50)
        XCTAssertGreaterThanOrEqual(table.lookup(k0, now: 2001), 0, "the recently used flow survived")
    }
}

final class RouteOracleTests: XCTestCase {
    func testLPMAgainstLinearScanAndMaskSoundness() {
        var g = SeededGenerator(seed: 5)
        let router = ResourceID.random(using: &g)
        let ports = (0..<4).map { _ in ResourceID.random(using: &g) }
        var table = RouteTable()
        var routes: [Route] = []
        var downPorts: Set<ResourceID> = []
        func usable(_ r: Route) -> Bool { !downPorts.contains(r.nextHopPort) }
        func randomAddress() -> IPv4Address {
            // Concentrate addresses so prefixes nest and collide.
            IPv4Address(rawValue: 0x6440_0000 | UInt32(g.next() % 0x10000) << 4 | UInt32(g.next() % 16))
        }
        for step in 0..<3000 {
            switch g.next() % 10 {
            case 0...4:
                let len = UInt8(g.next() % 33)
                let r = Route(id: .random(using: &g), router: router,
                              destination: IPv4Prefix(containing: randomAddress(), length: len),
                              nextHopPort: ports[Int(g.next() % 4)], weight: UInt32(g.next() % 3) * 100)
                table.insert(r)
                routes.append(r)
            case 5, 6:
                if !routes.isEmpty {
                    let r = routes.remove(at: Int(g.next() % UInt64(routes.count)))
                    table.remove(r)
                }
            case 7:
                let p = ports[Int(g.next() % 4)]
                if downPorts.contains(p) { downPorts.remove(p) } else { downPorts.insert(p) }
            default:
                break
            }
            for _ in 0..<5 {
                let d = randomAddress()
                let got = table.lookup(d, usable: usable)
                let want = linearScanLookup(routes, d, usable: usable)
                XCTAssertEqual(got.routes.map(\.id), want.map(\.id), "step \(step) dst \(d)")
                // Any destination agreeing on maskLength bits gets the same answer.
                let free = 32 - UInt32(got.maskLength)
                let noise = free == 0 ? 0 : UInt32(truncatingIfNeeded: g.next()) & (free == 32 ? .max : (1 << free) - 1)
                let d2 = IPv4Address(rawValue: d.rawValue ^ noise)
                XCTAssertEqual(table.lookup(d2, usable: usable).routes.map(\.id), got.routes.map(\.id),
                               "mask /\(got.maskLength) too short for \(d) vs \(d2)")
            }
        }
        XCTAssertEqual(table.routeCount, routes.count)
    }
}

/// "A cached flow gives the same actions as a fresh simulation", on random topologies
/// and packets, and "no stale flow is used after any kind of topology change".
final class CacheEquivalenceTests: XCTestCase {
    struct World {
        var net = TestNet()
        var g: SeededGenerator
        var exterior: [Port] = []
        var hosts: [(mac: MACAddress, ip: IPv4Address)] = []
        var routerMACs: [MACAddress] = []
        var routers: [ResourceID] = []
        var routerPorts: [Port] = []
        var bridges: [ResourceID] = []
        var chains: [ResourceID] = []
        let table = FlowTable(configuration: FlowTableConfiguration(maxFlows: 5000, exactMatchEntries: 1024))

        init(seed: UInt64) {
            g = SeededGenerator(seed: seed)
            net.rng = SeededGenerator(seed: seed ^ 0xABCDEF)
            let nr = Int(g.next() % 2) + 1
            let nb = Int(g.next() % 3) + 2
            for i in 0..<nb { bridges.append(net.bridge("b\(i)")) }
            for i in 0..<nr { routers.append(net.router("r\(i)")) }
            for (bi, b) in bridges.enumerated() {
                for j in 0..<(Int(g.next() % 3) + 1) {
                    exterior.append(net.exteriorPort("b\(bi)p\(j)", on: b, vlan: g.next() % 5 == 0 ? 7 : nil))
                }
                // Attach each bridge to one router with subnet 100.64.<bi>.0/24.
                let r = routers[bi % nr]
                let rp = net.routerPort("r\(bi % nr)-b\(bi)", on: r, "100.64.\(bi).1/24")
                net.link(bridge: b, to: rp, name: "b\(bi)-r")
                routerPorts.append(net.topology.ports[rp.id]!)
                routerMACs.append(rp.mac)
                for h in 0..<3 {
                    hosts.append((MACAddress(rawValue: UInt64(0x0200_0000_0000) | UInt64(bi) << 8 | UInt64(h + 10)),
                                  IPv4Address(rawValue: 0x6440_0000 | UInt32(bi) << 8 | UInt32(h + 10))))
                }
            }
            // An exterior router port and static routes through it.
            let up = net.routerPort("uplink", on: routers[0], "203.0.113.2/24", exterior: true)
            exterior.append(up)
            routerPorts.append(up)
            routerMACs.append(up.mac)
            _ = try? net.topology.addRoute(Route(id: net.id(), router: routers[0], destination: IPv4Prefix("198.51.100.0/24")!,
                                                 nextHopPort: up.id, nextHopGateway: IPv4Address("203.0.113.1")))
            if nr > 1 {
                let a = net.routerPort("r0-r1", on: routers[0], "169.254.0.1/30")
                let b = net.routerPort("r1-r0", on: routers[1], "169.254.0.2/30")
                _ = try? net.topology.setBinding(a.id, .interior(peer: b.id))
                for bi in stride(from: 1, to: nb, by: 2) {
                    _ = try? net.topology.addRoute(Route(id: net.id(), router: routers[0], destination: IPv4Prefix("100.64.\(bi).0/24")!,
                                                         nextHopPort: a.id, nextHopGateway: IPv4Address("169.254.0.2"), weight: 50))
                }
                _ = try? net.topology.addRoute(Route(id: net.id(), router: routers[1], destination: .any,
                                                     nextHopPort: b.id, nextHopGateway: IPv4Address("169.254.0.1")))
            }
            let chain = Chain(id: net.id(), name: "c0", rules: [
                Rule(id: net.id(), match: RuleMatch(ipProto: 6, dstPortMin: 22, dstPortMax: 22), action: .drop),
                Rule(id: net.id(), match: RuleMatch(ipSrc: IPv4Prefix("100.64.1.0/24")!, ipProto: 17), action: .reject),
            ])
            _ = try? net.topology.addChain(chain)
            chains.append(chain.id)
            var r0 = net.topology.routers[routers[0]]!
            r0.preRoutingChain = chain.id
            _ = try? net.topology.updateRouter(r0)
        }

        mutating func randomPacket() -> (frame: [UInt8], port: Port) {
            let port = exterior[Int(g.next() % UInt64(exterior.count))]
            let src = hosts[Int(g.next() % UInt64(hosts.count))]
            var s = PacketSpec()
            s.ethSrc = src.mac
            switch g.next() % 4 {
            case 0: s.ethDst = .broadcast
            case 1: s.ethDst = hosts[Int(g.next() % UInt64(hosts.count))].mac
            default: s.ethDst = routerMACs[Int(g.next() % UInt64(routerMACs.count))]
            }
            s.ipSrc = src.ip
            switch g.next() % 4 {
            case 0: s.ipDst = IPv4Address(rawValue: 0xC633_6400 | UInt32(g.next() % 4))  // 198.51.100.x
            case 1: s.ipDst = IPv4Address(rawValue: 0xCB00_7100 | UInt32(g.next() % 4))  // 203.0.113.x
            default: s.ipDst = hosts[Int(g.next() % UInt64(hosts.count))].ip
            }
            s.ipProto = [1, 6, 17][Int(g.next() % 3)]
            s.srcPort = UInt16(g.next() % 3) + 1000
            s.dstPort = [22, 80, 53][Int(g.next() % 3)]
            s.ttl = [1, 2, 64][Int(g.next() % 3)]
            s.vlan = port.vlan == nil && g.next() % 6 == 0 ? 7 : nil
            if g.next() % 10 == 0 { s.ethType = EtherType.arp; s.arpOp = UInt16(g.next() % 2) + 1 }
            return (s.frame(), port)
        }

        /// What the datapath does on a miss: simulate, learn, invalidate, install.
        mutating func process(_ frame: [UInt8], _ port: Port) {
            let key = try! FlowKey.of(frame, inPort: port.number)
            if table.lookup(key, now: net.now) >= 0 { return }
            let r = net.simulate(frame, on: port, trace: false)
            for e in r.effects { table.invalidate(tags: net.learned.apply(e, now: net.now)) }
            if r.cacheable { table.install(r.match, actions: r.actions, tags: r.tags, now: net.now) }
        }

        /// Every cached answer equals a fresh simulation.
        mutating func check(_ count: Int, _ label: String) {
            for _ in 0..<count {
                let (frame, port) = randomPacket()
                let key = try! FlowKey.of(frame, inPort: port.number)
                let f = table.lookup(key, now: net.now)
                guard f >= 0 else { continue }
                let fresh = net.simulate(frame, on: port, trace: false)
                XCTAssertTrue(fresh.cacheable, "\(label): cached flow for a packet whose simulation is not cacheable")
                XCTAssertEqual(Array(table.actions(of: f)), fresh.actions, "\(label): stale or wrong flow for \(key)")
            }
            XCTAssertTrue(table.conflicts().isEmpty, "\(label): overlapping megaflows with different actions")
        }
    }

    func testCachedFlowEqualsFreshSimulation() {
        var hits = 0
        for seed in 1...12 {
            var w = World(seed: UInt64(seed))
            for _ in 0..<600 { let (f, p) = w.randomPacket(); w.process(f, p) }
            w.check(600, "seed \(seed)")
            hits += Int(w.table.counters.exactHits + w.table.counters.megaflowHits)
        }
        XCTAssertGreaterThan(hits, 100, "the test must actually exercise cached flows")
    }

    func testNoStaleFlowAfterAnyTopologyChange() throws {
        for seed in 20...27 {
            var w = World(seed: UInt64(seed))
            var kinds = 0
            for round in 0..<14 {
                for _ in 0..<300 { let (f, p) = w.randomPacket(); w.process(f, p) }
                // Apply one kind of change and invalidate what it says.
                var tags: [FlowTag] = []
                var t = w.net.topology
                switch round % 7 {
                case 0:  // add a more specific route
                    let rp = w.routerPorts[Int(w.g.next() % UInt64(w.routerPorts.count))]
                    let gw = IPv4Address(rawValue: rp.address!.network.address.rawValue + 20)
                    // Resolvable, so the new path is cacheable and a stale flow would show.
                    w.table.invalidate(tags: w.net.learned.apply(.arp(router: rp.device, ip: gw, mac: mac(0x77), port: rp.id), now: w.net.now))
                    tags = try t.addRoute(Route(id: w.net.id(), router: rp.device,
                                                destination: IPv4Prefix("198.51.100.0/25")!, nextHopPort: rp.id,
                                                nextHopGateway: gw, weight: 10))
                case 1:  // remove a static route
                    if let r = t.routes.values.first(where: { $0.destination == IPv4Prefix("198.51.100.0/24")! }) {
                        tags = try t.removeRoute(r.id)
                    }
                case 2:  // port admin down
                    var p = t.ports[w.exterior[Int(w.g.next() % UInt64(w.exterior.count))].id]!
                    p.adminUp.toggle()
                    tags = try t.updatePort(p)
                case 3:  // unbind a link
                    if let p = t.ports.values.filter({ $0.binding.peer != nil }).sorted(by: { $0.id < $1.id }).first {
                        tags = try t.setBinding(p.id, .unbound)
                        tags += w.net.learned.forget(port: p.id)
                    }
                case 4:  // change the chain
                    var c = t.chains[w.chains[0]]!
                    c.rules.reverse()
                    c.rules[0].action = c.rules[0].action == .drop ? .accept : .drop
                    tags = try t.updateChain(c)
                case 5:  // MAC moves and ARP changes
                    let h = w.hosts[Int(w.g.next() % UInt64(w.hosts.count))]
                    for (b, table) in w.net.learned.macTables {
                        for (k, _) in table where k.mac == h.mac {
                            let other = t.devicePorts[b]!.last!
                            tags += w.net.learned.apply(.mac(bridge: b, vlan: k.vlan, mac: h.mac, port: other), now: w.net.now)
                        }
                    }
                    for (r, table) in w.net.learned.arpTables {
                        for (ip, e) in table {
                            tags += w.net.learned.apply(.arp(router: r, ip: ip, mac: MACAddress(rawValue: e.mac.rawValue ^ 1), port: e.port), now: w.net.now)
                        }
                    }
                default:  // time passes: aging
                    w.net.now += 400 * 1_000_000_000
                    tags = w.net.learned.expire(now: w.net.now, topology: t)
                }
                w.net.topology = t
                w.table.invalidate(tags: tags)
                kinds += 1
                w.check(400, "seed \(seed) round \(round) change \(round % 7)")
            }
            XCTAssertEqual(kinds, 14)
        }
    }
}
