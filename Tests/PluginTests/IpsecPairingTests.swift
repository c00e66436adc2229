// IpsecPairing (the AWS dialect shared by DynamicVPN): validation against AWS's ranges
// with the full field name, the PSK rule, proposal strings, the negotiation parameters,
// and the pre-shared key never showing up in views, descriptions or errors.

import Foundation
@testable import IPsec
import WarrenCore
import WarrenRPC
import XCTest

let psk = "example.Key_123"

func pairing(_ change: (inout IpsecPairing) -> Void = { _ in }) -> IpsecPairing {
    var p = IpsecPairing(publicIp: IPv4Address("203.0.113.10")!, peerIp: IPv4Address("198.51.100.20")!, preSharedKey: Secret(psk))
    change(&p)
    return p
}

final class IpsecPairingTests: XCTestCase {
    func testBaselineIsValidAndUsesAWSDefaults() throws {
        let p = pairing()
        XCTAssertNoThrow(try p.validate(field: "ipsecPairingA"))
        XCTAssertEqual(p.ikeProposal, "aes128-sha1-modp1024")
        XCTAssertEqual(p.espProposal, "aes128-sha1-modp1024")
        let c = p.crypto
        XCTAssertEqual(c.ikeVersion, 2)
        XCTAssertEqual(c.ikeLifetime, 28800)
        XCTAssertEqual(c.espLifetime, 3600)
        XCTAssertEqual(c.dpdDelay, 10)
        XCTAssertEqual(c.dpdTimeout, 30)
        XCTAssertEqual(c.dpdAction, "restart")
        XCTAssertTrue(c.initiator)
        XCTAssertEqual(c.preSharedKey.reveal(), psk)
    }

    func testEveryFieldIsCheckedAndNamed() {
        let cases: [(String, (inout IpsecPairing) -> Void)] = [
            ("peerIp", { $0.peerIp = $0.publicIp }),
            ("publicIp", { $0.publicIp = IPv4Address("224.0.0.5")! }),
            ("publicIp", { $0.publicIp = IPv4Address("127.0.0.1")! }),
            ("publicIp", { $0.publicIp = IPv4Address("0.0.0.0")! }),
            ("publicIp", { $0.publicIp = IPv4Address("255.255.255.255")! }),
            ("publicIp", { $0.publicIp = IPv4Address("169.254.7.1")! }),
            ("peerIp", { $0.peerIp = IPv4Address("239.1.2.3")! }),
            ("dhGroup", { $0.dhGroup = 5 }),
            ("dhGroup", { $0.dhGroup = 1 }),
            ("dhGroup", { $0.dhGroup = 13 }),
            ("dhGroup", { $0.dhGroup = 25 }),
            ("hashAlg", { $0.hashAlg = "md5" }),
            ("cryptoAlg", { $0.cryptoAlg = "3des" }),
            ("cryptoAlg", { $0.cryptoAlg = "aes192" }),
            ("ikeVersion", { $0.ikeVersion = 3 }),
            ("ikeVersion", { $0.ikeVersion = 0 }),
            ("phase1Lifetime", { $0.phase1Lifetime = 899 }),
            ("phase1Lifetime", { $0.phase1Lifetime = 28801 }),
            ("phase2Lifetime", { $0.phase2Lifetime = 899 }),
            ("phase2Lifetime", { $0.phase2Lifetime = 3601 }),
            ("phase2Lifetime", { $0.phase1Lifetime = 1800; $0.phase2Lifetime = 1800 }),
            ("phase2Lifetime", { $0.phase1Lifetime = 900 }),
            ("dpdTimeout", { $0.dpdTimeout = 29 }),
            ("dpdTimeout", { $0.dpdTimeout = 3601 }),
            ("dpdAction", { $0.dpdAction = "hold" }),
        ]
        for (field, change) in cases {
            let p = pairing(change)
            expectInvalid("ipsecPairingB.\(field)", "\(p.view)") { try p.validate(field: "ipsecPairingB") }
        }
    }

    func testAcceptedRanges() {
        for g in [2] + Array(14...24) { XCTAssertNoThrow(try pairing { $0.dhGroup = g }.validate(field: "x"), "dhGroup \(g)") }
        for h in ["sha1", "SHA256", "sha384", "sha512", "sha2-256"] { XCTAssertNoThrow(try pairing { $0.hashAlg = h }.validate(field: "x"), h) }
        for c in ["aes128", "AES256", "aes128-gcm-16", "aes256-gcm-16"] { XCTAssertNoThrow(try pairing { $0.cryptoAlg = c }.validate(field: "x"), c) }
        XCTAssertNoThrow(try pairing { $0.ikeVersion = 1 }.validate(field: "x"))
        XCTAssertNoThrow(try pairing { $0.phase1Lifetime = 28800; $0.phase2Lifetime = 900 }.validate(field: "x"))
        XCTAssertNoThrow(try pairing { $0.phase1Lifetime = 3601; $0.phase2Lifetime = 3600 }.validate(field: "x"))
        XCTAssertNoThrow(try pairing { $0.dpdTimeout = 30 }.validate(field: "x"))
        XCTAssertNoThrow(try pairing { $0.dpdTimeout = 3600 }.validate(field: "x"))
        for a in ["clear", "NONE", "restart"] { XCTAssertNoThrow(try pairing { $0.dpdAction = a }.validate(field: "x"), a) }
    }

    func testPSKRuleAndTheKeyNeverInTheError() {
        let refused = ["short", String(repeating: "k", count: 65), "has space1", "quote\"abcd", "newline\nabc", "0leadingzero",
                       "pässwort123", "semi;colon1", "dash-is-out", "tab\tabcdef", ""]
        for key in refused {
            let p = pairing { $0.preSharedKey = Secret(key) }
            let e = expectInvalid("ipsecPairingA.preSharedKey", key.debugDescription) { try p.validate(field: "ipsecPairingA") }
            if let e, !key.isEmpty {
                XCTAssertFalse("\(e)".contains(key), "the key appears in \(e)")
                XCTAssertFalse(MethodRegistry.errorResponse(id: 1, e).text.contains(key), "the key appears in the response")
            }
        }
        for key in ["abcdefgh", String(repeating: "K", count: 64), "A.b_c1234", "1zeroLater0"] {
            XCTAssertNoThrow(try pairing { $0.preSharedKey = Secret(key) }.validate(field: "x"), key)
        }
    }

    func testProposals() {
        var p = pairing { $0.cryptoAlg = "aes256"; $0.hashAlg = "sha256"; $0.dhGroup = 14 }
        XCTAssertEqual(p.ikeProposal, "aes256-sha256-modp2048")
        XCTAssertEqual(p.espProposal, "aes256-sha256-modp2048")
        // AEAD: the IKE proposal names the PRF, ESP has no integrity algorithm.
        p = pairing { $0.cryptoAlg = "aes256-gcm-16"; $0.hashAlg = "sha384"; $0.dhGroup = 20 }
        XCTAssertEqual(p.ikeProposal, "aes256gcm16-prfsha384-ecp384")
        XCTAssertEqual(p.espProposal, "aes256gcm16-ecp384")
        p = pairing { $0.cryptoAlg = "AES128-GCM-16"; $0.hashAlg = "sha2-512"; $0.dhGroup = 19 }
        XCTAssertEqual(p.ikeProposal, "aes128gcm16-prfsha512-ecp256")
        p = pairing { $0.hashAlg = "sha2-256"; $0.dhGroup = 24 }
        XCTAssertEqual(p.ikeProposal, "aes128-sha256-modp2048s256")
    }

    func testNegotiationParameters() {
        var c = pairing { $0.ikeVersion = 1; $0.phase1Lifetime = 7200; $0.phase2Lifetime = 1200; $0.dpdTimeout = 60; $0.initiator = false }.crypto
        XCTAssertEqual(c.ikeVersion, 1)
        XCTAssertEqual(c.ikeLifetime, 7200)
        XCTAssertEqual(c.espLifetime, 1200)
        XCTAssertEqual(c.dpdTimeout, 60)
        XCTAssertFalse(c.initiator)
        // "none" turns DPD off; charon has no "none", so the action is clear.
        c = pairing { $0.dpdAction = "none" }.crypto
        XCTAssertEqual(c.dpdDelay, 0)
        XCTAssertEqual(c.dpdAction, "clear")
        c = pairing { $0.dpdAction = "Clear" }.crypto
        XCTAssertEqual(c.dpdDelay, 10)
        XCTAssertEqual(c.dpdAction, "clear")
    }

    func testSecretIsRedactedEverywhereButTheStore() throws {
        let s = Secret(psk)
        XCTAssertEqual(s.description, "<redacted>")
        XCTAssertEqual("\(s)", "<redacted>")
        XCTAssertEqual(String(reflecting: s), "<redacted>")
        let p = pairing()
        for text in ["\(p)", String(reflecting: p), "\(p.crypto)", "\([p])"] {
            XCTAssertFalse(text.contains(psk), "the key leaks through \(text)")
        }
        var dumped = ""
        dump(p, to: &dumped)
        dump(p.crypto, to: &dumped)
        XCTAssertFalse(dumped.contains(psk), "the key leaks through dump(): \(dumped)")
        // Views (what the API returns) have no key at all.
        let view = try jsonText(p.view)
        XCTAssertFalse(view.contains(psk))
        XCTAssertFalse(view.contains("preSharedKey"))
        // The record written to the agent's private store keeps it (needed to reconfigure charon).
        XCTAssertTrue(try jsonText(p).contains(psk))
        // It decodes from a plain string.
        let decoded = try JSONValueDecoder().decode(IpsecPairing.self, from: [
            "publicIp": "203.0.113.10", "peerIp": "198.51.100.20", "preSharedKey": .string(psk),
        ])
        XCTAssertEqual(decoded.preSharedKey.reveal(), psk)
        XCTAssertEqual(decoded, p)
    }

    func testLinkAllocatorAndPublicAddressRegistry() async throws {
        let pool = IPv4Prefix("169.254.252.0/28")!
        var used: [IPv4Prefix] = [IPv4Prefix("169.254.252.0/30")!]
        let a = try LinkAllocator.allocate(pool: pool, avoiding: used)
        XCTAssertEqual(a.description, "169.254.252.4/30")
        used.append(a)
        used.append(IPv4Prefix("169.254.252.8/29")!)  // a bigger overlapping prefix blocks both /30s in it
        expectInvalid("virtualRouter", code: -32003) { _ = try LinkAllocator.allocate(pool: pool, avoiding: used) }

        let registry = PublicAddressRegistry()
        let ip = IPv4Address("203.0.113.77")!
        try await registry.claim(ip, owner: "vpn.dynamic a", field: "ipsecPairingA.publicIp")
        try await registry.claim(ip, owner: "vpn.dynamic a", field: "ipsecPairingA.publicIp")  // idempotent for its owner
        await expectRPCError(-32002, field: "ipsecPairing.publicIp") {
            try await registry.claim(ip, owner: "vpn.static b", field: "ipsecPairing.publicIp")
        }
        await registry.release(owner: "vpn.dynamic a")
        try await registry.claim(ip, owner: "vpn.static b", field: "ipsecPairing.publicIp")
        await registry.release(ip, owner: "someone else")
        await expectRPCError(-32002, field: "x") { try await registry.claim(ip, owner: "c", field: "x") }
    }

    func testUplinkSubnetCheck() throws {
        var s = IPsecSettings()
        expectInvalid("ipsecPairingA.publicIp", code: -32003) { try UplinkBridge.check(IPv4Address("203.0.113.10")!, settings: s, field: "ipsecPairingA.publicIp") }
        s = try JSONValueDecoder().decode(IPsecSettings.self, from: ["uplink": ["interface": "we-p-up", "gateway": "203.0.113.1", "prefixLength": 24]])
        XCTAssertNoThrow(try UplinkBridge.check(IPv4Address("203.0.113.10")!, settings: s, field: "f"))
        for bad in ["203.0.114.10", "203.0.113.1", "203.0.113.0", "203.0.113.255"] {
            expectInvalid("f", bad) { try UplinkBridge.check(IPv4Address(bad)!, settings: s, field: "f") }
        }
        XCTAssertEqual(s.bridgeName, "uplink")
        XCTAssertEqual(s.pool.description, "169.254.252.0/22")
        XCTAssertEqual(s.effectiveMSS, 1360)
    }
}
