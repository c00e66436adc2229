// StaticVPNPlugin ("vpn.static"): CloudStack-style policy-based site-to-site tunnels.
//
// One IPsec instance per connection. Its CHILD_SAs carry exactly local × remote
// subnets: one CHILD_SA per (local, remote) pair by default (always with IKEv1 — the
// known failure of a single multi-subnet IKEv1 policy is that only the first subnet
// passes traffic), or one IKEv2 CHILD_SA with every selector when `splitconnections`
// is false. Each remote subnet becomes a static route in the tenant router towards the
// instance (owned by the connection: it goes when the connection does). Connections
// are independent instances, so updating one never touches another's SAs.
// Threading: an actor.

import Foundation
import IPsec
import ServiceLifecycle
import WarrenAgent
import WarrenCore
import WarrenRPC

public actor StaticVPNPlugin: WarrenPlugin {
    public static let name = "vpn.static"
    public static let summary = "CloudStack-style policy-based site-to-site IPsec tunnels."

    struct Record: Codable, Sendable {
        var id: ResourceID
        var spec: StaticVpnSpec
        var router: ResourceID
        var plan: InstancePlan
        var createdAt: String
    }

    struct Limits: Codable, Sendable {
        var maxRemoteSubnets: Int?
        var maxConnectionsPerRouter: Int?
    }

    let context: PluginContext
    let settings: IPsecSettings
    let limits: Limits
    private var records: [ResourceID: Record] = [:]
    private var instances: [ResourceID: IPsecInstance] = [:]
    private var errors: [ResourceID: String] = [:]

    public init(context: PluginContext) async throws {
        self.context = context
        settings = try IPsecSettings.from(context)
        limits = (try? JSONValueDecoder().decode(Limits.self, from: context.configuration)) ?? Limits()
        for r in try context.store.all("vpn", as: Record.self) {
            records[r.id] = r
            try await PublicAddressRegistry.shared.claim(r.plan.crypto.publicIp, owner: "\(Self.name) \(r.spec.name)", field: "publicIp")
        }
    }

    var maxRemoteSubnets: Int { limits.maxRemoteSubnets ?? 10 }
    var maxConnectionsPerRouter: Int { limits.maxConnectionsPerRouter ?? 4 }

    public func status() async -> String {
        var up = 0
        for i in instances.values where await i.currentStatus().isUp { up += 1 }
        return "\(records.count) connection(s), \(up) up"
    }

    public func run() async throws {
        for r in records.values.sorted(by: { $0.spec.name < $1.spec.name }) {
            do { try await start(r) } catch {
                errors[r.id] = "\(error)"
                context.logger.error("connection \(r.spec.name) could not be started: \(error)")
            }
        }
        try? await gracefulShutdown()
        for i in instances.values { await i.stop(remove: false) }
    }

    // MARK: runtime

    private func start(_ r: Record) async throws {
        let id = r.id
        let instance = IPsecInstance(plan: r.plan, settings: settings, context: context) { [weak self] s in
            await self?.changed(id, s)
        }
        instances[r.id] = instance
        try await instance.start()
        try await ensureRoutes(r)
    }

    /// The tenant router's static routes to the remote subnets, through the instance.
    private func ensureRoutes(_ r: Record) async throws {
        let network = context.network
        guard let port = await instances[r.id]?.routerPort() else { return }
        let t = await network.topology
        let owner = "\(Self.name) \(r.spec.name)"
        let existing = t.routes.values.filter { $0.router == r.router && $0.owner == owner }
        let stale = existing.filter { !r.spec.remoteSubnets.contains($0.destination) || $0.nextHopPort != port }.map(\.id)
        let missing = r.spec.remoteSubnets.filter { s in !existing.contains { $0.destination == s && $0.nextHopPort == port } }
        guard !stale.isEmpty || !missing.isEmpty else { return }
        var ids: [IPv4Prefix: ResourceID] = [:]
        for s in missing { ids[s] = await network.newID() }
        let gateway = r.plan.instanceAddress
        let routes = ids
        try await network.mutate(touching: (stale + Array(ids.values)).map { ResourceRef(.route, $0) }, event: "route.added") { t throws(TopologyError) in
            // Decided again on the topology this change applies to: another ensureRoutes of
            // the same connection may have been committed since `existing` was read.
            var tags: [FlowTag] = []
            for rid in stale where t.routes[rid] != nil { tags += try t.removeRoute(rid) }
            for (s, rid) in routes where !t.routes.values.contains(where: {
                $0.router == r.router && $0.owner == owner && $0.destination == s && $0.nextHopPort == port
            }) {
                tags += try t.addRoute(Route(id: rid, router: r.router, destination: s, nextHopPort: port, nextHopGateway: gateway,
                                             weight: 100, source: .static, owner: owner))
            }
            return tags
        }
    }

    private func changed(_ id: ResourceID, _ s: TunnelStatus) async {
        guard let r = records[id] else { return }
        context.events.publish(["vpn": .string(r.spec.name), "id": .string(id.description), "ikeState": .string(s.ikeState),
                                "childState": .string(s.childState),
                                "children": .array(s.children.map { ["name": .string($0.name), "state": .string($0.state)] }),
                                "reason": .string(s.lastChangeReason)], subtopic: "state")
    }

    // MARK: planning

    /// CHILD_SAs for local × remote.
    static func children(_ spec: StaticVpnSpec, crypto: TunnelCrypto) -> [TunnelChild] {
        let split = (spec.ipsecPairing.splitconnections ?? true) || crypto.ikeVersion != 2
        if !split {
            return [TunnelChild(name: "all", localTS: spec.localSubnets.map(\.description), remoteTS: spec.remoteSubnets.map(\.description))]
        }
        var out: [TunnelChild] = []
        for (i, l) in spec.localSubnets.enumerated() {
            for (j, r) in spec.remoteSubnets.enumerated() {
                out.append(TunnelChild(name: "l\(i)r\(j)", localTS: [l.description], remoteTS: [r.description]))
            }
        }
        return out
    }

    /// Validates `spec` against the topology and the other connections; returns the
    /// router and the negotiation parameters.
    private func check(_ spec: StaticVpnSpec, excluding: ResourceID?) async throws -> (ResourceID, TunnelCrypto) {
        guard !spec.name.isEmpty, spec.name.count <= 64, spec.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw RPCError.invalidParams(field: "name", reason: "1–64 characters of letters, digits, '-', '_', '.'")
        }
        let crypto = try spec.ipsecPairing.crypto(field: "ipsecPairing")
        let t = await context.network.topology
        guard let router = t.resolve(.router, spec.virtualRouter) else {
            throw RPCError.notFound(field: "virtualRouter", reason: "no router \"\(spec.virtualRouter.prefix(80))\"")
        }
        if records.values.contains(where: { $0.spec.name == spec.name && $0.id != excluding }) {
            throw RPCError.conflict(field: "name", reason: "a StaticVPN named \(spec.name) already exists")
        }
        guard !spec.localSubnets.isEmpty else { throw RPCError.invalidParams(field: "localSubnets", reason: "at least one local subnet is needed") }
        guard !spec.remoteSubnets.isEmpty else { throw RPCError.invalidParams(field: "remoteSubnets", reason: "at least one remote subnet is needed") }
        guard spec.remoteSubnets.count <= maxRemoteSubnets else {
            throw RPCError.invalidParams(field: "remoteSubnets", reason: "at most \(maxRemoteSubnets) remote subnets per connection")
        }
        for (name, list) in [("localSubnets", spec.localSubnets), ("remoteSubnets", spec.remoteSubnets)] {
            for (i, s) in list.enumerated() {
                if s.length == 0 { throw RPCError.invalidParams(field: "\(name)[\(i)]", reason: "0.0.0.0/0 is not a subnet") }
                for (j, o) in list.enumerated() where j < i && o.overlaps(s) {
                    throw RPCError.invalidParams(field: "\(name)[\(i)]", reason: "\(s) overlaps \(name)[\(j)] \(o)")
                }
            }
        }
        let own = t.routes(of: router).filter { $0.source == .connected }.map(\.destination)
        for (i, s) in spec.remoteSubnets.enumerated() {
            if let o = own.first(where: { $0.overlaps(s) }) {
                throw RPCError.invalidParams(field: "remoteSubnets[\(i)]", reason: "\(s) overlaps the router's own subnet \(o)")
            }
            for other in records.values where other.id != excluding && other.router == router {
                if let o = other.spec.remoteSubnets.first(where: { $0.overlaps(s) }) {
                    throw RPCError.conflict(field: "remoteSubnets[\(i)]", reason: "\(s) overlaps \(o) of connection \(other.spec.name) on the same router")
                }
            }
            if spec.localSubnets.contains(where: { $0.overlaps(s) }) {
                throw RPCError.invalidParams(field: "remoteSubnets[\(i)]", reason: "\(s) overlaps a local subnet")
            }
        }
        let onRouter = records.values.filter { $0.router == router && $0.id != excluding }.count
        guard onRouter < maxConnectionsPerRouter else {
            throw RPCError.failedPrecondition(field: "virtualRouter", reason: "the router already has \(onRouter) connections (at most \(maxConnectionsPerRouter))")
        }
        try UplinkBridge.check(crypto.publicIp, settings: settings, field: "ipsecPairing.publicIp")
        for other in records.values where other.id != excluding {
            if other.plan.crypto.publicIp == crypto.publicIp {
                throw RPCError.conflict(field: "ipsecPairing.publicIp", reason: "public IP \(crypto.publicIp) is already used by StaticVPN \(other.spec.name)")
            }
            if other.plan.crypto.peerIp == crypto.peerIp && other.router == router {
                throw RPCError.conflict(field: "ipsecPairing.peerIp", reason: "router \(spec.virtualRouter) already has a connection to \(crypto.peerIp) (\(other.spec.name))")
            }
        }
        return (router, crypto)
    }

    // MARK: methods

    public nonisolated func registerMethods(_ methods: PluginMethods) {
        methods.register("create", summary: "Create a policy-based connection (local × remote subnets) on a tenant router.",
                         params: StaticVpnSpec.self, result: StaticVpnView.self) { p, _ in try await self.create(p) }
        methods.register("get", summary: "A connection and its CHILD_SAs.", params: StaticSelector.self, result: StaticVpnView.self) { p, _ in
            await self.view(try await self.find(p.id))
        }
        methods.register("list", summary: "Every StaticVPN connection.", params: EmptyParams.self, result: StaticVpnList.self) { _, _ in
            await self.list()
        }
        methods.register("status", summary: "Per-CHILD_SA state and traffic (one connection or all).",
                         params: OptionalStaticSelector.self, result: StaticVpnList.self) { p, _ in
            if let id = p.id { return StaticVpnList(items: [await self.view(try await self.find(id))]) }
            return await self.list()
        }
        methods.register("update", summary: "Change a connection; only its own SAs are renegotiated.",
                         params: StaticVpnUpdate.self, result: StaticVpnView.self) { p, _ in try await self.update(p) }
        methods.register("delete", summary: "Delete a connection: namespace, charon, ports and routes go.",
                         params: StaticSelector.self, result: EmptyResult.self) { p, _ in try await self.delete(p.id) }
        methods.register("peerConfig", summary: "What the peer (CloudStack VPC router, firewall) must configure.",
                         params: StaticSelector.self, result: StaticPeerConfig.self) { p, _ in
            StaticPeerConfig(try await self.find(p.id).spec)
        }
    }

    func find(_ text: String) throws -> Record {
        if let id = ResourceID(text), let r = records[id] { return r }
        if let r = records.values.first(where: { $0.spec.name == text }) { return r }
        throw RPCError.notFound(field: "id", reason: "no StaticVPN \"\(text.prefix(80))\"")
    }

    func list() async -> StaticVpnList {
        var out: [StaticVpnView] = []
        for r in records.values.sorted(by: { $0.spec.name < $1.spec.name }) { out.append(await view(r)) }
        return StaticVpnList(items: out)
    }

    func view(_ r: Record) async -> StaticVpnView {
        let s = await instances[r.id]?.currentStatus()
        let children = r.plan.children.map { c in
            let cs = s?.children.first { $0.name == c.name }
            return StaticChildView(name: c.name, localSubnet: c.localTS.joined(separator: ","), remoteSubnet: c.remoteTS.joined(separator: ","),
                                   state: cs?.state ?? "DOWN", bytesIn: cs?.bytesIn ?? 0, bytesOut: cs?.bytesOut ?? 0,
                                   packetsIn: cs?.packetsIn ?? 0, packetsOut: cs?.packetsOut ?? 0)
        }
        let installed = children.filter { $0.state == "INSTALLED" }.count
        let state: String
        if let e = errors[r.id] { state = "error: \(e)" }
        else if instances[r.id] == nil { state = "starting" }
        else if installed == children.count && installed > 0 { state = "up" }
        else if installed > 0 { state = "partial" }
        else if s?.ikeState == "CONNECTING" || s?.ikeState == "ESTABLISHED" { state = "connecting" }
        else { state = "down" }
        let routerName = await context.network.topology.routers[r.router]?.name ?? r.router.description
        return StaticVpnView(id: r.id, name: r.spec.name, virtualRouter: routerName, virtualRouterId: r.router, state: state,
                             ipsecPairing: r.spec.ipsecPairing.view, localSubnets: r.spec.localSubnets, remoteSubnets: r.spec.remoteSubnets,
                             ikeState: s?.ikeState ?? "DOWN", children: children, charon: s?.charon ?? "not started",
                             lastChange: s?.lastChange ?? r.createdAt, lastChangeReason: s?.lastChangeReason ?? "created")
    }

    func create(_ spec: StaticVpnSpec) async throws -> StaticVpnView {
        let (router, crypto) = try await check(spec, excluding: nil)
        let owner = "\(Self.name) \(spec.name)"
        try await PublicAddressRegistry.shared.claim(crypto.publicIp, owner: owner, field: "ipsecPairing.publicIp")
        let t = await context.network.topology
        let used = t.ports.values.filter { $0.device == router }.compactMap { $0.address?.network }
        let link: IPv4Prefix
        do { link = try LinkAllocator.allocate(pool: settings.pool, avoiding: used) } catch {
            await PublicAddressRegistry.shared.release(owner: owner)
            throw error
        }
        let plan = InstancePlan(id: InstancePlan.newID(), owner: owner, router: router, crypto: crypto, link: link, tunnelAddress: nil,
                                localSubnets: spec.localSubnets, remoteSubnets: spec.remoteSubnets,
                                children: Self.children(spec, crypto: crypto))
        let r = Record(id: await context.network.newID(), spec: spec, router: router, plan: plan, createdAt: IPsecInstance.now())
        try context.store.put("vpn", id: r.id.description, name: spec.name, r)
        records[r.id] = r
        do {
            try await start(r)
        } catch {
            await instances[r.id]?.stop(remove: true)
            instances[r.id] = nil
            records[r.id] = nil
            try? context.store.delete("vpn", id: r.id.description)
            await PublicAddressRegistry.shared.release(owner: owner)
            throw RPCError.unavailable(reason: "building the connection failed: \(error)")
        }
        context.events.publish(["vpn": .string(spec.name), "id": .string(r.id.description), "change": "created"], subtopic: "config")
        return await view(r)
    }

    func update(_ u: StaticVpnUpdate) async throws -> StaticVpnView {
        var r = try find(u.id)
        var spec = r.spec
        if let p = u.ipsecPairing { spec.ipsecPairing = p }
        if let s = u.localSubnets { spec.localSubnets = s }
        if let s = u.remoteSubnets { spec.remoteSubnets = s }
        let (_, crypto) = try await check(spec, excluding: r.id)
        guard crypto.publicIp == r.plan.crypto.publicIp else {
            throw RPCError.invalidParams(field: "ipsecPairing.publicIp", reason: "the public IP cannot change; delete and re-create the connection")
        }
        guard crypto.peerIp == r.plan.crypto.peerIp else {
            throw RPCError.invalidParams(field: "ipsecPairing.peerIp", reason: "the peer IP cannot change; delete and re-create the connection")
        }
        var plan = r.plan
        plan.crypto = crypto
        plan.localSubnets = spec.localSubnets
        plan.remoteSubnets = spec.remoteSubnets
        plan.children = Self.children(spec, crypto: crypto)
        r.spec = spec
        r.plan = plan
        try context.store.put("vpn", id: r.id.description, name: spec.name, r)
        records[r.id] = r
        try await instances[r.id]?.apply(plan)
        try await ensureRoutes(r)
        context.events.publish(["vpn": .string(spec.name), "id": .string(r.id.description), "change": "updated"], subtopic: "config")
        return await view(r)
    }

    func delete(_ text: String) async throws -> EmptyResult {
        let r = try find(text)
        await instances[r.id]?.stop(remove: true)
        instances[r.id] = nil
        errors[r.id] = nil
        try context.store.delete("vpn", id: r.id.description)
        records[r.id] = nil
        await PublicAddressRegistry.shared.release(owner: "\(Self.name) \(r.spec.name)")
        context.events.publish(["vpn": .string(r.spec.name), "id": .string(r.id.description), "change": "deleted"], subtopic: "config")
        return EmptyResult()
    }
}

/// What the policy-based peer must configure (CloudStack's customer-gateway view from the other side).
public struct StaticPeerConfig: Codable, Sendable {
    public var gateway: IPv4Address
    public var peerGateway: IPv4Address
    public var cidrlist: [IPv4Prefix]
    public var peerSubnets: [IPv4Prefix]
    public var ikepolicy: String
    public var esppolicy: String
    public var ikelifetime: Int
    public var esplifetime: Int
    public var ikeversion: String
    public var dpd: Bool
    public var text: String

    init(_ spec: StaticVpnSpec) {
        let v = spec.ipsecPairing.view
        gateway = v.publicIp
        peerGateway = v.peerIp
        cidrlist = spec.localSubnets
        peerSubnets = spec.remoteSubnets
        // Without CloudStack policies, tell the peer what the AWS-style fields make us propose.
        let proposed = try? spec.ipsecPairing.crypto(field: "ipsecPairing")
        ikepolicy = v.ikepolicy ?? proposed.map { StaticPeerConfig.policy($0.ikeProposal) } ?? "aes128-sha1;modp1024"
        esppolicy = v.esppolicy ?? proposed.map { StaticPeerConfig.policy($0.espProposal) } ?? "aes128-sha1;modp1024"
        ikelifetime = v.ikelifetime
        esplifetime = v.esplifetime
        ikeversion = v.ikeversion
        dpd = v.dpd
        text = """
        Warren StaticVPN "\(spec.name)" — for the peer (e.g. a CloudStack VPC customer gateway)
        Customer gateway (Warren)  : \(v.publicIp)
        Peer gateway (yours)       : \(v.peerIp)
        CIDR list (Warren side)    : \(spec.localSubnets.map(\.description).joined(separator: ","))
        Your subnets               : \(spec.remoteSubnets.map(\.description).joined(separator: ","))
        IKE policy                 : \(ikepolicy)   lifetime \(v.ikelifetime) s
        ESP policy                 : \(esppolicy)   lifetime \(v.esplifetime) s
        IKE version                : \(v.ikeversion)
        Dead peer detection        : \(v.dpd ? "on" : "off")
        Split connections          : \(v.splitconnections ? "yes (one SA per subnet pair)" : "no")
        Pre-shared key             : the key you configured (not shown)
        """
    }

    /// A strongSwan proposal in CloudStack's policy syntax: "aes256-sha256-modp2048" →
    /// "aes256-sha256;modp2048" (no DH group, no ";").
    static func policy(_ proposal: String) -> String {
        var parts = proposal.split(separator: "-").map(String.init)
        guard parts.count >= 2, let last = parts.last, IpsecPairing.dhNames.values.contains(last) else { return proposal }
        parts.removeLast()
        return parts.joined(separator: "-") + ";" + last
    }
}
