// IpsecPairing: one IPsec tunnel's parameters as the API takes them (the field names of
// the original proposal), their validation against AWS's ranges, and their mapping to
// strongSwan proposal strings and lifetimes.
//
// The pre-shared key is a `Secret`: it decodes from a string, never encodes its value
// (views print "<redacted>"), never appears in a description or an error, and reaches
// charon only over vici — never a configuration file.

import Foundation
import WarrenCore
import WarrenRPC

/// A secret string (pre-shared key). Its value is only reachable through `reveal()`.
public struct Secret: Codable, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable, JSONSchemaProviding {
    private let value: String

    public init(_ value: String) { self.value = value }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        value = try c.decode(String.self)
    }

    /// Encodes the value: used only for the agent's own store (mode 0600), never in API results.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }

    public func reveal() -> String { value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    /// No children: `dump()` and other reflection see "<redacted>", not the value.
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    public static var jsonSchema: JSONValue {
        ["type": "string", "minLength": 8, "maxLength": 64, "pattern": "^[A-Za-z0-9._]+$", "writeOnly": true,
         "description": "pre-shared key; never returned by any method", "examples": ["example.Key_123"]]
    }
}

public struct IpsecPairing: Codable, Sendable, Hashable {
    /// Our outside address (on the agent's uplink subnet).
    public var publicIp: IPv4Address
    /// The peer gateway's outside address.
    public var peerIp: IPv4Address
    public var preSharedKey: Secret
    /// Diffie-Hellman group (phase 1 and PFS): 2 (AWS baseline), 5 (phase 2 only), 14–24.
    public var dhGroup: Int?
    /// sha1, sha256, sha384, sha512.
    public var hashAlg: String?
    /// aes128, aes256, aes128-gcm-16, aes256-gcm-16.
    public var cryptoAlg: String?
    /// 1 (main mode) or 2.
    public var ikeVersion: Int?
    /// Seconds, 900–28800.
    public var phase1Lifetime: Int?
    /// Seconds, 900–3600, shorter than phase 1.
    public var phase2Lifetime: Int?
    /// Seconds without an answer before the peer is declared dead (≥ 30).
    public var dpdTimeout: Int?
    /// clear, none or restart.
    public var dpdAction: String?
    /// Extension: whether we initiate (default true; the AWS side answers).
    public var initiator: Bool?

    public init(publicIp: IPv4Address, peerIp: IPv4Address, preSharedKey: Secret) {
        self.publicIp = publicIp
        self.peerIp = peerIp
        self.preSharedKey = preSharedKey
    }

    // Effective values with the AWS baseline defaults.
    public var effectiveDHGroup: Int { dhGroup ?? 2 }
    public var effectiveHash: String { (hashAlg ?? "sha1").lowercased() }
    public var effectiveCrypto: String { (cryptoAlg ?? "aes128").lowercased() }
    public var effectiveIKEVersion: Int { ikeVersion ?? 2 }
    public var effectivePhase1: Int { phase1Lifetime ?? 28800 }
    public var effectivePhase2: Int { phase2Lifetime ?? 3600 }
    public var effectiveDPDTimeout: Int { dpdTimeout ?? 30 }
    public var effectiveDPDAction: String { (dpdAction ?? "restart").lowercased() }
    public var isInitiator: Bool { initiator ?? true }

    public static let dhNames: [Int: String] = [
        2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072", 16: "modp4096", 17: "modp6144",
        18: "modp8192", 19: "ecp256", 20: "ecp384", 21: "ecp521", 22: "modp1024s160", 23: "modp2048s224", 24: "modp2048s256",
    ]
    public static let hashes: [String: (integrity: String, prf: String)] = [
        "sha1": ("sha1", "prfsha1"), "sha256": ("sha256", "prfsha256"), "sha2-256": ("sha256", "prfsha256"),
        "sha384": ("sha384", "prfsha384"), "sha2-384": ("sha384", "prfsha384"),
        "sha512": ("sha512", "prfsha512"), "sha2-512": ("sha512", "prfsha512"),
    ]
    public static let ciphers: [String: (name: String, aead: Bool)] = [
        "aes128": ("aes128", false), "aes256": ("aes256", false),
        "aes128-gcm-16": ("aes128gcm16", true), "aes256-gcm-16": ("aes256gcm16", true),
    ]

    /// Checks every field against AWS's rules. `field` is the pairing's path in the
    /// request ("ipsecPairingA"); errors name the full field.
    public func validate(field: String) throws {
        func bad(_ name: String, _ reason: String) -> RPCError { .invalidParams(field: "\(field).\(name)", reason: reason) }
        try IpsecPairing.validatePSK(preSharedKey, field: "\(field).preSharedKey")
        guard publicIp != peerIp else { throw bad("peerIp", "must differ from publicIp") }
        for (name, ip) in [("publicIp", publicIp), ("peerIp", peerIp)] {
            if ip.isMulticast || ip.isLoopback || ip.rawValue == 0 || ip == .broadcast || ip.isLinkLocal {
                throw bad(name, "\(ip) is not a usable unicast address")
            }
        }
        guard IpsecPairing.dhNames[effectiveDHGroup] != nil, effectiveDHGroup != 5 else {
            throw bad("dhGroup", "must be 2 or 14–24 (AWS); got \(effectiveDHGroup)")
        }
        guard IpsecPairing.hashes[effectiveHash] != nil else { throw bad("hashAlg", "must be sha1, sha256, sha384 or sha512") }
        guard IpsecPairing.ciphers[effectiveCrypto] != nil else { throw bad("cryptoAlg", "must be aes128, aes256, aes128-gcm-16 or aes256-gcm-16") }
        guard [1, 2].contains(effectiveIKEVersion) else { throw bad("ikeVersion", "must be 1 or 2") }
        guard (900...28800).contains(effectivePhase1) else { throw bad("phase1Lifetime", "must be 900–28800 seconds") }
        guard (900...3600).contains(effectivePhase2) else { throw bad("phase2Lifetime", "must be 900–3600 seconds") }
        guard effectivePhase2 < effectivePhase1 else { throw bad("phase2Lifetime", "must be shorter than phase1Lifetime (\(effectivePhase1))") }
        guard effectiveDPDTimeout >= 30 && effectiveDPDTimeout <= 3600 else { throw bad("dpdTimeout", "must be 30–3600 seconds") }
        guard ["clear", "none", "restart"].contains(effectiveDPDAction) else { throw bad("dpdAction", "must be clear, none or restart") }
    }

    /// AWS's PSK rule: 8–64 of [A-Za-z0-9._], not starting with 0. Quotes, spaces and
    /// newlines never get past this, so they can never reach a file.
    public static func validatePSK(_ s: Secret, field: String) throws {
        let v = s.reveal()
        guard (8...64).contains(v.count) else { throw RPCError.invalidParams(field: field, reason: "must be 8–64 characters") }
        guard v.utf8.allSatisfy({ c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F
        }) else {
            throw RPCError.invalidParams(field: field, reason: "may contain only letters, digits, '.' and '_' (no quotes, spaces or newlines)")
        }
        guard !v.hasPrefix("0") else { throw RPCError.invalidParams(field: field, reason: "must not start with 0") }
    }

    /// The IKE proposal, e.g. "aes128-sha1-modp1024".
    public var ikeProposal: String {
        let c = IpsecPairing.ciphers[effectiveCrypto]!, h = IpsecPairing.hashes[effectiveHash]!
        let dh = IpsecPairing.dhNames[effectiveDHGroup]!
        return c.aead ? "\(c.name)-\(h.prf)-\(dh)" : "\(c.name)-\(h.integrity)-\(dh)"
    }

    /// The ESP proposal with PFS, e.g. "aes128-sha1-modp1024".
    public var espProposal: String {
        let c = IpsecPairing.ciphers[effectiveCrypto]!, h = IpsecPairing.hashes[effectiveHash]!
        let dh = IpsecPairing.dhNames[effectiveDHGroup]!
        return c.aead ? "\(c.name)-\(dh)" : "\(c.name)-\(h.integrity)-\(dh)"
    }

    /// A description without the secret, for views.
    public var view: IpsecPairingView {
        IpsecPairingView(publicIp: publicIp, peerIp: peerIp, dhGroup: effectiveDHGroup, hashAlg: effectiveHash,
                         cryptoAlg: effectiveCrypto, ikeVersion: effectiveIKEVersion, phase1Lifetime: effectivePhase1,
                         phase2Lifetime: effectivePhase2, dpdTimeout: effectiveDPDTimeout, dpdAction: effectiveDPDAction,
                         initiator: isInitiator)
    }
}

/// What an IPsec instance needs to negotiate, independent of which plugin's dialect
/// (AWS pairing, CloudStack customer gateway) it came from.
public struct TunnelCrypto: Codable, Sendable, Hashable {
    public var publicIp: IPv4Address
    public var peerIp: IPv4Address
    public var preSharedKey: Secret
    /// 0 (either), 1 or 2.
    public var ikeVersion: Int
    public var ikeProposal: String
    public var espProposal: String
    public var ikeLifetime: Int
    public var espLifetime: Int
    /// Seconds between DPD probes; 0 turns DPD off.
    public var dpdDelay: Int
    public var dpdTimeout: Int
    /// clear, restart (charon's names; "none" maps to clear with DPD off).
    public var dpdAction: String
    public var initiator: Bool

    public init(publicIp: IPv4Address, peerIp: IPv4Address, preSharedKey: Secret, ikeVersion: Int, ikeProposal: String,
                espProposal: String, ikeLifetime: Int, espLifetime: Int, dpdDelay: Int, dpdTimeout: Int, dpdAction: String,
                initiator: Bool) {
        self.publicIp = publicIp
        self.peerIp = peerIp
        self.preSharedKey = preSharedKey
        self.ikeVersion = ikeVersion
        self.ikeProposal = ikeProposal
        self.espProposal = espProposal
        self.ikeLifetime = ikeLifetime
        self.espLifetime = espLifetime
        self.dpdDelay = dpdDelay
        self.dpdTimeout = dpdTimeout
        self.dpdAction = dpdAction
        self.initiator = initiator
    }
}

extension IpsecPairing {
    /// The AWS pairing as negotiation parameters.
    public var crypto: TunnelCrypto {
        TunnelCrypto(publicIp: publicIp, peerIp: peerIp, preSharedKey: preSharedKey, ikeVersion: effectiveIKEVersion,
                     ikeProposal: ikeProposal, espProposal: espProposal, ikeLifetime: effectivePhase1, espLifetime: effectivePhase2,
                     dpdDelay: effectiveDPDAction == "none" ? 0 : 10, dpdTimeout: effectiveDPDTimeout,
                     dpdAction: effectiveDPDAction == "none" ? "clear" : effectiveDPDAction, initiator: isInitiator)
    }
}

/// An IpsecPairing as the API returns it: every field but the key.
public struct IpsecPairingView: Codable, Sendable, Hashable {
    public var publicIp: IPv4Address
    public var peerIp: IPv4Address
    public var dhGroup: Int
    public var hashAlg: String
    public var cryptoAlg: String
    public var ikeVersion: Int
    public var phase1Lifetime: Int
    public var phase2Lifetime: Int
    public var dpdTimeout: Int
    public var dpdAction: String
    public var initiator: Bool
}
