// DynamicVPN API types and validation.
//
// Field names follow the original proposal (API.md): DynamicVpn { name, virtualRouter,
// ipsecPairingA/B, bgpPairingA/B, localSubnets }. Validation checks everything before
// anything is created and names the offending field ("bgpPairingB.localIp").

import Foundation
import IPsec
import WarrenCore
import WarrenRPC

public struct BgpIpsecPairing: Codable, Sendable, Hashable {
    /// Our ASN (1–2147483647).
    public var localAsn: UInt32
    /// The peer's ASN (AWS: 64512–65534, 4200000000–4294967294, or 7224).
    public var remoteAsn: UInt32
    /// Our inside address, e.g. 169.254.10.2 (the /30's customer host).
    public var localIp: IPv4Address
    /// The peer's inside address; inferred as the other host of the /30 when omitted.
    public var peerIp: IPv4Address?
    public var holdTime: Int?
    public var keepalive: Int?

    public var effectiveHold: Int { holdTime ?? 30 }
    public var effectiveKeepalive: Int { keepalive ?? 10 }
    /// The inside /30.
    public var network: IPv4Prefix { IPv4Prefix(containing: localIp, length: 30) }
    public var effectivePeerIp: IPv4Address {
        if let p = peerIp { return p }
        let base = network.address.rawValue
        return IPv4Address(rawValue: localIp.rawValue == base + 1 ? base + 2 : base + 1)
    }

    static let reserved: [IPv4Prefix] = (0...5).map { IPv4Prefix("169.254.\($0).0/30")! } + [IPv4Prefix("169.254.169.252/30")!]

    func validate(field f: String) throws {
        func bad(_ n: String, _ r: String) -> RPCError { .invalidParams(field: "\(f).\(n)", reason: r) }
        guard (1...2_147_483_647).contains(localAsn) else { throw bad("localAsn", "must be 1–2147483647") }
        let aws = remoteAsn == 7224 || (64512...65534).contains(remoteAsn) || (4_200_000_000...4_294_967_294).contains(remoteAsn)
        guard aws else { throw bad("remoteAsn", "must be 64512–65534, 4200000000–4294967294 or 7224 (AWS side)") }
        guard localAsn != remoteAsn else { throw bad("remoteAsn", "must differ from localAsn (the session is eBGP)") }
        guard IPv4Prefix("169.254.0.0/16")!.contains(localIp) else { throw bad("localIp", "must be in 169.254.0.0/16") }
        if let r = BgpIpsecPairing.reserved.first(where: { $0.contains(localIp) }) {
            throw bad("localIp", "\(r) is reserved by AWS; choose another /30 of 169.254.0.0/16")
        }
        let net = network
        guard localIp != net.address, localIp != net.broadcastAddress else { throw bad("localIp", "must be a host address of its /30 (.1 or .2), not \(localIp)") }
        let peer = effectivePeerIp
        guard net.contains(peer), peer != net.address, peer != net.broadcastAddress, peer != localIp else {
            throw bad("peerIp", "must be the other host of \(net) (\(localIp) is ours)")
        }
        guard (3...65535).contains(effectiveHold) || effectiveHold == 0 else { throw bad("holdTime", "must be 0 or 3–65535 seconds") }
        guard effectiveKeepalive >= 1, effectiveHold == 0 || effectiveKeepalive < effectiveHold else {
            throw bad("keepalive", "must be at least 1 and less than holdTime (\(effectiveHold))")
        }
    }
}

/// `vpn.dynamic.create` parameters: the DynamicVpn object.
public struct DynamicVpnSpec: Codable, Sendable, Hashable {
    public var name: String
    /// The tenant router (ID or name).
    public var virtualRouter: String
    public var ipsecPairingA: IpsecPairing
    public var ipsecPairingB: IpsecPairing
    public var bgpPairingA: BgpIpsecPairing
    public var bgpPairingB: BgpIpsecPairing
    /// Advertised to the peer over BGP.
    public var localSubnets: [IPv4Prefix]
    /// Most prefixes accepted from the peer per session (default 100).
    public var maxPrefixes: Int?

    public var effectiveMaxPrefixes: Int { maxPrefixes ?? 100 }

    /// Checks the spec on its own (no topology); the plugin adds the cross checks.
    func validate() throws {
        guard !name.isEmpty, name.count <= 64, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw RPCError.invalidParams(field: "name", reason: "1–64 characters of letters, digits, '-', '_', '.'")
        }
        try ipsecPairingA.validate(field: "ipsecPairingA")
        try ipsecPairingB.validate(field: "ipsecPairingB")
        guard ipsecPairingA.publicIp != ipsecPairingB.publicIp else {
            throw RPCError.invalidParams(field: "ipsecPairingB.publicIp", reason: "the two tunnels need two public IPs")
        }
        guard ipsecPairingA.peerIp != ipsecPairingB.peerIp else {
            throw RPCError.invalidParams(field: "ipsecPairingB.peerIp", reason: "the two tunnels go to two peer gateways")
        }
        try bgpPairingA.validate(field: "bgpPairingA")
        try bgpPairingB.validate(field: "bgpPairingB")
        guard !bgpPairingA.network.overlaps(bgpPairingB.network) else {
            throw RPCError.invalidParams(field: "bgpPairingB.localIp", reason: "both tunnels are on \(bgpPairingA.network); each needs its own /30")
        }
        guard (1...1000).contains(effectiveMaxPrefixes) else { throw RPCError.invalidParams(field: "maxPrefixes", reason: "must be 1–1000") }
        guard localSubnets.count <= 100 else { throw RPCError.invalidParams(field: "localSubnets", reason: "at most 100 prefixes (AWS accepts 100 from a customer gateway)") }
        for (i, s) in localSubnets.enumerated() {
            if s.length == 0 { throw RPCError.invalidParams(field: "localSubnets[\(i)]", reason: "a default route cannot be advertised") }
            if IPv4Prefix("169.254.0.0/16")!.overlaps(s) { throw RPCError.invalidParams(field: "localSubnets[\(i)]", reason: "\(s) is link-local") }
            for (j, o) in localSubnets.enumerated() where j < i && o.overlaps(s) {
                throw RPCError.invalidParams(field: "localSubnets[\(i)]", reason: "\(s) overlaps localSubnets[\(j)] \(o)")
            }
        }
    }
}

/// Partial update: fields given replace the current ones.
public struct DynamicVpnUpdate: Codable, Sendable {
    /// The VPN (ID or name).
    public var id: String
    public var ipsecPairingA: IpsecPairing?
    public var ipsecPairingB: IpsecPairing?
    public var bgpPairingA: BgpIpsecPairing?
    public var bgpPairingB: BgpIpsecPairing?
    public var localSubnets: [IPv4Prefix]?
    public var maxPrefixes: Int?
}

/// One tunnel's truth.
public struct TunnelView: Codable, Sendable, Hashable {
    /// "A" or "B".
    public var tunnel: String
    /// "up", "ipsec up, bgp down", "connecting", "down".
    public var state: String
    /// Carries traffic now (the preferred tunnel that is up).
    public var active: Bool
    public var ikeState: String
    public var childState: String
    public var bgpState: String
    public var bgpLastError: String?
    public var prefixesReceived: Int
    public var prefixesAdvertised: Int
    /// Learned routes currently injected into the tenant router through this tunnel.
    public var routesInjected: Int
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var charon: String
    public var bird: String
    public var lastChange: String
    public var lastChangeReason: String
}

public struct BgpPairingView: Codable, Sendable, Hashable {
    public var localAsn: UInt32
    public var remoteAsn: UInt32
    public var localIp: IPv4Address
    public var peerIp: IPv4Address
    public var holdTime: Int
    public var keepalive: Int
}

public struct DynamicVpnView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var virtualRouter: String
    public var virtualRouterId: ResourceID
    /// "up" (both tunnels), "degraded" (one), "down", or "error: …".
    public var state: String
    public var ipsecPairingA: IpsecPairingView
    public var ipsecPairingB: IpsecPairingView
    public var bgpPairingA: BgpPairingView
    public var bgpPairingB: BgpPairingView
    public var localSubnets: [IPv4Prefix]
    public var maxPrefixes: Int
    public var tunnels: [TunnelView]
}

struct VpnSelector: Codable, Sendable {
    /// ID or name.
    var id: String
}

struct OptionalVpnSelector: Codable, Sendable {
    var id: String?
}

struct DynamicVpnList: Codable, Sendable {
    var items: [DynamicVpnView]
}

struct DynamicStatusResult: Codable, Sendable {
    var items: [DynamicVpnView]
}

extension BgpIpsecPairing {
    var view: BgpPairingView {
        BgpPairingView(localAsn: localAsn, remoteAsn: remoteAsn, localIp: localIp, peerIp: effectivePeerIp,
                       holdTime: effectiveHold, keepalive: effectiveKeepalive)
    }
}
