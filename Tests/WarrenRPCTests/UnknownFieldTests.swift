import Foundation
import XCTest
@testable import WarrenRPC

/// A misspelled optional parameter is refused by name instead of silently defaulting.
final class UnknownFieldTests: XCTestCase {
    struct Inner: Codable, Sendable { var dhGroup: Int? }
    struct Params: Codable, Sendable {
        var name: String
        var inner: Inner?
        var list: [Inner]?
        var labels: [String: String]?
    }

    func call(_ params: JSONValue) async -> JSONValue {
        let registry = MethodRegistry()
        registry.register("t.echo", summary: "echo", params: Params.self, result: EmptyResult.self) { _, _ in EmptyResult() }
        let ctx = RequestContext(transport: .unix, connectionID: 1, subscriptions: nil)
        let message: JSONValue = ["jsonrpc": "2.0", "id": 1, "method": "t.echo", "params": params]
        let reply: JSONValue? = await registry.handle(message: message, context: ctx)
        return reply ?? JSONValue.null
    }

    func testUnknownFieldsAreNamed() async {
        var r = await call(["name": "x", "nmae": "typo"])
        XCTAssertEqual(r["error"]?["code"], -32602)
        XCTAssertEqual(r["error"]?["data"]?["field"], "nmae")
        r = await call(["name": "x", "inner": ["dhgroup": 14]])
        XCTAssertEqual(r["error"]?["data"]?["field"], "inner.dhgroup")
        r = await call(["name": "x", "list": [["dhGroup": 2], ["dhGrup": 5]]])
        XCTAssertEqual(r["error"]?["data"]?["field"], "list[1].dhGrup")
    }

    func testKnownNullAndDictionaryKeysAreFine() async {
        var r = await call(["name": "x", "inner": ["dhGroup": 14], "labels": ["any": "key"]])
        XCTAssertNil(r["error"], "\(r)")
        r = await call(["name": "x", "inner": .null, "list": .null])
        XCTAssertNil(r["error"], "\(r)")
    }
}
