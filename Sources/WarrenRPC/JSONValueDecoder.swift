// JSONValueDecoder — JSONValue → Decodable without going through text.
//
// What: a Decoder over an already-parsed JSONValue. Every DecodingError it throws carries
// the full coding path (object keys and array indices) so RPCError(decodingError:) can
// name the offending field, and a debugDescription that is a human reason
// ("expected a string, got an integer", "missing", "number 300 does not fit in UInt8").
// Conventions (mirroring JSONValueEncoder): integers accept `.int` and integral `.double`
// values that fit the target type; Double/Float accept any number; `Date` is read from
// an ISO 8601 string; `URL` from a string; `JSONValue` is taken as is.
// Threading: the public struct is a Sendable value; each decode call builds its own
// private decoder objects.

import Foundation

/// Decodes `Decodable` values directly from ``JSONValue`` (no intermediate text).
public struct JSONValueDecoder: Sendable {
    /// Contextual information handed to `init(from:)` implementations.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// A decoder with empty `userInfo`.
    public init() {}

    /// Decodes a `T` from `value`.
    /// - Throws: `DecodingError` whose context's `codingPath` names the offending field.
    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        let decoder = JSONValueDecoderImpl(value: value, codingPath: [], userInfo: userInfo)
        return try decoder.unbox(value, as: T.self, path: [])
    }
}

final class JSONValueDecoderImpl: Decoder {
    let value: JSONValue
    let codingPath: [CodingKey]
    let userInfo: [CodingUserInfoKey: Any]

    init(value: JSONValue, codingPath: [CodingKey], userInfo: [CodingUserInfoKey: Any]) {
        self.value = value
        self.codingPath = codingPath
        self.userInfo = userInfo
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = value else {
            throw Self.mismatch([String: JSONValue].self, "an object", value, codingPath)
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self, members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let elements) = value else {
            throw Self.mismatch([JSONValue].self, "an array", value, codingPath)
        }
        return UnkeyedContainer(decoder: self, elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        SingleValueContainer(decoder: self, value: value, codingPath: codingPath)
    }

    // MARK: errors

    static func mismatch(_ type: Any.Type, _ expected: String, _ found: JSONValue, _ path: [CodingKey]) -> DecodingError {
        let reason = "expected \(expected), got \(found.typeDescription)"
        if case .null = found {
            return DecodingError.valueNotFound(type, DecodingError.Context(codingPath: path, debugDescription: reason))
        }
        return DecodingError.typeMismatch(type, DecodingError.Context(codingPath: path, debugDescription: reason))
    }

    static func corrupted(_ path: [CodingKey], _ reason: String) -> DecodingError {
        DecodingError.dataCorrupted(DecodingError.Context(codingPath: path, debugDescription: reason))
    }

    // MARK: leaf conversions

    static func unboxBool(_ v: JSONValue, _ path: [CodingKey]) throws -> Bool {
        guard case .bool(let b) = v else { throw mismatch(Bool.self, "a boolean", v, path) }
        return b
    }

    static func unboxString(_ v: JSONValue, _ path: [CodingKey]) throws -> String {
        guard case .string(let s) = v else { throw mismatch(String.self, "a string", v, path) }
        return s
    }

    static func unboxDouble(_ v: JSONValue, _ path: [CodingKey]) throws -> Double {
        switch v {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: throw mismatch(Double.self, "a number", v, path)
        }
    }

    static func unboxFloat(_ v: JSONValue, _ path: [CodingKey]) throws -> Float {
        let d = try unboxDouble(v, path)
        let f = Float(d)
        guard f.isFinite else { throw corrupted(path, "number \(d) does not fit in Float") }
        return f
    }

    static func unboxInteger<I: FixedWidthInteger>(_ v: JSONValue, _ type: I.Type, _ path: [CodingKey]) throws -> I {
        switch v {
        case .int(let i):
            guard let r = I(exactly: i) else { throw corrupted(path, "number \(i) does not fit in \(I.self)") }
            return r
        case .double(let d):
            guard d.rounded() == d else {
                throw DecodingError.typeMismatch(
                    I.self, DecodingError.Context(codingPath: path, debugDescription: "expected an integer, got \(d)"))
            }
            guard let r = I(exactly: d) else { throw corrupted(path, "number \(d) does not fit in \(I.self)") }
            return r
        default:
            throw mismatch(I.self, "an integer", v, path)
        }
    }

    static func parseDate(_ s: String) -> Date? {
        if let d = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(s) { return d }
        return try? Date.ISO8601FormatStyle().parse(s)
    }

    /// Decodes any Decodable from `v` at `path`, with fast paths for common leaves.
    func unbox<T: Decodable>(_ v: JSONValue, as type: T.Type, path: [CodingKey]) throws -> T {
        if T.self == JSONValue.self { return v as! T }
        if T.self == String.self { return try Self.unboxString(v, path) as! T }
        if T.self == Bool.self { return try Self.unboxBool(v, path) as! T }
        if T.self == Int.self { return try Self.unboxInteger(v, Int.self, path) as! T }
        if T.self == Int64.self { return try Self.unboxInteger(v, Int64.self, path) as! T }
        if T.self == Double.self { return try Self.unboxDouble(v, path) as! T }
        if T.self == Date.self {
            let s = try Self.unboxString(v, path)
            guard let d = Self.parseDate(s) else {
                throw Self.corrupted(path, "expected an ISO 8601 date-time, got \"\(s.prefix(64))\"")
            }
            return d as! T
        }
        if T.self == URL.self {
            let s = try Self.unboxString(v, path)
            guard let u = URL(string: s) else { throw Self.corrupted(path, "expected a URL") }
            return u as! T
        }
        return try T(from: JSONValueDecoderImpl(value: v, codingPath: path, userInfo: userInfo))
    }

    // MARK: containers

    struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: JSONValueDecoderImpl
        let members: [String: JSONValue]
        let codingPath: [CodingKey]

        var allKeys: [Key] { members.keys.compactMap { Key(stringValue: $0) } }

        func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }

        private func require(_ key: Key) throws -> JSONValue {
            guard let v = members[key.stringValue] else {
                throw DecodingError.keyNotFound(
                    key, DecodingError.Context(codingPath: codingPath, debugDescription: "missing"))
            }
            return v
        }

        private func path(_ key: Key) -> [CodingKey] { codingPath + [key] }

        func decodeNil(forKey key: Key) throws -> Bool { try require(key).isNull }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            try JSONValueDecoderImpl.unboxBool(require(key), path(key))
        }
        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            try JSONValueDecoderImpl.unboxString(require(key), path(key))
        }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            try JSONValueDecoderImpl.unboxDouble(require(key), path(key))
        }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
            try JSONValueDecoderImpl.unboxFloat(require(key), path(key))
        }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(key) }

        private func integer<I: FixedWidthInteger>(_ key: Key) throws -> I {
            try JSONValueDecoderImpl.unboxInteger(require(key), I.self, path(key))
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try decoder.unbox(require(key), as: T.self, path: path(key))
        }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            let v = try require(key)
            guard case .object(let nested) = v else {
                throw JSONValueDecoderImpl.mismatch([String: JSONValue].self, "an object", v, path(key))
            }
            return KeyedDecodingContainer(
                KeyedContainer<NestedKey>(decoder: decoder, members: nested, codingPath: path(key)))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
            let v = try require(key)
            guard case .array(let elements) = v else {
                throw JSONValueDecoderImpl.mismatch([JSONValue].self, "an array", v, path(key))
            }
            return UnkeyedContainer(decoder: decoder, elements: elements, codingPath: path(key))
        }

        func superDecoder() throws -> Decoder {
            let key = JSONCodingKey.superKey
            return JSONValueDecoderImpl(
                value: members[key.stringValue] ?? .null, codingPath: codingPath + [key], userInfo: decoder.userInfo)
        }

        func superDecoder(forKey key: Key) throws -> Decoder {
            JSONValueDecoderImpl(value: members[key.stringValue] ?? .null, codingPath: path(key), userInfo: decoder.userInfo)
        }
    }

    struct UnkeyedContainer: UnkeyedDecodingContainer {
        let decoder: JSONValueDecoderImpl
        let elements: [JSONValue]
        let codingPath: [CodingKey]
        private(set) var currentIndex = 0

        init(decoder: JSONValueDecoderImpl, elements: [JSONValue], codingPath: [CodingKey]) {
            self.decoder = decoder
            self.elements = elements
            self.codingPath = codingPath
        }

        var count: Int? { elements.count }
        var isAtEnd: Bool { currentIndex >= elements.count }

        private var currentPath: [CodingKey] { codingPath + [JSONCodingKey(index: currentIndex)] }

        private mutating func next(_ type: Any.Type) throws -> JSONValue {
            guard !isAtEnd else {
                throw DecodingError.valueNotFound(
                    type,
                    DecodingError.Context(
                        codingPath: currentPath, debugDescription: "missing (the array has only \(elements.count) elements)"))
            }
            return elements[currentIndex]
        }

        mutating func decodeNil() throws -> Bool {
            if try next(Never.self).isNull {
                currentIndex += 1
                return true
            }
            return false
        }

        mutating func decode(_ type: Bool.Type) throws -> Bool { try leaf { try JSONValueDecoderImpl.unboxBool($0, $1) } }
        mutating func decode(_ type: String.Type) throws -> String {
            try leaf { try JSONValueDecoderImpl.unboxString($0, $1) }
        }
        mutating func decode(_ type: Double.Type) throws -> Double {
            try leaf { try JSONValueDecoderImpl.unboxDouble($0, $1) }
        }
        mutating func decode(_ type: Float.Type) throws -> Float { try leaf { try JSONValueDecoderImpl.unboxFloat($0, $1) } }
        mutating func decode(_ type: Int.Type) throws -> Int { try integer() }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer() }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer() }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer() }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer() }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try integer() }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer() }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer() }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer() }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer() }

        private mutating func leaf<T>(_ convert: (JSONValue, [CodingKey]) throws -> T) throws -> T {
            let v = try next(T.self)
            let r = try convert(v, currentPath)
            currentIndex += 1
            return r
        }

        private mutating func integer<I: FixedWidthInteger>() throws -> I {
            try leaf { try JSONValueDecoderImpl.unboxInteger($0, I.self, $1) }
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let v = try next(T.self)
            let r = try decoder.unbox(v, as: T.self, path: currentPath)
            currentIndex += 1
            return r
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type
        ) throws -> KeyedDecodingContainer<NestedKey> {
            let v = try next([String: JSONValue].self)
            guard case .object(let nested) = v else {
                throw JSONValueDecoderImpl.mismatch([String: JSONValue].self, "an object", v, currentPath)
            }
            let path = currentPath
            currentIndex += 1
            return KeyedDecodingContainer(KeyedContainer<NestedKey>(decoder: decoder, members: nested, codingPath: path))
        }

        mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
            let v = try next([JSONValue].self)
            guard case .array(let nested) = v else {
                throw JSONValueDecoderImpl.mismatch([JSONValue].self, "an array", v, currentPath)
            }
            let path = currentPath
            currentIndex += 1
            return UnkeyedContainer(decoder: decoder, elements: nested, codingPath: path)
        }

        mutating func superDecoder() throws -> Decoder {
            let v = try next(JSONValue.self)
            let path = currentPath
            currentIndex += 1
            return JSONValueDecoderImpl(value: v, codingPath: path, userInfo: decoder.userInfo)
        }
    }

    struct SingleValueContainer: SingleValueDecodingContainer {
        let decoder: JSONValueDecoderImpl
        let value: JSONValue
        let codingPath: [CodingKey]

        func decodeNil() -> Bool { value.isNull }
        func decode(_ type: Bool.Type) throws -> Bool { try JSONValueDecoderImpl.unboxBool(value, codingPath) }
        func decode(_ type: String.Type) throws -> String { try JSONValueDecoderImpl.unboxString(value, codingPath) }
        func decode(_ type: Double.Type) throws -> Double { try JSONValueDecoderImpl.unboxDouble(value, codingPath) }
        func decode(_ type: Float.Type) throws -> Float { try JSONValueDecoderImpl.unboxFloat(value, codingPath) }
        func decode(_ type: Int.Type) throws -> Int { try integer() }
        func decode(_ type: Int8.Type) throws -> Int8 { try integer() }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer() }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer() }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer() }
        func decode(_ type: UInt.Type) throws -> UInt { try integer() }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer() }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer() }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer() }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer() }

        private func integer<I: FixedWidthInteger>() throws -> I {
            try JSONValueDecoderImpl.unboxInteger(value, I.self, codingPath)
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try decoder.unbox(value, as: T.self, path: codingPath)
        }
    }
}
