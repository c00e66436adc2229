// ViciMessage.swift — the vici message tree as Swift values.
//
// What: `ViciMessage` is the body of a vici CMD_REQUEST / CMD_RESPONSE / EVENT packet:
// an ORDERED list of (key, value) entries, where a value is a byte blob, a section (a
// nested message) or a list of byte blobs (strongSwan's vici README, "Message format").
// Order matters to charon (e.g. `local`/`remote` auth rounds, proposal lists), so this is
// an array, not a dictionary; `subscript(key)` returns the first entry with that key.
//
// Invariants:
// - Values are raw bytes. charon sends non-terminated strings; `string(_:)` decodes them as
//   UTF-8 (lossy repair of invalid sequences). Numbers are strings, as in the protocol.
// - Lists hold only blobs (the protocol has no nested lists and no sections inside lists).
// - `description` / `debugDescription` / `dump()` never print the bytes of a value whose
//   key is sensitive (`data`, `secret`, `psk`, ... see `ViciMessage.redactedKeys`): they
//   print `<redacted>`. `load-shared` carries the PSK under `data`.
//
// Threading: plain values, `Sendable`; no shared state.

/// A value in a vici message: a byte blob, a nested section, or a list of blobs.
///
/// Build values with literals: `"yes"` is a blob, `["a", "b"]` a list,
/// `["key": "value"]` a section.
public indirect enum ViciValue: Sendable, Hashable {
    /// A raw value (charon uses non-terminated strings; numbers are decimal strings).
    case bytes([UInt8])
    /// A named sub-section: an ordered message of its own.
    case section(ViciMessage)
    /// A list of raw items (lists cannot nest and cannot hold sections).
    case list([[UInt8]])

    /// A blob holding the UTF-8 bytes of `string`.
    public static func string(_ string: String) -> ViciValue { .bytes(Array(string.utf8)) }

    /// A list whose items are the UTF-8 bytes of `strings`.
    public static func strings(_ strings: [String]) -> ViciValue { .list(strings.map { Array($0.utf8) }) }

    /// The blob decoded as UTF-8 (invalid sequences repaired), or nil if this is not a blob.
    public var stringValue: String? {
        if case .bytes(let b) = self { return String(decoding: b, as: UTF8.self) }
        return nil
    }

    /// The raw blob, or nil if this is not a blob.
    public var bytesValue: [UInt8]? {
        if case .bytes(let b) = self { return b }
        return nil
    }

    /// The nested message, or nil if this is not a section.
    public var sectionValue: ViciMessage? {
        if case .section(let m) = self { return m }
        return nil
    }

    /// The list items decoded as UTF-8, or nil if this is not a list.
    public var stringListValue: [String]? {
        if case .list(let items) = self { return items.map { String(decoding: $0, as: UTF8.self) } }
        return nil
    }
}

extension ViciValue: ExpressibleByStringLiteral {
    /// A blob holding the UTF-8 bytes of the literal.
    public init(stringLiteral value: String) { self = .string(value) }
}

extension ViciValue: ExpressibleByArrayLiteral {
    /// A list of the literal's strings.
    public init(arrayLiteral elements: String...) { self = .strings(elements) }
}

extension ViciValue: ExpressibleByDictionaryLiteral {
    /// A section holding the literal's entries in literal order.
    public init(dictionaryLiteral elements: (String, ViciValue)...) {
        self = .section(ViciMessage(elements.map { ViciMessage.Entry(key: $0.0, value: $0.1) }))
    }
}

/// An ordered vici message (or section): a sequence of keyed entries.
///
/// ```swift
/// var m: ViciMessage = ["child": "net", "timeout": "5000"]
/// m["ike"] = "gw"
/// m.string("child") // "net"
/// ```
public struct ViciMessage: Sendable, Hashable {
    /// One keyed element of a message.
    public struct Entry: Sendable, Hashable {
        /// The element's name (ASCII in practice, at most 255 bytes on the wire).
        public var key: String
        /// The element's value.
        public var value: ViciValue

        /// Creates an entry.
        public init(key: String, value: ViciValue) {
            self.key = key
            self.value = value
        }
    }

    /// The entries in wire order. Duplicate keys are kept as received.
    public var entries: [Entry]

    /// Creates a message from entries, keeping their order.
    public init(_ entries: [Entry] = []) { self.entries = entries }

    /// Keys whose values are never printed by `description`, `debugDescription` or `dump`.
    public static let redactedKeys: Set<String> = [
        "data", "secret", "secrets", "psk", "password", "passphrase", "pin", "private-key",
    ]

    /// True if there are no entries.
    public var isEmpty: Bool { entries.isEmpty }

    /// The keys in wire order.
    public var keys: [String] { entries.map(\.key) }

    /// The first value stored under `key`. Setting replaces the first entry with that key
    /// (or appends one); setting nil removes every entry with that key.
    public subscript(key: String) -> ViciValue? {
        get { entries.first(where: { $0.key == key })?.value }
        set {
            if let newValue {
                if let i = entries.firstIndex(where: { $0.key == key }) {
                    entries[i].value = newValue
                } else {
                    entries.append(Entry(key: key, value: newValue))
                }
            } else {
                entries.removeAll { $0.key == key }
            }
        }
    }

    /// Appends an entry, even if the key already exists.
    public mutating func append(_ key: String, _ value: ViciValue) {
        entries.append(Entry(key: key, value: value))
    }

    /// The blob under `key` decoded as UTF-8, or nil if absent or not a blob.
    public func string(_ key: String) -> String? { self[key]?.stringValue }

    /// The section under `key`, or nil if absent or not a section.
    public func section(_ key: String) -> ViciMessage? { self[key]?.sectionValue }

    /// The list under `key` as strings, or nil if absent or not a list.
    public func stringList(_ key: String) -> [String]? { self[key]?.stringListValue }

    /// The blob under `key` parsed as a decimal integer, or nil.
    public func int(_ key: String) -> Int? { string(key).flatMap { Int($0) } }

    /// The blob under `key` parsed as an unsigned decimal integer, or nil.
    public func uint64(_ key: String) -> UInt64? { string(key).flatMap { UInt64($0) } }

    /// The blob under `key` read as a vici boolean (`yes`/`no`, `true`/`false`, `1`/`0`).
    public func bool(_ key: String) -> Bool? {
        switch string(key)?.lowercased() {
        case "yes", "true", "1": return true
        case "no", "false", "0": return false
        default: return nil
        }
    }
}

extension ViciMessage: ExpressibleByDictionaryLiteral {
    /// A message holding the literal's entries in literal order.
    public init(dictionaryLiteral elements: (String, ViciValue)...) {
        self.init(elements.map { Entry(key: $0.0, value: $0.1) })
    }
}

// MARK: - Redacting descriptions

extension ViciMessage: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// A swanctl-like rendering; values under `redactedKeys` print as `<redacted>`.
    public var description: String { Self.render(self) }

    /// Same as `description` (secrets redacted).
    public var debugDescription: String { "ViciMessage" + Self.render(self) }

    /// A mirror whose children are the rendered (redacted) values, so `dump()` is safe too.
    public var customMirror: Mirror {
        Mirror(self, children: entries.map { (label: $0.key as String?, value: Self.renderValue(key: $0.key, $0.value) as Any) },
               displayStyle: .dictionary)
    }

    static func render(_ m: ViciMessage) -> String {
        if m.entries.isEmpty { return "{}" }
        return "{ " + m.entries.map { "\($0.key) = \(renderValue(key: $0.key, $0.value))" }.joined(separator: ", ") + " }"
    }

    static func renderValue(key: String, _ v: ViciValue) -> String {
        if redactedKeys.contains(key.lowercased()) {
            if case .section(let m) = v { return render(m) }
            return "<redacted>"
        }
        switch v {
        case .bytes(let b): return renderBlob(b)
        case .section(let m): return render(m)
        case .list(let items): return "[" + items.map(renderBlob).joined(separator: ", ") + "]"
        }
    }

    static func renderBlob(_ b: [UInt8]) -> String {
        let printable = b.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
        if printable { return String(decoding: b, as: UTF8.self) }
        return "0x" + b.map { hexByte($0) }.joined()
    }

    static func hexByte(_ b: UInt8) -> String {
        let digits: [Character] = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 0xf)]])
    }
}

extension ViciMessage.Entry: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `key = value`, with sensitive values redacted.
    public var description: String { "\(key) = \(ViciMessage.renderValue(key: key, value))" }
    /// Same as `description`.
    public var debugDescription: String { description }
    /// Redacted mirror for `dump()`.
    public var customMirror: Mirror {
        Mirror(self, children: ["key": key, "value": ViciMessage.renderValue(key: key, value)])
    }
}

extension ViciValue: CustomStringConvertible, CustomDebugStringConvertible {
    /// The value rendered like in a message. A bare blob is printed (its key is unknown
    /// here); messages redact by key, so print messages, not extracted secrets.
    public var description: String { ViciMessage.renderValue(key: "", self) }
    /// Same as `description`.
    public var debugDescription: String { description }
}
