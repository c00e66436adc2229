// Codec tests for JSONValue: round trips, integer precision, nesting limits, unicode,
// strictness, and a fuzz run over random and mutated inputs (seeded, reproducible).

import Foundation
import XCTest
@testable import WarrenRPC

/// A small deterministic PRNG (SplitMix64) so fuzz failures are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomString(_ rng: inout SeededGenerator) -> String {
    let pool: [String] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "€", "😀", "\u{2028}", "{", "]"]
    let n = Int.random(in: 0...8, using: &rng)
    return (0..<n).map { _ in pool.randomElement(using: &rng)! }.joined()
}

func randomJSON(_ rng: inout SeededGenerator, depth: Int = 0) -> JSONValue {
    let choice = Int.random(in: 0..<(depth > 4 ? 5 : 7), using: &rng)
    switch choice {
    case 0: return .null
    case 1: return .bool(Bool.random(using: &rng))
    case 2:
        let special: [Int64] = [0, -1, 1, Int64.max, Int64.min, 9_007_199_254_740_993]
        return .int(Bool.random(using: &rng) ? special.randomElement(using: &rng)! : Int64.random(in: -1_000_000...1_000_000, using: &rng))
    case 3:
        let special: [Double] = [0.5, -0.25, 1e-300, 1.7976931348623157e308, 3.14159, -2.5e10, 0.1]
        return .double(special.randomElement(using: &rng)!)
    case 4: return .string(randomString(&rng))
    case 5: return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomJSON(&rng, depth: depth + 1) })
    default:
        var members: [String: JSONValue] = [:]
        for _ in 0..<Int.random(in: 0...4, using: &rng) { members[randomString(&rng)] = randomJSON(&rng, depth: depth + 1) }
        return .object(members)
    }
}

final class JSONValueTests: XCTestCase {
    func parse(_ text: String) throws -> JSONValue { try JSONValue(parsing: text) }

    func testParsesEveryKind() throws {
        let value = try parse(#" { "a" : [1, -2.5, true, false, null, "x"], "b": {"c": {}} , "d": [] } "#)
        XCTAssertEqual(
            value,
            ["a": [1, -2.5, true, false, nil, "x"], "b": ["c": [:]], "d": []])
        XCTAssertEqual(value["a"]?[0]?.intValue, 1)
        XCTAssertEqual(value["a"]?[1]?.doubleValue, -2.5)
        XCTAssertEqual(value["a"]?[2]?.boolValue, true)
        XCTAssertEqual(value["a"]?[4]?.isNull, true)
        XCTAssertEqual(value["a"]?[5]?.stringValue, "x")
        XCTAssertNil(value["a"]?[6])
        XCTAssertNil(value["zzz"])
        XCTAssertNotNil(value["b"]?.objectValue)
        XCTAssertEqual(value["d"]?.arrayValue, [])
    }

    func testSerializationIsCompactAndSorted() throws {
        let value: JSONValue = ["b": 1, "a": [true, nil, "q\"uote"], "c": 0.5]
        XCTAssertEqual(String(decoding: value.serialized(), as: UTF8.self), #"{"a":[true,null,"q\"uote"],"b":1,"c":0.5}"#)
        XCTAssertEqual(value.description, #"{"a":[true,null,"q\"uote"],"b":1,"c":0.5}"#)
    }

    func testIntegerPrecision() throws {
        XCTAssertEqual(try parse("9007199254740993"), .int(9_007_199_254_740_993))
        XCTAssertEqual(try parse("9223372036854775807"), .int(Int64.max))
        XCTAssertEqual(try parse("-9223372036854775808"), .int(Int64.min))
        XCTAssertEqual(try parse("-0"), .int(0))
        // Beyond Int64: becomes a double instead of wrapping or failing.
        XCTAssertEqual(try parse("9223372036854775808"), .double(9_223_372_036_854_775_808))
        XCTAssertEqual(try parse("1.0"), .double(1))
        XCTAssertEqual(try parse("1e2"), .double(100))
        XCTAssertEqual(try parse("-1.5E-3"), .double(-0.0015))
        let big = JSONValue.int(9_007_199_254_740_993)
        XCTAssertEqual(try JSONValue(parsing: big.serialized()), big)
        XCTAssertEqual(String(decoding: JSONValue.int(Int64.min).serialized(), as: UTF8.self), "-9223372036854775808")
    }

    func testRejectsMalformedNumbers() {
        for text in ["01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1e400", "-1e400", "NaN", "Infinity", "1 2"] {
            XCTAssertThrowsError(try parse(text), text) { error in
                XCTAssertTrue(error is JSONParseError, "\(text): \(error)")
            }
        }
    }

    func testRejectsMalformedDocuments() {
        let cases = [
            "", "   ", "{", "[", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "tru", "nul", "falsey",
            "\"unterminated", "\"bad \\x escape\"", "{\"a\":1}}", "[]]", "'single'", "\"tab\tinside\"",
        ]
        for text in cases {
            XCTAssertThrowsError(try parse(text), text.debugDescription)
        }
    }

    func testDuplicateKeysAreRefused() throws {
        XCTAssertThrowsError(try parse(#"{"name":"dup","name":"dup2"}"#)) { error in
            let e = error as! JSONParseError
            XCTAssertEqual(e.offset, 14, "the offset of the second key")
            XCTAssertTrue(e.description.contains(#"duplicate key "name""#), e.description)
        }
        XCTAssertThrowsError(try parse(#"{"params":{"a":1,"b":{"x":1,"x":1}}}"#), "nested objects too")
        // The same key in different objects is fine.
        XCTAssertEqual(try parse(#"[{"a":1},{"a":2}]"#), [["a": 1], ["a": 2]])
    }

    func testErrorNamesOffset() {
        XCTAssertThrowsError(try parse("[1, 2, x]")) { error in
            let e = error as! JSONParseError
            XCTAssertEqual(e.offset, 7)
            XCTAssertTrue(e.description.contains("unexpected character 'x'"), e.description)
        }
    }

    func testUnicodeEscapes() throws {
        XCTAssertEqual(try parse(#""caf\u00e9""#), "café")
        XCTAssertEqual(try parse(#""\u20AC""#), "€")
        XCTAssertEqual(try parse(#""\ud83d\ude00""#), "😀")
        XCTAssertEqual(try parse(#""\"\\\/\b\f\n\r\t""#), "\"\\/\u{08}\u{0C}\n\r\t")
        XCTAssertEqual(try parse(#""\u0000""#), .string("\u{0}"))
        // Raw UTF-8 passes through.
        XCTAssertEqual(try parse("\"日本語 😀\""), "日本語 😀")
        // Lone surrogates and bad hex are refused.
        for bad in [#""\ud83d""#, #""\ude00""#, #""\ud83d\u0041""#, #""\u12G4""#, #""\u12""#] {
            XCTAssertThrowsError(try parse(bad), bad)
        }
    }

    func testRejectsInvalidUTF8() {
        let cases: [[UInt8]] = [
            [0x22, 0xFF, 0x22],  // invalid byte
            [0x22, 0xC3, 0x22],  // truncated sequence
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // encoded surrogate
            [0x22, 0x5C, 0x6E, 0xC0, 0xAF, 0x22],  // overlong, after an escape (slow path)
        ]
        for bytes in cases {
            XCTAssertThrowsError(try JSONValue(parsing: bytes), "\(bytes)")
        }
    }

    func testControlCharactersAreEscapedOnOutput() throws {
        let value = JSONValue.string("a\u{01}b\u{1F}c\n\"\\")
        let text = String(decoding: value.serialized(), as: UTF8.self)
        XCTAssertEqual(text, #""a\u0001b\u001fc\n\"\\""#)
        XCTAssertEqual(try JSONValue(parsing: text), value)
    }

    func testNonFiniteDoublesSerializeAsNull() {
        XCTAssertEqual(String(decoding: JSONValue.double(.nan).serialized(), as: UTF8.self), "null")
        XCTAssertEqual(String(decoding: JSONValue.array([.double(.infinity)]).serialized(), as: UTF8.self), "[null]")
    }

    func testNestingLimit() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        XCTAssertNoThrow(try parse(ok))
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        XCTAssertThrowsError(try parse(tooDeep)) { error in
            XCTAssertTrue((error as! JSONParseError).reason.contains("nesting deeper than 512"))
        }
        // Very deep input is refused quickly and without exhausting the stack.
        let hostile = String(repeating: "{\"a\":[", count: 200_000)
        XCTAssertThrowsError(try parse(hostile))
        XCTAssertThrowsError(try JSONValue(parsing: Array("[[[[".utf8), maxDepth: 3))
    }

    func testRoundTripsRandomValues() throws {
        var rng = SeededGenerator(seed: 42)
        for _ in 0..<2000 {
            let value = randomJSON(&rng)
            let sorted = value.serialized(sortedKeys: true)
            XCTAssertEqual(try JSONValue(parsing: sorted), value, String(decoding: sorted, as: UTF8.self))
            XCTAssertEqual(try JSONValue(parsing: value.serialized(sortedKeys: false)), value)
            // Foundation agrees that the text is JSON.
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(sorted), options: [.fragmentsAllowed]))
        }
    }

    func testFuzzRandomBytesNeverCrash() {
        var rng = SeededGenerator(seed: 7)
        let alphabet = Array("{}[]\":,0123456789-+.eEtrufalsn \\u\n\tabc".utf8) + [0x00, 0x80, 0xC3, 0xFF, 0xED]
        var parsed = 0
        for _ in 0..<5000 {
            let length = Int.random(in: 0...40, using: &rng)
            let bytes = (0..<length).map { _ in
                Bool.random(using: &rng) ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            do {
                let value = try JSONValue(parsing: bytes)
                parsed += 1
                // Whatever parses must serialize to something that parses to the same value.
                XCTAssertEqual(try JSONValue(parsing: value.serialized()), value)
            } catch {
                XCTAssertTrue(error is JSONParseError)
            }
        }
        XCTAssertGreaterThan(parsed, 0, "the fuzz alphabet should produce some valid documents")
    }

    func testFuzzMutatedDocumentsNeverCrash() {
        var rng = SeededGenerator(seed: 99)
        for _ in 0..<3000 {
            var bytes = randomJSON(&rng).serialized()
            for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[i] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.remove(at: i)
                default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                }
            }
            do {
                let value = try JSONValue(parsing: bytes)
                XCTAssertEqual(try JSONValue(parsing: value.serialized()), value)
            } catch {
                XCTAssertTrue(error is JSONParseError)
            }
        }
    }

    func testLiteralsAndSubscriptSetter() {
        var value: JSONValue = ["a": 1]
        value["b"] = "two"
        value["a"] = nil
        XCTAssertEqual(value, ["b": "two"])
        var scalar: JSONValue = 5
        scalar["x"] = true
        XCTAssertEqual(scalar, ["x": true])
        XCTAssertEqual(JSONValue.double(3).intValue, 3)
        XCTAssertNil(JSONValue.double(3.5).intValue)
        XCTAssertNil(JSONValue.double(1e300).intValue)
        XCTAssertEqual(JSONValue.int(2).doubleValue, 2)
        XCTAssertNil(JSONValue.string("1").intValue)
    }

    func testCodableInteropWithFoundation() throws {
        let value: JSONValue = ["id": .int(9_007_199_254_740_993), "list": [1, "x", nil, 2.5, false], "obj": ["k": [:]]]
        let data = try JSONEncoder().encode(value)
        let back = try JSONDecoder().decode(JSONValue.self, from: data)
        XCTAssertEqual(back, value)
    }
}
