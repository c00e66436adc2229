// packet.trace and flow views: turn a described packet into a frame, simulate it with
// the datapath's learned state, and report each device's decision, the outcome and the
// megaflow the datapath would install. Also the JSON views of flows and counters.

import Foundation
import WarrenCore
import WarrenDatapath
import WarrenRPC

/// An IP protocol given as "icmp", "tcp", "udp" or a number.
struct ProtocolValue: Codable, Sendable, JSONSchemaProviding {
    var number: UInt8

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt8.self) { number = n; return }
        let s = try c.decode(String.self).lowercased()
        switch s {
        case "icmp": number = IPProtocolNumber.icmp
        case "tcp": number = IPProtocolNumber.tcp
        case "udp": number = IPProtocolNumber.udp
        default: throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected icmp, tcp, udp or a protocol number 0–255")
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch number {
        case IPProtocolNumber.icmp: try c.encode("icmp")
        case IPProtocolNumber.tcp: try c.encode("tcp")
        case IPProtocolNumber.udp: try c.encode("udp")
        default: try c.encode(number)
        }
    }

    static var jsonSchema: JSONValue {
        ["oneOf": [["type": "string", "enum": ["icmp", "tcp", "udp"]], ["type": "integer", "minimum": 0, "maximum": 255]]]
    }
}

/// A packet described by header fields; every field may be omitted.
struct TracePacket: Codable, Sendable {
    var ethSrc: MACAddress?
    /// Omitted: for a bridge port, the gateway router port's MAC when the destination is
    /// off-subnet (as a VM would address it), else broadcast; for a router port, its MAC.
    var ethDst: MACAddress?
    var vlan: UInt16?
    /// "arp" to trace an ARP request (sender ipSrc/ethSrc, target ipDst).
    var arp: Bool?
    var ipSrc: IPv4Address?
    var ipDst: IPv4Address?
    var `protocol`: ProtocolValue?
    var ttl: UInt8?
    var tos: UInt8?
    var srcPort: UInt16?
    var dstPort: UInt16?
    var icmpType: UInt8?
    var icmpCode: UInt8?
    var tcpFlags: UInt16?
    var payloadLength: Int?
}

struct TraceParams: Codable, Sendable {
    /// The ingress port (ID or name).
    var port: String
    var packet: TracePacket
}

struct GeneratedView: Codable, Sendable {
    var port: String
    var summary: String
}

struct TraceOutcome: Codable, Sendable {
    /// "output", "drop", "generated" (answered by the agent), "pending" (waiting for ARP).
    var kind: String
    var ports: [String]
    var reasons: [String]
    var generated: [GeneratedView]
}

struct TraceResult: Codable, Sendable {
    var packet: String
    var steps: [TraceStep]
    var result: TraceOutcome
    /// The megaflow the datapath would install ("not cacheable" when it would not).
    var match: String
    var actions: [String]
    var cacheable: Bool
}

enum PacketTracer {
    static func trace(topology t: Topology, learned: LearnedState, port: Port, packet p: TracePacket, now: UInt64) throws -> TraceResult {
        var s = PacketSpec()
        if let v = p.ethSrc { s.ethSrc = v }
        if let v = p.ipSrc { s.ipSrc = v }
        if let v = p.ipDst { s.ipDst = v }
        if let v = p.protocol?.number { s.ipProto = v }
        if let v = p.ttl { s.ttl = v }
        if let v = p.tos { s.tos = v }
        if let v = p.srcPort { s.srcPort = v }
        if let v = p.dstPort { s.dstPort = v }
        if let v = p.icmpType { s.icmpType = v }
        if let v = p.icmpCode { s.icmpCode = v }
        if let v = p.tcpFlags { s.tcpFlags = v }
        if let v = p.vlan {
            guard v >= 1 && v <= 4094 else { throw RPCError.invalidParams(field: "packet.vlan", reason: "must be 1…4094") }
            s.vlan = v
        }
        if let n = p.payloadLength {
            guard n >= 0 && n <= 1472 else { throw RPCError.invalidParams(field: "packet.payloadLength", reason: "must be 0…1472") }
            s.payload = Array(repeating: 0x61, count: n)
        }
        if (s.ipProto == IPProtocolNumber.tcp || s.ipProto == IPProtocolNumber.udp) && p.srcPort == nil { s.srcPort = 40000 }
        if s.ipProto == IPProtocolNumber.tcp && p.dstPort == nil { s.dstPort = 80 }
        if s.ipProto == IPProtocolNumber.udp && p.dstPort == nil { s.dstPort = 53 }
        if p.arp == true {
            s.ethType = EtherType.arp
            s.ethDst = p.ethDst ?? .broadcast
        } else {
            s.ethDst = p.ethDst ?? defaultDestinationMAC(t, port: port, src: s.ipSrc, dst: s.ipDst)
        }
        let frame = s.frame()
        let r = Simulator(topology: t, learned: learned).simulate(frame: frame, inPort: port.number, now: now, trace: true)
        func portName(_ n: UInt32) -> String { t.port(number: n)?.name ?? "#\(n)" }
        let kind: String
        if !r.outputs.isEmpty { kind = "output" }
        else if !r.pending.isEmpty { kind = "pending" }
        else if !r.generated.isEmpty { kind = "generated" }
        else { kind = "drop" }
        let outcome = TraceOutcome(kind: kind, ports: r.outputs.map(portName), reasons: r.drops,
                                   generated: r.generated.map { GeneratedView(port: portName($0.port), summary: summarize($0.frame)) })
        return TraceResult(packet: summarize(frame), steps: r.trace, result: outcome,
                           match: r.cacheable ? r.match.description : "not cacheable",
                           actions: r.actions.map { describe($0, t) }, cacheable: r.cacheable)
    }

    /// The MAC a host on `port`'s segment would send to: its gateway for off-subnet
    /// destinations, otherwise broadcast (as before ARP).
    static func defaultDestinationMAC(_ t: Topology, port: Port, src: IPv4Address, dst: IPv4Address) -> MACAddress {
        if t.routers[port.device] != nil { return port.mac }
        for pid in t.devicePorts[port.device] ?? [] {
            guard let bp = t.ports[pid], let peer = bp.binding.peer.flatMap({ t.ports[$0] }), let a = peer.address else { continue }
            if a.network.contains(src) && !a.network.contains(dst) { return peer.mac }
            if a.address == dst { return peer.mac }
        }
        return .broadcast
    }

    static func describe(_ a: FlowAction, _ t: Topology) -> String {
        if case .output(let n) = a { return "output:\(t.port(number: n)?.name ?? "#\(n)")" }
        return a.description
    }

    /// A one-line human description of a frame.
    static func summarize(_ frame: [UInt8]) -> String {
        frame.withUnsafeBytes { raw in
            guard let l = try? FrameLayout.parse(raw) else { return "malformed frame (\(frame.count) bytes)" }
            let k = FlowKey(frame: raw, layout: l, inPort: 0)
            var out = "\(k.ethSrc) > \(k.ethDst)"
            if let v = k.vlanID { out += " vlan \(v)" }
            if k.ethType == EtherType.arp {
                return out + (k.arpOp == 1 ? " ARP who-has \(k.ipDst) tell \(k.ipSrc)" : " ARP \(k.ipSrc) is-at \(k.ethSrc)")
            }
            guard k.ethType == EtherType.ipv4 else { return out + " ethertype 0x\(String(k.ethType, radix: 16))" }
            out += " \(k.ipSrc) > \(k.ipDst) ttl \(k.ipTTL)"
            switch k.ipProto {
            case IPProtocolNumber.icmp: out += " ICMP type \(k.tpSrc) code \(k.tpDst)"
            case IPProtocolNumber.tcp: out += " TCP \(k.tpSrc) > \(k.tpDst) flags 0x\(String(k.tcpFlags, radix: 16))"
            case IPProtocolNumber.udp: out += " UDP \(k.tpSrc) > \(k.tpDst)"
            default: out += " protocol \(k.ipProto)"
            }
            return out
        }
    }
}

// MARK: - Flow and counter views

struct FlowView: Codable, Sendable {
    var match: String
    var actions: [String]
    var packets: UInt64
    var bytes: UInt64
    var ageSeconds: Double
    var idleSeconds: Double

    init(_ f: FlowSnapshot, topology: Topology, now: UInt64) {
        match = f.match.description
        actions = f.actions.isEmpty ? ["drop"] : f.actions.map { PacketTracer.describe($0, topology) }
        packets = f.packets
        bytes = f.bytes
        ageSeconds = Double(now &- f.installedAt) / 1e9
        idleSeconds = Double(now &- f.lastUsed) / 1e9
    }
}

struct FlowStatsView: Codable, Sendable {
    var lookups: UInt64
    var exactHits: UInt64
    var megaflowHits: UInt64
    var misses: UInt64
    var subtablesPerHit: Double
    var installs: UInt64
    var invalidations: UInt64
    var evictions: UInt64
    var expirations: UInt64
    var flows: Int
    var subtables: Int
    var flowMemoryBytes: Int
    var simulations: UInt64
    var generatedPackets: UInt64
    var arpQueued: Int
    var arpTimeouts: UInt64
    var macEntries: Int
    var arpEntries: Int
    var malformed: [String: UInt64]
    var ports: [PortStatus]

    init(_ s: DatapathStats) {
        let c = s.flowTable
        lookups = c.lookups; exactHits = c.exactHits; megaflowHits = c.megaflowHits; misses = c.misses
        subtablesPerHit = c.subtablesPerHit; installs = c.installs; invalidations = c.invalidations
        evictions = c.evictions; expirations = c.expirations
        flows = s.flows; subtables = s.subtables; flowMemoryBytes = s.flowMemoryBytes
        simulations = s.simulations; generatedPackets = s.generatedPackets
        arpQueued = s.arpQueued; arpTimeouts = s.arpTimeouts; macEntries = s.macEntries; arpEntries = s.arpEntries
        malformed = s.malformed; ports = s.ports
    }
}
