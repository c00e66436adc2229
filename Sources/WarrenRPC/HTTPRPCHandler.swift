// HTTPRPCHandler — JSON-RPC over HTTP/1.1 (`POST /rpc`) and Prometheus text
// (`GET /metrics`) on the optional TCP listener.
//
// What: sits behind NIOHTTP1's server pipeline (which serialises requests on a keep-alive
// connection). Every request must carry `Authorization: Bearer <token>`; the token is
// compared in constant time, and a request without the right token gets 401 with
// `WWW-Authenticate: Bearer` and no JSON-RPC processing. Then: `/rpc` POST → 200 with the
// JSON-RPC response (204 when there is none: notifications); `/metrics` GET → the metrics
// closure's text; other paths 404; other methods on known paths 405.
// Invariants:
//  - a body is never buffered beyond `maxRequestBytes`: a Content-Length over the limit
//    is answered 413 at once, and a chunked body is cut off when it crosses the limit;
//  - after an early answer (401/404/405/413) to a request that has a body, the rest of
//    the body is read and discarded (up to a cap, then the connection is closed) so the
//    client reliably receives the answer, and the connection is closed after it;
//  - the token and the request body never reach the log.
// Threading: event-loop confined state; the RPC and metrics work runs in Swift tasks and
// hops back through an EventLoopPromise.

import NIOCore
import NIOHTTP1

final class HTTPRPCHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case receivingRPC(body: ByteBuffer)
        case awaitingEndForMetrics
        /// Already answered; discard the rest of the request, then maybe close.
        case discarding(discarded: Int, closeAfter: Bool)
        case processing
    }

    private let server: RPCServer
    private let connectionID: UInt64
    private let expectedAuthorization: [UInt8]
    private let maxRequestBytes: Int
    private var state = State.idle
    private var requestHead: HTTPRequestHead?
    private var context: ChannelHandlerContext?

    init(server: RPCServer, connectionID: UInt64, bearerToken: String, maxRequestBytes: Int) {
        self.server = server
        self.connectionID = connectionID
        self.expectedAuthorization = Array(bearerToken.utf8)
        self.maxRequestBytes = maxRequestBytes
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    private var logPrefix: String { "http#\(connectionID)" }

    // MARK: authorization

    /// Constant-time comparison: the running time depends only on the expected token's
    /// length, not on where a wrong token differs.
    static func constantTimeEquals(_ given: some Collection<UInt8>, _ expected: [UInt8]) -> Bool {
        let given = Array(given)
        var difference = given.count ^ expected.count
        for i in 0..<expected.count {
            let g = i < given.count ? given[i] : 0
            difference |= Int(g ^ expected[i])
        }
        return difference == 0
    }

    private func isAuthorized(_ headers: HTTPHeaders) -> Bool {
        guard let value = headers["authorization"].first else { return false }
        let trimmed = value.drop(while: { $0 == " " })
        guard let space = trimmed.firstIndex(of: " ") else { return false }
        guard trimmed[..<space].lowercased() == "bearer" else { return false }
        let token = trimmed[space...].drop(while: { $0 == " " })
        var end = token.endIndex
        while end > token.startIndex && token[token.index(before: end)] == " " { end = token.index(before: end) }
        return Self.constantTimeEquals(token[..<end].utf8, expectedAuthorization)
    }

    // MARK: inbound

    /// Closes a keep-alive connection that has been idle (no request in progress) for the
    /// IdleStateHandler's read timeout; a slow request in progress is never cut off.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if case .idle = state { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            requestHead = head
            startRequest(head, context: context)
        case .body(var chunk):
            switch state {
            case .receivingRPC(var body):
                if body.readableBytes + chunk.readableBytes > maxRequestBytes {
                    respondEarlyTooLarge(context: context)
                    return
                }
                state = .processing  // drop the reference while appending (avoid a copy)
                body.writeBuffer(&chunk)
                state = .receivingRPC(body: body)
            case .discarding(let discarded, let closeAfter):
                let total = discarded + chunk.readableBytes
                if total > max(4 * maxRequestBytes, 8 << 20) {
                    context.close(promise: nil)
                    return
                }
                state = .discarding(discarded: total, closeAfter: closeAfter)
            default:
                break
            }
        case .end:
            switch state {
            case .receivingRPC(let body):
                state = .processing
                runRPC(body: body, context: context)
            case .awaitingEndForMetrics:
                state = .processing
                runMetrics(context: context)
            case .discarding(_, let closeAfter):
                state = .idle
                if closeAfter { context.close(promise: nil) }
            case .idle, .processing:
                break
            }
        }
    }

    private static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if let length = head.headers["content-length"].first, let n = Int(length) { return n > 0 }
        return head.headers["transfer-encoding"].first != nil
    }

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard isAuthorized(head.headers) else {
            server.log(.warning, "\(logPrefix): \(head.method) \(path.prefix(100)) without a valid bearer token: 401")
            respondEarly(
                .unauthorized, text: "a valid bearer token is required\n",
                extraHeaders: [("WWW-Authenticate", "Bearer realm=\"warren\"")], head: head, context: context)
            return
        }
        switch path {
        case "/rpc":
            guard head.method == .POST else {
                respondEarly(
                    .methodNotAllowed, text: "use POST for /rpc\n", extraHeaders: [("Allow", "POST")], head: head,
                    context: context)
                return
            }
            if let length = head.headers["content-length"].first, let n = Int(length), n > maxRequestBytes {
                respondEarlyTooLarge(context: context)
                return
            }
            let declared = head.headers["content-length"].first.flatMap { Int($0) } ?? 0
            state = .receivingRPC(body: context.channel.allocator.buffer(capacity: min(max(declared, 0), maxRequestBytes)))
            if head.headers["expect"].first?.lowercased() == "100-continue" {
                // curl and others wait (about 1 s) for this before sending a larger body.
                context.writeAndFlush(
                    Self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        case "/metrics":
            guard head.method == .GET else {
                respondEarly(
                    .methodNotAllowed, text: "use GET for /metrics\n", extraHeaders: [("Allow", "GET")], head: head,
                    context: context)
                return
            }
            guard server.configuration.metrics != nil else {
                respondEarly(.notFound, text: "no metrics are configured\n", extraHeaders: [], head: head, context: context)
                return
            }
            state = .awaitingEndForMetrics
        default:
            respondEarly(.notFound, text: "not found (use POST /rpc or GET /metrics)\n", extraHeaders: [], head: head, context: context)
        }
    }

    /// Answers before the request body has been read; the body is then discarded.
    private func respondEarly(
        _ status: HTTPResponseStatus, text: String, extraHeaders: [(String, String)], head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        let keepAlive = head.isKeepAlive && !Self.hasBody(head)
        state = .discarding(discarded: 0, closeAfter: !keepAlive)
        let body = context.channel.allocator.buffer(string: text)
        writeResponse(
            status: status, contentType: "text/plain; charset=utf-8", body: body, extraHeaders: extraHeaders,
            keepAlive: keepAlive, closeAfterWrite: false, context: context)
    }

    private func respondEarlyTooLarge(context: ChannelHandlerContext) {
        server.log(.warning, "\(logPrefix): request body over \(maxRequestBytes) bytes: 413")
        state = .discarding(discarded: 0, closeAfter: true)
        let body = context.channel.allocator.buffer(string: "request exceeds \(maxRequestBytes) bytes\n")
        writeResponse(
            status: .payloadTooLarge, contentType: "text/plain; charset=utf-8", body: body, extraHeaders: [],
            keepAlive: false, closeAfterWrite: false, context: context)
    }

    // MARK: work

    private func runRPC(body: ByteBuffer, context: ChannelHandlerContext) {
        let registry = server.registry
        let requestContext = RequestContext(transport: .http, connectionID: connectionID)
        let onCall = server.callLogger(prefix: logPrefix)
        let server = self.server
        let promise = context.eventLoop.makePromise(of: [UInt8]?.self)
        server.requestStarted()
        promise.completeWithTask {
            return await registry.handle(message: body.readableBytesView, context: requestContext, onCall: onCall)
        }
        let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { result in
            boundSelf.value.finishRPC(result)
            server.requestFinished()  // after the answer is handed to the (live) event loop
        }
    }

    private func finishRPC(_ result: Result<[UInt8]?, Error>) {
        guard let context else { return }
        state = .idle
        let keepAlive = requestHead?.isKeepAlive ?? false
        switch result {
        case .success(let output?):
            let body = context.channel.allocator.buffer(bytes: output)
            writeResponse(
                status: .ok, contentType: "application/json", body: body, extraHeaders: [], keepAlive: keepAlive,
                closeAfterWrite: !keepAlive, context: context)
        case .success(nil):
            writeResponse(
                status: .noContent, contentType: nil, body: nil, extraHeaders: [], keepAlive: keepAlive,
                closeAfterWrite: !keepAlive, context: context)
        case .failure:
            writeResponse(
                status: .internalServerError, contentType: nil, body: nil, extraHeaders: [], keepAlive: false,
                closeAfterWrite: true, context: context)
        }
    }

    private func runMetrics(context: ChannelHandlerContext) {
        guard let metrics = server.configuration.metrics else { return }
        let promise = context.eventLoop.makePromise(of: String.self)
        let server = self.server
        server.requestStarted()
        promise.completeWithTask {
            return await metrics()
        }
        let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { result in
            boundSelf.value.finishMetrics(result)
            server.requestFinished()
        }
    }

    private func finishMetrics(_ result: Result<String, Error>) {
        guard let context else { return }
        state = .idle
        let keepAlive = requestHead?.isKeepAlive ?? false
        let text = (try? result.get()) ?? ""
        writeResponse(
            status: .ok, contentType: "text/plain; version=0.0.4", body: context.channel.allocator.buffer(string: text),
            extraHeaders: [], keepAlive: keepAlive, closeAfterWrite: !keepAlive, context: context)
    }

    private func writeResponse(
        status: HTTPResponseStatus, contentType: String?, body: ByteBuffer?, extraHeaders: [(String, String)],
        keepAlive: Bool, closeAfterWrite: Bool, context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders()
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        if status != .noContent { headers.add(name: "Content-Length", value: String(body?.readableBytes ?? 0)) }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let version = requestHead?.version ?? .http1_1
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if let body, body.readableBytes > 0 {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(Self.wrapOutboundOut(.end(nil)))
        if closeAfterWrite {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
