// `warren-bench core`: the flow engine's speed on one core, in-process.
//
// Prints one `METRIC <name> <value> <unit>` line per figure:
// - exact-match (EMC) lookups/s on a working set that fits the EMC;
// - megaflow lookups/s with 1, 8 and 32 subtables at 10k and 100k flows (EMC off, so
//   every lookup is a tuple-space search), with the mean subtables probed per hit;
// - simulations/s of VM → bridge → router → bridge → VM with 1k routes;
// - heap allocations per fast-path lookup and per lookup+execute (counted by the
//   CMallocCounter interposer over millions of iterations).
// Build in release mode: `swift run -c release warren-bench core`.

import CMallocCounter
import WarrenCore

#if canImport(Glibc)
import Glibc
#endif

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func metric(_ name: String, _ value: Double, _ unit: String) {
    let formatted = value >= 100 ? String(Int(value.rounded())) : String(format2(value))
    print("METRIC \(name) \(formatted) \(unit)")
    fflush(nil)
}

func format2(_ v: Double) -> String {
    let scaled = (v * 100).rounded() / 100
    return String(scaled)
}

/// Runs `body(iterations)` long enough (≥ `seconds`) and returns operations per second.
func measureRate(seconds: Double = 1.0, _ body: (Int) -> Void) -> Double {
    var n = 1000
    while true {
        let t0 = monotonicNanos()
        body(n)
        let dt = Double(monotonicNanos() - t0) / 1e9
        if dt >= seconds { return Double(n) / dt }
        n = dt < 0.01 ? n * 10 : Int(Double(n) * seconds * 1.2 / dt)
    }
}

enum CoreBench {
    static func run() {
        exactMatch()
        for flows in [10_000, 100_000] {
            for subtables in [1, 8, 32] { megaflow(flows: flows, subtables: subtables) }
        }
        simulation()
        allocations()
    }

    /// Masks that differ from one another, as a real pipeline's would.
    static func masks(_ count: Int) -> [FlowMask] {
        (0..<count).map { i in
            // Every mask includes eth_src (48 random bits), so no subtable's key space is
            // small enough to shadow the others; they differ in the other fields.
            var m = FlowMask.inPort.union(.ethType).union(.ethSrc)
            m.formUnion(.ipDst(prefix: UInt8(8 + i % 25)))
            if i & 1 != 0 { m.formUnion(.ipProto) }
            if i & 2 != 0 { m.formUnion(.tpDst) }
            if i >= 25 { m.formUnion(.ipSrc(prefix: UInt8(i))) }
            return m
        }
    }

    static func randomKey(_ g: inout SeededGenerator) -> FlowKey {
        var k = FlowKey()
        k.inPort = UInt32(g.next() % 16) + 1
        k.ethType = EtherType.ipv4
        k.ethSrc = MACAddress(rawValue: g.next() & 0xFFFF_FFFF_FFFF)
        k.ethDst = MACAddress(rawValue: g.next() & 0xFFFF_FFFF_FFFF)
        k.ipSrc = IPv4Address(rawValue: UInt32(truncatingIfNeeded: g.next()))
        k.ipDst = IPv4Address(rawValue: UInt32(truncatingIfNeeded: g.next()))
        k.ipProto = 17
        k.ipTTL = 64
        k.tpSrc = UInt16(truncatingIfNeeded: g.next())
        k.tpDst = UInt16(truncatingIfNeeded: g.next())
        return k
    }

    /// A table with `flows` flows spread over `subtables` masks, and keys that hit them.
    static func populated(flows: Int, subtables: Int, emc: Int) -> (FlowTable, [FlowKey]) {
        var g = SeededGenerator(seed: 99)
        let ms = masks(subtables)
        let table = FlowTable(configuration: FlowTableConfiguration(maxFlows: flows * 2, exactMatchEntries: emc))
        var keys: [FlowKey] = []
        keys.reserveCapacity(flows)
        var attempts = 0
        while keys.count < flows && attempts < flows * 4 {
            attempts += 1
            let k = randomKey(&g)
            let m = ms[keys.count % ms.count]
            let match = FlowMatch(key: k, mask: m)
            // Skip keys another subtable would already claim (keeps hits unambiguous).
            if table.lookup(k, now: 0) >= 0 { continue }
            table.install(match, actions: [.setEthDst(k.ethDst), .output(k.inPort)], tags: [], now: 0)
            keys.append(k)
        }
        var shuffled = keys
        shuffled.shuffle(using: &g)
        return (table, shuffled)
    }

    static func exactMatch() {
        let (table, keys) = populated(flows: 10_000, subtables: 8, emc: 8192)
        let working = Array(keys.prefix(4096))
        for k in working { _ = table.lookup(k, now: 1) }  // warm the EMC
        var sink: Int32 = 0
        let rate = measureRate { n in
            var i = 0
            for _ in 0..<n {
                sink &+= table.lookup(working[i], now: 2)
                i = (i + 1) & 4095
            }
        }
        precondition(sink != 0)
        let c = table.counters
        metric("core.exact_match.lookups_per_s", rate, "lookups/s")
        metric("core.exact_match.hit_ratio", Double(c.exactHits) / Double(max(1, c.lookups)), "ratio")
    }

    static func megaflow(flows: Int, subtables: Int) {
        let (table, keys) = populated(flows: flows, subtables: subtables, emc: 0)
        table.rankSubtables()
        let n = keys.count
        var sink: Int32 = 0
        let before = table.counters
        let rate = measureRate { iterations in
            var i = 0
            for _ in 0..<iterations {
                sink &+= table.lookup(keys[i], now: 2)
                i += 1
                if i == n { i = 0 }
            }
        }
        precondition(sink != 0)
        let after = table.counters
        let hits = after.megaflowHits - before.megaflowHits
        let probes = after.subtablesProbedOnHits - before.subtablesProbedOnHits
        let tag = "core.megaflow.\(subtables)_subtables.\(flows / 1000)k_flows"
        metric(tag + ".lookups_per_s", rate, "lookups/s")
        metric(tag + ".subtables_per_hit", Double(probes) / Double(max(1, hits)), "subtables")
    }

    /// VM1 — b1 — router (1k routes) — b2 — VM2, everything learned.
    static func simulation() {
        var g = SeededGenerator(seed: 5)
        var t = Topology()
        let b1 = ResourceID.random(using: &g), b2 = ResourceID.random(using: &g), r = ResourceID.random(using: &g)
        _ = try! t.addBridge(Bridge(id: b1, name: "b1"))
        _ = try! t.addBridge(Bridge(id: b2, name: "b2"))
        _ = try! t.addRouter(Router(id: r, name: "r"))
        func port(_ name: String, _ dev: ResourceID, _ addr: String? = nil, _ binding: PortBinding = .unbound) -> Port {
            let id = ResourceID.random(using: &g)
            _ = try! t.addPort(Port(id: id, name: name, device: dev, binding: binding,
                                    address: addr.flatMap { IPv4Interface($0) }, mac: .locallyAdministered(seed: id.low)))
            return t.ports[id]!
        }
        let vm1 = port("vm1", b1, nil, .exterior(interface: "vm1"))
        let vm2 = port("vm2", b2, nil, .exterior(interface: "vm2"))
        let rp1 = port("rp1", r, "100.64.1.1/24"), rp2 = port("rp2", r, "100.64.2.1/24")
        let l1 = port("l1", b1), l2 = port("l2", b2)
        _ = try! t.setBinding(l1.id, .interior(peer: rp1.id))
        _ = try! t.setBinding(l2.id, .interior(peer: rp2.id))
        var added = 0
        while added < 1000 {
            let prefix = IPv4Prefix(containing: IPv4Address(rawValue: UInt32(truncatingIfNeeded: g.next())), length: UInt8(16 + g.next() % 13))
            if prefix.contains(IPv4Address(100, 64, 2, 10)) || prefix.contains(IPv4Address(100, 64, 1, 10)) { continue }
            if (try? t.addRoute(Route(id: .random(using: &g), router: r, destination: prefix, nextHopPort: rp2.id,
                                      nextHopGateway: IPv4Address(100, 64, 2, 20)))) != nil { added += 1 }
        }
        let vm1MAC = MACAddress(0x02, 0, 0, 0, 1, 10), vm2MAC = MACAddress(0x02, 0, 0, 0, 2, 10)
        var learned = LearnedState()
        _ = learned.apply(.mac(bridge: b1, vlan: 0, mac: vm1MAC, port: vm1.id), now: 1)
        _ = learned.apply(.mac(bridge: b1, vlan: 0, mac: rp1.mac, port: l1.id), now: 1)
        _ = learned.apply(.mac(bridge: b2, vlan: 0, mac: vm2MAC, port: vm2.id), now: 1)
        _ = learned.apply(.arp(router: r, ip: IPv4Address(100, 64, 2, 10), mac: vm2MAC, port: rp2.id), now: 1)
        let sim = Simulator(topology: t, learned: learned)
        var frames: [[UInt8]] = []
        for sport in 0..<256 {
            var s = PacketSpec()
            s.ethSrc = vm1MAC; s.ethDst = rp1.mac
            s.ipSrc = IPv4Address(100, 64, 1, 10); s.ipDst = IPv4Address(100, 64, 2, 10)
            s.ipProto = 17; s.srcPort = UInt16(10_000 + sport); s.dstPort = 5001
            frames.append(s.frame())
        }
        let check = sim.simulate(frame: frames[0], inPort: vm1.number, now: 2)
        precondition(check.outputs == [vm2.number] && check.cacheable, "benchmark topology does not forward: \(check.drops)")
        var outputs = 0
        let rate = measureRate { n in
            for i in 0..<n {
                outputs &+= sim.simulate(frame: frames[i & 255], inPort: vm1.number, now: 2).outputs.count
            }
        }
        precondition(outputs > 0)
        metric("core.simulation.vm_bridge_router_bridge_vm_1k_routes.per_s", rate, "simulations/s")
    }

    /// Heap allocations per lookup, and per lookup + execute into a preallocated buffer.
    static func allocations() {
        let (table, keys) = populated(flows: 10_000, subtables: 8, emc: 8192)
        let working = Array(keys.prefix(2048))
        let iterations = 2_000_000
        var sink: Int32 = 0
        var before = warren_malloc_count()
        for i in 0..<iterations { sink &+= table.lookup(working[i & 2047], now: 3) }
        var after = warren_malloc_count()
        metric("core.fast_path.allocations_per_lookup", Double(after - before) / Double(iterations), "allocations")

        // Lookup + execute the actions on a real frame into a preallocated output buffer.
        var frame = PacketSpec()
        frame.ipProto = 17
        let bytes = frame.frame()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 16)
        defer { out.deallocate() }
        struct Sink: PacketSink {
            let out: UnsafeMutableRawBufferPointer
            var written = 0
            mutating func buffer(for port: UInt32) -> UnsafeMutableRawBufferPointer? { out }
            mutating func commit(port: UInt32, length: Int) { written &+= length }
        }
        var s = Sink(out: out)
        bytes.withUnsafeBytes { raw in
            let layout = try! FrameLayout.parse(raw)
            before = warren_malloc_count()
            for i in 0..<iterations {
                let f = table.lookup(working[i & 2047], now: 3)
                if f >= 0 { ActionExecutor.execute(table.actions(of: f), frame: raw, layout: layout, sink: &s) }
            }
            after = warren_malloc_count()
        }
        precondition(s.written > 0 && sink != 0)
        metric("core.fast_path.allocations_per_lookup_and_execute", Double(after - before) / Double(iterations), "allocations")
    }
}
