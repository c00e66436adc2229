// RPCServer — the JSON-RPC 2.0 server: NDJSON on a Unix socket, optionally HTTP/1.1 on
// TCP with a bearer token, and event push to Unix-socket subscribers.
//
// What: owns a SwiftNIO event loop group (`threads` threads), the listening channels and
// the table of open connections. Registers `agent.subscribe` / `agent.unsubscribe` on
// the registry it is given (so one registry serves one server).
// Lifecycle: init → start() (binds; throws a clear RPCServerError) → … → shutdown()
// (stop accepting, let connections finish what they already received — bounded by
// `shutdownGracePeriod` — then close everything and stop the threads). Not restartable.
// Invariants:
//  - the socket file is mode 0600 before the socket listens (see UnixSocketPath.swift);
//  - a live server's socket is never removed; a stale one is; on shutdown the file is
//    removed only if it is still the one this server created;
//  - `publish` assigns `seq` and enqueues to every subscriber under one lock, so every
//    subscriber sees events in `seq` order;
//  - logs carry method names, error codes, connection ids — never params, tokens or bodies.
// Threading: Sendable; all shared state is behind one lock (`state`), never held across
// an await or while calling into NIO beyond enqueueing.

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Severity of a server log line.
public enum RPCLogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case debug, info, notice, warning, error

    public static func < (a: RPCLogLevel, b: RPCLogLevel) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .notice: return "notice"
        case .warning: return "warning"
        case .error: return "error"
        }
    }
}

/// Why the server could not start.
public enum RPCServerError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Another process is accepting connections on this socket path.
    case socketInUse(path: String)
    /// The Unix socket could not be created at `path`.
    case cannotBind(path: String, reason: String)
    /// The TCP listener could not be opened.
    case cannotListen(address: String, reason: String)
    /// HTTP was configured without a bearer token.
    case missingBearerToken
    /// The configuration is unusable.
    case invalidConfiguration(String)
    /// `start()` was called twice, or after `shutdown()`.
    case alreadyStarted

    public var description: String {
        switch self {
        case .socketInUse(let path):
            return "another server is already listening on \(path) (is warren-agent already running?)"
        case .cannotBind(let path, let reason):
            return "cannot create the Unix socket \(path): \(reason)"
        case .cannotListen(let address, let reason):
            return "cannot listen on \(address): \(reason)"
        case .missingBearerToken:
            return "the HTTP listener needs a bearer token (set bearerToken)"
        case .invalidConfiguration(let reason):
            return "invalid RPC server configuration: \(reason)"
        case .alreadyStarted:
            return "the RPC server was already started (a server cannot be restarted)"
        }
    }
}

/// The JSON-RPC server.
public final class RPCServer: Sendable {
    /// Server settings.
    public struct Configuration: Sendable, CustomStringConvertible {
        /// Path of the Unix socket (created with mode 0600).
        public var unixSocketPath: String
        /// Optional TCP listener for HTTP; port 0 picks a free port (see ``RPCServer/httpPort``).
        public var http: (host: String, port: Int)?
        /// Required when `http` is set. Never logged.
        public var bearerToken: String?
        /// Largest accepted request (a line on the Unix socket, a body over HTTP).
        public var maxRequestBytes: Int
        /// Produces the Prometheus text served at `GET /metrics`.
        public var metrics: (@Sendable () async -> String)?
        /// Event loop threads.
        public var threads: Int
        /// Events queued for one subscriber before it is disconnected.
        public var maxQueuedEvents: Int
        /// How long `shutdown()` lets connections finish before closing them (seconds).
        public var shutdownGracePeriod: Double

        /// Settings with Warren's defaults; HTTP is off unless `http` is given.
        public init(
            unixSocketPath: String,
            http: (host: String, port: Int)? = nil,
            bearerToken: String? = nil,
            maxRequestBytes: Int = 1 << 20,
            metrics: (@Sendable () async -> String)? = nil,
            threads: Int = 1,
            maxQueuedEvents: Int = 1000,
            shutdownGracePeriod: Double = 5
        ) {
            self.unixSocketPath = unixSocketPath
            self.http = http
            self.bearerToken = bearerToken
            self.maxRequestBytes = maxRequestBytes
            self.metrics = metrics
            self.threads = threads
            self.maxQueuedEvents = maxQueuedEvents
            self.shutdownGracePeriod = shutdownGracePeriod
        }

        /// A description with the bearer token redacted.
        public var description: String {
            let httpText = http.map { "\($0.host):\($0.port)" } ?? "off"
            return "RPCServer.Configuration(unixSocketPath: \(unixSocketPath), http: \(httpText), "
                + "bearerToken: \(bearerToken == nil ? "none" : "<redacted>"), maxRequestBytes: \(maxRequestBytes), "
                + "threads: \(threads))"
        }
    }

    private enum Phase {
        case idle, starting, running, stopping, stopped
    }

    private struct State {
        var phase = Phase.idle
        var group: MultiThreadedEventLoopGroup?
        var unixChannel: Channel?
        var httpChannel: Channel?
        var httpPort: Int?
        var socketIdentity: (UInt64, UInt64)?
        var connections: [UInt64: UnixConnection] = [:]
        var httpConnections: [UInt64: Channel] = [:]
        var nextConnectionID: UInt64 = 0
        var seq: Int64 = 0
        var inFlight = 0
    }

    /// The methods this server dispatches to.
    public let registry: MethodRegistry
    /// The settings given at init.
    public let configuration: Configuration
    private let logSink: @Sendable (RPCLogLevel, String) -> Void
    private let state = LockedState(State())

    /// Creates a server and registers `agent.subscribe` / `agent.unsubscribe` on `registry`
    /// (so a registry can serve only one server: a second one would register them twice,
    /// which is a precondition failure).
    /// - Parameter log: receives log lines, from any thread; never called with params,
    ///   tokens or request bodies. Successful calls are logged at `.debug`, error answers at
    ///   `.info`, internal errors at `.error`.
    public init(
        registry: MethodRegistry,
        configuration: Configuration,
        log: @escaping @Sendable (RPCLogLevel, String) -> Void
    ) {
        self.registry = registry
        self.configuration = configuration
        self.logSink = log
        Self.registerSubscriptionMethods(on: registry)
    }

    func log(_ level: RPCLogLevel, _ message: String) {
        logSink(level, message)
    }

    /// The bound TCP port once started with HTTP enabled.
    public var httpPort: Int? {
        state.withLock { $0.httpPort }
    }

    /// Number of open Unix-socket connections (for tests and status).
    public var unixConnectionCount: Int {
        state.withLock { $0.connections.count }
    }

    // MARK: subscriptions

    struct TopicsParams: Codable, Sendable {
        var topics: [String]
    }

    struct TopicsResult: Codable, Sendable {
        var topics: [String]
    }

    private static func registerSubscriptionMethods(on registry: MethodRegistry) {
        registry.register(
            "agent.subscribe",
            summary: "Subscribes this Unix-socket connection to event topics (\"vpn.dynamic\" also receives "
                + "\"vpn.dynamic.*\"; \"*\" receives everything). Events arrive as agent.event notifications.",
            params: TopicsParams.self, result: TopicsResult.self
        ) { params, context in
            guard let subscriptions = context.subscriptions else {
                throw RPCError.failedPrecondition(reason: "subscriptions need the Unix socket")
            }
            return TopicsResult(topics: try subscriptions.subscribe(params.topics))
        }
        registry.register(
            "agent.unsubscribe",
            summary: "Removes event topics from this connection's subscriptions; returns the remaining ones.",
            params: TopicsParams.self, result: TopicsResult.self
        ) { params, context in
            guard let subscriptions = context.subscriptions else {
                throw RPCError.failedPrecondition(reason: "subscriptions need the Unix socket")
            }
            return TopicsResult(topics: subscriptions.unsubscribe(params.topics))
        }
    }

    /// Sends `{"jsonrpc":"2.0","method":"agent.event","params":{"topic","seq","data"}}` to
    /// every Unix-socket connection subscribed to `topic`. `seq` grows by one per call.
    /// Never blocks: a subscriber whose queue is full is disconnected instead.
    public func publish(topic: String, data: JSONValue) {
        let limit = configuration.maxQueuedEvents
        state.withLock { state in
            state.seq += 1
            let subscribers = state.connections.values.filter { $0.subscriptions.wants(topic) }
            guard !subscribers.isEmpty else { return }
            let notification: JSONValue = [
                "jsonrpc": "2.0", "method": "agent.event",
                "params": ["topic": .string(topic), "seq": .int(state.seq), "data": data],
            ]
            var line = notification.serialized()
            line.append(UInt8(ascii: "\n"))
            for subscriber in subscribers {
                subscriber.deliverEvent(line, limit: limit)
            }
        }
    }

    // MARK: lifecycle

    /// Binds the Unix socket (and the TCP listener if configured) and starts serving.
    /// - Throws: ``RPCServerError`` naming what could not be done.
    public func start() async throws {
        let config = configuration
        try state.withLock { state in
            guard state.phase == .idle else { throw RPCServerError.alreadyStarted }
            state.phase = .starting
        }
        do {
            try validate(config)
        } catch {
            state.withLock { $0.phase = .idle }
            throw error
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        let unixChannel: Channel
        do {
            let (fd, identity) = try UnixSocketPath.bindPrivateSocket(config.unixSocketPath)
            state.withLock { $0.socketIdentity = identity }
            do {
                unixChannel = try await makeUnixBootstrap(group: group).withBoundSocket(fd).get()
            } catch {
                unlink(config.unixSocketPath)
                throw RPCServerError.cannotBind(path: config.unixSocketPath, reason: "\(error)")
            }
        } catch {
            try? await group.shutdownGracefully()
            state.withLock { $0.phase = .idle }
            throw error
        }

        var httpChannel: Channel?
        if let http = config.http {
            do {
                httpChannel = try await makeHTTPBootstrap(group: group, token: config.bearerToken ?? "")
                    .bind(host: http.host, port: http.port).get()
            } catch {
                try? await unixChannel.close()
                removeSocketFileIfOurs()
                try? await group.shutdownGracefully()
                state.withLock { $0.phase = .idle }
                throw RPCServerError.cannotListen(address: "\(http.host):\(http.port)", reason: "\(error)")
            }
        }
        let port = httpChannel?.localAddress?.port
        state.withLock { state in
            state.group = group
            state.unixChannel = unixChannel
            state.httpChannel = httpChannel
            state.httpPort = port
            state.phase = .running
        }
        log(
            .info,
            "JSON-RPC listening on \(config.unixSocketPath)"
                + (port.map { " and http://\(config.http!.host):\($0)/rpc" } ?? ""))
    }

    private func validate(_ config: Configuration) throws {
        if config.http != nil && (config.bearerToken ?? "").isEmpty {
            throw RPCServerError.missingBearerToken
        }
        guard config.maxRequestBytes > 0 else {
            throw RPCServerError.invalidConfiguration("maxRequestBytes must be positive")
        }
        guard config.threads >= 1 else {
            throw RPCServerError.invalidConfiguration("threads must be at least 1")
        }
        guard config.maxQueuedEvents >= 1 else {
            throw RPCServerError.invalidConfiguration("maxQueuedEvents must be at least 1")
        }
        if let http = config.http, !(0...65535).contains(http.port) {
            throw RPCServerError.invalidConfiguration("HTTP port \(http.port) is out of range")
        }
    }

    private func makeUnixBootstrap(group: EventLoopGroup) -> ServerBootstrap {
        let maxBytes = configuration.maxRequestBytes
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = UnixConnection(id: self.nextConnectionID(), channel: channel)
                    let handler = UnixConnectionHandler(server: self, connection: connection)
                    connection.attach(handler)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LineFrameDecoder(maxLineBytes: maxBytes)))
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
    }

    private func makeHTTPBootstrap(group: EventLoopGroup, token: String) -> ServerBootstrap {
        let maxBytes = configuration.maxRequestBytes
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                let id = self.nextConnectionID()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: .seconds(120)))
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPRPCHandler(server: self, connectionID: id, bearerToken: token, maxRequestBytes: maxBytes))
                    self.httpConnectionOpened(id: id, channel: channel)
                    channel.closeFuture.whenComplete { _ in self.httpConnectionClosed(id: id) }
                }
            }
    }

    private func nextConnectionID() -> UInt64 {
        state.withLock { state in
            state.nextConnectionID += 1
            return state.nextConnectionID
        }
    }

    /// Stops accepting, lets open connections finish the requests they already sent (up
    /// to `shutdownGracePeriod`), closes everything, removes the socket file and stops the
    /// event loop threads. Safe to call more than once.
    public func shutdown() async {
        let snapshot: (Channel?, Channel?, [UnixConnection], [Channel], MultiThreadedEventLoopGroup?)? =
            state.withLock { state in
                guard state.phase == .running else {
                    if state.phase == .idle { state.phase = .stopped }
                    return nil
                }
                state.phase = .stopping
                return (
                    state.unixChannel, state.httpChannel, Array(state.connections.values),
                    Array(state.httpConnections.values), state.group
                )
            }
        guard let (unixChannel, httpChannel, connections, httpConnections, group) = snapshot else { return }

        try? await unixChannel?.close()
        try? await httpChannel?.close()
        removeSocketFileIfOurs()

        for connection in connections { connection.beginDraining() }
        for channel in httpConnections {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }

        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, configuration.shutdownGracePeriod) * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let busy = state.withLock { !$0.connections.isEmpty || !$0.httpConnections.isEmpty || $0.inFlight > 0 }
            if !busy { break }
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
        let leftovers = state.withLock { Array($0.connections.values.map(\.channel)) + Array($0.httpConnections.values) }
        if !leftovers.isEmpty {
            log(.warning, "closing \(leftovers.count) connection(s) still busy after the shutdown grace period")
        }
        for channel in leftovers { try? await channel.close() }
        // Requests still running after the grace period finish without a connection to
        // answer on; give them a moment so their completions don't hit stopped loops.
        let secondDeadline = DispatchTime.now().uptimeNanoseconds + 1_000_000_000
        while state.withLock({ $0.inFlight > 0 }) && DispatchTime.now().uptimeNanoseconds < secondDeadline {
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
        try? await group?.shutdownGracefully()
        state.withLock { state in
            state.phase = .stopped
            state.group = nil
            state.unixChannel = nil
            state.httpChannel = nil
        }
        log(.info, "JSON-RPC server stopped")
    }

    private func removeSocketFileIfOurs() {
        let path = configuration.unixSocketPath
        let ours = state.withLock { $0.socketIdentity }
        if let ours, let current = UnixSocketPath.identity(path), current == ours {
            unlink(path)
        }
    }

    // MARK: connection bookkeeping (called from handlers)

    func connectionOpened(_ connection: UnixConnection) {
        state.withLock { $0.connections[connection.id] = connection }
        log(.debug, "unix#\(connection.id): connected")
    }

    func connectionClosed(_ connection: UnixConnection) {
        state.withLock { _ = $0.connections.removeValue(forKey: connection.id) }
        log(.debug, "unix#\(connection.id): closed")
    }

    private func httpConnectionOpened(id: UInt64, channel: Channel) {
        state.withLock { $0.httpConnections[id] = channel }
    }

    private func httpConnectionClosed(id: UInt64) {
        state.withLock { _ = $0.httpConnections.removeValue(forKey: id) }
    }

    func requestStarted() {
        state.withLock { $0.inFlight += 1 }
    }

    func requestFinished() {
        state.withLock { $0.inFlight -= 1 }
    }

    /// A logger for call records: method names and codes only.
    func callLogger(prefix: String) -> @Sendable (RPCCallRecord) -> Void {
        let sink = logSink
        return { record in
            let method = record.method ?? "-"
            let kind = record.isNotification ? "notification" : "call"
            let millis = String(format: "%.2f", record.duration * 1000)
            switch record.errorCode {
            case nil:
                sink(.debug, "\(prefix): \(kind) \(method) ok in \(millis) ms")
            case .some(-32603):
                sink(
                    .error,
                    "\(prefix): \(kind) \(method) failed: internal error"
                        + (record.internalFailure.map { " (\($0.prefix(300)))" } ?? ""))
            case let code?:
                sink(.info, "\(prefix): \(kind) \(method) answered error \(code)")
            }
        }
    }
}
