// JSONValueEncoder — Encodable → JSONValue without going through text.
//
// What: an Encoder whose containers write into a tree of reference "boxes"; once the
// top-level `encode(to:)` returns, the tree is resolved into a JSONValue. Leaf values are
// stored inline (no box per scalar); a box is only allocated per nested container.
// Conventions (the same ones JSONValueDecoder reads back):
//  - integers → `.int` (UInt64 above Int64.max is an EncodingError, never rounded);
//  - Float/Double → `.double`; NaN and ±infinity are an EncodingError (JSON has none);
//  - `Date` → ISO 8601 string in UTC (fractional seconds only when non-zero),
//    `URL` → its absolute string, `JSONValue` → itself;
//  - a type that encodes nothing becomes `{}`.
// Threading: an encoder instance is used by one `encode` call at a time; the public
// `JSONValueEncoder` struct is a Sendable value and can be shared freely.

import Foundation

/// Encodes `Encodable` values directly into ``JSONValue`` (no intermediate text).
public struct JSONValueEncoder: Sendable {
    /// Contextual information handed to `encode(to:)` implementations.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// An encoder with empty `userInfo`.
    public init() {}

    /// Encodes `value` as a JSON value.
    /// - Throws: `EncodingError.invalidValue` for non-finite numbers or integers that do not
    ///   fit in Int64, and whatever the value's own `encode(to:)` throws.
    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let encoder = JSONValueEncoderImpl(box: EncodingBox(), codingPath: [], userInfo: userInfo)
        return try encoder.slot(for: value, at: []).resolve()
    }
}

/// One slot of an array or object under construction: a finished value or a nested box.
enum EncodedSlot {
    case value(JSONValue)
    case box(EncodingBox)

    func resolve() -> JSONValue {
        switch self {
        case .value(let v): return v
        case .box(let b): return b.resolve()
        }
    }
}

/// Storage that one encoder (and the containers it hands out) writes into.
final class EncodingBox {
    enum Storage {
        case empty
        case value(JSONValue)
        case array([EncodedSlot])
        case object([String: EncodedSlot])
    }

    var storage: Storage = .empty

    func resolve() -> JSONValue {
        switch storage {
        case .empty: return .object([:])
        case .value(let v): return v
        case .array(let slots): return .array(slots.map { $0.resolve() })
        case .object(let members): return .object(members.mapValues { $0.resolve() })
        }
    }

    func makeObject() {
        if case .object = storage { return }
        storage = .object([:])
    }

    func makeArray() {
        if case .array = storage { return }
        storage = .array([])
    }

    func setMember(_ key: String, _ slot: EncodedSlot) {
        guard case .object(var members) = storage else {
            storage = .object([key: slot])
            return
        }
        storage = .empty  // keep `members` uniquely referenced while mutating
        members[key] = slot
        storage = .object(members)
    }

    func append(_ slot: EncodedSlot) {
        guard case .array(var elements) = storage else {
            storage = .array([slot])
            return
        }
        storage = .empty
        elements.append(slot)
        storage = .array(elements)
    }

    var arrayCount: Int {
        if case .array(let a) = storage { return a.count }
        return 0
    }
}

/// A coding key for dictionary members and array indices. Index keys use the
/// "Index N" string form that Foundation's coders use, so paths format the same way.
struct JSONCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        self.intValue = nil
    }

    init(intValue: Int) {
        self.stringValue = "Index \(intValue)"
        self.intValue = intValue
    }

    init(index: Int) {
        self.init(intValue: index)
    }

    static let superKey = JSONCodingKey(stringValue: "super")
}

final class JSONValueEncoderImpl: Encoder {
    let box: EncodingBox
    let codingPath: [CodingKey]
    let userInfo: [CodingUserInfoKey: Any]

    init(box: EncodingBox, codingPath: [CodingKey], userInfo: [CodingUserInfoKey: Any]) {
        self.box = box
        self.codingPath = codingPath
        self.userInfo = userInfo
    }

    func storeDirectly(_ value: JSONValue) {
        box.storage = .value(value)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        box.makeObject()
        return KeyedEncodingContainer(KeyedContainer<Key>(encoder: self, box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        box.makeArray()
        return UnkeyedContainer(encoder: self, box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer {
        SingleValueContainer(encoder: self, codingPath: codingPath)
    }

    // MARK: value conversion shared by all containers

    static func invalid(_ value: Any, _ path: [CodingKey], _ reason: String) -> EncodingError {
        EncodingError.invalidValue(value, EncodingError.Context(codingPath: path, debugDescription: reason))
    }

    static func double(_ d: Double, _ path: [CodingKey]) throws -> JSONValue {
        guard d.isFinite else { throw invalid(d, path, "\(d) cannot be represented in JSON") }
        return .double(d)
    }

    static func integer<I: FixedWidthInteger>(_ i: I, _ path: [CodingKey]) throws -> JSONValue {
        guard let v = Int64(exactly: i) else { throw invalid(i, path, "integer \(i) does not fit in Int64") }
        return .int(v)
    }

    static func formatDate(_ date: Date) -> String {
        let whole = date.timeIntervalSince1970.rounded(.down)
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: whole != date.timeIntervalSince1970)
        return date.formatted(style)
    }

    /// Encodes any Encodable at `path` into a slot, with fast paths for common leaves.
    func slot<T: Encodable>(for value: T, at path: [CodingKey]) throws -> EncodedSlot {
        switch value {
        case let v as JSONValue: return .value(v)
        case let v as String: return .value(.string(v))
        case let v as Bool: return .value(.bool(v))
        case let v as Int: return .value(.int(Int64(v)))
        case let v as Int64: return .value(.int(v))
        case let v as Double: return .value(try Self.double(v, path))
        case let v as Date: return .value(.string(Self.formatDate(v)))
        case let v as URL: return .value(.string(v.absoluteString))
        default:
            let child = EncodingBox()
            let encoder = JSONValueEncoderImpl(box: child, codingPath: path, userInfo: userInfo)
            try value.encode(to: encoder)
            if case .value(let v) = child.storage { return .value(v) }
            return .box(child)
        }
    }

    // MARK: containers

    struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: JSONValueEncoderImpl
        let box: EncodingBox
        let codingPath: [CodingKey]

        private func path(_ key: Key) -> [CodingKey] { codingPath + [key] }

        mutating func encodeNil(forKey key: Key) throws { box.setMember(key.stringValue, .value(.null)) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { box.setMember(key.stringValue, .value(.bool(value))) }
        mutating func encode(_ value: String, forKey key: Key) throws {
            box.setMember(key.stringValue, .value(.string(value)))
        }
        mutating func encode(_ value: Double, forKey key: Key) throws {
            box.setMember(key.stringValue, .value(try JSONValueEncoderImpl.double(value, path(key))))
        }
        mutating func encode(_ value: Float, forKey key: Key) throws {
            box.setMember(key.stringValue, .value(try JSONValueEncoderImpl.double(Double(value), path(key))))
        }
        mutating func encode(_ value: Int, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { try encodeInteger(value, key) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { try encodeInteger(value, key) }

        private func encodeInteger<I: FixedWidthInteger>(_ value: I, _ key: Key) throws {
            box.setMember(key.stringValue, .value(try JSONValueEncoderImpl.integer(value, path(key))))
        }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            box.setMember(key.stringValue, try encoder.slot(for: value, at: path(key)))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy keyType: NestedKey.Type, forKey key: Key
        ) -> KeyedEncodingContainer<NestedKey> {
            let child = EncodingBox()
            child.makeObject()
            box.setMember(key.stringValue, .box(child))
            return KeyedEncodingContainer(
                KeyedContainer<NestedKey>(encoder: encoder, box: child, codingPath: path(key)))
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
            let child = EncodingBox()
            child.makeArray()
            box.setMember(key.stringValue, .box(child))
            return UnkeyedContainer(encoder: encoder, box: child, codingPath: path(key))
        }

        mutating func superEncoder() -> Encoder {
            let child = EncodingBox()
            box.setMember(JSONCodingKey.superKey.stringValue, .box(child))
            return JSONValueEncoderImpl(
                box: child, codingPath: codingPath + [JSONCodingKey.superKey], userInfo: encoder.userInfo)
        }

        mutating func superEncoder(forKey key: Key) -> Encoder {
            let child = EncodingBox()
            box.setMember(key.stringValue, .box(child))
            return JSONValueEncoderImpl(box: child, codingPath: path(key), userInfo: encoder.userInfo)
        }
    }

    struct UnkeyedContainer: UnkeyedEncodingContainer {
        let encoder: JSONValueEncoderImpl
        let box: EncodingBox
        let codingPath: [CodingKey]

        var count: Int { box.arrayCount }

        private var nextPath: [CodingKey] { codingPath + [JSONCodingKey(index: count)] }

        mutating func encodeNil() throws { box.append(.value(.null)) }
        mutating func encode(_ value: Bool) throws { box.append(.value(.bool(value))) }
        mutating func encode(_ value: String) throws { box.append(.value(.string(value))) }
        mutating func encode(_ value: Double) throws {
            box.append(.value(try JSONValueEncoderImpl.double(value, nextPath)))
        }
        mutating func encode(_ value: Float) throws {
            box.append(.value(try JSONValueEncoderImpl.double(Double(value), nextPath)))
        }
        mutating func encode(_ value: Int) throws { try encodeInteger(value) }
        mutating func encode(_ value: Int8) throws { try encodeInteger(value) }
        mutating func encode(_ value: Int16) throws { try encodeInteger(value) }
        mutating func encode(_ value: Int32) throws { try encodeInteger(value) }
        mutating func encode(_ value: Int64) throws { try encodeInteger(value) }
        mutating func encode(_ value: UInt) throws { try encodeInteger(value) }
        mutating func encode(_ value: UInt8) throws { try encodeInteger(value) }
        mutating func encode(_ value: UInt16) throws { try encodeInteger(value) }
        mutating func encode(_ value: UInt32) throws { try encodeInteger(value) }
        mutating func encode(_ value: UInt64) throws { try encodeInteger(value) }

        private func encodeInteger<I: FixedWidthInteger>(_ value: I) throws {
            box.append(.value(try JSONValueEncoderImpl.integer(value, nextPath)))
        }

        mutating func encode<T: Encodable>(_ value: T) throws {
            box.append(try encoder.slot(for: value, at: nextPath))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy keyType: NestedKey.Type
        ) -> KeyedEncodingContainer<NestedKey> {
            let path = nextPath
            let child = EncodingBox()
            child.makeObject()
            box.append(.box(child))
            return KeyedEncodingContainer(KeyedContainer<NestedKey>(encoder: encoder, box: child, codingPath: path))
        }

        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
            let path = nextPath
            let child = EncodingBox()
            child.makeArray()
            box.append(.box(child))
            return UnkeyedContainer(encoder: encoder, box: child, codingPath: path)
        }

        mutating func superEncoder() -> Encoder {
            let path = nextPath
            let child = EncodingBox()
            box.append(.box(child))
            return JSONValueEncoderImpl(box: child, codingPath: path, userInfo: encoder.userInfo)
        }
    }

    struct SingleValueContainer: SingleValueEncodingContainer {
        let encoder: JSONValueEncoderImpl
        let codingPath: [CodingKey]

        private func store(_ value: JSONValue) { encoder.box.storage = .value(value) }

        mutating func encodeNil() throws { store(.null) }
        mutating func encode(_ value: Bool) throws { store(.bool(value)) }
        mutating func encode(_ value: String) throws { store(.string(value)) }
        mutating func encode(_ value: Double) throws { store(try JSONValueEncoderImpl.double(value, codingPath)) }
        mutating func encode(_ value: Float) throws {
            store(try JSONValueEncoderImpl.double(Double(value), codingPath))
        }
        mutating func encode(_ value: Int) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: Int8) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: Int16) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: Int32) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: Int64) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: UInt) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: UInt8) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: UInt16) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: UInt32) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }
        mutating func encode(_ value: UInt64) throws { store(try JSONValueEncoderImpl.integer(value, codingPath)) }

        mutating func encode<T: Encodable>(_ value: T) throws {
            switch try encoder.slot(for: value, at: codingPath) {
            case .value(let v): store(v)
            case .box(let b): encoder.box.storage = b.storage
            }
        }
    }
}
