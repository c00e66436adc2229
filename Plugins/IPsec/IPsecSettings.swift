// IPsec settings shared by both VPN plugins (`pluginSettings.ipsec` in the agent
// configuration): the uplink, the ESP backend, the pool for instance links, daemon paths.
//
// The uplink is a virtual bridge ("uplink" by default) with one port bound to the host
// interface that reaches the Internet; each IPsec instance gets a port on it for its
// public address, so IKE and ESP leave through the datapath like any other traffic.

import Foundation
import WarrenAgent
import WarrenCore
import WarrenRPC

public struct IPsecSettings: Codable, Sendable {
    public struct Uplink: Codable, Sendable {
        /// The host interface towards the provider network.
        public var interface: String
        /// The provider gateway for instances' public addresses.
        public var gateway: IPv4Address
        /// Prefix length of the public subnet (instances get publicIp/prefixLength).
        public var prefixLength: UInt8
        /// Name of the virtual bridge joining the uplink and the instances.
        public var bridge: String?
    }

    public var uplink: Uplink?
    /// "auto" (probe), "libipsec" or "xfrm".
    public var backend: String?
    /// Link-local pool for router ↔ instance links (/30 each).
    public var linkPool: IPv4Prefix?
    /// TCP MSS for SYNs crossing a tunnel (tunnel MTU 1400 on libipsec → 1360).
    public var mssClamp: UInt16?
    public var charonPath: String?
    public var birdPath: String?

    public init() {}

    public var bridgeName: String { uplink?.bridge ?? "uplink" }
    public var pool: IPv4Prefix { linkPool ?? IPv4Prefix("169.254.252.0/22")! }
    public var effectiveMSS: UInt16 { mssClamp ?? 1360 }
    public var charon: String { charonPath ?? "/usr/lib/ipsec/charon" }
    public var bird: String { birdPath ?? "/usr/sbin/bird" }

    /// Reads `pluginSettings.ipsec`.
    public static func from(_ context: PluginContext) throws -> IPsecSettings {
        guard let v = context.sharedConfiguration["ipsec"] else { return IPsecSettings() }
        do { return try JSONValueDecoder().decode(IPsecSettings.self, from: v) } catch let e as DecodingError {
            let rpc = RPCError(decodingError: e)
            throw IPsecError.configuration("pluginSettings.ipsec.\(rpc.data?["field"]?.stringValue ?? "?"): \(rpc.data?["reason"]?.stringValue ?? rpc.message)")
        }
    }

    /// The ESP backend to use: the configured one, or what the kernel supports.
    public var resolvedBackend: String {
        switch backend ?? "auto" {
        case "libipsec", "xfrm": return backend!
        default: return IPsecSettings.probedBackend
        }
    }

    /// What this host supports, probed once per process.
    static let probedBackend = kernelHasESP() ? "xfrm" : "libipsec"

    /// Probes for kernel ESP and XFRM interfaces (loaded, built in, or loadable).
    static func kernelHasESP() -> Bool {
        let fm = FileManager.default
        func module(_ name: String) -> Bool {
            if fm.fileExists(atPath: "/sys/module/\(name)") { return true }
            var u = utsname()
            uname(&u)
            let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            for dir in ["kernel/net/ipv4", "kernel/net/xfrm"] {
                for ext in [".ko", ".ko.xz", ".ko.zst"] where fm.fileExists(atPath: "/lib/modules/\(release)/\(dir)/\(name)\(ext)") {
                    return true
                }
            }
            return false
        }
        return module("esp4") && module("xfrm_interface")
    }
}

public enum IPsecError: Error, CustomStringConvertible {
    case configuration(String)
    case setup(String)

    public var description: String {
        switch self {
        case .configuration(let m): "IPsec configuration: \(m)"
        case .setup(let m): m
        }
    }
}

/// The uplink bridge and its host port, created on first use.
public enum UplinkBridge {
    /// Makes sure the uplink bridge exists and is bound to the uplink interface; returns its ID.
    public static func ensure(_ settings: IPsecSettings, network: Network) async throws -> ResourceID {
        guard let uplink = settings.uplink else {
            throw RPCError.failedPrecondition(field: "publicIp", reason: "no uplink is configured (pluginSettings.ipsec.uplink in the agent configuration)")
        }
        let name = settings.bridgeName
        // Instances are built concurrently: whoever comes second finds the bridge (and
        // port) created by the first inside the same serialized mutation and keeps it.
        let id = await network.newID()
        let t = try await network.mutate(touching: [ResourceRef(.bridge, id)], event: "bridge.created") { t throws(TopologyError) in
            t.resolve(.bridge, name) == nil ? try t.addBridge(Bridge(id: id, name: name)) : []
        }
        guard let bridgeID = t.resolve(.bridge, name) else { throw IPsecError.setup("uplink bridge \(name) vanished") }
        let portName = String((name + "-" + uplink.interface).prefix(64))
        let pid = await network.newID()
        let mac = await network.newMAC()
        try await network.mutate(touching: [ResourceRef(.port, pid)], event: "port.created") { t throws(TopologyError) in
            t.resolve(.port, portName) == nil
                ? try t.addPort(Port(id: pid, name: portName, device: bridgeID, binding: .exterior(interface: uplink.interface), mac: mac))
                : []
        }
        return bridgeID
    }

    /// Whether `ip` can sit on the uplink subnet.
    public static func check(_ ip: IPv4Address, settings: IPsecSettings, field: String) throws {
        guard let u = settings.uplink else {
            throw RPCError.failedPrecondition(field: field, reason: "no uplink is configured (pluginSettings.ipsec.uplink)")
        }
        let net = IPv4Prefix(containing: u.gateway, length: u.prefixLength)
        guard net.contains(ip), ip != u.gateway, ip != net.address, ip != net.broadcastAddress else {
            throw RPCError.invalidParams(field: field, reason: "\(ip) is not a usable address of the uplink subnet \(net) (gateway \(u.gateway))")
        }
    }
}

/// Public addresses in use by any IPsec instance of any plugin (one per agent process).
public actor PublicAddressRegistry {
    public static let shared = PublicAddressRegistry()
    private var owners: [IPv4Address: String] = [:]

    /// Claims `ip` for `owner`; throws naming `field` if someone else holds it.
    public func claim(_ ip: IPv4Address, owner: String, field: String) throws {
        if let o = owners[ip], o != owner {
            throw RPCError.conflict(field: field, reason: "public IP \(ip) is already used by \(o)")
        }
        owners[ip] = owner
    }

    public func release(owner: String) {
        owners = owners.filter { $0.value != owner }
    }

    public func release(_ ip: IPv4Address, owner: String) {
        if owners[ip] == owner { owners[ip] = nil }
    }
}

/// Allocates /30 links for router ↔ instance from the pool, avoiding every prefix in use.
public enum LinkAllocator {
    public static func allocate(pool: IPv4Prefix, avoiding used: [IPv4Prefix]) throws -> IPv4Prefix {
        let count = 1 << (30 - Int(pool.length))
        for i in 0..<count {
            let p = IPv4Prefix(containing: IPv4Address(rawValue: pool.address.rawValue + UInt32(i * 4)), length: 30)
            if !used.contains(where: { $0.overlaps(p) }) { return p }
        }
        throw RPCError.failedPrecondition(field: "virtualRouter", reason: "the instance link pool \(pool) is exhausted")
    }
}
