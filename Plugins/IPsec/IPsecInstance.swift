// IPsecInstance: one IPsec tunnel endpoint — a network namespace holding one charon —
// attached to a tenant router and to the agent's uplink. Shared by DynamicVPN (which adds
// BIRD) and StaticVPN.
//
// Layout (id = 8 hex characters):
//
//   tenant router ── port "vpn-<id>" (link .1/30, MSS clamp) ── veth wvi<id> ═╗
//                                                             namespace warren-vpn-<id>
//   uplink bridge ── port "vpn-<id>-wan" ── veth wvo<id> ═══ out0 publicIp/len, default via gateway
//                                                          in0  link .2/30, routes to local subnets
//                                                          ipsec0 (libipsec TUN): tunnel inside address
//
// Both veths' host ends are exterior ports of the virtual topology, so IKE/ESP and tenant
// traffic cross the datapath; nothing is bridged around it. charon runs in the namespace
// and in a private mount namespace whose /run is the instance's own directory (its pid
// file path is compiled in), configured only over vici: PSK and connection are loaded
// after every (re)connect, so a restarted charon is reconfigured automatically. libipsec
// never initiates by itself (no acquires): the supervision loop re-initiates a missing
// CHILD_SA with backoff. When a CHILD_SA goes down the TUN is set down at once, so routes
// through it (and BGP over it) go immediately rather than at hold time.
//
// Threading: an actor. Netlink and vici calls are quick synchronous exchanges.

import Foundation
import Logging
import WarrenAgent
import WarrenCore
import WarrenLinux
import WarrenRPC
import WarrenVici

/// Adds an address unless it is already there (building is idempotent: an agent
/// restart re-runs it over the running instance).
func ensureAddress(_ nl: Netlink, _ cidr: String, on ifname: String) throws {
    if try !nl.addresses(on: ifname).contains(cidr) { try nl.addAddress(cidr, to: ifname) }
}

/// One CHILD_SA of an instance.
public struct TunnelChild: Codable, Sendable, Hashable {
    public var name: String
    public var localTS: [String]
    public var remoteTS: [String]
    public init(name: String, localTS: [String], remoteTS: [String]) {
        self.name = name
        self.localTS = localTS
        self.remoteTS = remoteTS
    }
}

/// Everything needed to build (or adopt) an instance; stored with the owning VPN.
public struct InstancePlan: Codable, Sendable, Hashable {
    public var id: String
    /// Who owns it, for logs and route owners: "vpn.dynamic aws1 tunnel A".
    public var owner: String
    public var router: ResourceID
    public var crypto: TunnelCrypto
    /// The router ↔ instance link: router port .1, instance .2.
    public var link: IPv4Prefix
    /// The tunnel's inside address on the TUN (DynamicVPN), e.g. 169.254.10.2/30.
    public var tunnelAddress: IPv4Interface?
    /// Routed from the instance back to the tenant router.
    public var localSubnets: [IPv4Prefix]
    /// Routed from the instance into the tunnel (StaticVPN).
    public var remoteSubnets: [IPv4Prefix]
    public var children: [TunnelChild]

    public init(id: String, owner: String, router: ResourceID, crypto: TunnelCrypto, link: IPv4Prefix,
                tunnelAddress: IPv4Interface?, localSubnets: [IPv4Prefix], remoteSubnets: [IPv4Prefix], children: [TunnelChild]) {
        self.id = id
        self.owner = owner
        self.router = router
        self.crypto = crypto
        self.link = link
        self.tunnelAddress = tunnelAddress
        self.localSubnets = localSubnets
        self.remoteSubnets = remoteSubnets
        self.children = children
    }

    public var namespace: String { "warren-vpn-" + id }
    public var outsideInterface: String { "wvo" + id }
    public var insideInterface: String { "wvi" + id }
    public var routerPortName: String { "vpn-" + id }
    public var uplinkPortName: String { "vpn-" + id + "-wan" }
    public var routerAddress: IPv4Address { IPv4Address(rawValue: link.address.rawValue + 1) }
    public var instanceAddress: IPv4Address { IPv4Address(rawValue: link.address.rawValue + 2) }

    /// A fresh random instance ID.
    public static func newID() -> String {
        Secrets.randomBytes(4).map { String(format: "%02x", $0) }.joined()
    }
}

public struct ChildStatus: Codable, Sendable, Hashable {
    public var name: String
    public var state: String
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
}

/// What an instance reports about its tunnel.
public struct TunnelStatus: Codable, Sendable, Hashable {
    /// "ESTABLISHED", "CONNECTING", "DOWN", ...
    public var ikeState: String
    /// "INSTALLED" when every CHILD_SA is installed; otherwise the worst state.
    public var childState: String
    public var children: [ChildStatus]
    /// charon's process state: "running (pid N)", "restarting", "stopped".
    public var charon: String
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var lastChange: String
    public var lastChangeReason: String

    public var isUp: Bool { ikeState == "ESTABLISHED" && childState == "INSTALLED" }
}

public actor IPsecInstance {
    public private(set) var plan: InstancePlan
    let settings: IPsecSettings
    let context: PluginContext
    let directory: String
    let logger: Logger
    /// Called (on this actor) whenever the tunnel's status changes.
    private let onChange: @Sendable (TunnelStatus) async -> Void

    private var vici: ViciClient?
    private var eventTask: Task<Void, Never>?
    private var superviseTask: Task<Void, Never>?
    private var status: TunnelStatus
    private var lastInitiate = ContinuousClock.now - .seconds(3600)
    private var initiateBackoff: Duration = .seconds(1)
    private var stopped = false
    private var tunUp: Bool?

    public init(plan: InstancePlan, settings: IPsecSettings, context: PluginContext,
                onChange: @escaping @Sendable (TunnelStatus) async -> Void) {
        self.plan = plan
        self.settings = settings
        self.context = context
        self.onChange = onChange
        directory = context.stateDirectory + "/instances/" + plan.id
        var l = context.logger
        l[metadataKey: "instance"] = .string(plan.id)
        logger = l
        status = TunnelStatus(ikeState: "DOWN", childState: "DOWN", children: [], charon: "stopped", bytesIn: 0, bytesOut: 0,
                              packetsIn: 0, packetsOut: 0, lastChange: IPsecInstance.now(), lastChangeReason: "created")
    }

    /// The if_id binding SAs to the instance's XFRM interface (one instance per namespace).
    static let xfrmInterfaceID: UInt32 = 1

    public static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    public func currentStatus() -> TunnelStatus { status }

    private var charonName: String { "charon-" + plan.id }
    private var charonConfig: CharonInstanceConfig {
        CharonInstanceConfig(directory: directory + "/charon", backend: settings.resolvedBackend == "xfrm" ? .xfrm : .libipsec)
    }

    // MARK: build

    /// Builds (or, after an agent restart, adopts) the namespace, links, ports and charon,
    /// then configures charon and starts supervising the tunnel.
    public func start() async throws {
        stopped = false
        let fm = FileManager.default
        for d in [directory, directory + "/charon", directory + "/run"] {
            try fm.createDirectory(atPath: d, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        try await buildNamespace()
        try await attachPorts()
        let conf = charonConfig
        try conf.strongswanConf().write(toFile: conf.configPath, atomically: true, encoding: .utf8)
        let spec = ProcessSpec(name: charonName, executable: settings.charon, arguments: [],
                               environment: ["STRONGSWAN_CONF": conf.configPath], namespace: plan.namespace,
                               privateMounts: [BindMount(source: directory + "/run", target: "/run")],
                               logFile: directory + "/charon.stdout.log")
        try await context.processes.start(spec)
        try await connectAndConfigure()
        superviseTask = Task { [weak self] in await self?.superviseLoop() }
    }

    /// The namespace with its links, addresses, routes and sysctls (idempotent).
    private func buildNamespace() async throws {
        let ns = plan.namespace
        let host = try Netlink()
        if !NetworkNamespace.exists(ns) {
            try NetworkNamespace.create(ns)
        }
        let inNS = try Netlink(namespace: ns)
        // The namespace ends are created directly in the namespace (no name clash between
        // instances built concurrently).
        for (hostEnd, inside) in [(plan.outsideInterface, "out0"), (plan.insideInterface, "in0")] {
            guard try inNS.link(named: inside) == nil else { continue }
            if try host.link(named: hostEnd) != nil { try host.deleteLink(hostEnd) }
            try host.createVethPair(hostEnd, peer: inside, peerNamespace: ns)
        }
        // Kernel ESP: an XFRM interface carries the tunnel (SAs bound to it by if_id);
        // with kernel-libipsec, charon creates its own TUN "ipsec0".
        if settings.resolvedBackend == "xfrm", try inNS.link(named: "ipsec0") == nil {
            try inNS.createXfrmInterface("ipsec0", ifID: IPsecInstance.xfrmInterfaceID)
        }
        try host.setLinkUp(plan.outsideInterface, true)
        try host.setLinkUp(plan.insideInterface, true)
        guard let uplink = settings.uplink else { throw IPsecError.configuration("no uplink configured") }
        try ensureAddress(inNS, "\(plan.crypto.publicIp)/\(uplink.prefixLength)", on: "out0")
        try ensureAddress(inNS, "\(plan.instanceAddress)/30", on: "in0")
        try inNS.setLinkUp("out0", true)
        try inNS.setLinkUp("in0", true)
        try inNS.setLinkUp("lo", true)
        try NetworkNamespace.setSysctl("net.ipv4.ip_forward", "1", namespace: ns)
        try NetworkNamespace.setSysctl("net.ipv4.conf.all.rp_filter", "0", namespace: ns)
        try NetworkNamespace.setSysctl("net.ipv4.conf.default.rp_filter", "0", namespace: ns)
        try inNS.replaceRoute(RouteSpec(destination: "default", gateway: uplink.gateway.description, outputInterface: "out0"))
        // kernel-libipsec refuses to install a CHILD_SA whose local selector holds no
        // address of this namespace ("error installing route with policy"). For policy
        // selectors give it one that no host can have: each local subnet's network
        // address, as a /32 on in0 (0.0.0.0/0 selectors need nothing).
        if settings.resolvedBackend == "libipsec" {
            for s in plan.localSubnets where s.length < 31 && plan.children.contains(where: { !$0.localTS.contains("0.0.0.0/0") }) {
                try ensureAddress(inNS, "\(s.address)/32", on: "in0")
            }
        }
        for s in plan.localSubnets {
            try inNS.replaceRoute(RouteSpec(destination: s.description, gateway: plan.routerAddress.description, outputInterface: "in0"))
        }
    }

    /// The router port and the uplink port, bound to the instance's veths (idempotent).
    private func attachPorts() async throws {
        let network = context.network
        let bridge = try await UplinkBridge.ensure(settings, network: network)
        let plan = self.plan, mss = settings.effectiveMSS
        let address = IPv4Interface(address: plan.routerAddress, length: 30)!
        var id = await network.newID(), mac = await network.newMAC()
        try await network.mutate(touching: [ResourceRef(.port, id)], event: "port.created") { [id, mac] t throws(TopologyError) in
            t.resolve(.port, plan.routerPortName) == nil
                ? try t.addPort(Port(id: id, name: plan.routerPortName, device: plan.router,
                                     binding: .exterior(interface: plan.insideInterface), address: address, mac: mac, mssClamp: mss))
                : []
        }
        id = await network.newID()
        mac = await network.newMAC()
        try await network.mutate(touching: [ResourceRef(.port, id)], event: "port.created") { [id, mac] t throws(TopologyError) in
            t.resolve(.port, plan.uplinkPortName) == nil
                ? try t.addPort(Port(id: id, name: plan.uplinkPortName, device: bridge,
                                     binding: .exterior(interface: plan.outsideInterface), mac: mac))
                : []
        }
    }

    /// The router port's ID (for routes through this instance).
    public func routerPort() async -> ResourceID? {
        await context.network.topology.resolve(.port, plan.routerPortName)
    }

    // MARK: charon

    private func connectionConfig() -> ConnectionConfig {
        let p = plan.crypto
        // Rekey before expiry with a margin and jitter; the configured lifetimes are the hard limits.
        let ikeMargin = max(60, p.ikeLifetime / 10)
        let childMargin = max(60, min(540, p.espLifetime / 10))
        let children = plan.children.map { c in
            ChildConfig(name: c.name, localTS: c.localTS, remoteTS: c.remoteTS, espProposals: [p.espProposal],
                        rekeyTime: p.espLifetime - childMargin, lifeTime: p.espLifetime, randTime: childMargin / 2,
                        // charon only clears on DPD; the restart is ours (superviseLoop re-initiates).
                        // charon's own "restart" re-uses reqids, and with several CHILD_SAs
                        // libipsec then sent traffic into the wrong SA (seen in the policy-peer test).
                        dpdAction: .clear, startAction: .none, closeAction: .none,
                        ifIdIn: settings.resolvedBackend == "xfrm" ? IPsecInstance.xfrmInterfaceID : nil,
                        ifIdOut: settings.resolvedBackend == "xfrm" ? IPsecInstance.xfrmInterfaceID : nil)
        }
        return ConnectionConfig(name: "tunnel", version: p.ikeVersion == 1 ? .ikev1 : p.ikeVersion == 2 ? .ikev2 : .any,
                                localAddrs: [p.publicIp.description], remoteAddrs: [p.peerIp.description],
                                proposals: [p.ikeProposal], rekeyTime: p.ikeLifetime - ikeMargin,
                                overTime: ikeMargin, randTime: ikeMargin / 2,
                                dpdDelay: p.dpdDelay, dpdTimeout: p.ikeVersion == 1 && p.dpdDelay > 0 ? p.dpdTimeout : nil,
                                keyingTries: 0, encap: true, mobike: false, unique: .replace,
                                localAuth: AuthConfig(method: .psk, id: p.publicIp.description),
                                remoteAuth: AuthConfig(method: .psk, id: p.peerIp.description),
                                children: children)
    }

    /// (Re)connects to charon's vici socket, loads key and connection, subscribes to
    /// events and brings the tunnel up if we initiate.
    private func connectAndConfigure() async throws {
        vici?.close()
        eventTask?.cancel()
        let client = try await ViciClient.connect(socketPath: charonConfig.viciSocketPath, waitingUpTo: .seconds(15))
        let p = plan.crypto
        try await client.loadSharedKey(id: "psk-" + plan.id, secret: p.preSharedKey.reveal(),
                                       owners: [p.publicIp.description, p.peerIp.description])
        try await client.loadConnection(connectionConfig())
        let events = try await client.subscribe(["ike-updown", "child-updown", "ike-rekey", "child-rekey"])
        vici = client
        eventTask = Task { [weak self] in
            for await e in events { await self?.handle(e) }
        }
        await refresh(reason: "configured")
        await initiateIfNeeded()
    }

    private func handle(_ event: ViciEvent) async {
        var reason = event.name
        if let ud = try? event.upDown() {
            reason = "\(event.name == "ike-updown" ? "IKE_SA" : "CHILD_SA \(ud.child?.name ?? "")") \(ud.up ? "up" : "down")"
        }
        await refresh(reason: reason)
        if reason.hasSuffix("down") { await initiateIfNeeded() }
    }

    /// Re-reads the SAs and updates the status (and the TUN) when something changed.
    func refresh(reason: String) async {
        guard let vici else { return }
        let sas = (try? await vici.listSAs(ike: "tunnel")) ?? []
        let ike = sas.first { $0.state == .established } ?? sas.first
        var children: [ChildStatus] = []
        for c in plan.children {
            let found = sas.flatMap(\.children).filter { $0.name == c.name }
            let installed = found.first { $0.state == .installed } ?? found.first
            children.append(ChildStatus(name: c.name, state: installed?.state.name ?? "DOWN",
                                        bytesIn: found.reduce(0) { $0 + ($1.bytesIn ?? 0) }, bytesOut: found.reduce(0) { $0 + ($1.bytesOut ?? 0) },
                                        packetsIn: found.reduce(0) { $0 + ($1.packetsIn ?? 0) }, packetsOut: found.reduce(0) { $0 + ($1.packetsOut ?? 0) }))
        }
        let allInstalled = !children.isEmpty && children.allSatisfy { $0.state == "INSTALLED" }
        var s = status
        s.ikeState = ike?.state.name ?? "DOWN"
        s.childState = allInstalled ? "INSTALLED" : (children.first { $0.state != "INSTALLED" }?.state ?? "DOWN")
        s.children = children
        s.bytesIn = children.reduce(0) { $0 + $1.bytesIn }
        s.bytesOut = children.reduce(0) { $0 + $1.bytesOut }
        s.packetsIn = children.reduce(0) { $0 + $1.packetsIn }
        s.packetsOut = children.reduce(0) { $0 + $1.packetsOut }
        if let pid = await context.processes.status(name: charonName)?.pid { s.charon = "running (pid \(pid))" }
        let changed = s.ikeState != status.ikeState || s.childState != status.childState
        if changed {
            s.lastChange = IPsecInstance.now()
            s.lastChangeReason = reason
            logger.info("tunnel \(plan.owner): IKE \(s.ikeState), CHILD \(s.childState) (\(reason))")
        }
        status = s
        await setTunnel(up: s.isUp)
        if changed { await onChange(s) }
    }

    /// The TUN's inside address follows the CHILD_SA (pitfall 7): removed at once when
    /// the CHILD_SA goes, so BGP over it and routes through it go too instead of waiting
    /// for the hold time; restored (with the routes into the tunnel) when it returns. The
    /// TUN itself stays up — libipsec cannot install a CHILD_SA on a down device.
    private func setTunnel(up: Bool) async {
        guard tunUp != up else { return }
        do {
            let nl = try Netlink(namespace: plan.namespace)
            guard try nl.link(named: "ipsec0") != nil else { return }
            try nl.setLinkUp("ipsec0", true)
            if up {
                if let a = plan.tunnelAddress { try ensureAddress(nl, a.description, on: "ipsec0") }
                for r in plan.remoteSubnets { try nl.replaceRoute(RouteSpec(destination: r.description, outputInterface: "ipsec0")) }
            } else if let a = plan.tunnelAddress, try nl.addresses(on: "ipsec0").contains(a.description) {
                try nl.deleteAddress(a.description, from: "ipsec0")
            }
            tunUp = up
        } catch {
            logger.warning("tunnel \(plan.owner): cannot set the inside address \(up ? "up" : "down"): \(error)")
        }
    }

    private func initiateIfNeeded() async {
        guard plan.crypto.initiator, !stopped, let vici else { return }
        guard ContinuousClock.now - lastInitiate >= initiateBackoff else { return }
        let missing = status.children.filter { $0.state != "INSTALLED" && $0.state != "REKEYING" && $0.state != "REKEYED" }
        guard !missing.isEmpty || status.children.isEmpty else { initiateBackoff = .seconds(1); return }
        lastInitiate = .now
        for c in (status.children.isEmpty ? plan.children.map(\.name) : missing.map(\.name)) {
            do {
                _ = try await vici.initiate(child: c, ike: "tunnel", timeoutMs: 8_000)
                initiateBackoff = .seconds(1)
            } catch {
                initiateBackoff = min(initiateBackoff * 2, .seconds(8))
                logger.info("tunnel \(plan.owner): initiating \(c) failed (\(error)); next try in \(initiateBackoff)")
                break
            }
        }
        await refresh(reason: "initiated")
    }

    /// Every 2 s: reconnect to a restarted charon, refresh counters, re-initiate.
    private func superviseLoop() async {
        while !Task.isCancelled && !stopped {
            try? await Task.sleep(for: .seconds(2))
            if Task.isCancelled || stopped { break }
            if vici?.isConnected != true {
                status.charon = "restarting"
                if status.isUp || status.ikeState != "DOWN" {
                    status.ikeState = "DOWN"
                    status.childState = "DOWN"
                    status.lastChange = IPsecInstance.now()
                    status.lastChangeReason = "charon exited"
                    await setTunnel(up: false)
                    await onChange(status)
                }
                do { try await connectAndConfigure() } catch {
                    logger.info("tunnel \(plan.owner): waiting for charon: \(error)")
                }
                continue
            }
            await refresh(reason: "poll")
            await initiateIfNeeded()
        }
    }

    // MARK: change and removal

    /// Applies a changed plan (key, proposals, lifetimes, DPD, inside address, subnets).
    /// Only this instance's SAs are renegotiated; the outside addresses cannot change.
    public func apply(_ new: InstancePlan) async throws {
        precondition(new.id == plan.id && new.crypto.publicIp == plan.crypto.publicIp && new.crypto.peerIp == plan.crypto.peerIp)
        let old = plan
        plan = new
        let nl = try Netlink(namespace: plan.namespace)
        if old.tunnelAddress != new.tunnelAddress, try nl.link(named: "ipsec0") != nil {
            if let a = old.tunnelAddress { try nl.deleteAddress(a.description, from: "ipsec0") }
            if let a = new.tunnelAddress, tunUp == true { try ensureAddress(nl, a.description, on: "ipsec0") }
        }
        for s in Set(old.localSubnets).subtracting(new.localSubnets) {
            try nl.deleteRoute(RouteSpec(destination: s.description, gateway: old.routerAddress.description, outputInterface: "in0"))
            if s.length < 31 { try nl.deleteAddress("\(s.address)/32", from: "in0") }
        }
        if settings.resolvedBackend == "libipsec" && new.children.contains(where: { !$0.localTS.contains("0.0.0.0/0") }) {
            for s in new.localSubnets where s.length < 31 { try ensureAddress(nl, "\(s.address)/32", on: "in0") }
        }
        for s in new.localSubnets {
            try nl.replaceRoute(RouteSpec(destination: s.description, gateway: new.routerAddress.description, outputInterface: "in0"))
        }
        for r in Set(old.remoteSubnets).subtracting(new.remoteSubnets) {
            try nl.deleteRoute(RouteSpec(destination: r.description, outputInterface: "ipsec0"))
        }
        tunUp = nil  // re-apply TUN addresses and routes on the next refresh
        let renegotiate = old.crypto != new.crypto || old.children != new.children
        guard renegotiate, let vici else { await refresh(reason: "updated"); return }
        try await vici.loadSharedKey(id: "psk-" + plan.id, secret: new.crypto.preSharedKey.reveal(),
                                     owners: [new.crypto.publicIp.description, new.crypto.peerIp.description])
        for c in old.children where !new.children.contains(where: { $0.name == c.name }) {
            _ = try? await vici.terminate(ike: "tunnel", force: true, timeoutMs: 2_000)
        }
        try await vici.loadConnection(connectionConfig())
        _ = try? await vici.terminate(ike: "tunnel", force: true, timeoutMs: 3_000)
        lastInitiate = .now - .seconds(3600)
        initiateBackoff = .seconds(1)
        await refresh(reason: "updated: renegotiating")
        await initiateIfNeeded()
    }

    /// Stops supervision; with `remove`, also stops charon and deletes the namespace,
    /// veths and ports. Without it (agent shutdown) everything keeps running for adoption.
    public func stop(remove: Bool) async {
        stopped = true
        superviseTask?.cancel()
        eventTask?.cancel()
        if remove, let vici {
            _ = try? await vici.terminate(ike: "tunnel", force: true, timeoutMs: 2_000)
        }
        vici?.close()
        vici = nil
        guard remove else { return }
        await context.processes.stop(name: charonName)
        await context.processes.stop(name: "bird-" + plan.id)
        let network = context.network
        let t = await network.topology
        for name in [plan.routerPortName, plan.uplinkPortName] {
            guard let id = t.resolve(.port, name) else { continue }
            // Learned and static routes through this port go first.
            let routes = t.routes.values.filter { $0.nextHopPort == id && $0.source != .connected }.map(\.id)
            do {
                try await network.mutate(touching: routes.map { ResourceRef(.route, $0) } + [ResourceRef(.port, id)], event: "port.deleted") { t throws(TopologyError) in
                    var tags: [FlowTag] = []
                    for r in routes { tags += try t.removeRoute(r) }
                    tags += try t.removePort(id)
                    return tags
                }
            } catch {
                logger.warning("removing port \(name) of \(plan.owner): \(error)")
            }
        }
        if NetworkNamespace.exists(plan.namespace) { try? NetworkNamespace.delete(plan.namespace) }
        if let host = try? Netlink() {
            for i in [plan.outsideInterface, plan.insideInterface] where (try? host.link(named: i)) != nil { try? host.deleteLink(i) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Test and benchmark hook: terminates the tunnel's SAs (a clean tunnel down).
    public func terminateForTest() async throws {
        guard let vici else { return }
        _ = try await vici.terminate(ike: "tunnel", force: true, timeoutMs: 3_000)
    }
}
