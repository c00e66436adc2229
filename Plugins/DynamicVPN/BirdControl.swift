// BirdControl: a client for BIRD 2's control socket (the protocol `birdc` speaks).
//
// BIRD answers each command with lines "CCCC-text" (more follows), "CCCC text" (last
// line) or " text" (continuation of the previous code). Codes 0xxx mean success,
// 8xxx/9xxx errors, 1xxx–2xxx table data. A connection starts with the 0001 banner.
// We need a few commands: `show protocols all <name>` (session state, prefix counts),
// `configure` (reload after a config change) and `show route count`.
// Threading: blocking socket I/O; callers run it off the cooperative pool
// (`BirdControl.query` runs on a detached thread per call).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct BirdReply: Sendable {
    public var code: Int
    public var lines: [(code: Int, text: String)]
    public var text: String { lines.map(\.text).joined(separator: "\n") }
    public var isError: Bool { code >= 8000 }
}

public enum BirdError: Error, CustomStringConvertible {
    case cannotConnect(path: String, errno: Int32)
    case io(String)
    case command(String, String)

    public var description: String {
        switch self {
        case .cannotConnect(let p, let e): "cannot connect to BIRD at \(p): \(String(cString: strerror(e)))"
        case .io(let m): "BIRD control socket: \(m)"
        case .command(let c, let m): "BIRD refused \"\(c)\": \(m)"
        }
    }
}

/// The BGP session state as `show protocols all` reports it.
public struct BGPProtocolState: Sendable, Hashable, Codable {
    /// "Established", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", or "Down".
    public var state: String
    public var info: String
    public var importedRoutes: Int
    public var exportedRoutes: Int
    public var lastError: String?
    public var since: String?

    public var isEstablished: Bool { state == "Established" }
}

public enum BirdControl {
    /// Sends one command and returns BIRD's reply (blocking; use `query` from async code).
    public static func command(_ command: String, socketPath: String, timeoutSeconds: Int = 5) throws -> BirdReply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BirdError.io("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw BirdError.io("socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in pathBytes.enumerated() { buf[i] = b }
            buf[pathBytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw BirdError.cannotConnect(path: socketPath, errno: errno) }
        var reader = LineReader(fd: fd)
        _ = try readReply(&reader)  // banner 0001
        let line = Array((command + "\n").utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else { throw BirdError.io("write failed") }
        return try readReply(&reader)
    }

    /// `command` on a background thread, for async callers.
    public static func query(_ command: String, socketPath: String) async throws -> BirdReply {
        try await withCheckedThrowingContinuation { c in
            Thread.detachNewThread {
                do { c.resume(returning: try BirdControl.command(command, socketPath: socketPath)) } catch { c.resume(throwing: error) }
            }
        }
    }

    struct LineReader {
        let fd: Int32
        var buffer: [UInt8] = []
        mutating func next() throws -> String {
            while true {
                if let i = buffer.firstIndex(of: 10) {
                    let line = String(decoding: buffer[..<i], as: UTF8.self)
                    buffer.removeFirst(i + 1)
                    return line
                }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { throw BirdError.io(n == 0 ? "BIRD closed the connection" : "read: \(String(cString: strerror(errno)))") }
                buffer += chunk[0..<n]
                if buffer.count > 4 << 20 { throw BirdError.io("reply too large") }
            }
        }
    }

    static func readReply(_ r: inout LineReader) throws -> BirdReply {
        var lines: [(Int, String)] = []
        var last = 0
        while true {
            let line = try r.next()
            if line.hasPrefix(" ") {
                lines.append((last, String(line.dropFirst())))
                continue
            }
            let u = Array(line.utf8)
            guard u.count >= 5, let code = Int(String(decoding: u[0..<4], as: UTF8.self)) else {
                throw BirdError.io("unexpected line from BIRD: \(line.prefix(80))")
            }
            last = code
            lines.append((code, String(decoding: u[5...], as: UTF8.self)))
            if u[4] == UInt8(ascii: " ") { return BirdReply(code: code, lines: lines) }
        }
    }

    /// Parses `show protocols all <name>` for a BGP protocol.
    public static func parseProtocol(_ reply: BirdReply, name: String) -> BGPProtocolState? {
        // Header line (code 1002): "aws   BGP   ---   up   12:00:00.123  Established"
        guard let header = reply.lines.first(where: { $0.code == 1002 && $0.text.hasPrefix(name + " ") })?.text else { return nil }
        let cols = header.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        var st = BGPProtocolState(state: "Down", info: header, importedRoutes: 0, exportedRoutes: 0, lastError: nil, since: nil)
        if cols.count >= 4 { st.state = cols[3] == "up" ? "Up" : "Down" }
        if cols.count >= 6 { st.since = cols[4]; st.info = cols[5...].joined(separator: " ") }
        for (_, text) in reply.lines {
            let t = text.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("BGP state:") {
                st.state = t.dropFirst("BGP state:".count).trimmingCharacters(in: .whitespaces)
            } else if t.hasPrefix("Routes:") {
                // "Routes:         3 imported, 1 exported, 3 preferred"
                let parts = t.dropFirst("Routes:".count).split(separator: ",")
                for p in parts {
                    let w = p.split(separator: " ")
                    if w.count >= 2, let n = Int(w[0]) {
                        if w[1] == "imported" { st.importedRoutes = n }
                        if w[1] == "exported" { st.exportedRoutes = n }
                    }
                }
            } else if t.hasPrefix("Last error:") {
                st.lastError = t.dropFirst("Last error:".count).trimmingCharacters(in: .whitespaces)
            }
        }
        return st
    }
}
