// warrenctl: the operator's command-line client for warren-agent.
//
// Every subcommand is one or a few JSON-RPC calls over the agent's Unix socket
// (--socket, or $WARREN_SOCKET, or /var/lib/warren/warren.sock). Output is a readable
// table by default and the raw JSON result with --json. Errors print the agent's
// message and the offending field, and exit non-zero.

import ArgumentParser
import Foundation
import WarrenRPC

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The agent's socket (default: $WARREN_SOCKET or /var/lib/warren/warren.sock).")
    var socket: String?

    @Flag(name: .long, help: "Print the JSON result instead of a table.")
    var json = false

    var socketPath: String {
        socket ?? ProcessInfo.processInfo.environment["WARREN_SOCKET"] ?? "/var/lib/warren/warren.sock"
    }

    /// Calls `method` and prints the result (as JSON, or through `table`).
    func run(_ method: String, _ params: JSONValue? = nil, table: ((JSONValue) -> String)? = nil) throws {
        let result = try call(method, params)
        if json || table == nil {
            print(result.pretty)
        } else {
            print(table!(result), terminator: "")
        }
    }

    func call(_ method: String, _ params: JSONValue? = nil) throws -> JSONValue {
        let client: RPCClient
        do { client = try RPCClient(socketPath: socketPath) } catch { throw CLIError("\(error)") }
        do { return try client.call(method, params: params) } catch let e as RPCError {
            var text = "\(method): \(e.message)"
            if let field = e.data?["field"]?.stringValue { text += " (field: \(field))" }
            if let reason = e.data?["reason"]?.stringValue, reason != e.message { text += ": \(reason)" }
            throw CLIError(text)
        } catch { throw CLIError("\(method): \(error)") }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension JSONValue {
    /// Indented JSON with sorted keys.
    var pretty: String {
        func render(_ v: JSONValue, _ indent: String) -> String {
            switch v {
            case .array(let a) where !a.isEmpty:
                let inner = indent + "  "
                return "[\n" + a.map { inner + render($0, inner) }.joined(separator: ",\n") + "\n" + indent + "]"
            case .object(let o) where !o.isEmpty:
                let inner = indent + "  "
                return "{\n" + o.keys.sorted().map { inner + "\"\($0)\": " + render(o[$0]!, inner) }.joined(separator: ",\n") + "\n" + indent + "}"
            default:
                return String(decoding: v.serialized(sortedKeys: true), as: UTF8.self)
            }
        }
        return render(self, "")
    }

    /// A short text for a table cell.
    var cell: String {
        switch self {
        case .null: return "-"
        case .string(let s): return s
        case .bool(let b): return b ? "yes" : "no"
        case .int(let i): return String(i)
        case .double(let d): return String(format: "%.2f", d)
        case .array(let a): return a.map(\.cell).joined(separator: ",")
        case .object: return String(decoding: serialized(sortedKeys: true), as: UTF8.self)
        }
    }
}

/// Renders rows as aligned columns.
func table(_ headers: [String], _ rows: [[String]]) -> String {
    var widths = headers.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ") + "\n"
    }
    return line(headers) + rows.map(line).joined()
}

func items(_ v: JSONValue) -> [JSONValue] { v["items"]?.arrayValue ?? v.arrayValue ?? [] }

func columns(_ v: JSONValue, _ fields: [String]) -> [[String]] {
    items(v).map { item in fields.map { item[$0]?.cell ?? "-" } }
}

func parseJSON(_ text: String, what: String) throws -> JSONValue {
    do { return try JSONValue(parsing: Array(text.utf8)) } catch { throw CLIError("\(what) is not valid JSON: \(error)") }
}

@main
struct Warrenctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warrenctl",
        abstract: "Control a warren-agent.",
        subcommands: [Status.self, Bridge.self, Router.self, PortCmd.self, RouteCmd.self, ChainCmd.self, RuleCmd.self,
                      Trace.self, TopologyCmd.self, Flows.self, Events.self, VPN.self, Call.self])
}

// MARK: - status, call, events

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Agent version, uptime, plugins and datapath ports.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run("agent.status") { s in
            var out = "warren-agent \(s["version"]?.cell ?? "?"), up \(Int(s["uptimeSeconds"]?.doubleValue ?? 0)) s, topology version \(s["topologyVersion"]?.cell ?? "?")\n"
            out += "socket \(s["socket"]?.cell ?? "-"), state \(s["stateDirectory"]?.cell ?? "-")\n\n"
            out += "plugins:\n" + table(["NAME", "STATE"], (s["plugins"]?.arrayValue ?? []).map { [$0["name"]?.cell ?? "", $0["state"]?.cell ?? ""] })
            let dp = s["datapath"]
            out += "\ndatapath: \(dp?["enabled"]?.boolValue == true ? (dp?["running"]?.boolValue == true ? "running" : "stopped") : "disabled"), \(dp?["flows"]?.cell ?? "0") flows\n"
            out += table(["PORT", "INTERFACE", "STATE", "RX", "TX"], (dp?["ports"]?.arrayValue ?? []).map {
                [$0["port"]?.cell ?? "", $0["interface"]?.cell ?? "", $0["state"]?.cell ?? "",
                 $0["counters"]?["rxPackets"]?.cell ?? "0", $0["counters"]?["txPackets"]?.cell ?? "0"]
            })
            return out
        }
    }
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call any JSON-RPC method: warrenctl call METHOD '{\"name\": \"r1\"}'.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Method name, e.g. router.create.") var method: String
    @Argument(help: "Params as a JSON object (or - to read stdin).") var params: String?
    func run() throws {
        var p: JSONValue? = nil
        if let text = params {
            let source = text == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : text
            p = try parseJSON(source, what: "params")
        }
        print(try global.call(method, p).pretty)
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Subscribe to topics and print events as they arrive (Ctrl-C to stop).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Topics, e.g. topology vpn.dynamic (default: everything).") var topics: [String] = []
    func run() throws {
        let client = try RPCClient(socketPath: global.socketPath)
        _ = try client.call("agent.subscribe", params: ["topics": .array((topics.isEmpty ? ["*"] : topics).map { .string($0) })])
        while true {
            if let n = try client.nextNotification(timeout: 3600) {
                print(String(decoding: n.serialized(sortedKeys: true), as: UTF8.self))
                fflush(nil)
            }
        }
    }
}

// MARK: - bridges and routers

struct Bridge: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Virtual bridges.", subcommands: [Create.self, List.self, Get.self, Update.self, Delete.self])
    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "MAC entry lifetime in seconds.") var macAging: UInt32?
        func run() throws {
            var p: [String: JSONValue] = ["name": .string(name)]
            if let a = macAging { p["macAgingSeconds"] = .int(Int64(a)) }
            try global.run("bridge.create", .object(p)) { "bridge \($0["name"]!.cell) \($0["id"]!.cell)\n" }
        }
    }
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws { try global.run("bridge.list") { table(["NAME", "ID", "UP", "PORTS"], columns($0, ["name", "id", "adminUp", "ports"])) } }
    }
    struct Get: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var bridge: String
        func run() throws { try global.run("bridge.get", ["id": .string(bridge)]) }
    }
    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var bridge: String
        @Option(help: "up or down") var admin: String?
        @Option var macAging: UInt32?
        func run() throws {
            var p: [String: JSONValue] = ["id": .string(bridge)]
            if let a = admin { p["adminUp"] = .bool(a == "up") }
            if let m = macAging { p["macAgingSeconds"] = .int(Int64(m)) }
            try global.run("bridge.update", .object(p))
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var bridge: String
        func run() throws { try global.run("bridge.delete", ["id": .string(bridge)]) { _ in "deleted\n" } }
    }
}

struct Router: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Virtual routers.", subcommands: [Create.self, List.self, Get.self, Update.self, Delete.self])
    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        func run() throws { try global.run("router.create", ["name": .string(name)]) { "router \($0["name"]!.cell) \($0["id"]!.cell)\n" } }
    }
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws { try global.run("router.list") { table(["NAME", "ID", "UP", "PORTS"], columns($0, ["name", "id", "adminUp", "ports"])) } }
    }
    struct Get: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var router: String
        func run() throws { try global.run("router.get", ["id": .string(router)]) }
    }
    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var router: String
        @Option(help: "up or down") var admin: String?
        func run() throws {
            var p: [String: JSONValue] = ["id": .string(router)]
            if let a = admin { p["adminUp"] = .bool(a == "up") }
            try global.run("router.update", .object(p))
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var router: String
        func run() throws { try global.run("router.delete", ["id": .string(router)]) { _ in "deleted\n" } }
    }
}

// MARK: - ports

struct PortCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "port", abstract: "Ports of bridges and routers.",
                                                    subcommands: [Create.self, List.self, Get.self, Link.self, Bind.self, Unbind.self, Update.self, Delete.self])
    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Bridge or router.") var device: String
        @Argument var name: String
        @Option(help: "Router ports: address/len, e.g. 100.64.1.1/24.") var address: String?
        @Option var mac: String?
        @Option(help: "Bridge ports: access VLAN.") var vlan: UInt16?
        func run() throws {
            var p: [String: JSONValue] = ["device": .string(device), "name": .string(name)]
            if let a = address { p["address"] = .string(a) }
            if let m = mac { p["mac"] = .string(m) }
            if let v = vlan { p["vlan"] = .int(Int64(v)) }
            try global.run("port.create", .object(p)) { "port \($0["name"]!.cell) #\($0["number"]!.cell) mac \($0["mac"]!.cell) \($0["id"]!.cell)\n" }
        }
    }
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try global.run("port.list") {
                table(["#", "NAME", "DEVICE", "BINDING", "INTERFACE/PEER", "ADDRESS", "MAC", "UP"], items($0).map { p in
                    [p["number"]?.cell ?? "", p["name"]?.cell ?? "", p["deviceName"]?.cell ?? "", p["binding"]?.cell ?? "",
                     p["interface"]?.stringValue ?? p["peerName"]?.stringValue ?? "-", p["address"]?.cell ?? "-", p["mac"]?.cell ?? "", p["adminUp"]?.cell ?? ""]
                })
            }
        }
    }
    struct Get: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        func run() throws { try global.run("port.get", ["id": .string(port)]) }
    }
    struct Link: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        @Argument var peer: String
        func run() throws { try global.run("port.link", ["port": .string(port), "peer": .string(peer)]) { _ in "linked \(port) <-> \(peer)\n" } }
    }
    struct Bind: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        @Argument(help: "Host interface name.") var interface: String
        func run() throws { try global.run("port.bind", ["port": .string(port), "interface": .string(interface)]) { _ in "bound \(port) to \(interface)\n" } }
    }
    struct Unbind: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        func run() throws { try global.run("port.unbind", ["id": .string(port)]) { _ in "unbound \(port)\n" } }
    }
    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        @Option(help: "up or down") var admin: String?
        @Option(help: "Access VLAN (0 removes it).") var vlan: UInt16?
        @Option(help: "TCP MSS clamp (0 removes it).") var mssClamp: UInt16?
        func run() throws {
            var p: [String: JSONValue] = ["id": .string(port)]
            if let a = admin { p["adminUp"] = .bool(a == "up") }
            if let v = vlan { p["vlan"] = .int(Int64(v)) }
            if let m = mssClamp { p["mssClamp"] = .int(Int64(m)) }
            try global.run("port.update", .object(p))
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var port: String
        func run() throws { try global.run("port.delete", ["id": .string(port)]) { _ in "deleted\n" } }
    }
}

// MARK: - routes, chains, rules

struct RouteCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route", abstract: "Router routes.", subcommands: [Add.self, List.self, Delete.self])
    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var router: String
        @Argument(help: "Destination prefix, e.g. 198.51.100.0/24.") var destination: String
        @Argument(help: "The router port the route leaves by.") var nextHopPort: String
        @Option var gateway: String?
        @Option var weight: UInt32?
        func run() throws {
            var p: [String: JSONValue] = ["router": .string(router), "destination": .string(destination), "nextHopPort": .string(nextHopPort)]
            if let g = gateway { p["nextHopGateway"] = .string(g) }
            if let w = weight { p["weight"] = .int(Int64(w)) }
            try global.run("route.add", .object(p)) { "route \($0["destination"]!.cell) \($0["id"]!.cell)\n" }
        }
    }
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var router: String?
        func run() throws {
            try global.run("route.list", router.map { ["router": .string($0)] } ?? [:]) {
                table(["ROUTER", "DESTINATION", "PORT", "GATEWAY", "WEIGHT", "SOURCE", "ID"],
                      columns($0, ["routerName", "destination", "nextHopPortName", "nextHopGateway", "weight", "source", "id"]))
            }
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run("route.delete", ["id": .string(id)]) { _ in "deleted\n" } }
    }
}

struct ChainCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "chain", abstract: "Rule chains.",
                                                    subcommands: [Create.self, List.self, Get.self, Attach.self, Detach.self, Delete.self])
    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "accept (default), drop or reject") var defaultAction: String?
        func run() throws {
            var p: [String: JSONValue] = ["name": .string(name)]
            if let d = defaultAction { p["defaultAction"] = .string(d) }
            try global.run("chain.create", .object(p)) { "chain \($0["name"]!.cell) \($0["id"]!.cell)\n" }
        }
    }
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try global.run("chain.list") { v in
                table(["NAME", "DEFAULT", "RULES", "ATTACHED TO"], items(v).map {
                    [$0["name"]?.cell ?? "", $0["defaultAction"]?.cell ?? "", String($0["rules"]?.arrayValue?.count ?? 0), $0["attachedTo"]?.cell ?? ""]
                })
            }
        }
    }
    struct Get: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chain: String
        func run() throws { try global.run("chain.get", ["id": .string(chain)]) }
    }
    struct Attach: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chain: String
        @Option var port: String?
        @Option var router: String?
        @Option(help: "inbound, outbound (ports); preRouting, postRouting (routers)") var hook: String
        func run() throws {
            var p: [String: JSONValue] = ["chain": .string(chain), "hook": .string(hook)]
            if let x = port { p["port"] = .string(x) }
            if let x = router { p["router"] = .string(x) }
            try global.run("chain.attach", .object(p)) { _ in "attached\n" }
        }
    }
    struct Detach: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var port: String?
        @Option var router: String?
        @Option var hook: String
        func run() throws {
            var p: [String: JSONValue] = ["hook": .string(hook)]
            if let x = port { p["port"] = .string(x) }
            if let x = router { p["router"] = .string(x) }
            try global.run("chain.attach", .object(p)) { _ in "detached\n" }
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chain: String
        func run() throws { try global.run("chain.delete", ["id": .string(chain)]) { _ in "deleted\n" } }
    }
}

struct RuleCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rule", abstract: "Rules of a chain.", subcommands: [Add.self, Delete.self])
    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chain: String
        @Option(help: "accept, drop or reject") var action: String
        @Option var name: String?
        @Option var position: Int?
        @Option(help: "icmp, tcp, udp or a number") var proto: String?
        @Option var ipSrc: String?
        @Option var ipDst: String?
        @Option var srcPort: String?
        @Option(help: "A port or a range like 1000-2000.") var dstPort: String?
        @Option var ethSrc: String?
        @Option var ethDst: String?
        func run() throws {
            var m: [String: JSONValue] = [:]
            if let p = proto { m["ipProto"] = .int(Int64(["icmp": 1, "tcp": 6, "udp": 17][p] ?? Int(p) ?? -1)) }
            if let v = ipSrc { m["ipSrc"] = .string(v) }
            if let v = ipDst { m["ipDst"] = .string(v) }
            if let v = ethSrc { m["ethSrc"] = .string(v) }
            if let v = ethDst { m["ethDst"] = .string(v) }
            func range(_ text: String, _ lo: String, _ hi: String) throws {
                let parts = text.split(separator: "-").map { Int($0) }
                guard let a = parts.first ?? nil, let b = parts.last ?? nil else { throw CLIError("bad port range \(text)") }
                m[lo] = .int(Int64(a)); m[hi] = .int(Int64(b))
            }
            if let v = srcPort { try range(v, "srcPortMin", "srcPortMax") }
            if let v = dstPort { try range(v, "dstPortMin", "dstPortMax") }
            var p: [String: JSONValue] = ["chain": .string(chain), "action": .string(action), "match": .object(m)]
            if let n = name { p["name"] = .string(n) }
            if let x = position { p["position"] = .int(Int64(x)) }
            try global.run("rule.add", .object(p)) { _ in "added\n" }
        }
    }
    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chain: String
        @Argument(help: "Rule ID or name.") var rule: String
        func run() throws { try global.run("rule.delete", ["chain": .string(chain), "id": .string(rule)]) { _ in "deleted\n" } }
    }
}

// MARK: - trace, topology, flows

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Trace a packet through the virtual topology from a port.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Ingress port.") var port: String
    @Option var ethSrc: String?
    @Option var ethDst: String?
    @Option var ipSrc: String?
    @Option var ipDst: String?
    @Option(help: "icmp, tcp, udp or a number") var proto: String?
    @Option var ttl: UInt8?
    @Option var srcPort: UInt16?
    @Option var dstPort: UInt16?
    @Option var vlan: UInt16?
    @Flag(help: "Trace an ARP request (who-has ip-dst tell ip-src).") var arp = false
    func run() throws {
        var pk: [String: JSONValue] = [:]
        for (k, v) in [("ethSrc", ethSrc), ("ethDst", ethDst), ("ipSrc", ipSrc), ("ipDst", ipDst)] { if let v { pk[k] = .string(v) } }
        if let p = proto { pk["protocol"] = Int(p).map { .int(Int64($0)) } ?? .string(p) }
        if let v = ttl { pk["ttl"] = .int(Int64(v)) }
        if let v = srcPort { pk["srcPort"] = .int(Int64(v)) }
        if let v = dstPort { pk["dstPort"] = .int(Int64(v)) }
        if let v = vlan { pk["vlan"] = .int(Int64(v)) }
        if arp { pk["arp"] = .bool(true) }
        try global.run("packet.trace", ["port": .string(port), "packet": .object(pk)]) { r in
            var out = "packet: \(r["packet"]?.cell ?? "")\n"
            for s in r["steps"]?.arrayValue ?? [] {
                out += "  \(s["deviceKind"]?.cell ?? "") \(s["device"]?.cell ?? "")\(s["port"]?.stringValue.map { " [\($0)]" } ?? ""): \(s["decision"]?.cell ?? "")\n"
            }
            let res = r["result"]
            out += "result: \(res?["kind"]?.cell ?? "")"
            if let ports = res?["ports"]?.arrayValue, !ports.isEmpty { out += " to \(ports.map(\.cell).joined(separator: ", "))" }
            out += "\n"
            for reason in res?["reasons"]?.arrayValue ?? [] { out += "  reason: \(reason.cell)\n" }
            for g in res?["generated"]?.arrayValue ?? [] { out += "  generated on \(g["port"]?.cell ?? ""): \(g["summary"]?.cell ?? "")\n" }
            out += "flow: \(r["match"]?.cell ?? "")\nactions: \(r["actions"]?.arrayValue.map { $0.map(\.cell).joined(separator: ", ") } ?? "")\n"
            return out
        }
    }
}

struct TopologyCmd: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "topology", abstract: "Print the whole virtual topology (or Graphviz with --dot).")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print a Graphviz digraph (pipe into `dot -Tpng`).") var dot = false
    func run() throws {
        let t = try global.call("topology.get")
        if global.json { print(t.pretty); return }
        if dot { print(graphviz(t)); return }
        var out = "topology version \(t["version"]?.cell ?? "?")\n"
        for kind in ["routers", "bridges"] {
            for d in t[kind]?.arrayValue ?? [] {
                out += "\(kind.dropLast()) \(d["name"]!.cell)\(d["adminUp"]?.boolValue == false ? " (down)" : "")\n"
                for p in (t["ports"]?.arrayValue ?? []) where p["device"] == d["id"] {
                    var line = "  port \(p["name"]!.cell) #\(p["number"]!.cell)"
                    if let a = p["address"]?.stringValue { line += " \(a)" }
                    switch p["binding"]?.stringValue {
                    case "exterior": line += " → interface \(p["interface"]?.cell ?? "")"
                    case "interior": line += " ↔ \(p["peerName"]?.cell ?? "")"
                    default: line += " (unbound)"
                    }
                    out += line + "\n"
                }
                if kind == "routers" {
                    for r in (t["routes"]?.arrayValue ?? []) where r["router"] == d["id"] {
                        out += "  route \(r["destination"]!.cell) via \(r["nextHopPortName"]!.cell)\(r["nextHopGateway"]?.stringValue.map { " gw \($0)" } ?? "") [\(r["source"]!.cell), weight \(r["weight"]!.cell)]\n"
                    }
                }
            }
        }
        print(out, terminator: "")
    }

    func graphviz(_ t: JSONValue) -> String {
        func q(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var out = "digraph warren {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n"
        for r in t["routers"]?.arrayValue ?? [] { out += "  \(q(r["id"]!.cell)) [label=\(q("router\n" + r["name"]!.cell)), shape=box, style=filled, fillcolor=\"#ffe7b3\"];\n" }
        for b in t["bridges"]?.arrayValue ?? [] { out += "  \(q(b["id"]!.cell)) [label=\(q("bridge\n" + b["name"]!.cell)), shape=ellipse, style=filled, fillcolor=\"#cfe8ff\"];\n" }
        var seen = Set<String>()
        for p in t["ports"]?.arrayValue ?? [] {
            let dev = p["device"]!.cell
            let label = p["name"]!.cell + (p["address"]?.stringValue.map { "\n" + $0 } ?? "")
            switch p["binding"]?.stringValue {
            case "exterior":
                let ifNode = "if:" + (p["interface"]?.cell ?? "")
                out += "  \(q(ifNode)) [label=\(q(p["interface"]?.cell ?? "")), shape=cds];\n"
                out += "  \(q(dev)) -> \(q(ifNode)) [label=\(q(label)), dir=both];\n"
            case "interior":
                let peer = p["peer"]!.cell
                let key = [p["id"]!.cell, peer].sorted().joined()
                if seen.insert(key).inserted, let pp = t["ports"]?.arrayValue?.first(where: { $0["id"]?.cell == peer }) {
                    out += "  \(q(dev)) -> \(q(pp["device"]!.cell)) [label=\(q(label + " ↔ " + pp["name"]!.cell)), dir=both];\n"
                }
            default:
                out += "  \(q("unbound:" + p["id"]!.cell)) [label=\(q(p["name"]!.cell)), shape=point];\n  \(q(dev)) -> \(q("unbound:" + p["id"]!.cell)) [style=dashed];\n"
            }
        }
        return out + "}"
    }
}

struct Flows: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flow", abstract: "Installed flows and flow engine counters.", subcommands: [List.self, Stats.self])
    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var limit: Int = 100
        func run() throws {
            try global.run("flow.list", ["limit": .int(Int64(limit))]) { v in
                table(["PACKETS", "BYTES", "IDLE", "MATCH", "ACTIONS"], items(v).map {
                    [$0["packets"]?.cell ?? "", $0["bytes"]?.cell ?? "", String(format: "%.1fs", $0["idleSeconds"]?.doubleValue ?? 0),
                     $0["match"]?.cell ?? "", $0["actions"]?.cell ?? ""]
                })
            }
        }
    }
    struct Stats: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try global.run("flow.stats") { s in
                var out = "flows \(s["flows"]!.cell) in \(s["subtables"]!.cell) subtables (\(s["flowMemoryBytes"]!.cell) bytes)\n"
                out += "lookups \(s["lookups"]!.cell): exact \(s["exactHits"]!.cell), megaflow \(s["megaflowHits"]!.cell) (\(s["subtablesPerHit"]!.cell) subtables/hit), miss \(s["misses"]!.cell)\n"
                out += "installs \(s["installs"]!.cell), invalidations \(s["invalidations"]!.cell), evictions \(s["evictions"]!.cell), expirations \(s["expirations"]!.cell), simulations \(s["simulations"]!.cell)\n"
                out += "MAC entries \(s["macEntries"]!.cell), ARP entries \(s["arpEntries"]!.cell), waiting for ARP \(s["arpQueued"]!.cell)\n"
                if let m = s["malformed"]?.objectValue, !m.isEmpty { out += "malformed: " + m.keys.sorted().map { "\($0)=\(m[$0]!.cell)" }.joined(separator: " ") + "\n" }
                out += table(["PORT", "INTERFACE", "STATE", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES", "MALFORMED", "TX DROP"],
                             (s["ports"]?.arrayValue ?? []).map { p in
                                 let c = p["counters"]
                                 return [p["port"]?.cell ?? "", p["interface"]?.cell ?? "", p["state"]?.cell ?? "", c?["rxPackets"]?.cell ?? "", c?["rxBytes"]?.cell ?? "",
                                         c?["txPackets"]?.cell ?? "", c?["txBytes"]?.cell ?? "", c?["rxMalformed"]?.cell ?? "", c?["txDropped"]?.cell ?? ""]
                             })
                return out
            }
        }
    }
}

// MARK: - VPN plugins

struct VPN: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "DynamicVPN and StaticVPN connections.", subcommands: [Dynamic.self, Static.self])

    /// The verbs both plugins share.
    struct Verb: ParsableArguments {
        @Argument(help: "create FILE.json | update FILE.json | list | get NAME | status [NAME] | peer-config NAME | delete NAME")
        var verb: String
        @Argument var target: String?
    }

    static func run(prefix: String, _ global: GlobalOptions, _ v: Verb) throws {
        func file(_ path: String?) throws -> JSONValue {
            guard let path, let data = FileManager.default.contents(atPath: path) else { throw CLIError("give a readable JSON file") }
            return try parseJSON(String(decoding: data, as: UTF8.self), what: path)
        }
        switch v.verb {
        case "create", "update": try global.run("\(prefix).\(v.verb)", try file(v.target))
        case "list":
            try global.run("\(prefix).list") { table(["NAME", "ROUTER", "STATE", "ID"], columns($0, ["name", "virtualRouter", "state", "id"])) }
        case "get": try global.run("\(prefix).get", ["id": .string(v.target ?? "")])
        case "status": try global.run("\(prefix).status", v.target.map { ["id": .string($0)] } ?? [:])
        case "peer-config":
            let r = try global.call("\(prefix).peerConfig", ["id": .string(v.target ?? "")])
            if global.json { print(r.pretty) } else { print(r["text"]?.stringValue ?? r.pretty) }
        case "delete": try global.run("\(prefix).delete", ["id": .string(v.target ?? "")]) { _ in "deleted\n" }
        default: throw CLIError("unknown verb \(v.verb)")
        }
    }

    struct Dynamic: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "AWS-compatible redundant VPNs (vpn.dynamic.*).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var verb: Verb
        func run() throws { try VPN.run(prefix: "vpn.dynamic", global, verb) }
    }
    struct Static: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Policy-based site-to-site VPNs (vpn.static.*).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var verb: Verb
        func run() throws { try VPN.run(prefix: "vpn.static", global, verb) }
    }
}
