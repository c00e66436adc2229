// ViciCodec.swift — wire encoding of vici messages, packets and transport frames.
//
// What: implements strongSwan's vici README ("Transport protocol", "Packet layer",
// "Message format"):
//   frame   = u32 big-endian length L, then L bytes of packet (L <= 512 KiB)
//   packet  = u8 type, [u8 name length, name] for named types, [message] for types that
//             carry one (CMD_REQUEST, CMD_RESPONSE, EVENT)
//   message = elements: SECTION_START 1 (name) | SECTION_END 2 | KEY_VALUE 3 (name,
//             u16 BE length, value) | LIST_START 4 (name) | LIST_ITEM 5 (u16 BE length,
//             value) | LIST_END 6; names carry a u8 length.
//
// Invariants:
// - The decoder never traps on any input: every read is bounds-checked, and malformed or
//   truncated input throws `ViciCodecError` naming what was wrong and at which offset.
//   It is iterative (no recursion), and nesting is bounded by `maxDepth` so that the
//   decoded tree can also be released, compared and printed without deep recursion.
// - The encoder throws for what cannot be represented (name > 255 bytes, value > 65535
//   bytes, packet > 512 KiB, nesting > maxDepth) instead of truncating.
// - encode(decode(x)) == x for every x that decodes (elements have one encoding).
//
// Threading: pure functions on values; `ViciFrameReader` is a plain struct owned by one
// reader.

/// Errors from encoding or decoding vici data. Offsets are byte offsets into the message
/// (or packet) being decoded.
public enum ViciCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The input ended while `expected` was being read.
    case truncated(expected: String, offset: Int)
    /// An element type byte that the protocol does not define.
    case unknownElementType(UInt8, offset: Int)
    /// An element that is not allowed where it appeared (e.g. a key/value inside a list).
    case unexpectedElement(String, offset: Int)
    /// The message ended with an open section or list.
    case unterminated(String)
    /// Sections nested deeper than `ViciCodec.maxDepth`.
    case nestingTooDeep(limit: Int, offset: Int)
    /// A packet type byte that the protocol does not define.
    case unknownPacketType(UInt8)
    /// Bytes after the end of a packet type that carries no message.
    case trailingBytes(packetType: String, count: Int)
    /// A name longer than 255 bytes (encoding).
    case nameTooLong(String)
    /// A value longer than 65535 bytes under `key` (encoding).
    case valueTooLong(key: String, length: Int)
    /// A frame larger than the protocol's 512 KiB limit (or empty).
    case badFrameLength(Int)
    /// A packet type that requires a name was given none (encoding).
    case missingName(packetType: String)

    /// A message naming what was wrong and where.
    public var description: String {
        switch self {
        case .truncated(let what, let off): return "vici data truncated at offset \(off) while reading \(what)"
        case .unknownElementType(let t, let off): return "unknown vici element type \(t) at offset \(off)"
        case .unexpectedElement(let what, let off): return "unexpected vici element at offset \(off): \(what)"
        case .unterminated(let what): return "vici message ends inside \(what)"
        case .nestingTooDeep(let limit, let off): return "vici sections nested deeper than \(limit) at offset \(off)"
        case .unknownPacketType(let t): return "unknown vici packet type \(t)"
        case .trailingBytes(let type, let n): return "\(n) unexpected bytes after vici \(type) packet"
        case .nameTooLong(let name): return "vici name longer than 255 bytes: \(name.prefix(40))…"
        case .valueTooLong(let key, let len): return "vici value of '\(key)' is \(len) bytes, the limit is 65535"
        case .badFrameLength(let n): return "vici frame length \(n) outside 1...\(ViciCodec.maxFrameLength)"
        case .missingName(let type): return "vici \(type) packet needs a name"
        }
    }
}

/// Element and message coding.
public enum ViciCodec {
    /// The protocol's segment size limit (strongSwan: 512 KiB).
    public static let maxFrameLength = 512 * 1024
    /// Maximum section nesting accepted or produced (charon uses fewer than 10 levels).
    public static let maxDepth = 64

    enum Element: UInt8 {
        case sectionStart = 1, sectionEnd = 2, keyValue = 3, listStart = 4, listItem = 5, listEnd = 6
    }

    // MARK: encoding

    /// Encodes a message body (no framing, no packet header).
    public static func encode(_ message: ViciMessage) throws(ViciCodecError) -> [UInt8] {
        var out: [UInt8] = []
        try encode(message, into: &out, depth: 0)
        return out
    }

    static func encode(_ message: ViciMessage, into out: inout [UInt8], depth: Int) throws(ViciCodecError) {
        if depth > maxDepth { throw .nestingTooDeep(limit: maxDepth, offset: out.count) }
        for entry in message.entries {
            switch entry.value {
            case .bytes(let value):
                out.append(Element.keyValue.rawValue)
                try appendName(entry.key, to: &out)
                try appendValue(value, key: entry.key, to: &out)
            case .section(let inner):
                out.append(Element.sectionStart.rawValue)
                try appendName(entry.key, to: &out)
                try encode(inner, into: &out, depth: depth + 1)
                out.append(Element.sectionEnd.rawValue)
            case .list(let items):
                out.append(Element.listStart.rawValue)
                try appendName(entry.key, to: &out)
                for item in items {
                    out.append(Element.listItem.rawValue)
                    try appendValue(item, key: entry.key, to: &out)
                }
                out.append(Element.listEnd.rawValue)
            }
        }
    }

    static func appendName(_ name: String, to out: inout [UInt8]) throws(ViciCodecError) {
        let bytes = Array(name.utf8)
        guard bytes.count <= 255 else { throw .nameTooLong(name) }
        out.append(UInt8(bytes.count))
        out.append(contentsOf: bytes)
    }

    static func appendValue(_ value: [UInt8], key: String, to out: inout [UInt8]) throws(ViciCodecError) {
        guard value.count <= 0xffff else { throw .valueTooLong(key: key, length: value.count) }
        out.append(UInt8(value.count >> 8))
        out.append(UInt8(value.count & 0xff))
        out.append(contentsOf: value)
    }

    // MARK: decoding

    /// Decodes a message body. Throws on malformed or truncated input; never traps.
    public static func decode(_ bytes: [UInt8]) throws(ViciCodecError) -> ViciMessage {
        try bytes.withUnsafeBufferPointer { (buf) throws(ViciCodecError) -> ViciMessage in
            try decode(buf, baseOffset: 0)
        }
    }

    static func decode(_ buf: UnsafeBufferPointer<UInt8>, baseOffset: Int) throws(ViciCodecError) -> ViciMessage {
        var reader = ByteReader(buf: buf, base: baseOffset)
        // Open sections: (name, entries). Index 0 is the implicit root.
        var stack: [(name: String, entries: [ViciMessage.Entry])] = [("", [])]
        var openList: (name: String, items: [[UInt8]])? = nil

        while !reader.atEnd {
            let at = reader.offset
            let typeByte = try reader.u8("element type")
            guard let type = Element(rawValue: typeByte) else {
                throw .unknownElementType(typeByte, offset: at)
            }
            if openList != nil, type != .listItem, type != .listEnd {
                throw .unexpectedElement("\(type) inside list '\(openList!.name)'", offset: at)
            }
            switch type {
            case .sectionStart:
                let name = try reader.name()
                if stack.count > maxDepth { throw .nestingTooDeep(limit: maxDepth, offset: at) }
                stack.append((name, []))
            case .sectionEnd:
                guard stack.count > 1 else { throw .unexpectedElement("SECTION_END without open section", offset: at) }
                let closed = stack.removeLast()
                stack[stack.count - 1].entries.append(.init(key: closed.name, value: .section(ViciMessage(closed.entries))))
            case .keyValue:
                let name = try reader.name()
                let value = try reader.value()
                stack[stack.count - 1].entries.append(.init(key: name, value: .bytes(value)))
            case .listStart:
                let name = try reader.name()
                openList = (name, [])
            case .listItem:
                guard openList != nil else { throw .unexpectedElement("LIST_ITEM outside a list", offset: at) }
                openList!.items.append(try reader.value())
            case .listEnd:
                guard let list = openList else { throw .unexpectedElement("LIST_END without open list", offset: at) }
                stack[stack.count - 1].entries.append(.init(key: list.name, value: .list(list.items)))
                openList = nil
            }
        }
        if let list = openList { throw .unterminated("list '\(list.name)'") }
        if stack.count > 1 { throw .unterminated("section '\(stack[stack.count - 1].name)'") }
        return ViciMessage(stack[0].entries)
    }

    struct ByteReader {
        let buf: UnsafeBufferPointer<UInt8>
        let base: Int
        var pos = 0

        init(buf: UnsafeBufferPointer<UInt8>, base: Int) {
            self.buf = buf
            self.base = base
        }

        var atEnd: Bool { pos >= buf.count }
        var offset: Int { base + pos }
        var remaining: Int { buf.count - pos }

        mutating func u8(_ what: String) throws(ViciCodecError) -> UInt8 {
            guard pos < buf.count else { throw .truncated(expected: what, offset: offset) }
            defer { pos += 1 }
            return buf[pos]
        }

        mutating func bytes(_ n: Int, _ what: String) throws(ViciCodecError) -> [UInt8] {
            guard n <= remaining else { throw .truncated(expected: what, offset: offset) }
            defer { pos += n }
            return Array(buf[pos..<(pos + n)])
        }

        mutating func name() throws(ViciCodecError) -> String {
            let len = Int(try u8("name length"))
            let at = offset
            // Names are ASCII keys; invalid UTF-8 is refused rather than repaired (a
            // repaired name could no longer be encoded in 255 bytes).
            guard let name = String(validating: try bytes(len, "name"), as: UTF8.self) else {
                throw .unexpectedElement("a name that is not UTF-8", offset: at)
            }
            return name
        }

        mutating func value() throws(ViciCodecError) -> [UInt8] {
            let hi = Int(try u8("value length"))
            let lo = Int(try u8("value length"))
            return try bytes(hi << 8 | lo, "value")
        }
    }
}

/// A vici packet type (README "Packet layer").
public enum ViciPacketType: UInt8, Sendable, Hashable, CaseIterable {
    /// A named request message (client → charon).
    case cmdRequest = 0
    /// An unnamed response message for a request.
    case cmdResponse = 1
    /// An unnamed response if the requested command is unknown.
    case cmdUnknown = 2
    /// A named event registration request.
    case eventRegister = 3
    /// A named event deregistration request.
    case eventUnregister = 4
    /// An unnamed confirmation of event (de)registration.
    case eventConfirm = 5
    /// An unnamed response if event (de)registration failed.
    case eventUnknown = 6
    /// A named event message.
    case event = 7

    /// Whether the packet carries a name after the type byte.
    public var isNamed: Bool {
        switch self {
        case .cmdRequest, .eventRegister, .eventUnregister, .event: return true
        default: return false
        }
    }

    /// Whether the packet carries a message after the header.
    public var carriesMessage: Bool {
        switch self {
        case .cmdRequest, .cmdResponse, .event: return true
        default: return false
        }
    }
}

/// A vici packet: type, optional name, optional message.
public struct ViciPacket: Sendable, Hashable {
    /// The packet type.
    public var type: ViciPacketType
    /// The command or event name (named types only).
    public var name: String?
    /// The message (types that carry one; empty otherwise).
    public var message: ViciMessage

    /// Creates a packet.
    public init(type: ViciPacketType, name: String? = nil, message: ViciMessage = [:]) {
        self.type = type
        self.name = name
        self.message = message
    }

    /// Encodes type, name and message (without the transport length prefix).
    public func encode() throws(ViciCodecError) -> [UInt8] {
        var out: [UInt8] = [type.rawValue]
        if type.isNamed {
            guard let name else { throw .missingName(packetType: "\(type)") }
            try ViciCodec.appendName(name, to: &out)
        }
        if type.carriesMessage {
            try ViciCodec.encode(message, into: &out, depth: 0)
        }
        return out
    }

    /// Encodes the packet with its 4-byte big-endian transport length prefix.
    public func encodeFrame() throws(ViciCodecError) -> [UInt8] {
        let body = try encode()
        guard body.count <= ViciCodec.maxFrameLength else { throw .badFrameLength(body.count) }
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + body
    }

    /// Decodes a packet body (the bytes after the transport length prefix).
    public static func decode(_ bytes: [UInt8]) throws(ViciCodecError) -> ViciPacket {
        try bytes.withUnsafeBufferPointer { (buf) throws(ViciCodecError) -> ViciPacket in
            var reader = ViciCodec.ByteReader(buf: buf, base: 0)
            let t = try reader.u8("packet type")
            guard let type = ViciPacketType(rawValue: t) else { throw .unknownPacketType(t) }
            var name: String? = nil
            if type.isNamed { name = try reader.name() }
            if type.carriesMessage {
                let rest = UnsafeBufferPointer(rebasing: buf[reader.pos...])
                let message = try ViciCodec.decode(rest, baseOffset: reader.pos)
                return ViciPacket(type: type, name: name, message: message)
            }
            if !reader.atEnd { throw .trailingBytes(packetType: "\(type)", count: reader.remaining) }
            return ViciPacket(type: type, name: name)
        }
    }
}

/// Splits a byte stream into vici frames. Feed it whatever `read()` returned; take
/// complete packet bodies out with `next()`.
public struct ViciFrameReader: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    /// Creates an empty reader.
    public init() {}

    /// Appends received bytes.
    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet returned as a frame.
    public var pendingByteCount: Int { buffer.count - start }

    /// The next complete frame body, nil if more bytes are needed. Throws if the length
    /// prefix is 0 or above `ViciCodec.maxFrameLength` (the stream is then unusable).
    public mutating func next() throws(ViciCodecError) -> [UInt8]? {
        guard buffer.count - start >= 4 else { return nil }
        let len = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard len >= 1, len <= ViciCodec.maxFrameLength else { throw .badFrameLength(len) }
        guard buffer.count - start - 4 >= len else { return nil }
        let body = Array(buffer[(start + 4)..<(start + 4 + len)])
        start += 4 + len
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 64 * 1024 {
            buffer.removeFirst(start)
            start = 0
        }
        return body
    }
}
