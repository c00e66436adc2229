// RouteMonitor: a stream of IPv4 route and link changes in one network namespace.
//
// What: a netlink socket subscribed to RTNLGRP_IPV4_ROUTE and RTNLGRP_LINK, read by a
// dedicated pthread with poll(). The stream starts with `.snapshot` (a full dump taken
// AFTER subscribing, so no change falls between dump and events), then `.added`/`.removed`
// per route change and `.link`/`.linkRemoved` per link state change. When the kernel drops
// events (ENOBUFS, seen by libnl as -NLE_NOMEM) the monitor re-dumps and emits a fresh
// `.snapshot`. The kernel removes IPv4 routes WITHOUT notifications when a link goes down
// or away or an address is deleted (fib_sync_down_dev/_addr); the monitor therefore also
// re-dumps after such a change (it subscribes to RTNLGRP_IPV4_IFADDR for the latter).
// Invariants: events after a snapshot may repeat changes the snapshot already contains;
// applying them in order (added = insert/replace by `RouteInfo.key`, removed = delete by
// key) always converges to the kernel's state. libnl objects never leave the monitor
// thread; only value types are yielded.
// Threading: one pthread per monitor (created in init, never in a namespace: the socket was
// made inside the namespace by `NetworkNamespace.run`). `stop()` wakes it through a pipe,
// joins it and finishes the stream; deinit stops it too.

#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import CWarrenShim

/// Streams route and link changes of one network namespace (see file comment).
public final class RouteMonitor: @unchecked Sendable {
    /// One change (or a full state) of the namespace's routes and links.
    public enum Event: Sendable, Hashable {
        /// The complete set of routes (of the watched tables): replaces all prior state.
        case snapshot([RouteInfo])
        /// A route was added or replaced (same `key`).
        case added(RouteInfo)
        /// A route was removed.
        case removed(RouteInfo)
        /// A link appeared or changed administrative state, carrier or operational state.
        case link(LinkInfo)
        /// A link disappeared (deleted or moved to another namespace).
        case linkRemoved(LinkInfo)
    }

    /// The events; a single consumer is expected. Finishes after `stop()`.
    public let events: AsyncStream<Event>
    /// The watched namespace (nil: the agent's own).
    public let namespace: String?
    /// The watched routing tables (nil: all).
    public let tables: Set<UInt32>?
    private let core: MonitorCore

    /// Starts watching `namespace` (nil: the caller's own) for changes of routes in `tables`
    /// (nil: all tables, including local) and of links. `receiveBufferSize` is forced with
    /// SO_RCVBUFFORCE; bursts larger than it cause a re-dump (a new `.snapshot`).
    public init(namespace: String? = nil, tables: Set<UInt32>? = nil, receiveBufferSize: Int = 8 << 20) throws {
        self.namespace = namespace
        self.tables = tables
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        events = stream
        core = try MonitorCore(namespace: namespace, tables: tables, receiveBufferSize: receiveBufferSize,
                               continuation: continuation)
        try core.start()
    }

    deinit { core.stop() }

    /// How many snapshots were emitted so far (1 + the number of re-dumps after lost events).
    public var snapshotCount: Int { core.snapshotCount }

    /// Stops the monitor thread and finishes `events`. Idempotent.
    public func stop() { core.stop() }

    /// Tests only: while true the thread leaves the socket unread, so a burst overflows it.
    var readingPaused: Bool {
        get { core.readingPaused }
        set { core.readingPaused = newValue }
    }
}

/// The part of the monitor that the thread and libnl callbacks reference.
private final class MonitorCore: @unchecked Sendable {
    let namespace: String?
    let tables: Set<UInt32>?
    let continuation: AsyncStream<RouteMonitor.Event>.Continuation
    private let socket: OpaquePointer
    private let dumper: Netlink
    private let wakeRead: Int32, wakeWrite: Int32
    private let lock = Lock()
    private var thread: pthread_t?
    private var stopped = false
    private var snapshots = 0
    private var paused = false
    var readingPaused: Bool {
        get { lock.withLock { paused } }
        set { lock.withLock { paused = newValue } }
    }

    // Monitor-thread state.
    private var names: [Int32: String] = [:]
    private var links: [Int32: LinkInfo] = [:]
    private var messageType: UInt16 = 0
    private var resyncWanted = false

    var snapshotCount: Int { lock.withLock { snapshots } }

    init(namespace: String?, tables: Set<UInt32>?, receiveBufferSize: Int,
         continuation: AsyncStream<RouteMonitor.Event>.Continuation) throws {
        self.namespace = namespace
        self.tables = tables
        self.continuation = continuation
        let place = namespace.map { " in \($0)" } ?? ""
        dumper = try Netlink(namespace: namespace)
        socket = try NetworkNamespace.run(inOptional: namespace) { () throws -> OpaquePointer in
            guard let s = nl_socket_alloc() else { throw SystemCallError("allocating a route monitor socket\(place)", errno: ENOMEM) }
            nl_socket_disable_seq_check(s)
            var rc = nl_connect(s, NETLINK_ROUTE)
            if rc == 0 { rc = nl_socket_add_membership(s, Int32(RTNLGRP_IPV4_ROUTE.rawValue)) }
            if rc == 0 { rc = nl_socket_add_membership(s, Int32(RTNLGRP_LINK.rawValue)) }
            if rc == 0 { rc = nl_socket_add_membership(s, Int32(RTNLGRP_IPV4_IFADDR.rawValue)) }
            if rc == 0 { rc = nl_socket_set_nonblocking(s) }
            if rc < 0 {
                nl_socket_free(s)
                throw NetlinkError(operation: "subscribing to route and link events\(place)", code: -rc, systemError: nil, kernelMessage: nil)
            }
            nl_socket_enable_msg_peek(s)
            let frc = cwarren_set_rcvbuf_force(nl_socket_get_fd(s), Int32(clamping: receiveBufferSize))
            if frc < 0 {
                nl_socket_free(s)
                throw SystemCallError("setting the route monitor's receive buffer\(place)", errno: -frc)
            }
            return s
        }
        var fds: [Int32] = [-1, -1]
        let prc = cwarren_pipe(&fds, 1)
        if prc < 0 {
            nl_socket_free(socket)
            throw SystemCallError("creating the route monitor's wake pipe", errno: -prc)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    deinit {
        nl_socket_free(socket)
        close(wakeRead)
        close(wakeWrite)
    }

    func start() throws {
        nl_socket_modify_cb(socket, NL_CB_VALID, NL_CB_CUSTOM, MonitorCore.onMessage,
                            Unmanaged.passUnretained(self).toOpaque())
        let context = Unmanaged.passRetained(self).toOpaque() // released when the thread ends
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { context in
            let core = Unmanaged<MonitorCore>.fromOpaque(context!).takeRetainedValue()
            core.run()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<MonitorCore>.fromOpaque(context).release()
            continuation.finish()
            throw SystemCallError("starting the route monitor thread", errno: rc)
        }
        lock.withLock { thread = t }
    }

    func stop() {
        let t: pthread_t? = lock.withLock {
            if stopped { return nil }
            stopped = true
            defer { thread = nil }
            return thread
        }
        guard let t else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        if pthread_equal(t, pthread_self()) == 0 { pthread_join(t, nil) } else { pthread_detach(t) }
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    // MARK: monitor thread

    private func run() {
        defer { continuation.finish() }
        var failures = 0
        if !resynchronize() { failures += 1 }
        let fd = nl_socket_get_fd(socket)
        while !isStopped {
            var pfds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                        pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let idle = readingPaused
            let n = poll(&pfds, 2, idle ? 5 : failures > 0 ? 200 : -1)
            if n < 0 && errno != EINTR { break }
            if pfds[1].revents != 0 { break }
            if idle { continue }
            if failures > 0 {
                // A dump failed (e.g. interrupted by changes): try again.
                if resynchronize() { failures = 0 } else { failures += 1 }
                continue
            }
            if pfds[0].revents == 0 { continue }
            while !isStopped && !readingPaused {
                let rc = nl_recvmsgs_default(socket)
                if rc >= 0 { continue }
                if rc == -NLE_AGAIN {
                    if resyncWanted, !resynchronize() { failures += 1 }
                    break
                }
                // -NLE_NOMEM: the kernel dropped events (ENOBUFS). Anything else: the stream
                // of events can no longer be trusted either. Re-dump in both cases — but only
                // after emptying the queue: until it is empty the kernel keeps the socket
                // "congested" and drops further events WITHOUT reporting ENOBUFS again, so a
                // dump taken earlier could miss changes forever.
                drainQueue(fd)
                if !resynchronize() { failures += 1 }
                break
            }
        }
    }

    /// Reads and discards everything queued on the event socket (clears the kernel's
    /// congestion state); a snapshot follows.
    private func drainQueue(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC)) }
            if n >= 0 { continue }
            if errno == EINTR || errno == ENOBUFS { continue }
            break // EAGAIN: empty
        }
    }

    /// Dumps links and routes and emits a snapshot. Events still queued behind it are
    /// applied afterwards (harmless repeats). Returns false if the dump failed.
    private func resynchronize() -> Bool {
        resyncWanted = false
        do {
            let (linkList, routes) = try dumper.snapshot(tables: tables)
            names = [:]
            links = [:]
            for l in linkList {
                names[l.index] = l.name
                links[l.index] = l
            }
            lock.withLock { snapshots += 1 }
            continuation.yield(.snapshot(routes))
            return true
        } catch {
            return false
        }
    }

    static let onMessage: nl_recvmsg_msg_cb_t = { message, context in
        guard let message, let context else { return Int32(NL_OK.rawValue) }
        let core = Unmanaged<MonitorCore>.fromOpaque(context).takeUnretainedValue()
        core.messageType = nlmsg_hdr(message).pointee.nlmsg_type
        _ = nl_msg_parse(message, { object, context in
            guard let object, let context else { return }
            Unmanaged<MonitorCore>.fromOpaque(context).takeUnretainedValue().handle(object)
        }, context)
        return Int32(NL_OK.rawValue)
    }

    private func handle(_ object: OpaquePointer) {
        switch Int32(messageType) {
        case Int32(RTM_NEWROUTE), Int32(RTM_DELROUTE):
            guard rtnl_route_get_family(object) == UInt8(AF_INET),
                  tables?.contains(rtnl_route_get_table(object)) ?? true,
                  rtnl_route_get_flags(object) & 0x200 == 0 /* RTM_F_CLONED */ else { return }
            let info = RouteInfo(rtnlRoute: object, names: names)
            continuation.yield(Int32(messageType) == Int32(RTM_NEWROUTE) ? .added(info) : .removed(info))
        case Int32(RTM_NEWLINK):
            let info = LinkInfo(rtnlLink: object)
            let old = links[info.index]
            names[info.index] = info.name
            links[info.index] = info
            if let old, old.isUp && !info.isUp { resyncWanted = true } // routes went silently
            if old == nil || old!.isUp != info.isUp || old!.hasCarrier != info.hasCarrier
                || old!.operState != info.operState || old!.name != info.name {
                continuation.yield(.link(info))
            }
        case Int32(RTM_DELLINK):
            let info = LinkInfo(rtnlLink: object)
            names[info.index] = nil
            links[info.index] = nil
            continuation.yield(.linkRemoved(info))
            resyncWanted = true
        case Int32(RTM_DELADDR):
            resyncWanted = true
        default:
            break
        }
    }
}
