// RPCClient — a small blocking JSON-RPC client for the Unix socket (warrenctl, tests,
// benchmarks). No NIO: one socket, poll() for timeouts.
//
// What: sends NDJSON requests and reads lines until the matching response arrives.
// Notifications pushed by the server (agent.event) that arrive meanwhile are queued and
// handed out by `nextNotification`; responses to other ids (e.g. a call that timed out
// earlier) are dropped.
// Invariants: at most `maxLineBytes` are buffered for one incoming line (a longer line is
// a protocol error and closes the client); writes use MSG_NOSIGNAL (no SIGPIPE); after
// any I/O error the client is closed and every further call throws `.closed`.
// Threading: not Sendable — use one client from one thread at a time.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A connection-level client failure (as opposed to an ``RPCError`` returned by the server).
public enum RPCClientError: Error, CustomStringConvertible, Equatable {
    /// Nothing accepts connections at the path.
    case noAgent(path: String)
    /// The socket exists but connecting failed for another reason.
    case connectFailed(path: String, reason: String)
    /// No response within the timeout.
    case timeout(method: String, seconds: Double)
    /// The server closed the connection.
    case connectionClosed
    /// The client was closed (by `close()` or after an earlier error).
    case closed
    /// Reading or writing the socket failed.
    case io(operation: String, reason: String)
    /// The server sent something that is not a JSON-RPC message.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .noAgent(let path): return "no agent is listening on \(path) (is warren-agent running?)"
        case .connectFailed(let path, let reason): return "cannot connect to \(path): \(reason)"
        case .timeout(let method, let seconds): return "no response to \(method) within \(seconds) s"
        case .connectionClosed: return "the agent closed the connection"
        case .closed: return "the client connection is closed"
        case .io(let operation, let reason): return "\(operation) failed: \(reason)"
        case .invalidResponse(let reason): return "invalid response from the agent: \(reason)"
        }
    }
}

/// A blocking JSON-RPC 2.0 client over the agent's Unix socket.
public final class RPCClient {
    /// The socket path this client is connected to.
    public let socketPath: String
    /// Largest line accepted from the server.
    public var maxLineBytes = 256 << 20
    private var fd: Int32
    private var readBuffer: [UInt8] = []
    private var readOffset = 0
    private var notifications: [JSONValue] = []
    private var nextID: Int64 = 1

    /// Connects to the agent.
    /// - Throws: ``RPCClientError/noAgent(path:)`` when nothing listens there.
    public init(socketPath: String) throws {
        self.socketPath = socketPath
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw RPCClientError.connectFailed(path: socketPath, reason: UnixSocketPath.errnoText(errno))
        }
        do {
            let rc = try UnixSocketPath.withAddress(socketPath) { connect(fd, $0, $1) }
            if rc != 0 {
                let code = errno
                Glibc.close(fd)
                switch code {
                case ENOENT, ECONNREFUSED:
                    throw RPCClientError.noAgent(path: socketPath)
                case EACCES, EPERM:
                    throw RPCClientError.connectFailed(
                        path: socketPath, reason: "permission denied (the socket is mode 0600: run as its owner)")
                default:
                    throw RPCClientError.connectFailed(path: socketPath, reason: UnixSocketPath.errnoText(code))
                }
            }
        } catch is UnixSocketPath.PathTooLong {
            Glibc.close(fd)
            throw RPCClientError.connectFailed(
                path: socketPath, reason: "path longer than \(UnixSocketPath.maxPathBytes) bytes")
        }
        self.fd = fd
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Closes the connection. Further calls throw ``RPCClientError/closed``.
    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Whether the connection is open.
    public var isOpen: Bool { fd >= 0 }

    // MARK: calls

    /// Calls `method` and returns its result.
    /// - Parameter timeout: seconds to wait for the response; nil waits indefinitely.
    /// - Throws: ``RPCError`` for an error response, ``RPCClientError`` for transport problems.
    public func call(_ method: String, params: JSONValue? = nil, timeout: Double? = nil) throws -> JSONValue {
        let id = nextID
        nextID += 1
        var request: JSONValue = ["jsonrpc": "2.0", "method": .string(method), "id": .int(id)]
        if let params { request["params"] = params }
        try sendRaw(request.serialized())
        let deadline = timeout.map { Self.now() + $0 }
        while true {
            guard let message = try readMessage(deadline: deadline) else {
                throw RPCClientError.timeout(method: method, seconds: timeout ?? 0)
            }
            if case .object = message, message["id"] == .int(id) {
                return try Self.unwrap(message)
            }
            // Anything else (a response to an abandoned call, a stray batch) is dropped.
        }
    }

    /// Calls `method` with Encodable params and decodes the result.
    public func call<P: Encodable, R: Decodable>(
        _ method: String, params: P, as resultType: R.Type, timeout: Double? = nil
    ) throws -> R {
        let result = try call(method, params: try JSONValueEncoder().encode(params), timeout: timeout)
        do {
            return try JSONValueDecoder().decode(R.self, from: result)
        } catch {
            throw RPCClientError.invalidResponse("result of \(method) does not decode as \(R.self): \(error)")
        }
    }

    /// Sends a notification (no response is expected).
    public func notify(_ method: String, params: JSONValue? = nil) throws {
        var request: JSONValue = ["jsonrpc": "2.0", "method": .string(method)]
        if let params { request["params"] = params }
        try sendRaw(request.serialized())
    }

    /// Sends several calls as one batch; results come back in the order of `calls`.
    public func callBatch(
        _ calls: [(method: String, params: JSONValue?)], timeout: Double? = nil
    ) throws -> [Result<JSONValue, RPCError>] {
        guard !calls.isEmpty else { return [] }
        var ids: [Int64] = []
        var requests: [JSONValue] = []
        for call in calls {
            let id = nextID
            nextID += 1
            ids.append(id)
            var request: JSONValue = ["jsonrpc": "2.0", "method": .string(call.method), "id": .int(id)]
            if let params = call.params { request["params"] = params }
            requests.append(request)
        }
        try sendRaw(JSONValue.array(requests).serialized())
        let deadline = timeout.map { Self.now() + $0 }
        while true {
            guard let message = try readMessage(deadline: deadline) else {
                throw RPCClientError.timeout(method: "batch", seconds: timeout ?? 0)
            }
            guard case .array(let responses) = message else {
                if message["id"] == .null, let error = message["error"] {
                    // The whole batch was refused (e.g. too large).
                    throw Self.decodeError(error)
                }
                continue
            }
            var byID: [Int64: JSONValue] = [:]
            for response in responses {
                if let id = response["id"]?.intValue { byID[id] = response }
            }
            guard ids.allSatisfy({ byID[$0] != nil }) else { continue }
            return ids.map { id in
                do {
                    return .success(try Self.unwrap(byID[id]!))
                } catch let error as RPCError {
                    return .failure(error)
                } catch {
                    return .failure(.internalError("\(error)"))
                }
            }
        }
    }

    /// The next server notification (e.g. `agent.event`), waiting up to `timeout` seconds
    /// (nil: indefinitely). Returns nil on timeout.
    public func nextNotification(timeout: Double?) throws -> JSONValue? {
        if !notifications.isEmpty { return notifications.removeFirst() }
        let deadline = timeout.map { Self.now() + $0 }
        while true {
            guard let message = try readMessage(deadline: deadline, queueNotifications: false) else { return nil }
            if Self.isNotification(message) { return message }
        }
    }

    // MARK: raw I/O (tests)

    /// Writes `line` followed by "\n".
    public func sendRaw(_ line: [UInt8]) throws {
        var bytes = line
        bytes.append(UInt8(ascii: "\n"))
        try writeAll(bytes)
    }

    /// Writes bytes exactly as given (no newline added).
    public func sendBytes(_ bytes: [UInt8]) throws {
        try writeAll(bytes)
    }

    /// Reads one line (without "\n"); nil on timeout.
    /// - Throws: ``RPCClientError/connectionClosed`` at end of stream.
    public func readLine(timeout: Double?) throws -> [UInt8]? {
        try readLine(deadline: timeout.map { Self.now() + $0 })
    }

    // MARK: internals

    private static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }

    private static func isNotification(_ message: JSONValue) -> Bool {
        if case .object(let members) = message { return members["id"] == nil && members["method"] != nil }
        return false
    }

    private static func decodeError(_ error: JSONValue) -> RPCError {
        guard let code = error["code"]?.intValue, let message = error["message"]?.stringValue else {
            return RPCError(code: -32603, message: "Internal error", data: ["reason": "malformed error object"])
        }
        return RPCError(code: Int(code), message: message, data: error["data"])
    }

    private static func unwrap(_ response: JSONValue) throws -> JSONValue {
        if let error = response["error"] { throw decodeError(error) }
        guard let result = response["result"] else {
            throw RPCClientError.invalidResponse("a response has neither result nor error")
        }
        return result
    }

    /// Reads the next message that is not a notification (notifications are queued),
    /// or — with `queueNotifications: false` — the next message of any kind.
    private func readMessage(deadline: Double?, queueNotifications: Bool = true) throws -> JSONValue? {
        while true {
            guard let line = try readLine(deadline: deadline) else { return nil }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let message: JSONValue
            do {
                message = try JSONValue(parsing: line)
            } catch {
                throw RPCClientError.invalidResponse("\(error)")
            }
            if queueNotifications && Self.isNotification(message) {
                notifications.append(message)
                continue
            }
            return message
        }
    }

    private func readLine(deadline: Double?) throws -> [UInt8]? {
        var searchFrom = readOffset
        while true {
            if let newline = readBuffer[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(readBuffer[readOffset..<newline])
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                readOffset = newline + 1
                if readOffset > 65536 && readOffset * 2 > readBuffer.count {
                    readBuffer.removeFirst(readOffset)
                    readOffset = 0
                }
                return line
            }
            searchFrom = readBuffer.count
            if readBuffer.count - readOffset > maxLineBytes {
                close()
                throw RPCClientError.invalidResponse("a line from the agent exceeds \(maxLineBytes) bytes")
            }
            guard fd >= 0 else { throw RPCClientError.closed }
            guard try waitReadable(deadline: deadline) else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                readBuffer.append(contentsOf: chunk[0..<n])
            } else if n == 0 {
                close()
                throw RPCClientError.connectionClosed
            } else if errno != EINTR && errno != EAGAIN {
                let reason = UnixSocketPath.errnoText(errno)
                close()
                if errno == ECONNRESET { throw RPCClientError.connectionClosed }
                throw RPCClientError.io(operation: "read", reason: reason)
            }
        }
    }

    /// Waits until the socket is readable; false on timeout.
    private func waitReadable(deadline: Double?) throws -> Bool {
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            var timeoutMillis: Int32 = -1
            if let deadline {
                let remaining = deadline - Self.now()
                if remaining <= 0 { return false }
                timeoutMillis = Int32(min(remaining * 1000 + 1, Double(Int32.max)))
            }
            let rc = poll(&pfd, 1, timeoutMillis)
            if rc > 0 { return true }
            if rc == 0 {
                if deadline == nil { continue }
                return false
            }
            if errno == EINTR { continue }
            throw RPCClientError.io(operation: "poll", reason: UnixSocketPath.errnoText(errno))
        }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw RPCClientError.closed }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                let code = errno
                close()
                if code == EPIPE || code == ECONNRESET { throw RPCClientError.connectionClosed }
                throw RPCClientError.io(operation: "write", reason: UnixSocketPath.errnoText(code))
            }
        }
    }
}
