// ConfigRenderingTests.swift — ConnectionConfig → load-conn message, validation errors,
// and CharonInstanceConfig → strongswan.conf (the real charon parse of the rendered file
// is covered by CharonLabTests).

import WarrenVici
import XCTest

final class ConfigRenderingTests: XCTestCase {
    static func sample() -> ConnectionConfig {
        ConnectionConfig(
            name: "vpn-1", version: .ikev1, localAddrs: ["203.0.113.1"], remoteAddrs: ["203.0.113.2"],
            localPort: 500, remotePort: 4500, proposals: ["aes128-sha1-modp1024", "aes256-sha256-modp2048"],
            rekeyTime: 28800, overTime: 300, randTime: 60, reauthTime: 28000, dpdDelay: 10, dpdTimeout: 30,
            keyingTries: 0, encap: true, mobike: false, unique: .replace,
            localAuth: .psk(id: "203.0.113.1"), remoteAuth: .psk(id: "203.0.113.2"),
            children: [ChildConfig(name: "vpn-1", espProposals: ["aes128-sha1-modp1024"], rekeyTime: 3240,
                                   lifeTime: 3600, randTime: 100, dpdAction: .restart, startAction: .none,
                                   closeAction: .start, mode: .tunnel, updown: "/bin/true")])
    }

    func testConnectionRendersSwanctlKeysInOrder() throws {
        let m = Self.sample().viciMessage()
        XCTAssertEqual(m.keys, ["vpn-1"])
        let c = try XCTUnwrap(m.section("vpn-1"))
        XCTAssertEqual(c.keys, ["version", "local_addrs", "remote_addrs", "local_port", "remote_port", "proposals",
                                "rekey_time", "over_time", "rand_time", "reauth_time", "dpd_delay", "dpd_timeout",
                                "keyingtries", "encap", "mobike", "unique", "local", "remote", "children"])
        XCTAssertEqual(c.string("version"), "1")
        XCTAssertEqual(c.stringList("proposals"), ["aes128-sha1-modp1024", "aes256-sha256-modp2048"])
        XCTAssertEqual(c.string("rekey_time"), "28800s")
        XCTAssertEqual(c.string("remote_port"), "4500")
        XCTAssertEqual(c.string("keyingtries"), "0")
        XCTAssertEqual(c.string("encap"), "yes")
        XCTAssertEqual(c.string("mobike"), "no")
        XCTAssertEqual(c.string("unique"), "replace")
        XCTAssertEqual(c.section("local"), ["auth": "psk", "id": "203.0.113.1"])
        XCTAssertEqual(c.section("remote"), ["auth": "psk", "id": "203.0.113.2"])
        let child = try XCTUnwrap(c.section("children")?.section("vpn-1"))
        XCTAssertEqual(child.stringList("local_ts"), ["0.0.0.0/0"])
        XCTAssertEqual(child.stringList("remote_ts"), ["0.0.0.0/0"])
        XCTAssertEqual(child.stringList("esp_proposals"), ["aes128-sha1-modp1024"])
        XCTAssertEqual(child.string("life_time"), "3600s")
        XCTAssertEqual(child.string("dpd_action"), "restart")
        XCTAssertEqual(child.string("close_action"), "start")
        XCTAssertEqual(child.string("mode"), "tunnel")
        XCTAssertEqual(child.string("updown"), "/bin/true")
        XCTAssertNil(child["if_id_in"])
        // Encodes on the wire without loss.
        XCTAssertEqual(try ViciCodec.decode(try ViciCodec.encode(m)), m)
        // Optional keys are left out.
        var minimal = Self.sample()
        minimal.localAddrs = []
        minimal.localPort = nil
        minimal.overTime = nil
        minimal.proposals = []
        minimal.localAuth = .psk(id: nil)
        let mc = try XCTUnwrap(minimal.viciMessage().section("vpn-1"))
        XCTAssertNil(mc["local_addrs"])
        XCTAssertNil(mc["local_port"])
        XCTAssertNil(mc["over_time"])
        XCTAssertNil(mc["proposals"])
        XCTAssertEqual(mc.section("local"), ["auth": "psk"])
    }

    func testValidationNamesTheField() {
        func expect(_ field: String, _ mutate: (inout ConnectionConfig) -> Void) {
            var c = Self.sample()
            mutate(&c)
            XCTAssertThrowsError(try c.validate(), field) { e in
                guard case ViciError.invalidConfiguration(let f, let reason) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(f, field)
                XCTAssertFalse(reason.isEmpty)
            }
        }
        XCTAssertNoThrow(try Self.sample().validate())
        expect("name") { $0.name = "" }
        expect("name") { $0.name = "has space" }
        expect("name") { $0.name = "a{b}" }
        expect("vpn-1.remoteAddrs") { $0.remoteAddrs = [] }
        expect("vpn-1.localPort") { $0.localPort = 0 }
        expect("vpn-1.rekeyTime") { $0.rekeyTime = -1 }
        expect("vpn-1.dpdTimeout") { $0.dpdTimeout = -5 }
        expect("vpn-1.proposals") { $0.proposals = ["aes128,sha1"] }
        expect("vpn-1.children.name") { $0.children[0].name = "" }
        expect("vpn-1.children.vpn-1") { $0.children.append($0.children[0]) }
        expect("vpn-1.children.vpn-1.lifeTime") { $0.children[0].lifeTime = 3240 }
        expect("vpn-1.children.vpn-1.remoteTS") { $0.children[0].remoteTS = ["10.0.0.0/8 20.0.0.0/8"] }
    }

    func testStrongswanConfForLibipsec() throws {
        let cfg = CharonInstanceConfig(directory: "/var/lib/warren/ipsec/i-1")
        XCTAssertNoThrow(try cfg.validate())
        let text = cfg.strongswanConf()
        for expected in [
            "load = nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici\n",
            "port = 500\n", "port_nat_t = 4500\n",
            "routing_table = 2220\n", "routing_table_prio = 2220\n", "fwmark = 0x57520000\n",
            "install_routes = no\n", "install_virtual_ip = no\n", "make_before_break = yes\n",
            "retransmit_timeout = 2.0\n", "retransmit_base = 1.4\n", "retransmit_tries = 3\n",
            "socket = unix:///var/lib/warren/ipsec/i-1/charon.vici\n",
            "path = /var/lib/warren/ipsec/i-1/charon.log\n",
            "kernel-libipsec {",
        ] {
            XCTAssertTrue(text.contains(expected), "missing \(expected.debugDescription) in:\n\(text)")
        }
        XCTAssertFalse(text.contains("syslog {"), "no syslog logger may be configured")
        XCTAssertFalse(text.contains("include"), "nothing from /etc may be included")
        XCTAssertEqual(cfg.retransmitGiveUpSeconds, 2 + 2.8 + 3.92 + 5.488, accuracy: 1e-9)
        XCTAssertTrue(text.contains("fails after 14.21 s"), text)
        XCTAssertTrue(text.contains("with a 10 s DPD interval 24.21 s, inside a 30 s DPD"), text)
        let slow = CharonInstanceConfig(directory: "/srv/x", retransmitTimeout: 4, retransmitBase: 1.8, retransmitTries: 5)
        XCTAssertTrue(slow.strongswanConf().contains("OUTSIDE a 30 s DPD"), slow.strongswanConf())
        // Every setting line has a reason comment somewhere above it in its block.
        XCTAssertGreaterThan(text.components(separatedBy: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }.count, 20)
        // Balanced braces (charon would refuse the file otherwise; the lab tests parse it for real).
        XCTAssertEqual(text.filter { $0 == "{" }.count, text.filter { $0 == "}" }.count)
        XCTAssertEqual(cfg.launchArguments(netns: "wvt-l").suffix(1).first,
                       "mount --bind /var/lib/warren/ipsec/i-1 /run && exec env STRONGSWAN_CONF=/var/lib/warren/ipsec/i-1/strongswan.conf /usr/lib/ipsec/charon")
    }

    func testStrongswanConfForXfrmAndUpdown() {
        let cfg = CharonInstanceConfig(directory: "/srv/x", backend: .xfrm, loadUpdown: true)
        let text = cfg.strongswanConf()
        XCTAssertTrue(text.contains("load = nonce openssl kdf kernel-netlink socket-default vici updown\n"), text)
        XCTAssertFalse(text.contains("kernel-libipsec"), text)
        XCTAssertTrue(text.contains("fwmark = 0x57520000"), text)
        XCTAssertTrue(text.contains("install_routes = no"), text)
    }

    func testInstanceValidationRejectsUnsafeDirectories() {
        for dir in ["relative/dir", "/run/warren/i1", "/var/run/x", "/tmp/has space", "/tmp/q'uote", "/tmp/x/",
                    "/tmp/" + String(repeating: "d", count: 100)] {
            XCTAssertThrowsError(try CharonInstanceConfig(directory: dir).validate(), dir) { e in
                guard case ViciError.invalidConfiguration(let f, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(f, "directory")
            }
        }
        XCTAssertThrowsError(try CharonInstanceConfig(directory: "/tmp/a", routingTable: 254).validate())
        XCTAssertThrowsError(try CharonInstanceConfig(directory: "/tmp/a", unusedFirewallMark: 0).validate())
        XCTAssertThrowsError(try CharonInstanceConfig(directory: "/tmp/a", ikePort: 4500).validate())
    }
}
