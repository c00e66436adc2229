// UnixSocketPath — plain-Glibc helpers for AF_UNIX stream sockets shared by the server
// (preparing the listening socket) and the blocking client (connecting).
//
// What: building a sockaddr_un, probing whether a socket file has a live listener,
// and creating the server's listening socket with mode 0600 before anyone can connect.
// The 0600 guarantee: the socket is bound, chmod'ed to 0600, and only then handed to
// SwiftNIO, which calls listen(). Until listen() every connect() fails with
// ECONNREFUSED, so there is no window in which a looser mode could be used. No process-
// wide umask change is needed (umask would race with other threads creating files).
// Invariants: never unlinks anything that is not a socket; never unlinks a socket that
// accepts connections (a live server).
// Threading: plain blocking syscalls, safe from any thread; called once at start-up.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

enum UnixSocketPath {
    /// Maximum path length (sun_path holds 108 bytes including the terminating NUL).
    static var maxPathBytes: Int {
        MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1
    }

    struct PathTooLong: Error {}

    /// Calls `body` with a sockaddr_un for `path`.
    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathBytes else { throw PathTooLong() }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        return try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }

    static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    enum Probe {
        case absent
        case notASocket
        case live
        case stale
        case unknown(errno: Int32)
    }

    /// What is at `path`: nothing, a non-socket, a socket with a listener, or a stale socket.
    static func probe(_ path: String) -> Probe {
        var st = stat()
        if lstat(path, &st) != 0 {
            return errno == ENOENT ? .absent : .unknown(errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .notASocket }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .unknown(errno: errno) }
        defer { close(fd) }
        do {
            let rc = try withAddress(path) { connect(fd, $0, $1) }
            if rc == 0 { return .live }
            switch errno {
            case ECONNREFUSED: return .stale
            case ENOENT: return .absent
            case let e: return .unknown(errno: e)
            }
        } catch {
            return .unknown(errno: ENAMETOOLONG)
        }
    }

    /// The identity of the file at `path` (device, inode), if it exists.
    static func identity(_ path: String) -> (UInt64, UInt64)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Creates a socket bound to `path` with mode 0600, not yet listening.
    /// Removes a stale socket file first; refuses if a live server owns the path.
    /// - Returns: the file descriptor (the caller owns it) and the file's identity.
    static func bindPrivateSocket(_ path: String) throws -> (fd: Int32, identity: (UInt64, UInt64)?) {
        guard !path.isEmpty else { throw RPCServerError.cannotBind(path: path, reason: "the socket path is empty") }
        guard path.utf8.count <= maxPathBytes else {
            throw RPCServerError.cannotBind(
                path: path, reason: "the path is longer than \(maxPathBytes) bytes (the AF_UNIX limit)")
        }
        switch probe(path) {
        case .absent:
            break
        case .notASocket:
            throw RPCServerError.cannotBind(path: path, reason: "a file that is not a socket already exists there")
        case .live:
            throw RPCServerError.socketInUse(path: path)
        case .stale:
            if unlink(path) != 0 && errno != ENOENT {
                throw RPCServerError.cannotBind(
                    path: path, reason: "cannot remove the stale socket: \(errnoText(errno))")
            }
        case .unknown(let code):
            throw RPCServerError.cannotBind(path: path, reason: errnoText(code))
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw RPCServerError.cannotBind(path: path, reason: "socket(): \(errnoText(errno))")
        }
        do {
            let rc = try withAddress(path) { Glibc.bind(fd, $0, $1) }
            if rc != 0 {
                let code = errno
                var reason = errnoText(code)
                if code == ENOENT { reason += " (does the directory exist?)" }
                if code == EADDRINUSE { reason += " (another server started at the same time?)" }
                throw RPCServerError.cannotBind(path: path, reason: reason)
            }
            guard chmod(path, 0o600) == 0 else {
                let reason = "chmod 0600: \(errnoText(errno))"
                unlink(path)
                throw RPCServerError.cannotBind(path: path, reason: reason)
            }
        } catch {
            close(fd)
            throw error
        }
        return (fd, identity(path))
    }
}
