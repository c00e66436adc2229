// Network: the agent's authoritative virtual topology, kept in step with the store
// and the datapath.
//
// Every mutation runs the same way (`mutate`): apply the change to a copy of the
// topology (WarrenCore validates and returns the flow tags it invalidates); write the
// touched resources to the store in one transaction; only then swap the copy in, hand
// the new topology and the tags to the datapath, and publish an event. If validation
// or the store write fails, nothing changed anywhere — that is what lets a mutation be
// acknowledged only after it is committed and never half-applied.
//
// Learned routes (from plugins) and connected routes (from port addresses) are not
// stored: plugins re-inject learned routes when they start, connected routes follow
// their ports.
// Threading: an actor; every mutation is serialized here.

import Foundation
import Logging
import WarrenCore
import WarrenRPC

/// A resource named by kind and ID, for persistence.
public struct ResourceRef: Hashable, Sendable {
    public var kind: ResourceKind
    public var id: ResourceID
    public init(_ kind: ResourceKind, _ id: ResourceID) { self.kind = kind; self.id = id }
}

/// Where the network sends its configuration (the datapath, or nothing in tests).
public protocol TopologySink: Sendable {
    func apply(topology: Topology, invalidate tags: [FlowTag])
}

public actor Network {
    public private(set) var topology: Topology
    let store: Store
    let sink: (any TopologySink)?
    let events: EventBus
    let logger: Logger
    private var generator = SystemRandomNumberGenerator()

    /// Loads the topology from the store. Throws if the stored records are inconsistent
    /// (the agent then refuses to start rather than guess).
    public init(store: Store, sink: (any TopologySink)?, events: EventBus, logger: Logger) throws {
        self.store = store
        self.sink = sink
        self.events = events
        self.logger = logger
        topology = try Network.load(from: store)
        sink?.apply(topology: topology, invalidate: [])
    }

    public func newID() -> ResourceID { ResourceID.random(using: &generator) }

    public func newMAC() -> MACAddress { .locallyAdministered(seed: generator.next()) }

    /// Applies `change` to a copy of the topology, persists the resources in `touching`
    /// (their new state, or their deletion), then makes the copy current.
    @discardableResult
    public func mutate(touching refs: [ResourceRef], event: String? = nil,
                       _ change: (inout Topology) throws(TopologyError) -> [FlowTag]) throws -> Topology {
        var copy = topology
        let tags = try change(&copy)
        var writes = try Network.writes(for: refs, in: copy)
        if copy.version != topology.version {
            writes.append(.put(kind: "meta", id: "topology", name: nil, body: try Store.encode(["version": copy.version])))
        }
        try store.write(writes)
        topology = copy
        sink?.apply(topology: copy, invalidate: tags)
        if let event {
            events.publish(topic: "topology", data: ["change": .string(event), "version": .int(Int64(copy.version))])
        }
        return copy
    }

    /// The store writes that make the stored state of `refs` match `topology`.
    static func writes(for refs: [ResourceRef], in topology: Topology) throws -> [StoreWrite] {
        var out: [StoreWrite] = []
        for ref in Set(refs) {
            let kind = ref.kind.rawValue, id = ref.id.description
            switch ref.kind {
            case .bridge:
                if let b = topology.bridges[ref.id] { out.append(.put(kind: kind, id: id, name: b.name, body: try Store.encode(b))) }
                else { out.append(.delete(kind: kind, id: id)) }
            case .router:
                if let r = topology.routers[ref.id] { out.append(.put(kind: kind, id: id, name: r.name, body: try Store.encode(r))) }
                else { out.append(.delete(kind: kind, id: id)) }
            case .port:
                if let p = topology.ports[ref.id] { out.append(.put(kind: kind, id: id, name: p.name, body: try Store.encode(p))) }
                else { out.append(.delete(kind: kind, id: id)) }
            case .route:
                if let r = topology.routes[ref.id] {
                    // Only static routes are configuration; learned and connected ones are derived.
                    if r.source == .static { out.append(.put(kind: kind, id: id, name: nil, body: try Store.encode(r))) }
                } else { out.append(.delete(kind: kind, id: id)) }
            case .chain:
                if let c = topology.chains[ref.id] { out.append(.put(kind: kind, id: id, name: c.name, body: try Store.encode(c))) }
                else { out.append(.delete(kind: kind, id: id)) }
            case .rule:
                break  // rules live inside their chain's record
            }
        }
        return out
    }

    /// Rebuilds the topology from stored records: devices and chains, then ports without
    /// bindings, then bindings (each link once), then static routes.
    static func load(from store: Store) throws -> Topology {
        var t = Topology()
        func fail(_ what: String, _ e: TopologyError) -> StoreError {
            .decoding(kind: what, id: "", reason: "inconsistent with the rest of the store: \(e)")
        }
        do {
            for b in try store.all("bridge", as: Bridge.self) { _ = try t.addBridge(b) }
            for c in try store.all("chain", as: Chain.self) { _ = try t.addChain(c) }
            for r in try store.all("router", as: Router.self) { _ = try t.addRouter(r) }
            let ports = try store.all("port", as: Port.self)
            for var p in ports {
                p.binding = .unbound
                _ = try t.addPort(p)
            }
            for p in ports.sorted(by: { $0.number < $1.number }) {
                switch p.binding {
                case .unbound: break
                case .exterior: _ = try t.setBinding(p.id, p.binding)
                case .interior(let peer):
                    if t.ports[p.id]?.binding.peer != peer { _ = try t.setBinding(p.id, p.binding) }
                }
            }
            for r in try store.all("route", as: Route.self) { _ = try t.addRoute(r) }
            if let meta = try store.all("meta", as: [String: UInt64].self).first, let v = meta["version"] {
                t.restore(version: v)
            }
        } catch let e as TopologyError {
            throw fail("topology", e)
        }
        return t
    }
}

/// Fans events out to subscribers (the RPC server's push notifications, tests).
public final class EventBus: @unchecked Sendable {
    public typealias Handler = @Sendable (_ topic: String, _ data: JSONValue) -> Void
    private let lock = NSLock()
    private var handlers: [Handler] = []

    public init() {}

    public func subscribe(_ handler: @escaping Handler) {
        lock.withLock { handlers.append(handler) }
    }

    /// Publishes `data` on `topic` (dotted: "topology", "vpn.dynamic.state", ...).
    public func publish(topic: String, data: JSONValue) {
        let hs = lock.withLock { handlers }
        for h in hs { h(topic, data) }
    }
}
