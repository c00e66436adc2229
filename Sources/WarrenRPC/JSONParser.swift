// JSONParser — a strict RFC 8259 parser from UTF-8 bytes to JSONValue, and the writer
// that turns a JSONValue back into bytes.
//
// What: a recursive-descent parser over an UnsafeBufferPointer<UInt8> (no copies of the
// input, strings without escapes are validated and created in one step).
// Invariants:
//  - never traps on any input: every index access is bounds-checked against `count`
//    before use, and every failure is a thrown JSONParseError naming the byte offset;
//  - nesting depth is capped (default 512): deeper input is refused before recursing,
//    so the parser's stack use is bounded no matter what is sent;
//  - integers without fraction/exponent that fit Int64 stay `.int`; larger integers and
//    all other numbers become `.double`; numbers that overflow Double are refused;
//  - strings must be valid UTF-8, control characters must be escaped, and `\u` escapes
//    must form valid scalars (a lone surrogate is an error, not silently replaced);
//  - duplicate object keys are refused (RFC 8259 leaves their meaning open; a request
//    whose `name` appears twice must not silently mean one of them).
// Threading: pure functions on values; safe anywhere.

/// Why a byte sequence is not acceptable JSON.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset in the input where the problem was found.
    public let offset: Int
    /// What is wrong, e.g. "unexpected character 'x'".
    public let reason: String

    /// An error at byte `offset`.
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONValue {
    /// The nesting depth (arrays plus objects) that parsing accepts by default.
    public static let defaultMaxDepth = 512

    /// Parses UTF-8 JSON text. Leading and trailing whitespace is allowed; anything else
    /// after the value is an error.
    /// - Throws: ``JSONParseError`` for malformed input or nesting deeper than `maxDepth`.
    public init<Bytes: Collection>(parsing bytes: Bytes, maxDepth: Int = JSONValue.defaultMaxDepth) throws
    where Bytes.Element == UInt8 {
        if let parsed = try bytes.withContiguousStorageIfAvailable({
            try JSONParser.parse($0, maxDepth: maxDepth)
        }) {
            self = parsed
        } else {
            self = try Array(bytes).withUnsafeBufferPointer { try JSONParser.parse($0, maxDepth: maxDepth) }
        }
    }

    /// Parses JSON text.
    /// - Throws: ``JSONParseError``.
    public init(parsing text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws {
        var text = text
        self = try text.withUTF8 { try JSONParser.parse($0, maxDepth: maxDepth) }
    }

    /// The value as compact JSON text (UTF-8, no insignificant whitespace).
    /// - Parameter sortedKeys: sort object members by key (byte order) for stable output.
    public func serialized(sortedKeys: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        JSONWriter.write(self, into: &out, sortedKeys: sortedKeys)
        return out
    }
}

// MARK: - Parser

struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let count: Int
    private var index = 0
    private let maxDepth: Int
    private var depth = 0

    private init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.count = bytes.count
        self.maxDepth = maxDepth
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        parser.skipWhitespace()
        if parser.index >= parser.count {
            throw JSONParseError(offset: parser.index, reason: "no JSON value (empty input)")
        }
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.index != parser.count {
            throw parser.error("unexpected data after the JSON value")
        }
        return value
    }

    private func error(_ reason: String) -> JSONParseError {
        JSONParseError(offset: index, reason: reason)
    }

    private func describeByte(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        return "byte 0x" + String(b, radix: 16, uppercase: true)
    }

    private mutating func skipWhitespace() {
        while index < count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws -> JSONValue {
        guard index < count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case let b: throw error("unexpected character \(describeByte(b))")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws {
        let n = literal.utf8CodeUnitCount
        guard count - index >= n else { throw error("unexpected end of input in literal") }
        let lit = literal.utf8Start
        for k in 0..<n where bytes[index + k] != lit[k] {
            index += k
            throw error("invalid literal (expected \(literal))")
        }
        index += n
    }

    private mutating func enterContainer() throws {
        depth += 1
        if depth > maxDepth {
            throw error("nesting deeper than \(maxDepth) levels")
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try enterContainer()
        index += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < count && bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard index < count else { throw error("unexpected end of input in array") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return .array(elements)
            case let b: throw error("expected ',' or ']' in array, found \(describeByte(b))")
            }
        }
    }

    private mutating func parseObject() throws -> JSONValue {
        try enterContainer()
        index += 1  // {
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if index < count && bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < count else { throw error("unexpected end of input in object") }
            guard bytes[index] == UInt8(ascii: "\"") else {
                throw error("expected a string key in object, found \(describeByte(bytes[index]))")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard index < count else { throw error("unexpected end of input in object") }
            guard bytes[index] == UInt8(ascii: ":") else {
                throw error("expected ':' after object key, found \(describeByte(bytes[index]))")
            }
            index += 1
            skipWhitespace()
            let value = try parseValue()
            if members.updateValue(value, forKey: key) != nil {
                throw JSONParseError(offset: keyOffset, reason: "duplicate key \"\(key.prefix(64))\" in object")
            }
            skipWhitespace()
            guard index < count else { throw error("unexpected end of input in object") }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return .object(members)
            case let b: throw error("expected ',' or '}' in object, found \(describeByte(b))")
            }
        }
    }

    /// Parses a string starting at the opening quote; leaves `index` after the closing quote.
    private mutating func parseString() throws -> String {
        let open = index
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                guard let s = String(validating: slice, as: UTF8.self) else {
                    index = start
                    throw error("invalid UTF-8 in string")
                }
                index += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw error("unescaped control character in string") }
            index += 1
        }
        if index >= count {
            index = open
            throw error("unterminated string")
        }
        // Slow path: copy segments and decode escapes.
        var out: [UInt8] = []
        out.reserveCapacity(index - start + 16)
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < count {
            let b = bytes[index]
            switch b {
            case UInt8(ascii: "\""):
                index += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    index = start
                    throw error("invalid UTF-8 in string")
                }
                return s
            case UInt8(ascii: "\\"):
                index += 1
                guard index < count else { break }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try parseUnicodeEscape()
                    appendUTF8(scalar, to: &out)
                default:
                    index -= 1
                    throw error("invalid escape sequence \\\(describeByte(e))")
                }
            default:
                if b < 0x20 { throw error("unescaped control character in string") }
                out.append(b)
                index += 1
            }
        }
        index = open
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard count - index >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[index]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    /// Called with `index` just after `\u`.
    private mutating func parseUnicodeEscape() throws -> Unicode.Scalar {
        let first = try parseHex4()
        switch first {
        case 0xD800...0xDBFF:
            guard count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw error("unpaired high surrogate in \\u escape")
            }
            index += 2
            let second = try parseHex4()
            guard (0xDC00...0xDFFF).contains(second) else {
                throw error("high surrogate not followed by a low surrogate in \\u escape")
            }
            let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            guard let scalar = Unicode.Scalar(value) else { throw error("invalid \\u escape") }
            return scalar
        case 0xDC00...0xDFFF:
            throw error("unpaired low surrogate in \\u escape")
        default:
            guard let scalar = Unicode.Scalar(first) else { throw error("invalid \\u escape") }
            return scalar
        }
    }

    private func appendUTF8(_ scalar: Unicode.Scalar, to out: inout [UInt8]) {
        let v = scalar.value
        switch v {
        case 0..<0x80:
            out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (v >> 12)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (v >> 18)))
            out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    private func isDigit(_ i: Int) -> Bool {
        i < count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard isDigit(index) else { throw error("invalid number: expected a digit") }
        var integral = true
        var overflow = false
        var magnitude: UInt64 = 0
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(index) { throw error("invalid number: leading zero") }
        } else {
            while isDigit(index) {
                let d = UInt64(bytes[index] - UInt8(ascii: "0"))
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(d)
                if o1 || o2 { overflow = true }
                magnitude = m2
                index += 1
            }
        }
        if index < count && bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard isDigit(index) else { throw error("invalid number: expected a digit after '.'") }
            while isDigit(index) { index += 1 }
        }
        if index < count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            integral = false
            index += 1
            if index < count && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
                index += 1
            }
            guard isDigit(index) else { throw error("invalid number: expected a digit in exponent") }
            while isDigit(index) { index += 1 }
        }
        if integral && !overflow {
            if negative {
                if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
                if magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
            } else if magnitude <= UInt64(Int64.max) {
                return .int(Int64(magnitude))
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let d = Double(text), d.isFinite else {
            throw JSONParseError(offset: start, reason: "number out of range")
        }
        return .double(d)
    }
}

// MARK: - Writer

enum JSONWriter {
    static func write(_ value: JSONValue, into out: inout [UInt8], sortedKeys: Bool) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite {
                out.append(contentsOf: d.description.utf8)
            } else {
                out.append(contentsOf: "null".utf8)
            }
        case .string(let s): writeString(s, into: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                write(element, into: &out, sortedKeys: sortedKeys)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            var first = true
            if sortedKeys {
                for key in members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    if !first { out.append(UInt8(ascii: ",")) }
                    first = false
                    writeString(key, into: &out)
                    out.append(UInt8(ascii: ":"))
                    write(members[key]!, into: &out, sortedKeys: sortedKeys)
                }
            } else {
                for (key, member) in members {
                    if !first { out.append(UInt8(ascii: ",")) }
                    first = false
                    writeString(key, into: &out)
                    out.append(UInt8(ascii: ":"))
                    write(member, into: &out, sortedKeys: sortedKeys)
                }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(0x5C); out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(0x5C); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(0x5C); out.append(UInt8(ascii: "t"))
            case 0x08: out.append(0x5C); out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(0x5C); out.append(UInt8(ascii: "f"))
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xF)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
