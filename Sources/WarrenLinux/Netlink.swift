// Netlink: links, addresses and routes of one network namespace through libnl-route-3.
//
// What: one NETLINK_ROUTE socket, created inside the given namespace (via
// `NetworkNamespace.run`, so no shared thread ever enters it) and used from any thread
// afterwards. Each method is one quick request/ack or dump.
// Invariants: the libnl socket and every libnl object live only inside `lock`; only
// Sendable value types (LinkInfo, RouteInfo, String) leave. Kernel errors are captured by a
// custom libnl error callback so that messages carry the real errno text and the kernel's
// extended-ack explanation, not libnl's coarser mapping.
// Threading: all methods are synchronous and serialized by a lock; they block for the
// duration of one netlink round trip — call them off the cooperative pool for bulk work.

#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import CWarrenShim

/// A failed netlink request. `description` reads like
/// "adding route 100.64.9.0/24 via 100.64.1.1 in wlt-a: Network is unreachable".
public struct NetlinkError: Error, CustomStringConvertible, Sendable {
    /// What was being done, including the object and namespace.
    public let operation: String
    /// libnl's error code (positive NLE_* value).
    public let code: Int32
    /// The kernel's errno, when the kernel refused the request.
    public let systemError: Int32?
    /// The kernel's extended-ack explanation, when it gave one.
    public let kernelMessage: String?

    /// Whether the object did not exist (ENOENT, ENODEV, ESRCH or libnl's "object not found").
    public var isNotFound: Bool {
        if let e = systemError { return e == ENOENT || e == ENODEV || e == ESRCH }
        return code == NLE_OBJ_NOTFOUND || code == NLE_NODEV
    }

    /// Whether the object already existed (EEXIST).
    public var isAlreadyExists: Bool {
        if let e = systemError { return e == EEXIST }
        return code == NLE_EXIST
    }

    public var description: String {
        var text = "\(operation): "
        if let systemError { text += errorText(systemError) } else { text += String(cString: nl_geterror(code)) }
        if let kernelMessage, !kernelMessage.isEmpty { text += " (\(kernelMessage))" }
        return text
    }
}

/// Receives the kernel's error for the request in flight (set by the libnl error callback).
final class NetlinkErrorSink: @unchecked Sendable {
    var errno: Int32?
    var message: String?
    func reset() { errno = nil; message = nil }

    static let callback: nl_recvmsg_err_cb_t = { _, error, context in
        guard let context, let error else { return Int32(NL_STOP.rawValue) }
        let sink = Unmanaged<NetlinkErrorSink>.fromOpaque(context).takeUnretainedValue()
        sink.errno = cwarren_nlmsgerr_errno(error)
        sink.message = cwarren_nlmsgerr_message(error).map { String(cString: $0) }
        return Int32(NL_STOP.rawValue)
    }
}

/// Links, addresses and routes of one network namespace (libnl route socket).
public final class Netlink: @unchecked Sendable {
    /// The namespace this socket lives in; nil is the agent's own namespace.
    public let namespace: String?
    private let socket: OpaquePointer
    private let sink = NetlinkErrorSink()
    private let lock = Lock()

    /// Opens a route netlink socket inside `namespace` (nil: the caller's own namespace).
    public init(namespace: String? = nil) throws {
        self.namespace = namespace
        let place = namespace.map { " in \($0)" } ?? ""
        socket = try NetworkNamespace.run(inOptional: namespace) { () throws -> OpaquePointer in
            guard let s = nl_socket_alloc() else { throw SystemCallError("allocating a netlink socket\(place)", errno: ENOMEM) }
            let rc = nl_connect(s, NETLINK_ROUTE)
            if rc < 0 {
                nl_socket_free(s)
                throw NetlinkError(operation: "connecting a netlink socket\(place)", code: -rc, systemError: nil, kernelMessage: nil)
            }
            return s
        }
        _ = cwarren_netlink_enable_ext_ack(nl_socket_get_fd(socket))
        nl_socket_modify_err_cb(socket, NL_CB_CUSTOM, NetlinkErrorSink.callback, Unmanaged.passUnretained(sink).toOpaque())
    }

    deinit { nl_socket_free(socket) }

    /// " in NAME" or "" — appended to operation texts.
    private var place: String { namespace.map { " in \($0)" } ?? "" }

    /// Runs one libnl call under the lock; a negative result becomes a NetlinkError.
    private func check(_ operation: @autoclosure () -> String, _ rc: Int32) throws {
        if rc < 0 {
            throw NetlinkError(operation: operation() + place, code: -rc, systemError: sink.errno, kernelMessage: sink.message)
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        try lock.withLock {
            sink.reset()
            return try body()
        }
    }

    /// Fetches a link by name (caller must rtnl_link_put it); nil if there is none. Lock held.
    private func kernelLink(_ name: String, for operation: String) throws -> OpaquePointer? {
        try validateInterfaceName(name)
        var link: OpaquePointer?
        sink.reset()
        let rc = rtnl_link_get_kernel(socket, 0, name, &link)
        if rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV || (rc < 0 && (sink.errno == ENODEV || sink.errno == ENOENT)) { return nil }
        try check(operation, rc)
        sink.reset()
        return link
    }

    private func requireLink(_ name: String, for operation: String) throws -> OpaquePointer {
        guard let link = try kernelLink(name, for: operation) else {
            throw NetlinkError(operation: operation + place, code: NLE_OBJ_NOTFOUND, systemError: ENODEV,
                               kernelMessage: "no interface named \(name)")
        }
        return link
    }

    private func validateInterfaceName(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" "), !name.contains("\0") else {
            throw ArgumentError(argument: "interface", value: name, reason: "must be 1–15 characters without \"/\" or spaces")
        }
    }

    private func openNamespace(_ name: String, for operation: String) throws -> Int32 {
        let path = try NetworkNamespace.path(of: name)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SystemCallError(operation + place + ": opening namespace \(name)", errno: errno) }
        return fd
    }

    // MARK: links

    /// Creates a veth pair `name` ↔ `peer`; the peer end goes into `peerNamespace` if given.
    /// Both ends start down.
    public func createVethPair(_ name: String, peer: String, peerNamespace: String? = nil) throws {
        try validateInterfaceName(name)
        try validateInterfaceName(peer)
        let op = "creating veth pair \(name)/\(peer)" + (peerNamespace.map { " (peer in \($0))" } ?? "")
        let nsfd = try peerNamespace.map { try openNamespace($0, for: op) }
        defer { if let nsfd { close(nsfd) } }
        try locked {
            guard let link = rtnl_link_veth_alloc() else { throw SystemCallError(op, errno: ENOMEM) }
            defer { rtnl_link_put(link) }
            rtnl_link_set_name(link, name)
            guard let peerLink = rtnl_link_veth_get_peer(link) else { throw SystemCallError(op, errno: ENOMEM) }
            defer { rtnl_link_put(peerLink) }
            rtnl_link_set_name(peerLink, peer)
            if let nsfd { rtnl_link_set_ns_fd(peerLink, nsfd) }
            try check(op, rtnl_link_add(socket, link, NLM_F_CREATE | NLM_F_EXCL))
        }
    }

    /// Creates an XFRM interface `name` with `ifID` (route-based kernel IPsec: SAs and
    /// policies carrying the same if_id use it), in this handle's namespace. Hosts without
    /// XFRM interfaces refuse it ("operation not supported").
    public func createXfrmInterface(_ name: String, ifID: UInt32) throws {
        try validateInterfaceName(name)
        let op = "creating XFRM interface \(name) (if_id \(ifID))"
        try locked {
            guard let link = rtnl_link_xfrmi_alloc() else { throw SystemCallError(op, errno: ENOMEM) }
            defer { rtnl_link_put(link) }
            rtnl_link_set_name(link, name)
            _ = rtnl_link_xfrmi_set_if_id(link, ifID)
            try check(op, rtnl_link_add(socket, link, NLM_F_CREATE | NLM_F_EXCL))
        }
    }

    /// Creates a persistent TAP interface (via /dev/net/tun, TUNSETPERSIST) in this namespace.
    public func createTap(_ name: String) throws {
        try validateInterfaceName(name)
        // TUNSETIFF on an existing persistent TAP would silently attach to it: refuse instead.
        if try link(named: name) != nil {
            throw SystemCallError("creating TAP \(name)\(place)", errno: EEXIST)
        }
        var step: Int32 = 0
        let rc = try NetworkNamespace.run(inOptional: namespace) { cwarren_tap_create(name, 1, &step) }
        if rc < 0 {
            throw SystemCallError("creating TAP \(name)\(place) (\(String(cString: cwarren_tap_step_name(step))))", errno: -rc)
        }
    }

    /// Deletes a link (for a veth pair, both ends go).
    public func deleteLink(_ name: String) throws {
        try validateInterfaceName(name)
        try locked {
            guard let link = rtnl_link_alloc() else { throw SystemCallError("deleting link \(name)", errno: ENOMEM) }
            defer { rtnl_link_put(link) }
            rtnl_link_set_name(link, name)
            try check("deleting link \(name)", rtnl_link_delete(socket, link))
        }
    }

    private func change(_ name: String, _ op: String, _ configure: (OpaquePointer) throws -> Void) throws {
        try locked {
            let orig = try requireLink(name, for: op)
            defer { rtnl_link_put(orig) }
            guard let change = rtnl_link_alloc() else { throw SystemCallError(op, errno: ENOMEM) }
            defer { rtnl_link_put(change) }
            try configure(change)
            try check(op, rtnl_link_change(socket, orig, change, 0))
        }
    }

    /// Sets a link administratively up or down.
    public func setLinkUp(_ name: String, _ up: Bool) throws {
        try change(name, "setting link \(name) \(up ? "up" : "down")") { c in
            if up { rtnl_link_set_flags(c, 0x1) } else { rtnl_link_unset_flags(c, 0x1) }
        }
    }

    /// Sets a link's MTU.
    public func setMTU(_ name: String, _ mtu: UInt32) throws {
        try change(name, "setting MTU \(mtu) on \(name)") { c in rtnl_link_set_mtu(c, mtu) }
    }

    /// Sets a link's MAC address ("aa:bb:cc:dd:ee:ff").
    public func setMAC(_ name: String, _ mac: String) throws {
        let bytes = try parseMAC(mac, argument: "mac")
        try change(name, "setting MAC \(mac) on \(name)") { c in
            guard let addr = bytes.withUnsafeBytes({ nl_addr_build(AF_LLC, $0.baseAddress, 6) }) else {
                throw SystemCallError("setting MAC \(mac) on \(name)", errno: ENOMEM)
            }
            defer { nl_addr_put(addr) }
            rtnl_link_set_addr(c, addr)
        }
    }

    /// Moves a link into another named namespace (it disappears from this one).
    public func moveLink(_ name: String, toNamespace target: String) throws {
        let op = "moving link \(name) to namespace \(target)"
        let fd = try openNamespace(target, for: op)
        defer { close(fd) }
        try change(name, op) { c in rtnl_link_set_ns_fd(c, fd) }
    }

    /// The link named `name`, or nil when there is none.
    public func link(named name: String) throws -> LinkInfo? {
        try locked {
            guard let link = try kernelLink(name, for: "looking up link \(name)") else { return nil }
            defer { rtnl_link_put(link) }
            return LinkInfo(rtnlLink: link)
        }
    }

    /// All links of the namespace, in index order.
    public func links() throws -> [LinkInfo] {
        try locked { try dumpLinks().sorted { $0.index < $1.index } }
    }

    private func dumpLinks() throws -> [LinkInfo] {
        var cache: OpaquePointer?
        try check("listing links", rtnl_link_alloc_cache(socket, AF_UNSPEC, &cache))
        defer { nl_cache_free(cache) }
        var result: [LinkInfo] = []
        var object = nl_cache_get_first(cache)
        while let o = object {
            result.append(LinkInfo(rtnlLink: o))
            object = nl_cache_get_next(o)
        }
        return result
    }

    // MARK: addresses

    private func address(_ cidr: String, _ ifname: String, _ op: String,
                         _ body: (OpaquePointer) throws -> Int32) throws {
        let prefix = try IPPrefix.parse(cidr, argument: "cidr")
        try locked {
            let link = try requireLink(ifname, for: op)
            let index = rtnl_link_get_ifindex(link)
            rtnl_link_put(link)
            guard let addr = rtnl_addr_alloc(), let local = prefix.makeNetlinkAddress() else {
                throw SystemCallError(op, errno: ENOMEM)
            }
            defer { rtnl_addr_put(addr); nl_addr_put(local) }
            rtnl_addr_set_ifindex(addr, index)
            try check(op, rtnl_addr_set_local(addr, local))
            rtnl_addr_set_prefixlen(addr, Int32(prefix.prefixLength))
            try check(op, try body(addr))
        }
    }

    /// Adds an address ("100.64.1.1/24"; without "/n" a host prefix) to an interface.
    public func addAddress(_ cidr: String, to ifname: String) throws {
        let op = "adding address \(cidr) to \(ifname)"
        try address(cidr, ifname, op) { rtnl_addr_add(socket, $0, NLM_F_EXCL) }
    }

    /// Removes an address ("100.64.1.1/24") from an interface.
    public func deleteAddress(_ cidr: String, from ifname: String) throws {
        let op = "deleting address \(cidr) from \(ifname)"
        try address(cidr, ifname, op) { rtnl_addr_delete(socket, $0, 0) }
    }

    /// The addresses on an interface as CIDR strings ("100.64.1.1/24"), IPv4 first, then
    /// IPv6 (including link-local ones), each in kernel order.
    public func addresses(on ifname: String) throws -> [String] {
        try locked {
            let op = "listing addresses on \(ifname)"
            let link = try requireLink(ifname, for: op)
            let index = rtnl_link_get_ifindex(link)
            rtnl_link_put(link)
            var cache: OpaquePointer?
            try check(op, rtnl_addr_alloc_cache(socket, &cache))
            defer { nl_cache_free(cache) }
            var v4: [String] = [], v6: [String] = []
            var object = nl_cache_get_first(cache)
            while let o = object {
                if rtnl_addr_get_ifindex(o) == index, let local = rtnl_addr_get_local(o) {
                    var p = IPPrefix(netlink: local)
                    p.prefixLength = Int(rtnl_addr_get_prefixlen(o))
                    if p.family == AF_INET { v4.append(p.cidrText) } else { v6.append(p.cidrText) }
                }
                object = nl_cache_get_next(o)
            }
            return v4 + v6
        }
    }

    // MARK: routes

    /// Builds a libnl route from a spec (caller must rtnl_route_put it). Lock held.
    private func makeRoute(_ spec: RouteSpec, op: String) throws -> OpaquePointer {
        let dst = try IPPrefix.parse(spec.destination, argument: "destination", allowDefault: true)
        guard dst.isNetworkAddress else {
            throw ArgumentError(argument: "destination", value: spec.destination,
                                reason: "host bits are set (did you mean \(dst.network.cidrText)?)")
        }
        let gateway = try spec.gateway.map { text -> IPPrefix in
            let g = try IPPrefix.parse(text, argument: "gateway")
            guard g.family == dst.family, g.prefixLength == g.maxLength else {
                throw ArgumentError(argument: "gateway", value: text, reason: "must be a single address of the destination's family")
            }
            return g
        }
        let source = try spec.preferredSource.map { try IPPrefix.parse($0, argument: "preferredSource") }
        var index: Int32?
        if let ifname = spec.outputInterface {
            let link = try requireLink(ifname, for: op)
            index = rtnl_link_get_ifindex(link)
            rtnl_link_put(link)
        }
        guard let route = rtnl_route_alloc() else { throw SystemCallError(op, errno: ENOMEM) }
        var ok = false
        defer { if !ok { rtnl_route_put(route) } }
        rtnl_route_set_family(route, UInt8(dst.family))
        guard let dstAddr = dst.makeNetlinkAddress() else { throw SystemCallError(op, errno: ENOMEM) }
        defer { nl_addr_put(dstAddr) }
        try check(op, rtnl_route_set_dst(route, dstAddr))
        rtnl_route_set_table(route, spec.table)
        if let p = spec.routeProtocol { rtnl_route_set_protocol(route, p) }
        if let m = spec.metric { rtnl_route_set_priority(route, m) }
        if let s = spec.scope { rtnl_route_set_scope(route, s) }
        try check(op, rtnl_route_set_type(route, spec.type.rawValue))
        if let source, let a = source.makeNetlinkAddress() {
            defer { nl_addr_put(a) }
            try check(op, rtnl_route_set_pref_src(route, a))
        }
        if gateway != nil || index != nil {
            guard let nh = rtnl_route_nh_alloc() else { throw SystemCallError(op, errno: ENOMEM) }
            if let gateway, let a = gateway.makeNetlinkAddress() {
                rtnl_route_nh_set_gateway(nh, a)
                nl_addr_put(a)
            }
            if let index { rtnl_route_nh_set_ifindex(nh, index) }
            rtnl_route_add_nexthop(route, nh) // the route owns nh now
        }
        ok = true
        return route
    }

    private func routeOperation(_ verb: String, _ spec: RouteSpec,
                                _ body: (OpaquePointer) -> Int32) throws {
        let op = "\(verb) route \(spec.summary)"
        try locked {
            let route = try makeRoute(spec, op: op)
            defer { rtnl_route_put(route) }
            try check(op, body(route))
        }
    }

    /// Adds a route; fails if one with the same table, destination and metric exists.
    public func addRoute(_ spec: RouteSpec) throws {
        try routeOperation("adding", spec) { rtnl_route_add(socket, $0, NLM_F_EXCL) }
    }

    /// Adds a route or replaces the one with the same table, destination and metric.
    public func replaceRoute(_ spec: RouteSpec) throws {
        try routeOperation("replacing", spec) { rtnl_route_add(socket, $0, NLM_F_REPLACE) }
    }

    /// Deletes the first route matching `spec`: destination and table always; gateway,
    /// output interface, protocol, metric, scope and a non-unicast type only when given.
    /// (The route is looked up first and deleted with its exact attributes, since libnl
    /// cannot send the "any scope" wildcard.) Throws a not-found error when nothing matches.
    public func deleteRoute(_ spec: RouteSpec) throws {
        let op = "deleting route \(spec.summary)"
        let dst = try IPPrefix.parse(spec.destination, argument: "destination", allowDefault: true)
        guard dst.isNetworkAddress else {
            throw ArgumentError(argument: "destination", value: spec.destination,
                                reason: "host bits are set (did you mean \(dst.network.cidrText)?)")
        }
        let gateway = try spec.gateway.map { try IPPrefix.parse($0, argument: "gateway").addressText }
        try locked {
            var index: Int32?
            if let ifname = spec.outputInterface {
                let link = try requireLink(ifname, for: op)
                index = rtnl_link_get_ifindex(link)
                rtnl_link_put(link)
            }
            var cache: OpaquePointer?
            try check(op, rtnl_route_alloc_cache(socket, dst.family, 0, &cache))
            defer { nl_cache_free(cache) }
            var object = nl_cache_get_first(cache)
            while let o = object {
                let info = RouteInfo(rtnlRoute: o, names: [:])
                if info.table == spec.table, info.destination == dst.cidrText,
                   gateway == nil || info.gateway == gateway,
                   index == nil || info.outputInterfaceIndex == index,
                   spec.routeProtocol == nil || info.routeProtocol == spec.routeProtocol,
                   spec.metric == nil || info.metric == spec.metric,
                   spec.scope == nil || info.scope == spec.scope,
                   spec.type == .unicast || info.type == spec.type {
                    try check(op, rtnl_route_delete(socket, o, 0))
                    return
                }
                object = nl_cache_get_next(o)
            }
            throw NetlinkError(operation: op + place, code: NLE_OBJ_NOTFOUND, systemError: ESRCH,
                               kernelMessage: "no such route")
        }
    }

    /// The IPv4 routes of `table` (254 = main), with interface names resolved.
    public func routes(table: UInt32 = mainRoutingTable) throws -> [RouteInfo] {
        try locked { try dumpRoutes(tables: [table]) }
    }

    /// IPv4 routes of the given tables (nil: all). Lock held by the caller.
    func dumpRoutes(tables: Set<UInt32>?) throws -> [RouteInfo] {
        var names: [Int32: String] = [:]
        for link in try dumpLinks() { names[link.index] = link.name }
        var cache: OpaquePointer?
        try check("listing routes", rtnl_route_alloc_cache(socket, AF_INET, 0, &cache))
        defer { nl_cache_free(cache) }
        var result: [RouteInfo] = []
        var object = nl_cache_get_first(cache)
        while let o = object {
            if tables?.contains(rtnl_route_get_table(o)) ?? true, rtnl_route_get_flags(o) & 0x200 == 0 /* RTM_F_CLONED */ {
                result.append(RouteInfo(rtnlRoute: o, names: names))
            }
            object = nl_cache_get_next(o)
        }
        return result
    }

    /// A dump of links and routes taken together (for RouteMonitor snapshots).
    func snapshot(tables: Set<UInt32>?) throws -> (links: [LinkInfo], routes: [RouteInfo]) {
        try locked {
            let links = try dumpLinks()
            return (links, try dumpRoutes(tables: tables))
        }
    }
}
