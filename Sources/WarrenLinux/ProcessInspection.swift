// Reading facts about processes from /proc: start time (stat field 22), state, executable
// image. Used to recognise a process again after an agent restart (pid + start time + image
// identify it; a reused pid has a different start time).
// Threading: pure reads, thread-safe.

#if canImport(Glibc)
import Glibc
#endif

enum ProcessInspection {
    /// (state letter, start time in ticks) from /proc/PID/stat, or nil if unreadable.
    static func stat(_ pid: Int32) -> (state: Character, startTime: UInt64)? {
        guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "comm)" start with field 3 (state); field 22 is index 19 there.
        let rest = text[text.index(after: close)...].split(separator: " ")
        guard rest.count > 19, let state = rest[0].first, let start = UInt64(rest[19]) else { return nil }
        return (state, start)
    }

    /// readlink(/proc/PID/exe) without a " (deleted)" suffix, or nil.
    static func image(_ pid: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = readlink("/proc/\(pid)/exe", &buffer, 4096)
        guard n > 0 else { return nil }
        var s = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasSuffix(" (deleted)") { s.removeLast(" (deleted)".count) }
        return s
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}
