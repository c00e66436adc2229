// The VPN plugins' JSON-RPC methods through a registry, as a cloud calls them: params
// decoded from JSON, checked against the topology and the plugin settings, refused with
// the documented code naming the field — before anything is built (no namespace, no
// daemon, no record, no port), and never echoing a pre-shared key.

import Foundation
@testable import DynamicVPN
import IPsec
@testable import StaticVPN
@testable import WarrenAgent
import WarrenCore
import WarrenRPC
import XCTest

let uplinkSettings: [String: JSONValue] = ["ipsec": ["uplink": ["interface": "we-p-up", "gateway": "203.0.113.1", "prefixLength": 24]]]

func makeCore(_ test: XCTestCase) async throws -> AgentCore {
    let core = try AgentCore(directory: try makeTempDirectory(test))
    try await core.call("router.create", ["name": "r1"])
    try await core.call("port.create", ["device": "r1", "name": "r1-lan", "address": "100.64.1.1/24"])
    return core
}

/// Sets `value` at a dotted path inside a JSON object.
func setting(_ json: JSONValue, _ path: String, _ value: JSONValue?) -> JSONValue {
    var keys = path.split(separator: ".").map(String.init)
    let first = keys.removeFirst()
    var out = json
    if keys.isEmpty { out[first] = value } else { out[first] = setting(json[first] ?? [:], keys.joined(separator: "."), value) }
    return out
}

final class DynamicVpnMethodsTests: XCTestCase {
    static let valid: JSONValue = [
        "name": "aws1", "virtualRouter": "r1",
        "ipsecPairingA": ["publicIp": "203.0.113.10", "peerIp": "198.51.100.20", "preSharedKey": "example.Key_123"],
        "ipsecPairingB": ["publicIp": "203.0.113.11", "peerIp": "198.51.100.21", "preSharedKey": "other.Key_456", "ikeVersion": 1],
        "bgpPairingA": ["localAsn": 65010, "remoteAsn": 64512, "localIp": "169.254.10.2"],
        "bgpPairingB": ["localAsn": 65010, "remoteAsn": 64512, "localIp": "169.254.11.2"],
        "localSubnets": ["100.64.1.0/24"],
    ]

    func testCreateRefusalsNameTheFieldAndBuildNothing() async throws {
        let core = try await makeCore(self)
        _ = try await core.load(DynamicVPNPlugin.self, shared: uplinkSettings)
        let version = await core.network.topology.version
        let cases: [(String, JSONValue?, Int, String)] = [
            ("ipsecPairingA.preSharedKey", 12_345_678, -32602, "expected a string"),
            ("ipsecPairingA.preSharedKey", nil, -32602, "missing"),
            ("ipsecPairingB.preSharedKey", "quote\"inside", -32602, "only letters"),
            ("ipsecPairingA.peerIp", "1.2.3.4.5", -32602, "not an IPv4 address"),
            ("ipsecPairingA.dhGroup", 5, -32602, "must be 2 or 14–24"),
            ("ipsecPairingA.dhGroup", "14", -32602, "expected an integer"),
            ("ipsecPairingB.publicIp", "203.0.113.10", -32602, "two public IPs"),
            ("ipsecPairingA.publicIp", "203.0.114.10", -32602, "uplink subnet 203.0.113.0/24"),
            ("bgpPairingB", nil, -32602, "missing"),
            ("bgpPairingA.localAsn", "x", -32602, "expected an integer"),
            ("bgpPairingA.localAsn", -1, -32602, "does not fit"),
            ("bgpPairingA.remoteAsn", 65535, -32602, "AWS side"),
            ("bgpPairingB.localIp", "169.254.10.1", -32602, "each needs its own /30"),
            ("localSubnets", "100.64.1.0/24", -32602, "expected an array"),
            ("localSubnets", ["100.64.1.1/24"], -32602, "did you mean 100.64.1.0/24"),
            ("localSubnets", ["100.64.1.0/24", "0.0.0.0/0"], -32602, "default route"),
            ("maxPrefixes", 5000, -32602, "1–1000"),
            ("virtualRouter", "ghost", -32001, "no router"),
            ("name", "two words", -32602, "letters"),
        ]
        for (path, value, code, reason) in cases {
            let params = setting(Self.valid, path, value)
            // Array values name their element when the element is the problem.
            let field = path == "localSubnets" && value?.arrayValue != nil
                ? "localSubnets[\((value!.arrayValue!.count) - 1)]" : path
            let e = await expectRPCError(code, field: field, "\(path) = \(value?.text ?? "absent")") {
                try await core.call("vpn.dynamic.create", params)
            }
            if let e {
                XCTAssertTrue(e.reason?.contains(reason) ?? false, "\(path): reason \"\(e.reason ?? "")\" lacks \"\(reason)\"")
                let response = MethodRegistry.errorResponse(id: 1, e).text
                for key in ["example.Key_123", "other.Key_456", "quote\\\"inside"] {
                    XCTAssertFalse(response.contains(key), "a pre-shared key is echoed: \(response)")
                }
            }
        }
        XCTAssertEqual(try core.store.count(kind: "vpn.dynamic:vpn"), 0, "nothing stored")
        let after = await core.network.topology.version
        XCTAssertEqual(after, version, "no port, bridge or route was created")
        let list = try await core.call("vpn.dynamic.list")
        XCTAssertEqual(list["items"], [])
        try core.store.close()
    }

    func testWithoutUplinkTheCreateIsAPreconditionFailure() async throws {
        let core = try await makeCore(self)
        _ = try await core.load(DynamicVPNPlugin.self)
        let e = await expectRPCError(-32003, field: "ipsecPairingA.publicIp") { try await core.call("vpn.dynamic.create", Self.valid) }
        XCTAssertTrue(e?.reason?.contains("pluginSettings.ipsec.uplink") ?? false, "\(String(describing: e))")
        try core.store.close()
    }

    func testUnknownVpn() async throws {
        let core = try await makeCore(self)
        _ = try await core.load(DynamicVPNPlugin.self, shared: uplinkSettings)
        XCTAssertEqual(core.registry.methodNames.filter { $0.hasPrefix("vpn.dynamic.") },
                       ["vpn.dynamic.create", "vpn.dynamic.delete", "vpn.dynamic.get", "vpn.dynamic.list",
                        "vpn.dynamic.peerConfig", "vpn.dynamic.status", "vpn.dynamic.update"])
        XCTAssertEqual(core.registry.schemaProblems, [])
        for method in ["vpn.dynamic.get", "vpn.dynamic.delete", "vpn.dynamic.peerConfig", "vpn.dynamic.status", "vpn.dynamic.update"] {
            await expectRPCError(-32001, field: "id", method) { try await core.call(method, ["id": "ghost"]) }
        }
        await expectRPCError(-32602, field: "id") { try await core.call("vpn.dynamic.get", [:]) }
        let status = try await core.call("vpn.dynamic.status", [:])
        XCTAssertEqual(status["items"], [])
        // The OpenRPC schema marks the key write-only.
        let doc = try await core.call("rpc.discover")
        let create = doc["methods"]?.arrayValue?.first { $0["name"] == "vpn.dynamic.create" }
        XCTAssertTrue(create?.text.contains("\"writeOnly\":true") ?? false)
        try core.store.close()
    }

    func testBadPluginSettingsAreNamed() async throws {
        let core = try await makeCore(self)
        let bad: [String: JSONValue] = ["ipsec": ["uplink": ["interface": "we-p-up", "gateway": "nope", "prefixLength": 24]]]
        do {
            _ = try await core.load(DynamicVPNPlugin.self, shared: bad)
            XCTFail("a bad gateway must stop the plugin from loading")
        } catch {
            XCTAssertEqual("\(error)", "IPsec configuration: pluginSettings.ipsec.uplink.gateway: not an IPv4 address: nope")
        }
        try core.store.close()
    }
}

final class StaticVpnMethodsTests: XCTestCase {
    static let valid: JSONValue = [
        "name": "cs1", "virtualRouter": "r1",
        "ipsecPairing": ["publicIp": "203.0.113.30", "peerIp": "198.51.100.40", "preSharedKey": "a static key", "ikepolicy": "aes128-sha1;modp1536"],
        "localSubnets": ["100.64.1.0/24"], "remoteSubnets": ["198.51.100.0/25"],
    ]

    func testCreateRefusalsNameTheFieldAndBuildNothing() async throws {
        let core = try await makeCore(self)
        _ = try await core.load(StaticVPNPlugin.self, configuration: ["maxRemoteSubnets": 2], shared: uplinkSettings)
        let version = await core.network.topology.version
        let cases: [(String, JSONValue?, Int, String, String)] = [
            // (path, value, code, field, reason)
            ("name", "bad name", -32602, "name", "letters"),
            ("virtualRouter", "ghost", -32001, "virtualRouter", "no router"),
            ("localSubnets", [], -32602, "localSubnets", "at least one"),
            ("remoteSubnets", [], -32602, "remoteSubnets", "at least one"),
            ("remoteSubnets", ["198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26"], -32602, "remoteSubnets", "at most 2"),
            ("remoteSubnets", ["0.0.0.0/0"], -32602, "remoteSubnets[0]", "not a subnet"),
            ("remoteSubnets", ["198.51.100.0/25", "198.51.100.64/26"], -32602, "remoteSubnets[1]", "overlaps remoteSubnets[0]"),
            ("localSubnets", ["100.64.1.0/24", "100.64.0.0/16"], -32602, "localSubnets[1]", "overlaps localSubnets[0]"),
            ("remoteSubnets", ["100.64.1.128/25"], -32602, "remoteSubnets[0]", "router's own subnet 100.64.1.0/24"),
            ("remoteSubnets", ["198.51.100.0/33"], -32602, "remoteSubnets[0]", "CIDR"),
            ("ipsecPairing.ikepolicy", "aes128-sha1", -32602, "ipsecPairing.ikepolicy", "group is required"),
            ("ipsecPairing.ikeversion", "ikev9", -32602, "ipsecPairing.ikeversion", "ike, ikev1 or ikev2"),
            ("ipsecPairing.publicIp", "203.0.114.30", -32602, "ipsecPairing.publicIp", "uplink subnet"),
            ("ipsecPairing.preSharedKey", "a \"quoted\" key", -32602, "ipsecPairing.preSharedKey", "double quote"),
            ("ipsecPairing.preSharedKey", nil, -32602, "ipsecPairing.preSharedKey", "missing"),
            ("ipsecPairing.dpd", "yes", -32602, "ipsecPairing.dpd", "boolean"),
        ]
        for (path, value, code, field, reason) in cases {
            let e = await expectRPCError(code, field: field, "\(path) = \(value?.text ?? "absent")") {
                try await core.call("vpn.static.create", setting(Self.valid, path, value))
            }
            if let e {
                XCTAssertTrue(e.reason?.contains(reason) ?? false, "\(path): reason \"\(e.reason ?? "")\" lacks \"\(reason)\"")
                let response = MethodRegistry.errorResponse(id: 1, e).text
                XCTAssertFalse(response.contains("a static key") || response.contains("quoted"), "a pre-shared key is echoed: \(response)")
            }
        }
        // The remote subnets must not overlap the local ones.
        let overlapping = setting(setting(Self.valid, "localSubnets", ["100.64.5.0/24"]), "remoteSubnets", ["100.64.5.0/25"])
        await expectRPCError(-32602, field: "remoteSubnets[0]") { try await core.call("vpn.static.create", overlapping) }
        XCTAssertEqual(try core.store.count(kind: "vpn.static:vpn"), 0)
        let after = await core.network.topology.version
        XCTAssertEqual(after, version)
        for method in ["vpn.static.get", "vpn.static.delete", "vpn.static.update"] {
            await expectRPCError(-32001, field: "id", method) { try await core.call(method, ["id": "ghost"]) }
        }
        let list = try await core.call("vpn.static.list")
        XCTAssertEqual(list["items"], [])
        try core.store.close()
    }
}
