// JSON-RPC over HTTP/1.1 on 127.0.0.1 with a bearer token, and /metrics.

import Foundation
import XCTest
@testable import WarrenRPC

final class HTTPTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws {
        fixture = try ServerFixture(http: true, metrics: { "# TYPE warren_up gauge\nwarren_up 1\n" })
        XCTAssertGreaterThan(fixture.httpPort, 0)
    }

    override func tearDown() {
        fixture?.stop()
    }

    var auth: (String, String) { ("Authorization", "Bearer \(ServerFixture.token)") }
    let sumRequest = Array(#"{"jsonrpc":"2.0","method":"sum","params":[2,3],"id":1}"#.utf8)

    func testMissingTokenIs401WithoutProcessing() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let response = try connection.request("POST", "/rpc", headers: [("Content-Type", "application/json")], body: sumRequest)
        XCTAssertEqual(response.status, 401)
        XCTAssertTrue(response.headers["www-authenticate"]?.hasPrefix("Bearer") ?? false, "\(response.headers)")
        XCTAssertEqual(fixture.spec.calls.current, 0, "no JSON-RPC processing without the token")
    }

    func testWrongTokenIs401() throws {
        for header in ["Bearer wrong-token", "Bearer \(ServerFixture.token)x", "Basic \(ServerFixture.token)", "Bearer", ""] {
            let connection = try HTTPTestConnection(port: fixture.httpPort)
            let response = try connection.request("POST", "/rpc", headers: [("Authorization", header)], body: sumRequest)
            XCTAssertEqual(response.status, 401, header)
        }
        XCTAssertEqual(fixture.spec.calls.current, 0)
        XCTAssertFalse(fixture.logs.text.contains(ServerFixture.token), "the token is never logged")
    }

    func testRightTokenGetsResultAndKeepAliveWorks() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let first = try connection.request("POST", "/rpc", headers: [auth, ("Content-Type", "application/json")], body: sumRequest)
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.headers["content-type"], "application/json")
        XCTAssertEqual(try JSONValue(parsing: first.body), ["jsonrpc": "2.0", "result": 5, "id": 1])
        // Same connection, scheme in another case: still accepted.
        let batch = Array(#"[{"jsonrpc":"2.0","method":"sum","params":[1],"id":"a"},{"jsonrpc":"2.0","method":"nope","id":"b"}]"#.utf8)
        let second = try connection.request("POST", "/rpc", headers: [("authorization", "bearer \(ServerFixture.token)")], body: batch)
        XCTAssertEqual(second.status, 200)
        let items = try JSONValue(parsing: second.body)
        XCTAssertEqual(items.arrayValue?.count, 2)
        XCTAssertEqual(fixture.spec.calls.current, 2)
        // Parse errors are JSON-RPC errors with HTTP 200.
        let third = try connection.request("POST", "/rpc", headers: [auth], body: Array("{nope".utf8))
        XCTAssertEqual(third.status, 200)
        XCTAssertEqual(try JSONValue(parsing: third.body)["error"]?["code"], -32700)
    }

    func testOversizedBodyIs413() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let body = [UInt8](repeating: UInt8(ascii: " "), count: 2 << 20)
        let response = try connection.request("POST", "/rpc", headers: [auth], body: body)
        XCTAssertEqual(response.status, 413)
        XCTAssertTrue(connection.isClosedByPeer())
        XCTAssertEqual(fixture.spec.calls.current, 0)
    }

    func testOversizedChunkedBodyIs413() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        var text = "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(ServerFixture.token)\r\nTransfer-Encoding: chunked\r\n\r\n"
        let chunk = String(repeating: " ", count: 65536)
        for _ in 0..<40 { text += "10000\r\n\(chunk)\r\n" }  // 2.5 MiB
        text += "0\r\n\r\n"
        connection.send(Array(text.utf8))
        XCTAssertEqual(try connection.readResponse().status, 413)
    }

    func testExpectContinueIsAnswered() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let head = "POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(ServerFixture.token)\r\n"
            + "Content-Length: \(sumRequest.count)\r\nExpect: 100-continue\r\n\r\n"
        connection.send(Array(head.utf8))
        XCTAssertEqual(try connection.readResponse(timeout: 5).status, 100, "100 Continue comes before the body is sent")
        connection.send(sumRequest)
        let response = try connection.readResponse()
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(try JSONValue(parsing: response.body)["result"], 5)
    }

    func testNotificationIs204() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let response = try connection.request("POST", "/rpc", headers: [auth], body: Array(#"{"jsonrpc":"2.0","method":"update","params":[1]}"#.utf8))
        XCTAssertEqual(response.status, 204)
        XCTAssertEqual(response.body, [])
        XCTAssertEqual(fixture.spec.updates.current, [[1]])
    }

    func testMetrics() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let response = try connection.request("GET", "/metrics", headers: [auth])
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["content-type"], "text/plain; version=0.0.4")
        XCTAssertEqual(response.text, "# TYPE warren_up gauge\nwarren_up 1\n")
        XCTAssertEqual(try connection.request("GET", "/metrics").status, 401)
    }

    func testOtherPathsAndMethods() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        XCTAssertEqual(try connection.request("GET", "/", headers: [auth]).status, 404)
        XCTAssertEqual(try connection.request("GET", "/rpc/x", headers: [auth]).status, 404)
        let get = try connection.request("GET", "/rpc", headers: [auth])
        XCTAssertEqual(get.status, 405)
        XCTAssertEqual(get.headers["allow"], "POST")
        XCTAssertEqual(try connection.request("DELETE", "/metrics", headers: [auth]).status, 405)
        XCTAssertEqual(try connection.request("POST", "/rpc?x=1", headers: [auth], body: sumRequest).status, 200)
    }

    func testSubscriptionsNeedTheUnixSocket() throws {
        let connection = try HTTPTestConnection(port: fixture.httpPort)
        let response = try connection.request(
            "POST", "/rpc", headers: [auth], body: Array(#"{"jsonrpc":"2.0","method":"agent.subscribe","params":{"topics":["*"]},"id":1}"#.utf8))
        let error = try JSONValue(parsing: response.body)["error"]
        XCTAssertEqual(error?["code"], -32003)
        XCTAssertEqual(error?["data"]?["reason"], "subscriptions need the Unix socket")
    }

    func testConstantTimeCompare() {
        let expected = Array("abcdef".utf8)
        XCTAssertTrue(HTTPRPCHandler.constantTimeEquals(Array("abcdef".utf8), expected))
        XCTAssertFalse(HTTPRPCHandler.constantTimeEquals(Array("abcdeg".utf8), expected))
        XCTAssertFalse(HTTPRPCHandler.constantTimeEquals(Array("abcde".utf8), expected))
        XCTAssertFalse(HTTPRPCHandler.constantTimeEquals(Array("abcdefg".utf8), expected))
        XCTAssertFalse(HTTPRPCHandler.constantTimeEquals([], expected))
    }

    func testConfigurationDescriptionRedactsToken() {
        XCTAssertFalse(fixture.server.configuration.description.contains(ServerFixture.token))
        XCTAssertTrue(fixture.server.configuration.description.contains("<redacted>"))
    }
}
