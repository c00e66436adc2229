// The Unix-socket server under hostile and heavy use: garbage, oversized lines,
// concurrency, ordering, socket file handling, half-close and shutdown.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
@testable import WarrenRPC

final class ServerRobustnessTests: XCTestCase {
    func testRandomBytesAreAnsweredOrRefusedAndServerKeepsServing() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let witness = try fixture.client()
        var rng = SeededGenerator(seed: 2024)
        var answered = 0
        for round in 0..<60 {
            let garbage = try RawUnixSocket(path: fixture.socketPath)
            var bytes = (0..<Int.random(in: 1...4000, using: &rng)).map { _ in
                // Mostly random bytes, with newlines sprinkled in so there are several lines.
                Int.random(in: 0..<50, using: &rng) == 0 ? 10 : UInt8.random(in: 0...255, using: &rng)
            }
            bytes.append(10)
            // Every non-blank line gets exactly one answer (a parse or invalid-request error).
            let expected = bytes.split(separator: 10, omittingEmptySubsequences: false).dropLast().filter { line in
                !line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
            }.count
            garbage.send(bytes)
            garbage.shutdownWrite()
            var got = 0
            while case .line(let line) = garbage.readLine(timeout: 5) {
                let response = try JSONValue(parsing: line)
                XCTAssertEqual(response["jsonrpc"], "2.0")
                XCTAssertEqual(response["id"], .null)
                XCTAssertNotNil(response["error"]?["code"]?.intValue, "round \(round)")
                got += 1
            }
            XCTAssertEqual(got, expected, "round \(round)")
            answered += got
            XCTAssertEqual(try witness.call("sum", params: [.int(Int64(round)), 1], timeout: 5), .int(Int64(round + 1)))
        }
        XCTAssertGreaterThan(answered, 100)
    }

    func testRandomJSONLinesAreAllAnsweredValidly() throws {
        let fixture = try ServerFixture(configure: { registry in
            registry.register("vpn.dynamic.create", summary: "", params: DynamicVpnParams.self, result: EmptyResult.self) {
                _, _ in EmptyResult()
            }
        })
        defer { fixture.stop() }
        let client = try fixture.client()
        var rng = SeededGenerator(seed: 11)
        let methods: [JSONValue] = ["sum", "subtract", "vpn.dynamic.create", "rpc.discover", "agent.subscribe", "nope", 5, nil]
        for _ in 0..<400 {
            var message = randomJSON(&rng)
            if Bool.random(using: &rng) {
                // Something that looks like a request, with random parts.
                var request: JSONValue = ["jsonrpc": Bool.random(using: &rng) ? "2.0" : randomJSON(&rng)]
                request["method"] = methods.randomElement(using: &rng)!
                if Bool.random(using: &rng) { request["params"] = randomJSON(&rng) }
                if Bool.random(using: &rng) { request["id"] = randomJSON(&rng) }
                message = Bool.random(using: &rng) ? request : JSONValue.array([request, randomJSON(&rng)])
            }
            try client.sendRaw(message.serialized())
        }
        try client.sendRaw(Array(#"{"jsonrpc":"2.0","method":"sum","params":[40,2],"id":"final"}"#.utf8))
        var lines = 0
        while true {
            let line = try XCTUnwrap(try client.readLine(timeout: 10))
            let response = try JSONValue(parsing: line)
            lines += 1
            let items = response.arrayValue ?? [response]
            for item in items {
                XCTAssertEqual(item["jsonrpc"], "2.0", item.description)
                XCTAssertTrue((item["result"] == nil) != (item["error"] == nil), item.description)
                XCTAssertNotNil(item.objectValue?.keys.contains("id"))
            }
            if response["id"] == "final" {
                XCTAssertEqual(response["result"], 42)
                break
            }
        }
        XCTAssertGreaterThan(lines, 100)
    }

    func testHugeLineIsRefusedWithoutBuffering() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let rssBefore = residentBytes()
        let hog = try RawUnixSocket(path: fixture.socketPath)
        // A valid request first: it must be answered before the refusal.
        hog.send(Array(#"{"jsonrpc":"2.0","method":"sum","params":[1,1],"id":1}"#.utf8) + [10])
        let sent = Shared(0)
        let writerDone = DispatchSemaphore(value: 0)
        let start = seconds()
        let writer = Thread {
            let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
            for _ in 0..<100 {  // 100 MiB, no newline
                guard hog.send(chunk) else { break }
                sent.withLock { $0 += chunk.count }
            }
            writerDone.signal()
        }
        writer.start()
        XCTAssertEqual(try hog.readJSON(timeout: 10)["result"], 2)
        let refusal = try hog.readJSON(timeout: 10)
        let elapsed = seconds() - start
        XCTAssertEqual(refusal["id"], .null)
        XCTAssertEqual(refusal["error"]?["code"], -32600)
        XCTAssertEqual(refusal["error"]?["data"], ["reason": "request exceeds 1048576 bytes"])
        XCTAssertLessThan(elapsed, 5, "the refusal must come quickly")
        // Then the connection is closed, and the writer fails early: the server stopped
        // reading after about 1 MiB instead of buffering 100 MiB.
        XCTAssertEqual(hog.readLine(timeout: 10), .closed)
        XCTAssertEqual(writerDone.wait(timeout: .now() + 10), .success)
        XCTAssertLessThan(sent.current, 16 << 20, "server accepted \(sent.current) bytes of an oversized line")
        let growth = residentBytes() - rssBefore
        XCTAssertLessThan(growth, 48 << 20, "RSS grew by \(growth) bytes")
        // Another client is served normally.
        let other = try fixture.client()
        XCTAssertEqual(try other.call("sum", params: [2, 3], timeout: 5), 5)
        XCTAssertTrue(fixture.logs.text.contains("refusing a request over 1048576 bytes"))
    }

    func testCompleteLineOverLimitIsRefused() throws {
        let fixture = try ServerFixture(maxRequestBytes: 1000)
        defer { fixture.stop() }
        let client = try fixture.client()
        let params = JSONValue.array((0..<400).map { .int($0) })
        let big: JSONValue = ["jsonrpc": "2.0", "method": "sum", "params": params, "id": 1]
        XCTAssertGreaterThan(big.serialized().count, 1000)
        try client.sendRaw(big.serialized())
        let refusal = try JSONValue(parsing: try XCTUnwrap(try client.readLine(timeout: 5)))
        XCTAssertEqual(refusal["error"]?["data"]?["reason"], "request exceeds 1000 bytes")
    }

    func testSixteenConcurrentClients() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let failures = Shared<[String]>([])
        let start = seconds()
        runOnThreads(16) { worker in
            do {
                let client = try RPCClient(socketPath: fixture.socketPath)
                for i in 0..<500 {
                    let a = worker * 1000 + i
                    let result = try client.call("subtract", params: ["minuend": .int(Int64(a)), "subtrahend": .int(Int64(worker))], timeout: 10)
                    if result != .int(Int64(a - worker)) {
                        failures.withLock { $0.append("worker \(worker) call \(i): \(result)") }
                    }
                }
            } catch {
                failures.withLock { $0.append("worker \(worker): \(error)") }
            }
        }
        XCTAssertEqual(failures.current, [])
        let elapsed = seconds() - start
        print("16 clients x 500 calls: \(String(format: "%.2f", elapsed)) s, \(Int(8000 / elapsed)) calls/s")
    }

    func testPipelinedRequestsAreAppliedInOrder() throws {
        let store = Shared<[String: Int]>([:])
        let log = Shared<[Int]>([])
        struct SetParams: Codable, Sendable { var key: String; var value: Int }
        struct KeyParams: Codable, Sendable { var key: String }
        let fixture = try ServerFixture(configure: { registry in
            registry.register("kv.set", summary: "", params: SetParams.self, result: EmptyResult.self) { p, _ in
                // A slow create: without per-connection ordering the delete would overtake it.
                try await Task.sleep(nanoseconds: UInt64.random(in: 0...2_000_000))
                store.withLock { $0[p.key] = p.value }
                log.withLock { $0.append(p.value) }
                return EmptyResult()
            }
            registry.register("kv.delete", summary: "", params: KeyParams.self, result: EmptyResult.self) { p, _ in
                guard store.withLock({ $0.removeValue(forKey: p.key) }) != nil else {
                    throw RPCError.notFound(field: "key", reason: "no key \(p.key)")
                }
                return EmptyResult()
            }
        })
        defer { fixture.stop() }
        let client = try fixture.client()
        var batch: [UInt8] = []
        for i in 0..<100 {
            let set: JSONValue = ["jsonrpc": "2.0", "method": "kv.set", "params": ["key": .string("k\(i)"), "value": .int(Int64(i))], "id": .int(Int64(2 * i))]
            let delete: JSONValue = ["jsonrpc": "2.0", "method": "kv.delete", "params": ["key": .string("k\(i)")], "id": .int(Int64(2 * i + 1))]
            batch += set.serialized() + [10] + delete.serialized() + [10]
        }
        try client.sendBytes(batch)
        for expected in 0..<200 {
            let response = try JSONValue(parsing: try XCTUnwrap(try client.readLine(timeout: 10)))
            XCTAssertEqual(response["id"], JSONValue.int(Int64(expected)), "responses arrive in request order")
            XCTAssertNil(response["error"], "request \(expected): \(response)")
        }
        XCTAssertEqual(log.current, Array(0..<100))
        XCTAssertEqual(store.current, [:])
    }

    func testSocketFileModeIs0600() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        var st = stat()
        XCTAssertEqual(lstat(fixture.socketPath, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
    }

    func testSecondServerOnSamePathIsRefusedAndStaleSocketReplaced() throws {
        let fixture = try ServerFixture()
        let path = fixture.socketPath
        let second = RPCServer(registry: MethodRegistry(), configuration: .init(unixSocketPath: path), log: { _, _ in })
        XCTAssertThrowsError(try runBlocking { try await second.start() }) { error in
            XCTAssertEqual(error as? RPCServerError, .socketInUse(path: path))
            XCTAssertTrue("\(error)".contains("another server is already listening on \(path)"))
        }
        // The first server is unaffected.
        XCTAssertEqual(try fixture.client().call("sum", params: [1], timeout: 5), 1)
        try runBlocking { await fixture.server.shutdown() }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "shutdown removes its socket")

        // A stale socket file (bound, nobody listening) is replaced.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        _ = try UnixSocketPath.withAddress(path) { bind(fd, $0, $1) }
        Glibc.close(fd)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let third = RPCServer(registry: MethodRegistry(), configuration: .init(unixSocketPath: path), log: { _, _ in })
        try runBlocking { try await third.start() }
        XCTAssertEqual(try RPCClient(socketPath: path).call("rpc.discover", timeout: 5)["openrpc"], "1.2.6")
        try runBlocking { await third.shutdown() }
        try? FileManager.default.removeItem(atPath: fixture.directory)
    }

    func testRefusesToReplaceNonSocketAndReportsBadPaths() throws {
        let directory = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/not-a-socket"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        let server = RPCServer(registry: MethodRegistry(), configuration: .init(unixSocketPath: path), log: { _, _ in })
        XCTAssertThrowsError(try runBlocking { try await server.start() }) { error in
            XCTAssertTrue("\(error)".contains("not a socket"), "\(error)")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data("keep me".utf8))

        let missingDir = RPCServer(
            registry: MethodRegistry(), configuration: .init(unixSocketPath: directory + "/nope/warren.sock"), log: { _, _ in })
        XCTAssertThrowsError(try runBlocking { try await missingDir.start() }) { error in
            XCTAssertTrue("\(error)".contains("does the directory exist?"), "\(error)")
        }
        let tooLong = RPCServer(
            registry: MethodRegistry(), configuration: .init(unixSocketPath: directory + "/" + String(repeating: "x", count: 120)),
            log: { _, _ in })
        XCTAssertThrowsError(try runBlocking { try await tooLong.start() }) { error in
            XCTAssertTrue("\(error)".contains("longer than 107 bytes"), "\(error)")
        }
        let noToken = RPCServer(
            registry: MethodRegistry(), configuration: .init(unixSocketPath: directory + "/s", http: ("127.0.0.1", 0)),
            log: { _, _ in })
        XCTAssertThrowsError(try runBlocking { try await noToken.start() }) { error in
            XCTAssertEqual(error as? RPCServerError, .missingBearerToken)
        }
    }

    func testClientReportsMissingAgent() {
        XCTAssertThrowsError(try RPCClient(socketPath: "/tmp/wrpc-does-not-exist.sock")) { error in
            XCTAssertEqual(
                "\(error)", "no agent is listening on /tmp/wrpc-does-not-exist.sock (is warren-agent running?)")
        }
    }

    func testHalfClosedClientStillGetsAnswers() throws {
        let fixture = try ServerFixture()
        defer { fixture.stop() }
        let client = try RawUnixSocket(path: fixture.socketPath)
        // Two requests, blank lines between, the last without a trailing newline; then shut
        // down the write side (as `printf ... | socat` does).
        client.send(Array("{\"jsonrpc\":\"2.0\",\"method\":\"sum\",\"params\":[1,2],\"id\":1}\n\n  \r\n{\"jsonrpc\":\"2.0\",\"method\":\"sum\",\"params\":[3],\"id\":2}".utf8))
        client.shutdownWrite()
        XCTAssertEqual(try client.readJSON(), ["jsonrpc": "2.0", "result": 3, "id": 1])
        XCTAssertEqual(try client.readJSON(), ["jsonrpc": "2.0", "result": 3, "id": 2])
        XCTAssertEqual(client.readLine(timeout: 5), .closed)
    }

    func testLargeResponseAfterEOFIsDeliveredCompletely() throws {
        let fixture = try ServerFixture(configure: { registry in
            registry.register("big", summary: "", params: EmptyParams.self, result: [String].self) { _, _ in
                Array(repeating: String(repeating: "y", count: 1000), count: 4000)  // ~4 MB
            }
        })
        defer { fixture.stop() }
        let client = try RawUnixSocket(path: fixture.socketPath)
        client.send(Array(#"{"jsonrpc":"2.0","method":"big","id":1}"#.utf8) + [10])
        client.shutdownWrite()
        usleep(300_000)  // the answer cannot fit in the socket buffers: most of it waits in the server
        let response = try client.readJSON(timeout: 10)
        XCTAssertEqual(response["result"]?.arrayValue?.count, 4000)
        XCTAssertEqual(client.readLine(timeout: 5), .closed)
    }

    func testShutdownLetsInFlightRequestsFinish() throws {
        let started = DispatchSemaphore(value: 0)
        let fixture = try ServerFixture(configure: { registry in
            registry.register("slow", summary: "", params: EmptyParams.self, result: [String: String].self) { _, _ in
                started.signal()
                try await Task.sleep(nanoseconds: 300_000_000)
                return ["done": "yes"]
            }
        })
        let client = try fixture.client()
        try client.sendRaw(Array(#"{"jsonrpc":"2.0","method":"slow","id":1}"#.utf8))
        XCTAssertEqual(started.wait(timeout: .now() + 5), .success)
        let stopper = Thread { fixture.stop() }
        stopper.start()
        let response = try JSONValue(parsing: try XCTUnwrap(try client.readLine(timeout: 5)))
        XCTAssertEqual(response["result"], ["done": "yes"])
        XCTAssertThrowsError(try client.readLine(timeout: 5))
        // New connections are refused once shut down.
        let deadline = seconds() + 5
        while FileManager.default.fileExists(atPath: fixture.socketPath) && seconds() < deadline { usleep(10_000) }
        XCTAssertThrowsError(try RPCClient(socketPath: fixture.socketPath))
    }

    func testLogsNeverContainParams() throws {
        let fixture = try ServerFixture(configure: { registry in
            registry.register("vpn.dynamic.create", summary: "", params: DynamicVpnParams.self, result: EmptyResult.self) {
                _, _ in throw RPCError.conflict(field: "name", reason: "exists")
            }
        })
        defer { fixture.stop() }
        let client = try fixture.client()
        XCTAssertThrowsError(try client.call("vpn.dynamic.create", params: sampleVpnParams, timeout: 5))
        var broken = sampleVpnParams
        broken["localSubnets"] = ["nope"]
        XCTAssertThrowsError(try client.call("vpn.dynamic.create", params: broken, timeout: 5)) { error in
            XCTAssertEqual((error as? RPCError)?.field, "localSubnets[0]")
        }
        let text = fixture.logs.text
        XCTAssertTrue(text.contains("vpn.dynamic.create answered error -32002"), text)
        XCTAssertTrue(text.contains("vpn.dynamic.create answered error -32602"), text)
        XCTAssertFalse(text.contains("s3cr3t-psk-do-not-log"))
        XCTAssertFalse(text.contains("203.0.113.1"))
    }
}
