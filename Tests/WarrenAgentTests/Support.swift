// Test support: a temporary state directory, and an in-process agent core — a Store on a
// temp file, a Network with a recording sink instead of a datapath, an EventBus whose
// events are recorded, and the core methods on a MethodRegistry — driven through
// `registry.call`, exactly as the RPC server would call it (minus the socket).

import Foundation
import Logging
@testable import WarrenAgent
import WarrenCore
import WarrenLinux
import WarrenRPC
import XCTest

/// A fresh directory under /tmp, removed when the test ends (also on failure).
func makeTempDirectory(_ test: XCTestCase, _ label: String = "warren-agent-test") throws -> String {
    var template = Array((NSTemporaryDirectory() + "/\(label).XXXXXX").utf8CString)
    guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
    let path = String(cString: p)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// Records what the Network hands to the datapath.
final class RecordingSink: TopologySink, @unchecked Sendable {
    private let lock = NSLock()
    private var applied: [(version: UInt64, tags: [FlowTag])] = []

    func apply(topology: Topology, invalidate tags: [FlowTag]) {
        lock.withLock { applied.append((topology.version, tags)) }
    }

    var count: Int { lock.withLock { applied.count } }
    var last: (version: UInt64, tags: [FlowTag])? { lock.withLock { applied.last } }
}

/// Records events published on an EventBus.
final class EventRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [(topic: String, data: JSONValue)] = []

    init(_ bus: EventBus) {
        bus.subscribe { [weak self] topic, data in self?.lock.withLock { self?.events.append((topic, data)) } }
    }

    var all: [(topic: String, data: JSONValue)] { lock.withLock { events } }
    var count: Int { lock.withLock { events.count } }
}

let testContext = RequestContext(transport: .unix, connectionID: 1)

/// Store + Network + core methods, no datapath.
final class AgentCore: Sendable {
    let directory: String
    let store: Store
    let events: EventBus
    let sink: RecordingSink
    let recorder: EventRecorder
    let network: Network
    let registry: MethodRegistry

    init(directory: String, storeName: String = "warren.db") throws {
        self.directory = directory
        store = try Store(path: directory + "/" + storeName)
        events = EventBus()
        recorder = EventRecorder(events)
        sink = RecordingSink()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        network = try Network(store: store, sink: sink, events: events, logger: logger)
        registry = MethodRegistry()
        CoreMethods.register(on: registry, network: network, datapath: nil, now: { 1_000_000_000 })
    }

    @discardableResult
    func call(_ method: String, _ params: JSONValue? = nil) async throws -> JSONValue {
        try await registry.call(method, params: params, context: testContext)
    }

    /// Rows of every core kind in the store, for "nothing changed" checks.
    func storeCounts() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for k in ["bridge", "router", "port", "route", "chain"] { out[k] = try store.count(kind: k) }
        return out
    }

    /// A fingerprint of everything a failed call must leave alone.
    func snapshot() async throws -> Snapshot {
        Snapshot(version: await network.topology.version, counts: try storeCounts(), sinkCalls: sink.count,
                 events: recorder.count, document: try await call("topology.get"))
    }

    struct Snapshot: Equatable {
        var version: UInt64
        var counts: [String: Int]
        var sinkCalls: Int
        var events: Int
        var document: JSONValue
    }
}

/// Runs `body`, which must throw an RPCError with `code` and (when given) `data.field`;
/// returns the error for further checks.
@discardableResult
func expectRPCError(_ code: Int, field: String?, _ what: String = "",
                    file: StaticString = #filePath, line: UInt = #line,
                    _ body: () async throws -> JSONValue) async -> RPCError? {
    do {
        let result = try await body()
        XCTFail("\(what): expected error \(code) (field \(field ?? "none")), got result \(result.text.prefix(300))",
                file: file, line: line)
        return nil
    } catch let e as RPCError {
        XCTAssertEqual(e.code, code, "\(what): wrong code in \(e)", file: file, line: line)
        XCTAssertEqual(e.field, field, "\(what): wrong data.field in \(e)", file: file, line: line)
        XCTAssertNotNil(e.reason, "\(what): no data.reason in \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("\(what): expected RPCError \(code), got \(type(of: error)): \(error)", file: file, line: line)
        return nil
    }
}

extension JSONValue {
    /// The string member at a dotted path ("result.kind"), for terse assertions.
    func string(_ path: String) -> String? {
        var v: JSONValue? = self
        for key in path.split(separator: ".") { v = v?[String(key)] }
        return v?.stringValue
    }

    /// `items` of a list result.
    var items: [JSONValue] { self["items"]?.arrayValue ?? [] }
}

extension JSONValue {
    /// JSON text of a value, sorted keys.
    var text: String { String(decoding: serialized(sortedKeys: true), as: UTF8.self) }
}

extension AgentCore {
    /// The context the agent gives plugin `name` (Agent.run builds the same one).
    func pluginContext(_ name: String, configuration: JSONValue = [:], shared: [String: JSONValue] = [:]) throws -> PluginContext {
        let pdir = directory + "/plugins/" + name
        try FileManager.default.createDirectory(atPath: pdir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        logger[metadataKey: "plugin"] = .string(name)
        return PluginContext(name: name, network: network, store: PluginStore(store: store, plugin: name),
                             processes: ProcessSupervisor(stateDirectory: directory + "/processes") { _ in },
                             logger: logger, events: PluginEvents(bus: events, topic: name),
                             configuration: configuration, sharedConfiguration: shared, stateDirectory: pdir, datapath: nil)
    }

    /// Builds plugin `P` and registers its methods on this core's registry, as Agent.run does.
    func load<P: WarrenPlugin>(_ type: P.Type, configuration: JSONValue = [:], shared: [String: JSONValue] = [:]) async throws -> P {
        let plugin = try await P(context: try pluginContext(P.name, configuration: configuration, shared: shared))
        plugin.registerMethods(PluginMethods(registry: registry, prefix: P.name))
        return plugin
    }
}
