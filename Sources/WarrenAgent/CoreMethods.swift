// Core JSON-RPC methods: bridges, routers, ports, routes, chains and rules, topology,
// packet tracing and flows — the contract of API.md.
//
// Each handler resolves names/IDs, builds the change, and runs it through
// `Network.mutate`, so validation, persistence and datapath update happen in that one
// place; errors become JSON-RPC errors through `RPCError(TopologyError)`.

import Foundation
import WarrenCore
import WarrenDatapath
import WarrenRPC

/// What the core methods need from the datapath (absent when it is disabled).
public protocol DatapathAccess: Sendable {
    func learnedState() async -> LearnedState
    func flows(limit: Int) async -> [FlowSnapshot]
    func currentStatistics() async -> DatapathStats
}

extension Datapath: DatapathAccess {
    public func learnedState() async -> LearnedState { await perform { $0.learned } }
    public func flows(limit: Int) async -> [FlowSnapshot] { await perform { $0.flows(limit: limit) } }
}

extension Datapath: TopologySink {}

// MARK: - Parameters

struct NameParams: Codable, Sendable {
    var name: String
    var adminUp: Bool?
}

struct BridgeCreateParams: Codable, Sendable {
    var name: String
    var adminUp: Bool?
    var macAgingSeconds: UInt32?
}

struct RouterCreateParams: Codable, Sendable {
    var name: String
    var adminUp: Bool?
    var arpAgingSeconds: UInt32?
}

struct BridgeUpdateParams: Codable, Sendable {
    /// ID or name.
    var id: String
    var adminUp: Bool?
    var macAgingSeconds: UInt32?
}

struct RouterUpdateParams: Codable, Sendable {
    /// ID or name.
    var id: String
    var adminUp: Bool?
    var arpAgingSeconds: UInt32?
}

struct PortCreateParams: Codable, Sendable {
    /// The bridge or router (ID or name).
    var device: String
    var name: String
    /// Router ports: "100.64.1.1/24".
    var address: IPv4Interface?
    var mac: MACAddress?
    /// Bridge ports: access VLAN 1–4094.
    var vlan: UInt16?
    var adminUp: Bool?
    var mssClamp: UInt16?
}

struct PortLinkParams: Codable, Sendable {
    var port: String
    var peer: String
}

struct PortBindParams: Codable, Sendable {
    var port: String
    var interface: String
}

struct PortUpdateParams: Codable, Sendable {
    var id: String
    var adminUp: Bool?
    var vlan: UInt16?
    var mssClamp: UInt16?
}

struct RouteAddParams: Codable, Sendable {
    var router: String
    var destination: IPv4Prefix
    var nextHopPort: String
    var nextHopGateway: IPv4Address?
    var weight: UInt32?
}

struct RouteSelectorParams: Codable, Sendable {
    var id: String
    var router: String?
}

struct RouteListParams: Codable, Sendable {
    var router: String?
}

struct ChainCreateParams: Codable, Sendable {
    var name: String
    var defaultAction: RuleAction?
}

struct RuleAddParams: Codable, Sendable {
    var chain: String
    var action: RuleAction
    var match: RuleMatch?
    var name: String?
    /// 0-based position; appended when omitted.
    var position: Int?
}

struct RuleDeleteParams: Codable, Sendable {
    var chain: String
    /// Rule ID or name.
    var id: String
}

enum ChainHook: String, Codable, Sendable, CaseIterable, JSONSchemaProviding {
    case inbound, outbound, preRouting, postRouting
}

struct ChainAttachParams: Codable, Sendable {
    /// The chain; omit (or null) to detach.
    var chain: String?
    var port: String?
    var router: String?
    var hook: ChainHook
}

struct LimitParams: Codable, Sendable {
    var limit: Int?
}

struct ListResult<T: Codable & Sendable>: Codable, Sendable {
    var items: [T]
}

struct TopologyDocument: Codable, Sendable {
    var version: UInt64
    var bridges: [BridgeView]
    var routers: [RouterView]
    var ports: [PortView]
    var routes: [RouteView]
    var chains: [ChainView]
}

struct LinkResult: Codable, Sendable {
    var port: PortView
    var peer: PortView
}

// MARK: - Registration

public enum CoreMethods {
    /// Resolves an ID or name of `kind`, or throws the error naming `field`.
    static func resolve(_ t: Topology, _ kind: ResourceKind, _ text: String?, field: String) throws -> ResourceID {
        guard let text, !text.isEmpty else { throw RPCError.invalidParams(field: field, reason: "required: an ID or name") }
        guard let id = t.resolve(kind, text) else {
            throw RPCError.notFound(field: field, reason: "no \(kind.rawValue) \"\(text.prefix(80))\"")
        }
        return id
    }

    /// Runs `body`, naming `field` (not the generic "id") when the refusal is "in use": the
    /// peer already linked, the interface already bound.
    static func inUse<T>(field: String, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as TopologyError {
            if case .inUse = e { throw RPCError.failedPrecondition(field: field, reason: e.description) }
            throw e
        }
    }

    static func resolveDevice(_ t: Topology, _ text: String, field: String) throws -> ResourceID {
        if let id = t.resolve(.bridge, text) ?? t.resolve(.router, text) { return id }
        throw RPCError.notFound(field: field, reason: "no bridge or router \"\(text.prefix(80))\"")
    }

    /// Registers every core method on `registry`.
    public static func register(on registry: MethodRegistry, network: Network, datapath: (any DatapathAccess)?,
                                now: @escaping @Sendable () -> UInt64 = monotonicNanoseconds) {
        // Wraps a handler so TopologyError becomes the mapped RPCError.
        func mapped<P: Codable & Sendable, R: Codable & Sendable>(_ body: @escaping @Sendable (P) async throws -> R)
            -> @Sendable (P, RequestContext) async throws -> R {
            { p, _ in
                do { return try await body(p) } catch let e as TopologyError { throw RPCError(e) }
            }
        }

        // MARK: bridges and routers
        registry.register("bridge.create", summary: "Create a virtual bridge.", params: BridgeCreateParams.self, result: BridgeView.self, handler: mapped { p in
            let id = await network.newID()
            let t = try await network.mutate(touching: [ResourceRef(.bridge, id)], event: "bridge.created") { t throws(TopologyError) in
                try t.addBridge(Bridge(id: id, name: p.name, adminUp: p.adminUp ?? true, macAgingSeconds: p.macAgingSeconds ?? 300))
            }
            return t.bridgeView(try t.bridges[id].existing(.bridge, id))
        })
        registry.register("router.create", summary: "Create a virtual router.", params: RouterCreateParams.self, result: RouterView.self, handler: mapped { p in
            let id = await network.newID()
            let t = try await network.mutate(touching: [ResourceRef(.router, id)], event: "router.created") { t throws(TopologyError) in
                try t.addRouter(Router(id: id, name: p.name, adminUp: p.adminUp ?? true, arpAgingSeconds: p.arpAgingSeconds ?? 300))
            }
            return t.routerView(try t.routers[id].existing(.router, id))
        })
        registry.register("bridge.get", summary: "Get a bridge by ID or name.", params: ResourceSelector.self, result: BridgeView.self, handler: mapped { p in
            let t = await network.topology
            return t.bridgeView(t.bridges[try CoreMethods.resolve(t, .bridge, p.text, field: "id")]!)
        })
        registry.register("router.get", summary: "Get a router by ID or name.", params: ResourceSelector.self, result: RouterView.self, handler: mapped { p in
            let t = await network.topology
            return t.routerView(t.routers[try CoreMethods.resolve(t, .router, p.text, field: "id")]!)
        })
        registry.register("bridge.list", summary: "List bridges.", params: EmptyParams.self, result: ListResult<BridgeView>.self, handler: mapped { (_: EmptyParams) in
            let t = await network.topology
            return ListResult(items: t.bridges.values.sorted { $0.name < $1.name }.map { t.bridgeView($0) })
        })
        registry.register("router.list", summary: "List routers.", params: EmptyParams.self, result: ListResult<RouterView>.self, handler: mapped { (_: EmptyParams) in
            let t = await network.topology
            return ListResult(items: t.routers.values.sorted { $0.name < $1.name }.map { t.routerView($0) })
        })
        registry.register("bridge.update", summary: "Change a bridge's admin state or MAC aging time.", params: BridgeUpdateParams.self, result: BridgeView.self, handler: mapped { p in
            let id = try CoreMethods.resolve(await network.topology, .bridge, p.id, field: "id")
            let t = try await network.mutate(touching: [ResourceRef(.bridge, id)], event: "bridge.updated") { t throws(TopologyError) in
                var b = try t.bridges[id].existing(.bridge, id)
                if let v = p.adminUp { b.adminUp = v }
                if let v = p.macAgingSeconds { b.macAgingSeconds = v }
                return try t.updateBridge(b)
            }
            return t.bridgeView(try t.bridges[id].existing(.bridge, id))
        })
        registry.register("router.update", summary: "Change a router's admin state or ARP aging time.", params: RouterUpdateParams.self, result: RouterView.self, handler: mapped { p in
            let id = try CoreMethods.resolve(await network.topology, .router, p.id, field: "id")
            let t = try await network.mutate(touching: [ResourceRef(.router, id)], event: "router.updated") { t throws(TopologyError) in
                var r = try t.routers[id].existing(.router, id)
                if let v = p.adminUp { r.adminUp = v }
                if let v = p.arpAgingSeconds { r.arpAgingSeconds = v }
                return try t.updateRouter(r)
            }
            return t.routerView(try t.routers[id].existing(.router, id))
        })
        for kind in [ResourceKind.bridge, .router] {
            registry.register("\(kind.rawValue).delete", summary: "Delete a \(kind.rawValue) (it must have no ports).", params: ResourceSelector.self, result: EmptyResult.self, handler: mapped { p in
                let id = try CoreMethods.resolve(await network.topology, kind, p.text, field: "id")
                try await network.mutate(touching: [ResourceRef(kind, id)], event: "\(kind.rawValue).deleted") { t throws(TopologyError) in
                    try t.removeDevice(id)
                }
                return EmptyResult()
            })
        }

        // MARK: ports
        registry.register("port.create", summary: "Create a port on a bridge or router (router ports need an address).", params: PortCreateParams.self, result: PortView.self, handler: mapped { p in
            let t0 = await network.topology
            let device = try CoreMethods.resolveDevice(t0, p.device, field: "device")
            let id = await network.newID()
            let mac = p.mac
            let generated = await network.newMAC()
            let t = try await network.mutate(touching: [ResourceRef(.port, id)], event: "port.created") { t throws(TopologyError) in
                try t.addPort(Port(id: id, name: p.name, device: device, adminUp: p.adminUp ?? true, address: p.address,
                                   mac: mac ?? generated, vlan: p.vlan, mssClamp: p.mssClamp))
            }
            return t.portView(try t.ports[id].existing(.port, id))
        })
        registry.register("port.get", summary: "Get a port by ID or name.", params: ResourceSelector.self, result: PortView.self, handler: mapped { p in
            let t = await network.topology
            return t.portView(t.ports[try CoreMethods.resolve(t, .port, p.text, field: "id")]!)
        })
        registry.register("port.list", summary: "List ports.", params: EmptyParams.self, result: ListResult<PortView>.self, handler: mapped { (_: EmptyParams) in
            let t = await network.topology
            return ListResult(items: t.ports.values.sorted { $0.number < $1.number }.map { t.portView($0) })
        })
        registry.register("port.link", summary: "Peer two ports of different devices (both become interior).", params: PortLinkParams.self, result: LinkResult.self, handler: mapped { p in
            let t0 = await network.topology
            let a = try CoreMethods.resolve(t0, .port, p.port, field: "port"), b = try CoreMethods.resolve(t0, .port, p.peer, field: "peer")
            var touched = [ResourceRef(.port, a), ResourceRef(.port, b)]
            for old in [t0.ports[a]?.binding.peer, t0.ports[b]?.binding.peer].compactMap({ $0 }) { touched.append(ResourceRef(.port, old)) }
            let t = try await CoreMethods.inUse(field: "peer") {
                try await network.mutate(touching: touched, event: "port.linked") { t throws(TopologyError) in
                    try t.setBinding(a, .interior(peer: b))
                }
            }
            return LinkResult(port: t.portView(try t.ports[a].existing(.port, a)), peer: t.portView(try t.ports[b].existing(.port, b)))
        })
        registry.register("port.bind", summary: "Bind a port to a host interface (it becomes exterior).", params: PortBindParams.self, result: PortView.self, handler: mapped { p in
            let t0 = await network.topology
            let a = try CoreMethods.resolve(t0, .port, p.port, field: "port")
            var touched = [ResourceRef(.port, a)]
            if let old = t0.ports[a]?.binding.peer { touched.append(ResourceRef(.port, old)) }
            let t = try await CoreMethods.inUse(field: "interface") {
                try await network.mutate(touching: touched, event: "port.bound") { t throws(TopologyError) in
                    try t.setBinding(a, .exterior(interface: p.interface))
                }
            }
            return t.portView(try t.ports[a].existing(.port, a))
        })
        registry.register("port.unbind", summary: "Detach a port from its interface or peer.", params: ResourceSelector.self, result: EmptyResult.self, handler: mapped { p in
            let t0 = await network.topology
            let a = try CoreMethods.resolve(t0, .port, p.text, field: "id")
            var touched = [ResourceRef(.port, a)]
            if let old = t0.ports[a]?.binding.peer { touched.append(ResourceRef(.port, old)) }
            try await network.mutate(touching: touched, event: "port.unbound") { t throws(TopologyError) in
                try t.setBinding(a, .unbound)
            }
            return EmptyResult()
        })
        registry.register("port.update", summary: "Change a port's admin state, access VLAN or MSS clamp.", params: PortUpdateParams.self, result: PortView.self, handler: mapped { p in
            let a = try CoreMethods.resolve(await network.topology, .port, p.id, field: "id")
            let t = try await network.mutate(touching: [ResourceRef(.port, a)], event: "port.updated") { t throws(TopologyError) in
                var port = try t.ports[a].existing(.port, a)
                if let v = p.adminUp { port.adminUp = v }
                if let v = p.vlan { port.vlan = v == 0 ? nil : v }
                if let v = p.mssClamp { port.mssClamp = v == 0 ? nil : v }
                return try t.updatePort(port)
            }
            return t.portView(try t.ports[a].existing(.port, a))
        })
        registry.register("port.delete", summary: "Delete a port (unlinking its peer).", params: ResourceSelector.self, result: EmptyResult.self, handler: mapped { p in
            let t0 = await network.topology
            let a = try CoreMethods.resolve(t0, .port, p.text, field: "id")
            var touched = [ResourceRef(.port, a)]
            if let old = t0.ports[a]?.binding.peer { touched.append(ResourceRef(.port, old)) }
            try await network.mutate(touching: touched, event: "port.deleted") { t throws(TopologyError) in
                try t.removePort(a)
            }
            return EmptyResult()
        })

        // MARK: routes
        registry.register("route.add", summary: "Add a static route to a router.", params: RouteAddParams.self, result: RouteView.self, handler: mapped { p in
            let t0 = await network.topology
            let router = try CoreMethods.resolve(t0, .router, p.router, field: "router")
            let port = try CoreMethods.resolve(t0, .port, p.nextHopPort, field: "nextHopPort")
            let id = await network.newID()
            let t = try await network.mutate(touching: [ResourceRef(.route, id)], event: "route.added") { t throws(TopologyError) in
                try t.addRoute(Route(id: id, router: router, destination: p.destination, nextHopPort: port,
                                     nextHopGateway: p.nextHopGateway, weight: p.weight ?? 100, source: .static))
            }
            return t.routeView(try t.routes[id].existing(.route, id))
        })
        registry.register("route.delete", summary: "Delete a static route.", params: RouteSelectorParams.self, result: EmptyResult.self, handler: mapped { p in
            let t0 = await network.topology
            guard let id = ResourceID(p.id), let r = t0.routes[id] else { throw RPCError.notFound(field: "id", reason: "no route \"\(p.id.prefix(80))\"") }
            if let router = p.router, try CoreMethods.resolve(t0, .router, router, field: "router") != r.router {
                throw RPCError.invalidParams(field: "router", reason: "route \(id) belongs to router \(t0.deviceName(r.router))")
            }
            if r.source == .learned {
                throw RPCError.failedPrecondition(field: "id", reason: "route \(id) was learned by \(r.owner ?? "a plugin"); it leaves when that session withdraws it")
            }
            if let owner = r.owner {
                throw RPCError.failedPrecondition(field: "id", reason: "route \(id) belongs to \(owner); change or delete that instead")
            }
            try await network.mutate(touching: [ResourceRef(.route, id)], event: "route.deleted") { t throws(TopologyError) in
                try t.removeRoute(id)
            }
            return EmptyResult()
        })
        registry.register("route.get", summary: "Get a route by ID.", params: RouteSelectorParams.self, result: RouteView.self, handler: mapped { p in
            let t = await network.topology
            guard let id = ResourceID(p.id), let r = t.routes[id] else { throw RPCError.notFound(field: "id", reason: "no route \"\(p.id.prefix(80))\"") }
            return t.routeView(r)
        })
        registry.register("route.list", summary: "List routes (of one router, or all), each with its source.", params: RouteListParams.self, result: ListResult<RouteView>.self, handler: mapped { p in
            let t = await network.topology
            let routers: [ResourceID] = try p.router.map { [try CoreMethods.resolve(t, .router, $0, field: "router")] }
                ?? t.routers.values.sorted { $0.name < $1.name }.map(\.id)
            return ListResult(items: routers.flatMap { t.routes(of: $0) }.map { t.routeView($0) })
        })

        // MARK: chains and rules
        registry.register("chain.create", summary: "Create a rule chain.", params: ChainCreateParams.self, result: ChainView.self, handler: mapped { p in
            let id = await network.newID()
            let t = try await network.mutate(touching: [ResourceRef(.chain, id)], event: "chain.created") { t throws(TopologyError) in
                try t.addChain(Chain(id: id, name: p.name, defaultAction: p.defaultAction ?? .accept))
            }
            return t.chainView(try t.chains[id].existing(.chain, id))
        })
        registry.register("chain.get", summary: "Get a chain and its rules.", params: ResourceSelector.self, result: ChainView.self, handler: mapped { p in
            let t = await network.topology
            return t.chainView(t.chains[try CoreMethods.resolve(t, .chain, p.text, field: "id")]!)
        })
        registry.register("chain.list", summary: "List chains.", params: EmptyParams.self, result: ListResult<ChainView>.self, handler: mapped { (_: EmptyParams) in
            let t = await network.topology
            return ListResult(items: t.chains.values.sorted { $0.name < $1.name }.map { t.chainView($0) })
        })
        registry.register("chain.delete", summary: "Delete a chain that nothing uses.", params: ResourceSelector.self, result: EmptyResult.self, handler: mapped { p in
            let id = try CoreMethods.resolve(await network.topology, .chain, p.text, field: "id")
            try await network.mutate(touching: [ResourceRef(.chain, id)], event: "chain.deleted") { t throws(TopologyError) in
                try t.removeChain(id)
            }
            return EmptyResult()
        })
        registry.register("rule.add", summary: "Add a rule to a chain (first match decides).", params: RuleAddParams.self, result: ChainView.self, handler: mapped { p in
            let t0 = await network.topology
            let chainID = try CoreMethods.resolve(t0, .chain, p.chain, field: "chain")
            let ruleID = await network.newID()
            if let pos = p.position, pos < 0 || pos > t0.chains[chainID]!.rules.count {
                throw RPCError.invalidParams(field: "position", reason: "must be 0…\(t0.chains[chainID]!.rules.count)")
            }
            if let m = p.match {
                if let a = m.srcPortMin, let b = m.srcPortMax, a > b { throw RPCError.invalidParams(field: "match.srcPortMin", reason: "greater than srcPortMax") }
                if let a = m.dstPortMin, let b = m.dstPortMax, a > b { throw RPCError.invalidParams(field: "match.dstPortMin", reason: "greater than dstPortMax") }
                if let v = m.vlan, v == 0 || v > 4094 { throw RPCError.invalidParams(field: "match.vlan", reason: "must be 1…4094") }
            }
            let t = try await network.mutate(touching: [ResourceRef(.chain, chainID)], event: "rule.added") { t throws(TopologyError) in
                var c = try t.chains[chainID].existing(.chain, chainID)
                let rule = Rule(id: ruleID, match: p.match ?? RuleMatch(), action: p.action, name: p.name)
                let position = p.position ?? c.rules.count
                guard position <= c.rules.count else { throw .invalid(field: "position", reason: "must be 0…\(c.rules.count)") }
                c.rules.insert(rule, at: position)
                return try t.updateChain(c)
            }
            return t.chainView(try t.chains[chainID].existing(.chain, chainID))
        })
        registry.register("rule.delete", summary: "Delete a rule from a chain.", params: RuleDeleteParams.self, result: ChainView.self, handler: mapped { p in
            let t0 = await network.topology
            let chainID = try CoreMethods.resolve(t0, .chain, p.chain, field: "chain")
            guard let rule = t0.chains[chainID]!.rules.first(where: { $0.id.description == p.id.lowercased() || $0.name == p.id }) else {
                throw RPCError.notFound(field: "id", reason: "no rule \"\(p.id.prefix(80))\" in chain \(t0.chains[chainID]!.name)")
            }
            let t = try await network.mutate(touching: [ResourceRef(.chain, chainID)], event: "rule.deleted") { t throws(TopologyError) in
                var c = try t.chains[chainID].existing(.chain, chainID)
                c.rules.removeAll { $0.id == rule.id }
                return try t.updateChain(c)
            }
            return t.chainView(try t.chains[chainID].existing(.chain, chainID))
        })
        registry.register("chain.attach", summary: "Attach a chain to a port (inbound/outbound) or router (preRouting/postRouting); no chain detaches.", params: ChainAttachParams.self, result: ChainView?.self, handler: mapped { p in
            let t0 = await network.topology
            let chainID = try p.chain.map { try CoreMethods.resolve(t0, .chain, $0, field: "chain") }
            switch (p.port, p.router, p.hook) {
            case (let port?, nil, .inbound), (let port?, nil, .outbound):
                let id = try CoreMethods.resolve(t0, .port, port, field: "port")
                let t = try await network.mutate(touching: [ResourceRef(.port, id)], event: "chain.attached") { t throws(TopologyError) in
                    var x = try t.ports[id].existing(.port, id)
                    if p.hook == .inbound { x.inboundChain = chainID } else { x.outboundChain = chainID }
                    return try t.updatePort(x)
                }
                return try chainID.map { id throws(TopologyError) in t.chainView(try t.chains[id].existing(.chain, id)) }
            case (nil, let router?, .preRouting), (nil, let router?, .postRouting):
                let id = try CoreMethods.resolve(t0, .router, router, field: "router")
                let t = try await network.mutate(touching: [ResourceRef(.router, id)], event: "chain.attached") { t throws(TopologyError) in
                    var x = try t.routers[id].existing(.router, id)
                    if p.hook == .preRouting { x.preRoutingChain = chainID } else { x.postRoutingChain = chainID }
                    return try t.updateRouter(x)
                }
                return try chainID.map { id throws(TopologyError) in t.chainView(try t.chains[id].existing(.chain, id)) }
            default:
                throw RPCError.invalidParams(field: "hook", reason: "give a port with inbound/outbound, or a router with preRouting/postRouting")
            }
        })

        // MARK: whole topology, tracing, flows
        registry.register("topology.get", summary: "Everything: bridges, routers, ports, routes, chains.", params: EmptyParams.self, result: TopologyDocument.self, handler: mapped { (_: EmptyParams) in
            let t = await network.topology
            return TopologyDocument(
                version: t.version,
                bridges: t.bridges.values.sorted { $0.name < $1.name }.map { t.bridgeView($0) },
                routers: t.routers.values.sorted { $0.name < $1.name }.map { t.routerView($0) },
                ports: t.ports.values.sorted { $0.number < $1.number }.map { t.portView($0) },
                routes: t.routers.values.sorted { $0.name < $1.name }.flatMap { t.routes(of: $0.id) }.map { t.routeView($0) },
                chains: t.chains.values.sorted { $0.name < $1.name }.map { t.chainView($0) })
        })
        registry.register("packet.trace", summary: "Walk a described packet through the topology and report each device's decision and the flow that would be installed.", params: TraceParams.self, result: TraceResult.self, handler: mapped { p in
            let t = await network.topology
            let port = try CoreMethods.resolve(t, .port, p.port, field: "port")
            let learned = await datapath?.learnedState() ?? LearnedState()
            return try PacketTracer.trace(topology: t, learned: learned, port: try t.ports[port].existing(.port, port), packet: p.packet, now: now())
        })
        registry.register("flow.list", summary: "Installed flows with their match, actions and counters.", params: LimitParams.self, result: ListResult<FlowView>.self, handler: mapped { p in
            guard let dp = datapath else { throw RPCError.unavailable(reason: "the datapath is disabled in this agent's configuration") }
            let limit = p.limit ?? 1000
            guard limit > 0 else { throw RPCError.invalidParams(field: "limit", reason: "must be positive") }
            let t = await network.topology
            let n = now()
            return ListResult(items: await dp.flows(limit: limit).map { FlowView($0, topology: t, now: n) })
        })
        registry.register("flow.stats", summary: "Flow table and datapath counters, per port too.", params: EmptyParams.self, result: FlowStatsView.self, handler: mapped { (_: EmptyParams) in
            guard let dp = datapath else { throw RPCError.unavailable(reason: "the datapath is disabled in this agent's configuration") }
            return FlowStatsView(await dp.currentStatistics())
        })
    }
}

extension Optional {
    /// The resource looked up after an `await`: a concurrent mutation may have deleted it
    /// meanwhile, which is a clean not-found error rather than a crash.
    func existing(_ kind: ResourceKind, _ id: ResourceID) throws(TopologyError) -> Wrapped {
        guard let v = self else { throw .notFound(kind: kind, field: "id", value: "\(id) (deleted meanwhile)") }
        return v
    }
}
