// LineFrameDecoder — splits a byte stream into newline-delimited frames (NDJSON), with a
// hard limit on frame length.
//
// What: a ByteToMessageDecoder emitting one ByteBuffer per line (without "\n" and without
// a trailing "\r"). A final line without newline is emitted at EOF.
// Invariants:
//  - never buffers more than `maxLineBytes` plus one socket read of an unterminated
//    line: as soon as the unterminated data exceeds the limit, it throws `LineTooLong`
//    (ByteToMessageHandler then drops all further input for this channel);
//  - a complete line longer than the limit is refused the same way;
//  - bytes already scanned are not scanned again (`scanned`), so a long line arriving
//    in many small reads costs O(n), not O(n²).
// Threading: lives in one channel pipeline; event-loop confined like every handler.

import NIOCore

/// Thrown when a line exceeds the configured maximum.
struct LineTooLong: Error, CustomStringConvertible {
    let limit: Int
    var description: String { "request exceeds \(limit) bytes" }
}

struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    let maxLineBytes: Int
    /// Readable bytes already known to contain no newline.
    private var scanned = 0

    init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let searchStart = view.index(view.startIndex, offsetBy: min(scanned, view.count))
        guard let newline = view[searchStart...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if scanned > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
            return .needMoreData
        }
        let length = view.distance(from: view.startIndex, to: newline)
        scanned = 0
        if length > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if seenEOF && buffer.readableBytes > 0 {
            // The peer closed its side after a final line without "\n": still a message.
            let line = buffer.readSlice(length: buffer.readableBytes)!
            scanned = 0
            context.fireChannelRead(Self.wrapInboundOut(line))
        }
        return .needMoreData
    }
}
