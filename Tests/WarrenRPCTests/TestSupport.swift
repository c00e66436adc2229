// Test support for WarrenRPC: a server fixture with the JSON-RPC specification's example
// methods, a blocking bridge to async code, a raw HTTP/1.1 client over TCP (loopback
// only), and small utilities (temp dirs, RSS, threads).
//
// Threading: tests that use the blocking RPCClient are synchronous XCTest methods; they
// never block a Swift-concurrency pool thread (the server's handlers need those threads).

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
@testable import WarrenRPC

/// A value shared between threads in tests.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    var current: Value { withLock { $0 } }
}

/// Runs async work from a synchronous test (the calling thread is not a pool thread).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let result = Shared<Result<T, Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            let value = try await body()
            result.withLock { $0 = .success(value) }
        } catch {
            result.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return try result.current!.get()
}

/// Runs `count` bodies on their own threads and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}

/// A fresh directory under /tmp (short, so socket paths stay within 108 bytes).
func makeTemporaryDirectory() -> String {
    var template = Array("/tmp/wrpc.XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String in
        guard let p = mkdtemp(buffer.baseAddress!) else { fatalError("mkdtemp failed") }
        return String(cString: p)
    }
    return path
}

/// Resident set size of this process in bytes.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func seconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Collects log lines from the server.
final class LogRecorder: @unchecked Sendable {
    private let lines = Shared<[(RPCLogLevel, String)]>([])
    var sink: @Sendable (RPCLogLevel, String) -> Void {
        { [lines] level, message in lines.withLock { $0.append((level, message)) } }
    }
    var all: [(RPCLogLevel, String)] { lines.current }
    var text: String { all.map { "\($0.0): \($0.1)" }.joined(separator: "\n") }
}

/// Removes `data` from error objects, to compare responses with the specification's
/// examples (which show only code and message; Warren adds a reason in `data`).
func strippingErrorData(_ value: JSONValue) -> JSONValue {
    switch value {
    case .array(let elements):
        return .array(elements.map(strippingErrorData))
    case .object(var members):
        if case .object(var error)? = members["error"] {
            error["data"] = nil
            members["error"] = .object(error)
        }
        return .object(members)
    default:
        return value
    }
}

/// Compares batch responses as sets keyed by id (the order may differ).
func sortedByID(_ value: JSONValue) -> [JSONValue] {
    guard case .array(let elements) = value else { return [value] }
    return elements.sorted { ($0["id"]?.description ?? "") < ($1["id"]?.description ?? "") }
}

/// The methods of the JSON-RPC 2.0 specification's examples plus a few Warren-style ones.
final class SpecMethods: Sendable {
    let updates = Shared<[JSONValue]>([])
    let hellos = Shared<Int>(0)
    let calls = Shared<Int>(0)

    func register(on registry: MethodRegistry) {
        let numbers: JSONValue = ["type": "array", "items": ["type": "number"]]
        registry.registerRaw(
            "subtract", summary: "minuend - subtrahend (positional or named)",
            paramsSchema: [
                "type": "array",
                "prefixItems": [["title": "minuend", "type": "integer"], ["title": "subtrahend", "type": "integer"]],
            ],
            resultSchema: ["type": "integer"]
        ) { params, _ in
            switch params {
            case .array(let a)? where a.count == 2:
                guard let x = a[0].intValue, let y = a[1].intValue else {
                    throw RPCError.invalidParams(field: nil, reason: "expected two integers")
                }
                return .int(x - y)
            case .object(let o)?:
                guard let x = o["minuend"]?.intValue else {
                    throw RPCError.invalidParams(field: "minuend", reason: "expected an integer")
                }
                guard let y = o["subtrahend"]?.intValue else {
                    throw RPCError.invalidParams(field: "subtrahend", reason: "expected an integer")
                }
                return .int(x - y)
            default:
                throw RPCError.invalidParams(field: nil, reason: "expected [minuend, subtrahend]")
            }
        }
        registry.registerRaw("sum", summary: "sum of numbers", paramsSchema: numbers, resultSchema: ["type": "integer"]) {
            [calls] params, _ in
            calls.withLock { $0 += 1 }
            let values = params?.arrayValue ?? []
            return .int(values.compactMap(\.intValue).reduce(0, +))
        }
        registry.registerRaw("update", summary: "records its params", paramsSchema: numbers, resultSchema: [:]) {
            [updates] params, _ in
            updates.withLock { $0.append(params ?? .null) }
            return .null
        }
        registry.registerRaw("notify_hello", summary: "counts hellos", paramsSchema: numbers, resultSchema: [:]) {
            [hellos] _, _ in
            hellos.withLock { $0 += 1 }
            return .null
        }
        registry.registerRaw("get_data", summary: "fixed data", paramsSchema: ["type": "object"], resultSchema: [:]) {
            _, _ in ["hello", 5]
        }
    }
}

/// A running RPCServer on a temporary socket (and optionally HTTP on 127.0.0.1).
final class ServerFixture: @unchecked Sendable {
    let directory: String
    let socketPath: String
    let registry: MethodRegistry
    let server: RPCServer
    let logs = LogRecorder()
    let spec = SpecMethods()
    static let token = "test-token-0123456789abcdef"

    init(
        http: Bool = false, maxRequestBytes: Int = 1 << 20, maxQueuedEvents: Int = 1000,
        metrics: (@Sendable () async -> String)? = nil,
        shutdownGracePeriod: Double = 5,
        configure: (MethodRegistry) -> Void = { _ in }
    ) throws {
        directory = makeTemporaryDirectory()
        socketPath = directory + "/warren.sock"
        registry = MethodRegistry(title: "Warren test", version: "1.0.0")
        spec.register(on: registry)
        configure(registry)
        let configuration = RPCServer.Configuration(
            unixSocketPath: socketPath,
            http: http ? ("127.0.0.1", 0) : nil,
            bearerToken: http ? Self.token : nil,
            maxRequestBytes: maxRequestBytes,
            metrics: metrics,
            maxQueuedEvents: maxQueuedEvents,
            shutdownGracePeriod: shutdownGracePeriod
        )
        server = RPCServer(registry: registry, configuration: configuration, log: logs.sink)
        let server = self.server
        try runBlocking { try await server.start() }
    }

    func stop() {
        let server = self.server
        try? runBlocking { await server.shutdown() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func client() throws -> RPCClient {
        try RPCClient(socketPath: socketPath)
    }

    var httpPort: Int { server.httpPort ?? -1 }
}

// MARK: - raw HTTP/1.1 over TCP (loopback)

struct HTTPTestResponse {
    var status: Int
    var headers: [String: String]  // lower-cased names
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

enum HTTPTestError: Error {
    case connect(String)
    case closed
    case timeout
    case malformed(String)
}

/// A blocking HTTP/1.1 connection to 127.0.0.1:port.
final class HTTPTestConnection {
    private var fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HTTPTestError.connect(reason)
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Writes bytes; returns how many were written before an error (EPIPE/ECONNRESET).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send_(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return offset
            }
            offset += n
        }
        return offset
    }

    private func send_(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
        Glibc.send(fd, p, n, Int32(MSG_NOSIGNAL))
    }

    func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) throws -> HTTPTestResponse {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        send(Array(text.utf8) + body)
        return try readResponse()
    }

    private func fill(timeout: Double) throws {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(timeout * 1000)) > 0 else { throw HTTPTestError.timeout }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { throw HTTPTestError.closed }
        buffer.append(contentsOf: chunk[0..<n])
    }

    func readResponse(timeout: Double = 10) throws -> HTTPTestResponse {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headerEnd: Int?
        while headerEnd == nil {
            if buffer.count >= 4 {
                for i in 0...(buffer.count - 4) where Array(buffer[i..<i + 4]) == separator {
                    headerEnd = i
                    break
                }
            }
            if headerEnd == nil { try fill(timeout: timeout) }
        }
        let headText = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw HTTPTestError.malformed(headText)
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        buffer.removeFirst(headerEnd! + 4)
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while buffer.count < length { try fill(timeout: timeout) }
        let body = Array(buffer[0..<length])
        buffer.removeFirst(length)
        return HTTPTestResponse(status: status, headers: headers, body: body)
    }

    /// True if the server closed the connection (EOF) within `timeout`.
    func isClosedByPeer(timeout: Double = 5) -> Bool {
        do {
            while true { try fill(timeout: timeout) }
        } catch HTTPTestError.closed {
            return true
        } catch {
            return false
        }
    }
}

// MARK: - raw Unix socket (for tests that write and read from different threads)

/// A bare AF_UNIX stream connection: `send` may be called from one thread while another
/// reads lines.
final class RawUnixSocket: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = try UnixSocketPath.withAddress(path) { connect(fd, $0, $1) }
        if rc != 0 {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HTTPTestError.connect(reason)
        }
    }

    deinit { Glibc.close(fd) }

    /// Writes everything; false if the peer went away.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    func shutdownWrite() {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    enum ReadResult: Equatable {
        case line([UInt8])
        case timeout
        case closed
    }

    /// The next line, `.timeout`, or `.closed` at end of stream / connection reset.
    func readLine(timeout: Double) -> ReadResult {
        let deadline = seconds() + timeout
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                return .line(line)
            }
            let remaining = deadline - seconds()
            if remaining <= 0 { return .timeout }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32(remaining * 1000) + 1) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return .closed
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    func readJSON(timeout: Double = 5) throws -> JSONValue {
        guard case .line(let line) = readLine(timeout: timeout) else { throw HTTPTestError.timeout }
        return try JSONValue(parsing: line)
    }
}

/// Hands a non-Sendable value to exactly one other thread (the test guarantees no overlap).
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
