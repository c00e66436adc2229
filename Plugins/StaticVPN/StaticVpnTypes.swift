// StaticVPN API types: a CloudStack-style policy-based site-to-site connection.
//
// `ipsecPairing` takes the AWS-style fields of IpsecPairing and also CloudStack's
// customer-gateway options by their own names (`ikepolicy`, `esppolicy`,
// `ikelifetime`, `esplifetime`, `dpd`, `forceencap`, `ikeversion`, `splitconnections`,
// `passive`); where both are given, the CloudStack option wins.

import Foundation
import IPsec
import WarrenCore
import WarrenRPC

public struct StaticIpsecPairing: Codable, Sendable, Hashable {
    public var publicIp: IPv4Address
    public var peerIp: IPv4Address
    public var preSharedKey: Secret
    // AWS-style fields (used when the CloudStack policy strings are absent).
    public var dhGroup: Int?
    public var hashAlg: String?
    public var cryptoAlg: String?
    public var ikeVersion: Int?
    public var phase1Lifetime: Int?
    public var phase2Lifetime: Int?
    public var dpdTimeout: Int?
    public var dpdAction: String?
    // CloudStack customer-gateway options.
    /// "cipher-hash;dhgroup", e.g. "aes128-sha1;modp1536" (the group is required).
    public var ikepolicy: String?
    /// "cipher-hash[;dhgroup]"; a group turns on PFS.
    public var esppolicy: String?
    /// Seconds, at most 86400 (default 86400).
    public var ikelifetime: Int?
    /// Seconds, at most 86400 (default 3600).
    public var esplifetime: Int?
    /// Dead peer detection (default on: a restarted peer is found and the tunnel restarts).
    public var dpd: Bool?
    /// Always encapsulate ESP in UDP (libipsec always does).
    public var forceencap: Bool?
    /// "ike" (either), "ikev1" or "ikev2".
    public var ikeversion: String?
    /// One CHILD_SA per (local, remote) subnet pair (default true; always with IKEv1).
    public var splitconnections: Bool?
    /// Wait for the peer to initiate.
    public var passive: Bool?

    static let ciphers = ["3des", "aes128", "aes192", "aes256"]
    static let hashes = ["md5", "sha1", "sha256", "sha384", "sha512"]
    static let groups = ["modp768", "modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "modp6144", "modp8192"]

    /// Parses a CloudStack policy string into a strongSwan proposal.
    static func proposal(_ policy: String, field: String, groupRequired: Bool) throws -> String {
        let parts = policy.lowercased().split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, !parts[0].isEmpty else {
            throw RPCError.invalidParams(field: field, reason: "expected cipher-hash;dhgroup, e.g. aes128-sha1;modp1536")
        }
        let algs = parts[0].split(separator: "-").map(String.init)
        guard algs.count == 2, ciphers.contains(algs[0]) else {
            throw RPCError.invalidParams(field: field, reason: "cipher must be one of \(ciphers.joined(separator: ", "))")
        }
        guard hashes.contains(algs[1]) else {
            throw RPCError.invalidParams(field: field, reason: "hash must be one of \(hashes.joined(separator: ", "))")
        }
        let group = parts.count == 2 && !parts[1].isEmpty ? parts[1] : nil
        if group == nil && groupRequired {
            throw RPCError.invalidParams(field: field, reason: "a Diffie-Hellman group is required, e.g. \(parts[0]);modp1536")
        }
        if let g = group, !groups.contains(g) {
            throw RPCError.invalidParams(field: field, reason: "DH group must be one of \(groups.joined(separator: ", "))")
        }
        return ([algs[0], algs[1]] + (group.map { [$0] } ?? [])).joined(separator: "-")
    }

    /// CloudStack's PSK rule (no newline, no double quote), plus printable ASCII only, so
    /// nothing odd can ever reach a file or a log line.
    static func validatePSK(_ s: Secret, field: String) throws {
        let v = s.reveal()
        guard (1...128).contains(v.utf8.count) else { throw RPCError.invalidParams(field: field, reason: "must be 1–128 characters") }
        guard !v.contains("\"") else { throw RPCError.invalidParams(field: field, reason: "must not contain a double quote") }
        guard v.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw RPCError.invalidParams(field: field, reason: "must be printable ASCII (no newline or control characters)")
        }
    }

    /// Validates and maps to negotiation parameters.
    func crypto(field f: String) throws -> TunnelCrypto {
        try Self.validatePSK(preSharedKey, field: "\(f).preSharedKey")
        guard publicIp != peerIp else { throw RPCError.invalidParams(field: "\(f).peerIp", reason: "must differ from publicIp") }
        for (n, ip) in [("publicIp", publicIp), ("peerIp", peerIp)] where ip.isMulticast || ip.isLoopback || ip.rawValue == 0 || ip == .broadcast {
            throw RPCError.invalidParams(field: "\(f).\(n)", reason: "\(ip) is not a usable unicast address")
        }
        // Start from the AWS-style fields, validated the same way.
        var base = IpsecPairing(publicIp: publicIp, peerIp: peerIp, preSharedKey: Secret("placeholderKey1"))
        base.dhGroup = dhGroup; base.hashAlg = hashAlg; base.cryptoAlg = cryptoAlg
        base.ikeVersion = ikeVersion; base.dpdTimeout = dpdTimeout; base.dpdAction = dpdAction
        var ikeProposal = "", espProposal = ""
        if ikepolicy == nil || esppolicy == nil {
            if let d = dhGroup, IpsecPairing.dhNames[d] == nil { throw RPCError.invalidParams(field: "\(f).dhGroup", reason: "unknown DH group \(d)") }
            if IpsecPairing.hashes[base.effectiveHash] == nil { throw RPCError.invalidParams(field: "\(f).hashAlg", reason: "must be sha1, sha256, sha384 or sha512") }
            if IpsecPairing.ciphers[base.effectiveCrypto] == nil { throw RPCError.invalidParams(field: "\(f).cryptoAlg", reason: "must be aes128, aes256, aes128-gcm-16 or aes256-gcm-16") }
            ikeProposal = base.ikeProposal
            espProposal = base.espProposal
        }
        if let p = ikepolicy { ikeProposal = try Self.proposal(p, field: "\(f).ikepolicy", groupRequired: true) }
        if let p = esppolicy { espProposal = try Self.proposal(p, field: "\(f).esppolicy", groupRequired: false) }
        let ikeLife = ikelifetime ?? phase1Lifetime ?? 86400
        let espLife = esplifetime ?? phase2Lifetime ?? 3600
        // Name the field the caller gave (the CloudStack option wins when both are).
        guard (300...86400).contains(ikeLife) else {
            throw RPCError.invalidParams(field: "\(f).\(ikelifetime != nil ? "ikelifetime" : "phase1Lifetime")", reason: "must be 300–86400 seconds")
        }
        guard (300...86400).contains(espLife) else {
            throw RPCError.invalidParams(field: "\(f).\(esplifetime != nil ? "esplifetime" : "phase2Lifetime")", reason: "must be 300–86400 seconds")
        }
        let version: Int
        switch ikeversion?.lowercased() {
        case nil: version = ikeVersion ?? 2
        case "ike": version = 0
        case "ikev1": version = 1
        case "ikev2": version = 2
        default: throw RPCError.invalidParams(field: "\(f).ikeversion", reason: "must be ike, ikev1 or ikev2")
        }
        guard [0, 1, 2].contains(version) else { throw RPCError.invalidParams(field: "\(f).ikeVersion", reason: "must be 1 or 2") }
        let action = (dpdAction ?? "restart").lowercased()
        guard ["clear", "none", "restart"].contains(action) else { throw RPCError.invalidParams(field: "\(f).dpdAction", reason: "must be clear, none or restart") }
        let dpdOn = (dpd ?? true) && action != "none"
        return TunnelCrypto(publicIp: publicIp, peerIp: peerIp, preSharedKey: preSharedKey, ikeVersion: version,
                            ikeProposal: ikeProposal, espProposal: espProposal, ikeLifetime: ikeLife, espLifetime: espLife,
                            dpdDelay: dpdOn ? 10 : 0, dpdTimeout: max(30, dpdTimeout ?? 30), dpdAction: action == "none" ? "clear" : action,
                            initiator: !(passive ?? false))
    }

    /// Without the key, for views.
    var view: StaticPairingView {
        StaticPairingView(publicIp: publicIp, peerIp: peerIp, ikepolicy: ikepolicy, esppolicy: esppolicy,
                          ikelifetime: ikelifetime ?? phase1Lifetime ?? 86400, esplifetime: esplifetime ?? phase2Lifetime ?? 3600,
                          dpd: dpd ?? true, forceencap: forceencap ?? true, ikeversion: ikeversion ?? (ikeVersion == 1 ? "ikev1" : "ikev2"),
                          splitconnections: splitconnections ?? true, passive: passive ?? false)
    }
}

public struct StaticPairingView: Codable, Sendable, Hashable {
    public var publicIp: IPv4Address
    public var peerIp: IPv4Address
    public var ikepolicy: String?
    public var esppolicy: String?
    public var ikelifetime: Int
    public var esplifetime: Int
    public var dpd: Bool
    public var forceencap: Bool
    public var ikeversion: String
    public var splitconnections: Bool
    public var passive: Bool
}

public struct StaticVpnSpec: Codable, Sendable, Hashable {
    public var name: String
    public var virtualRouter: String
    public var ipsecPairing: StaticIpsecPairing
    public var localSubnets: [IPv4Prefix]
    public var remoteSubnets: [IPv4Prefix]
}

public struct StaticVpnUpdate: Codable, Sendable {
    public var id: String
    public var ipsecPairing: StaticIpsecPairing?
    public var localSubnets: [IPv4Prefix]?
    public var remoteSubnets: [IPv4Prefix]?
}

public struct StaticChildView: Codable, Sendable, Hashable {
    public var name: String
    public var localSubnet: String
    public var remoteSubnet: String
    public var state: String
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
}

public struct StaticVpnView: Codable, Sendable {
    public var id: ResourceID
    public var name: String
    public var virtualRouter: String
    public var virtualRouterId: ResourceID
    /// "up" (every CHILD_SA installed), "partial", "connecting", "down", "error: …".
    public var state: String
    public var ipsecPairing: StaticPairingView
    public var localSubnets: [IPv4Prefix]
    public var remoteSubnets: [IPv4Prefix]
    public var ikeState: String
    public var children: [StaticChildView]
    public var charon: String
    public var lastChange: String
    public var lastChangeReason: String
}

struct StaticSelector: Codable, Sendable {
    var id: String
}

struct OptionalStaticSelector: Codable, Sendable {
    var id: String?
}

struct StaticVpnList: Codable, Sendable {
    var items: [StaticVpnView]
}
