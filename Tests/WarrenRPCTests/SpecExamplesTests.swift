// Every example of the JSON-RPC 2.0 specification (section 7), sent as NDJSON lines to
// the real Unix-socket server and compared as JSON values (batch responses as sets by id;
// the `data` member Warren adds to errors is removed before comparing).

import Foundation
import XCTest
@testable import WarrenRPC

final class SpecExamplesTests: XCTestCase {
    var fixture: ServerFixture!
    var client: RPCClient!

    override func setUpWithError() throws {
        fixture = try ServerFixture()
        client = try fixture.client()
    }

    override func tearDown() {
        client?.close()
        fixture?.stop()
    }

    /// Sends one line and returns the parsed response line.
    func exchange(_ request: String, file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue {
        try client.sendRaw(Array(request.utf8))
        let reply = try XCTUnwrap(try client.readLine(timeout: 5), "no response to \(request)", file: file, line: line)
        return try JSONValue(parsing: reply)
    }

    /// Asserts that `request` produces no output: the next line is the answer to a probe call.
    func assertNoResponse(_ request: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try client.sendRaw(Array(request.utf8))
        let probe = try exchange(#"{"jsonrpc":"2.0","method":"sum","params":[1],"id":"probe"}"#)
        XCTAssertEqual(probe, ["jsonrpc": "2.0", "result": 1, "id": "probe"], "output after \(request)", file: file, line: line)
    }

    func expect(_ request: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let response = strippingErrorData(try exchange(request, file: file, line: line))
        let want = try JSONValue(parsing: expected)
        if case .array = want {
            XCTAssertEqual(sortedByID(response), sortedByID(want), request, file: file, line: line)
        } else {
            XCTAssertEqual(response, want, request, file: file, line: line)
        }
    }

    func testPositionalParameters() throws {
        try expect(
            #"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
            #"{"jsonrpc": "2.0", "result": 19, "id": 1}"#)
        try expect(
            #"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#,
            #"{"jsonrpc": "2.0", "result": -19, "id": 2}"#)
    }

    func testNamedParameters() throws {
        try expect(
            #"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
            #"{"jsonrpc": "2.0", "result": 19, "id": 3}"#)
        try expect(
            #"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#,
            #"{"jsonrpc": "2.0", "result": 19, "id": 4}"#)
    }

    func testNotifications() throws {
        try assertNoResponse(#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#)
        try assertNoResponse(#"{"jsonrpc": "2.0", "method": "foobar"}"#)
        XCTAssertEqual(fixture.spec.updates.current, [[1, 2, 3, 4, 5]], "the update notification ran")
    }

    func testNonExistentMethod() throws {
        try expect(
            #"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
            #"{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}"#)
    }

    func testInvalidJSON() throws {
        try expect(
            #"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
            #"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#)
    }

    func testInvalidRequestObject() throws {
        try expect(
            #"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
            #"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#)
    }

    func testBatchInvalidJSON() throws {
        // The spec's example spans lines; on NDJSON it is one line.
        try expect(
            #"[ {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method" ]"#,
            #"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#)
    }

    func testEmptyArray() throws {
        try expect("[]", #"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#)
    }

    func testInvalidBatchButNotEmpty() throws {
        try expect("[1]", #"[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]"#)
    }

    func testInvalidBatch() throws {
        let response = strippingErrorData(try exchange("[1,2,3]"))
        let one: JSONValue = ["jsonrpc": "2.0", "error": ["code": -32600, "message": "Invalid Request"], "id": nil]
        XCTAssertEqual(response, [one, one, one])
    }

    func testMixedBatch() throws {
        try expect(
            #"""
            [{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}, {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"}, {"foo": "boo"}, {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"}, {"jsonrpc": "2.0", "method": "get_data", "id": "9"}]
            """#,
            #"""
            [{"jsonrpc": "2.0", "result": 7, "id": "1"}, {"jsonrpc": "2.0", "result": 19, "id": "2"}, {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}, {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"}, {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}]
            """#)
        XCTAssertEqual(fixture.spec.hellos.current, 1)
    }

    func testAllNotificationBatch() throws {
        try assertNoResponse(
            #"[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]}, {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]"#
        )
        XCTAssertEqual(fixture.spec.hellos.current, 1)
    }

    func testErrorsCarryAReason() throws {
        let parse = try exchange("{oops")
        XCTAssertNotNil(parse["error"]?["data"]?["reason"]?.stringValue)
        let invalid = try exchange(#"{"jsonrpc":"1.0","method":"sum","id":7}"#)
        XCTAssertEqual(invalid["id"], 7, "a readable id is echoed")
        XCTAssertEqual(invalid["error"]?["data"]?["reason"], #"jsonrpc must be "2.0""#)
        let badID = try exchange(#"{"jsonrpc":"2.0","method":"sum","id":{"x":1}}"#)
        XCTAssertEqual(badID["id"], .null)
        XCTAssertEqual(badID["error"]?["code"], -32600)
    }

    func testClientAPI() throws {
        XCTAssertEqual(try client.call("subtract", params: [42, 23], timeout: 5), 19)
        XCTAssertThrowsError(try client.call("nope", timeout: 5)) { error in
            XCTAssertEqual((error as? RPCError)?.code, -32601)
        }
        let results = try client.callBatch([("sum", [1, 2]), ("nope", nil), ("subtract", ["minuend": 5, "subtrahend": 1])], timeout: 5)
        XCTAssertEqual(try results[0].get(), 3)
        XCTAssertThrowsError(try results[1].get())
        XCTAssertEqual(try results[2].get(), 4)
        try client.notify("update", params: [9])
        let discovered = try client.call("rpc.discover", timeout: 5)
        XCTAssertEqual(discovered, fixture.registry.openRPCDocument())
        XCTAssertTrue(discovered["methods"]!.arrayValue!.contains { $0["name"] == "agent.subscribe" })
    }
}
