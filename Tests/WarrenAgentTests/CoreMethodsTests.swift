// Core JSON-RPC methods through a MethodRegistry, as the server calls them: every
// refused call returns the documented code and names the field in data.field, and
// changes nothing (topology, store, datapath, subscribers).

import Foundation
@testable import WarrenAgent
import WarrenCore
import WarrenRPC
import XCTest

final class CoreMethodsTests: XCTestCase {
    /// b1 (vm1 bound, b1-r1) ── r1 (r1-lan 100.64.1.1/24) ; r2 (r2-lan 100.64.2.1/24); chain c1.
    func makeCore() async throws -> AgentCore {
        let core = try AgentCore(directory: try makeTempDirectory(self))
        try await core.call("bridge.create", ["name": "b1"])
        try await core.call("router.create", ["name": "r1"])
        try await core.call("router.create", ["name": "r2"])
        try await core.call("port.create", ["device": "b1", "name": "vm1"])
        try await core.call("port.create", ["device": "b1", "name": "b1-r1"])
        try await core.call("port.create", ["device": "r1", "name": "r1-lan", "address": "100.64.1.1/24"])
        try await core.call("port.create", ["device": "r2", "name": "r2-lan", "address": "100.64.2.1/24"])
        try await core.call("port.link", ["port": "b1-r1", "peer": "r1-lan"])
        try await core.call("port.bind", ["port": "vm1", "interface": "we-p-vm1"])
        try await core.call("chain.create", ["name": "c1"])
        return core
    }

    struct Case {
        var method: String
        var params: JSONValue?
        var code: Int
        var field: String?
        var reasonContains: String? = nil
    }

    static let invalid = -32602, notFound = -32001, conflict = -32002, precondition = -32003, unavailable = -32004

    static let cases: [Case] = [
        // Wrong types, missing and malformed params.
        Case(method: "bridge.create", params: ["name": 5], code: invalid, field: "name", reasonContains: "expected a string"),
        Case(method: "bridge.create", params: [:], code: invalid, field: "name", reasonContains: "missing"),
        Case(method: "bridge.create", params: nil, code: invalid, field: "name"),
        Case(method: "bridge.create", params: [1, 2], code: invalid, field: nil, reasonContains: "must be an object"),
        Case(method: "bridge.create", params: ["name": ""], code: invalid, field: "name"),
        Case(method: "bridge.create", params: ["name": "5f0c3a52-6f1e-4a8e-9c55-2b7d3c1e9a10"], code: invalid, field: "name", reasonContains: "UUID"),
        Case(method: "bridge.create", params: ["name": "x", "macAgingSeconds": -1], code: invalid, field: "macAgingSeconds"),
        Case(method: "bridge.create", params: ["name": "x", "macAgingSeconds": 0], code: invalid, field: "macAgingSeconds"),
        Case(method: "router.create", params: ["name": "x", "adminUp": "yes"], code: invalid, field: "adminUp", reasonContains: "boolean"),
        Case(method: "router.create", params: ["name": ["nested": true]], code: invalid, field: "name"),
        // Duplicate names.
        Case(method: "bridge.create", params: ["name": "b1"], code: conflict, field: "name", reasonContains: "already exists"),
        Case(method: "router.create", params: ["name": "r1"], code: conflict, field: "name"),
        Case(method: "chain.create", params: ["name": "c1"], code: conflict, field: "name"),
        Case(method: "port.create", params: ["device": "b1", "name": "vm1"], code: conflict, field: "name"),
        // Unknown device, invalid CIDR and MAC.
        Case(method: "port.create", params: ["device": "nope", "name": "p"], code: notFound, field: "device", reasonContains: "nope"),
        Case(method: "port.create", params: ["name": "p"], code: invalid, field: "device"),
        Case(method: "port.create", params: ["device": "r1", "name": "p"], code: invalid, field: "address", reasonContains: "needs an address"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.0/24"], code: invalid, field: "address"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1/33"], code: invalid, field: "address"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1"], code: invalid, field: "address"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.1.7/24"], code: invalid, field: "address", reasonContains: "overlaps port r1-lan"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1/24", "mac": "zz:00:00:00:00:01"], code: invalid, field: "mac"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1/24", "mac": "02:00:00:00:01"], code: invalid, field: "mac"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1/24", "mac": "01:00:5e:00:00:01"], code: invalid, field: "mac", reasonContains: "unicast"),
        Case(method: "port.create", params: ["device": "b1", "name": "p", "address": "100.64.9.1/24"], code: invalid, field: "address", reasonContains: "bridge ports"),
        Case(method: "port.create", params: ["device": "b1", "name": "p", "vlan": 4095], code: invalid, field: "vlan"),
        Case(method: "port.create", params: ["device": "b1", "name": "p", "vlan": 70000], code: invalid, field: "vlan"),
        Case(method: "port.create", params: ["device": "r1", "name": "p", "address": "100.64.9.1/24", "vlan": 5], code: invalid, field: "vlan"),
        // Links and bindings.
        Case(method: "port.link", params: ["port": "vm1", "peer": "b1-r1"], code: invalid, field: "peer", reasonContains: "same device"),
        Case(method: "port.link", params: ["port": "vm1", "peer": "vm1"], code: invalid, field: "peer"),
        Case(method: "port.link", params: ["port": "vm1", "peer": "ghost"], code: notFound, field: "peer"),
        Case(method: "port.link", params: ["port": "ghost", "peer": "vm1"], code: notFound, field: "port"),
        Case(method: "port.link", params: ["port": "r2-lan", "peer": "r1-lan"], code: precondition, field: "peer", reasonContains: "already linked"),
        Case(method: "port.bind", params: ["port": "vm1", "interface": "bad/name"], code: invalid, field: "interface"),
        Case(method: "port.bind", params: ["port": "vm1", "interface": "a-name-longer-than-15"], code: invalid, field: "interface"),
        Case(method: "port.bind", params: ["port": "r2-lan", "interface": "we-p-vm1"], code: precondition, field: "interface", reasonContains: "already bound"),
        Case(method: "port.bind", params: ["port": "ghost", "interface": "x"], code: notFound, field: "port"),
        Case(method: "port.unbind", params: ["id": "ghost"], code: notFound, field: "id"),
        Case(method: "port.update", params: ["id": "r1-lan", "vlan": 10], code: invalid, field: "vlan"),
        Case(method: "port.update", params: ["id": "vm1", "vlan": 4095], code: invalid, field: "vlan"),
        Case(method: "port.get", params: ["id": "ghost"], code: notFound, field: "id"),
        // Devices with ports cannot be deleted.
        Case(method: "bridge.delete", params: ["name": "b1"], code: precondition, field: "id", reasonContains: "still has 2 port(s): b1-r1, vm1"),
        Case(method: "router.delete", params: ["id": "r1"], code: precondition, field: "id", reasonContains: "r1-lan"),
        Case(method: "bridge.delete", params: ["name": "ghost"], code: notFound, field: "id"),
        Case(method: "bridge.delete", params: ["name": "r1"], code: notFound, field: "id", reasonContains: "no bridge"),
        Case(method: "bridge.delete", params: [:], code: invalid, field: "id"),
        Case(method: "bridge.update", params: ["id": "b1", "macAgingSeconds": 0], code: invalid, field: "macAgingSeconds"),
        Case(method: "router.update", params: ["id": "b1"], code: notFound, field: "id"),
        // Routes.
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan", "nextHopGateway": "100.64.9.9"],
             code: invalid, field: "nextHopGateway", reasonContains: "not in the subnet of port r1-lan (100.64.1.1/24)"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan", "nextHopGateway": "100.64.1.1"],
             code: invalid, field: "nextHopGateway", reasonContains: "own address"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan", "nextHopGateway": "100.64.1.300"],
             code: invalid, field: "nextHopGateway"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.1/24", "nextHopPort": "r1-lan"],
             code: invalid, field: "destination", reasonContains: "did you mean 198.51.100.0/24"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r2-lan"],
             code: invalid, field: "nextHopPort", reasonContains: "does not belong"),
        Case(method: "route.add", params: ["router": "ghost", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan"], code: notFound, field: "router"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "ghost"], code: notFound, field: "nextHopPort"),
        Case(method: "route.add", params: ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan", "weight": -3], code: invalid, field: "weight"),
        Case(method: "route.delete", params: ["id": "not-a-uuid"], code: notFound, field: "id"),
        Case(method: "route.get", params: ["id": "5f0c3a52-6f1e-4a8e-9c55-2b7d3c1e9a10"], code: notFound, field: "id"),
        Case(method: "route.list", params: ["router": "ghost"], code: notFound, field: "router"),
        // Rules: port ranges and the rest of the match.
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["srcPortMin": 100, "srcPortMax": 10]],
             code: invalid, field: "match.srcPortMin", reasonContains: "greater than srcPortMax"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["dstPortMin": 443, "dstPortMax": 80]],
             code: invalid, field: "match.dstPortMin"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["dstPortMax": 65536]], code: invalid, field: "match.dstPortMax"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["srcPortMin": -1]], code: invalid, field: "match.srcPortMin"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["vlan": 0]], code: invalid, field: "match.vlan"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["ipSrc": "10.0.0.1/8"]], code: invalid, field: "match.ipSrc"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "accept", "match": ["ethSrc": "nope"]], code: invalid, field: "match.ethSrc"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "allow"], code: invalid, field: "action"),
        Case(method: "rule.add", params: ["chain": "c1"], code: invalid, field: "action", reasonContains: "missing"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "drop", "position": 1], code: invalid, field: "position", reasonContains: "0…0"),
        Case(method: "rule.add", params: ["chain": "c1", "action": "drop", "position": -1], code: invalid, field: "position"),
        Case(method: "rule.add", params: ["chain": "ghost", "action": "drop"], code: notFound, field: "chain"),
        Case(method: "rule.delete", params: ["chain": "c1", "id": "nope"], code: notFound, field: "id"),
        Case(method: "chain.create", params: ["name": "c2", "defaultAction": "maybe"], code: invalid, field: "defaultAction"),
        Case(method: "chain.attach", params: ["chain": "c1", "port": "vm1", "hook": "preRouting"], code: invalid, field: "hook"),
        Case(method: "chain.attach", params: ["chain": "c1", "router": "r1", "hook": "inbound"], code: invalid, field: "hook"),
        Case(method: "chain.attach", params: ["chain": "c1", "router": "r1", "hook": "sideways"], code: invalid, field: "hook"),
        Case(method: "chain.attach", params: ["chain": "c1", "port": "vm1", "router": "r1", "hook": "inbound"], code: invalid, field: "hook"),
        Case(method: "chain.attach", params: ["chain": "ghost", "port": "vm1", "hook": "inbound"], code: notFound, field: "chain"),
        Case(method: "chain.attach", params: ["chain": "c1", "port": "ghost", "hook": "inbound"], code: notFound, field: "port"),
        Case(method: "chain.delete", params: ["id": "ghost"], code: notFound, field: "id"),
        // Tracing.
        Case(method: "packet.trace", params: ["port": "ghost", "packet": [:]], code: notFound, field: "port"),
        Case(method: "packet.trace", params: ["port": "vm1"], code: invalid, field: "packet"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["protocol": "sctp"]], code: invalid, field: "packet.protocol"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["protocol": 300]], code: invalid, field: "packet.protocol"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["payloadLength": 2000]], code: invalid, field: "packet.payloadLength"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["vlan": 5000]], code: invalid, field: "packet.vlan"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["ipDst": "1.2.3"]], code: invalid, field: "packet.ipDst"),
        Case(method: "packet.trace", params: ["port": "vm1", "packet": ["ttl": 256]], code: invalid, field: "packet.ttl"),
        // No datapath in this agent.
        Case(method: "flow.list", params: [:], code: unavailable, field: nil, reasonContains: "disabled"),
        Case(method: "flow.stats", params: nil, code: unavailable, field: nil),
    ]

    func testEveryRefusalNamesItsFieldAndChangesNothing() async throws {
        let core = try await makeCore()
        let before = try await core.snapshot()
        for c in Self.cases {
            let what = "\(c.method) \(c.params.map(\.text) ?? "(no params)")"
            let e = await expectRPCError(c.code, field: c.field, what) { try await core.call(c.method, c.params) }
            if let want = c.reasonContains, let e {
                XCTAssertTrue(e.reason?.contains(want) ?? false, "\(what): reason \"\(e.reason ?? "")\" lacks \"\(want)\"")
            }
            let after = try await core.snapshot()
            XCTAssertEqual(after, before, "\(what) changed something")
        }
        try core.store.close()
    }

    func testUnknownMethodAndRpcDiscover() async throws {
        let core = try await makeCore()
        do {
            _ = try await core.call("bridge.explode", [:])
            XCTFail("an unknown method must be refused")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, -32601)
            XCTAssertEqual(e.data?["method"], "bridge.explode")
        }
        // Every core method of API.md is registered, with complete schemas.
        let names = Set(core.registry.methodNames)
        for m in ["bridge.create", "router.create", "port.create", "port.link", "port.bind", "port.unbind", "port.delete",
                  "bridge.delete", "router.delete", "route.add", "route.delete", "route.list", "chain.create", "rule.add",
                  "bridge.get", "router.get", "port.get", "route.get", "chain.get", "bridge.list", "router.list", "port.list",
                  "chain.list", "topology.get", "packet.trace", "flow.list", "flow.stats", "rpc.discover"] {
            XCTAssertTrue(names.contains(m), "\(m) is not registered")
        }
        XCTAssertEqual(core.registry.schemaProblems, [])
        let doc = try await core.call("rpc.discover")
        let portCreate = doc["methods"]?.arrayValue?.first { $0["name"] == "port.create" }
        let params = portCreate?["params"]?.arrayValue ?? []
        XCTAssertEqual(params.first { $0["name"] == "device" }?["required"], true)
        XCTAssertEqual(params.first { $0["name"] == "mac" }?["required"], false)
        try core.store.close()
    }

    func testDeletingTheLastPortThenTheDevice() async throws {
        let core = try await makeCore()
        try await core.call("route.add", ["router": "r2", "destination": "198.51.100.0/24", "nextHopPort": "r2-lan", "nextHopGateway": "100.64.2.9"])
        // A port that routes leave through cannot go.
        await expectRPCError(-32003, field: "id", "port.delete") { try await core.call("port.delete", ["id": "r2-lan"]) }
        let route = try await core.call("route.list", ["router": "r2"]).items.first { $0["source"] == "static" }!
        // The connected route is not deletable by itself.
        let connected = try await core.call("route.list", ["router": "r2"]).items.first { $0["source"] == "connected" }!
        await expectRPCError(-32602, field: "id") { try await core.call("route.delete", ["id": connected["id"]!]) }
        // The route's router must match when given.
        await expectRPCError(-32602, field: "router") { try await core.call("route.delete", ["id": route["id"]!, "router": "r1"]) }
        try await core.call("route.delete", ["id": route["id"]!, "router": "r2"])
        try await core.call("port.delete", ["id": "r2-lan"])
        try await core.call("router.delete", ["name": "r2"])
        await expectRPCError(-32001, field: "id") { try await core.call("router.get", ["name": "r2"]) }
        // A chain in use cannot be deleted; detached, it can.
        try await core.call("chain.attach", ["chain": "c1", "port": "vm1", "hook": "outbound"])
        await expectRPCError(-32003, field: "id") { try await core.call("chain.delete", ["name": "c1"]) }
        let detached = try await core.call("chain.attach", ["port": "vm1", "hook": "outbound"])
        XCTAssertEqual(detached, .null)
        try await core.call("chain.delete", ["name": "c1"])
        XCTAssertEqual(try core.storeCounts(), ["bridge": 1, "router": 1, "port": 3, "route": 0, "chain": 0])
        try core.store.close()
    }

    func testResultsUseTheContractFieldNames() async throws {
        let core = try await makeCore()
        let port = try await core.call("port.get", ["name": "r1-lan"])
        XCTAssertEqual(port["name"], "r1-lan")
        XCTAssertEqual(port["deviceName"], "r1")
        XCTAssertEqual(port["deviceKind"], "router")
        XCTAssertEqual(port["address"], "100.64.1.1/24")
        XCTAssertEqual(port["binding"], "interior")
        XCTAssertEqual(port["peerName"], "b1-r1")
        XCTAssertNotNil(MACAddress(port.string("mac") ?? ""), "a generated MAC is returned")
        XCTAssertNotNil(ResourceID(port.string("id") ?? ""))
        // ID and name are interchangeable everywhere.
        let byID = try await core.call("port.get", ["id": port["id"]!])
        XCTAssertEqual(byID, port)
        let vm1 = try await core.call("port.get", ["id": "vm1"])
        XCTAssertEqual(vm1["binding"], "exterior")
        XCTAssertEqual(vm1["interface"], "we-p-vm1")
        // A given MAC is kept.
        let p = try await core.call("port.create", ["device": "r2", "name": "r2-x", "address": "100.64.3.1/24", "mac": "02:AA:00:00:00:01"])
        XCTAssertEqual(p["mac"], "02:aa:00:00:00:01")
        let routes = try await core.call("route.list", ["router": "r2"]).items
        XCTAssertEqual(routes.map { $0.string("destination") ?? "" }.sorted(), ["100.64.2.0/24", "100.64.3.0/24"])
        XCTAssertTrue(routes.allSatisfy { $0["source"] == "connected" && $0["routerName"] == "r2" })
        let rule = try await core.call("rule.add", ["chain": "c1", "action": "drop", "name": "web",
                                                    "match": ["ipProto": 6, "dstPortMin": 80, "dstPortMax": 443]])
        XCTAssertEqual(rule["rules"]?[0]?["name"], "web")
        XCTAssertEqual(rule["rules"]?[0]?["match"]?["dstPortMax"]?.intValue, 443)
        try core.store.close()
    }

    func testTopologyGet() async throws {
        let core = try await makeCore()
        try await core.call("route.add", ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-lan", "nextHopGateway": "100.64.1.254"])
        try await core.call("chain.attach", ["chain": "c1", "router": "r1", "hook": "preRouting"])
        let doc = try await core.call("topology.get")
        let version = await core.network.topology.version
        XCTAssertEqual(doc["version"]?.intValue, Int64(version))
        XCTAssertEqual(doc["bridges"]?.arrayValue?.map { $0.string("name") ?? "" }, ["b1"])
        XCTAssertEqual(doc["bridges"]?[0]?["ports"], ["vm1", "b1-r1"], "ports in port-number order")
        XCTAssertEqual(doc["routers"]?.arrayValue?.map { $0.string("name") ?? "" }, ["r1", "r2"])
        XCTAssertEqual(doc["ports"]?.arrayValue?.map { $0.string("name") ?? "" }, ["vm1", "b1-r1", "r1-lan", "r2-lan"])
        XCTAssertEqual(doc["ports"]?.arrayValue?.map { $0["number"]?.intValue ?? 0 }, [1, 2, 3, 4])
        let routes = doc["routes"]?.arrayValue ?? []
        XCTAssertEqual(routes.map { "\($0.string("routerName")!) \($0.string("destination")!) \($0.string("source")!)" },
                       ["r1 100.64.1.0/24 connected", "r1 198.51.100.0/24 static", "r2 100.64.2.0/24 connected"])
        XCTAssertEqual(doc["chains"]?[0]?["attachedTo"], ["router r1 preRouting"])
        // The document decodes into the same views the per-kind methods return.
        let list = try await core.call("port.list")
        XCTAssertEqual(list["items"], doc["ports"])
        try core.store.close()
    }

    func testPacketTrace() async throws {
        let core = try await makeCore()
        try await core.call("port.create", ["device": "b1", "name": "vm2"])
        try await core.call("port.bind", ["port": "vm2", "interface": "we-p-vm2"])
        let gatewayMAC = try await core.call("port.get", ["name": "r1-lan"])["mac"]!

        // Broadcast on the bridge floods to every other port (vm2, and into the router).
        var t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "100.64.1.11", "protocol": "udp"]])
        XCTAssertEqual(t.string("result.kind"), "output", t.text)
        XCTAssertEqual(t["result"]?["ports"], ["vm2"], t.text)
        XCTAssertEqual(t["steps"]?[0]?["device"], "b1")
        XCTAssertEqual(t["cacheable"], true)
        XCTAssertTrue(t.string("packet")?.contains("UDP 40000 > 53") ?? false, "default ports for UDP: \(t.text)")

        // A ping to the gateway is answered by the router: a generated echo reply back out of
        // vm1. (The bridge has not learned the gateway's MAC in this fresh agent, so the
        // request is also flooded to vm2.)
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "100.64.1.1", "protocol": "icmp", "icmpType": 8]])
        XCTAssertEqual(t["result"]?["generated"]?.arrayValue?.count, 1, t.text)
        XCTAssertEqual(t["result"]?["generated"]?[0]?["port"], "vm1", t.text)
        XCTAssertTrue(t["result"]?["generated"]?[0]?.string("summary")?.contains("ICMP type 0") ?? false, t.text)
        XCTAssertTrue(t["steps"]?.arrayValue?.contains { $0["device"] == "r1" && ($0.string("decision")?.contains("reply") ?? false) } ?? false, t.text)
        XCTAssertTrue(t["result"]?["generated"]?[0]?.string("summary")?.contains("100.64.1.1 > 100.64.1.10") ?? false, t.text)
        XCTAssertEqual(t["steps"]?.arrayValue?.map { $0.string("device") ?? "" }.contains("r1"), true, t.text)
        XCTAssertTrue(t.string("packet")?.contains(gatewayMAC.stringValue!) ?? false, "ethDst defaults to the gateway's MAC for the gateway: \(t.text)")

        // ARP for the gateway is answered too.
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["arp": true, "ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "100.64.1.1"]])
        XCTAssertEqual(t["result"]?["generated"]?[0]?["port"], "vm1", t.text)
        XCTAssertEqual(t["result"]?["ports"], ["vm2"], "a broadcast floods: \(t.text)")
        XCTAssertTrue(t["result"]?["generated"]?[0]?.string("summary")?.contains("ARP 100.64.1.1 is-at") ?? false, t.text)

        // Off-subnet with no route: the router drops it, says why, and answers ICMP
        // network unreachable (type 3 code 0).
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "203.0.113.5", "protocol": "tcp"]])
        XCTAssertTrue(t["result"]?["reasons"]?.arrayValue?.contains { $0.stringValue?.contains("no route to 203.0.113.5") ?? false } ?? false, t.text)
        XCTAssertTrue(t["result"]?["generated"]?[0]?.string("summary")?.contains("ICMP type 3 code 0") ?? false, t.text)
        XCTAssertEqual(t["cacheable"], false, "a packet answered by the agent is not cached: \(t.text)")
        // Once the router knows the way (a route and the next hop on r1-up's link), the
        // packet leaves the router towards it — pending ARP for the gateway.
        try await core.call("port.create", ["device": "r1", "name": "r1-up", "address": "100.64.9.1/30"])
        try await core.call("port.bind", ["port": "r1-up", "interface": "we-p-up"])
        try await core.call("route.add", ["router": "r1", "destination": "203.0.113.0/24", "nextHopPort": "r1-up", "nextHopGateway": "100.64.9.2"])
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "203.0.113.5", "protocol": "tcp"]])
        XCTAssertTrue(t.text.contains("100.64.9.2"), "the trace names the gateway: \(t.text)")
        XCTAssertFalse(t["result"]?["reasons"]?.arrayValue?.contains { $0.stringValue?.contains("no route") ?? false } ?? true, t.text)

        // A drop rule on vm1's inbound chain stops the packet at the bridge, and says so.
        try await core.call("rule.add", ["chain": "c1", "action": "drop", "name": "no-udp", "match": ["ipProto": 17]])
        try await core.call("chain.attach", ["chain": "c1", "port": "vm1", "hook": "inbound"])
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "100.64.1.11", "protocol": "udp"]])
        XCTAssertEqual(t.string("result.kind"), "drop", t.text)
        XCTAssertFalse((t["result"]?["reasons"]?.arrayValue ?? []).isEmpty, t.text)
        XCTAssertTrue(t.text.contains("c1"), "the chain is named in the trace: \(t.text)")
        // TCP still passes (first match decides; default accept).
        t = try await core.call("packet.trace", ["port": "vm1", "packet": ["ethSrc": "02:00:00:00:00:01", "ipSrc": "100.64.1.10", "ipDst": "100.64.1.11", "protocol": "tcp"]])
        XCTAssertEqual(t["result"]?["ports"], ["vm2"], t.text)
        // Tracing changes nothing.
        let before = try await core.snapshot()
        _ = try await core.call("packet.trace", ["port": "vm2", "packet": [:]])
        let after = try await core.snapshot()
        XCTAssertEqual(after, before)
        try core.store.close()
    }
}
