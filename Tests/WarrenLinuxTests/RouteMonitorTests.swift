// Tests for RouteMonitor in real namespaces (wlt-rm*): snapshot first, add/remove events,
// link events, re-dump on silent route flushes, and a 5000-route burst that must end in
// the kernel's state, both with a large buffer and with a tiny one that forces ENOBUFS.

import Foundation
import XCTest
@testable import WarrenLinux

/// Applies monitor events the way a consumer should, and records what it saw.
final class RouteMirror: @unchecked Sendable {
    private let lock = NSLock()
    private var routes: [RouteKey: RouteInfo] = [:]
    private var log: [RouteMonitor.Event] = []
    private(set) var finished = false

    func apply(_ event: RouteMonitor.Event) {
        lock.lock(); defer { lock.unlock() }
        log.append(event)
        switch event {
        case .snapshot(let all):
            routes = [:]
            for r in all { routes[r.key] = r }
        case .added(let r): routes[r.key] = r
        case .removed(let r): routes[r.key] = nil
        case .link, .linkRemoved: break
        }
    }

    func finish() { lock.lock(); finished = true; lock.unlock() }
    var current: [RouteKey: RouteInfo] { lock.lock(); defer { lock.unlock() }; return routes }
    var events: [RouteMonitor.Event] { lock.lock(); defer { lock.unlock() }; return log }

    /// Consumes `monitor.events` on a task until the stream finishes.
    func consume(_ monitor: RouteMonitor) -> Task<Void, Never> {
        Task.detached { [self] in
            for await e in monitor.events { apply(e) }
            finish()
        }
    }
}

final class RouteMonitorTests: XCTestCase {
    let scratch = ScratchNamespaces()
    override func tearDown() { scratch.removeAll() }

    private func prepare(_ suffix: String) throws -> (String, Netlink) {
        let ns = try scratch.make(suffix)
        let nl = try Netlink(namespace: ns)
        try nl.createVethPair("wlt3a", peer: "wlt3b")
        try nl.setLinkUp("wlt3a", true)
        try nl.setLinkUp("wlt3b", true)
        try nl.addAddress("100.64.3.1/24", to: "wlt3a")
        return (ns, nl)
    }

    private func keys(_ routes: [RouteInfo]) -> Set<RouteKey> { Set(routes.map(\.key)) }

    func testSnapshotThenRouteAndLinkEvents() async throws {
        let (ns, nl) = try prepare("rm1")
        let monitor = try RouteMonitor(namespace: ns, tables: [mainRoutingTable])
        let mirror = RouteMirror()
        let consumer = mirror.consume(monitor)
        XCTAssertTrue(waitUntil { !mirror.events.isEmpty })
        guard case .snapshot(let first)? = mirror.events.first else { return XCTFail("first event must be a snapshot: \(mirror.events)") }
        XCTAssertTrue(first.contains { $0.destination == "100.64.3.0/24" && $0.outputInterface == "wlt3a" }, "\(first)")
        XCTAssertTrue(first.allSatisfy { $0.table == mainRoutingTable })

        try nl.addRoute(RouteSpec(destination: "100.64.40.0/24", gateway: "100.64.3.2", routeProtocol: RouteProtocol.bird))
        try nl.addRoute(RouteSpec(destination: "100.64.41.0/24", outputInterface: "wlt3a", table: 77)) // not watched
        XCTAssertTrue(waitUntil { mirror.events.contains { if case .added(let r) = $0 { r.destination == "100.64.40.0/24" } else { false } } })
        let added = mirror.events.compactMap { if case .added(let r) = $0 { r } else { nil } }.first { $0.destination == "100.64.40.0/24" }
        XCTAssertEqual(added?.gateway, "100.64.3.2")
        XCTAssertEqual(added?.outputInterface, "wlt3a")
        XCTAssertEqual(added?.routeProtocol, RouteProtocol.bird)

        try nl.deleteRoute(RouteSpec(destination: "100.64.40.0/24"))
        XCTAssertTrue(waitUntil { mirror.events.contains { if case .removed(let r) = $0 { r.destination == "100.64.40.0/24" } else { false } } })
        XCTAssertFalse(mirror.events.contains { if case .added(let r) = $0 { r.table == 77 } else { false } }, "table 77 is not watched")

        // Link down: a .link event, and the routes the kernel flushed silently vanish via a re-dump.
        try nl.addRoute(RouteSpec(destination: "100.64.42.0/24", gateway: "100.64.3.2"))
        XCTAssertTrue(waitUntil { mirror.current.keys.contains { $0.destination == "100.64.42.0/24" } })
        let snapshotsBefore = monitor.snapshotCount
        try nl.setLinkUp("wlt3a", false)
        XCTAssertTrue(waitUntil { mirror.events.contains { if case .link(let l) = $0 { l.name == "wlt3a" && !l.isUp } else { false } } })
        XCTAssertTrue(waitUntil { !mirror.current.keys.contains { $0.destination == "100.64.42.0/24" } }, "silently flushed route still mirrored")
        XCTAssertGreaterThan(monitor.snapshotCount, snapshotsBefore)
        XCTAssertEqual(Set(mirror.current.keys), keys(try nl.routes()))

        try nl.deleteLink("wlt3b")
        XCTAssertTrue(waitUntil { mirror.events.contains { if case .linkRemoved(let l) = $0 { l.name == "wlt3b" } else { false } } })

        monitor.stop()
        await consumer.value
        XCTAssertTrue(mirror.finished)
    }

    /// Adds `count` /32 routes in one `ip -batch` run inside the namespace.
    private func burst(_ ns: String, count: Int, verb: String = "add") throws {
        let path = NSTemporaryDirectory() + "wlt-burst-\(getpid()).txt"
        defer { unlink(path) }
        var lines = ""
        for i in 0..<count { lines += "route \(verb) 100.65.\(i / 256).\(i % 256)/32 dev wlt3a proto bird\n" }
        try lines.write(toFile: path, atomically: true, encoding: .utf8)
        try mustShell("ip -n \(ns) -batch \(path)")
    }

    private func checkBurstConverges(suffix: String, buffer: Int, expectDrops: Bool) async throws {
        let (ns, nl) = try prepare(suffix)
        let monitor = try RouteMonitor(namespace: ns, tables: [mainRoutingTable], receiveBufferSize: buffer)
        let mirror = RouteMirror()
        let consumer = mirror.consume(monitor)
        XCTAssertTrue(waitUntil { monitor.snapshotCount == 1 })
        if expectDrops { monitor.readingPaused = true }
        try burst(ns, count: 5000)
        monitor.readingPaused = false
        let truth = keys(try nl.routes())
        XCTAssertEqual(truth.count, 5000 + 1)
        let converged = waitUntil(timeout: 20) { Set(mirror.current.keys) == truth }
        XCTAssertTrue(converged, "mirror has \(mirror.current.count) routes, kernel \(truth.count); snapshots \(monitor.snapshotCount), events seen \(mirror.events.count)")
        if expectDrops {
            XCTAssertGreaterThan(monitor.snapshotCount, 1, "a tiny buffer must have overflowed and caused a re-dump")
        }
        // A second burst (removing them all) while the monitor reads along: overflows that
        // happen mid-read must also end in the kernel's state.
        try burst(ns, count: 5000, verb: "del")
        let truthAfter = keys(try nl.routes())
        XCTAssertEqual(truthAfter.count, 1)
        let convergedAgain = waitUntil(timeout: 20) { Set(mirror.current.keys) == truthAfter }
        XCTAssertTrue(convergedAgain, "after removal: mirror has \(mirror.current.count) routes; snapshots \(monitor.snapshotCount)")
        monitor.stop()
        await consumer.value
    }

    func testBurstOf5000RoutesEndsConsistent() async throws {
        try await checkBurstConverges(suffix: "rm2", buffer: 32 << 20, expectDrops: false)
    }

    func testBurstWithTinyBufferRecoversThroughSnapshot() async throws {
        try await checkBurstConverges(suffix: "rm3", buffer: 4096, expectDrops: true)
    }

    func testStopFinishesTheStreamAndMonitorInMissingNamespaceThrows() async throws {
        let ns = try scratch.make("rm4")
        let monitor = try RouteMonitor(namespace: ns)
        var seen = 0
        let deadline = Task { try await Task.sleep(nanoseconds: 200_000_000); monitor.stop() }
        for await _ in monitor.events { seen += 1 }
        _ = try await deadline.value
        XCTAssertGreaterThanOrEqual(seen, 1, "at least the initial snapshot")
        XCTAssertThrowsError(try RouteMonitor(namespace: "wlt-absent")) { XCTAssertTrue("\($0)".contains("wlt-absent")) }
    }
}
