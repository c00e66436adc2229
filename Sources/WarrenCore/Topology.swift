// Topology: the whole virtual network configuration as one versioned value.
//
// Holds bridges, routers, ports, routes and chains, plus derived indexes (ports by
// number and by device, one RouteTable per router, names per kind). Every mutation
// validates first and changes nothing when it throws; on success it bumps `version` and
// returns the flow tags it invalidates — the caller hands those to the flow table.
//
// Invariants:
// - names are unique per kind; IDs are unique overall;
// - a port's device exists; interior peers point at each other; an exterior binding
//   names one interface used by no other port;
// - every router port has an address and a connected route for its subnet, and its
//   address is a local entry of the router's route table;
// - routes reference a port of their own router; a gateway lies in that port's subnet;
// - chains referenced by ports and routers exist.
// Learned state (MAC and ARP tables) lives in `LearnedState`, not here: the agent owns
// configuration, the datapath owns what it learns from traffic.
// Threading: plain value (copy-on-write collections); mutate from one owner.

/// Why a topology mutation was refused. `field` names the offending parameter the way
/// the API spells it.
public enum TopologyError: Error, Hashable, Sendable, CustomStringConvertible {
    case notFound(kind: ResourceKind, field: String, value: String)
    case duplicateName(kind: ResourceKind, name: String)
    case duplicateID(kind: ResourceKind, id: ResourceID)
    case inUse(kind: ResourceKind, name: String, reason: String)
    case invalid(field: String, reason: String)

    public var field: String {
        switch self {
        case .notFound(_, let f, _): f
        case .duplicateName: "name"
        case .duplicateID: "id"
        case .inUse: "id"
        case .invalid(let f, _): f
        }
    }

    public var description: String {
        switch self {
        case .notFound(let kind, _, let value): "no \(kind.rawValue) \"\(value)\""
        case .duplicateName(let kind, let name): "a \(kind.rawValue) named \"\(name)\" already exists"
        case .duplicateID(let kind, let id): "a \(kind.rawValue) with id \(id) already exists"
        case .inUse(let kind, let name, let reason): "\(kind.rawValue) \"\(name)\" is in use: \(reason)"
        case .invalid(_, let reason): reason
        }
    }
}

public struct Topology: Sendable {
    public private(set) var version: UInt64 = 0
    public private(set) var bridges: [ResourceID: Bridge] = [:]
    public private(set) var routers: [ResourceID: Router] = [:]
    public private(set) var ports: [ResourceID: Port] = [:]
    public private(set) var routes: [ResourceID: Route] = [:]
    public private(set) var chains: [ResourceID: Chain] = [:]
    /// Port IDs by datapath port number.
    public private(set) var portsByNumber: [UInt32: ResourceID] = [:]
    /// Port IDs of each device, ordered by port number (deterministic flooding order).
    public private(set) var devicePorts: [ResourceID: [ResourceID]] = [:]
    /// Route tables by router ID.
    public private(set) var routeTables: [ResourceID: RouteTable] = [:]
    /// The next port number to hand out.
    public private(set) var nextPortNumber: UInt32 = 1
    private var names: [ResourceKind: [String: ResourceID]] = [:]
    private var interfaces: [String: ResourceID] = [:]

    public init() {}

    /// Continues the version sequence of a previous run (the store records it), so a
    /// restarted agent never reports a version it has already used.
    public mutating func restore(version: UInt64) {
        self.version = max(self.version, version)
    }

    // MARK: lookups

    /// Resolves an ID string or a name of `kind`.
    public func resolve(_ kind: ResourceKind, _ idOrName: String) -> ResourceID? {
        if let id = ResourceID(idOrName), exists(kind, id) { return id }
        return names[kind]?[idOrName]
    }

    public func exists(_ kind: ResourceKind, _ id: ResourceID) -> Bool {
        switch kind {
        case .bridge: bridges[id] != nil
        case .router: routers[id] != nil
        case .port: ports[id] != nil
        case .route: routes[id] != nil
        case .chain: chains[id] != nil
        case .rule: chains.values.contains { $0.rules.contains { $0.id == id } }
        }
    }

    public func port(number: UInt32) -> Port? {
        portsByNumber[number].flatMap { ports[$0] }
    }

    /// The kind of device `id` is, if it is one.
    public func deviceKind(_ id: ResourceID) -> ResourceKind? {
        if bridges[id] != nil { return .bridge }
        if routers[id] != nil { return .router }
        return nil
    }

    public func deviceName(_ id: ResourceID) -> String {
        bridges[id]?.name ?? routers[id]?.name ?? id.description
    }

    /// The port bound to host interface `name`, if any.
    public func port(boundTo interface: String) -> Port? {
        interfaces[interface].flatMap { ports[$0] }
    }

    /// Exterior ports (those bound to host interfaces).
    public var exteriorPorts: [Port] {
        ports.values.filter { $0.binding.interfaceName != nil }.sorted { $0.number < $1.number }
    }

    // MARK: bridges and routers

    public mutating func addBridge(_ bridge: Bridge) throws(TopologyError) -> [FlowTag] {
        try checkNewName(.bridge, bridge.name, id: bridge.id)
        guard bridge.macAgingSeconds > 0 else { throw .invalid(field: "macAgingSeconds", reason: "must be at least 1") }
        bridges[bridge.id] = bridge
        names[.bridge, default: [:]][bridge.name] = bridge.id
        devicePorts[bridge.id] = []
        version += 1
        return [.device(bridge.id)]
    }

    public mutating func addRouter(_ router: Router) throws(TopologyError) -> [FlowTag] {
        try checkNewName(.router, router.name, id: router.id)
        try checkChain(router.preRoutingChain, field: "preRoutingChain")
        try checkChain(router.postRoutingChain, field: "postRoutingChain")
        routers[router.id] = router
        names[.router, default: [:]][router.name] = router.id
        devicePorts[router.id] = []
        routeTables[router.id] = RouteTable()
        version += 1
        return [.device(router.id)]
    }

    /// Changes a bridge's mutable settings (admin state, MAC aging).
    public mutating func updateBridge(_ bridge: Bridge) throws(TopologyError) -> [FlowTag] {
        guard let old = bridges[bridge.id] else { throw .notFound(kind: .bridge, field: "id", value: bridge.id.description) }
        guard old.name == bridge.name else { throw .invalid(field: "name", reason: "a bridge cannot be renamed") }
        guard bridge.macAgingSeconds > 0 else { throw .invalid(field: "macAgingSeconds", reason: "must be at least 1") }
        bridges[bridge.id] = bridge
        version += 1
        return [.device(bridge.id)]
    }

    /// Changes a router's mutable settings (admin state, chains, ARP aging).
    public mutating func updateRouter(_ router: Router) throws(TopologyError) -> [FlowTag] {
        guard let old = routers[router.id] else { throw .notFound(kind: .router, field: "id", value: router.id.description) }
        guard old.name == router.name else { throw .invalid(field: "name", reason: "a router cannot be renamed") }
        try checkChain(router.preRoutingChain, field: "preRoutingChain")
        try checkChain(router.postRoutingChain, field: "postRoutingChain")
        routers[router.id] = router
        version += 1
        return [.device(router.id)]
    }

    /// Removes a bridge or router. Refused while it still has ports.
    public mutating func removeDevice(_ id: ResourceID) throws(TopologyError) -> [FlowTag] {
        let kind: ResourceKind
        let name: String
        if let b = bridges[id] { kind = .bridge; name = b.name }
        else if let r = routers[id] { kind = .router; name = r.name }
        else { throw .notFound(kind: .bridge, field: "id", value: id.description) }
        let attached = devicePorts[id] ?? []
        if !attached.isEmpty {
            let portNames = attached.compactMap { ports[$0]?.name }.sorted()
            throw .inUse(kind: kind, name: name, reason: "it still has \(attached.count) port(s): \(portNames.prefix(5).joined(separator: ", ")); delete them first")
        }
        if kind == .bridge { bridges[id] = nil } else {
            routers[id] = nil
            routeTables[id] = nil
        }
        names[kind]?[name] = nil
        devicePorts[id] = nil
        version += 1
        return [.device(id)]
    }

    // MARK: ports

    /// Adds a port. A port number of 0 means "assign the next one".
    public mutating func addPort(_ new: Port) throws(TopologyError) -> [FlowTag] {
        let saved = self
        var port = new
        try checkNewName(.port, port.name, id: port.id)
        let isRouter: Bool
        if bridges[port.device] != nil { isRouter = false }
        else if routers[port.device] != nil { isRouter = true }
        else { throw .notFound(kind: .bridge, field: "device", value: port.device.description) }
        if isRouter {
            guard let a = port.address else { throw .invalid(field: "address", reason: "a router port needs an address such as 10.0.1.1/24") }
            guard port.vlan == nil else { throw .invalid(field: "vlan", reason: "router ports do not take a VLAN") }
            guard port.mac.isUnicast else { throw .invalid(field: "mac", reason: "must be a unicast MAC address") }
            if let clash = routerPortOverlapping(router: port.device, a) {
                throw .invalid(field: "address", reason: "\(a) overlaps port \(clash.name) (\(clash.address!)) of the same router")
            }
        } else {
            guard port.address == nil else { throw .invalid(field: "address", reason: "bridge ports have no address") }
            if let v = port.vlan, v == 0 || v > 4094 { throw .invalid(field: "vlan", reason: "VLAN ID must be 1…4094") }
        }
        try checkChain(port.inboundChain, field: "inboundChain")
        try checkChain(port.outboundChain, field: "outboundChain")
        if port.number == 0 {
            port.number = nextPortNumber
        } else if portsByNumber[port.number] != nil {
            throw .invalid(field: "number", reason: "port number \(port.number) is taken")
        }
        // Bindings are set with setBinding so their checks live in one place.
        let binding = port.binding
        port.binding = .unbound
        ports[port.id] = port
        portsByNumber[port.number] = port.id
        nextPortNumber = max(nextPortNumber, port.number &+ 1)
        names[.port, default: [:]][port.name] = port.id
        devicePorts[port.device, default: []].append(port.id)
        devicePorts[port.device]!.sort { ports[$0]!.number < ports[$1]!.number }
        var tags: [FlowTag] = [.device(port.device), .port(port.id)]
        if isRouter, let a = port.address {
            let connected = Route(id: Topology.connectedRouteID(port: port.id), router: port.device,
                                  destination: a.network, nextHopPort: port.id, weight: 0, source: .connected)
            routes[connected.id] = connected
            routeTables[port.device]!.insert(connected)
            routeTables[port.device]!.addLocal(a.address)
            tags += FlowTag.routeChange(router: port.device, prefix: a.network)
            tags += FlowTag.routeChange(router: port.device, prefix: IPv4Prefix(containing: a.address, length: 32))
        }
        version += 1
        if binding != .unbound {
            do { tags += try setBinding(port.id, binding) } catch {
                // A refused binding leaves nothing behind (the copy shares storage, so
                // keeping it costs nothing until the insertion above wrote).
                self = saved
                throw error
            }
        }
        return tags
    }

    /// The ID of the connected route of a router port.
    public static func connectedRouteID(port: ResourceID) -> ResourceID {
        ResourceID(high: port.high ^ 0x00C0_4E00_0000_0000, low: ~port.low)
    }

    private func routerPortOverlapping(router: ResourceID, _ a: IPv4Interface, except: ResourceID? = nil) -> Port? {
        for pid in devicePorts[router] ?? [] where pid != except {
            if let p = ports[pid], let b = p.address, b.network.overlaps(a.network) { return p }
        }
        return nil
    }

    /// Changes a port's binding: bind to a host interface, peer with another port
    /// (both become interior), or unbind. Linking replaces the old bindings of both.
    public mutating func setBinding(_ id: ResourceID, _ binding: PortBinding) throws(TopologyError) -> [FlowTag] {
        guard let port = ports[id] else { throw .notFound(kind: .port, field: "port", value: id.description) }
        var tags: [FlowTag] = [.port(id), .device(port.device)]
        switch binding {
        case .unbound:
            break
        case .exterior(let name):
            guard Topology.isValidInterfaceName(name) else {
                throw .invalid(field: "interface", reason: "not a valid interface name (1–15 characters, no '/', ':' or whitespace)")
            }
            if let other = interfaces[name], other != id {
                throw .inUse(kind: .port, name: ports[other]?.name ?? other.description, reason: "interface \(name) is already bound to it")
            }
        case .interior(let peerID):
            guard let peer = ports[peerID] else { throw .notFound(kind: .port, field: "peer", value: peerID.description) }
            guard peerID != id else { throw .invalid(field: "peer", reason: "a port cannot be linked to itself") }
            guard peer.device != port.device else { throw .invalid(field: "peer", reason: "both ports belong to the same device") }
            if bridges[port.device] != nil && bridges[peer.device] != nil {
                throw .invalid(field: "peer", reason: "linking two bridges directly is not supported; put a router between them")
            }
            if case .interior(let existing) = peer.binding, existing != id {
                throw .inUse(kind: .port, name: peer.name, reason: "it is already linked to another port; unlink it first")
            }
            tags += [.port(peerID), .device(peer.device)]
        }
        // Detach the old binding.
        tags += detach(id)
        var p = ports[id]!
        p.binding = binding
        ports[id] = p
        switch binding {
        case .exterior(let name): interfaces[name] = id
        case .interior(let peerID):
            tags += detach(peerID)
            var q = ports[peerID]!
            q.binding = .interior(peer: id)
            ports[peerID] = q
        case .unbound: break
        }
        version += 1
        return tags
    }

    /// Clears `id`'s binding (and its peer's, for interior ports). Returns tags.
    private mutating func detach(_ id: ResourceID) -> [FlowTag] {
        guard var p = ports[id] else { return [] }
        var tags: [FlowTag] = []
        switch p.binding {
        case .exterior(let name): interfaces[name] = nil
        case .interior(let peerID):
            if var q = ports[peerID], q.binding == .interior(peer: id) {
                q.binding = .unbound
                ports[peerID] = q
                tags += [.port(peerID), .device(q.device)]
            }
        case .unbound: break
        }
        p.binding = .unbound
        ports[id] = p
        return tags
    }

    /// Changes a port's settings other than binding and address: admin state, VLAN,
    /// chains, MSS clamp.
    public mutating func updatePort(_ updated: Port) throws(TopologyError) -> [FlowTag] {
        guard let old = ports[updated.id] else { throw .notFound(kind: .port, field: "id", value: updated.id.description) }
        guard old.name == updated.name, old.device == updated.device, old.number == updated.number,
              old.binding == updated.binding, old.address == updated.address, old.mac == updated.mac
        else { throw .invalid(field: "port", reason: "only adminUp, vlan, chains and mssClamp can be changed") }
        if routers[old.device] != nil, updated.vlan != nil { throw .invalid(field: "vlan", reason: "router ports do not take a VLAN") }
        if let v = updated.vlan, v == 0 || v > 4094 { throw .invalid(field: "vlan", reason: "VLAN ID must be 1…4094") }
        try checkChain(updated.inboundChain, field: "inboundChain")
        try checkChain(updated.outboundChain, field: "outboundChain")
        ports[updated.id] = updated
        version += 1
        var tags: [FlowTag] = [.port(updated.id), .device(updated.device)]
        if let peer = updated.binding.peer { tags.append(.port(peer)) }
        return tags
    }

    /// Removes a port, unlinking its peer. Refused while non-connected routes use it.
    public mutating func removePort(_ id: ResourceID) throws(TopologyError) -> [FlowTag] {
        guard let port = ports[id] else { throw .notFound(kind: .port, field: "id", value: id.description) }
        let connectedID = Topology.connectedRouteID(port: id)
        let using = routes.values.filter { $0.nextHopPort == id && $0.id != connectedID }
        if !using.isEmpty {
            throw .inUse(kind: .port, name: port.name,
                         reason: "\(using.count) route(s) leave through it (e.g. \(using[0].destination)); delete them first")
        }
        var tags = detach(id)
        tags += [.port(id), .device(port.device)]
        if let connected = routes[connectedID] {
            routes[connectedID] = nil
            routeTables[port.device]?.remove(connected)
            tags += FlowTag.routeChange(router: port.device, prefix: connected.destination)
        }
        if let a = port.address {
            routeTables[port.device]?.removeLocal(a.address)
            tags += FlowTag.routeChange(router: port.device, prefix: IPv4Prefix(containing: a.address, length: 32))
        }
        ports[id] = nil
        portsByNumber[port.number] = nil
        names[.port]?[port.name] = nil
        devicePorts[port.device]?.removeAll { $0 == id }
        version += 1
        return tags
    }

    static func isValidInterfaceName(_ name: String) -> Bool {
        let u = Array(name.utf8)
        return !u.isEmpty && u.count <= 15 && name != "." && name != ".."
            && !u.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 >= 0x7F }
    }

    // MARK: routes

    public mutating func addRoute(_ route: Route) throws(TopologyError) -> [FlowTag] {
        guard routes[route.id] == nil else { throw .duplicateID(kind: .route, id: route.id) }
        guard routers[route.router] != nil else { throw .notFound(kind: .router, field: "router", value: route.router.description) }
        guard route.source != .connected else { throw .invalid(field: "source", reason: "connected routes come from port addresses") }
        guard let port = ports[route.nextHopPort] else { throw .notFound(kind: .port, field: "nextHopPort", value: route.nextHopPort.description) }
        guard port.device == route.router else { throw .invalid(field: "nextHopPort", reason: "port \(port.name) does not belong to this router") }
        if let gw = route.nextHopGateway {
            guard let a = port.address, a.network.contains(gw) else {
                throw .invalid(field: "nextHopGateway", reason: "\(gw) is not in the subnet of port \(port.name) (\(port.address?.description ?? "no address"))")
            }
            guard gw != a.address else { throw .invalid(field: "nextHopGateway", reason: "\(gw) is the router's own address") }
        }
        routes[route.id] = route
        routeTables[route.router]!.insert(route)
        version += 1
        return FlowTag.routeChange(router: route.router, prefix: route.destination)
    }

    public mutating func removeRoute(_ id: ResourceID) throws(TopologyError) -> [FlowTag] {
        guard let route = routes[id] else { throw .notFound(kind: .route, field: "id", value: id.description) }
        guard route.source != .connected else {
            throw .invalid(field: "id", reason: "a connected route goes away with its port's address, not by itself")
        }
        routes[id] = nil
        routeTables[route.router]?.remove(route)
        version += 1
        return FlowTag.routeChange(router: route.router, prefix: route.destination)
    }

    /// Routes of a router, sorted by prefix.
    public func routes(of router: ResourceID) -> [Route] {
        routeTables[router]?.allRoutes ?? []
    }

    // MARK: chains

    public mutating func addChain(_ chain: Chain) throws(TopologyError) -> [FlowTag] {
        try checkNewName(.chain, chain.name, id: chain.id)
        var ids = Set<ResourceID>()
        for r in chain.rules { guard ids.insert(r.id).inserted else { throw .duplicateID(kind: .rule, id: r.id) } }
        chains[chain.id] = chain
        names[.chain, default: [:]][chain.name] = chain.id
        version += 1
        return [.chain(chain.id)]
    }

    /// Replaces a chain's rules and default action.
    public mutating func updateChain(_ chain: Chain) throws(TopologyError) -> [FlowTag] {
        guard let old = chains[chain.id] else { throw .notFound(kind: .chain, field: "chain", value: chain.id.description) }
        guard old.name == chain.name else { throw .invalid(field: "name", reason: "a chain cannot be renamed") }
        var ids = Set<ResourceID>()
        for r in chain.rules { guard ids.insert(r.id).inserted else { throw .duplicateID(kind: .rule, id: r.id) } }
        chains[chain.id] = chain
        version += 1
        return [.chain(chain.id)]
    }

    /// Removes a chain. Refused while a port or router uses it.
    public mutating func removeChain(_ id: ResourceID) throws(TopologyError) -> [FlowTag] {
        guard let chain = chains[id] else { throw .notFound(kind: .chain, field: "id", value: id.description) }
        if let p = ports.values.first(where: { $0.inboundChain == id || $0.outboundChain == id }) {
            throw .inUse(kind: .chain, name: chain.name, reason: "port \(p.name) uses it")
        }
        if let r = routers.values.first(where: { $0.preRoutingChain == id || $0.postRoutingChain == id }) {
            throw .inUse(kind: .chain, name: chain.name, reason: "router \(r.name) uses it")
        }
        chains[id] = nil
        names[.chain]?[chain.name] = nil
        version += 1
        return [.chain(id)]
    }

    // MARK: helpers

    private func checkNewName(_ kind: ResourceKind, _ name: String, id: ResourceID) throws(TopologyError) {
        guard !name.isEmpty, name.utf8.count <= 64 else { throw .invalid(field: "name", reason: "must be 1–64 characters") }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalid(field: "name", reason: "must not contain control characters")
        }
        guard ResourceID(name) == nil else { throw .invalid(field: "name", reason: "must not look like an ID (UUID)") }
        if names[kind]?[name] != nil { throw .duplicateName(kind: kind, name: name) }
        if exists(kind, id) { throw .duplicateID(kind: kind, id: id) }
    }

    private func checkChain(_ id: ResourceID?, field: String) throws(TopologyError) {
        if let id, chains[id] == nil { throw .notFound(kind: .chain, field: field, value: id.description) }
    }
}
