// DynamicVPN without daemons: BgpIpsecPairing and DynamicVpnSpec validation (field
// names), BGPSpeaker.render (the bird.conf, checked by BIRD's own parser too) and
// PeerConfiguration (what the AWS-side peer must configure).

import Foundation
@testable import DynamicVPN
import IPsec
import WarrenCore
import WarrenRPC
import XCTest

func bgp(_ local: String, _ change: (inout BgpIpsecPairing) -> Void = { _ in }) -> BgpIpsecPairing {
    var b = BgpIpsecPairing(localAsn: 65010, remoteAsn: 64512, localIp: IPv4Address(local)!, peerIp: nil, holdTime: nil, keepalive: nil)
    change(&b)
    return b
}

func spec(_ change: (inout DynamicVpnSpec) -> Void = { _ in }) -> DynamicVpnSpec {
    var s = DynamicVpnSpec(
        name: "aws1", virtualRouter: "r1",
        ipsecPairingA: pairing(),
        ipsecPairingB: pairing { $0.publicIp = IPv4Address("203.0.113.11")!; $0.peerIp = IPv4Address("198.51.100.21")!; $0.preSharedKey = Secret("other.Key_456") },
        bgpPairingA: bgp("169.254.10.2"), bgpPairingB: bgp("169.254.11.2"),
        localSubnets: [IPv4Prefix("100.64.1.0/24")!, IPv4Prefix("100.64.2.0/24")!], maxPrefixes: nil)
    change(&s)
    return s
}

final class BgpPairingTests: XCTestCase {
    func testPeerIsInferredAsTheOtherHost() {
        XCTAssertEqual(bgp("169.254.10.2").effectivePeerIp, IPv4Address("169.254.10.1"))
        XCTAssertEqual(bgp("169.254.10.1").effectivePeerIp, IPv4Address("169.254.10.2"))
        XCTAssertEqual(bgp("169.254.10.2").network.description, "169.254.10.0/30")
        XCTAssertEqual(bgp("169.254.10.2") { $0.peerIp = IPv4Address("169.254.10.1") }.effectivePeerIp, IPv4Address("169.254.10.1"))
        let v = bgp("169.254.10.2").view
        XCTAssertEqual(v.peerIp, IPv4Address("169.254.10.1"))
        XCTAssertEqual(v.holdTime, 30)
        XCTAssertEqual(v.keepalive, 10)
    }

    func testEveryFieldIsCheckedAndNamed() {
        let cases: [(String, BgpIpsecPairing)] = [
            ("localAsn", bgp("169.254.10.2") { $0.localAsn = 0 }),
            ("localAsn", bgp("169.254.10.2") { $0.localAsn = 2_147_483_648 }),
            ("remoteAsn", bgp("169.254.10.2") { $0.remoteAsn = 100 }),
            ("remoteAsn", bgp("169.254.10.2") { $0.remoteAsn = 65535 }),
            ("remoteAsn", bgp("169.254.10.2") { $0.remoteAsn = 4_294_967_295 }),
            ("remoteAsn", bgp("169.254.10.2") { $0.localAsn = 64512 }),
            ("localIp", bgp("100.64.10.2")),
            ("localIp", bgp("169.254.0.2")),
            ("localIp", bgp("169.254.5.1")),
            ("localIp", bgp("169.254.169.253")),
            ("localIp", bgp("169.254.10.0")),
            ("localIp", bgp("169.254.10.3")),
            ("peerIp", bgp("169.254.10.2") { $0.peerIp = IPv4Address("169.254.10.5") }),
            ("peerIp", bgp("169.254.10.2") { $0.peerIp = IPv4Address("169.254.10.2") }),
            ("peerIp", bgp("169.254.10.2") { $0.peerIp = IPv4Address("169.254.10.3") }),
            ("holdTime", bgp("169.254.10.2") { $0.holdTime = 2 }),
            ("holdTime", bgp("169.254.10.2") { $0.holdTime = 65536 }),
            ("keepalive", bgp("169.254.10.2") { $0.keepalive = 0 }),
            ("keepalive", bgp("169.254.10.2") { $0.keepalive = 30 }),
            ("keepalive", bgp("169.254.10.2") { $0.holdTime = 9; $0.keepalive = 10 }),
        ]
        for (field, b) in cases {
            expectInvalid("bgpPairingA.\(field)", "\(b)") { try b.validate(field: "bgpPairingA") }
        }
        for ok in [bgp("169.254.10.2") { $0.remoteAsn = 7224 }, bgp("169.254.10.2") { $0.remoteAsn = 4_200_000_000 },
                   bgp("169.254.10.2") { $0.holdTime = 0 }, bgp("169.254.10.2") { $0.holdTime = 3; $0.keepalive = 1 },
                   bgp("169.254.6.1"), bgp("169.254.169.249")] {
            XCTAssertNoThrow(try ok.validate(field: "bgpPairingA"), "\(ok)")
        }
    }
}

final class DynamicVpnSpecTests: XCTestCase {
    func testValidSpec() {
        XCTAssertNoThrow(try spec().validate())
        XCTAssertEqual(spec().effectiveMaxPrefixes, 100)
    }

    func testEveryRefusalNamesItsField() {
        let cases: [(String, DynamicVpnSpec)] = [
            ("name", spec { $0.name = "" }),
            ("name", spec { $0.name = "has space" }),
            ("name", spec { $0.name = String(repeating: "n", count: 65) }),
            ("name", spec { $0.name = "semi;colon" }),
            ("ipsecPairingA.preSharedKey", spec { $0.ipsecPairingA.preSharedKey = Secret("x") }),
            ("ipsecPairingA.dhGroup", spec { $0.ipsecPairingA.dhGroup = 5 }),
            ("ipsecPairingB.peerIp", spec { $0.ipsecPairingB.peerIp = $0.ipsecPairingB.publicIp }),
            ("ipsecPairingB.phase2Lifetime", spec { $0.ipsecPairingB.phase2Lifetime = 5000 }),
            ("ipsecPairingB.publicIp", spec { $0.ipsecPairingB.publicIp = $0.ipsecPairingA.publicIp }),
            ("ipsecPairingB.peerIp", spec { $0.ipsecPairingB.peerIp = $0.ipsecPairingA.peerIp }),
            ("bgpPairingA.remoteAsn", spec { $0.bgpPairingA.remoteAsn = 1 }),
            ("bgpPairingB.localIp", spec { $0.bgpPairingB.localIp = IPv4Address("10.0.0.2")! }),
            ("bgpPairingB.localIp", spec { $0.bgpPairingB.localIp = IPv4Address("169.254.10.1")! }),
            ("maxPrefixes", spec { $0.maxPrefixes = 0 }),
            ("maxPrefixes", spec { $0.maxPrefixes = 1001 }),
            ("localSubnets", spec { $0.localSubnets = (0..<101).map { IPv4Prefix("100.65.\($0).0/24")! } }),
            ("localSubnets[0]", spec { $0.localSubnets = [IPv4Prefix("0.0.0.0/0")!] }),
            ("localSubnets[1]", spec { $0.localSubnets = [IPv4Prefix("100.64.1.0/24")!, IPv4Prefix("169.254.200.0/24")!] }),
            ("localSubnets[2]", spec { $0.localSubnets += [IPv4Prefix("100.64.0.0/16")!] }),
        ]
        for (field, s) in cases {
            let e = expectInvalid(field, field) { try s.validate() }
            if let e { XCTAssertFalse("\(e)".contains(psk) || "\(e)".contains("other.Key_456"), "a key leaks through \(e)") }
        }
    }
}

final class BGPRenderTests: XCTestCase {
    func settings(backup: Bool) -> BGPSettings {
        let s = spec { $0.bgpPairingA.holdTime = 9; $0.bgpPairingA.keepalive = 3 }
        return BGPSettings(pairing: backup ? s.bgpPairingB : s.bgpPairingA, localSubnets: s.localSubnets,
                           outsideAddresses: [s.ipsecPairingA.publicIp, s.ipsecPairingA.peerIp, s.ipsecPairingB.publicIp, s.ipsecPairingB.peerIp],
                           maxPrefixes: 50, backup: backup)
    }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } }

    func testPrimaryTunnelConfiguration() {
        let conf = BGPSpeaker.render(settings(backup: false), logPath: "/state/bird.log")
        let l = lines(conf)
        XCTAssertTrue(conf.hasPrefix("# Generated by warren-agent"))
        XCTAssertTrue(l.contains("router id 169.254.10.2;"))
        XCTAssertTrue(l.contains("log \"/state/bird.log\" { info, remote, warning, error, auth, fatal, bug };"))
        XCTAssertTrue(l.contains("local 169.254.10.2 as 65010;"))
        XCTAssertTrue(l.contains("neighbor 169.254.10.1 as 64512;"))
        XCTAssertTrue(l.contains("hold time 9; keepalive time 3;"))
        XCTAssertTrue(l.contains("receive limit 50 action restart;"))
        XCTAssertTrue(l.contains("description \"Warren DynamicVPN tunnel A\";"))
        // Our prefixes exist only inside BIRD, as unreachable statics.
        XCTAssertTrue(l.contains("route 100.64.1.0/24 unreachable;"))
        XCTAssertTrue(l.contains("route 100.64.2.0/24 unreachable;"))
        // The import filter refuses the default route, link-local, the four outside addresses and our own prefixes.
        XCTAssertTrue(l.contains { $0.hasPrefix("if net.len = 0 then reject;") })
        XCTAssertTrue(l.contains { $0.hasPrefix("if net ~ [ 169.254.0.0/16+ ] then reject;") })
        for ip in ["203.0.113.10", "198.51.100.20", "203.0.113.11", "198.51.100.21"] {
            XCTAssertTrue(l.contains { $0.hasPrefix("if \(ip) ~ net then reject;") }, "outside address \(ip) must never be routed into the tunnel")
        }
        XCTAssertTrue(l.contains { $0.hasPrefix("if net ~ [ 100.64.1.0/24+ ] || 100.64.1.0 ~ net then reject;") })
        // Only learned routes reach the kernel; tunnel A is preferred (MED 100, no prepend).
        XCTAssertTrue(l.contains("ipv4 { import none; export where proto = \"tunnel\"; };"))
        XCTAssertTrue(conf.contains("if proto = \"originate4\" then { bgp_med = 100; accept; } reject;"))
        XCTAssertFalse(conf.contains("prepend"))
    }

    func testBackupTunnelIsLessAttractive() {
        let conf = BGPSpeaker.render(settings(backup: true), logPath: "/state/bird.log")
        XCTAssertTrue(conf.contains("local 169.254.11.2 as 65010;"))
        XCTAssertTrue(conf.contains("neighbor 169.254.11.1 as 64512;"))
        XCTAssertTrue(conf.contains("hold time 30; keepalive time 10;"))
        XCTAssertTrue(conf.contains("description \"Warren DynamicVPN tunnel B\";"))
        XCTAssertTrue(conf.contains("bgp_path.prepend(65010); bgp_path.prepend(65010); bgp_med = 200; accept;"))
    }

    /// BIRD's own parser accepts both files (`bird -p` parses and exits; no daemon runs).
    func testBirdParsesTheConfiguration() throws {
        let bird = "/usr/sbin/bird"
        guard FileManager.default.isExecutableFile(atPath: bird) else {
            return XCTFail("\(bird) is missing: install BIRD 2 (Scripts/setup.sh) — this test checks the generated bird.conf with it")
        }
        let dir = try makeTempDirectory(self)
        for backup in [false, true] {
            let path = dir + "/bird-\(backup).conf"
            try BGPSpeaker.render(settings(backup: backup), logPath: dir + "/bird.log").write(toFile: path, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: bird)
            p.arguments = ["-p", "-c", path]
            let err = Pipe()
            p.standardError = err
            p.standardOutput = err
            try p.run()
            let output = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "bird -p rejected the \(backup ? "B" : "A") configuration: \(output)")
        }
    }
}

final class PeerConfigurationTests: XCTestCase {
    func testBothTunnelsAsThePeerSeesThem() throws {
        let s = spec {
            $0.ipsecPairingA.cryptoAlg = "aes256"; $0.ipsecPairingA.hashAlg = "sha2-256"; $0.ipsecPairingA.dhGroup = 14
            $0.ipsecPairingB.ikeVersion = 1; $0.ipsecPairingB.dpdTimeout = 45; $0.ipsecPairingB.cryptoAlg = "aes128-gcm-16"
            $0.bgpPairingB.holdTime = 12; $0.bgpPairingB.keepalive = 4
        }
        let c = PeerConfiguration(record: s, backend: "libipsec", mss: 1360)
        XCTAssertEqual(c.vpn, "aws1")
        XCTAssertEqual(c.advertisedByWarren.map(\.description), ["100.64.1.0/24", "100.64.2.0/24"])
        XCTAssertEqual(c.tunnels.map(\.tunnel), ["A", "B"])
        let a = c.tunnels[0], b = c.tunnels[1]
        XCTAssertTrue(a.preferred)
        XCTAssertFalse(b.preferred)
        XCTAssertEqual(a.encryption, "aes-256-cbc")
        XCTAssertEqual(a.integrity, "hmac-sha256")
        XCTAssertEqual(a.dhGroup, 14)
        XCTAssertEqual(a.ikeProposal, "aes256-sha256-modp2048")
        XCTAssertEqual(a.ikeVersion, 2)
        XCTAssertEqual(a.peerOutsideAddress.description, "198.51.100.20")
        XCTAssertEqual(a.warrenOutsideAddress.description, "203.0.113.10")
        XCTAssertEqual(a.insideCidr.description, "169.254.10.0/30")
        XCTAssertEqual(a.peerInsideAddress.description, "169.254.10.1")
        XCTAssertEqual(a.warrenInsideAddress.description, "169.254.10.2")
        XCTAssertEqual(a.peerAsn, 64512)
        XCTAssertEqual(a.warrenAsn, 65010)
        XCTAssertEqual(a.dpdRetries, 3)
        XCTAssertEqual(a.natTraversal, "always (ESP in UDP 4500)")
        XCTAssertEqual(a.tcpMssClamp, 1360)
        XCTAssertEqual(b.encryption, "aes-128-gcm-16")
        XCTAssertEqual(b.ikeVersion, 1)
        XCTAssertEqual(b.dpdRetries, 4)
        XCTAssertEqual(b.holdTime, 12)
        XCTAssertEqual(b.keepalive, 4)
        XCTAssertEqual(b.insideCidr.description, "169.254.11.0/30")
        XCTAssertEqual(PeerConfiguration(record: s, backend: "xfrm", mss: 1400).tunnels[0].natTraversal, "when NAT is detected")

        let text = c.text
        XCTAssertTrue(text.contains("Warren DynamicVPN \"aws1\""))
        XCTAssertTrue(text.contains("Warren announces: 100.64.1.0/24, 100.64.2.0/24"))
        XCTAssertTrue(text.contains("IPSec Tunnel #1 (Warren tunnel A, preferred)"))
        XCTAssertTrue(text.contains("IPSec Tunnel #2 (Warren tunnel B)"))
        XCTAssertTrue(text.contains("IKE version                : IKEv1 (main mode)"))
        XCTAssertTrue(text.contains("Your tunnel interface      : 169.254.11.1/30"))
        XCTAssertTrue(text.contains("Neighbor (Warren) ASN      : 65010"))
        XCTAssertTrue(text.contains("clamp yours to at most 1360"))
        // The keys are never printed, in the text or the JSON.
        let json = try jsonText(c)
        for key in [psk, "other.Key_456"] {
            XCTAssertFalse(json.contains(key), "a pre-shared key is in peerConfig")
        }
        XCTAssertFalse(json.contains("preSharedKey"))
    }
}
