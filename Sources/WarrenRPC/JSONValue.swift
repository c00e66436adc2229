// JSONValue — the in-memory JSON document used throughout WarrenRPC.
//
// What: an enum with one case per JSON type. Integers that fit in Int64 are kept as
// `.int` (never routed through Double, so 2^53+1 survives); every other number is a
// `.double`. Parsing and text output live in JSONParser.swift.
// Invariants: `.double` values produced by the parser are finite; serializing a
// non-finite double writes `null` (JSON has no NaN/Infinity). Object key order is not
// preserved (a Swift Dictionary); `serialized(sortedKeys: true)` gives stable output.
// Equality is structural: `.int(1) != .double(1.0)`.
// Threading: a value type, Sendable.

/// A JSON value: null, boolean, number (integer or floating point), string, array or object.
///
/// Integers that fit in `Int64` are represented as ``int(_:)`` so that large identifiers
/// keep full precision; all other numbers are ``double(_:)``.
public enum JSONValue: Sendable, Hashable {
    /// JSON `null`.
    case null
    /// JSON `true` / `false`.
    case bool(Bool)
    /// A JSON number without fraction or exponent that fits in `Int64`.
    case int(Int64)
    /// Any other JSON number.
    case double(Double)
    /// A JSON string.
    case string(String)
    /// A JSON array.
    case array([JSONValue])
    /// A JSON object.
    case object([String: JSONValue])
}

// MARK: - Accessors

extension JSONValue {
    /// `true` when the value is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The boolean, or `nil` if the value is not a boolean.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The integer, or `nil` if the value is not an integer. A `.double` with an exact
    /// integral value in range is converted.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            guard d.isFinite, d.rounded() == d, d >= -9.223372036854775808e18, d < 9.223372036854775808e18 else {
                return nil
            }
            return Int64(d)
        default: return nil
        }
    }

    /// The number as a `Double` (integers are converted), or `nil` if not a number.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The string, or `nil` if the value is not a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The elements, or `nil` if the value is not an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members, or `nil` if the value is not an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The member named `key` of an object; `nil` if absent or if this is not an object.
    /// Setting on a non-object value replaces it with a one-member object; setting `nil`
    /// removes the member.
    public subscript(key: String) -> JSONValue? {
        get {
            if case .object(let o) = self { return o[key] }
            return nil
        }
        set {
            var members: [String: JSONValue]
            if case .object(let o) = self { members = o } else { members = [:] }
            members[key] = newValue
            self = .object(members)
        }
    }

    /// The element at `index` of an array; `nil` if out of range or not an array.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    /// A short name of the JSON type, for error messages: "null", "a boolean", "an integer",
    /// "a number", "a string", "an array", "an object".
    public var typeDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

// MARK: - Literals

/// Caution: because of this conformance, `cond ? nil : someJSONValue` has type `JSONValue`
/// and yields `.null`, not `Optional.none`. Write `Optional<JSONValue>.none` when an
/// absent value is meant.
extension JSONValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension JSONValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSONValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var members: [String: JSONValue] = [:]
        members.reserveCapacity(elements.count)
        for (key, value) in elements { members[key] = value }
        self = .object(members)
    }
}

// MARK: - Codable

extension JSONValue: Codable {
    /// Decodes any JSON value. With ``JSONValueDecoder`` this is a direct copy; with other
    /// decoders the candidates are tried in the order null, Bool, Int64, Double, String,
    /// array, object.
    public init(from decoder: Decoder) throws {
        if let direct = decoder as? JSONValueDecoderImpl {
            self = direct.value
            return
        }
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? container.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
        }
    }

    /// Encodes the value. With ``JSONValueEncoder`` this is a direct copy.
    public func encode(to encoder: Encoder) throws {
        if let direct = encoder as? JSONValueEncoderImpl {
            direct.storeDirectly(self)
            return
        }
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .int(let i): try container.encode(i)
        case .double(let d): try container.encode(d)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON text with sorted keys.
    public var description: String {
        String(decoding: serialized(sortedKeys: true), as: UTF8.self)
    }
}
