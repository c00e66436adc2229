// StaticVPN without daemons: StaticIpsecPairing (CloudStack options and the AWS-style
// fields) mapped to negotiation parameters, its PSK rule, CHILD_SA planning
// (local × remote), and the peer's configuration.

import Foundation
import IPsec
@testable import StaticVPN
import WarrenCore
import WarrenRPC
import XCTest

func staticPairing(_ change: (inout StaticIpsecPairing) -> Void = { _ in }) -> StaticIpsecPairing {
    var p = StaticIpsecPairing(publicIp: IPv4Address("203.0.113.30")!, peerIp: IPv4Address("198.51.100.40")!, preSharedKey: Secret(psk))
    change(&p)
    return p
}

func staticSpec(local: [String] = ["100.64.1.0/24"], remote: [String] = ["198.51.100.0/25"],
                _ change: (inout StaticIpsecPairing) -> Void = { _ in }) -> StaticVpnSpec {
    StaticVpnSpec(name: "cs1", virtualRouter: "r1", ipsecPairing: staticPairing(change),
                  localSubnets: local.map { IPv4Prefix($0)! }, remoteSubnets: remote.map { IPv4Prefix($0)! })
}

final class StaticPairingTests: XCTestCase {
    func crypto(_ change: (inout StaticIpsecPairing) -> Void) throws -> TunnelCrypto {
        try staticPairing(change).crypto(field: "ipsecPairing")
    }

    func testDefaults() throws {
        let c = try crypto { _ in }
        XCTAssertEqual(c.ikeProposal, "aes128-sha1-modp1024")
        XCTAssertEqual(c.espProposal, "aes128-sha1-modp1024")
        XCTAssertEqual(c.ikeLifetime, 86400)
        XCTAssertEqual(c.espLifetime, 3600)
        XCTAssertEqual(c.ikeVersion, 2)
        XCTAssertEqual(c.dpdDelay, 10)
        XCTAssertEqual(c.dpdAction, "restart")
        XCTAssertTrue(c.initiator)
    }

    func testCloudStackOptions() throws {
        var c = try crypto {
            $0.ikepolicy = "AES256-SHA256;modp2048"; $0.esppolicy = "aes128-sha1"; $0.ikelifetime = 28800; $0.esplifetime = 1800
            $0.ikeversion = "ikev1"; $0.dpd = false; $0.passive = true
        }
        XCTAssertEqual(c.ikeProposal, "aes256-sha256-modp2048")
        XCTAssertEqual(c.espProposal, "aes128-sha1", "no group in esppolicy: no PFS")
        XCTAssertEqual(c.ikeLifetime, 28800)
        XCTAssertEqual(c.espLifetime, 1800)
        XCTAssertEqual(c.ikeVersion, 1)
        XCTAssertEqual(c.dpdDelay, 0, "dpd=false turns DPD off")
        XCTAssertFalse(c.initiator, "passive waits for the peer")
        c = try crypto { $0.esppolicy = "3des-md5;modp1536"; $0.ikeversion = "ike" }
        XCTAssertEqual(c.espProposal, "3des-md5-modp1536")
        XCTAssertEqual(c.ikeProposal, "aes128-sha1-modp1024", "the IKE side falls back to the AWS-style fields")
        XCTAssertEqual(c.ikeVersion, 0, "ike = either version")
        // CloudStack options win over the AWS-style fields.
        c = try crypto { $0.phase1Lifetime = 7200; $0.ikelifetime = 3600; $0.dhGroup = 14; $0.ikepolicy = "aes128-sha1;modp1536"; $0.esppolicy = "aes128-sha1;modp1536" }
        XCTAssertEqual(c.ikeLifetime, 3600)
        XCTAssertEqual(c.ikeProposal, "aes128-sha1-modp1536")
        // AWS-style fields alone work like IpsecPairing.
        c = try crypto { $0.cryptoAlg = "aes256"; $0.hashAlg = "sha256"; $0.dhGroup = 14; $0.phase1Lifetime = 7200; $0.ikeVersion = 1 }
        XCTAssertEqual(c.ikeProposal, "aes256-sha256-modp2048")
        XCTAssertEqual(c.ikeLifetime, 7200)
        XCTAssertEqual(c.ikeVersion, 1)
        c = try crypto { $0.dpdAction = "none" }
        XCTAssertEqual(c.dpdDelay, 0)
        XCTAssertEqual(c.dpdAction, "clear")
    }

    func testEveryRefusalNamesItsField() {
        let cases: [(String, (inout StaticIpsecPairing) -> Void)] = [
            ("preSharedKey", { $0.preSharedKey = Secret("") }),
            ("preSharedKey", { $0.preSharedKey = Secret(String(repeating: "k", count: 129)) }),
            ("preSharedKey", { $0.preSharedKey = Secret("has\"quote") }),
            ("preSharedKey", { $0.preSharedKey = Secret("new\nline") }),
            ("preSharedKey", { $0.preSharedKey = Secret("tab\there") }),
            ("preSharedKey", { $0.preSharedKey = Secret("ünicode-key") }),
            ("peerIp", { $0.peerIp = $0.publicIp }),
            ("publicIp", { $0.publicIp = IPv4Address("127.0.0.1")! }),
            ("peerIp", { $0.peerIp = IPv4Address("224.0.0.1")! }),
            ("ikepolicy", { $0.ikepolicy = "aes128-sha1" }),
            ("ikepolicy", { $0.ikepolicy = "blowfish-sha1;modp1024" }),
            ("ikepolicy", { $0.ikepolicy = "aes128-sha3;modp1024" }),
            ("ikepolicy", { $0.ikepolicy = "aes128-sha1;ecp256" }),
            ("ikepolicy", { $0.ikepolicy = "aes128;modp1024" }),
            ("ikepolicy", { $0.ikepolicy = "aes128-sha1;modp1024;x" }),
            ("ikepolicy", { $0.ikepolicy = "" }),
            ("esppolicy", { $0.esppolicy = "aes128-sha1;modp1" }),
            ("esppolicy", { $0.esppolicy = "aes128" }),
            ("dhGroup", { $0.dhGroup = 99 }),
            ("hashAlg", { $0.hashAlg = "md4" }),
            ("cryptoAlg", { $0.cryptoAlg = "rc4" }),
            ("ikelifetime", { $0.ikelifetime = 299 }),
            ("ikelifetime", { $0.ikelifetime = 86401 }),
            ("phase1Lifetime", { $0.phase1Lifetime = 100 }),
            ("ikelifetime", { $0.phase1Lifetime = 100; $0.ikelifetime = 100_000 }),
            ("phase2Lifetime", { $0.phase2Lifetime = 100_000 }),
            ("esplifetime", { $0.esplifetime = 86401 }),
            ("ikeversion", { $0.ikeversion = "ikev3" }),
            ("ikeVersion", { $0.ikeVersion = 3 }),
            ("dpdAction", { $0.dpdAction = "hold" }),
        ]
        for (field, change) in cases {
            let p = staticPairing(change)
            let e = expectInvalid("ipsecPairing.\(field)", field) { _ = try p.crypto(field: "ipsecPairing") }
            if let e, field == "preSharedKey", !p.preSharedKey.reveal().isEmpty {
                XCTAssertFalse("\(e)".contains(p.preSharedKey.reveal()), "the key is in \(e)")
            }
        }
        // CloudStack's looser PSK rule accepts what AWS's refuses (spaces, dashes, 1 character).
        for key in ["k", "a key with spaces", "dash-and;semicolon", "0starts-with-zero"] {
            XCTAssertNoThrow(try staticPairing { $0.preSharedKey = Secret(key) }.crypto(field: "ipsecPairing"), key)
        }
    }

    func testViewHasNoKey() throws {
        let v = staticPairing { $0.ikepolicy = "aes256-sha256;modp2048" }.view
        let json = try jsonText(v)
        XCTAssertFalse(json.contains(psk))
        XCTAssertFalse(json.contains("preSharedKey"))
        XCTAssertEqual(v.ikelifetime, 86400)
        XCTAssertEqual(v.ikeversion, "ikev2")
        XCTAssertTrue(v.dpd)
        XCTAssertTrue(v.splitconnections)
        XCTAssertEqual(staticPairing { $0.ikeVersion = 1 }.view.ikeversion, "ikev1")
    }
}

final class StaticChildrenTests: XCTestCase {
    func children(_ s: StaticVpnSpec) throws -> [TunnelChild] {
        StaticVPNPlugin.children(s, crypto: try s.ipsecPairing.crypto(field: "ipsecPairing"))
    }

    func testOneChildPerSubnetPairByDefault() throws {
        let c = try children(staticSpec(local: ["100.64.1.0/24", "100.64.2.0/24"], remote: ["198.51.100.0/25", "198.51.100.128/25", "203.0.113.128/26"]))
        XCTAssertEqual(c.map(\.name), ["l0r0", "l0r1", "l0r2", "l1r0", "l1r1", "l1r2"])
        XCTAssertEqual(c[0].localTS, ["100.64.1.0/24"])
        XCTAssertEqual(c[0].remoteTS, ["198.51.100.0/25"])
        XCTAssertEqual(c[5].localTS, ["100.64.2.0/24"])
        XCTAssertEqual(c[5].remoteTS, ["203.0.113.128/26"])
        // Every (local, remote) pair is covered exactly once.
        let pairs = Set(c.map { $0.localTS[0] + ">" + $0.remoteTS[0] })
        XCTAssertEqual(pairs.count, 6)
    }

    func testOneMultiSelectorChildOnlyWithIKEv2() throws {
        let local = ["100.64.1.0/24", "100.64.2.0/24"], remote = ["198.51.100.0/25", "198.51.100.128/25"]
        var c = try children(staticSpec(local: local, remote: remote) { $0.splitconnections = false })
        XCTAssertEqual(c.count, 1)
        XCTAssertEqual(c[0].name, "all")
        XCTAssertEqual(c[0].localTS, local)
        XCTAssertEqual(c[0].remoteTS, remote)
        // IKEv1 cannot carry several subnets in one CHILD_SA (only the first would pass
        // traffic), and "ike" may end up as IKEv1: both are split regardless.
        c = try children(staticSpec(local: local, remote: remote) { $0.splitconnections = false; $0.ikeversion = "ikev1" })
        XCTAssertEqual(c.count, 4)
        c = try children(staticSpec(local: local, remote: remote) { $0.splitconnections = false; $0.ikeversion = "ike" })
        XCTAssertEqual(c.count, 4)
        c = try children(staticSpec(local: local, remote: remote) { $0.splitconnections = false; $0.ikeVersion = 1 })
        XCTAssertEqual(c.count, 4)
    }

    func testPeerConfiguration() throws {
        var s = staticSpec(local: ["100.64.1.0/24", "100.64.2.0/24"], remote: ["198.51.100.0/25"]) {
            $0.ikepolicy = "aes256-sha256;modp2048"; $0.esppolicy = "aes256-sha256"; $0.ikeversion = "ikev1"; $0.dpd = false
        }
        var c = StaticPeerConfig(s)
        XCTAssertEqual(c.gateway.description, "203.0.113.30")
        XCTAssertEqual(c.peerGateway.description, "198.51.100.40")
        XCTAssertEqual(c.cidrlist.map(\.description), ["100.64.1.0/24", "100.64.2.0/24"])
        XCTAssertEqual(c.peerSubnets.map(\.description), ["198.51.100.0/25"])
        XCTAssertEqual(c.ikepolicy, "aes256-sha256;modp2048")
        XCTAssertEqual(c.esppolicy, "aes256-sha256")
        XCTAssertEqual(c.ikeversion, "ikev1")
        XCTAssertFalse(c.dpd)
        XCTAssertTrue(c.text.contains("CIDR list (Warren side)    : 100.64.1.0/24,100.64.2.0/24"))
        XCTAssertTrue(c.text.contains("Dead peer detection        : off"))
        XCTAssertFalse(try jsonText(c).contains(psk), "the key is never printed")
        // With the AWS-style fields, the peer is told the policy Warren actually proposes.
        s = staticSpec { $0.cryptoAlg = "aes256"; $0.hashAlg = "sha256"; $0.dhGroup = 14 }
        c = StaticPeerConfig(s)
        let crypto = try s.ipsecPairing.crypto(field: "ipsecPairing")
        XCTAssertEqual(crypto.ikeProposal, "aes256-sha256-modp2048")
        XCTAssertEqual(c.ikepolicy, "aes256-sha256;modp2048")
        XCTAssertEqual(c.esppolicy, "aes256-sha256;modp2048")
        // Defaults.
        c = StaticPeerConfig(staticSpec())
        XCTAssertEqual(c.ikepolicy, "aes128-sha1;modp1024")
        XCTAssertEqual(c.esppolicy, "aes128-sha1;modp1024")
    }
}
