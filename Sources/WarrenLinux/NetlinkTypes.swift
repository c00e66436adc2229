// Value types that describe links and routes as WarrenLinux hands them out: plain Sendable
// structs with addresses as strings, decoupled from libnl's reference-counted objects (those
// never leave the thread holding the Netlink lock or the RouteMonitor thread).
// Threading: values.

#if canImport(Glibc)
import Glibc
#endif
import CNetlink

/// A network interface as the kernel reports it.
public struct LinkInfo: Sendable, Hashable, Codable {
    /// The interface index (unique within its namespace).
    public var index: Int32
    /// The interface name, e.g. "wlt0a".
    public var name: String
    /// The link-layer address as "aa:bb:cc:dd:ee:ff", or nil if it has none.
    public var mac: String?
    /// The MTU in bytes.
    public var mtu: UInt32
    /// Administratively up (IFF_UP).
    public var isUp: Bool
    /// Carrier present (IFF_LOWER_UP).
    public var hasCarrier: Bool
    /// RFC 2863 operational state.
    public var operState: LinkOperState
    /// The link kind ("veth", "tun", "bridge"…), nil for physical and loopback devices.
    public var kind: String?
    /// The raw interface flags (IFF_*).
    public var flags: UInt32

    /// Creates a value (mostly for tests and fakes).
    public init(index: Int32, name: String, mac: String?, mtu: UInt32, isUp: Bool, hasCarrier: Bool,
                operState: LinkOperState, kind: String?, flags: UInt32) {
        self.index = index; self.name = name; self.mac = mac; self.mtu = mtu; self.isUp = isUp
        self.hasCarrier = hasCarrier; self.operState = operState; self.kind = kind; self.flags = flags
    }
}

/// RFC 2863 operational state of a link (IF_OPER_*).
public enum LinkOperState: String, Sendable, Hashable, Codable {
    case unknown, notPresent, down, lowerLayerDown, testing, dormant, up

    init(kernel value: UInt8) {
        switch value {
        case 1: self = .notPresent
        case 2: self = .down
        case 3: self = .lowerLayerDown
        case 4: self = .testing
        case 5: self = .dormant
        case 6: self = .up
        default: self = .unknown
        }
    }
}

/// Well-known route protocol numbers (rtm_protocol, /etc/iproute2/rt_protos).
public enum RouteProtocol {
    public static let unspecified: UInt8 = 0
    public static let redirect: UInt8 = 1
    public static let kernel: UInt8 = 2
    public static let boot: UInt8 = 3
    public static let `static`: UInt8 = 4
    public static let bird: UInt8 = 12
    public static let dhcp: UInt8 = 16
}

/// Route scopes (rtm_scope).
public enum RouteScope {
    public static let universe: UInt8 = 0
    public static let site: UInt8 = 200
    public static let link: UInt8 = 253
    public static let host: UInt8 = 254
    public static let nowhere: UInt8 = 255
}

/// A route type (rtm_type).
public struct RouteType: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let unicast = RouteType(rawValue: 1)
    public static let local = RouteType(rawValue: 2)
    public static let broadcast = RouteType(rawValue: 3)
    public static let anycast = RouteType(rawValue: 4)
    public static let multicast = RouteType(rawValue: 5)
    public static let blackhole = RouteType(rawValue: 6)
    public static let unreachable = RouteType(rawValue: 7)
    public static let prohibit = RouteType(rawValue: 8)
    public static let `throw` = RouteType(rawValue: 9)

    public var description: String {
        switch rawValue {
        case 1: "unicast"
        case 2: "local"
        case 3: "broadcast"
        case 4: "anycast"
        case 5: "multicast"
        case 6: "blackhole"
        case 7: "unreachable"
        case 8: "prohibit"
        case 9: "throw"
        default: "type \(rawValue)"
        }
    }
}

/// The main routing table's number.
public let mainRoutingTable: UInt32 = 254

/// A route to add, replace or delete.
public struct RouteSpec: Sendable, Hashable, Codable {
    /// The destination prefix, "100.64.9.0/24" (host bits must be zero) or "default" (0.0.0.0/0).
    public var destination: String
    /// The next hop address, nil for a directly connected route.
    public var gateway: String?
    /// The output interface name, nil to let the kernel pick by the gateway.
    public var outputInterface: String?
    /// The routing table (254 = main).
    public var table: UInt32
    /// The protocol (e.g. `RouteProtocol.bird`). nil: `static` when adding; any when deleting.
    public var routeProtocol: UInt8?
    /// The metric (priority). nil: 0 when adding; any when deleting.
    public var metric: UInt32?
    /// The scope. nil: link for routes without a gateway, universe otherwise.
    public var scope: UInt8?
    /// The route type (unicast, blackhole, unreachable, prohibit…).
    public var type: RouteType
    /// The preferred source address, if any.
    public var preferredSource: String?

    /// Creates a route description.
    public init(destination: String, gateway: String? = nil, outputInterface: String? = nil,
                table: UInt32 = mainRoutingTable, routeProtocol: UInt8? = nil, metric: UInt32? = nil,
                scope: UInt8? = nil, type: RouteType = .unicast, preferredSource: String? = nil) {
        self.destination = destination; self.gateway = gateway; self.outputInterface = outputInterface
        self.table = table; self.routeProtocol = routeProtocol; self.metric = metric; self.scope = scope
        self.type = type; self.preferredSource = preferredSource
    }

    /// "100.64.9.0/24 via 100.64.1.1 dev wlt0a table 100" — for messages.
    public var summary: String {
        var s = destination
        if let gateway { s += " via \(gateway)" }
        if let outputInterface { s += " dev \(outputInterface)" }
        if type != .unicast { s = "\(type) " + s }
        if table != mainRoutingTable { s += " table \(table)" }
        return s
    }
}

/// A route as the kernel reports it (first next hop only for multipath routes).
public struct RouteInfo: Sendable, Hashable, Codable {
    /// The destination prefix in canonical form; the default route is "0.0.0.0/0".
    public var destination: String
    /// The first next hop's gateway, if any.
    public var gateway: String?
    /// The first next hop's output interface name, if known.
    public var outputInterface: String?
    /// The first next hop's output interface index, if any.
    public var outputInterfaceIndex: Int32?
    /// The routing table.
    public var table: UInt32
    /// The protocol that installed it (`RouteProtocol`).
    public var routeProtocol: UInt8
    /// The metric (priority).
    public var metric: UInt32
    /// The scope (`RouteScope`).
    public var scope: UInt8
    /// The route type.
    public var type: RouteType
    /// The preferred source address, if any.
    public var preferredSource: String?

    /// Creates a value (mostly for tests and fakes).
    public init(destination: String, gateway: String?, outputInterface: String?, outputInterfaceIndex: Int32?,
                table: UInt32, routeProtocol: UInt8, metric: UInt32, scope: UInt8, type: RouteType,
                preferredSource: String?) {
        self.destination = destination; self.gateway = gateway; self.outputInterface = outputInterface
        self.outputInterfaceIndex = outputInterfaceIndex; self.table = table; self.routeProtocol = routeProtocol
        self.metric = metric; self.scope = scope; self.type = type; self.preferredSource = preferredSource
    }

    /// What identifies a route in the kernel's IPv4 FIB: table, destination and metric
    /// (TOS is not exposed). Two RouteInfos with equal keys replace one another.
    public var key: RouteKey { RouteKey(table: table, destination: destination, metric: metric) }
}

/// The identity of a route within a namespace (see `RouteInfo.key`).
public struct RouteKey: Sendable, Hashable, Codable {
    /// The routing table.
    public var table: UInt32
    /// The destination prefix in canonical form.
    public var destination: String
    /// The metric (priority).
    public var metric: UInt32
}

// MARK: - conversions from libnl objects (call only while owning the object)

extension LinkInfo {
    /// Reads a `struct rtnl_link *`.
    init(rtnlLink link: OpaquePointer) {
        let flags = rtnl_link_get_flags(link)
        var mac: String?
        if let addr = rtnl_link_get_addr(link), nl_addr_get_len(addr) == 6, let raw = nl_addr_get_binary_addr(addr) {
            mac = formatMAC(UnsafeRawBufferPointer(start: raw, count: 6))
        }
        self.init(index: rtnl_link_get_ifindex(link),
                  name: rtnl_link_get_name(link).map { String(cString: $0) } ?? "",
                  mac: mac,
                  mtu: rtnl_link_get_mtu(link),
                  isUp: flags & 0x1 != 0,
                  hasCarrier: flags & 0x10000 != 0,
                  operState: LinkOperState(kernel: rtnl_link_get_operstate(link)),
                  kind: rtnl_link_get_type(link).map { String(cString: $0) },
                  flags: flags)
    }
}

extension RouteInfo {
    /// Reads a `struct rtnl_route *`; `names` maps interface indexes to names.
    init(rtnlRoute route: OpaquePointer, names: [Int32: String]) {
        let family = Int32(rtnl_route_get_family(route))
        let dst = IPPrefix(netlink: rtnl_route_get_dst(route), defaultFamily: family)
        var gateway: String?
        var index: Int32?
        if rtnl_route_get_nnexthops(route) > 0, let nh = rtnl_route_nexthop_n(route, 0) {
            if let gw = rtnl_route_nh_get_gateway(nh), nl_addr_get_len(gw) > 0 {
                gateway = IPPrefix(netlink: gw, defaultFamily: family).addressText
            }
            let i = rtnl_route_nh_get_ifindex(nh)
            if i > 0 { index = i }
        }
        var source: String?
        if let src = rtnl_route_get_pref_src(route), nl_addr_get_len(src) > 0 {
            source = IPPrefix(netlink: src, defaultFamily: family).addressText
        }
        self.init(destination: dst.network.cidrText, gateway: gateway,
                  outputInterface: index.flatMap { names[$0] }, outputInterfaceIndex: index,
                  table: rtnl_route_get_table(route), routeProtocol: rtnl_route_get_protocol(route),
                  metric: rtnl_route_get_priority(route), scope: rtnl_route_get_scope(route),
                  type: RouteType(rawValue: rtnl_route_get_type(route)), preferredSource: source)
    }
}
