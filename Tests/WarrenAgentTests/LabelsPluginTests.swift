// The labels example plugin (Plugins/Example), tested the way Docs/plugins.md teaches:
// a real Store and Network in a temp directory, the plugin built with the context the
// agent would give it, its methods called through the registry; persistence checked
// with a new plugin instance on the reopened store; garbage collection and graceful
// shutdown through the plugin's Service.

import Foundation
import Logging
import ServiceLifecycle
@testable import ExamplePlugin
@testable import WarrenAgent
import WarrenCore
import WarrenRPC
import XCTest

final class LabelsPluginTests: XCTestCase {
    func makeCore(_ dir: String) async throws -> (AgentCore, LabelsPlugin) {
        let core = try AgentCore(directory: dir)
        let labels = try await core.load(LabelsPlugin.self)
        return (core, labels)
    }

    func makeTopology(_ core: AgentCore) async throws {
        try await core.call("bridge.create", ["name": "b1"])
        try await core.call("router.create", ["name": "r1"])
        try await core.call("port.create", ["device": "b1", "name": "vm1"])
        try await core.call("port.create", ["device": "b1", "name": "vm2"])
        try await core.call("chain.create", ["name": "c1"])
    }

    func testSetGetDeleteFind() async throws {
        let dir = try makeTempDirectory(self)
        let (core, _) = try await makeCore(dir)
        try await makeTopology(core)
        XCTAssertTrue(core.registry.methodNames.contains("labels.set"), "methods are registered under the plugin's prefix")
        XCTAssertEqual(core.registry.methodNames.filter { $0.hasPrefix("labels.") }, ["labels.delete", "labels.find", "labels.get", "labels.set"])

        let vm1 = try await core.call("port.get", ["name": "vm1"])
        var r = try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"])
        XCTAssertEqual(r["name"], "vm1")
        XCTAssertEqual(r["id"], vm1["id"])
        XCTAssertEqual(r["labels"], ["tenant": "acme"])
        // By ID too; a second key; overwriting a value.
        r = try await core.call("labels.set", ["resource": ["kind": "port", "id": vm1["id"]!], "key": "cloud.example/instance", "value": "i-123"])
        r = try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "globex"])
        XCTAssertEqual(r["labels"], ["tenant": "globex", "cloud.example/instance": "i-123"])
        try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm2"], "key": "tenant", "value": "acme"])
        try await core.call("labels.set", ["resource": ["kind": "router", "id": "r1"], "key": "tenant", "value": "acme"])
        try await core.call("labels.set", ["resource": ["kind": "bridge", "id": "b1"], "key": "zone", "value": ""])
        try await core.call("labels.set", ["resource": ["kind": "chain", "id": "c1"], "key": "tier", "value": "web"])

        r = try await core.call("labels.get", ["resource": ["kind": "port", "id": "vm2"]])
        XCTAssertEqual(r["labels"], ["tenant": "acme"])
        r = try await core.call("labels.get", ["resource": ["kind": "port", "id": "vm1"]])
        XCTAssertEqual(r["labels"]?["tenant"], "globex")
        // A resource without labels has an empty set, not an error.
        try await core.call("port.create", ["device": "b1", "name": "vm3"])
        r = try await core.call("labels.get", ["resource": ["kind": "port", "id": "vm3"]])
        XCTAssertEqual(r["labels"], [:])

        // find: by key, and by key and value.
        var found = try await core.call("labels.find", ["key": "tenant"]).items
        XCTAssertEqual(Set(found.compactMap { $0.string("name") }), ["vm1", "vm2", "r1"])
        found = try await core.call("labels.find", ["key": "tenant", "value": "acme"]).items
        XCTAssertEqual(Set(found.compactMap { $0.string("name") }), ["vm2", "r1"])
        XCTAssertEqual(Set(found.compactMap { $0.string("kind") }), ["port", "router"])
        found = try await core.call("labels.find", ["key": "zone", "value": ""]).items
        XCTAssertEqual(found.compactMap { $0.string("name") }, ["b1"])
        let nobody = try await core.call("labels.find", ["key": "nobody"]).items
        XCTAssertEqual(nobody, [])

        // delete one key, then the last key of a resource (its record goes).
        r = try await core.call("labels.delete", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant"])
        XCTAssertEqual(r["labels"], ["cloud.example/instance": "i-123"])
        r = try await core.call("labels.delete", ["resource": ["kind": "port", "id": "vm2"], "key": "tenant"])
        XCTAssertEqual(r["labels"], [:])
        XCTAssertEqual(try core.store.count(kind: "labels:resource"), 4, "vm1, r1, b1, c1; vm2's record is gone")
        let left = try await core.call("labels.find", ["key": "tenant"]).items
        XCTAssertEqual(left.compactMap { $0.string("name") }, ["r1"])
        try core.store.close()
    }

    func testValidationNamesTheField() async throws {
        let dir = try makeTempDirectory(self)
        let (core, labels) = try await makeCore(dir)
        try await makeTopology(core)
        let vm1: JSONValue = ["kind": "port", "id": "vm1"]
        let cases: [(JSONValue, String, Int, String)] = [
            (["resource": vm1, "key": "Tenant", "value": "x"], "labels.set", -32602, "key"),
            (["resource": vm1, "key": "", "value": "x"], "labels.set", -32602, "key"),
            (["resource": vm1, "key": .string(String(repeating: "k", count: 64)), "value": "x"], "labels.set", -32602, "key"),
            (["resource": vm1, "key": "with space", "value": "x"], "labels.set", -32602, "key"),
            (["resource": vm1, "key": "k", "value": .string(String(repeating: "v", count: 257))], "labels.set", -32602, "value"),
            (["resource": vm1, "key": "k", "value": "line\nbreak"], "labels.set", -32602, "value"),
            (["resource": vm1, "key": "k", "value": 5], "labels.set", -32602, "value"),
            (["resource": vm1, "key": "k"], "labels.set", -32602, "value"),
            (["key": "k", "value": "v"], "labels.set", -32602, "resource"),
            (["resource": ["kind": "port"], "key": "k", "value": "v"], "labels.set", -32602, "resource.id"),
            (["resource": ["kind": "route", "id": "x"], "key": "k", "value": "v"], "labels.set", -32602, "resource.kind"),
            (["resource": ["kind": "banana", "id": "x"], "key": "k", "value": "v"], "labels.set", -32602, "resource.kind"),
            (["resource": ["kind": "port", "id": "ghost"], "key": "k", "value": "v"], "labels.set", -32001, "resource.id"),
            (["resource": ["kind": "router", "id": "vm1"], "key": "k", "value": "v"], "labels.set", -32001, "resource.id"),
            (["resource": ["kind": "port", "id": "ghost"]], "labels.get", -32001, "resource.id"),
            (["resource": vm1, "key": "absent"], "labels.delete", -32001, "key"),
            (["resource": vm1, "key": "BAD"], "labels.delete", -32602, "key"),
            (["value": "v"], "labels.find", -32602, "key"),
        ]
        let before = try await core.snapshot()
        for (params, method, code, field) in cases {
            await expectRPCError(code, field: field, "\(method) \(params.text)") { try await core.call(method, params) }
        }
        XCTAssertEqual(try core.store.count(kind: "labels:resource"), 0)
        let after = try await core.snapshot()
        XCTAssertEqual(after, before, "refused calls publish nothing and change nothing")
        let status = await labels.status()
        XCTAssertEqual(status, "0 labelled resource(s)")
        try core.store.close()
    }

    func testEvents() async throws {
        let dir = try makeTempDirectory(self)
        let (core, _) = try await makeCore(dir)
        try await makeTopology(core)
        let start = core.recorder.count
        let vm1 = try await core.call("port.get", ["name": "vm1"])
        try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"])
        try await core.call("labels.delete", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant"])
        let events = Array(core.recorder.all.dropFirst(start))
        XCTAssertEqual(events.map(\.topic), ["labels", "labels"])
        XCTAssertEqual(events[0].data, ["resource": .string("port/" + vm1.string("id")!), "key": "tenant", "value": "acme"])
        XCTAssertEqual(events[1].data["value"], .null)
        try core.store.close()
    }

    func testLabelsSurviveANewPluginInstance() async throws {
        let dir = try makeTempDirectory(self)
        do {
            let (core, labels) = try await makeCore(dir)
            try await makeTopology(core)
            try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"])
            try await core.call("labels.set", ["resource": ["kind": "router", "id": "r1"], "key": "tenant", "value": "acme"])
            try await core.call("labels.set", ["resource": ["kind": "router", "id": "r1"], "key": "tmp", "value": "x"])
            try await core.call("labels.delete", ["resource": ["kind": "router", "id": "r1"], "key": "tmp"])
            let status = await labels.status()
            XCTAssertEqual(status, "2 labelled resource(s)")
            try core.store.close()
        }
        // A restarted agent: new store handle, new network, new plugin instance, new registry.
        let (core, labels) = try await makeCore(dir)
        let status = await labels.status()
        XCTAssertEqual(status, "2 labelled resource(s)")
        let r = try await core.call("labels.get", ["resource": ["kind": "router", "id": "r1"]])
        XCTAssertEqual(r["labels"], ["tenant": "acme"], "the deleted key stays deleted")
        let found = try await core.call("labels.find", ["key": "tenant", "value": "acme"]).items
        XCTAssertEqual(Set(found.compactMap { $0.string("name") }), ["vm1", "r1"])
        try core.store.close()
    }

    func testLabelsOfDeletedResourcesAreCollected() async throws {
        let dir = try makeTempDirectory(self)
        let (core, labels) = try await makeCore(dir)
        try await makeTopology(core)
        try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"])
        try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm2"], "key": "tenant", "value": "acme"])
        var dropped = await labels.collectGarbage()
        XCTAssertEqual(dropped, 0, "nothing to collect while the resources exist")
        try await core.call("port.delete", ["name": "vm1"])
        dropped = await labels.collectGarbage()
        XCTAssertEqual(dropped, 1)
        dropped = await labels.collectGarbage()
        XCTAssertEqual(dropped, 0)
        let found = try await core.call("labels.find", ["key": "tenant"]).items
        XCTAssertEqual(found.compactMap { $0.string("name") }, ["vm2"])
        XCTAssertEqual(try core.store.count(kind: "labels:resource"), 1, "the record is gone from the store too")
        // A new port reusing the name does not inherit the old labels (IDs are not reused).
        try await core.call("port.create", ["device": "b1", "name": "vm1"])
        let fresh = try await core.call("labels.get", ["resource": ["kind": "port", "id": "vm1"]])
        XCTAssertEqual(fresh["labels"], [:])
        try core.store.close()
    }

    /// The plugin as a Service: `run()` collects garbage at start and returns promptly on
    /// graceful shutdown (its 30 s sleep is cut short).
    func testRunsAsAServiceAndStopsGracefully() async throws {
        let dir = try makeTempDirectory(self)
        let (core, labels) = try await makeCore(dir)
        try await makeTopology(core)
        try await core.call("labels.set", ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"])
        try await core.call("port.delete", ["name": "vm1"])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: labels)], logger: logger))
        let running = Task { try await group.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while await labels.status() != "0 labelled resource(s)", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let status = await labels.status()
        XCTAssertEqual(status, "0 labelled resource(s)", "run() collects garbage when it starts")
        let asked = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        let took = ContinuousClock.now - asked
        XCTAssertLessThan(took, .seconds(2), "graceful shutdown took \(took)")
        try core.store.close()
    }
}
