// EventPoll and WakeEvent: epoll and eventfd for Swift (Glibc's module lacks both), for
// loops that wait on many packet sockets at once (the datapath thread).
//
// Invariants: descriptors are close-on-exec; `close()` is idempotent and also run by deinit.
// Registered `data` values are opaque 64-bit tags handed back by `wait`.
// Threading: an EventPoll is waited on by one thread; add/modify/remove may be called from
// others (epoll itself is thread-safe). WakeEvent.signal() may be called from any thread.

#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

/// An epoll instance.
public final class EventPoll: @unchecked Sendable {
    /// Readiness flags (EPOLL*).
    public struct Events: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: UInt32(CWARREN_EPOLLIN))
        public static let writable = Events(rawValue: UInt32(CWARREN_EPOLLOUT))
        public static let error = Events(rawValue: UInt32(CWARREN_EPOLLERR))
        public static let hangup = Events(rawValue: UInt32(CWARREN_EPOLLHUP))
        public static let edgeTriggered = Events(rawValue: UInt32(truncatingIfNeeded: CWARREN_EPOLLET))
    }

    /// One ready registration.
    public struct Ready: Sendable, Hashable {
        /// The tag given at registration.
        public var data: UInt64
        /// What happened.
        public var events: Events
    }

    /// The epoll descriptor.
    public let fd: Int32
    private let lock = Lock()
    private var closed = false
    private var buffer: [cwarren_epoll_event]

    /// Creates an epoll instance able to report up to `capacity` (≤ 256) ready fds per wait.
    public init(capacity: Int = 64) throws {
        let rc = cwarren_epoll_create()
        if rc < 0 { throw SystemCallError("creating an epoll instance", errno: -rc) }
        fd = rc
        buffer = Array(repeating: cwarren_epoll_event(), count: max(1, min(256, capacity)))
    }

    deinit { close() }

    /// Watches `descriptor` for `events`, reporting `data` when ready.
    public func add(_ descriptor: Int32, events: Events = .readable, data: UInt64) throws {
        let rc = cwarren_epoll_add(fd, descriptor, events.rawValue, data)
        if rc < 0 { throw SystemCallError("adding fd \(descriptor) to epoll", errno: -rc) }
    }

    /// Changes what `descriptor` is watched for.
    public func modify(_ descriptor: Int32, events: Events, data: UInt64) throws {
        let rc = cwarren_epoll_modify(fd, descriptor, events.rawValue, data)
        if rc < 0 { throw SystemCallError("modifying fd \(descriptor) in epoll", errno: -rc) }
    }

    /// Stops watching `descriptor`.
    public func remove(_ descriptor: Int32) throws {
        let rc = cwarren_epoll_delete(fd, descriptor)
        if rc < 0 { throw SystemCallError("removing fd \(descriptor) from epoll", errno: -rc) }
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) and returns the ready registrations
    /// (empty on timeout or when interrupted by a signal).
    public func wait(timeoutMilliseconds: Int32) throws -> [Ready] {
        let n = buffer.withUnsafeMutableBufferPointer {
            cwarren_epoll_wait(fd, $0.baseAddress, Int32($0.count), timeoutMilliseconds)
        }
        if n == -EINTR { return [] }
        if n < 0 { throw SystemCallError("waiting on epoll", errno: -n) }
        return (0..<Int(n)).map { Ready(data: buffer[$0].data, events: Events(rawValue: buffer[$0].events)) }
    }

    /// Closes the epoll descriptor. Idempotent.
    public func close() {
        let shouldClose = lock.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        if shouldClose { _ = Glibc.close(fd) }
    }
}

/// An eventfd used to wake a thread blocked in `EventPoll.wait` (register `fd` as readable).
public final class WakeEvent: @unchecked Sendable {
    /// The eventfd (non-blocking).
    public let fd: Int32
    private let lock = Lock()
    private var closed = false

    /// Creates a non-blocking, close-on-exec eventfd.
    public init() throws {
        let rc = cwarren_eventfd(0, 1)
        if rc < 0 { throw SystemCallError("creating an eventfd", errno: -rc) }
        fd = rc
    }

    deinit { close() }

    /// Makes `fd` readable (wakes a waiter). Safe from any thread.
    public func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    @discardableResult
    /// Resets the counter after a wake-up; returns how many signals were pending.
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8 ? value : 0
    }

    /// Closes the eventfd. Idempotent.
    public func close() {
        let shouldClose = lock.withLock { () -> Bool in
            defer { closed = true }
            return !closed
        }
        if shouldClose { _ = Glibc.close(fd) }
    }
}
