// RouteTable: one router's routes, searchable by longest prefix match.
//
// A binary trie over destination prefixes (node arrays, no per-node objects) plus a
// dictionary from prefix to the routes for exactly that prefix. The router's own
// addresses sit in the same trie as /32 "local" entries so that a lookup also tells
// whether the packet is for the router itself.
//
// Besides the answer, a lookup returns how many leading bits of the destination the
// answer depended on (`maskLength`): the depth at which the walk left the trie, plus
// one when the other branch exists. Every destination that agrees on those bits walks
// the same nodes and gets the same answer, so the simulator can install a megaflow that
// matches only that many bits of ip_dst (OVS's prefix tracking, simplified).
//
// Invariants: `entries[p]` is non-empty iff the trie node of `p` is marked; nodes of
// removed prefixes may linger unmarked (they only make masks longer, never wrong) and
// are compacted when they outnumber live ones.
// Threading: plain value.

public struct RouteTable: Sendable {
    struct Node: Sendable {
        var zero: Int32 = 0
        var one: Int32 = 0
        var marked = false
        var local = false
    }

    private var nodes: [Node] = [Node()]
    /// Routes by exact destination prefix.
    public private(set) var entries: [IPv4Prefix: [Route]] = [:]
    /// The router's own addresses.
    public private(set) var locals: Set<IPv4Address> = []
    private var deadNodes = 0

    public init() {}

    public var routeCount: Int { entries.values.reduce(0) { $0 + $1.count } }

    public mutating func insert(_ route: Route) {
        entries[route.destination, default: []].append(route)
        let n = node(for: route.destination.address, length: route.destination.length, create: true)
        nodes[Int(n)].marked = true
    }

    public mutating func remove(_ route: Route) {
        guard var list = entries[route.destination] else { return }
        list.removeAll { $0.id == route.id }
        if list.isEmpty {
            entries[route.destination] = nil
            let n = node(for: route.destination.address, length: route.destination.length, create: false)
            if n >= 0 { nodes[Int(n)].marked = false }
            deadNodes += Int(route.destination.length)
            compactIfNeeded()
        } else {
            entries[route.destination] = list
        }
    }

    public mutating func addLocal(_ ip: IPv4Address) {
        locals.insert(ip)
        let n = node(for: ip, length: 32, create: true)
        nodes[Int(n)].local = true
    }

    public mutating func removeLocal(_ ip: IPv4Address) {
        locals.remove(ip)
        let n = node(for: ip, length: 32, create: false)
        if n >= 0 { nodes[Int(n)].local = false }
        deadNodes += 32
        compactIfNeeded()
    }

    private mutating func node(for address: IPv4Address, length: UInt8, create: Bool) -> Int32 {
        var n: Int32 = 0
        for depth in 0..<Int(length) {
            let bit = (address.rawValue >> (31 - UInt32(depth))) & 1
            var next = bit == 0 ? nodes[Int(n)].zero : nodes[Int(n)].one
            if next == 0 {
                guard create else { return -1 }
                nodes.append(Node())
                next = Int32(nodes.count - 1)
                if bit == 0 { nodes[Int(n)].zero = next } else { nodes[Int(n)].one = next }
            }
            n = next
        }
        return n
    }

    private mutating func compactIfNeeded() {
        guard deadNodes > 64, deadNodes > nodes.count / 2 else { return }
        var fresh = RouteTable()
        for (_, routes) in entries { for r in routes { fresh.insert(r) } }
        for ip in locals { fresh.addLocal(ip) }
        self = fresh
    }

    /// The result of a longest-prefix-match lookup.
    public struct Lookup: Sendable {
        /// The destination is one of the router's own addresses.
        public var isLocal = false
        /// The matched prefix, if any route matched.
        public var prefix: IPv4Prefix?
        /// The usable routes of the matched prefix with the lowest weight (several: ECMP).
        public var routes: [Route] = []
        /// Routes that were considered but not usable (their port is down), for tagging.
        public var skipped: [Route] = []
        /// Leading bits of the destination this answer depends on.
        public var maskLength: UInt8 = 0
    }

    /// Longest prefix match for `destination`, skipping routes for which `usable` is false.
    public func lookup(_ destination: IPv4Address, usable: (Route) -> Bool) -> Lookup {
        var result = Lookup()
        var n = 0
        var depth = 0
        var marked: [UInt8] = []
        let d = destination.rawValue
        while true {
            let node = nodes[n]
            if node.marked { marked.append(UInt8(depth)) }
            if depth == 32 {
                result.isLocal = node.local
                result.maskLength = 32
                break
            }
            let bit = (d >> (31 - UInt32(depth))) & 1
            let next = bit == 0 ? node.zero : node.one
            if next == 0 {
                let other = bit == 0 ? node.one : node.zero
                result.maskLength = UInt8(other != 0 ? depth + 1 : depth)
                break
            }
            n = Int(next)
            depth += 1
        }
        for length in marked.reversed() {
            let prefix = IPv4Prefix(containing: destination, length: length)
            guard let candidates = entries[prefix] else { continue }
            var best: [Route] = []
            var bestWeight = UInt32.max
            for r in candidates {
                guard usable(r) else { result.skipped.append(r); continue }
                if r.weight < bestWeight {
                    bestWeight = r.weight
                    best = [r]
                } else if r.weight == bestWeight {
                    best.append(r)
                }
            }
            if !best.isEmpty {
                // Deterministic ECMP order regardless of insertion order.
                result.routes = best.count > 1 ? best.sorted { $0.id < $1.id } : best
                result.prefix = prefix
                return result
            }
        }
        return result
    }

    /// Every route, sorted by prefix then weight.
    public var allRoutes: [Route] {
        entries.values.flatMap { $0 }.sorted {
            ($0.destination, $0.weight, $0.id) < ($1.destination, $1.weight, $1.id)
        }
    }
}

/// A reference implementation of longest prefix match by linear scan (the oracle).
public func linearScanLookup(_ routes: [Route], _ destination: IPv4Address, usable: (Route) -> Bool) -> [Route] {
    var bestLength = -1
    var best: [Route] = []
    var bestWeight = UInt32.max
    for r in routes where r.destination.contains(destination) && usable(r) {
        let l = Int(r.destination.length)
        if l > bestLength {
            bestLength = l
            bestWeight = r.weight
            best = [r]
        } else if l == bestLength {
            if r.weight < bestWeight {
                bestWeight = r.weight
                best = [r]
            } else if r.weight == bestWeight {
                best.append(r)
            }
        }
    }
    return best.sorted { $0.id < $1.id }
}
