// Tests for NetworkNamespace: iproute2 compatibility, run(in:), sysctls, and the proof that
// the thread-pool trap (LINUX-NOTES.md) is avoided. Uses namespaces wlt-ns*.

import Foundation
import XCTest
@testable import WarrenLinux

final class NetworkNamespaceTests: XCTestCase {
    let scratch = ScratchNamespaces()
    override func tearDown() { scratch.removeAll() }

    func testCreateIsVisibleToIproute2AndDeleteRemovesIt() throws {
        let ns = try scratch.make("ns1")
        XCTAssertTrue(NetworkNamespace.exists(ns))
        XCTAssertTrue(NetworkNamespace.list().contains(ns))
        XCTAssertTrue(try mustShell("ip netns list").contains(ns))
        // `ip netns exec` can enter it and finds only a (down) loopback there.
        let links = try mustShell("ip netns exec \(ns) ip -o link show")
        XCTAssertTrue(links.contains("lo:"))
        XCTAssertEqual(links.split(separator: "\n").count, 1, links)
        XCTAssertNotEqual(try NetworkNamespace.namespaceID(of: ns), NetworkNamespace.currentThreadNamespaceID())
        // Creating it twice is a clear error.
        XCTAssertThrowsError(try NetworkNamespace.create(ns)) { error in
            XCTAssertTrue("\(error)".contains(ns) && "\(error)".contains("File exists"), "\(error)")
        }
        try NetworkNamespace.delete(ns)
        XCTAssertFalse(NetworkNamespace.exists(ns))
        XCTAssertFalse(try mustShell("ip netns list").contains(ns))
        XCTAssertThrowsError(try NetworkNamespace.delete(ns)) { error in
            XCTAssertEqual("\(error)", "deleting network namespace \(ns): No such file or directory")
        }
    }

    func testNamespaceMadeByIproute2IsUsable() throws {
        let ns = "wlt-ns2"
        _ = try? shell("ip netns del \(ns)")
        try mustShell("ip netns add \(ns)")
        defer { _ = try? shell("ip netns del \(ns)") }
        let inside = try NetworkNamespace.run(in: ns) { NetworkNamespace.currentThreadNamespaceID() }
        XCTAssertEqual(inside, try NetworkNamespace.namespaceID(of: ns))
    }

    func testInvalidNamesAreRejectedNamingTheArgument() {
        for bad in ["", "a/b", "..", "."] {
            XCTAssertThrowsError(try NetworkNamespace.create(bad)) { error in
                XCTAssertTrue(error is ArgumentError, "\(error)")
                XCTAssertTrue("\(error)".hasPrefix("invalid namespace"), "\(error)")
            }
        }
        XCTAssertThrowsError(try NetworkNamespace.run(in: "wlt-missing") { 1 }) { error in
            XCTAssertTrue("\(error)".contains("wlt-missing"), "\(error)")
        }
    }

    func testRunEntersTheNamespaceAndLeavesTheCallerAlone() throws {
        let ns = try scratch.make("ns3")
        let before = NetworkNamespace.currentThreadNamespaceID()
        let inside = try NetworkNamespace.run(in: ns) { NetworkNamespace.currentThreadNamespaceID() }
        XCTAssertEqual(inside, try NetworkNamespace.namespaceID(of: ns))
        XCTAssertEqual(NetworkNamespace.currentThreadNamespaceID(), before)
        // Errors thrown by the body come back to the caller.
        struct Marker: Error {}
        XCTAssertThrowsError(try NetworkNamespace.run(in: ns) { throw Marker() }) { XCTAssertTrue($0 is Marker) }
        // Interface lookups resolve in the namespace: only lo (index 1) exists there.
        let loIndex = try NetworkNamespace.run(in: ns) { if_nametoindex("lo") }
        XCTAssertEqual(loIndex, 1)
    }

    func testSysctlIsSetInsideTheNamespaceOnly() throws {
        let ns = try scratch.make("ns4")
        let rootBefore = try NetworkNamespace.sysctl("net.ipv4.ip_forward", namespace: nil)
        XCTAssertEqual(try NetworkNamespace.sysctl("net.ipv4.ip_forward", namespace: ns), "0")
        try NetworkNamespace.setSysctl("net.ipv4.ip_forward", "1", namespace: ns)
        XCTAssertEqual(try NetworkNamespace.sysctl("net.ipv4.ip_forward", namespace: ns), "1")
        XCTAssertEqual(try mustShell("ip netns exec \(ns) cat /proc/sys/net/ipv4/ip_forward").trimmingCharacters(in: .whitespacesAndNewlines), "1")
        XCTAssertEqual(try NetworkNamespace.sysctl("net.ipv4.ip_forward", namespace: nil), rootBefore)
        XCTAssertThrowsError(try NetworkNamespace.setSysctl("net.ipv4.no_such_knob", "1", namespace: ns)) { error in
            XCTAssertEqual("\(error)", "setting sysctl net.ipv4.no_such_knob=1 in \(ns): No such file or directory")
        }
        XCTAssertThrowsError(try NetworkNamespace.setSysctl("../etc/passwd", "1", namespace: ns)) { error in
            XCTAssertTrue(error is ArgumentError, "\(error)")
        }
    }

    /// The trap: threads inherit their creator's namespace, and Swift's pool creates workers
    /// from whichever thread enqueues work. After many `run` calls interleaved with async work
    /// (and tasks created from inside the body's thread's caller), every pool thread must
    /// still be in the original namespace.
    func testCooperativePoolNeverEndsUpInANamespace() async throws {
        let ns = try scratch.make("ns5")
        let home = try XCTUnwrap(NetworkNamespace.currentThreadNamespaceID())
        let target = try NetworkNamespace.namespaceID(of: ns)
        XCTAssertNotEqual(home, target)
        try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var seen: [UInt64] = []
                    for _ in 0..<25 {
                        let inside = try NetworkNamespace.run(in: ns) { NetworkNamespace.currentThreadNamespaceID() }
                        XCTAssertEqual(inside, target)
                        seen.append(NetworkNamespace.currentThreadNamespaceID() ?? 0)
                        await Task.yield()
                        // Work enqueued right after a run() call, possibly spawning new workers.
                        let child = Task.detached { NetworkNamespace.currentThreadNamespaceID() ?? 0 }
                        seen.append(await child.value)
                    }
                    return seen
                }
            }
            for try await seen in group {
                XCTAssertTrue(seen.allSatisfy { $0 == home }, "a pool thread was in another namespace: \(Set(seen))")
            }
        }
        // Finally, several concurrent tasks that each report their thread's namespace.
        let observed = await withTaskGroup(of: UInt64.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    try? await Task.sleep(nanoseconds: 1_000_000)
                    return NetworkNamespace.currentThreadNamespaceID() ?? 0
                }
            }
            var all = Set<UInt64>()
            for await id in group { all.insert(id) }
            return all
        }
        XCTAssertEqual(observed, [home])
    }
}
