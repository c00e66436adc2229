// ViciCodecTests.swift — element/message/packet/frame coding, malformed and truncated
// input, fuzzing, and secret redaction in descriptions.

import Foundation
import WarrenVici
import XCTest

/// Deterministic PRNG (SplitMix64) so fuzz failures reproduce from the printed seed.
struct SplitMix64: RandomNumberGenerator {
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

final class ViciCodecTests: XCTestCase {
    /// The encoding example from strongSwan's vici README.
    static let readmeBytes: [UInt8] = {
        func s(_ x: String) -> [UInt8] { Array(x.utf8) }
        var b: [UInt8] = []
        b += [3, 4] + s("key1") + [0, 6] + s("value1")
        b += [1, 8] + s("section1")
        b += [1, 11] + s("sub-section")
        b += [3, 4] + s("key2") + [0, 6] + s("value2")
        b += [2]
        b += [4, 5] + s("list1")
        b += [5, 0, 5] + s("item1")
        b += [5, 0, 5] + s("item2")
        b += [6]
        b += [2]
        return b
    }()

    static let readmeMessage: ViciMessage = [
        "key1": "value1",
        "section1": [
            "sub-section": ["key2": "value2"],
            "list1": .strings(["item1", "item2"]),
        ],
    ]

    func testReadmeExampleDecodesAndEncodesExactly() throws {
        XCTAssertEqual(try ViciCodec.decode(Self.readmeBytes), Self.readmeMessage)
        XCTAssertEqual(try ViciCodec.encode(Self.readmeMessage), Self.readmeBytes)
    }

    func testEveryElementTypeAndAccessors() throws {
        var m: ViciMessage = [:]
        m["kv"] = "v"
        m["empty-value"] = .bytes([])
        m["binary"] = .bytes([0, 1, 2, 255])
        m["list"] = ["a", "b", ""]
        m["empty-list"] = .list([])
        m["section"] = ["inner": "x", "deeper": ["leaf": "1"]]
        m["empty-section"] = .section([:])
        m["num"] = "42"
        m["yes"] = "yes"
        let bytes = try ViciCodec.encode(m)
        let back = try ViciCodec.decode(bytes)
        XCTAssertEqual(back, m)
        XCTAssertEqual(back.keys, ["kv", "empty-value", "binary", "list", "empty-list", "section", "empty-section", "num", "yes"])
        XCTAssertEqual(back.string("kv"), "v")
        XCTAssertEqual(back["binary"]?.bytesValue, [0, 1, 2, 255])
        XCTAssertEqual(back.stringList("list"), ["a", "b", ""])
        XCTAssertEqual(back.stringList("empty-list"), [])
        XCTAssertEqual(back.section("section")?.section("deeper")?.string("leaf"), "1")
        XCTAssertEqual(back.section("empty-section"), [:])
        XCTAssertEqual(back.int("num"), 42)
        XCTAssertEqual(back.bool("yes"), true)
        XCTAssertNil(back.string("section"), "a section is not a string")
        XCTAssertNil(back.section("kv"))
        XCTAssertNil(back.string("missing"))
        // Element bytes for each type.
        XCTAssertEqual(try ViciCodec.encode(["k": "v"]), [3, 1, 0x6b, 0, 1, 0x76])
        XCTAssertEqual(try ViciCodec.encode(["s": .section([:])]), [1, 1, 0x73, 2])
        XCTAssertEqual(try ViciCodec.encode(["l": ["i"]]), [4, 1, 0x6c, 5, 0, 1, 0x69, 6])
        XCTAssertEqual(try ViciCodec.encode([:]), [])
    }

    func testOrderAndDuplicateKeysArePreserved() throws {
        var m: ViciMessage = ["b": "1", "a": "2"]
        m.append("b", "3")
        let back = try ViciCodec.decode(try ViciCodec.encode(m))
        XCTAssertEqual(back.keys, ["b", "a", "b"])
        XCTAssertEqual(back.string("b"), "1", "subscript returns the first entry")
        var edited = back
        edited["b"] = nil
        XCTAssertEqual(edited.keys, ["a"])
        edited["a"] = "9"
        edited["c"] = "new"
        XCTAssertEqual(edited.keys, ["a", "c"])
        XCTAssertEqual(edited.string("a"), "9")
    }

    func testLengthLimits() throws {
        let name255 = String(repeating: "n", count: 255)
        XCTAssertNoThrow(try ViciCodec.encode([name255: "v"]))
        XCTAssertThrowsError(try ViciCodec.encode([name255 + "n": "v"])) { e in
            guard case ViciCodecError.nameTooLong = e else { return XCTFail("\(e)") }
        }
        let value65535 = [UInt8](repeating: 7, count: 65535)
        let enc = try ViciCodec.encode(["v": .bytes(value65535)])
        XCTAssertEqual(try ViciCodec.decode(enc)["v"]?.bytesValue, value65535)
        XCTAssertThrowsError(try ViciCodec.encode(["v": .bytes(value65535 + [1])])) { e in
            XCTAssertEqual(e as? ViciCodecError, .valueTooLong(key: "v", length: 65536))
        }
        XCTAssertThrowsError(try ViciCodec.encode(["l": .list([value65535 + [1]])]))
        // A packet above 512 KiB cannot be framed.
        var big: ViciMessage = [:]
        for i in 0..<9 { big["k\(i)"] = .bytes(value65535) }
        XCTAssertThrowsError(try ViciPacket(type: .cmdRequest, name: "x", message: big).encodeFrame()) { e in
            guard case ViciCodecError.badFrameLength = e else { return XCTFail("\(e)") }
        }
    }

    func testNestingDepthIsBounded() throws {
        func nested(_ depth: Int) -> ViciMessage {
            var m: ViciMessage = ["leaf": "x"]
            for _ in 0..<depth { m = ["s": .section(m)] }
            return m
        }
        let ok = nested(ViciCodec.maxDepth)
        XCTAssertEqual(try ViciCodec.decode(try ViciCodec.encode(ok)), ok)
        XCTAssertThrowsError(try ViciCodec.encode(nested(ViciCodec.maxDepth + 1)))
        // Hand-made: 100k SECTION_STARTs must be rejected, not recursed into.
        var deep: [UInt8] = []
        for _ in 0..<100_000 { deep += [1, 1, 0x73] }
        XCTAssertThrowsError(try ViciCodec.decode(deep)) { e in
            guard case ViciCodecError.nestingTooDeep = e else { return XCTFail("\(e)") }
        }
    }

    func testMalformedMessagesAreRejectedWithReasons() {
        let cases: [(String, [UInt8], (ViciCodecError) -> Bool)] = [
            ("unknown type 0", [0], { if case .unknownElementType(0, 0) = $0 { return true }; return false }),
            ("unknown type 7", [3, 1, 0x6b, 0, 0, 7], { if case .unknownElementType(7, 5) = $0 { return true }; return false }),
            ("section end at root", [2], { if case .unexpectedElement = $0 { return true }; return false }),
            ("list end without list", [6], { if case .unexpectedElement = $0 { return true }; return false }),
            ("list item outside list", [5, 0, 0], { if case .unexpectedElement = $0 { return true }; return false }),
            ("key/value inside list", [4, 1, 0x6c, 3, 1, 0x6b, 0, 0, 6], { if case .unexpectedElement = $0 { return true }; return false }),
            ("section inside list", [4, 1, 0x6c, 1, 1, 0x73, 2, 6], { if case .unexpectedElement = $0 { return true }; return false }),
            ("nested list", [4, 1, 0x6c, 4, 1, 0x6d, 6, 6], { if case .unexpectedElement = $0 { return true }; return false }),
            ("section end inside list", [1, 1, 0x73, 4, 1, 0x6c, 2], { if case .unexpectedElement = $0 { return true }; return false }),
            ("unclosed section", [1, 1, 0x73], { if case .unterminated = $0 { return true }; return false }),
            ("unclosed list", [4, 1, 0x6c, 5, 0, 0], { if case .unterminated = $0 { return true }; return false }),
            ("name cut", [3, 5, 0x6b], { if case .truncated(_, 2) = $0 { return true }; return false }),
            ("value length cut", [3, 1, 0x6b, 0], { if case .truncated = $0 { return true }; return false }),
            ("value cut", [3, 1, 0x6b, 0, 9, 1, 2], { if case .truncated = $0 { return true }; return false }),
            ("missing name length", [1], { if case .truncated = $0 { return true }; return false }),
        ]
        for (what, bytes, matches) in cases {
            XCTAssertThrowsError(try ViciCodec.decode(bytes), what) { e in
                guard let ce = e as? ViciCodecError else { return XCTFail("\(what): \(e)") }
                XCTAssertTrue(matches(ce), "\(what): got \(ce)")
                XCTAssertFalse(ce.description.isEmpty)
            }
        }
    }

    func testEveryTruncationOfAValidMessageIsRejected() throws {
        let full = try ViciCodec.encode(Self.readmeMessage)
        // Element boundaries at the root level where a prefix is itself a valid message.
        let rootBoundaries: Set<Int> = [0, 14, full.count]
        for cut in 0...full.count {
            let prefix = Array(full[0..<cut])
            if rootBoundaries.contains(cut) {
                XCTAssertNoThrow(try ViciCodec.decode(prefix), "prefix \(cut)")
            } else {
                XCTAssertThrowsError(try ViciCodec.decode(prefix), "prefix of \(cut) bytes decoded")
            }
        }
    }

    func testPacketsOfEveryType() throws {
        let msg: ViciMessage = ["a": "b"]
        for type in ViciPacketType.allCases {
            let p = ViciPacket(type: type, name: type.isNamed ? "name-\(type.rawValue)" : nil,
                               message: type.carriesMessage ? msg : [:])
            let body = try p.encode()
            XCTAssertEqual(body.first, type.rawValue)
            XCTAssertEqual(try ViciPacket.decode(body), p, "\(type)")
            let frame = try p.encodeFrame()
            XCTAssertEqual(Array(frame[0..<4]), [0, 0, UInt8(body.count >> 8), UInt8(body.count & 0xff)])
        }
        XCTAssertEqual(try ViciPacket(type: .cmdRequest, name: "version").encode(), [0, 7] + Array("version".utf8))
        XCTAssertEqual(try ViciPacket(type: .eventConfirm).encode(), [5])
        XCTAssertThrowsError(try ViciPacket(type: .event).encode()) { e in
            guard case ViciCodecError.missingName = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try ViciPacket.decode([])) { e in
            guard case ViciCodecError.truncated = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try ViciPacket.decode([8])) { e in
            XCTAssertEqual(e as? ViciCodecError, .unknownPacketType(8))
        }
        XCTAssertThrowsError(try ViciPacket.decode([5, 1])) { e in
            guard case ViciCodecError.trailingBytes = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try ViciPacket.decode([7, 10, 0x61])) { e in
            guard case ViciCodecError.truncated = e else { return XCTFail("\(e)") }
        }
        // Offsets in message errors are relative to the packet.
        XCTAssertThrowsError(try ViciPacket.decode([1, 9])) { e in
            XCTAssertEqual(e as? ViciCodecError, .unknownElementType(9, offset: 1))
        }
    }

    func testFrameReaderReassemblesArbitrarySplits() throws {
        var rng = SplitMix64(seed: 7)
        var stream: [UInt8] = []
        var expected: [[UInt8]] = []
        for i in 0..<50 {
            let p = ViciPacket(type: .event, name: "e\(i)", message: ["i": .string(String(i)), "pad": .bytes(Array(repeating: 1, count: i * 37))])
            expected.append(try p.encode())
            stream += try p.encodeFrame()
        }
        for _ in 0..<20 {
            var reader = ViciFrameReader()
            var got: [[UInt8]] = []
            var i = 0
            while i < stream.count {
                let n = Int.random(in: 1...300, using: &rng)
                reader.append(stream[i..<min(i + n, stream.count)])
                i += n
                while let f = try reader.next() { got.append(f) }
            }
            XCTAssertEqual(got, expected)
            XCTAssertEqual(reader.pendingByteCount, 0)
        }
        var zero = ViciFrameReader()
        zero.append([0, 0, 0, 0])
        XCTAssertThrowsError(try zero.next())
        var huge = ViciFrameReader()
        huge.append([0, 8, 0, 1])
        XCTAssertThrowsError(try huge.next()) { e in
            XCTAssertEqual(e as? ViciCodecError, .badFrameLength(512 * 1024 + 1))
        }
        var partial = ViciFrameReader()
        partial.append([0, 0, 0])
        XCTAssertNil(try partial.next())
    }

    // MARK: fuzz

    static func randomMessage(_ rng: inout SplitMix64, depth: Int = 0) -> ViciMessage {
        var m: ViciMessage = [:]
        let n = Int.random(in: 0...5, using: &rng)
        for _ in 0..<n {
            let key = String((0..<Int.random(in: 0...12, using: &rng)).map { _ in
                Character(UnicodeScalar(UInt8.random(in: 0x21...0x7e, using: &rng)))
            })
            let bytes = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            switch Int.random(in: 0...2, using: &rng) {
            case 0: m.append(key, .bytes(bytes))
            case 1: m.append(key, .list((0..<Int.random(in: 0...3, using: &rng)).map { _ in bytes }))
            default:
                m.append(key, depth < 4 ? .section(randomMessage(&rng, depth: depth + 1)) : .bytes(bytes))
            }
        }
        return m
    }

    func testFuzzRoundTripOfRandomMessages() throws {
        var rng = SplitMix64(seed: 0x5741_5252)
        for _ in 0..<2_000 {
            let m = Self.randomMessage(&rng)
            let bytes = try ViciCodec.encode(m)
            let back = try ViciCodec.decode(bytes)
            XCTAssertEqual(back, m)
            XCTAssertEqual(try ViciCodec.encode(back), bytes)
        }
    }

    func testFuzzRandomAndMutatedBytesNeverCrash() throws {
        let seed = UInt64(Date().timeIntervalSince1970)
        print("fuzz seed \(seed)")
        var rng = SplitMix64(seed: seed)
        var decodedCount = 0
        func check(_ bytes: [UInt8]) {
            if let m = try? ViciCodec.decode(bytes) {
                decodedCount += 1
                // Whatever decodes re-encodes to something that decodes to the same tree.
                guard let again = try? ViciCodec.encode(m) else {
                    return XCTFail("decoded message cannot be re-encoded (seed \(seed)): \(bytes)")
                }
                XCTAssertEqual(try? ViciCodec.decode(again), m, "seed \(seed)")
            }
            _ = try? ViciPacket.decode(bytes)
            var reader = ViciFrameReader()
            reader.append(bytes)
            while let f = try? reader.next() { _ = try? ViciPacket.decode(f) }
        }
        // Pure random bytes, biased towards valid element types.
        for _ in 0..<20_000 {
            let n = Int.random(in: 0...64, using: &rng)
            let bytes: [UInt8] = (0..<n).map { _ in
                Int.random(in: 0...3, using: &rng) == 0 ? UInt8.random(in: 0...7, using: &rng) : UInt8.random(in: 0...255, using: &rng)
            }
            check(bytes)
        }
        // Valid encodings with a few bytes changed, removed or inserted, or cut.
        for _ in 0..<20_000 {
            var bytes = try ViciCodec.encode(Self.randomMessage(&rng))
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                guard !bytes.isEmpty else { break }
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0...3, using: &rng) {
                case 0: bytes[i] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.remove(at: i)
                case 2: bytes.insert(UInt8.random(in: 0...7, using: &rng), at: i)
                default: bytes = Array(bytes[0..<i])
                }
            }
            check(bytes)
        }
        XCTAssertGreaterThan(decodedCount, 100, "fuzz corpus too weak: almost nothing decoded")
    }

    // MARK: redaction

    func testSecretsAreRedactedInEveryDescription() {
        let secret = "wvt-top-secret-psk"
        let m: ViciMessage = [
            "id": "k1", "type": "IKE", "data": .string(secret), "owners": ["203.0.113.1"],
            "nested": ["secret": .string(secret), "Password": .string(secret), "ok": "visible"],
        ]
        var dumped = ""
        dump(m, to: &dumped)
        let entryText = m.entries.map { "\($0) \(String(reflecting: $0))" }.joined()
        for text in [m.description, m.debugDescription, "\(m)", String(reflecting: m), dumped, entryText,
                     "\(ViciValue.section(m))"] {
            XCTAssertFalse(text.contains(secret), "secret printed: \(text)")
        }
        XCTAssertTrue(m.description.contains("data = <redacted>"), m.description)
        XCTAssertTrue(m.description.contains("ok = visible"), m.description)
        XCTAssertTrue(m.description.contains("owners = [203.0.113.1]"), m.description)
        XCTAssertTrue(dumped.contains("<redacted>"), dumped)
        // Non-printable blobs print as hex.
        let binary: ViciMessage = ["b": .bytes([0, 255])]
        XCTAssertEqual(binary.description, "{ b = 0x00ff }")
    }
}
