// LearnedState: what the virtual devices learn from traffic — bridge MAC tables and
// router ARP tables — with aging. Time is passed in (nanoseconds of a monotonic clock).
//
// The simulator never mutates it; it reports `LearningEffect`s and the owner (the
// datapath thread) applies them here. Applying an effect or expiring entries returns
// the flow tags of the entries that appeared, moved or vanished, so flows that flooded
// for an unknown MAC, or waited on a now-stale ARP entry, are invalidated. Refreshing
// an entry that did not change invalidates nothing.
// Threading: plain value, owned by one thread.

public struct MACEntryKey: Hashable, Sendable {
    public let vlan: UInt16
    public let mac: MACAddress
    public init(vlan: UInt16, mac: MACAddress) { self.vlan = vlan; self.mac = mac }
}

public struct MACEntry: Hashable, Sendable {
    public var port: ResourceID
    public var lastSeen: UInt64
}

public struct ARPEntry: Hashable, Sendable {
    public var mac: MACAddress
    public var port: ResourceID
    public var learnedAt: UInt64
}

/// Something the simulator learned while walking a packet.
public enum LearningEffect: Hashable, Sendable {
    /// `mac` (in `vlan`) was seen entering `bridge` through `port`.
    case mac(bridge: ResourceID, vlan: UInt16, mac: MACAddress, port: ResourceID)
    /// `ip` is at `mac`, reached through router port `port`.
    case arp(router: ResourceID, ip: IPv4Address, mac: MACAddress, port: ResourceID)
}

public struct LearnedState: Sendable {
    public private(set) var macTables: [ResourceID: [MACEntryKey: MACEntry]] = [:]
    public private(set) var arpTables: [ResourceID: [IPv4Address: ARPEntry]] = [:]

    public init() {}

    /// The port `mac` was learned on, if the entry is younger than `aging` nanoseconds.
    @inlinable
    public func macLookup(bridge: ResourceID, vlan: UInt16, mac: MACAddress, now: UInt64, aging: UInt64) -> MACEntry? {
        guard let e = macTables[bridge]?[MACEntryKey(vlan: vlan, mac: mac)], e.lastSeen &+ aging > now else { return nil }
        return e
    }

    @inlinable
    public func arpLookup(router: ResourceID, ip: IPv4Address, now: UInt64, aging: UInt64) -> ARPEntry? {
        guard let e = arpTables[router]?[ip], e.learnedAt &+ aging > now else { return nil }
        return e
    }

    /// Applies one effect at time `now`; returns the tags of what changed.
    public mutating func apply(_ effect: LearningEffect, now: UInt64) -> [FlowTag] {
        switch effect {
        case .mac(let bridge, let vlan, let mac, let port):
            let key = MACEntryKey(vlan: vlan, mac: mac)
            let old = macTables[bridge]?[key]
            macTables[bridge, default: [:]][key] = MACEntry(port: port, lastSeen: now)
            return old?.port == port ? [] : [.mac(bridge: bridge, vlan: vlan, mac: mac)]
        case .arp(let router, let ip, let mac, let port):
            let old = arpTables[router]?[ip]
            arpTables[router, default: [:]][ip] = ARPEntry(mac: mac, port: port, learnedAt: now)
            // A refresh with the same answer keeps flows; a new or changed answer does not.
            return (old?.mac == mac && old?.port == port) ? [] : [.arp(router: router, ip: ip)]
        }
    }

    /// True if applying `effect` would change an entry (not merely refresh it).
    public func isNews(_ effect: LearningEffect) -> Bool {
        switch effect {
        case .mac(let bridge, let vlan, let mac, let port):
            macTables[bridge]?[MACEntryKey(vlan: vlan, mac: mac)]?.port != port
        case .arp(let router, let ip, let mac, let port):
            arpTables[router]?[ip].map { $0.mac != mac || $0.port != port } ?? true
        }
    }

    /// Removes entries older than their device's aging time and entries of devices or
    /// ports that no longer exist. Returns the tags of removed entries.
    public mutating func expire(now: UInt64, topology: Topology) -> [FlowTag] {
        var tags: [FlowTag] = []
        for (bridge, table) in macTables {
            guard let b = topology.bridges[bridge] else {
                macTables[bridge] = nil
                tags += table.keys.map { .mac(bridge: bridge, vlan: $0.vlan, mac: $0.mac) }
                continue
            }
            let aging = UInt64(b.macAgingSeconds) * 1_000_000_000
            let stale = table.filter { $0.value.lastSeen &+ aging <= now || topology.ports[$0.value.port] == nil }
            guard !stale.isEmpty else { continue }
            for k in stale.keys {
                macTables[bridge]![k] = nil
                tags.append(.mac(bridge: bridge, vlan: k.vlan, mac: k.mac))
            }
        }
        for (router, table) in arpTables {
            guard let r = topology.routers[router] else {
                arpTables[router] = nil
                tags += table.keys.map { .arp(router: router, ip: $0) }
                continue
            }
            let aging = UInt64(r.arpAgingSeconds) * 1_000_000_000
            let stale = table.filter { $0.value.learnedAt &+ aging <= now || topology.ports[$0.value.port] == nil }
            guard !stale.isEmpty else { continue }
            for ip in stale.keys {
                arpTables[router]![ip] = nil
                tags.append(.arp(router: router, ip: ip))
            }
        }
        return tags
    }

    /// Forgets everything learned on one port (it was unbound, unlinked or deleted).
    public mutating func forget(port: ResourceID) -> [FlowTag] {
        var tags: [FlowTag] = []
        for (bridge, table) in macTables {
            for (k, e) in table where e.port == port {
                macTables[bridge]![k] = nil
                tags.append(.mac(bridge: bridge, vlan: k.vlan, mac: k.mac))
            }
        }
        for (router, table) in arpTables {
            for (ip, e) in table where e.port == port {
                arpTables[router]![ip] = nil
                tags.append(.arp(router: router, ip: ip))
            }
        }
        return tags
    }

    public var macEntryCount: Int { macTables.values.reduce(0) { $0 + $1.count } }
    public var arpEntryCount: Int { arpTables.values.reduce(0) { $0 + $1.count } }
}
