// ExitWatcher: one pthread that poll()s the pidfds of supervised processes and reports each
// exit once.
//
// Invariants: the watcher owns duplicates of the pidfds it watches and closes them only on
// its own thread (so poll never sees a closed or reused descriptor); a token is reported at
// most once and never after `unwatch`. The callback runs on the watcher thread and must not
// block (the supervisor just hops onto its actor).
// Threading: watch/unwatch/stop from any thread (lock + wake pipe); the loop on its thread.

#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

final class ExitWatcher: @unchecked Sendable {
    private let lock = Lock()
    private var watched: [UInt64: Int32] = [:]   // token → our dup of the pidfd
    private var toClose: [Int32] = []
    private var stopped = false
    private var thread: pthread_t?
    private let wakeRead: Int32, wakeWrite: Int32
    private let onExit: @Sendable (UInt64) -> Void

    init(onExit: @escaping @Sendable (UInt64) -> Void) throws {
        self.onExit = onExit
        var fds: [Int32] = [-1, -1]
        let rc = cwarren_pipe(&fds, 1)
        if rc < 0 { throw SystemCallError("creating the process watcher's wake pipe", errno: -rc) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let context = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        let trc = pthread_create(&t, nil, { context in
            let watcher = Unmanaged<ExitWatcher>.fromOpaque(context!).takeRetainedValue()
            watcher.run()
            return nil
        }, context)
        if trc != 0 {
            Unmanaged<ExitWatcher>.fromOpaque(context).release()
            close(wakeRead)
            close(wakeWrite)
            throw SystemCallError("starting the process watcher thread", errno: trc)
        }
        thread = t
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    /// Reports `token` when the process behind `pidfd` exits (immediately if it already has).
    func watch(token: UInt64, pidfd: Int32) throws {
        let copy = fcntl(pidfd, F_DUPFD_CLOEXEC, 3)
        if copy < 0 { throw SystemCallError("duplicating a pidfd", errno: errno) }
        lock.withLock { watched[token] = copy }
        wake()
    }

    /// Stops watching `token`; it will not be reported.
    func unwatch(token: UInt64) {
        lock.withLock {
            if let fd = watched.removeValue(forKey: token) { toClose.append(fd) }
        }
        wake()
    }

    /// Ends the thread (waits for it unless called from it).
    func stop() {
        let t: pthread_t? = lock.withLock {
            if stopped { return nil }
            stopped = true
            defer { thread = nil }
            return thread
        }
        wake()
        if let t {
            if pthread_equal(t, pthread_self()) == 0 { pthread_join(t, nil) } else { pthread_detach(t) }
        }
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let (isStopped, entries, closing) = lock.withLock { () -> (Bool, [(UInt64, Int32)], [Int32]) in
                defer { toClose = [] }
                return (stopped, watched.map { ($0.key, $0.value) }, toClose)
            }
            for fd in closing { close(fd) }
            if isStopped { break }
            var pfds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for (_, fd) in entries { pfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            let n = poll(&pfds, nfds_t(pfds.count), -1)
            if n < 0 { if errno == EINTR { continue } else { break } }
            if pfds[0].revents != 0 { _ = read(wakeRead, &buffer, buffer.count) }
            for (i, (token, fd)) in entries.enumerated() where pfds[i + 1].revents != 0 {
                let stillWatched = lock.withLock { () -> Bool in
                    guard watched[token] == fd else { return false }
                    watched[token] = nil
                    return true
                }
                if stillWatched {
                    close(fd)
                    onExit(token)
                }
            }
        }
        lock.withLock {
            for fd in watched.values { close(fd) }
            watched = [:]
        }
    }
}
