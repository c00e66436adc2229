// Network: every mutation is persisted and a new agent reloads an identical topology; a
// refused mutation (by validation or by the store) changes neither memory, the store,
// the datapath nor subscribers; learned routes are never persisted.

import Foundation
import GRDB
import Logging
@testable import WarrenAgent
import WarrenCore
import WarrenRPC
import XCTest

final class NetworkTests: XCTestCase {
    /// A topology using every kind of core mutation.
    static func build(_ core: AgentCore) async throws {
        try await core.call("bridge.create", ["name": "b1", "macAgingSeconds": 120])
        try await core.call("router.create", ["name": "r1", "arpAgingSeconds": 60])
        try await core.call("router.create", ["name": "r2", "adminUp": false])
        try await core.call("port.create", ["device": "b1", "name": "vm1", "vlan": 10])
        try await core.call("port.create", ["device": "b1", "name": "tmp"])
        try await core.call("port.create", ["device": "b1", "name": "vm2", "mac": "02:00:00:00:0a:02"])
        try await core.call("port.create", ["device": "b1", "name": "b1-r1"])
        try await core.call("port.create", ["device": "r1", "name": "r1-lan", "address": "100.64.1.1/24", "mac": "02:00:00:00:01:01"])
        try await core.call("port.create", ["device": "r1", "name": "r1-up", "address": "100.64.2.1/30"])
        try await core.call("port.create", ["device": "r2", "name": "r2-down", "address": "100.64.2.2/30"])
        try await core.call("port.create", ["device": "r2", "name": "r2-lan", "address": "198.51.100.1/24"])
        try await core.call("port.delete", ["name": "tmp"])
        try await core.call("port.link", ["port": "b1-r1", "peer": "r1-lan"])
        try await core.call("port.link", ["port": "r1-up", "peer": "r2-down"])
        try await core.call("port.bind", ["port": "vm1", "interface": "we-p-vm1"])
        try await core.call("port.bind", ["port": "vm2", "interface": "we-p-vm2"])
        try await core.call("port.bind", ["port": "r2-lan", "interface": "we-p-lan"])
        try await core.call("route.add", ["router": "r1", "destination": "198.51.100.0/24", "nextHopPort": "r1-up",
                                          "nextHopGateway": "100.64.2.2", "weight": 50])
        let gone = try await core.call("route.add", ["router": "r1", "destination": "203.0.113.0/24", "nextHopPort": "r1-up"])
        try await core.call("route.delete", ["id": .string(gone.string("id")!)])
        try await core.call("route.add", ["router": "r2", "destination": "100.64.1.0/24", "nextHopPort": "r2-down", "nextHopGateway": "100.64.2.1"])
        try await core.call("chain.create", ["name": "c1", "defaultAction": "drop"])
        try await core.call("rule.add", ["chain": "c1", "action": "accept", "name": "ssh",
                                         "match": ["ipProto": 6, "dstPortMin": 22, "dstPortMax": 22]])
        try await core.call("rule.add", ["chain": "c1", "action": "accept", "name": "icmp", "match": ["ipProto": 1], "position": 0])
        try await core.call("rule.add", ["chain": "c1", "action": "reject", "name": "temp"])
        try await core.call("rule.delete", ["chain": "c1", "id": "temp"])
        try await core.call("chain.attach", ["chain": "c1", "port": "vm1", "hook": "inbound"])
        try await core.call("chain.attach", ["chain": "c1", "router": "r1", "hook": "preRouting"])
        try await core.call("port.update", ["id": "vm2", "adminUp": false, "mssClamp": 1360])
        try await core.call("router.update", ["id": "r2", "adminUp": true])
    }

    /// Asserts two topologies hold the same configuration (versions count mutations, so
    /// they differ after a reload).
    static func assertSameConfiguration(_ a: Topology, _ b: Topology, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.bridges, b.bridges, "bridges", file: file, line: line)
        XCTAssertEqual(a.routers, b.routers, "routers", file: file, line: line)
        XCTAssertEqual(a.ports, b.ports, "ports (numbers, MACs, bindings, chains)", file: file, line: line)
        XCTAssertEqual(a.routes, b.routes, "routes", file: file, line: line)
        XCTAssertEqual(a.chains, b.chains, "chains and rules", file: file, line: line)
        XCTAssertEqual(a.portsByNumber, b.portsByNumber, "port numbers", file: file, line: line)
        XCTAssertEqual(a.devicePorts, b.devicePorts, "ports per device, in order", file: file, line: line)
        XCTAssertEqual(a.nextPortNumber, b.nextPortNumber, "next port number", file: file, line: line)
        for r in a.routers.keys { XCTAssertEqual(a.routes(of: r), b.routes(of: r), "route table", file: file, line: line) }
        for p in a.exteriorPorts { XCTAssertEqual(b.port(boundTo: p.binding.interfaceName!)?.id, p.id, file: file, line: line) }
    }

    func testMutationsArePersistedAndReloadIdentically() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        let before = await core.network.topology
        var document = try await core.call("topology.get")
        XCTAssertEqual(document["ports"]?.arrayValue?.count, 7)
        XCTAssertEqual(try core.storeCounts(), ["bridge": 1, "router": 2, "port": 7, "route": 2, "chain": 1],
                       "one record per resource; connected routes are derived")
        try core.store.close()

        // A new agent on the same file.
        let again = try AgentCore(directory: dir)
        let after = await again.network.topology
        Self.assertSameConfiguration(before, after)
        XCTAssertEqual(again.sink.count, 1, "the loaded topology is handed to the datapath once")
        XCTAssertEqual(again.sink.last?.version, after.version)
        var reloaded = try await again.call("topology.get")
        document["version"] = nil
        reloaded["version"] = nil
        XCTAssertEqual(document, reloaded)
        // The reloaded agent goes on mutating normally: names still unique, numbers not reused.
        await expectRPCError(-32002, field: "name") { try await again.call("port.create", ["device": "b1", "name": "vm1"]) }
        let p = try await again.call("port.create", ["device": "b1", "name": "vm3"])
        XCTAssertEqual(p["number"]?.intValue, Int64(before.nextPortNumber))
        try again.store.close()
    }

    func testRefusedMutationChangesNothing() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        let snapshot = try await core.snapshot()
        let topology = await core.network.topology
        // A change that applies a first step to the copy, then fails.
        do {
            try await core.network.mutate(touching: [ResourceRef(.bridge, ResourceID(high: 1, low: 1))], event: "bridge.created") { t throws(TopologyError) in
                _ = try t.addBridge(Bridge(id: ResourceID(high: 1, low: 1), name: "half"))
                return try t.addBridge(Bridge(id: ResourceID(high: 1, low: 2), name: "b1"))
            }
            XCTFail("the duplicate name must be refused")
        } catch let e as TopologyError {
            XCTAssertEqual(e, .duplicateName(kind: .bridge, name: "b1"))
        }
        let after = try await core.snapshot()
        XCTAssertEqual(after, snapshot)
        Self.assertSameConfiguration(topology, await core.network.topology)
        let half = await core.network.topology.resolve(.bridge, "half")
        XCTAssertNil(half)
    }

    func testStoreFailureChangesNothing() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        // The store refuses new router records and updates of port vm2 (a full disk, say).
        try await core.store.pool.write { db in
            try db.execute(sql: """
                CREATE TRIGGER fail_router BEFORE INSERT ON resources WHEN NEW.kind = 'router'
                BEGIN SELECT RAISE(ABORT, 'disk full'); END;
                CREATE TRIGGER fail_port BEFORE UPDATE ON resources WHEN NEW.name = 'vm2'
                BEGIN SELECT RAISE(ABORT, 'disk full'); END;
                """)
        }
        let snapshot = try await core.snapshot()
        let topology = await core.network.topology
        let e = await expectRPCError(-32603, field: nil) { try await core.call("router.create", ["name": "r3"]) }
        XCTAssertEqual(e?.reason, "method router.create failed", "store internals are not sent to clients")
        // A two-port mutation whose second record fails: neither port changes.
        await expectRPCError(-32603, field: nil) { try await core.call("port.link", ["port": "r2-lan", "peer": "vm2"]) }
        await expectRPCError(-32603, field: nil) { try await core.call("port.update", ["id": "vm2", "adminUp": true]) }
        let after = try await core.snapshot()
        XCTAssertEqual(after, snapshot, "memory, store, datapath and subscribers are untouched")
        Self.assertSameConfiguration(topology, await core.network.topology)
        let r3 = await core.network.topology.resolve(.router, "r3")
        XCTAssertNil(r3)

        // Once the store works again the same mutations succeed: nothing was half-reserved.
        try await core.store.pool.write { db in try db.execute(sql: "DROP TRIGGER fail_router; DROP TRIGGER fail_port") }
        try await core.call("router.create", ["name": "r3"])
        try await core.call("port.update", ["id": "vm2", "adminUp": true])
        XCTAssertEqual(core.sink.count, snapshot.sinkCalls + 2)
        try core.store.close()
        let again = try AgentCore(directory: dir)
        let r3again = await again.network.topology.resolve(.router, "r3")
        XCTAssertNotNil(r3again)
        let vm2 = await again.network.topology.ports[topology.resolve(.port, "vm2")!]!
        XCTAssertTrue(vm2.adminUp)
        XCTAssertEqual(vm2.binding, .exterior(interface: "we-p-vm2"), "the failed link left vm2 bound as before")
        try again.store.close()
    }

    /// Concurrent mutations share store transactions (group commit) without changing what
    /// each caller sees: every name is taken exactly once, a change that fails half-way on
    /// the working copy leaves nothing behind while its batch-mates commit, events come in
    /// version order, and the store reloads the same topology.
    func testConcurrentMutationsAreGroupCommittedCorrectly() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        let sinkBefore = core.sink.count, eventsBefore = core.recorder.count
        let outcomes = await withTaskGroup(of: (String, Bool).self) { group in
            for i in 0..<100 {
                for attempt in 0..<2 {
                    group.addTask {
                        do { _ = try await core.call("bridge.create", ["name": .string("n\(i)")]); return ("n\(i)", true) }
                        catch let e as RPCError {
                            XCTAssertEqual(e.code, -32002, "attempt \(attempt) of n\(i): \(e)")
                            return ("n\(i)", false)
                        } catch { XCTFail("\(error)"); return ("n\(i)", false) }
                    }
                }
                if i % 10 == 0 {
                    group.addTask {
                        do {
                            try await core.network.mutate(touching: [ResourceRef(.bridge, ResourceID(high: 7, low: UInt64(i)))]) { t throws(TopologyError) in
                                _ = try t.addBridge(Bridge(id: ResourceID(high: 7, low: UInt64(i)), name: "half\(i)"))
                                throw .invalid(field: "test", reason: "fails after a first step")
                            }
                            XCTFail("the change must fail")
                        } catch {}
                        return ("half", false)
                    }
                }
            }
            var out: [(String, Bool)] = []
            for await o in group { out.append(o) }
            return out
        }
        let created = outcomes.filter { $0.1 }.map(\.0)
        XCTAssertEqual(created.count, 100, "exactly one of the two creates per name succeeds")
        XCTAssertEqual(Set(created).count, 100)
        let t = await core.network.topology
        XCTAssertEqual(Set(t.bridges.values.map(\.name)), Set((0..<100).map { "n\($0)" }), "no half-applied change remains")
        XCTAssertEqual(try core.store.count(kind: "bridge"), 100)
        let sinkCalls = core.sink.count - sinkBefore
        XCTAssertLessThan(sinkCalls, 100, "concurrent mutations were committed in batches")
        XCTAssertEqual(core.sink.last?.version, t.version)
        let events = core.recorder.all.dropFirst(eventsBefore).compactMap { $0.data["version"]?.intValue }
        XCTAssertEqual(events.count, 100)
        XCTAssertEqual(events, events.sorted(), "events are published in version order")
        XCTAssertEqual(events.last, Int64(t.version))
        try core.store.close()
        let again = try AgentCore(directory: dir)
        Self.assertSameConfiguration(t, await again.network.topology)
        try again.store.close()
    }

    /// When a batch's transaction fails, every mutation of that batch fails and none of it
    /// stays in memory; mutations of other batches are unaffected; memory equals the store.
    func testFailedBatchLeavesMemoryEqualToStore() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await core.store.pool.write { db in
            try db.execute(sql: """
                CREATE TRIGGER fail_router BEFORE INSERT ON resources WHEN NEW.kind = 'router'
                BEGIN SELECT RAISE(ABORT, 'disk full'); END;
                """)
        }
        let outcomes = await withTaskGroup(of: (String, Bool).self) { group in
            for i in 0..<40 {
                group.addTask {
                    let kind = i % 2 == 0 ? "router" : "bridge"
                    do { _ = try await core.call("\(kind).create", ["name": .string("\(kind)\(i)")]); return ("\(kind)\(i)", true) }
                    catch { return ("\(kind)\(i)", false) }
                }
            }
            var out: [(String, Bool)] = []
            for await o in group { out.append(o) }
            return out
        }
        XCTAssertFalse(outcomes.contains { $0.0.hasPrefix("router") && $0.1 }, "no router create can succeed")
        let t = await core.network.topology
        let acknowledged = Set(outcomes.filter(\.1).map(\.0))
        XCTAssertEqual(Set(t.bridges.values.map(\.name)), acknowledged, "memory holds exactly the acknowledged bridges")
        XCTAssertTrue(t.routers.isEmpty)
        try core.store.close()
        let again = try AgentCore(directory: dir)
        Self.assertSameConfiguration(t, await again.network.topology)
        try again.store.close()
    }

    /// A sink that takes its time to put a topology into effect.
    final class SlowSink: TopologySink, @unchecked Sendable {
        private let lock = NSLock()
        private var handed: UInt64 = 0
        private var inEffect: UInt64 = 0
        var effective: UInt64 { lock.withLock { inEffect } }
        func apply(topology: Topology, invalidate tags: [FlowTag]) { lock.withLock { handed = topology.version } }
        func settle() async {
            try? await Task.sleep(nanoseconds: 30_000_000)
            lock.withLock { inEffect = handed }
        }
    }

    /// A mutation is acknowledged only once the datapath has the change in effect.
    func testMutationIsAcknowledgedAfterTheSinkSettles() async throws {
        let dir = try makeTempDirectory(self)
        let store = try Store(path: dir + "/warren.db")
        let sink = SlowSink()
        let network = try Network(store: store, sink: sink, events: EventBus(), logger: Logger(label: "test"))
        for i in 0..<3 {
            let t = try await network.mutate(touching: [ResourceRef(.bridge, ResourceID(high: 3, low: UInt64(i)))]) { t throws(TopologyError) in
                try t.addBridge(Bridge(id: ResourceID(high: 3, low: UInt64(i)), name: "s\(i)"))
            }
            XCTAssertEqual(sink.effective, t.version, "mutation \(i) acknowledged before the sink settled")
        }
        try store.close()
    }

    func testSuccessfulMutationReachesStoreDatapathAndSubscribers() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        let calls = core.sink.count
        let r = try await core.call("router.create", ["name": "r1"])
        XCTAssertEqual(core.sink.count, calls + 1)
        let id = ResourceID(r.string("id")!)!
        XCTAssertEqual(core.sink.last?.tags, [.device(id)])
        let version = await core.network.topology.version
        XCTAssertEqual(core.sink.last?.version, version)
        XCTAssertEqual(try core.store.count(kind: "router"), 1)
        let event = core.recorder.all.last
        XCTAssertEqual(event?.topic, "topology")
        XCTAssertEqual(event?.data["change"], "router.created")
        XCTAssertEqual(event?.data["version"]?.intValue, Int64(version))
        try core.store.close()
    }

    func testLearnedRoutesAreNotPersisted() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        let t0 = await core.network.topology
        let r1 = t0.resolve(.router, "r1")!, up = t0.resolve(.port, "r1-up")!
        let learnedID = await core.network.newID(), otherID = await core.network.newID()
        // A plugin injects learned routes, naming them as touched or not: neither is stored.
        try await core.network.mutate(touching: [ResourceRef(.route, learnedID)], event: "route.learned") { t throws(TopologyError) in
            try t.addRoute(Route(id: learnedID, router: r1, destination: IPv4Prefix("203.0.113.0/25")!, nextHopPort: up,
                                 nextHopGateway: IPv4Address("100.64.2.2"), weight: 100, source: .learned, owner: "test tunnel A"))
        }
        try await core.network.mutate(touching: [], event: "route.learned") { t throws(TopologyError) in
            try t.addRoute(Route(id: otherID, router: r1, destination: IPv4Prefix("203.0.113.128/25")!, nextHopPort: up,
                                 weight: 200, source: .learned, owner: "test tunnel B"))
        }
        let listed = try await core.call("route.list", ["router": "r1"])
        XCTAssertEqual(listed.items.filter { $0["source"] == "learned" }.count, 2)
        XCTAssertEqual(try core.storeCounts()["route"], 2, "only the two static routes are stored")
        // route.delete refuses learned routes: they leave when their session withdraws them.
        await expectRPCError(-32003, field: "id") { try await core.call("route.delete", ["id": .string(learnedID.description)]) }
        // Withdrawing a learned route touches no stored record either.
        try await core.network.mutate(touching: [ResourceRef(.route, otherID)]) { t throws(TopologyError) in try t.removeRoute(otherID) }
        XCTAssertEqual(try core.storeCounts()["route"], 2)
        try core.store.close()

        let again = try AgentCore(directory: dir)
        let t = await again.network.topology
        XCTAssertNil(t.routes[learnedID])
        XCTAssertEqual(t.routes(of: r1).map(\.source).sorted { $0.rawValue < $1.rawValue }, [.connected, .connected, .static])
        XCTAssertEqual(Set(t.routes.values.filter { $0.source == .static }.map(\.destination.description)),
                       ["198.51.100.0/24", "100.64.1.0/24"])
        try again.store.close()
    }

    /// A plugin's static route (StaticVPN's routes to remote subnets) is configuration: it
    /// is stored and reloaded, and only its owner may remove it.
    func testPluginOwnedStaticRoutesArePersistedAndProtected() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        let t0 = await core.network.topology
        let r1 = t0.resolve(.router, "r1")!, up = t0.resolve(.port, "r1-up")!
        let id = await core.network.newID()
        try await core.network.mutate(touching: [ResourceRef(.route, id)], event: "route.added") { t throws(TopologyError) in
            try t.addRoute(Route(id: id, router: r1, destination: IPv4Prefix("203.0.113.0/24")!, nextHopPort: up,
                                 nextHopGateway: IPv4Address("100.64.2.2"), source: .static, owner: "vpn.static cs1"))
        }
        let e = await expectRPCError(-32003, field: "id") { try await core.call("route.delete", ["id": .string(id.description)]) }
        XCTAssertTrue(e?.reason?.contains("vpn.static cs1") ?? false, "\(String(describing: e))")
        XCTAssertEqual(try core.storeCounts()["route"], 3)
        try core.store.close()
        let again = try AgentCore(directory: dir)
        let reloaded = await again.network.topology.routes[id]
        XCTAssertEqual(reloaded?.owner, "vpn.static cs1")
        XCTAssertEqual(reloaded?.destination.description, "203.0.113.0/24")
        try again.store.close()
    }

    func testInconsistentStoreIsRefused() async throws {
        let dir = try makeTempDirectory(self)
        let core = try AgentCore(directory: dir)
        try await Self.build(core)
        // A port whose device record is gone (written by hand, not by the agent).
        try core.store.write([.delete(kind: "router", id: (await core.network.topology).resolve(.router, "r2")!.description)])
        try core.store.close()
        XCTAssertThrowsError(try AgentCore(directory: dir)) { error in
            guard case StoreError.decoding = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("inconsistent"), "\(error)")
        }
    }
}
