// agent.subscribe / agent.unsubscribe / publish over the Unix socket, including a
// subscriber that never reads.

import Foundation
import XCTest
@testable import WarrenRPC

final class SubscriptionTests: XCTestCase {
    func testTopicMatching() {
        XCTAssertTrue(EventTopic.pattern("vpn.dynamic", matches: "vpn.dynamic"))
        XCTAssertTrue(EventTopic.pattern("vpn.dynamic", matches: "vpn.dynamic.tunnel.up"))
        XCTAssertFalse(EventTopic.pattern("vpn.dynamic", matches: "vpn.dynamicx"))
        XCTAssertFalse(EventTopic.pattern("vpn.dynamic", matches: "vpn"))
        XCTAssertFalse(EventTopic.pattern("vpn.dynamic", matches: "vpn.static"))
        XCTAssertTrue(EventTopic.pattern("*", matches: "anything.at.all"))
        XCTAssertTrue(EventTopic.isValidPattern("*"))
        XCTAssertTrue(EventTopic.isValidPattern("vpn.dynamic-1.x_y"))
        for bad in ["", ".", "vpn.", ".vpn", "vpn..x", "vpn.*", "a b", String(repeating: "a", count: 201)] {
            XCTAssertFalse(EventTopic.isValidPattern(bad), bad)
        }
    }

    func testSubscribePublishReceiveUnsubscribe() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let client = try fixture.client()
        XCTAssertEqual(try client.call("agent.subscribe", params: ["topics": ["vpn.dynamic"]], timeout: 5), ["topics": ["vpn.dynamic"]])
        XCTAssertEqual(
            try client.call("agent.subscribe", params: ["topics": ["flow", "vpn.dynamic"]], timeout: 5),
            ["topics": ["flow", "vpn.dynamic"]])

        fixture.server.publish(topic: "vpn.dynamic.tunnel", data: ["state": "up"])  // seq 1
        fixture.server.publish(topic: "vpn.static.tunnel", data: ["state": "up"])  // seq 2, not subscribed
        fixture.server.publish(topic: "vpn.dynamic", data: 7)  // seq 3
        fixture.server.publish(topic: "flow.stats", data: nil)  // seq 4

        let first = try XCTUnwrap(try client.nextNotification(timeout: 5))
        XCTAssertEqual(
            first,
            ["jsonrpc": "2.0", "method": "agent.event", "params": ["topic": "vpn.dynamic.tunnel", "seq": 1, "data": ["state": "up"]]])
        XCTAssertEqual(try client.nextNotification(timeout: 5)?["params"], ["topic": "vpn.dynamic", "seq": 3, "data": 7])
        XCTAssertEqual(try client.nextNotification(timeout: 5)?["params"]?["seq"], 4)

        // Events that arrive while waiting for a response are queued, not lost.
        fixture.server.publish(topic: "vpn.dynamic.x", data: "queued")  // seq 5
        XCTAssertEqual(try client.call("agent.unsubscribe", params: ["topics": ["vpn.dynamic", "never-subscribed"]], timeout: 5), ["topics": ["flow"]])
        XCTAssertEqual(try client.nextNotification(timeout: 5)?["params"]?["data"], "queued")

        fixture.server.publish(topic: "vpn.dynamic.y", data: "dropped")  // seq 6
        fixture.server.publish(topic: "flow", data: "kept")  // seq 7
        let next = try client.nextNotification(timeout: 5)
        XCTAssertEqual(next?["params"]?["data"], "kept")
        XCTAssertEqual(next?["params"]?["seq"], 7)
        XCTAssertNil(try client.nextNotification(timeout: 0.1))
    }

    func testWildcardAndInvalidTopics() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let all = try fixture.client()
        let none = try fixture.client()
        _ = try all.call("agent.subscribe", params: ["topics": ["*"]], timeout: 5)
        XCTAssertThrowsError(try none.call("agent.subscribe", params: ["topics": ["ok", "bad topic"]], timeout: 5)) { error in
            XCTAssertEqual((error as? RPCError)?.code, -32602)
            XCTAssertEqual((error as? RPCError)?.field, "topics[1]")
        }
        XCTAssertThrowsError(try none.call("agent.subscribe", params: ["topics": "flow"], timeout: 5)) { error in
            XCTAssertEqual((error as? RPCError)?.field, "topics")
        }
        fixture.server.publish(topic: "a.b.c", data: 1)
        fixture.server.publish(topic: "z", data: 2)
        XCTAssertEqual(try all.nextNotification(timeout: 5)?["params"]?["topic"], "a.b.c")
        XCTAssertEqual(try all.nextNotification(timeout: 5)?["params"]?["topic"], "z")
        XCTAssertNil(try none.nextNotification(timeout: 0.2), "nothing was subscribed (the invalid call added nothing)")
    }

    func testNeverReadingSubscriberIsCutOffWhileOthersReceiveEverything() throws {
        let fixture = try ServerFixture(maxQueuedEvents: 1000)
        defer { fixture.stop() }
        let lazy = try fixture.client()
        _ = try lazy.call("agent.subscribe", params: ["topics": ["load"]], timeout: 5)
        let reader = try fixture.client()
        _ = try reader.call("agent.subscribe", params: ["topics": ["load"]], timeout: 5)
        XCTAssertEqual(fixture.server.unixConnectionCount, 2)

        let total = 6000
        let received = Shared(0)
        let problems = Shared<[String]>([])
        let readerDone = DispatchSemaphore(value: 0)
        let readerBox = Unchecked(reader)
        let readerThread = Thread {
            let reader = readerBox.value
            var expectedSeq: Int64 = 1
            while received.current < total {
                guard let event = try? reader.nextNotification(timeout: 10) else {
                    problems.withLock { $0.append("reader stopped at \(received.current)") }
                    break
                }
                if event["params"]?["seq"]?.intValue != expectedSeq {
                    problems.withLock { $0.append("seq \(String(describing: event["params"]?["seq"])) != \(expectedSeq)") }
                }
                expectedSeq += 1
                received.withLock { $0 += 1 }
            }
            readerDone.signal()
        }
        readerThread.start()

        let payload = JSONValue.string(String(repeating: "x", count: 1000))
        for i in 0..<total {
            // Keep the reading subscriber within its allowance; the lazy one falls behind.
            while i - received.current > 500 { usleep(200) }
            fixture.server.publish(topic: "load", data: ["i": .int(Int64(i)), "pad": payload])
        }
        XCTAssertEqual(readerDone.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(problems.current, [])
        XCTAssertEqual(received.current, total)

        // The lazy subscriber was disconnected, the reader still is connected.
        let deadline = seconds() + 5
        while fixture.server.unixConnectionCount != 1 && seconds() < deadline { usleep(10_000) }
        XCTAssertEqual(fixture.server.unixConnectionCount, 1)
        XCTAssertTrue(fixture.logs.text.contains("subscriber is not reading"), fixture.logs.text)
        // What the lazy one gets: a prefix of the events, then end of stream.
        var lazyCount = 0
        do {
            while let event = try lazy.nextNotification(timeout: 5) {
                lazyCount += 1
                XCTAssertEqual(event["params"]?["seq"]?.intValue, Int64(lazyCount))
            }
            XCTFail("expected the connection to be closed")
        } catch {
            XCTAssertEqual(error as? RPCClientError, .connectionClosed)
        }
        XCTAssertGreaterThan(lazyCount, 0)
        XCTAssertLessThan(lazyCount, total)
        XCTAssertEqual(try reader.call("sum", params: [1, 2], timeout: 5), 3)
    }
}
