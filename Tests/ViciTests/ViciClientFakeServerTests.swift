// ViciClientFakeServerTests.swift — the client against a scripted fake vici server on a
// Unix socket: behaviours a real charon will not show on demand (no answer, protocol
// violations, malformed events, events interleaved with streamed responses).

import Foundation
import WarrenVici
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A one-connection vici server driven by a script running on its own thread.
final class FakeViciServer: @unchecked Sendable {
    let path: String
    private let listenFD: Int32
    private var connFD: Int32 = -1
    private var frames = ViciFrameReader()
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        path = "/tmp/wvt-fake-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(listenFD, 1) == 0 else { throw CommandError(command: ["bind", path], status: errno, output: "") }
    }

    /// Accepts one client and runs `script` on a thread.
    func serve(_ script: @escaping @Sendable (FakeViciServer) throws -> Void) {
        let t = Thread { [self] in
            self.connFD = accept(self.listenFD, nil, nil)
            try? script(self)
            self.done.signal()
        }
        t.start()
    }

    /// Reads the next packet sent by the client.
    func receive() throws -> ViciPacket {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            if let body = try frames.next() { return try ViciPacket.decode(body) }
            let n = read(connFD, &buf, buf.count)
            if n <= 0 { throw CommandError(command: ["fake read"], status: Int32(n), output: "client closed") }
            frames.append(buf[0..<n])
        }
    }

    func sendRaw(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(connFD, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func send(_ packet: ViciPacket) throws { sendRaw(try packet.encodeFrame()) }

    func closeConnection() {
        if connFD >= 0 { close(connFD) }
        connFD = -1
    }

    func waitScript(timeout: Double = 5) -> Bool { done.wait(timeout: .now() + timeout) == .success }

    deinit {
        closeConnection()
        close(listenFD)
        unlink(path)
    }
}

final class ViciClientFakeServerTests: XCTestCase {
    func testRequestResponseAndSuccessNo() async throws {
        let server = try FakeViciServer()
        server.serve { s in
            let p = try s.receive()
            XCTAssertEqual(p.type, .cmdRequest)
            XCTAssertEqual(p.name, "load-conn")
            XCTAssertEqual(p.message.section("c")?.string("version"), "2")
            try s.send(ViciPacket(type: .cmdResponse, message: ["success": "no", "errmsg": "bad things"]))
            _ = try s.receive()
            try s.send(ViciPacket(type: .cmdResponse, message: ["daemon": "fake", "version": "1"]))
            _ = try s.receive()
            try s.send(ViciPacket(type: .cmdUnknown))
        }
        let client = try ViciClient(socketPath: server.path)
        defer { client.close() }
        do {
            _ = try await client.request("load-conn", ["c": ["version": "2"]])
            XCTFail("success = no did not throw")
        } catch ViciError.commandFailed(let c, let m) {
            XCTAssertEqual(c, "load-conn")
            XCTAssertEqual(m, "bad things")
        }
        let v = try await client.version()
        XCTAssertEqual(v.daemon, "fake")
        do {
            _ = try await client.request("nope")
            XCTFail()
        } catch ViciError.unknownCommand(let c) { XCTAssertEqual(c, "nope") }
        XCTAssertTrue(server.waitScript())
    }

    func testStreamedCommandCollectsInterleavedEventsAndRoutesOthersToSubscribers() async throws {
        let server = try FakeViciServer()
        server.serve { s in
            // subscribe(["ike-updown"])
            let reg = try s.receive()
            XCTAssertEqual(reg.type, .eventRegister)
            XCTAssertEqual(reg.name, "ike-updown")
            try s.send(ViciPacket(type: .eventConfirm))
            // listSAs: register list-sa, command, 2 list-sa + 1 ike-updown, response, unregister.
            let reg2 = try s.receive()
            XCTAssertEqual(reg2.name, "list-sa")
            try s.send(ViciPacket(type: .eventConfirm))
            let cmd = try s.receive()
            XCTAssertEqual(cmd.name, "list-sas")
            try s.send(ViciPacket(type: .event, name: "list-sa", message: ["a": ["uniqueid": "1", "state": "ESTABLISHED", "version": "2",
                "child-sas": ["a-7": ["name": "a", "uniqueid": "7", "state": "INSTALLED", "spi-in": "c0ffee01", "spi-out": "0000beef",
                                       "bytes-in": "100", "packets-in": "2", "local-ts": ["0.0.0.0/0"]]]]]))
            try s.send(ViciPacket(type: .event, name: "ike-updown", message: ["up": "yes", "a": ["uniqueid": "1", "state": "ESTABLISHED"]]))
            try s.send(ViciPacket(type: .event, name: "list-sa", message: ["b": ["uniqueid": "2", "state": "CONNECTING", "version": "1"]]))
            try s.send(ViciPacket(type: .cmdResponse))
            let unreg = try s.receive()
            XCTAssertEqual(unreg.type, .eventUnregister)
            XCTAssertEqual(unreg.name, "list-sa")
            try s.send(ViciPacket(type: .eventConfirm))
            // A down event: `up` absent.
            try s.send(ViciPacket(type: .event, name: "ike-updown", message: ["a": ["uniqueid": "1", "state": "DELETING"]]))
        }
        let client = try ViciClient(socketPath: server.path)
        defer { client.close() }
        let events = EventRecorder(try await client.subscribe(["ike-updown"]))
        let sas = try await client.listSAs()
        XCTAssertEqual(sas.map(\.name), ["a", "b"])
        XCTAssertEqual(sas[0].state, .established)
        XCTAssertEqual(sas[1].state, .connecting)
        XCTAssertEqual(sas[1].version, 1)
        let child = try XCTUnwrap(sas[0].children.first)
        XCTAssertEqual(child.name, "a", "child name comes from the `name` key, not the `a-7` section key")
        XCTAssertEqual(child.uniqueId, 7)
        XCTAssertEqual(child.spiIn, 0xc0ffee01)
        XCTAssertEqual(child.spiOut, 0xbeef)
        XCTAssertEqual(child.bytesIn, 100)
        XCTAssertEqual(child.packetsIn, 2)
        XCTAssertEqual(child.localTS, ["0.0.0.0/0"])
        let down = await events.wait { (try? $0.upDown())??.up == false }
        XCTAssertNotNil(down)
        let ups = events.all.filter { (try? $0.upDown())??.up == true }
        XCTAssertEqual(ups.count, 1)
        XCTAssertEqual(try ups.first?.upDown()?.ikeSA.name, "a")
        XCTAssertTrue(server.waitScript())
    }

    func testNoAnswerTimesOutAndClosesTheConnection() async throws {
        let server = try FakeViciServer()
        server.serve { s in
            _ = try s.receive()
            Thread.sleep(forTimeInterval: 1.5) // never answers in time
        }
        let client = try ViciClient(socketPath: server.path, commandTimeout: .milliseconds(300))
        let clock = ContinuousClock()
        let t0 = clock.now
        do {
            _ = try await client.request("version")
            XCTFail("no timeout")
        } catch ViciError.timeout(let command, let seconds) {
            XCTAssertEqual(command, "version")
            XCTAssertEqual(seconds, 0.3, accuracy: 0.001)
        }
        let waited = clock.now - t0
        XCTAssertLessThan(waited, .milliseconds(1000))
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(300))
        XCTAssertFalse(client.isConnected)
        do {
            _ = try await client.request("version")
            XCTFail()
        } catch ViciError.timeout {}
        XCTAssertTrue(server.waitScript())
    }

    func testProtocolViolationsCloseTheConnection() async throws {
        for (what, bytes) in [("response without request", try ViciPacket(type: .cmdResponse).encodeFrame()),
                              ("client-only packet", try ViciPacket(type: .cmdRequest, name: "x").encodeFrame()),
                              ("unknown packet type", [0, 0, 0, 1, 9]),
                              ("oversized frame", [0x7f, 0, 0, 0])] {
            let server = try FakeViciServer()
            server.serve { s in
                s.sendRaw(bytes)
                Thread.sleep(forTimeInterval: 0.5)
            }
            let client = try ViciClient(socketPath: server.path)
            let deadline = ContinuousClock.now.advanced(by: .seconds(5))
            while client.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            XCTAssertFalse(client.isConnected, what)
            guard case .protocolViolation(let m) = client.disconnectError else {
                XCTFail("\(what): \(String(describing: client.disconnectError))")
                continue
            }
            XCTAssertFalse(m.isEmpty)
            XCTAssertTrue(server.waitScript())
        }
    }

    func testMalformedStreamedEventFailsTheCommandButNotTheConnection() async throws {
        let server = try FakeViciServer()
        server.serve { s in
            _ = try s.receive() // register list-sa
            try s.send(ViciPacket(type: .eventConfirm))
            _ = try s.receive() // list-sas
            // An event whose message is cut: [1 = SECTION_START, name "x"], no end.
            s.sendRaw([0, 0, 0, 12, 7, 7] + Array("list-sa".utf8) + [1, 1, 0x78])
            try s.send(ViciPacket(type: .cmdResponse))
            _ = try s.receive() // unregister
            try s.send(ViciPacket(type: .eventConfirm))
            _ = try s.receive() // version
            try s.send(ViciPacket(type: .cmdResponse, message: ["daemon": "fake", "version": "2"]))
        }
        let client = try ViciClient(socketPath: server.path)
        defer { client.close() }
        do {
            _ = try await client.listSAs()
            XCTFail("malformed list-sa event was silently dropped")
        } catch ViciError.codec(let e) {
            guard case .unterminated = e else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(client.malformedEventCount, 1)
        let version = try await client.version()
        XCTAssertEqual(version.daemon, "fake")
        XCTAssertTrue(server.waitScript())
    }

    func testServerCloseFailsPendingRequest() async throws {
        let server = try FakeViciServer()
        server.serve { s in
            _ = try s.receive()
            s.closeConnection()
        }
        let client = try ViciClient(socketPath: server.path)
        do {
            _ = try await client.request("stats")
            XCTFail()
        } catch ViciError.disconnected(let path, let reason) {
            XCTAssertEqual(path, server.path)
            XCTAssertEqual(reason, "charon closed the connection")
        }
        XCTAssertTrue(server.waitScript())
    }
}
