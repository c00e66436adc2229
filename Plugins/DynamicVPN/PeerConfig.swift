// vpn.dynamic.peerConfig: what the other side must configure, for both tunnels, as JSON
// and as text in the style of AWS's generic customer-gateway configuration file — but
// written for the peer (the side that is not Warren). The pre-shared keys are never
// printed: the peer already has them (they were agreed out of band or came from AWS).

import Foundation
import IPsec
import WarrenCore

public struct PeerTunnel: Codable, Sendable {
    public var tunnel: String
    public var ikeVersion: Int
    public var ikeProposal: String
    public var espProposal: String
    public var encryption: String
    public var integrity: String
    public var dhGroup: Int
    public var phase1Lifetime: Int
    public var phase2Lifetime: Int
    public var dpdIntervalSeconds: Int
    public var dpdRetries: Int
    public var dpdAction: String
    /// The peer's own outside address (our `peerIp`).
    public var peerOutsideAddress: IPv4Address
    /// Warren's outside address (our `publicIp`): the peer's remote gateway.
    public var warrenOutsideAddress: IPv4Address
    public var insideCidr: IPv4Prefix
    public var peerInsideAddress: IPv4Address
    public var warrenInsideAddress: IPv4Address
    public var peerAsn: UInt32
    public var warrenAsn: UInt32
    public var holdTime: Int
    public var keepalive: Int
    public var natTraversal: String
    public var tcpMssClamp: UInt16
    public var preferred: Bool
}

public struct PeerConfiguration: Codable, Sendable {
    public var vpn: String
    public var advertisedByWarren: [IPv4Prefix]
    public var tunnels: [PeerTunnel]
    public var text: String

    init(record spec: DynamicVpnSpec, backend: String, mss: UInt16) {
        vpn = spec.name
        advertisedByWarren = spec.localSubnets
        tunnels = [("A", spec.ipsecPairingA, spec.bgpPairingA), ("B", spec.ipsecPairingB, spec.bgpPairingB)].map { label, i, b in
            let enc: String
            switch i.effectiveCrypto {
            case "aes128": enc = "aes-128-cbc"
            case "aes256": enc = "aes-256-cbc"
            case "aes128-gcm-16": enc = "aes-128-gcm-16"
            default: enc = "aes-256-gcm-16"
            }
            return PeerTunnel(tunnel: label, ikeVersion: i.effectiveIKEVersion, ikeProposal: i.ikeProposal, espProposal: i.espProposal,
                              encryption: enc, integrity: "hmac-" + i.effectiveHash.replacingOccurrences(of: "2-", with: ""),
                              dhGroup: i.effectiveDHGroup, phase1Lifetime: i.effectivePhase1, phase2Lifetime: i.effectivePhase2,
                              dpdIntervalSeconds: 10, dpdRetries: max(3, i.effectiveDPDTimeout / 10), dpdAction: i.effectiveDPDAction,
                              peerOutsideAddress: i.peerIp, warrenOutsideAddress: i.publicIp, insideCidr: b.network,
                              peerInsideAddress: b.effectivePeerIp, warrenInsideAddress: b.localIp,
                              peerAsn: b.remoteAsn, warrenAsn: b.localAsn, holdTime: b.effectiveHold, keepalive: b.effectiveKeepalive,
                              natTraversal: backend == "libipsec" ? "always (ESP in UDP 4500)" : "when NAT is detected",
                              tcpMssClamp: mss, preferred: label == "A")
        }
        text = PeerConfiguration.render(spec.name, tunnels, spec.localSubnets)
    }

    static func render(_ name: String, _ tunnels: [PeerTunnel], _ subnets: [IPv4Prefix]) -> String {
        var out = """
        Warren DynamicVPN "\(name)" — configuration for the peer gateway (the AWS-side of this VPN)
        ================================================================================
        Two tunnels, each with its own IKE SA, IPsec SA and BGP session. Warren prefers
        tunnel A (it announces its prefixes over B with a longer AS path and MED 200), so
        configure the peer to prefer A too, and to accept traffic on either tunnel.
        Warren announces: \(subnets.map(\.description).joined(separator: ", "))

        """
        for (n, t) in tunnels.enumerated() {
            out += """

            IPSec Tunnel #\(n + 1) (Warren tunnel \(t.tunnel)\(t.preferred ? ", preferred" : ""))
            --------------------------------------------------------------------------------
            #1: Internet Key Exchange Configuration
              - IKE version                : IKEv\(t.ikeVersion)\(t.ikeVersion == 1 ? " (main mode)" : "")
              - Authentication method      : pre-shared key (the key configured for tunnel \(t.tunnel); not shown)
              - Encryption algorithm       : \(t.encryption)
              - Authentication algorithm   : \(t.integrity)
              - Diffie-Hellman             : group \(t.dhGroup)
              - Lifetime                   : \(t.phase1Lifetime) seconds
              - strongSwan proposal        : \(t.ikeProposal)

            #2: IPSec Configuration
              - Protocol                   : ESP, tunnel mode
              - Encryption algorithm       : \(t.encryption)
              - Authentication algorithm   : \(t.integrity)
              - Perfect forward secrecy    : Diffie-Hellman group \(t.dhGroup)
              - Lifetime                   : \(t.phase2Lifetime) seconds
              - strongSwan proposal        : \(t.espProposal)
              - Traffic selectors          : 0.0.0.0/0 <-> 0.0.0.0/0 (route-based)
              - Dead peer detection        : every \(t.dpdIntervalSeconds) s, \(t.dpdRetries) retries, action \(t.dpdAction)
              - NAT traversal              : \(t.natTraversal)
              - TCP MSS                    : Warren clamps SYNs into the tunnel to \(t.tcpMssClamp); clamp yours to at most \(t.tcpMssClamp)

            #3: Tunnel Interface Configuration
              Outside IP addresses
              - Your (peer) gateway        : \(t.peerOutsideAddress)
              - Warren gateway (remote)    : \(t.warrenOutsideAddress)
              Inside IP addresses (\(t.insideCidr))
              - Your tunnel interface      : \(t.peerInsideAddress)/30
              - Warren tunnel interface    : \(t.warrenInsideAddress)/30

            #4: Border Gateway Protocol Configuration
              - Your ASN                   : \(t.peerAsn)
              - Neighbor (Warren) IP       : \(t.warrenInsideAddress)
              - Neighbor (Warren) ASN      : \(t.warrenAsn)
              - Hold time / keepalive      : \(t.holdTime) s / \(t.keepalive) s
              - Announce your VPC prefixes (at most 100); Warren rejects a default route,
                link-local prefixes and anything containing either gateway's outside address.

            """
        }
        return out
    }
}
