// Test support for the VPN plugins' daemon-free parts: a temp directory, an in-process
// agent core (Store + Network + core methods, no datapath) with a plugin loaded into it,
// and an assertion for JSON-RPC errors. Nothing here starts charon, BIRD or a namespace:
// every vpn.*.create call in these tests is refused by validation before that point.

import Foundation
import Logging
@testable import WarrenAgent
import WarrenCore
import WarrenLinux
import WarrenRPC
import XCTest

func makeTempDirectory(_ test: XCTestCase) throws -> String {
    var template = Array((NSTemporaryDirectory() + "/warren-plugin-test.XXXXXX").utf8CString)
    guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
    let path = String(cString: p)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

let testContext = RequestContext(transport: .unix, connectionID: 1)

final class AgentCore: Sendable {
    let directory: String
    let store: Store
    let events: EventBus
    let network: Network
    let registry: MethodRegistry

    init(directory: String) throws {
        self.directory = directory
        store = try Store(path: directory + "/warren.db")
        events = EventBus()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        network = try Network(store: store, sink: nil, events: events, logger: logger)
        registry = MethodRegistry()
        CoreMethods.register(on: registry, network: network, datapath: nil)
    }

    @discardableResult
    func call(_ method: String, _ params: JSONValue? = nil) async throws -> JSONValue {
        try await registry.call(method, params: params, context: testContext)
    }

    /// Builds plugin `P` with the context the agent would give it and registers its methods.
    func load<P: WarrenPlugin>(_ type: P.Type, configuration: JSONValue = [:], shared: [String: JSONValue] = [:]) async throws -> P {
        let pdir = directory + "/plugins/" + P.name
        try FileManager.default.createDirectory(atPath: pdir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let context = PluginContext(name: P.name, network: network, store: PluginStore(store: store, plugin: P.name),
                                    processes: ProcessSupervisor(stateDirectory: directory + "/processes") { _ in },
                                    logger: logger, events: PluginEvents(bus: events, topic: P.name),
                                    configuration: configuration, sharedConfiguration: shared, stateDirectory: pdir, datapath: nil)
        let plugin = try await P(context: context)
        plugin.registerMethods(PluginMethods(registry: registry, prefix: P.name))
        return plugin
    }
}

/// `body` must throw an RPCError with `code` and `data.field`; returns it.
@discardableResult
func expectRPCError(_ code: Int, field: String?, _ what: String = "",
                    file: StaticString = #filePath, line: UInt = #line,
                    _ body: () async throws -> Any) async -> RPCError? {
    do {
        let result = try await body()
        XCTFail("\(what): expected error \(code) (field \(field ?? "none")), got \(result)", file: file, line: line)
        return nil
    } catch let e as RPCError {
        XCTAssertEqual(e.code, code, "\(what): wrong code in \(e)", file: file, line: line)
        XCTAssertEqual(e.field, field, "\(what): wrong data.field in \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("\(what): expected RPCError \(code), got \(type(of: error)): \(error)", file: file, line: line)
        return nil
    }
}

/// Synchronous variant for validation functions.
@discardableResult
func expectInvalid(_ field: String, _ what: String = "", code: Int = -32602,
                   file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> RPCError? {
    do {
        try body()
        XCTFail("\(what): expected \(code) naming \(field), but it was accepted", file: file, line: line)
        return nil
    } catch let e as RPCError {
        XCTAssertEqual(e.code, code, "\(what): wrong code in \(e)", file: file, line: line)
        XCTAssertEqual(e.field, field, "\(what): wrong data.field in \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("\(what): expected RPCError, got \(error)", file: file, line: line)
        return nil
    }
}

extension JSONValue {
    var text: String { String(decoding: serialized(sortedKeys: true), as: UTF8.self) }
}

/// JSON of any Encodable, as text (for "the key is not in there" checks).
func jsonText<T: Encodable>(_ value: T) throws -> String {
    try JSONValueEncoder().encode(value).text
}
