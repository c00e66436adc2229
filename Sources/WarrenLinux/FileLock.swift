// FileLock: an exclusive, non-blocking flock() on a file, holding the owner's pid inside.
//
// The agent takes one on <state directory>/agent.lock so two agents never share a state
// directory. The lock belongs to the open file description: it ends with `unlock()`, with
// deinit, or when the process dies (the kernel drops it; no stale lock survives a crash).
// Invariants: the file holds the holder's pid ("1234\n") while locked.
// Threading: an instance is used by one owner; tryLock is thread-safe.

#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

/// An exclusive advisory lock on a file (flock LOCK_EX|LOCK_NB).
public final class FileLock: @unchecked Sendable {
    /// The locked file's path.
    public let path: String
    private var fd: Int32
    private let lock = Lock()

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock on `path` (created if missing) and writes our pid into it.
    /// When another process (or another FileLock) holds it, throws "state directory DIR is
    /// in use by another warren-agent (pid N)".
    public static func tryLock(path: String) throws -> FileLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw SystemCallError("opening lock file \(path)", errno: errno) }
        let rc = cwarren_flock_exclusive_nonblocking(fd)
        if rc != 0 {
            defer { close(fd) }
            if -rc == EWOULDBLOCK || -rc == EAGAIN {
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
                let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingWhitespace : ""
                throw FileLockError.held(directory: directoryName(of: path), holderPID: Int32(holder))
            }
            throw SystemCallError("locking \(path)", errno: -rc)
        }
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || text.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) != text.count {
            let e = errno
            close(fd)
            throw SystemCallError("writing our pid to \(path)", errno: e)
        }
        return FileLock(path: path, fd: fd)
    }

    /// Releases the lock (the file stays). Idempotent.
    public func unlock() {
        lock.withLock {
            guard fd >= 0 else { return }
            _ = ftruncate(fd, 0)
            _ = cwarren_flock_unlock(fd)
            close(fd)
            fd = -1
        }
    }

    /// Whether this instance still holds the lock.
    public var isLocked: Bool { lock.withLock { fd >= 0 } }

    deinit { unlock() }
}

/// Why a FileLock could not be taken.
public enum FileLockError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Someone else holds it; the pid written in the file, if readable.
    case held(directory: String, holderPID: Int32?)

    public var description: String {
        switch self {
        case .held(let dir, let pid?): "state directory \(dir) is in use by another warren-agent (pid \(pid))"
        case .held(let dir, nil): "state directory \(dir) is in use by another warren-agent"
        }
    }
}

func directoryName(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    if slash == path.startIndex { return "/" }
    return String(path[..<slash])
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
