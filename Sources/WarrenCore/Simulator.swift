// Simulator: walks one packet through the virtual devices and says what to do with it.
//
// From the ingress port the packet enters a device (bridge or router); each device
// decides — forward to one port, flood to several, answer with generated packets, or
// drop with a reason — and a packet leaving through an interior port enters the peer's
// device. A bound on devices traversed turns loops into drops.
//
// The result is everything the datapath needs:
// - `actions`: the flow's action list (outputs and header rewrites, see FlowAction);
// - `mask`: every key bit any decision read — a megaflow with this mask gives the same
//   actions for every packet it matches (fields rewritten earlier on the path are not
//   "read" from the packet, so they stay wildcarded);
// - `tags`: every device, port, chain, route prefix, MAC and ARP entry consulted;
// - `generated`: packets to transmit (ARP replies/requests, ICMP errors, TCP resets),
//   already walked through any interior links to the exterior port they leave by;
// - `effects`: MAC and ARP entries learned; `pending`: next hops awaiting ARP;
// - `trace`: each device's decision, for `packet.trace`;
// - `cacheable`: false when the answer depends on more than the key (generated
//   packets quote the payload) or on something not known yet (pending ARP).
//
// Pure: no I/O, no clock (`now` is passed in), no mutation of its inputs.
// Threading: a value; run it on any thread.

/// One device's decision, for traces.
public struct TraceStep: Sendable, Hashable, Codable {
    public var device: String
    public var deviceKind: String
    public var port: String?
    public var decision: String

    public init(device: String, deviceKind: String, port: String?, decision: String) {
        self.device = device
        self.deviceKind = deviceKind
        self.port = port
        self.decision = decision
    }
}

/// A packet the simulation produced, to transmit on an exterior port.
public struct GeneratedPacket: Sendable, Hashable {
    public var port: UInt32
    public var frame: [UInt8]
}

/// A packet is waiting until `router` resolves `ip` by ARP on `port`.
public struct PendingResolution: Sendable, Hashable {
    public var router: ResourceID
    public var ip: IPv4Address
    public var port: ResourceID

    public init(router: ResourceID, ip: IPv4Address, port: ResourceID) {
        self.router = router
        self.ip = ip
        self.port = port
    }
}

public struct SimulationResult: Sendable {
    public var key: FlowKey
    public var mask: FlowMask = .wildcardAll
    public var actions: [FlowAction] = []
    public var tags: [FlowTag] = []
    public var generated: [GeneratedPacket] = []
    public var effects: [LearningEffect] = []
    public var pending: [PendingResolution] = []
    public var trace: [TraceStep] = []
    /// Exterior port numbers the packet is output on.
    public var outputs: [UInt32] = []
    /// Why branches of the packet were dropped.
    public var drops: [String] = []
    public var cacheable = true

    /// The megaflow to install.
    public var match: FlowMatch { FlowMatch(key: key, mask: mask) }
}

public struct Simulator: Sendable {
    public var topology: Topology
    public var learned: LearnedState
    /// Devices a packet may traverse before it is dropped as looping.
    public var maxDeviceHops = 16
    /// Levels of generated packets (a reply to a reply...) followed through interior links.
    public var maxGeneratedDepth = 3

    public init(topology: Topology, learned: LearnedState = LearnedState()) {
        self.topology = topology
        self.learned = learned
    }

    /// Simulates `frame` arriving on exterior port `inPort` at time `now` (ns).
    /// A frame that does not parse is dropped with the parse error as reason.
    public func simulate(frame: UnsafeRawBufferPointer, inPort: UInt32, now: UInt64, trace: Bool = false) -> SimulationResult {
        let layout: FrameLayout
        do { layout = try FrameLayout.parse(frame) } catch {
            var r = SimulationResult(key: .zero)
            r.mask = .exact
            r.cacheable = false
            r.drops = ["malformed frame: \(error)"]
            return r
        }
        let key = FlowKey(frame: frame, layout: layout, inPort: inPort)
        let run = SimulationRun(sim: self, frame: frame, layout: layout, key: key, now: now,
                                trace: trace, learned: learned, depth: 0)
        run.mask.formUnion(.inPort)
        guard let portID = topology.portsByNumber[inPort], let port = topology.ports[portID] else {
            run.drop("no port has number \(inPort)", device: nil, port: nil)
            return run.finish()
        }
        var path = PathState(key: key)
        run.ingress(port, &path)
        return run.finish()
    }

    /// Simulates a frame given as bytes.
    public func simulate(frame: [UInt8], inPort: UInt32, now: UInt64, trace: Bool = false) -> SimulationResult {
        frame.withUnsafeBytes { simulate(frame: $0, inPort: inPort, now: now, trace: trace) }
    }
}

/// The header state along one path through the devices.
struct PathState {
    var key: FlowKey
    /// Fields rewritten on this path (reading them no longer depends on the packet).
    var modified: UInt8 = 0
    /// Rewrites applied on this path so far, in order.
    var rewrites: [FlowAction] = []
    var hops = 0

    static let ethSrcBit: UInt8 = 1
    static let ethDstBit: UInt8 = 2
    static let vlanBit: UInt8 = 4

    mutating func rewrite(_ a: FlowAction) {
        rewrites.append(a)
        switch a {
        case .setEthSrc(let m): key.ethSrc = m; modified |= Self.ethSrcBit
        case .setEthDst(let m): key.ethDst = m; modified |= Self.ethDstBit
        case .decrementTTL: key.ipTTL = key.ipTTL &- 1
        case .pushVLAN(let v): key.vlanTCI = 0x1000 | v; modified |= Self.vlanBit
        case .popVLAN: key.vlanTCI = 0; modified |= Self.vlanBit
        default: break
        }
    }
}

/// The mutable state of one simulation (and of nested simulations of generated packets).
final class SimulationRun {
    let sim: Simulator
    let topology: Topology
    let frame: UnsafeRawBufferPointer
    let layout: FrameLayout
    let key: FlowKey
    let now: UInt64
    let tracing: Bool
    let depth: Int
    /// Learned state plus what this simulation learned so far.
    var learned: LearnedState

    var mask = FlowMask.wildcardAll
    var actions: [FlowAction] = []
    var emitted: [FlowAction] = []
    /// Tags as consulted (duplicates allowed; `finish` sorts and dedupes them: cheaper than a
    /// Set, which would hash every insert and grow several times per simulation).
    var tags = TagList()
    var generated: [GeneratedPacket] = []
    var effects: [LearningEffect] = []
    var pending: [PendingResolution] = []
    var trace: [TraceStep] = []
    var outputs: [UInt32] = []
    var drops: [String] = []
    var cacheable = true

    init(sim: Simulator, frame: UnsafeRawBufferPointer, layout: FrameLayout, key: FlowKey, now: UInt64,
         trace: Bool, learned: LearnedState, depth: Int) {
        self.sim = sim
        self.topology = sim.topology
        self.frame = frame
        self.layout = layout
        self.key = key
        self.now = now
        self.tracing = trace
        self.learned = learned
        self.depth = depth
    }

    func finish() -> SimulationResult {
        var r = SimulationResult(key: key)
        r.mask = mask
        r.actions = actions
        r.tags = tags.sortedUnique()
        r.generated = generated
        r.effects = effects
        r.pending = pending
        r.trace = trace
        r.outputs = outputs
        r.drops = drops
        r.cacheable = cacheable
        return r
    }

    // MARK: reading fields (records the mask)

    func read(_ field: FlowMask) { mask.formUnion(field) }

    func ethSrc(_ p: PathState) -> MACAddress {
        if p.modified & PathState.ethSrcBit == 0 { mask.formUnion(.ethSrc) }
        return p.key.ethSrc
    }

    func ethDst(_ p: PathState) -> MACAddress {
        if p.modified & PathState.ethDstBit == 0 { mask.formUnion(.ethDst) }
        return p.key.ethDst
    }

    func vlanTCI(_ p: PathState) -> UInt16 {
        if p.modified & PathState.vlanBit == 0 { mask.formUnion(.vlanTCI) }
        return p.key.vlanTCI
    }

    // MARK: trace and outcomes

    func step(_ device: String, _ kind: String, _ port: String?, _ decision: @autoclosure () -> String) {
        if tracing { trace.append(TraceStep(device: device, deviceKind: kind, port: port, decision: decision())) }
    }

    func drop(_ reason: String, device: String?, port: String?, kind: String = "") {
        drops.append(reason)
        if tracing { trace.append(TraceStep(device: device ?? "-", deviceKind: kind, port: port, decision: "drop: " + reason)) }
    }

    func output(_ port: Port, _ p: PathState) {
        if emitted != p.rewrites {
            if p.rewrites.count >= emitted.count && Array(p.rewrites.prefix(emitted.count)) == emitted {
                actions += p.rewrites[emitted.count...]
            } else {
                if !emitted.isEmpty { actions.append(.restore) }
                actions += p.rewrites
            }
            emitted = p.rewrites
        }
        actions.append(.output(port.number))
        outputs.append(port.number)
    }

    // MARK: devices

    /// The packet enters the device of `port` through it.
    func ingress(_ port: Port, _ p: inout PathState) {
        p.hops += 1
        let deviceName = topology.deviceName(port.device)
        guard p.hops <= sim.maxDeviceHops else {
            drop("loop: more than \(sim.maxDeviceHops) devices traversed", device: deviceName, port: port.name)
            return
        }
        tags.insert(.port(port.id))
        tags.insert(.device(port.device))
        guard port.adminUp else { drop("port \(port.name) is administratively down", device: deviceName, port: port.name); return }
        if let b = topology.bridges[port.device] {
            guard b.adminUp else { drop("bridge is administratively down", device: b.name, port: port.name, kind: "bridge"); return }
            switch evaluateChain(port.inboundChain, p) {
            case .accept: break
            case .drop(let why):
                drop("inbound chain of port \(port.name): \(why)", device: b.name, port: port.name, kind: "bridge")
                return
            case .reject(let why):
                drop("inbound chain of port \(port.name): \(why)", device: b.name, port: port.name, kind: "bridge")
                reject(p, via: port, fromMAC: p.key.ethDst, fromIP: p.key.ipDst)
                return
            }
            bridgeIngress(b, port, &p)
        } else if let r = topology.routers[port.device] {
            guard r.adminUp else { drop("router is administratively down", device: r.name, port: port.name, kind: "router"); return }
            switch evaluateChain(port.inboundChain, p) {
            case .accept: break
            case .drop(let why):
                drop("inbound chain of port \(port.name): \(why)", device: r.name, port: port.name, kind: "router")
                return
            case .reject(let why):
                drop("inbound chain of port \(port.name): \(why)", device: r.name, port: port.name, kind: "router")
                reject(p, via: port, fromMAC: port.mac, fromIP: port.address?.address ?? p.key.ipDst)
                return
            }
            routerIngress(r, port, &p)
        } else {
            drop("port \(port.name) belongs to no device", device: nil, port: port.name)
        }
    }

    /// The packet leaves its device through `port`.
    func egress(_ port: Port, _ p: inout PathState, deviceName: String, kind: String) {
        tags.insert(.port(port.id))
        guard port.adminUp else { drop("port \(port.name) is administratively down", device: deviceName, port: port.name, kind: kind); return }
        switch evaluateChain(port.outboundChain, p) {
        case .accept: break
        case .drop(let why):
            drop("outbound chain of port \(port.name): \(why)", device: deviceName, port: port.name, kind: kind)
            return
        case .reject(let why):
            drop("outbound chain of port \(port.name): \(why)", device: deviceName, port: port.name, kind: kind)
            return
        }
        switch port.binding {
        case .exterior:
            step(deviceName, kind, port.name, "output to exterior port \(port.name) (#\(port.number))")
            output(port, p)
        case .interior(let peerID):
            guard let peer = topology.ports[peerID] else {
                drop("peer of port \(port.name) is missing", device: deviceName, port: port.name, kind: kind)
                return
            }
            ingress(peer, &p)
        case .unbound:
            drop("port \(port.name) is not bound", device: deviceName, port: port.name, kind: kind)
        }
    }

    // MARK: bridge

    func bridgeIngress(_ b: Bridge, _ inPort: Port, _ p: inout PathState) {
        let tci = vlanTCI(p)
        let vlan: UInt16
        if let access = inPort.vlan {
            guard tci == 0 else {
                drop("tagged frame on access port \(inPort.name)", device: b.name, port: inPort.name, kind: "bridge")
                return
            }
            vlan = access
        } else {
            vlan = tci & 0x1000 != 0 ? tci & 0x0FFF : 0
        }
        let src = ethSrc(p)
        if src.isUnicast {
            // Reported even when known, so the owner refreshes the entry's age.
            let effect = LearningEffect.mac(bridge: b.id, vlan: vlan, mac: src, port: inPort.id)
            effects.append(effect)
            if learned.isNews(effect) { _ = learned.apply(effect, now: now) }
            tags.insert(.mac(bridge: b.id, vlan: vlan, mac: src))
        }
        let dst = ethDst(p)
        let aging = UInt64(b.macAgingSeconds) * 1_000_000_000
        if dst.isUnicast {
            tags.insert(.mac(bridge: b.id, vlan: vlan, mac: dst))
            if let entry = learned.macLookup(bridge: b.id, vlan: vlan, mac: dst, now: now, aging: aging),
               let out = topology.ports[entry.port] {
                guard out.id != inPort.id else {
                    drop("\(dst) is behind the ingress port (no reflection)", device: b.name, port: inPort.name, kind: "bridge")
                    return
                }
                step(b.name, "bridge", inPort.name, "\(dst) learned on port \(out.name)\(vlan != 0 ? " vlan \(vlan)" : "")")
                bridgeEgress(b, out, vlan: vlan, &p)
                return
            }
        }
        // Broadcast, multicast or unknown unicast: flood within the VLAN.
        let candidates = (topology.devicePorts[b.id] ?? []).compactMap { topology.ports[$0] }.filter {
            $0.id != inPort.id && $0.binding != .unbound && ($0.vlan == nil || $0.vlan == vlan)
        }
        let why = dst.isBroadcast ? "broadcast" : dst.isMulticast ? "multicast" : "unknown unicast \(dst)"
        guard !candidates.isEmpty else {
            drop("\(why): no other port to flood to", device: b.name, port: inPort.name, kind: "bridge")
            return
        }
        step(b.name, "bridge", inPort.name, "\(why): flood to \(candidates.map(\.name).joined(separator: ", "))")
        for out in candidates {
            var branch = p
            bridgeEgress(b, out, vlan: vlan, &branch)
        }
    }

    func bridgeEgress(_ b: Bridge, _ out: Port, vlan: UInt16, _ p: inout PathState) {
        let tagged = p.key.vlanTCI & 0x1000 != 0
        if out.vlan != nil {
            if tagged { p.rewrite(.popVLAN) }
        } else if vlan != 0 && !tagged {
            p.rewrite(.pushVLAN(vlan))
        }
        egress(out, &p, deviceName: b.name, kind: "bridge")
    }

    // MARK: router

    func routerIngress(_ r: Router, _ inPort: Port, _ p: inout PathState) {
        guard let inAddr = inPort.address else {
            drop("router port \(inPort.name) has no address", device: r.name, port: inPort.name, kind: "router")
            return
        }
        guard vlanTCI(p) == 0 else {
            drop("router ports take untagged frames", device: r.name, port: inPort.name, kind: "router")
            return
        }
        read(.ethType)
        let dst = ethDst(p)
        if p.key.ethType == EtherType.arp {
            routerARP(r, inPort, inAddr, dst, p)
            return
        }
        guard p.key.ethType == EtherType.ipv4 else {
            drop("EtherType 0x\(String(p.key.ethType, radix: 16)) is not routed", device: r.name, port: inPort.name, kind: "router")
            return
        }
        guard dst == inPort.mac else {
            drop("not addressed to the router's MAC \(inPort.mac)", device: r.name, port: inPort.name, kind: "router")
            return
        }
        switch evaluateChain(r.preRoutingChain, p) {
        case .accept: break
        case .drop(let why):
            drop("pre-routing chain: \(why)", device: r.name, port: inPort.name, kind: "router")
            return
        case .reject(let why):
            drop("pre-routing chain: \(why)", device: r.name, port: inPort.name, kind: "router")
            reject(p, via: inPort, fromMAC: inPort.mac, fromIP: inAddr.address)
            return
        }
        let ipDst = p.key.ipDst
        if ipDst == .broadcast || ipDst.isMulticast || ipDst == inAddr.network.broadcastAddress {
            read(.ipDst)
            drop("broadcast or multicast destination \(ipDst) is not routed", device: r.name, port: inPort.name, kind: "router")
            return
        }
        let table = topology.routeTables[r.id] ?? RouteTable()
        let lookup = table.lookup(ipDst) { route in
            guard let port = self.topology.ports[route.nextHopPort] else { return false }
            return port.adminUp && port.binding != .unbound
        }
        mask.formUnion(.ipDst(prefix: lookup.maskLength))
        for s in lookup.skipped { tags.insert(.port(s.nextHopPort)) }
        if lookup.isLocal {
            tags.insert(.route(router: r.id, prefix: IPv4Prefix(containing: ipDst, length: 32)))
            deliverLocally(r, inPort, inAddr, ipDst, p)
            return
        }
        read(.ipTTL)
        if p.key.ipTTL <= 1 {
            cacheable = false
            step(r.name, "router", inPort.name, "TTL \(p.key.ipTTL) expires here: ICMP time exceeded to \(p.key.ipSrc)")
            drops.append("TTL exceeded")
            emit(PacketBuilder.icmpError(type: 11, code: 0, about: frame, layout: layout, toMAC: p.key.ethSrc,
                                         fromMAC: inPort.mac, fromIP: inAddr.address), via: inPort)
            return
        }
        guard let prefix = lookup.prefix, !lookup.routes.isEmpty else {
            tags.insert(.route(router: r.id, prefix: .any))
            cacheable = false
            drop("no route to \(ipDst): ICMP network unreachable sent", device: r.name, port: inPort.name, kind: "router")
            emit(PacketBuilder.icmpError(type: 3, code: 0, about: frame, layout: layout, toMAC: p.key.ethSrc,
                                         fromMAC: inPort.mac, fromIP: inAddr.address), via: inPort)
            return
        }
        tags.insert(.route(router: r.id, prefix: prefix))
        var route = lookup.routes[0]
        if lookup.routes.count > 1 {
            read(.ipSrc); read(.ipDst); read(.ipProto); read(.tpSrc); read(.tpDst)
            let h = mix64(p.key.w3 ^ mix64(UInt64(p.key.ipProto) << 32 | (p.key.w4 & 0xFFFF_FFFF)))
            route = lookup.routes[Int(h % UInt64(lookup.routes.count))]
        }
        for rt in lookup.routes { tags.insert(.port(rt.nextHopPort)) }
        guard let outPort = topology.ports[route.nextHopPort], let outAddr = outPort.address else {
            drop("route's port is missing", device: r.name, port: inPort.name, kind: "router")
            return
        }
        let nextHop = route.nextHopGateway ?? ipDst
        step(r.name, "router", inPort.name,
             "route \(route.destination) (\(route.source.rawValue)\(lookup.routes.count > 1 ? ", ECMP 1 of \(lookup.routes.count)" : "")) via port \(outPort.name)"
             + (route.nextHopGateway.map { " gateway \($0)" } ?? ""))
        switch evaluateChain(r.postRoutingChain, p) {
        case .accept: break
        case .drop(let why):
            drop("post-routing chain: \(why)", device: r.name, port: inPort.name, kind: "router")
            return
        case .reject(let why):
            drop("post-routing chain: \(why)", device: r.name, port: inPort.name, kind: "router")
            reject(p, via: inPort, fromMAC: inPort.mac, fromIP: inAddr.address)
            return
        }
        tags.insert(.arp(router: r.id, ip: nextHop))
        let aging = UInt64(r.arpAgingSeconds) * 1_000_000_000
        guard let entry = learned.arpLookup(router: r.id, ip: nextHop, now: now, aging: aging) else {
            cacheable = false
            pending.append(PendingResolution(router: r.id, ip: nextHop, port: outPort.id))
            drop("waiting for ARP resolution of \(nextHop) on port \(outPort.name)", device: r.name, port: outPort.name, kind: "router")
            emit(PacketBuilder.arpRequest(target: nextHop, fromMAC: outPort.mac, fromIP: outAddr.address), via: outPort)
            return
        }
        p.rewrite(.setEthSrc(outPort.mac))
        p.rewrite(.setEthDst(entry.mac))
        p.rewrite(.decrementTTL)
        // A port with an MSS clamp (a tunnel) clamps SYNs in both directions: leaving
        // through it, and entering through it towards the rest of the topology.
        if let mss = [inPort.mssClamp, outPort.mssClamp].compactMap({ $0 }).min() {
            read(.ipProto)
            if p.key.ipProto == IPProtocolNumber.tcp { p.rewrite(.clampMSS(mss)) }
        }
        egress(outPort, &p, deviceName: r.name, kind: "router")
    }

    func routerARP(_ r: Router, _ inPort: Port, _ inAddr: IPv4Interface, _ dst: MACAddress, _ p: PathState) {
        cacheable = false
        guard dst == inPort.mac || dst.isBroadcast else {
            drop("ARP not addressed to the router", device: r.name, port: inPort.name, kind: "router")
            return
        }
        let l3 = layout.l3Offset
        let senderMAC = MACAddress(rawValue: frame.mac(l3 + 8))
        let senderIP = p.key.ipSrc
        let targetIP = p.key.ipDst
        if inAddr.network.contains(senderIP) && senderIP != inAddr.address && senderMAC.isUnicast {
            let effect = LearningEffect.arp(router: r.id, ip: senderIP, mac: senderMAC, port: inPort.id)
            // Reported even when known, so the owner refreshes the entry's age.
            effects.append(effect)
            if learned.isNews(effect) { _ = learned.apply(effect, now: now) }
        }
        switch p.key.arpOp {
        case 1 where targetIP == inAddr.address:
            step(r.name, "router", inPort.name, "ARP request for \(targetIP): reply \(inPort.mac)")
            emit(PacketBuilder.arpReply(to: frame, layout: layout, mac: inPort.mac), via: inPort)
        case 2:
            step(r.name, "router", inPort.name, "ARP reply: \(senderIP) is at \(senderMAC)")
        default:
            drop("ARP for \(targetIP), not the router's address", device: r.name, port: inPort.name, kind: "router")
        }
    }

    func deliverLocally(_ r: Router, _ inPort: Port, _ inAddr: IPv4Interface, _ ipDst: IPv4Address, _ p: PathState) {
        cacheable = false
        read(.ipProto)
        let toMAC = p.key.ethSrc
        switch p.key.ipProto {
        case IPProtocolNumber.icmp where layout.l4Offset != 0 && p.key.tpSrc == 8:
            step(r.name, "router", inPort.name, "ICMP echo request to \(ipDst): reply")
            emit(PacketBuilder.echoReply(to: frame, layout: layout, toMAC: toMAC, mac: inPort.mac, ip: ipDst), via: inPort)
        case IPProtocolNumber.tcp where layout.l4Offset != 0:
            step(r.name, "router", inPort.name, "TCP to the router itself: reset")
            if p.key.tcpFlags & TCPFlags.rst == 0 {
                emit(PacketBuilder.tcpReset(to: frame, layout: layout, toMAC: toMAC, fromMAC: inPort.mac), via: inPort)
            }
        case IPProtocolNumber.udp where layout.l4Offset != 0:
            step(r.name, "router", inPort.name, "UDP to the router itself: ICMP port unreachable")
            emit(PacketBuilder.icmpError(type: 3, code: 3, about: frame, layout: layout, toMAC: toMAC,
                                         fromMAC: inPort.mac, fromIP: ipDst), via: inPort)
        default:
            drop("addressed to the router; nothing to answer", device: r.name, port: inPort.name, kind: "router")
        }
    }

    // MARK: chains

    enum ChainVerdict { case accept, drop(String), reject(String) }

    func evaluateChain(_ id: ResourceID?, _ p: PathState) -> ChainVerdict {
        guard let id, let chain = topology.chains[id] else { return .accept }
        tags.insert(.chain(id))
        for (i, rule) in chain.rules.enumerated() where matches(rule.match, p) {
            let label = "rule \(rule.name ?? String(i + 1)) of chain \(chain.name)"
            switch rule.action {
            case .accept: return .accept
            case .drop: return .drop(label + " drops")
            case .reject: return .reject(label + " rejects")
            }
        }
        switch chain.defaultAction {
        case .accept: return .accept
        case .drop: return .drop("chain \(chain.name) drops by default")
        case .reject: return .reject("chain \(chain.name) rejects by default")
        }
    }

    /// Does `m` match the packet? Reads (and so un-wildcards) exactly the fields `m` names,
    /// stopping at the first mismatch.
    func matches(_ m: RuleMatch, _ p: PathState) -> Bool {
        let k = p.key
        if let v = m.ethSrc, ethSrc(p) != v { return false }
        if let v = m.ethDst, ethDst(p) != v { return false }
        if let v = m.vlan {
            let tci = vlanTCI(p)
            if tci & 0x1000 == 0 || tci & 0x0FFF != v { return false }
        }
        if let v = m.ethType { read(.ethType); if k.ethType != v { return false } }
        let needsIP = m.ipSrc != nil || m.ipDst != nil || m.ipProto != nil || m.tos != nil || m.fragment != nil
            || m.srcPortMin != nil || m.srcPortMax != nil || m.dstPortMin != nil || m.dstPortMax != nil
            || m.icmpType != nil || m.icmpCode != nil
        if needsIP || m.arpOp != nil {
            read(.ethType)
            if needsIP && k.ethType != EtherType.ipv4 { return false }
            if m.arpOp != nil && k.ethType != EtherType.arp { return false }
        }
        if let v = m.arpOp { read(.arpOp); if k.arpOp != v { return false } }
        if let v = m.ipSrc {
            mask.formUnion(.ipSrc(prefix: v.length))
            if !v.contains(k.ipSrc) { return false }
        }
        if let v = m.ipDst {
            mask.formUnion(.ipDst(prefix: v.length))
            if !v.contains(k.ipDst) { return false }
        }
        if let v = m.tos { read(.ipTOS); if k.ipTOS != v { return false } }
        if let v = m.fragment { read(.ipFrag); if (k.ipFrag & 1 != 0) != v { return false } }
        if let v = m.ipProto { read(.ipProto); if k.ipProto != v { return false } }
        let hasPorts = m.srcPortMin != nil || m.srcPortMax != nil || m.dstPortMin != nil || m.dstPortMax != nil
        let hasICMP = m.icmpType != nil || m.icmpCode != nil
        if hasPorts || hasICMP {
            // Transport fields exist only in first fragments of their protocol.
            read(.ipProto); read(.ipFrag)
            if k.ipFrag & 2 != 0 { return false }
            if hasPorts && k.ipProto != IPProtocolNumber.tcp && k.ipProto != IPProtocolNumber.udp { return false }
            if hasICMP && k.ipProto != IPProtocolNumber.icmp { return false }
        }
        if m.srcPortMin != nil || m.srcPortMax != nil {
            read(.tpSrc)
            if k.tpSrc < (m.srcPortMin ?? 0) || k.tpSrc > (m.srcPortMax ?? .max) { return false }
        }
        if m.dstPortMin != nil || m.dstPortMax != nil {
            read(.tpDst)
            if k.tpDst < (m.dstPortMin ?? 0) || k.tpDst > (m.dstPortMax ?? .max) { return false }
        }
        if let v = m.icmpType { read(.tpSrc); if k.tpSrc != UInt16(v) { return false } }
        if let v = m.icmpCode { read(.tpDst); if k.tpDst != UInt16(v) { return false } }
        return true
    }

    /// Answers a rejected packet: a TCP reset for TCP, ICMP administratively prohibited
    /// otherwise, sent back through the port it came in by.
    func reject(_ p: PathState, via port: Port, fromMAC: MACAddress, fromIP: IPv4Address) {
        cacheable = false
        guard layout.etherType == EtherType.ipv4, layout.ipHeaderLength > 0 else { return }
        if layout.l4Offset != 0 && p.key.ipProto == IPProtocolNumber.tcp {
            if p.key.tcpFlags & TCPFlags.rst == 0 {
                emit(PacketBuilder.tcpReset(to: frame, layout: layout, toMAC: p.key.ethSrc, fromMAC: fromMAC), via: port)
            }
        } else if !(p.key.ipProto == IPProtocolNumber.icmp && p.key.tpSrc != 8 && p.key.tpSrc != 13) {
            // Never answer an ICMP error with an ICMP error.
            emit(PacketBuilder.icmpError(type: 3, code: 13, about: frame, layout: layout, toMAC: p.key.ethSrc,
                                         fromMAC: fromMAC, fromIP: fromIP), via: port)
        }
    }

    // MARK: generated packets

    /// Sends a generated frame out of `port`: straight to the wire for exterior ports,
    /// through the peer device for interior ones.
    func emit(_ bytes: [UInt8], via port: Port) {
        switch port.binding {
        case .exterior:
            generated.append(GeneratedPacket(port: port.number, frame: bytes))
        case .interior(let peerID):
            guard depth < sim.maxGeneratedDepth, let peer = topology.ports[peerID] else { return }
            bytes.withUnsafeBytes { raw in
                guard let l = try? FrameLayout.parse(raw) else { return }
                let k = FlowKey(frame: raw, layout: l, inPort: 0)
                let nested = SimulationRun(sim: sim, frame: raw, layout: l, key: k, now: now, trace: tracing,
                                           learned: learned, depth: depth + 1)
                var path = PathState(key: k)
                nested.ingress(peer, &path)
                learned = nested.learned
                effects += nested.effects
                pending += nested.pending
                generated += nested.generated
                if tracing { trace += nested.trace.map { var s = $0; s.decision = "(generated) " + s.decision; return s } }
                var sink = CollectingSink()
                defer { sink.release() }
                _ = nested.actions.withUnsafeBufferPointer { acts in
                    ActionExecutor.execute(acts, frame: raw, layout: l, sink: &sink)
                }
                generated += sink.packets
            }
        case .unbound:
            break
        }
    }
}

/// A sink that copies each output into a new array (slow path only). Call `release()`
/// when done.
public struct CollectingSink: PacketSink {
    public var packets: [GeneratedPacket] = []
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_600, alignment: 16)

    public init() {}

    public mutating func buffer(for port: UInt32) -> UnsafeMutableRawBufferPointer? { scratch }

    public mutating func commit(port: UInt32, length: Int) {
        packets.append(GeneratedPacket(port: port, frame: Array(UnsafeRawBufferPointer(rebasing: scratch[0..<length]))))
    }

    public func release() { scratch.deallocate() }
}

/// An append-only list of flow tags, sorted and deduplicated once at the end.
struct TagList {
    private var items: [FlowTag] = []

    init() { items.reserveCapacity(16) }

    mutating func insert(_ tag: FlowTag) { items.append(tag) }

    func sortedUnique() -> [FlowTag] {
        var out = items.sorted { $0.rawValue < $1.rawValue }
        guard out.count > 1 else { return out }
        var w = 1
        for r in 1..<out.count where out[r] != out[w - 1] {
            out[w] = out[r]
            w += 1
        }
        out.removeLast(out.count - w)
        return out
    }
}
