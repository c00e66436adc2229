// API types: the parameters and results of the core JSON-RPC methods, and the one place
// where topology errors become JSON-RPC errors.
//
// Field names are the contract in API.md (`device`, `address`, `nextHopPort`, ...).
// Value types that validate themselves (CIDRs, MACs, UUIDs) describe their own JSON
// schema, so `rpc.discover` shows formats, not just "string".

import Foundation
import WarrenCore
import WarrenRPC

/// Foundation also has a `Port`; in this module it is always the topology's.
typealias Port = WarrenCore.Port

// MARK: - Schemas of core value types

extension IPv4Prefix: JSONSchemaProviding {
    public static var jsonSchema: JSONValue {
        ["type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", "description": "IPv4 prefix with no host bits set", "examples": ["100.64.1.0/24"]]
    }
}

extension IPv4Interface: JSONSchemaProviding {
    public static var jsonSchema: JSONValue {
        ["type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", "description": "address and prefix length", "examples": ["100.64.1.1/24"]]
    }
}

extension IPv4Address: JSONSchemaProviding {
    public static var jsonSchema: JSONValue {
        ["type": "string", "format": "ipv4", "examples": ["100.64.1.10"]]
    }
}

extension MACAddress: JSONSchemaProviding {
    public static var jsonSchema: JSONValue {
        ["type": "string", "pattern": "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", "examples": ["02:00:00:00:00:01"]]
    }
}

extension ResourceID: JSONSchemaProviding {
    public static var jsonSchema: JSONValue { ["type": "string", "format": "uuid", "examples": ["5f0c3a52-6f1e-4a8e-9c55-2b7d3c1e9a10"]] }
}

extension RouteSource: JSONSchemaProviding {}
extension RuleAction: JSONSchemaProviding {}

extension PortBinding: JSONSchemaProviding {
    public static var jsonSchema: JSONValue {
        ["type": "object",
         "properties": ["kind": ["type": "string", "enum": ["unbound", "exterior", "interior"]],
                        "interface": ["type": "string"], "peer": ["type": "string", "format": "uuid"]],
         "required": ["kind"]]
    }
}

// MARK: - Error mapping (the one place)

extension RPCError {
    /// The JSON-RPC error for a refused topology mutation.
    public init(_ e: TopologyError) {
        switch e {
        case .notFound(_, let field, _): self = .notFound(field: field, reason: e.description)
        case .duplicateName, .duplicateID: self = .conflict(field: e.field, reason: e.description)
        case .inUse: self = .failedPrecondition(field: e.field, reason: e.description)
        case .invalid(let field, let reason): self = .invalidParams(field: field, reason: reason)
        }
    }
}

// MARK: - Common parameters

/// A resource named by ID or name: `{"id": "..."}` or `{"name": "..."}`; `id` may also
/// hold a name.
public struct ResourceSelector: Codable, Sendable {
    public var id: String?
    public var name: String?

    public init(id: String? = nil, name: String? = nil) { self.id = id; self.name = name }

    public var text: String? { id ?? name }
}

// MARK: - Views returned by the API

public struct BridgeView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var adminUp: Bool
    public var macAgingSeconds: UInt32
    public var ports: [String]
}

public struct RouterView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var adminUp: Bool
    public var preRoutingChain: ResourceID?
    public var postRoutingChain: ResourceID?
    public var arpAgingSeconds: UInt32
    public var ports: [String]
}

public struct PortView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var device: ResourceID
    public var deviceName: String
    public var deviceKind: String
    public var number: UInt32
    public var adminUp: Bool
    /// "unbound", "exterior" or "interior".
    public var binding: String
    public var interface: String?
    public var peer: ResourceID?
    public var peerName: String?
    public var address: IPv4Interface?
    public var mac: MACAddress
    public var vlan: UInt16?
    public var inboundChain: ResourceID?
    public var outboundChain: ResourceID?
    public var mssClamp: UInt16?
}

public struct RouteView: Codable, Sendable {
    public var id: ResourceID
    public var router: ResourceID
    public var routerName: String
    public var destination: IPv4Prefix
    public var nextHopPort: ResourceID
    public var nextHopPortName: String
    public var nextHopGateway: IPv4Address?
    public var weight: UInt32
    public var source: RouteSource
    public var owner: String?
}

public struct RuleView: Codable, Sendable {
    public var id: ResourceID
    public var name: String?
    public var action: RuleAction
    public var match: RuleMatch
}

public struct ChainView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var defaultAction: RuleAction
    public var rules: [RuleView]
    /// Where the chain is attached: "port vm1 inbound", "router r1 preRouting", ...
    public var attachedTo: [String]
}

extension Topology {
    func bridgeView(_ b: Bridge) -> BridgeView {
        BridgeView(id: b.id, name: b.name, adminUp: b.adminUp, macAgingSeconds: b.macAgingSeconds,
                   ports: (devicePorts[b.id] ?? []).compactMap { ports[$0]?.name })
    }

    func routerView(_ r: Router) -> RouterView {
        RouterView(id: r.id, name: r.name, adminUp: r.adminUp, preRoutingChain: r.preRoutingChain,
                   postRoutingChain: r.postRoutingChain, arpAgingSeconds: r.arpAgingSeconds,
                   ports: (devicePorts[r.id] ?? []).compactMap { ports[$0]?.name })
    }

    func portView(_ p: Port) -> PortView {
        let kind: String
        switch p.binding {
        case .unbound: kind = "unbound"
        case .exterior: kind = "exterior"
        case .interior: kind = "interior"
        }
        return PortView(id: p.id, name: p.name, device: p.device, deviceName: deviceName(p.device),
                        deviceKind: deviceKind(p.device)?.rawValue ?? "?", number: p.number, adminUp: p.adminUp,
                        binding: kind, interface: p.binding.interfaceName, peer: p.binding.peer,
                        peerName: p.binding.peer.flatMap { ports[$0]?.name }, address: p.address, mac: p.mac,
                        vlan: p.vlan, inboundChain: p.inboundChain, outboundChain: p.outboundChain, mssClamp: p.mssClamp)
    }

    func routeView(_ r: Route) -> RouteView {
        RouteView(id: r.id, router: r.router, routerName: deviceName(r.router), destination: r.destination,
                  nextHopPort: r.nextHopPort, nextHopPortName: ports[r.nextHopPort]?.name ?? "?",
                  nextHopGateway: r.nextHopGateway, weight: r.weight, source: r.source, owner: r.owner)
    }

    func chainView(_ c: Chain) -> ChainView {
        var attached: [String] = []
        for p in ports.values.sorted(by: { $0.name < $1.name }) {
            if p.inboundChain == c.id { attached.append("port \(p.name) inbound") }
            if p.outboundChain == c.id { attached.append("port \(p.name) outbound") }
        }
        for r in routers.values.sorted(by: { $0.name < $1.name }) {
            if r.preRoutingChain == c.id { attached.append("router \(r.name) preRouting") }
            if r.postRoutingChain == c.id { attached.append("router \(r.name) postRouting") }
        }
        return ChainView(id: c.id, name: c.name, defaultAction: c.defaultAction,
                         rules: c.rules.map { RuleView(id: $0.id, name: $0.name, action: $0.action, match: $0.match) },
                         attachedTo: attached)
    }
}
