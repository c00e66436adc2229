// Tests for Netlink against real namespaces (wlt-nl*): veth pairs across namespaces, TAP,
// link attributes, addresses and routes, each checked with `ip` as an independent witness,
// plus the wording of errors.

import Foundation
import XCTest
@testable import WarrenLinux

final class NetlinkTests: XCTestCase {
    let scratch = ScratchNamespaces()
    override func tearDown() { scratch.removeAll() }

    func testVethPairAcrossNamespacesAndLinkAttributes() throws {
        let a = try scratch.make("nl-a"), b = try scratch.make("nl-b")
        let nl = try Netlink(namespace: a)
        try nl.createVethPair("wlt0a", peer: "wlt0b", peerNamespace: b)
        XCTAssertTrue(try mustShell("ip netns exec \(b) ip -o link show wlt0b").contains("wlt0b@"))
        var link = try XCTUnwrap(try nl.link(named: "wlt0a"))
        XCTAssertEqual(link.kind, "veth")
        XCTAssertFalse(link.isUp)
        XCTAssertNil(try nl.link(named: "wlt0b"), "the peer must be in the other namespace")
        XCTAssertNil(try nl.link(named: "wlt-nothere"))

        try nl.setMTU("wlt0a", 1400)
        try nl.setMAC("wlt0a", "02:00:5e:10:00:0a")
        try nl.setLinkUp("wlt0a", true)
        link = try XCTUnwrap(try nl.link(named: "wlt0a"))
        XCTAssertEqual(link.mtu, 1400)
        XCTAssertEqual(link.mac, "02:00:5e:10:00:0a")
        XCTAssertTrue(link.isUp)
        let shown = try mustShell("ip netns exec \(a) ip -o link show wlt0a")
        XCTAssertTrue(shown.contains("mtu 1400") && shown.contains("02:00:5e:10:00:0a") && shown.contains("UP"), shown)

        // Peer still down → no carrier; bring it up from its own namespace → carrier and oper up.
        let nlb = try Netlink(namespace: b)
        try nlb.setLinkUp("wlt0b", true)
        XCTAssertTrue(waitUntil { (try? nl.link(named: "wlt0a"))??.operState == .up })
        XCTAssertEqual(try nl.link(named: "wlt0a")?.hasCarrier, true)

        let names = try nl.links().map(\.name)
        XCTAssertEqual(names, ["lo", "wlt0a"])
        try nl.setLinkUp("wlt0a", false)
        XCTAssertEqual(try nl.link(named: "wlt0a")?.isUp, false)

        // Move wlt0a into b too; then deleting one end removes both.
        try nl.moveLink("wlt0a", toNamespace: b)
        XCTAssertNil(try nl.link(named: "wlt0a"))
        XCTAssertNotNil(try nlb.link(named: "wlt0a"))
        try nlb.deleteLink("wlt0a")
        XCTAssertNil(try nlb.link(named: "wlt0b"))
        XCTAssertThrowsError(try nlb.deleteLink("wlt0a")) { error in
            let e = error as? NetlinkError
            XCTAssertEqual(e?.isNotFound, true, "\(error)")
            XCTAssertTrue("\(error)".hasPrefix("deleting link wlt0a in \(b): "), "\(error)")
        }
    }

    func testTapIsPersistentAndInTheNamespace() throws {
        let a = try scratch.make("nl-tap")
        let nl = try Netlink(namespace: a)
        try nl.createTap("wlttap0")
        let link = try XCTUnwrap(try nl.link(named: "wlttap0"))
        XCTAssertEqual(link.kind, "tun")
        XCTAssertTrue(try mustShell("ip netns exec \(a) ip -d link show wlttap0").contains("tap"))
        XCTAssertEqual(try shell("ip link show wlttap0").status == 0, false, "must not appear in the root namespace")
        XCTAssertThrowsError(try nl.createTap("wlttap0")) { error in
            XCTAssertTrue("\(error)".hasPrefix("creating TAP wlttap0 in \(a)"), "\(error)")
        }
        try nl.deleteLink("wlttap0")
        XCTAssertNil(try nl.link(named: "wlttap0"))
    }

    func testAddressesAndRoutes() throws {
        let a = try scratch.make("nl-r")
        let nl = try Netlink(namespace: a)
        try nl.createVethPair("wlt1a", peer: "wlt1b")
        try nl.setLinkUp("wlt1a", true)
        try nl.setLinkUp("wlt1b", true)
        try nl.addAddress("100.64.1.1/24", to: "wlt1a")
        try nl.addAddress("100.64.2.1/30", to: "wlt1b")
        XCTAssertEqual(try nl.addresses(on: "wlt1a").filter { !$0.contains(":") }, ["100.64.1.1/24"])
        XCTAssertTrue(try mustShell("ip netns exec \(a) ip -4 -o addr show dev wlt1a").contains("inet 100.64.1.1/24"))
        XCTAssertThrowsError(try nl.addAddress("100.64.1.1/24", to: "wlt1a")) { error in
            XCTAssertEqual((error as? NetlinkError)?.isAlreadyExists, true, "\(error)")
        }

        // A gateway route, a connected route, a blackhole in another table, a default route.
        try nl.addRoute(RouteSpec(destination: "100.64.9.0/24", gateway: "100.64.1.2", routeProtocol: RouteProtocol.bird, metric: 10))
        try nl.addRoute(RouteSpec(destination: "100.64.10.0/24", outputInterface: "wlt1b"))
        try nl.addRoute(RouteSpec(destination: "100.64.11.0/24", table: 100, type: .blackhole))
        try nl.addRoute(RouteSpec(destination: "default", gateway: "100.64.2.2", outputInterface: "wlt1b"))
        let shown = try mustShell("ip netns exec \(a) ip route show")
        XCTAssertTrue(shown.contains("100.64.9.0/24 via 100.64.1.2 dev wlt1a proto bird metric 10"), shown)
        XCTAssertTrue(shown.contains("100.64.10.0/24 dev wlt1b proto static scope link"), shown)
        XCTAssertTrue(shown.contains("default via 100.64.2.2 dev wlt1b proto static"), shown)
        XCTAssertTrue(try mustShell("ip netns exec \(a) ip route show table 100").contains("blackhole 100.64.11.0/24"))

        let main = try nl.routes()
        let r9 = try XCTUnwrap(main.first { $0.destination == "100.64.9.0/24" })
        XCTAssertEqual(r9.gateway, "100.64.1.2")
        XCTAssertEqual(r9.outputInterface, "wlt1a")
        XCTAssertEqual(r9.routeProtocol, RouteProtocol.bird)
        XCTAssertEqual(r9.metric, 10)
        XCTAssertEqual(r9.scope, RouteScope.universe)
        let r10 = try XCTUnwrap(main.first { $0.destination == "100.64.10.0/24" })
        XCTAssertNil(r10.gateway)
        XCTAssertEqual(r10.scope, RouteScope.link)
        XCTAssertEqual(main.first { $0.destination == "0.0.0.0/0" }?.gateway, "100.64.2.2")
        XCTAssertEqual(main.first { $0.destination == "100.64.1.0/24" }?.routeProtocol, RouteProtocol.kernel)
        XCTAssertNil(main.first { $0.destination == "100.64.11.0/24" })
        XCTAssertEqual(try nl.routes(table: 100).map(\.destination), ["100.64.11.0/24"])
        XCTAssertEqual(try nl.routes(table: 100).first?.type, .blackhole)

        // Replace moves the route; add of an existing one fails; delete by prefix only.
        try nl.replaceRoute(RouteSpec(destination: "100.64.9.0/24", gateway: "100.64.2.2", routeProtocol: RouteProtocol.bird, metric: 10))
        XCTAssertEqual(try nl.routes().first { $0.destination == "100.64.9.0/24" }?.outputInterface, "wlt1b")
        XCTAssertThrowsError(try nl.addRoute(RouteSpec(destination: "100.64.9.0/24", gateway: "100.64.1.2", metric: 10))) { error in
            XCTAssertEqual((error as? NetlinkError)?.isAlreadyExists, true, "\(error)")
        }
        try nl.deleteRoute(RouteSpec(destination: "100.64.9.0/24"))
        try nl.deleteRoute(RouteSpec(destination: "100.64.11.0/24", table: 100, type: .blackhole))
        try nl.deleteRoute(RouteSpec(destination: "default"))
        XCTAssertNil(try nl.routes().first { $0.destination == "100.64.9.0/24" || $0.destination == "0.0.0.0/0" })
        XCTAssertEqual(try nl.routes(table: 100), [])
        XCTAssertThrowsError(try nl.deleteRoute(RouteSpec(destination: "100.64.9.0/24"))) { error in
            XCTAssertEqual((error as? NetlinkError)?.isNotFound, true, "\(error)")
        }

        try nl.deleteAddress("100.64.1.1/24", from: "wlt1a")
        XCTAssertEqual(try nl.addresses(on: "wlt1a").filter { !$0.contains(":") }, [])
    }

    func testErrorsNameTheOperationObjectNamespaceAndKernelReason() throws {
        let a = try scratch.make("nl-e")
        let nl = try Netlink(namespace: a)
        XCTAssertThrowsError(try nl.addRoute(RouteSpec(destination: "100.64.9.0/24", gateway: "100.64.1.1"))) { error in
            XCTAssertTrue("\(error)".hasPrefix("adding route 100.64.9.0/24 via 100.64.1.1 in \(a): Network is unreachable"), "\(error)")
        }
        XCTAssertThrowsError(try nl.addRoute(RouteSpec(destination: "100.64.9.1/24"))) { error in
            XCTAssertEqual("\(error)", "invalid destination \"100.64.9.1/24\": host bits are set (did you mean 100.64.9.0/24?)")
        }
        XCTAssertThrowsError(try nl.addAddress("100.64.1.300/24", to: "lo")) { error in
            XCTAssertTrue(error is ArgumentError && "\(error)".hasPrefix("invalid cidr \"100.64.1.300/24\""), "\(error)")
        }
        XCTAssertThrowsError(try nl.addAddress("100.64.1.1/33", to: "lo")) { error in
            XCTAssertEqual("\(error)", "invalid cidr \"100.64.1.1/33\": prefix length must be 0–32")
        }
        XCTAssertThrowsError(try nl.setMAC("lo", "zz:00")) { error in
            XCTAssertTrue(error is ArgumentError && "\(error)".hasPrefix("invalid mac"), "\(error)")
        }
        XCTAssertThrowsError(try nl.setLinkUp("wlt-none", true)) { error in
            XCTAssertEqual("\(error)", "setting link wlt-none up in \(a): No such device (no interface named wlt-none)")
        }
        XCTAssertThrowsError(try nl.createVethPair("wlt2a", peer: "wlt2b", peerNamespace: "wlt-absent")) { error in
            XCTAssertTrue("\(error)".contains("opening namespace wlt-absent"), "\(error)")
        }
        XCTAssertThrowsError(try Netlink(namespace: "wlt-absent")) { error in
            XCTAssertTrue("\(error)".contains("wlt-absent"), "\(error)")
        }
    }
}
