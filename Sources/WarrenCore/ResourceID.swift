// ResourceID: the identity of every topology resource (bridge, router, port, route,
// chain, rule) — a 128-bit UUID, printed in the canonical 8-4-4-4-12 lowercase form.
// The core never generates IDs from a clock or the OS: callers pass a random number
// generator (the agent uses the system's), tests pass a seeded one.
// Threading: plain value, `Sendable`.

public struct ResourceID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses a UUID string (case-insensitive, with hyphens in the canonical places).
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 36 else { return nil }
        var value: (UInt64, UInt64) = (0, 0)
        var nibbles = 0
        for (i, c) in utf8.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard c == UInt8(ascii: "-") else { return nil }
                continue
            }
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            if nibbles < 16 { value.0 = value.0 << 4 | UInt64(v) } else { value.1 = value.1 << 4 | UInt64(v) }
            nibbles += 1
        }
        high = value.0
        low = value.1
    }

    /// A random (version 4) UUID.
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> ResourceID {
        let h = (generator.next() & ~0xF000) | 0x4000
        let l = (generator.next() & ~(0xC000_0000_0000_0000 as UInt64)) | 0x8000_0000_0000_0000
        return ResourceID(high: h, low: l)
    }

    public var description: String {
        func hex(_ v: UInt64, _ digits: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, digits - s.count)) + s
        }
        return hex(high >> 32, 8) + "-" + hex(high >> 16 & 0xFFFF, 4) + "-" + hex(high & 0xFFFF, 4)
            + "-" + hex(low >> 48, 4) + "-" + hex(low & 0xFFFF_FFFF_FFFF, 12)
    }

    public static func < (a: ResourceID, b: ResourceID) -> Bool { (a.high, a.low) < (b.high, b.low) }

    /// A 64-bit digest used to build flow tags.
    @inlinable public var digest: UInt64 { mix64(high ^ mix64(low)) }
}

/// A deterministic 64-bit mixer (splitmix64 finalizer). Used for flow hashing and tags:
/// the same input gives the same output in every process, unlike Swift's `Hasher`.
@inlinable @inline(__always)
public func mix64(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// A small, fast, seedable generator for tests and benchmarks (xorshift64*).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    public mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}
