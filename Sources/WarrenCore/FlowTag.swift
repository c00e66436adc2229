// Flow tags: the names of the things a flow's decision depended on.
//
// The simulator tags every flow with each device, port, chain, route prefix, MAC entry
// and ARP entry it consulted; every topology or learned-state change returns the tags
// it affects; the flow table removes exactly the flows carrying those tags. A tag is a
// 64-bit digest: a collision can only invalidate a flow needlessly, never keep a stale one.
//
// Route tags are per (router, prefix). A route added for prefix P can only change the
// decision of a flow whose chosen route's prefix contains P (P is more specific, or the
// same prefix with another weight), so adding or removing P invalidates the tags of P
// and of every shorter prefix containing it — 33 tags at most. A flow that found no
// route carries the tag of 0.0.0.0/0, which every route change touches.
// Threading: plain values.

public struct FlowTag: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable static func make(_ kind: UInt64, _ a: UInt64, _ b: UInt64 = 0) -> FlowTag {
        FlowTag(rawValue: mix64(mix64(kind &* 0x100_0000_01B3 ^ a) ^ b))
    }

    /// Anything about a bridge or router (its ports list, admin state, chains).
    public static func device(_ id: ResourceID) -> FlowTag { make(1, id.digest) }
    /// Anything about one port (binding, admin state, address, chains).
    public static func port(_ id: ResourceID) -> FlowTag { make(2, id.digest) }
    /// The rules of a chain.
    public static func chain(_ id: ResourceID) -> FlowTag { make(3, id.digest) }
    /// The routes of `router` for exactly `prefix`.
    public static func route(router: ResourceID, prefix: IPv4Prefix) -> FlowTag {
        make(4, router.digest, UInt64(prefix.address.rawValue) << 8 | UInt64(prefix.length))
    }
    /// The MAC table entry of `mac` in `vlan` on `bridge`.
    public static func mac(bridge: ResourceID, vlan: UInt16, mac: MACAddress) -> FlowTag {
        make(5, bridge.digest, mac.rawValue << 12 | UInt64(vlan & 0x0FFF))
    }
    /// The ARP entry of `ip` on `router`.
    public static func arp(router: ResourceID, ip: IPv4Address) -> FlowTag {
        make(6, router.digest, UInt64(ip.rawValue))
    }

    /// The tags a route change for `prefix` on `router` invalidates: `prefix` and every
    /// shorter prefix containing it.
    public static func routeChange(router: ResourceID, prefix: IPv4Prefix) -> [FlowTag] {
        (0...prefix.length).map { l in
            route(router: router, prefix: IPv4Prefix(containing: prefix.address, length: l))
        }
    }

    public var description: String { "tag:" + String(rawValue, radix: 16) }
}
