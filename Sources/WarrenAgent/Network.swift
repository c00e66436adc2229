// Network: the agent's authoritative virtual topology, kept in step with the store
// and the datapath.
//
// Every mutation runs the same way (`mutate`): apply the change to the working copy of
// the topology (WarrenCore validates and returns the flow tags it invalidates); write the
// touched resources to the store in one transaction — shared by every mutation that
// arrived while the previous transaction ran (group commit); only then make the batch's
// topology current, hand it and the tags to the datapath, wait until the datapath has
// applied it, publish the events and acknowledge. Readers see only committed state. If validation fails, nothing changed; if
// the store write fails, the whole batch fails and the working copy is rebuilt from the
// committed topology — that is what lets a mutation be acknowledged only after it is
// committed and never half-applied.
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
    /// Returns once everything handed to `apply` so far is in effect (for the datapath:
    /// flows invalidated, newly bound ports open). A mutation is acknowledged after this.
    func settle() async
}

extension TopologySink {
    public func settle() async {}
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

    /// A mutation applied to the working topology and waiting for its batch's commit.
    private struct Pending {
        let refs: [ResourceRef]
        let event: String?
        let change: Change
        var tags: [FlowTag]
        var version: UInt64
        let continuation: CheckedContinuation<Topology, any Error>
    }
    public typealias Change = @Sendable (inout Topology) throws(TopologyError) -> [FlowTag]

    /// The committed topology plus every change of `inflight` and `queued` (nil when equal to
    /// `topology`). Changes apply to it in place, so a burst of mutations copies the topology
    /// once per batch, not once per mutation.
    private var working: Topology?
    /// The batch whose store transaction is running now.
    private var inflight: [Pending] = []
    /// Mutations applied to `working` after `inflight` was cut; they form the next batch.
    private var queued: [Pending] = []
    private var committing = false
    /// Store transactions committed and mutations acknowledged by them (their ratio is the
    /// mean group-commit batch size); exported as Prometheus counters.
    public private(set) var commits: UInt64 = 0
    public private(set) var committedMutations: UInt64 = 0

    /// Applies `change` to the working topology (WarrenCore validates; a refused change
    /// changes nothing), then waits until the resources in `touching` (their new state, or
    /// their deletion) are committed to the store, together with every other mutation that
    /// arrived meanwhile (group commit: one transaction and one fsync per batch). Returns the
    /// topology as committed — which may already hold later mutations of the same batch, so
    /// callers look their resource up again and must not assume it still exists.
    /// If the store write fails, every mutation of that batch fails and nothing of it stays.
    @discardableResult
    public func mutate(touching refs: [ResourceRef], event: String? = nil,
                       _ change: @escaping Change) async throws -> Topology {
        var w = working ?? topology
        working = nil  // `w` is now the only reference: the change mutates it in place
        let tags: [FlowTag]
        do {
            tags = try change(&w)
        } catch {
            working = rebuild()
            throw error
        }
        let version = w.version
        working = w
        return try await withCheckedThrowingContinuation { continuation in
            queued.append(Pending(refs: refs, event: event, change: change, tags: tags, version: version, continuation: continuation))
            if !committing {
                committing = true
                Task { await self.commitLoop() }
            }
        }
    }

    /// Returns once no mutation is waiting for its commit (before the store is closed at
    /// shutdown, so an acknowledged-or-not mutation is never cut half-way by the close).
    public func quiesce() async {
        while committing || !queued.isEmpty { try? await Task.sleep(nanoseconds: 1_000_000) }
    }

    /// The committed topology with the pending changes replayed (after a change failed
    /// half-way on the working copy, or a batch's commit failed). A change that no longer
    /// applies fails its caller.
    private func rebuild() -> Topology? {
        guard !inflight.isEmpty || !queued.isEmpty else { return nil }
        var t = topology
        for i in inflight.indices {
            do { inflight[i].tags = try inflight[i].change(&t); inflight[i].version = t.version }
            catch { logger.error("a committed-pending change no longer applies on replay", metadata: ["error": "\(error)"]) }
        }
        var kept: [Pending] = []
        for var p in queued {
            do { p.tags = try p.change(&t); p.version = t.version; kept.append(p) }
            catch { p.continuation.resume(throwing: error) }
        }
        queued = kept
        return t
    }

    /// Commits batches until none is queued: cuts `queued` into `inflight`, writes the final
    /// state of every touched resource in one transaction (off the actor, so new mutations
    /// queue up meanwhile), then makes it current, hands it to the datapath, publishes the
    /// events in order and acknowledges each mutation.
    private func commitLoop() async {
        while !queued.isEmpty {
            inflight = queued
            queued = []
            let snapshot = working ?? topology
            let result: Result<Void, any Error>
            do {
                var seen = Set<ResourceRef>(), refs: [ResourceRef] = []
                for p in inflight { for r in p.refs where seen.insert(r).inserted { refs.append(r) } }
                var writes = try Network.writes(for: refs, in: snapshot)
                if snapshot.version != topology.version {
                    writes.append(.put(kind: "meta", id: "topology", name: nil, body: try Store.encode(["version": snapshot.version])))
                }
                let store = self.store
                result = await Task.detached { Result { try store.write(writes) } }.value
            } catch {
                result = .failure(error)
            }
            let batch = inflight
            inflight = []
            switch result {
            case .success:
                topology = snapshot
                if queued.isEmpty { working = nil }
                commits += 1
                committedMutations += UInt64(batch.count)
                sink?.apply(topology: snapshot, invalidate: batch.flatMap(\.tags))
                // Acknowledge only once the datapath forwards by it: a port bound by this
                // batch is open, no stale flow is left (a caller may send at once).
                await sink?.settle()
                for p in batch {
                    if let event = p.event {
                        events.publish(topic: "topology", data: ["change": .string(event), "version": .int(Int64(p.version))])
                    }
                    p.continuation.resume(returning: snapshot)
                }
            case .failure(let error):
                for p in batch { p.continuation.resume(throwing: error) }
                working = rebuild()
            }
        }
        committing = false
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
        // Deletions first: a name freed and taken again within one batch must not collide
        // with the (kind, name) unique index.
        return out.filter { if case .delete = $0 { true } else { false } } + out.filter { if case .delete = $0 { false } else { true } }
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
