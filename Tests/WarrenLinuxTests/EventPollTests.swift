// Tests for EventPoll and WakeEvent: readiness with tags, timeouts, wake-ups from another
// thread, and a packet socket becoming readable when a frame arrives (wlt-ep1).

import Foundation
import XCTest
@testable import WarrenLinux

final class EventPollTests: XCTestCase {
    let scratch = ScratchNamespaces()
    override func tearDown() { scratch.removeAll() }

    func testWakeEventFromAnotherThreadAndTimeout() throws {
        let poll = try EventPoll()
        let wake = try WakeEvent()
        try poll.add(wake.fd, data: 42)
        XCTAssertEqual(try poll.wait(timeoutMilliseconds: 10), [], "nothing ready: timeout")
        let t = Thread { usleep(20_000); wake.signal(); wake.signal() }
        t.start()
        let started = Date()
        let ready = try poll.wait(timeoutMilliseconds: 2000)
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        XCTAssertEqual(ready.map(\.data), [42])
        XCTAssertTrue(ready[0].events.contains(.readable))
        usleep(5_000)
        XCTAssertEqual(wake.drain(), 2)
        XCTAssertEqual(try poll.wait(timeoutMilliseconds: 0), [], "drained")
        try poll.remove(wake.fd)
        XCTAssertThrowsError(try poll.remove(wake.fd)) { XCTAssertTrue("\($0)".hasPrefix("removing fd \(wake.fd) from epoll")) }
        poll.close()
        poll.close()
    }

    func testPacketSocketBecomesReadable() throws {
        let ns = try scratch.make("ep1")
        let nl = try Netlink(namespace: ns)
        try nl.createVethPair("wlt0a", peer: "wlt0b")
        try nl.setLinkUp("wlt0a", true)
        try nl.setLinkUp("wlt0b", true)
        try NetworkNamespace.setSysctl("net.ipv6.conf.all.disable_ipv6", "1", namespace: ns)
        let a = try PacketSocket(interface: "wlt0a", namespace: ns)
        let b = try PacketSocket(interface: "wlt0b", namespace: ns)
        let poll = try EventPoll()
        try poll.add(b.fd, data: UInt64(b.ifindex))
        XCTAssertEqual(try poll.wait(timeoutMilliseconds: 20), [])
        var frame: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5]
        frame += [UInt8](repeating: 0xab, count: 46)
        XCTAssertEqual(frame.withUnsafeBytes { send(a.fd, $0.baseAddress, $0.count, 0) }, frame.count)
        let ready = try poll.wait(timeoutMilliseconds: 2000)
        XCTAssertEqual(ready.map(\.data), [UInt64(b.ifindex)])
    }
}
