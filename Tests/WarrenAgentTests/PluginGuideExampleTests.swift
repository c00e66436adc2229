// The plugin test shown in Docs/plugins.md ("Testing a plugin"), kept here so the guide's
// example compiles and passes. It uses public API only (no @testable), as the test of a
// plugin outside this package would.

import Foundation
import Logging
import ExamplePlugin
import WarrenAgent
import WarrenLinux
import WarrenRPC
import XCTest

final class PluginGuideExampleTests: XCTestCase {
    func testLabelsThroughTheRegistry() async throws {
        // 1. A state directory of the test's own.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("labels-test-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // 2. What Agent.run builds for a plugin, minus the datapath and the socket.
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let store = try Store(path: dir + "/warren.db")
        let events = EventBus()
        let network = try Network(store: store, sink: nil, events: events, logger: logger)
        let registry = MethodRegistry()
        CoreMethods.register(on: registry, network: network, datapath: nil)
        let context = PluginContext(
            name: LabelsPlugin.name, network: network,
            store: PluginStore(store: store, plugin: LabelsPlugin.name),
            processes: ProcessSupervisor(stateDirectory: dir + "/processes") { _ in },
            logger: logger, events: PluginEvents(bus: events, topic: LabelsPlugin.name),
            configuration: [:], stateDirectory: dir + "/plugins/labels", datapath: nil)
        let plugin = try await LabelsPlugin(context: context)
        plugin.registerMethods(PluginMethods(registry: registry, prefix: LabelsPlugin.name))

        // 3. Call methods exactly as the RPC server does (same decoding, same errors).
        let ctx = RequestContext(transport: .unix, connectionID: 1)
        _ = try await registry.call("bridge.create", params: ["name": "b1"], context: ctx)
        _ = try await registry.call("port.create", params: ["device": "b1", "name": "vm1"], context: ctx)
        let labelled = try await registry.call(
            "labels.set", params: ["resource": ["kind": "port", "id": "vm1"], "key": "tenant", "value": "acme"], context: ctx)
        XCTAssertEqual(labelled["labels"], ["tenant": "acme"])
        let status = await plugin.status()
        XCTAssertEqual(status, "1 labelled resource(s)")

        // 4. A refusal: the documented code, and data.field naming the parameter.
        do {
            _ = try await registry.call(
                "labels.set", params: ["resource": ["kind": "port", "id": "vm1"], "key": "Bad Key", "value": "x"], context: ctx)
            XCTFail("an invalid key must be refused")
        } catch let e as RPCError {
            XCTAssertEqual(e.code, -32602)
            XCTAssertEqual(e.field, "key")
        }
        try store.close()
    }
}
