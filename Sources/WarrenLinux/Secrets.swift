// Secrets: cryptographic random bytes and tokens, and constant-time comparison, from
// OpenSSL's libcrypto (RAND_bytes, CRYPTO_memcmp).
// Invariants: never returns weak randomness — if the CSPRNG fails the process stops, since
// every caller would otherwise mint guessable keys or tokens. Nothing here logs values.
// Threading: stateless, thread-safe (OpenSSL 3's RAND is thread-safe).

import COpenSSL

/// Random secrets and constant-time comparison (OpenSSL).
public enum Secrets {
    /// `count` bytes from OpenSSL's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0, "randomBytes: count must not be negative")
        var bytes = [UInt8](repeating: 0, count: count)
        if count == 0 { return bytes }
        let ok = bytes.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) }
        guard ok == 1 else { fatalError("Secrets.randomBytes: OpenSSL RAND_bytes failed; refusing to continue without a CSPRNG") }
        return bytes
    }

    /// A random token of `bytes` random bytes as lowercase hex (2 × bytes characters).
    public static func randomToken(bytes: Int = 32) -> String {
        hexString(randomBytes(bytes))
    }

    /// Whether `a` and `b` are equal, in time that depends only on their lengths
    /// (different lengths compare unequal at once: lengths are not secret).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, a.count) == 0 } }
    }

    /// String convenience: compares the UTF-8 bytes in constant time.
    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        constantTimeEqual(Array(a.utf8), Array(b.utf8))
    }
}

/// Lowercase hex of `bytes`.
func hexString(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(bytes.count * 2)
    for b in bytes {
        text.append(digits[Int(b >> 4)])
        text.append(digits[Int(b & 0xF)])
    }
    return String(decoding: text, as: UTF8.self)
}
