// DynamicVPNPlugin ("vpn.dynamic"): an AWS-compatible redundant VPN for a tenant router.
//
// Each VPN is two IPsec instances (tunnels A and B, Plugins/IPsec), each with a BIRD
// (BGPSpeaker). Routes BIRD learns over a tunnel are injected into the tenant router as
// `learned` routes through that instance's port — only while the tunnel's CHILD_SA is
// installed, so a tunnel going down withdraws its routes at once and its flows are
// invalidated (traffic moves to the other tunnel). A's routes weigh 100, B's 200: with
// both up, traffic leaves through A, and B announces a longer AS path so it comes back
// through A too.
//
// Desired state (the VPN records, with keys) lives in the plugin's store namespace;
// runtime state (instances, speakers, injected routes) is rebuilt from it at start —
// adopting running charons and BIRDs, so an agent restart renegotiates nothing.
// Threading: an actor; tunnels report changes back into it.

import Foundation
import IPsec
import Logging
import ServiceLifecycle
import WarrenAgent
import WarrenCore
import WarrenLinux
import WarrenRPC

public actor DynamicVPNPlugin: WarrenPlugin {
    public static let name = "vpn.dynamic"
    public static let summary = "Redundant AWS-compatible IPsec VPNs with BGP-learned routes."

    struct Record: Codable, Sendable {
        var id: ResourceID
        var spec: DynamicVpnSpec
        var router: ResourceID
        var plans: [InstancePlan]
        var createdAt: String
    }

    final class Tunnel: @unchecked Sendable {
        let label: String
        let instance: IPsecInstance
        let bgp: BGPSpeaker
        var injected: [IPv4Prefix: ResourceID] = [:]
        var lastPublished = ""
        /// A reconciliation is running (it awaits the store commit; the plugin actor may
        /// re-enter meanwhile) / another one was asked for while it ran.
        var reconciling = false
        var reconcileAgain = false
        init(label: String, instance: IPsecInstance, bgp: BGPSpeaker) {
            self.label = label
            self.instance = instance
            self.bgp = bgp
        }
    }

    struct Running {
        var record: Record
        var tunnels: [Tunnel]
        var error: String?
    }

    let context: PluginContext
    let settings: IPsecSettings
    private var records: [ResourceID: Record] = [:]
    private var running: [ResourceID: Running] = [:]

    public init(context: PluginContext) async throws {
        self.context = context
        settings = try IPsecSettings.from(context)
        for r in try context.store.all("vpn", as: Record.self) {
            records[r.id] = r
            for p in r.plans { try await PublicAddressRegistry.shared.claim(p.crypto.publicIp, owner: "\(Self.name) \(r.spec.name)", field: "publicIp") }
        }
    }

    public func status() async -> String {
        var up = 0, total = 0
        for r in running.values {
            for t in r.tunnels {
                total += 1
                if await t.instance.currentStatus().isUp { up += 1 }
            }
        }
        return "\(records.count) VPN(s), \(up)/\(total) tunnel(s) up"
    }

    // MARK: service

    public func run() async throws {
        for r in records.values.sorted(by: { $0.spec.name < $1.spec.name }) {
            do { try await startRuntime(r) } catch {
                context.logger.error("VPN \(r.spec.name) could not be started: \(error)")
                running[r.id] = Running(record: r, tunnels: [], error: "\(error)")
            }
        }
        try? await gracefulShutdown()
        for r in running.values {
            for t in r.tunnels {
                await t.bgp.stop()
                await t.instance.stop(remove: false)
            }
        }
    }

    // MARK: runtime

    private func startRuntime(_ r: Record) async throws {
        var tunnels: [Tunnel] = []
        let id = r.id
        for (i, plan) in r.plans.enumerated() {
            let label = i == 0 ? "A" : "B"
            let instance = IPsecInstance(plan: plan, settings: settings, context: context) { [weak self] _ in
                await self?.tunnelChanged(id, label)
            }
            let bgpPairing = i == 0 ? r.spec.bgpPairingA : r.spec.bgpPairingB
            let speaker = BGPSpeaker(instanceID: plan.id, namespace: plan.namespace,
                                     directory: context.stateDirectory + "/instances/" + plan.id + "/bird",
                                     settings: bgpSettings(r.spec, bgpPairing, backup: i == 1),
                                     processes: context.processes, birdPath: settings.bird, logger: context.logger) { [weak self] in
                await self?.tunnelChanged(id, label)
            }
            tunnels.append(Tunnel(label: label, instance: instance, bgp: speaker))
        }
        running[r.id] = Running(record: r, tunnels: tunnels, error: nil)
        // Both tunnels come up in parallel.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for t in tunnels {
                group.addTask {
                    try await t.instance.start()
                    try await t.bgp.start()
                }
            }
            try await group.waitForAll()
        }
    }

    private func bgpSettings(_ spec: DynamicVpnSpec, _ p: BgpIpsecPairing, backup: Bool) -> BGPSettings {
        BGPSettings(pairing: p, localSubnets: spec.localSubnets,
                    outsideAddresses: [spec.ipsecPairingA.publicIp, spec.ipsecPairingA.peerIp, spec.ipsecPairingB.publicIp, spec.ipsecPairingB.peerIp],
                    maxPrefixes: spec.effectiveMaxPrefixes, backup: backup)
    }

    /// A tunnel's IPsec or BGP state changed: fix its routes and tell subscribers.
    private func tunnelChanged(_ id: ResourceID, _ label: String) async {
        guard let r = running[id], let t = r.tunnels.first(where: { $0.label == label }) else { return }
        await reconcileRoutes(r.record, t)
        let v = await tunnelView(t, record: r.record, all: r.tunnels)
        let summary = "\(v.state)|\(v.ikeState)|\(v.childState)|\(v.bgpState)|\(v.routesInjected)"
        if summary != t.lastPublished {
            t.lastPublished = summary
            context.events.publish(["vpn": .string(r.record.spec.name), "id": .string(id.description), "tunnel": .string(label),
                                    "state": .string(v.state), "ikeState": .string(v.ikeState), "childState": .string(v.childState),
                                    "bgpState": .string(v.bgpState), "routesInjected": .int(Int64(v.routesInjected)),
                                    "reason": .string(v.lastChangeReason)], subtopic: "state")
        }
    }

    /// Makes the router's learned routes through `t` equal to what BIRD learned — or
    /// nothing while the tunnel's CHILD_SA is not installed.
    private func reconcileRoutes(_ record: Record, _ t: Tunnel) async {
        // One reconciliation per tunnel at a time: a second one started while the first
        // awaits its commit would see `injected` not yet updated and add the routes twice.
        if t.reconciling { t.reconcileAgain = true; return }
        t.reconciling = true
        repeat {
            t.reconcileAgain = false
            await reconcileRoutesOnce(record, t)
        } while t.reconcileAgain
        t.reconciling = false
    }

    private func reconcileRoutesOnce(_ record: Record, _ t: Tunnel) async {
        let up = await t.instance.currentStatus().isUp
        guard let port = await t.instance.routerPort() else { return }
        let network = context.network
        let topology = await network.topology
        // Never shadow the router's own subnets with a learned route.
        let connected = topology.routes(of: record.router).filter { $0.source == .connected }.map(\.destination)
        let learned = await t.bgp.learned
        let desired = up ? Set(learned.filter { p in !connected.contains { $0.overlaps(p) } }) : []
        let toRemove = t.injected.filter { !desired.contains($0.key) || topology.routes[$0.value] == nil }
        let toAdd = desired.filter { t.injected[$0] == nil || toRemove[$0] != nil }
        guard !toRemove.isEmpty || !toAdd.isEmpty else { return }
        var newIDs: [IPv4Prefix: ResourceID] = [:]
        for p in toAdd { newIDs[p] = await network.newID() }
        let plan = await t.instance.plan
        let weight: UInt32 = t.label == "A" ? 100 : 200
        let owner = "vpn.dynamic \(record.spec.name) tunnel \(t.label)"
        let ids = newIDs
        do {
            try await network.mutate(touching: [], event: "route.learned") { top throws(TopologyError) in
                var tags: [FlowTag] = []
                for (_, rid) in toRemove where top.routes[rid] != nil { tags += try top.removeRoute(rid) }
                for (p, rid) in ids {
                    tags += try top.addRoute(Route(id: rid, router: record.router, destination: p, nextHopPort: port,
                                                   nextHopGateway: plan.instanceAddress, weight: weight, source: .learned, owner: owner))
                }
                return tags
            }
            for p in toRemove.keys { t.injected[p] = nil }
            for (p, rid) in ids { t.injected[p] = rid }
            context.logger.info("\(owner): \(t.injected.count) learned route(s) injected (+\(toAdd.count) −\(toRemove.count))")
        } catch {
            context.logger.error("\(owner): injecting routes failed: \(error)")
        }
    }

    private func stopRuntime(_ id: ResourceID, remove: Bool) async {
        guard let r = running.removeValue(forKey: id) else { return }
        for t in r.tunnels {
            await t.bgp.stop()
            await t.instance.stop(remove: remove)
        }
    }

    // MARK: views

    func tunnelView(_ t: Tunnel, record: Record, all: [Tunnel]) async -> TunnelView {
        let s = await t.instance.currentStatus()
        let b = await t.bgp.state
        let state: String
        if s.isUp { state = b.isEstablished ? "up" : "ipsec up, bgp down" }
        else if s.ikeState == "CONNECTING" || s.ikeState == "ESTABLISHED" { state = "connecting" }
        else { state = "down" }
        // Active: A when A is up, else B when B is up.
        var active = false
        if state == "up" {
            if t.label == "A" { active = true } else if let a = all.first(where: { $0.label == "A" }) {
                let sa = await a.instance.currentStatus(), ba = await a.bgp.state
                active = !(sa.isUp && ba.isEstablished)
            }
        }
        let charonState = s.charon
        let bird = await context.processes.status(name: "bird-" + (await t.instance.plan).id)
        return TunnelView(tunnel: t.label, state: state, active: active, ikeState: s.ikeState, childState: s.childState,
                          bgpState: b.state, bgpLastError: b.lastError, prefixesReceived: b.importedRoutes,
                          prefixesAdvertised: b.exportedRoutes, routesInjected: t.injected.count,
                          bytesIn: s.bytesIn, bytesOut: s.bytesOut, packetsIn: s.packetsIn, packetsOut: s.packetsOut,
                          charon: charonState, bird: bird.map { $0.running ? "running (pid \($0.pid))" : "stopped" } ?? "not started",
                          lastChange: s.lastChange, lastChangeReason: s.lastChangeReason)
    }

    func view(_ r: Record) async -> DynamicVpnView {
        let rt = running[r.id]
        var tunnels: [TunnelView] = []
        for t in rt?.tunnels ?? [] { tunnels.append(await tunnelView(t, record: r, all: rt!.tunnels)) }
        let upCount = tunnels.filter { $0.state == "up" }.count
        let state = rt == nil ? "starting" : rt!.error.map { "error: \($0)" } ?? (upCount == 2 ? "up" : upCount == 1 ? "degraded" : "down")
        let routerName = await context.network.topology.routers[r.router]?.name ?? r.router.description
        return DynamicVpnView(id: r.id, name: r.spec.name, virtualRouter: routerName, virtualRouterId: r.router, state: state,
                              ipsecPairingA: r.spec.ipsecPairingA.view, ipsecPairingB: r.spec.ipsecPairingB.view,
                              bgpPairingA: r.spec.bgpPairingA.view, bgpPairingB: r.spec.bgpPairingB.view,
                              localSubnets: r.spec.localSubnets, maxPrefixes: r.spec.effectiveMaxPrefixes, tunnels: tunnels)
    }

    func find(_ text: String, field: String = "id") throws -> Record {
        if let id = ResourceID(text), let r = records[id] { return r }
        if let r = records.values.first(where: { $0.spec.name == text }) { return r }
        throw RPCError.notFound(field: field, reason: "no DynamicVPN \"\(text.prefix(80))\"")
    }

    // MARK: methods

    public nonisolated func registerMethods(_ methods: PluginMethods) {
        methods.register("create", summary: "Create a redundant VPN (two tunnels, BGP) on a tenant router.",
                         params: DynamicVpnSpec.self, result: DynamicVpnView.self) { p, _ in try await self.create(p) }
        methods.register("get", summary: "A DynamicVPN's configuration and tunnel states.",
                         params: VpnSelector.self, result: DynamicVpnView.self) { p, _ in try await self.get(p.id) }
        methods.register("list", summary: "Every DynamicVPN.", params: EmptyParams.self, result: DynamicVpnList.self) { _, _ in
            await self.list()
        }
        methods.register("status", summary: "Per-tunnel truth: IKE, CHILD, BGP, prefixes, traffic, last change (one VPN or all).",
                         params: OptionalVpnSelector.self, result: DynamicStatusResult.self) { p, _ in try await self.statusOf(p.id) }
        methods.register("update", summary: "Change a VPN; only the tunnels whose settings change renegotiate.",
                         params: DynamicVpnUpdate.self, result: DynamicVpnView.self) { p, _ in try await self.update(p) }
        methods.register("delete", summary: "Delete a VPN: namespaces, daemons, ports and routes go.",
                         params: VpnSelector.self, result: EmptyResult.self) { p, _ in try await self.delete(p.id) }
        methods.register("peerConfig", summary: "What the other side (the AWS-style gateway) must configure, as JSON and text.",
                         params: VpnSelector.self, result: PeerConfiguration.self) { p, _ in
            let r = try await self.find(p.id)
            return PeerConfiguration(record: r.spec, backend: self.settings.resolvedBackend, mss: self.settings.effectiveMSS)
        }
    }

    func list() async -> DynamicVpnList {
        var out: [DynamicVpnView] = []
        for r in records.values.sorted(by: { $0.spec.name < $1.spec.name }) { out.append(await view(r)) }
        return DynamicVpnList(items: out)
    }

    func get(_ text: String) async throws -> DynamicVpnView { await view(try find(text)) }

    func statusOf(_ text: String?) async throws -> DynamicStatusResult {
        if let t = text { return DynamicStatusResult(items: [await view(try find(t))]) }
        return DynamicStatusResult(items: await list().items)
    }

    /// Validation that needs the topology and the other VPNs; returns the router.
    private func check(_ spec: DynamicVpnSpec, excluding: ResourceID?) async throws -> ResourceID {
        try spec.validate()
        let topology = await context.network.topology
        guard let router = topology.resolve(.router, spec.virtualRouter) else {
            throw RPCError.notFound(field: "virtualRouter", reason: "no router \"\(spec.virtualRouter.prefix(80))\"")
        }
        if records.values.contains(where: { $0.spec.name == spec.name && $0.id != excluding }) {
            throw RPCError.conflict(field: "name", reason: "a DynamicVPN named \(spec.name) already exists")
        }
        try UplinkBridge.check(spec.ipsecPairingA.publicIp, settings: settings, field: "ipsecPairingA.publicIp")
        try UplinkBridge.check(spec.ipsecPairingB.publicIp, settings: settings, field: "ipsecPairingB.publicIp")
        for other in records.values where other.id != excluding {
            for (label, p) in [("A", spec.ipsecPairingA), ("B", spec.ipsecPairingB)] {
                if other.plans.contains(where: { $0.crypto.publicIp == p.publicIp }) {
                    throw RPCError.conflict(field: "ipsecPairing\(label).publicIp", reason: "public IP \(p.publicIp) is already used by DynamicVPN \(other.spec.name)")
                }
            }
        }
        return router
    }

    func create(_ spec: DynamicVpnSpec) async throws -> DynamicVpnView {
        let router = try await check(spec, excluding: nil)
        let owner = "\(Self.name) \(spec.name)"
        try await PublicAddressRegistry.shared.claim(spec.ipsecPairingA.publicIp, owner: owner, field: "ipsecPairingA.publicIp")
        do {
            try await PublicAddressRegistry.shared.claim(spec.ipsecPairingB.publicIp, owner: owner, field: "ipsecPairingB.publicIp")
        } catch {
            await PublicAddressRegistry.shared.release(owner: owner)
            throw error
        }
        let topology = await context.network.topology
        var used = topology.ports.values.filter { $0.device == router }.compactMap { $0.address?.network }
        used += [spec.bgpPairingA.network, spec.bgpPairingB.network]
        let linkA = try LinkAllocator.allocate(pool: settings.pool, avoiding: used)
        let linkB = try LinkAllocator.allocate(pool: settings.pool, avoiding: used + [linkA])
        let children = [TunnelChild(name: "tunnel", localTS: ["0.0.0.0/0"], remoteTS: ["0.0.0.0/0"])]
        let plans = [
            InstancePlan(id: InstancePlan.newID(), owner: owner + " tunnel A", router: router, crypto: spec.ipsecPairingA.crypto, link: linkA,
                         tunnelAddress: IPv4Interface(address: spec.bgpPairingA.localIp, length: 30), localSubnets: spec.localSubnets,
                         remoteSubnets: [], children: children),
            InstancePlan(id: InstancePlan.newID(), owner: owner + " tunnel B", router: router, crypto: spec.ipsecPairingB.crypto, link: linkB,
                         tunnelAddress: IPv4Interface(address: spec.bgpPairingB.localIp, length: 30), localSubnets: spec.localSubnets,
                         remoteSubnets: [], children: children),
        ]
        let record = Record(id: await context.network.newID(), spec: spec, router: router, plans: plans, createdAt: IPsecInstance.now())
        try context.store.put("vpn", id: record.id.description, name: spec.name, record)
        records[record.id] = record
        do {
            try await startRuntime(record)
        } catch {
            // Nothing half-done: tear down what was built and forget the record.
            await stopRuntime(record.id, remove: true)
            records[record.id] = nil
            try? context.store.delete("vpn", id: record.id.description)
            await PublicAddressRegistry.shared.release(owner: owner)
            throw RPCError.unavailable(reason: "building the VPN failed: \(error)")
        }
        context.events.publish(["vpn": .string(spec.name), "id": .string(record.id.description), "change": "created"], subtopic: "config")
        return await view(record)
    }

    func update(_ u: DynamicVpnUpdate) async throws -> DynamicVpnView {
        var r = try find(u.id)
        var spec = r.spec
        if let p = u.ipsecPairingA { spec.ipsecPairingA = p }
        if let p = u.ipsecPairingB { spec.ipsecPairingB = p }
        if let p = u.bgpPairingA { spec.bgpPairingA = p }
        if let p = u.bgpPairingB { spec.bgpPairingB = p }
        if let s = u.localSubnets { spec.localSubnets = s }
        if let m = u.maxPrefixes { spec.maxPrefixes = m }
        for (label, old, new) in [("A", r.spec.ipsecPairingA, spec.ipsecPairingA), ("B", r.spec.ipsecPairingB, spec.ipsecPairingB)] {
            if old.publicIp != new.publicIp { throw RPCError.invalidParams(field: "ipsecPairing\(label).publicIp", reason: "the public IP of a tunnel cannot change; delete and re-create the VPN") }
            if old.peerIp != new.peerIp { throw RPCError.invalidParams(field: "ipsecPairing\(label).peerIp", reason: "the peer IP of a tunnel cannot change; delete and re-create the VPN") }
        }
        _ = try await check(spec, excluding: r.id)
        let topology = await context.network.topology
        let usedByOthers = topology.ports.values.filter { $0.device == r.router }.compactMap { $0.address?.network }
            .filter { n in !r.plans.contains { $0.link == n } }
        for (label, b) in [("A", spec.bgpPairingA), ("B", spec.bgpPairingB)] where usedByOthers.contains(where: { $0.overlaps(b.network) }) {
            throw RPCError.invalidParams(field: "bgpPairing\(label).localIp", reason: "\(b.network) overlaps a port of the router")
        }
        var plans = r.plans
        plans[0].crypto = spec.ipsecPairingA.crypto
        plans[1].crypto = spec.ipsecPairingB.crypto
        plans[0].tunnelAddress = IPv4Interface(address: spec.bgpPairingA.localIp, length: 30)
        plans[1].tunnelAddress = IPv4Interface(address: spec.bgpPairingB.localIp, length: 30)
        plans[0].localSubnets = spec.localSubnets
        plans[1].localSubnets = spec.localSubnets
        let old = r
        r.spec = spec
        r.plans = plans
        try context.store.put("vpn", id: r.id.description, name: spec.name, r)
        records[r.id] = r
        if var rt = running[r.id] {
            rt.record = r
            running[r.id] = rt
            for (i, t) in rt.tunnels.enumerated() {
                if plans[i] != old.plans[i] { try await t.instance.apply(plans[i]) }
                try await t.bgp.reconfigure(bgpSettings(spec, i == 0 ? spec.bgpPairingA : spec.bgpPairingB, backup: i == 1))
            }
        }
        context.events.publish(["vpn": .string(spec.name), "id": .string(r.id.description), "change": "updated"], subtopic: "config")
        return await view(r)
    }

    func delete(_ text: String) async throws -> EmptyResult {
        let r = try find(text)
        await stopRuntime(r.id, remove: true)
        try context.store.delete("vpn", id: r.id.description)
        records[r.id] = nil
        await PublicAddressRegistry.shared.release(owner: "\(Self.name) \(r.spec.name)")
        context.events.publish(["vpn": .string(r.spec.name), "id": .string(r.id.description), "change": "deleted"], subtopic: "config")
        return EmptyResult()
    }

    // MARK: test and benchmark hooks

    /// The IPsec instance of a tunnel ("A"/"B"), for tests that need to break it.
    public func instance(vpn: String, tunnel: String) async throws -> IPsecInstance? {
        let r = try find(vpn)
        return running[r.id]?.tunnels.first { $0.label == tunnel }?.instance
    }
}
