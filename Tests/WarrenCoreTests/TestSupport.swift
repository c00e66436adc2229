import WarrenCore
import XCTest

/// Foundation also has a `Port`; in these tests it is always the topology's.
typealias Port = WarrenCore.Port

/// Builds small topologies for tests with readable names and deterministic IDs.
struct TestNet {
    var topology = Topology()
    var learned = LearnedState()
    var rng = SeededGenerator(seed: 42)
    var now: UInt64 = 1_000_000_000

    mutating func id() -> ResourceID { ResourceID.random(using: &rng) }

    @discardableResult
    mutating func bridge(_ name: String) -> ResourceID {
        let i = id()
        _ = try! topology.addBridge(Bridge(id: i, name: name))
        return i
    }

    @discardableResult
    mutating func router(_ name: String) -> ResourceID {
        let i = id()
        _ = try! topology.addRouter(Router(id: i, name: name))
        return i
    }

    /// A bridge port bound to an exterior interface named after the port.
    @discardableResult
    mutating func exteriorPort(_ name: String, on device: ResourceID, vlan: UInt16? = nil) -> Port {
        let i = id()
        _ = try! topology.addPort(Port(id: i, name: name, device: device, binding: .exterior(interface: name),
                                       mac: .locallyAdministered(seed: i.low), vlan: vlan))
        return topology.ports[i]!
    }

    @discardableResult
    mutating func routerPort(_ name: String, on router: ResourceID, _ address: String, exterior: Bool = false) -> Port {
        let i = id()
        _ = try! topology.addPort(Port(id: i, name: name, device: router,
                                       binding: exterior ? .exterior(interface: name) : .unbound,
                                       address: IPv4Interface(address)!, mac: .locallyAdministered(seed: i.low)))
        return topology.ports[i]!
    }

    /// Links a new bridge port to router port `rp`.
    @discardableResult
    mutating func link(bridge: ResourceID, to rp: Port, name: String) -> Port {
        let i = id()
        _ = try! topology.addPort(Port(id: i, name: name, device: bridge, mac: .locallyAdministered(seed: i.low)))
        _ = try! topology.setBinding(i, .interior(peer: rp.id))
        return topology.ports[i]!
    }

    var simulator: Simulator { Simulator(topology: topology, learned: learned) }

    func simulate(_ frame: [UInt8], on port: Port, trace: Bool = true) -> SimulationResult {
        simulator.simulate(frame: frame, inPort: port.number, now: now, trace: trace)
    }

    /// Simulates and applies learning, as the datapath would.
    @discardableResult
    mutating func send(_ frame: [UInt8], on port: Port) -> SimulationResult {
        let r = simulate(frame, on: port)
        for e in r.effects { _ = learned.apply(e, now: now) }
        return r
    }

    mutating func learnARP(router: ResourceID, ip: String, mac: MACAddress, port: Port) {
        _ = learned.apply(.arp(router: router, ip: IPv4Address(ip)!, mac: mac, port: port.id), now: now)
    }
}

func udp(from srcMAC: MACAddress, to dstMAC: MACAddress, _ src: String, _ dst: String,
         sport: UInt16 = 1000, dport: UInt16 = 2000, ttl: UInt8 = 64, vlan: UInt16? = nil) -> [UInt8] {
    var s = PacketSpec()
    s.ethSrc = srcMAC
    s.ethDst = dstMAC
    s.ipSrc = IPv4Address(src)!
    s.ipDst = IPv4Address(dst)!
    s.ipProto = IPProtocolNumber.udp
    s.srcPort = sport
    s.dstPort = dport
    s.ttl = ttl
    s.vlan = vlan
    return s.frame()
}

func mac(_ last: UInt8) -> MACAddress { MACAddress(0x02, 0, 0, 0, 0, last) }

extension FrameLayout {
    static func of(_ bytes: [UInt8]) throws -> FrameLayout {
        try bytes.withUnsafeBytes { try FrameLayout.parse($0) }
    }
}

extension FlowKey {
    static func of(_ bytes: [UInt8], inPort: UInt32) throws -> FlowKey {
        try bytes.withUnsafeBytes { try FlowKey.extract($0, inPort: inPort) }
    }
}

/// Applies a simulation's actions to its frame, giving (port, bytes) per output.
func execute(_ actions: [FlowAction], on frame: [UInt8]) -> [GeneratedPacket] {
    frame.withUnsafeBytes { raw in
        let layout = try! FrameLayout.parse(raw)
        var sink = CollectingSink()
        defer { sink.release() }
        _ = actions.withUnsafeBufferPointer { ActionExecutor.execute($0, frame: raw, layout: layout, sink: &sink) }
        return sink.packets
    }
}
