// Codable types shaped like Warren's real API (DynamicVPN create params) used by the
// coding, error-path and OpenRPC tests.

import Foundation
@testable import WarrenRPC

/// An IPv4 CIDR that validates in init(from:) and states its schema.
struct TestCIDR: Codable, Sendable, Hashable, JSONSchemaProviding {
    var text: String

    init(_ text: String) throws {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let length = Int(parts[1]), (0...32).contains(length),
            parts[0].split(separator: ".").count == 4
        else {
            throw ValidationFailure(reason: "not an IPv4 CIDR such as 10.0.0.0/24")
        }
        self.text = text
    }

    struct ValidationFailure: Error { let reason: String }

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(text)
        } catch let failure as ValidationFailure {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: failure.reason)
        }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }

    static var jsonSchema: JSONValue {
        ["type": "string", "format": "ipv4-cidr", "examples": ["10.0.0.0/24"]]
    }
}

/// A validating type that does NOT provide a schema (to check the probe reports it).
struct OpaqueMAC: Codable, Sendable {
    var text: String
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        text = try container.decode(String.self)
        guard text.split(separator: ":").count == 6 else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a MAC address")
        }
    }
}

enum HashAlgorithm: String, Codable, Sendable, CaseIterable, JSONSchemaProviding {
    case sha1, sha256, sha384
}

/// Int-backed enum without JSONSchemaProviding: the probe still finds its cases.
enum IKEVersion: Int, Codable, Sendable, CaseIterable {
    case v1 = 1
    case v2 = 2
}

struct IpsecPairing: Codable, Sendable, Hashable {
    var publicIp: String
    var peerIp: String
    var preSharedKey: String
    var dhGroup: Int?
    var hashAlg: HashAlgorithm?
    var ikeVersion: IKEVersion?
    var phase1Lifetime: UInt32?
}

struct BgpIpsecPairing: Codable, Sendable, Hashable {
    var localAsn: UInt32
    var remoteAsn: UInt32
    var localIp: String
    var peerIp: String?
    var holdTime: Int?
}

struct DynamicVpnParams: Codable, Sendable, Hashable {
    var name: String
    var virtualRouter: String
    var ipsecPairingA: IpsecPairing
    var bgpPairingA: BgpIpsecPairing
    var localSubnets: [TestCIDR]
    var tags: [String: String]?
    var createdAt: Date?
}

struct VpnSummary: Codable, Sendable {
    var id: String
    var name: String
    var tunnels: [Tunnel]

    struct Tunnel: Codable, Sendable {
        var state: String
        var bytesIn: Int64
    }
}

/// A recursive type: the probe must not loop.
final class TreeNode: Codable, @unchecked Sendable {
    var label: String
    var children: [TreeNode]
    var parent: TreeNode?
}

/// A struct with a custom decoder that uses `contains` and nested containers.
struct CustomShape: Codable, Sendable {
    var kind: String
    var size: Int
    var extra: Bool

    enum CodingKeys: String, CodingKey { case kind, geometry, extra }
    enum GeometryKeys: String, CodingKey { case size }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        kind = try container.decode(String.self, forKey: .kind)
        let geometry = try container.nestedContainer(keyedBy: GeometryKeys.self, forKey: .geometry)
        size = try geometry.decode(Int.self, forKey: .size)
        extra = container.contains(.extra) ? try container.decode(Bool.self, forKey: .extra) : false
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        var geometry = container.nestedContainer(keyedBy: GeometryKeys.self, forKey: .geometry)
        try geometry.encode(size, forKey: .size)
        try container.encode(extra, forKey: .extra)
    }
}

let sampleVpnParams: JSONValue = [
    "name": "vpn1",
    "virtualRouter": "r1",
    "ipsecPairingA": [
        "publicIp": "203.0.113.1", "peerIp": "198.51.100.1", "preSharedKey": "s3cr3t-psk-do-not-log",
        "hashAlg": "sha256", "ikeVersion": 2,
    ],
    "bgpPairingA": ["localAsn": 65000, "remoteAsn": 64512, "localIp": "169.254.10.2"],
    "localSubnets": ["10.0.1.0/24", "10.0.2.0/24"],
]
