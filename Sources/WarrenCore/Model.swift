// The virtual topology's resources: bridges, routers, ports, routes, chains and rules.
//
// These are plain values, `Codable` with the same field names and string formats the
// JSON-RPC API uses (IDs as UUID strings, MACs as "aa:bb:..", prefixes as "a.b.c.d/n"),
// so the agent stores and returns them as they are. Validation of relationships (a
// port's device exists, names are unique, ...) happens in `Topology`'s mutations.
// Threading: plain values.

/// The kinds of resources, for errors and name lookups.
public enum ResourceKind: String, Sendable, Hashable, Codable, CaseIterable {
    case bridge, router, port, route, chain, rule
}

public struct Bridge: Sendable, Hashable, Codable {
    public let id: ResourceID
    public var name: String
    public var adminUp: Bool
    /// Seconds a learned MAC entry lives without being seen again.
    public var macAgingSeconds: UInt32

    public init(id: ResourceID, name: String, adminUp: Bool = true, macAgingSeconds: UInt32 = 300) {
        self.id = id
        self.name = name
        self.adminUp = adminUp
        self.macAgingSeconds = macAgingSeconds
    }
}

public struct Router: Sendable, Hashable, Codable {
    public let id: ResourceID
    public var name: String
    public var adminUp: Bool
    /// Chain applied to every packet entering the router, before routing.
    public var preRoutingChain: ResourceID?
    /// Chain applied after routing, before the packet leaves.
    public var postRoutingChain: ResourceID?
    /// Seconds an ARP entry is used before it is resolved again.
    public var arpAgingSeconds: UInt32

    public init(id: ResourceID, name: String, adminUp: Bool = true, preRoutingChain: ResourceID? = nil,
                postRoutingChain: ResourceID? = nil, arpAgingSeconds: UInt32 = 300) {
        self.id = id
        self.name = name
        self.adminUp = adminUp
        self.preRoutingChain = preRoutingChain
        self.postRoutingChain = postRoutingChain
        self.arpAgingSeconds = arpAgingSeconds
    }
}

/// What a port is attached to.
public enum PortBinding: Sendable, Hashable, Codable {
    /// Attached to nothing: packets to it are dropped.
    case unbound
    /// Bound to a host interface; the datapath sends and receives its packets there.
    case exterior(interface: String)
    /// Peered with a port of another device; packets cross to it inside the simulation.
    case interior(peer: ResourceID)

    private enum CodingKeys: String, CodingKey { case kind, interface, peer }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "unbound": self = .unbound
        case "exterior": self = .exterior(interface: try c.decode(String.self, forKey: .interface))
        case "interior": self = .interior(peer: try c.decode(ResourceID.self, forKey: .peer))
        default:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "expected unbound, exterior or interior")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .unbound: try c.encode("unbound", forKey: .kind)
        case .exterior(let i):
            try c.encode("exterior", forKey: .kind)
            try c.encode(i, forKey: .interface)
        case .interior(let p):
            try c.encode("interior", forKey: .kind)
            try c.encode(p, forKey: .peer)
        }
    }

    public var interfaceName: String? { if case .exterior(let i) = self { i } else { nil } }
    public var peer: ResourceID? { if case .interior(let p) = self { p } else { nil } }
}

public struct Port: Sendable, Hashable, Codable {
    public let id: ResourceID
    public var name: String
    /// The bridge or router this port belongs to.
    public let device: ResourceID
    /// The datapath's number for this port (flow keys carry it); unique, never reused
    /// while the port exists.
    public var number: UInt32
    public var adminUp: Bool
    public var binding: PortBinding
    /// Router ports: the port's address and prefix length.
    public var address: IPv4Interface?
    /// The port's MAC address (router ports answer ARP with it).
    public var mac: MACAddress
    /// Bridge ports: the access VLAN (frames enter untagged and are tagged inside).
    public var vlan: UInt16?
    /// Chain applied to packets entering the device through this port.
    public var inboundChain: ResourceID?
    /// Chain applied to packets leaving the device through this port.
    public var outboundChain: ResourceID?
    /// Lower the MSS of TCP SYNs leaving through this port to this value (tunnels).
    public var mssClamp: UInt16?

    public init(id: ResourceID, name: String, device: ResourceID, number: UInt32 = 0, adminUp: Bool = true,
                binding: PortBinding = .unbound, address: IPv4Interface? = nil, mac: MACAddress,
                vlan: UInt16? = nil, inboundChain: ResourceID? = nil, outboundChain: ResourceID? = nil,
                mssClamp: UInt16? = nil) {
        self.id = id
        self.name = name
        self.device = device
        self.number = number
        self.adminUp = adminUp
        self.binding = binding
        self.address = address
        self.mac = mac
        self.vlan = vlan
        self.inboundChain = inboundChain
        self.outboundChain = outboundChain
        self.mssClamp = mssClamp
    }
}

/// Where a route came from.
public enum RouteSource: String, Sendable, Hashable, Codable, CaseIterable {
    /// The subnet of a router port's address.
    case connected
    /// Added through the API.
    case `static`
    /// Injected by a plugin from a routing protocol (BGP).
    case learned
}

public struct Route: Sendable, Hashable, Codable {
    public let id: ResourceID
    public let router: ResourceID
    public var destination: IPv4Prefix
    /// The router port the packet leaves by.
    public var nextHopPort: ResourceID
    /// The next router's address; nil means the destination is on the port's link.
    public var nextHopGateway: IPv4Address?
    /// Among routes for the same prefix the lowest weight wins; equal weights share
    /// traffic by flow hash (ECMP).
    public var weight: UInt32
    public var source: RouteSource
    /// Free text: which plugin or session owns a learned route, for operators.
    public var owner: String?

    public init(id: ResourceID, router: ResourceID, destination: IPv4Prefix, nextHopPort: ResourceID,
                nextHopGateway: IPv4Address? = nil, weight: UInt32 = 100, source: RouteSource = .static,
                owner: String? = nil) {
        self.id = id
        self.router = router
        self.destination = destination
        self.nextHopPort = nextHopPort
        self.nextHopGateway = nextHopGateway
        self.weight = weight
        self.source = source
        self.owner = owner
    }
}

public enum RuleAction: String, Sendable, Hashable, Codable, CaseIterable {
    case accept, drop, reject
}

/// What a rule matches. Absent fields match anything; all present fields must match.
public struct RuleMatch: Sendable, Hashable, Codable {
    public var ethSrc: MACAddress?
    public var ethDst: MACAddress?
    public var ethType: UInt16?
    public var vlan: UInt16?
    public var ipSrc: IPv4Prefix?
    public var ipDst: IPv4Prefix?
    public var ipProto: UInt8?
    public var tos: UInt8?
    /// Inclusive ranges; a single port is `p...p`.
    public var srcPortMin: UInt16?
    public var srcPortMax: UInt16?
    public var dstPortMin: UInt16?
    public var dstPortMax: UInt16?
    public var icmpType: UInt8?
    public var icmpCode: UInt8?
    /// true: only fragments; false: only unfragmented packets.
    public var fragment: Bool?
    public var arpOp: UInt16?

    public init(ethSrc: MACAddress? = nil, ethDst: MACAddress? = nil, ethType: UInt16? = nil, vlan: UInt16? = nil,
                ipSrc: IPv4Prefix? = nil, ipDst: IPv4Prefix? = nil, ipProto: UInt8? = nil, tos: UInt8? = nil,
                srcPortMin: UInt16? = nil, srcPortMax: UInt16? = nil, dstPortMin: UInt16? = nil,
                dstPortMax: UInt16? = nil, icmpType: UInt8? = nil, icmpCode: UInt8? = nil,
                fragment: Bool? = nil, arpOp: UInt16? = nil) {
        self.ethSrc = ethSrc; self.ethDst = ethDst; self.ethType = ethType; self.vlan = vlan
        self.ipSrc = ipSrc; self.ipDst = ipDst; self.ipProto = ipProto; self.tos = tos
        self.srcPortMin = srcPortMin; self.srcPortMax = srcPortMax
        self.dstPortMin = dstPortMin; self.dstPortMax = dstPortMax
        self.icmpType = icmpType; self.icmpCode = icmpCode; self.fragment = fragment; self.arpOp = arpOp
    }
}

public struct Rule: Sendable, Hashable, Codable {
    public let id: ResourceID
    public var match: RuleMatch
    public var action: RuleAction
    public var name: String?

    public init(id: ResourceID, match: RuleMatch, action: RuleAction, name: String? = nil) {
        self.id = id
        self.match = match
        self.action = action
        self.name = name
    }
}

public struct Chain: Sendable, Hashable, Codable {
    public let id: ResourceID
    public var name: String
    /// Evaluated in order; the first matching rule decides.
    public var rules: [Rule]
    /// The decision when no rule matches.
    public var defaultAction: RuleAction

    public init(id: ResourceID, name: String, rules: [Rule] = [], defaultAction: RuleAction = .accept) {
        self.id = id
        self.name = name
        self.rules = rules
        self.defaultAction = defaultAction
    }
}

// MARK: - String codings shared with the API

extension ResourceID: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = ResourceID(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a UUID: \(s.prefix(64))")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension MACAddress: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = MACAddress(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a MAC address (aa:bb:cc:dd:ee:ff): \(s.prefix(64))")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension IPv4Address: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = IPv4Address(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an IPv4 address: \(s.prefix(64))")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension IPv4Prefix: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = IPv4Prefix(s) else {
            let hint = IPv4Interface(s).map { " (host bits set; did you mean \($0.network)?)" } ?? ""
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a CIDR prefix (a.b.c.d/n): \(s.prefix(64))\(hint)")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension IPv4Interface: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = IPv4Interface(s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an interface address (a.b.c.d/n, not the network or broadcast address): \(s.prefix(64))")
        }
        self = v
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
