// ViciClient.swift — a vici client over charon's Unix socket.
//
// What: connects to `unix://…/charon.vici`, sends CMD_REQUEST / EVENT_REGISTER /
// EVENT_UNREGISTER packets and routes what charon sends back:
//   CMD_RESPONSE, CMD_UNKNOWN, EVENT_CONFIRM, EVENT_UNKNOWN → the one waiting exchange;
//   EVENT → the active streamed command's collector (if it streams that event) and every
//           subscriber registered for that event name.
//
// Invariants:
// - The protocol has no sequence numbers, so at most ONE exchange is in flight: every
//   public operation runs under `gate` (FIFO async mutex). A streamed command holds the
//   gate for register → command → (events) → response → unregister.
// - Server-side registrations are reference counted locally: an event is registered on
//   charon once, while any subscriber or collector wants it; registrations nobody wants
//   any more are removed at the start of the next gated operation (stream termination
//   handlers cannot await).
// - Once the connection fails (EOF, I/O error, protocol violation, command timeout,
//   close()), `failure` is set exactly once, the waiting exchange gets that error, every
//   subscriber stream finishes, and every later call throws it. A stream that ends means
//   "disconnected": read `disconnectError` for why.
// - A command that gets no answer within its timeout closes the connection: after that
//   the request/response pairing is unknown, so reusing the socket would be unsafe.
// - Only the reader thread closes the file descriptor, and only under `writeLock`, so a
//   concurrent writer never writes to a reused descriptor. Writes use MSG_NOSIGNAL.
//
// Threading: one dedicated reader thread per connection (blocking poll/read, off the
// Swift cooperative pool; it sleeps without timeout while no command is pending and is
// woken through a pipe when one starts); callers use async methods from any task. Shared state is
// guarded by `lock` (never held while resuming continuations or yielding to streams).
// Cancelling a caller's task does not abort an exchange in flight; the command timeout
// bounds every wait.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An event raised by charon: its name and message.
public struct ViciEvent: Sendable, Hashable {
    /// The event name, e.g. `ike-updown`.
    public var name: String
    /// The event message.
    public var message: ViciMessage

    /// Creates an event value.
    public init(name: String, message: ViciMessage) {
        self.name = name
        self.message = message
    }
}

/// A client for strongSwan's vici protocol on a Unix socket.
///
/// ```swift
/// let vici = try await ViciClient.connect(socketPath: dir + "/charon.vici", waitingUpTo: .seconds(5))
/// let events = try await vici.subscribe(["ike-updown", "child-updown"])
/// try await vici.loadConnection(config)
/// ```
///
/// Commands are serialized (one in flight, as the protocol requires). Call `close()` when
/// done; releasing the last reference also closes the connection.
public final class ViciClient: @unchecked Sendable {
    /// The socket path this client is connected to.
    public let socketPath: String
    /// How long a command may wait for charon's answer before the connection is closed.
    public let commandTimeout: Duration

    let connection: ViciConnection

    /// Connects to charon's vici socket at `socketPath` (a filesystem path, not a URI).
    ///
    /// - Throws: `ViciError.connectFailed` naming the path and the reason (e.g. no such
    ///   file, connection refused) when charon is not listening there.
    public init(socketPath: String, commandTimeout: Duration = .seconds(30)) throws {
        self.socketPath = socketPath
        self.commandTimeout = commandTimeout
        let fd = try ViciConnection.connectUnix(path: socketPath)
        self.connection = try ViciConnection(fd: fd, socketPath: socketPath)
        connection.startReader()
    }

    /// Connects, retrying every 20 ms until charon listens or `waitingUpTo` has passed
    /// (use right after starting charon).
    ///
    /// - Throws: the last `ViciError.connectFailed` if charon never listened in time.
    public static func connect(socketPath: String, waitingUpTo: Duration,
                               commandTimeout: Duration = .seconds(30)) async throws -> ViciClient {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: waitingUpTo)
        while true {
            do {
                return try ViciClient(socketPath: socketPath, commandTimeout: commandTimeout)
            } catch let error as ViciError {
                if case .connectFailed = error, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                    continue
                }
                throw error
            }
        }
    }

    deinit {
        connection.terminate(.disconnected(socketPath: socketPath, reason: "client released"))
    }

    /// Closes the connection. Pending and later calls throw `ViciError.disconnected`;
    /// subscriber streams finish. Idempotent.
    public func close() {
        connection.terminate(.disconnected(socketPath: socketPath, reason: "closed by client"))
    }

    /// False once the connection has failed or was closed.
    public var isConnected: Bool { connection.currentFailure == nil }

    /// Why the connection ended (nil while connected).
    public var disconnectError: ViciError? { connection.currentFailure }

    /// Number of events dropped because their message could not be decoded.
    public var malformedEventCount: Int { connection.malformedEvents }

    // MARK: raw commands

    /// Sends `command` with `message` and returns charon's response.
    ///
    /// - Throws: `ViciError.commandFailed(command, errmsg)` if the response says
    ///   `success = no`; `.unknownCommand` for CMD_UNKNOWN; `.disconnected` / `.timeout`.
    public func request(_ command: String, _ message: ViciMessage = [:]) async throws -> ViciMessage {
        try await request(command, message, timeout: commandTimeout)
    }

    func request(_ command: String, _ message: ViciMessage, timeout: Duration) async throws -> ViciMessage {
        let reply: ViciConnection.Reply = try await connection.gated {
            try await connection.flushUnwantedRegistrations(timeout: commandTimeout)
            return try await connection.exchange(ViciPacket(type: .cmdRequest, name: command, message: message),
                                                 label: command, timeout: timeout)
        }
        return try interpret(reply, command: command)
    }

    /// Sends a streaming command: registers `event`, sends `command`, collects the events
    /// charon streams until its response, unregisters. Returns the response and the
    /// collected event messages in order.
    ///
    /// - Throws: as `request`, plus `.unknownEvent` and `.codec` if a streamed event
    ///   could not be decoded (nothing is silently lost).
    public func streamedRequest(_ command: String, _ message: ViciMessage = [:], event: String)
        async throws -> (response: ViciMessage, events: [ViciMessage])
    {
        try await streamedRequest(command, message, event: event, timeout: commandTimeout)
    }

    func streamedRequest(_ command: String, _ message: ViciMessage, event: String, timeout: Duration)
        async throws -> (response: ViciMessage, events: [ViciMessage])
    {
        let (reply, collected): (ViciConnection.Reply, ViciConnection.Collector) = try await connection.gated {
            try await connection.flushUnwantedRegistrations(timeout: commandTimeout)
            connection.beginCollecting(event)
            do {
                try await connection.ensureRegistered(event, timeout: commandTimeout)
                let reply = try await connection.exchange(
                    ViciPacket(type: .cmdRequest, name: command, message: message), label: command, timeout: timeout)
                let collected = connection.endCollecting()
                try await connection.flushUnwantedRegistrations(timeout: commandTimeout)
                return (reply, collected)
            } catch {
                _ = connection.endCollecting()
                throw error
            }
        }
        let response = try interpret(reply, command: command, log: collected.messages)
        if let err = collected.decodeError { throw ViciError.codec(err) }
        return (response, collected.messages)
    }

    /// Subscribes to charon events by name (e.g. `ike-updown`, `child-updown`,
    /// `ike-rekey`, `child-rekey`, `log`). The stream yields each matching event in
    /// arrival order and finishes when the connection ends; stop iterating (or drop the
    /// stream) to unsubscribe. The buffer is unbounded: consume it.
    ///
    /// - Throws: `ViciError.unknownEvent(name)` if charon has no such event source.
    public func subscribe(_ events: [String]) async throws -> AsyncStream<ViciEvent> {
        let (stream, continuation) = AsyncStream<ViciEvent>.makeStream(bufferingPolicy: .unbounded)
        let id = try connection.addSubscriber(Set(events), continuation)
        do {
            try await connection.gated {
                try await connection.flushUnwantedRegistrations(timeout: commandTimeout)
                for event in events {
                    try await connection.ensureRegistered(event, timeout: commandTimeout)
                }
            }
        } catch {
            connection.removeSubscriber(id)
            continuation.finish()
            throw error
        }
        return stream
    }

    func interpret(_ reply: ViciConnection.Reply, command: String, log: [ViciMessage] = []) throws -> ViciMessage {
        switch reply {
        case .response(let message):
            if message.bool("success") == false {
                var text = message.string("errmsg") ?? "charon gave no error message"
                let lines = log.compactMap { $0.string("msg") }.suffix(3)
                if !lines.isEmpty { text += " (charon log: " + lines.joined(separator: "; ") + ")" }
                throw ViciError.commandFailed(command: command, message: text)
            }
            return message
        case .cmdUnknown:
            throw ViciError.unknownCommand(command)
        case .eventConfirm, .eventUnknown:
            let error = ViciError.protocolViolation("event (de)registration reply to command '\(command)'")
            connection.terminate(error)
            throw error
        }
    }
}

// MARK: - connection core

/// The socket, reader thread and routing state behind a `ViciClient`.
final class ViciConnection: @unchecked Sendable {
    enum Reply: Sendable {
        case response(ViciMessage)
        case cmdUnknown
        case eventConfirm
        case eventUnknown
    }

    struct Collector {
        var event: String
        var messages: [ViciMessage] = []
        var decodeError: ViciCodecError? = nil
    }

    struct Pending {
        var label: String
        var continuation: CheckedContinuation<Reply, Error>
        var deadline: ContinuousClock.Instant
        var timeout: Duration
    }

    struct Subscriber {
        var events: Set<String>
        var continuation: AsyncStream<ViciEvent>.Continuation
    }

    let fd: Int32
    let socketPath: String
    let gate = AsyncGate()
    /// A pipe that wakes the reader when an exchange starts (so it can arm the deadline);
    /// the reader otherwise sleeps in poll() without a timeout while nothing is pending.
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private let lock = NSLock()
    private let writeLock = NSLock()
    // Guarded by `lock`:
    private var failure: ViciError?
    private var pending: Pending?
    private var collector: Collector?
    private var subscribers: [UInt64: Subscriber] = [:]
    private var nextSubscriberID: UInt64 = 1
    private var registeredOnServer: Set<String> = []
    private var malformedEventCounter = 0
    // Guarded by `writeLock`:
    private var fdClosed = false

    init(fd: Int32, socketPath: String) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ViciError.connectFailed(socketPath: socketPath, reason: "pipe(): \(reason)")
        }
        for f in fds {
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
        }
        self.fd = fd
        self.socketPath = socketPath
        self.wakeRead = fds[0]
        self.wakeWrite = fds[1]
    }

    private func wakeReader() {
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
    }

    static func connectUnix(path: String) throws -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw ViciError.connectFailed(socketPath: path,
                                          reason: "path is empty or longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else {
            throw ViciError.connectFailed(socketPath: path, reason: "socket(): " + String(cString: strerror(errno)))
        }
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                connect(fd, sa, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ViciError.connectFailed(socketPath: path, reason: reason)
        }
        return fd
    }

    func startReader() {
        let thread = Thread { [self] in self.readLoop() }
        thread.name = "vici-reader"
        thread.start()
    }

    var currentFailure: ViciError? {
        lock.lock(); defer { lock.unlock() }
        return failure
    }

    var malformedEvents: Int {
        lock.lock(); defer { lock.unlock() }
        return malformedEventCounter
    }

    /// Runs `body` holding the exchange gate.
    func gated<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await gate.acquire()
        defer { gate.release() }
        if let failure = currentFailure { throw failure }
        return try await body()
    }

    /// Sends `packet` and waits for the reply (gate must be held).
    func exchange(_ packet: ViciPacket, label: String, timeout: Duration) async throws -> Reply {
        let frame: [UInt8]
        do { frame = try packet.encodeFrame() } catch { throw ViciError.codec(error) }
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Reply, Error>) in
            lock.lock()
            if let failure {
                lock.unlock()
                cont.resume(throwing: failure)
                return
            }
            precondition(pending == nil, "vici exchange started while another is in flight")
            pending = Pending(label: label, continuation: cont,
                              deadline: ContinuousClock.now.advanced(by: timeout), timeout: timeout)
            lock.unlock()
            wakeReader()
            if let writeError = writeAll(frame) {
                terminate(.disconnected(socketPath: socketPath, reason: "write failed: \(writeError)"))
            }
        }
    }

    /// Registers `event` on charon unless already registered (gate must be held).
    func ensureRegistered(_ event: String, timeout: Duration) async throws {
        let already: Bool = { lock.lock(); defer { lock.unlock() }; return registeredOnServer.contains(event) }()
        if already { return }
        let reply = try await exchange(ViciPacket(type: .eventRegister, name: event), label: "register \(event)", timeout: timeout)
        switch reply {
        case .eventConfirm:
            lock.withLock { _ = registeredOnServer.insert(event) }
        case .eventUnknown:
            throw ViciError.unknownEvent(event)
        default:
            let error = ViciError.protocolViolation("unexpected reply to registration of event '\(event)'")
            terminate(error)
            throw error
        }
    }

    /// Unregisters events that no subscriber or collector wants any more (gate held).
    func flushUnwantedRegistrations(timeout: Duration) async throws {
        let unwanted: [String] = {
            lock.lock(); defer { lock.unlock() }
            var wanted = Set<String>()
            for s in subscribers.values { wanted.formUnion(s.events) }
            if let c = collector { wanted.insert(c.event) }
            return registeredOnServer.subtracting(wanted).sorted()
        }()
        for event in unwanted {
            let reply = try await exchange(ViciPacket(type: .eventUnregister, name: event),
                                           label: "unregister \(event)", timeout: timeout)
            guard case .eventConfirm = reply else {
                let error = ViciError.protocolViolation("unexpected reply to unregistration of event '\(event)'")
                terminate(error)
                throw error
            }
            lock.withLock { _ = registeredOnServer.remove(event) }
        }
    }

    func beginCollecting(_ event: String) {
        lock.lock(); collector = Collector(event: event); lock.unlock()
    }

    func endCollecting() -> Collector {
        lock.lock(); defer { lock.unlock() }
        let c = collector ?? Collector(event: "")
        collector = nil
        return c
    }

    func addSubscriber(_ events: Set<String>, _ continuation: AsyncStream<ViciEvent>.Continuation) throws -> UInt64 {
        lock.lock()
        if let failure {
            lock.unlock()
            continuation.finish()
            throw failure
        }
        let id = nextSubscriberID
        nextSubscriberID += 1
        subscribers[id] = Subscriber(events: events, continuation: continuation)
        lock.unlock()
        continuation.onTermination = { [weak self] _ in self?.removeSubscriber(id) }
        return id
    }

    func removeSubscriber(_ id: UInt64) {
        lock.lock(); subscribers.removeValue(forKey: id); lock.unlock()
    }

    /// Fails the connection once: records `error`, fails the waiting exchange, finishes
    /// every subscriber stream and wakes the reader (which closes the descriptor).
    func terminate(_ error: ViciError) {
        lock.lock()
        if failure != nil {
            lock.unlock()
            return
        }
        failure = error
        let waiting = pending
        pending = nil
        let subs = Array(subscribers.values)
        subscribers.removeAll()
        lock.unlock()

        writeLock.lock()
        if !fdClosed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        writeLock.unlock()
        wakeReader()
        waiting?.continuation.resume(throwing: error)
        for s in subs { s.continuation.finish() }
    }

    private func writeAll(_ bytes: [UInt8]) -> String? {
        writeLock.lock(); defer { writeLock.unlock() }
        if fdClosed { return "socket closed" }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            offset += n
        }
        return nil
    }

    // MARK: reader thread

    private func readLoop() {
        var frames = ViciFrameReader()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        loop: while true {
            if currentFailure != nil { break }
            if let timedOut = expiredPending() {
                terminate(.timeout(command: timedOut.label, seconds: Self.seconds(timedOut.timeout)))
                break
            }
            var pfds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                        pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&pfds, 2, pollTimeoutMs())
            if ready < 0 {
                if errno == EINTR { continue }
                terminate(.disconnected(socketPath: socketPath, reason: "poll: " + String(cString: strerror(errno))))
                break
            }
            if pfds[1].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            if pfds[0].revents == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress!, raw.count) }
            if n == 0 {
                terminate(.disconnected(socketPath: socketPath, reason: "charon closed the connection"))
                break
            }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                terminate(.disconnected(socketPath: socketPath, reason: "read: " + String(cString: strerror(errno))))
                break
            }
            frames.append(buffer[0..<n])
            do {
                while let body = try frames.next() {
                    if let violation = dispatch(body) {
                        terminate(.protocolViolation(violation))
                        break loop
                    }
                }
            } catch {
                terminate(.protocolViolation("bad frame from charon: \(error)"))
                break
            }
        }
        writeLock.lock()
        fdClosed = true
        close(fd)
        writeLock.unlock()
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// -1 (no timeout) while no exchange is pending, else milliseconds to its deadline.
    private func pollTimeoutMs() -> Int32 {
        lock.lock(); defer { lock.unlock() }
        guard let p = pending else { return -1 }
        let left = ContinuousClock.now.duration(to: p.deadline)
        if left <= .zero { return 0 }
        let c = left.components
        let ms = c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000 + 1
        return Int32(clamping: ms)
    }

    private func expiredPending() -> Pending? {
        lock.lock(); defer { lock.unlock() }
        guard let p = pending, ContinuousClock.now >= p.deadline else { return nil }
        return p
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Routes one packet body; returns a description of a protocol violation, if any.
    private func dispatch(_ body: [UInt8]) -> String? {
        guard let typeByte = body.first, let type = ViciPacketType(rawValue: typeByte) else {
            return "unknown packet type \(body.first.map(String.init) ?? "none")"
        }
        switch type {
        case .cmdResponse:
            let reply: Result<Reply, Error>
            do {
                reply = .success(.response(try ViciPacket.decode(body).message))
            } catch {
                reply = .failure(ViciError.codec(error))
            }
            return resumePending(reply, what: "CMD_RESPONSE")
        case .cmdUnknown:
            return resumePending(.success(.cmdUnknown), what: "CMD_UNKNOWN")
        case .eventConfirm:
            return resumePending(.success(.eventConfirm), what: "EVENT_CONFIRM")
        case .eventUnknown:
            return resumePending(.success(.eventUnknown), what: "EVENT_UNKNOWN")
        case .event:
            deliverEvent(body)
            return nil
        case .cmdRequest, .eventRegister, .eventUnregister:
            return "charon sent a client-only packet type \(type)"
        }
    }

    private func resumePending(_ reply: Result<Reply, Error>, what: String) -> String? {
        lock.lock()
        guard let p = pending else {
            lock.unlock()
            return "\(what) without a request in flight"
        }
        pending = nil
        lock.unlock()
        p.continuation.resume(with: reply)
        return nil
    }

    private func deliverEvent(_ body: [UInt8]) {
        // Decode the name first so a bad message can still be attributed to its event.
        guard body.count >= 2, body.count >= 2 + Int(body[1]) else {
            lock.lock(); malformedEventCounter += 1; lock.unlock()
            return
        }
        let name = String(decoding: body[2..<(2 + Int(body[1]))], as: UTF8.self)
        let decoded: Result<ViciMessage, ViciCodecError>
        do { decoded = .success(try ViciPacket.decode(body).message) } catch { decoded = .failure(error) }

        lock.lock()
        var targets: [AsyncStream<ViciEvent>.Continuation] = []
        switch decoded {
        case .success(let message):
            if collector?.event == name { collector!.messages.append(message) }
            for s in subscribers.values where s.events.contains(name) { targets.append(s.continuation) }
        case .failure(let error):
            if collector?.event == name, collector!.decodeError == nil { collector!.decodeError = error }
            malformedEventCounter += 1
        }
        lock.unlock()
        if case .success(let message) = decoded {
            let event = ViciEvent(name: name, message: message)
            for t in targets { t.yield(event) }
        }
    }
}

/// A FIFO async mutex: `acquire()` suspends until the previous holder calls `release()`.
final class AsyncGate: @unchecked Sendable {
    private let lock = NSLock()
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            lock.lock()
            if !held {
                held = true
                lock.unlock()
                cont.resume()
            } else {
                waiters.append(cont)
                lock.unlock()
            }
        }
    }

    func release() {
        lock.lock()
        if waiters.isEmpty {
            held = false
            lock.unlock()
        } else {
            let next = waiters.removeFirst()
            lock.unlock()
            next.resume()
        }
    }
}
