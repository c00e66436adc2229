// UnixConnectionHandler — one NDJSON JSON-RPC connection on the Unix socket.
//
// What: receives lines from LineFrameDecoder, answers them strictly in order (one request
// runs at a time per connection; a pipelining client sees its requests applied in the
// order sent), and writes pushed event notifications for the connection's subscriptions.
// Invariants:
//  - at most one request of this connection is being handled; the rest wait in `queue`;
//  - reading from the socket pauses while `queue` holds `maxQueuedLines` lines or the
//    channel is not writable (a client that does not read its responses stops being
//    read: memory stays bounded), and stops for good after an oversized line;
//  - an oversized line is answered once, in order, with -32600 and id null, then the
//    connection is closed;
//  - pushed events not yet written to the socket are counted; beyond `maxQueuedEvents`
//    the connection is closed (a slow subscriber never blocks others or grows memory);
//  - after the peer closes its sending side (EOF), the requests already received are
//    still answered, then the connection closes (a subscriber must keep its side open);
//  - responses and events are always whole lines.
// Threading: all mutable state is confined to the channel's event loop. Handlers run as
// Swift tasks; their results hop back to the event loop through an EventLoopPromise.

import NIOCore

final class UnixConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Item {
        case line(ByteBuffer)
        case refuse(RPCError)
    }

    static let maxQueuedLines = 16

    private let server: RPCServer
    let connection: UnixConnection
    private var context: ChannelHandlerContext?
    private var queue = CircularBuffer<Item>(initialCapacity: 4)
    private var busy = false
    private var refused = false
    private var inputClosed = false
    private var draining = false
    private var closed = false
    private var pendingRead = false
    private var pendingEvents = 0
    private var lastResponseWrite: EventLoopFuture<Void>?

    init(server: RPCServer, connection: UnixConnection) {
        self.server = server
        self.connection = connection
    }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        server.connectionOpened(connection)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        queue.removeAll()
        server.connectionClosed(connection)
        context.fireChannelInactive()
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = Self.unwrapInboundIn(data)
        guard !refused, !closed else { return }
        if Self.isBlank(line) { return }
        queue.append(.line(line))
        processNextIfIdle()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case let tooLong as LineTooLong:
            guard !refused else { return }
            refused = true
            server.log(.warning, "unix#\(connection.id): refusing a request over \(tooLong.limit) bytes; closing")
            queue.append(.refuse(.invalidRequest(tooLong.description)))
            processNextIfIdle()
        case is ByteToMessageDecoderError:
            return  // input after a refused line: already being closed
        default:
            server.log(.debug, "unix#\(connection.id): connection error: \(error)")
            close()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            finishIfDone()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { resumeReadingIfPossible() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: outbound: read pacing

    func read(context: ChannelHandlerContext) {
        if shouldRead(context) {
            context.read()
        } else {
            pendingRead = true
        }
    }

    private func shouldRead(_ context: ChannelHandlerContext) -> Bool {
        !refused && !draining && !closed && queue.count < Self.maxQueuedLines && context.channel.isWritable
    }

    private func resumeReadingIfPossible() {
        guard pendingRead, let context, shouldRead(context) else { return }
        pendingRead = false
        context.read()
    }

    // MARK: request processing

    private static func isBlank(_ line: ByteBuffer) -> Bool {
        line.readableBytesView.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
    }

    private func processNextIfIdle() {
        guard !busy, !closed, let context else { return }
        guard let item = queue.popFirst() else {
            finishIfDone()
            return
        }
        busy = true
        resumeReadingIfPossible()
        switch item {
        case .refuse(let error):
            let response = MethodRegistry.errorResponse(id: .null, error)
            let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
            writeLine(response.serialized(), context: context)?.whenComplete { _ in
                boundSelf.value.close()
            }
        case .line(let line):
            let eventLoop = context.eventLoop
            let promise = eventLoop.makePromise(of: [UInt8]?.self)
            let registry = server.registry
            let requestContext = connection.requestContext
            let onCall = server.callLogger(prefix: "unix#\(connection.id)")
            let server = self.server
            server.requestStarted()
            promise.completeWithTask {
                return await registry.handle(message: line.readableBytesView, context: requestContext, onCall: onCall)
            }
            let boundSelf = NIOLoopBound(self, eventLoop: eventLoop)
            promise.futureResult.whenComplete { result in
                boundSelf.value.requestCompleted(result)
                server.requestFinished()  // after the answer is handed to the (live) event loop
            }
        }
    }

    private func requestCompleted(_ result: Result<[UInt8]?, Error>) {
        busy = false
        guard !closed, let context else { return }
        if case .success(let output?) = result {
            writeLine(output, context: context)
        }
        processNextIfIdle()
    }

    @discardableResult
    private func writeLine(_ bytes: [UInt8], context: ChannelHandlerContext) -> EventLoopFuture<Void>? {
        guard !closed else { return nil }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let written = context.writeAndFlush(Self.wrapOutboundOut(buffer))
        lastResponseWrite = written
        return written
    }

    private func finishIfDone() {
        guard !busy, queue.isEmpty, !closed else { return }
        if draining || inputClosed {
            close(afterPendingResponse: true)
        }
    }

    /// Closes the connection. With `afterPendingResponse`, waits until the last response
    /// has reached the socket (closing fails unwritten data in NIO); otherwise at once.
    private func close(afterPendingResponse: Bool = false) {
        guard !closed, let context else { return }
        closed = true
        queue.removeAll()
        if afterPendingResponse, let pending = lastResponseWrite {
            let channel = context.channel
            pending.whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: calls from the server (on this event loop)

    /// Stop reading; answer what was already received; then close.
    func beginDraining() {
        draining = true
        finishIfDone()
    }

    /// Queue one event notification line (already newline-terminated).
    func deliverEvent(_ bytes: [UInt8], limit: Int) {
        guard !closed, let context else { return }
        if pendingEvents >= limit {
            server.log(
                .warning,
                "unix#\(connection.id): subscriber is not reading; \(limit) events queued; closing the connection")
            close()
            return
        }
        pendingEvents += 1
        let buffer = context.channel.allocator.buffer(bytes: bytes)
        let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).whenComplete { _ in
            boundSelf.value.pendingEvents -= 1
        }
    }
}

/// The server's view of one Unix-socket connection.
final class UnixConnection: Sendable {
    let id: UInt64
    let channel: Channel
    let subscriptions = SubscriptionSet()
    private let handlerBox: LockedState<NIOLoopBound<UnixConnectionHandler>?>

    init(id: UInt64, channel: Channel) {
        self.id = id
        self.channel = channel
        self.handlerBox = LockedState(nil)
    }

    func attach(_ handler: UnixConnectionHandler) {
        handlerBox.withLock { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
    }

    var requestContext: RequestContext {
        RequestContext(transport: .unix, connectionID: id, subscriptions: subscriptions)
    }

    private func onHandler(_ body: @escaping @Sendable (UnixConnectionHandler) -> Void) {
        guard let bound = handlerBox.withLock({ $0 }) else { return }
        channel.eventLoop.execute {
            body(bound.value)
        }
    }

    func deliverEvent(_ bytes: [UInt8], limit: Int) {
        onHandler { $0.deliverEvent(bytes, limit: limit) }
    }

    func beginDraining() {
        onHandler { $0.beginDraining() }
    }
}
