// `warren-bench vpn`: the VPN figures of issues 5 and 6, measured end to end against the
// peer lab (Scripts/lab, driven through Scripts/bench_vpn.py and labctl.py) with a real
// warren-agent (release build next to this binary, or $WARREN_BUILD_DIR), real charon and
// BIRD processes, and VMs in network namespaces. Run as root.
//
//   warren-bench vpn [dynamic] [fast] [static] [scale] [--runs N] [--aws-runs N] [--vpns N] [--keep]
//
// Phases (default: all four, each on a fresh lab and a fresh agent, cleaned up after):
// - dynamic: DynamicVPN setup time, `--runs` times (median): from sending vpn.dynamic.create
//   until a VM behind the tenant router has a ping answered by the VPC host AND both tunnels
//   report state "up" with routesInjected >= 1. Then, with AWS's timers (hold 30 /
//   keepalive 10): loss window of a silent outage of tunnel A (`--aws-runs` times, default 3) and of a
//   clean tunnel down (IKE DELETE from the peer, `--runs` times).
// - fast: the same two failovers with BGP hold 3 / keepalive 1 (`--runs` times each).
// - static: StaticVPN setup time (create → both CHILD_SAs installed and both remote hosts
//   answer a ping), `--runs` times; then TCP throughput (iperf3 -t 5) VM → VM through the
//   same router (plain forwarding), through the StaticVPN tunnel and through DynamicVPN
//   tunnel A, in one run.
// - scale: `--vpns` DynamicVPNs (default 20, i.e. 40 tunnels) on one agent, each on its own
//   tenant router with its own VM, each to its own AWS endpoint pair in the lab: time until
//   every create is acknowledged, until every tunnel is up with routes, and until every VM
//   reaches the VPC host; memory per VPN (RSS — and PSS — of its two charons and two BIRDs)
//   and the agent's RSS growth per VPN; time to delete them all; then the same creates sent
//   all at once on separate connections.
//
// Loss windows: a ping every 20 ms (`-i 0.02`; the kernel's timer makes it ~24 ms) VM → VPC
// host runs through the failure; loss window = the wall-clock time without answers (for each
// run of unanswered probes: the time between the answers around it minus one probe spacing,
// i.e. lost probes × the real spacing).
// Prints `METRIC <name> <value> <unit>` lines plus `#` lines with per-run detail.

import Foundation
import WarrenRPC

#if canImport(Glibc)
import Glibc
#endif

enum VPNBench {
    struct Options {
        var phases: [String] = []
        var runs = 3
        var awsRuns = 3
        var vpns = 20
        var keep = false
    }

    static let allPhases = ["dynamic", "fast", "static", "scale"]
    static let usage = "usage: warren-bench vpn [dynamic] [fast] [static] [scale] [--runs N] [--aws-runs N] [--vpns N] [--keep]"
    static let pingInterval = 0.02

    static func run(_ arguments: [String]) -> Int32 {
        var o = Options()
        var args = arguments[...]
        while let a = args.popFirst() {
            func number() -> Int? { args.popFirst().flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } }
            switch a {
            case "--runs": guard let n = number() else { print(usage); return 2 }; o.runs = n
            case "--aws-runs": guard let n = number() else { print(usage); return 2 }; o.awsRuns = n
            case "--vpns": guard let n = number(), n <= 49 else { print(usage + "  (--vpns 1..49)"); return 2 }; o.vpns = n
            case "--keep": o.keep = true
            case "--help", "-h": print(usage); return 0
            case _ where allPhases.contains(a): o.phases.append(a)
            default: print(usage); return 2
            }
        }
        if o.phases.isEmpty { o.phases = allPhases }
        guard getuid() == 0 else {
            print("warren-bench vpn: must run as root (network namespaces, charon, BIRD)")
            return 1
        }
        vpnInstallInterruptHandlers()
        do {
            let bench = try VPNBenchRun(options: o)
            defer { bench.finish() }
            try bench.runPhases()
            return 0
        } catch {
            fflush(nil)
            FileHandle.standardError.write(Data("warren-bench vpn: error: \(error)\n".utf8))
            return 1
        }
    }
}

/// One benchmark run: paths, and the session (lab + agent + VMs) of the current phase.
final class VPNBenchRun {
    let options: VPNBench.Options
    let root: String
    let buildDir: String
    let work: String
    let shell: VPNShell
    private var session: Session?

    init(options: VPNBench.Options) throws {
        self.options = options
        root = try VPNBenchRun.repositoryRoot()
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        buildDir = ProcessInfo.processInfo.environment["WARREN_BUILD_DIR"] ?? (exe as NSString).deletingLastPathComponent
        work = "/tmp/wvb-bench"
        if FileManager.default.fileExists(atPath: work) { try FileManager.default.removeItem(atPath: work) }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        shell = VPNShell(scratch: work)
        // A crashed earlier run may have left the lab (and its extra peers) behind.
        VPNLab(shell: shell, root: root).forceDown()
    }

    static func repositoryRoot() throws -> String {
        var candidates: [String] = []
        if let r = ProcessInfo.processInfo.environment["WARREN_ROOT"] { candidates.append(r) }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { candidates.append(exe) }
        candidates.append(FileManager.default.currentDirectoryPath)
        for c in candidates {
            var dir = c
            while dir != "/" && !dir.isEmpty {
                if FileManager.default.fileExists(atPath: dir + "/Scripts/bench_vpn.py") { return dir }
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        throw VPNBenchError("cannot find the repository (Scripts/bench_vpn.py); run from it or set WARREN_ROOT")
    }

    func runPhases() throws {
        vpnNote("warren-bench vpn: phases \(options.phases.joined(separator: " ")), runs \(options.runs), AWS-timer runs \(options.awsRuns), scale \(options.vpns) VPNs")
        vpnNote("agent \(buildDir)/warren-agent; lab Scripts/lab prefix \(VPNLab.prefix); scratch \(work)")
        for phase in options.phases {
            try vpnCheckInterrupted()
            // Other work on the machine skews these figures: say how busy it was.
            let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
            vpnNote("phase \(phase): load average \(load) on \(ProcessInfo.processInfo.activeProcessorCount) CPUs")
            switch phase {
            case "dynamic": try phaseDynamic()
            case "fast": try phaseFast()
            case "static": try phaseStatic()
            case "scale": try phaseScale()
            default: break
            }
        }
    }

    /// Cleans up whatever is still there (also after an error or an interrupt).
    func finish() {
        session?.close()
        session = nil
        if !options.keep { try? FileManager.default.removeItem(atPath: work) }
    }

    // MARK: - sessions

    final class Session {
        let shell: VPNShell
        let lab: VPNLab
        let vms: VPNVMs
        var agent: VPNAgent?
        let hold: Int, keepalive: Int

        init(run: VPNBenchRun, name: String, hold: Int, keepalive: Int, pairs: Int = 1, policyPeer: Bool = false) throws {
            shell = run.shell
            self.hold = hold
            self.keepalive = keepalive
            lab = VPNLab(shell: run.shell, root: run.root)
            vms = VPNVMs(shell: run.shell)
            let t0 = vpnMonoNow()
            try lab.up(hold: hold, keepalive: keepalive, pairs: pairs, policyPeer: policyPeer)
            vpnNote("\(name): lab up (\(pairs) AWS endpoint pair(s)\(policyPeer ? " + policy peer cs" : ""), BGP hold \(hold) / keepalive \(keepalive)) in \(vpnFmt(vpnMonoNow() - t0, 1)) s")
            agent = try VPNAgent(binary: run.buildDir + "/warren-agent", stateDir: run.work + "/agent-" + name, uplink: VPNLab.uplink)
        }

        var a: VPNAgent { agent! }

        func close() {
            agent?.shutdown(shell: shell)
            agent = nil
            vms.cleanup()
            lab.down()
        }

        /// Router (created if new) + bridge + VM on it: VM n at 100.64.<octet>.10, gateway .1.
        @discardableResult
        func tenant(router: String, bridge: String, octet: Int, vm n: Int, newRouter: Bool = true) throws -> VPNVM {
            if newRouter { _ = try a.call("router.create", ["name": .string(router)]) }
            _ = try a.call("bridge.create", ["name": .string(bridge)])
            _ = try a.call("port.create", ["device": .string(router), "name": .string("\(router)-\(bridge)"), "address": .string("100.64.\(octet).1/24")])
            _ = try a.call("port.create", ["device": .string(bridge), "name": .string("\(bridge)-\(router)")])
            _ = try a.call("port.link", ["port": .string("\(bridge)-\(router)"), "peer": .string("\(router)-\(bridge)")])
            let vm = try vms.create(n, cidr: "100.64.\(octet).10/24", gateway: "100.64.\(octet).1")
            _ = try a.call("port.create", ["device": .string(bridge), "name": .string("vm\(n)p")])
            _ = try a.call("port.bind", ["port": .string("vm\(n)p"), "interface": .string(vm.hostIf)])
            return vm
        }

        func dynamicSpec(_ name: String, router: String, pair: Int, subnets: [String]) throws -> JSONValue {
            guard let p = lab.pairs.dropFirst(pair).first else { throw VPNBenchError("the lab has no endpoint pair \(pair)") }
            let ike = lab.aws["ike_version"] ?? 2
            func ipsec(_ t: JSONValue) -> JSONValue {
                ["publicIp": t["customer_outside_ip"] ?? nil, "peerIp": t["aws_outside_ip"] ?? nil, "preSharedKey": t["psk"] ?? nil, "ikeVersion": ike]
            }
            func bgp(_ t: JSONValue) -> JSONValue {
                ["localAsn": 65000, "remoteAsn": 64512, "localIp": t["customer_inside_ip"] ?? nil,
                 "holdTime": .int(Int64(hold)), "keepalive": .int(Int64(keepalive))]
            }
            let a = p["A"] ?? nil, b = p["B"] ?? nil
            return ["name": .string(name), "virtualRouter": .string(router),
                    "ipsecPairingA": ipsec(a), "ipsecPairingB": ipsec(b), "bgpPairingA": bgp(a), "bgpPairingB": bgp(b),
                    "localSubnets": .array(subnets.map { .string($0) })]
        }

        func staticSpec(_ name: String, router: String, peer: String, localSubnets: [String]) throws -> JSONValue {
            guard let p = lab.policyPeer(peer), let cs = p["cloudstack"] else { throw VPNBenchError("the lab has no policy peer \(peer)") }
            let pairing: JSONValue = [
                "publicIp": p["customer_outside_ip"] ?? nil, "peerIp": p["peer_outside_ip"] ?? nil, "preSharedKey": cs["ipsecpsk"] ?? nil,
                "ikepolicy": cs["ikepolicy"] ?? nil, "esppolicy": cs["esppolicy"] ?? nil, "ikelifetime": cs["ikelifetime"] ?? nil,
                "esplifetime": cs["esplifetime"] ?? nil, "dpd": cs["dpd"] ?? nil, "ikeversion": cs["ikeversion"] ?? nil,
                "splitconnections": cs["splitconnections"] ?? nil,
            ]
            return ["name": .string(name), "virtualRouter": .string(router), "localSubnets": .array(localSubnets.map { .string($0) }),
                    "remoteSubnets": p["peer_subnets"] ?? [], "ipsecPairing": pairing]
        }

        /// Tunnel views of one DynamicVPN by label ("A", "B").
        func tunnels(_ vpn: String) throws -> [String: JSONValue] {
            let items = try a.call("vpn.dynamic.status", ["id": .string(vpn)])["items"]?.arrayValue ?? []
            var out: [String: JSONValue] = [:]
            for t in items.first?["tunnels"]?.arrayValue ?? [] { if let l = t["tunnel"]?.stringValue { out[l] = t } }
            return out
        }

        static func upWithRoutes(_ t: JSONValue?) -> Bool {
            t?["state"]?.stringValue == "up" && (t?["routesInjected"]?.intValue ?? 0) >= 1
        }

        /// Waits until tunnel A carries the traffic both ways and both ends are settled.
        func waitSteady(_ vpn: String, subnet: String) throws {
            try vpnWaitUntil("\(vpn): both tunnels up with routes, A active", timeout: 120, interval: 0.1) {
                let t = try tunnels(vpn)
                return Session.upWithRoutes(t["A"]) && Session.upWithRoutes(t["B"]) && t["A"]?["active"]?.boolValue == true
            }
            try lab.wait("settled", ["A", "B"], timeout: 120)
            try vpnWaitUntil("the VPC host to route \(subnet) through tunnel A", timeout: 60, interval: 0.2) {
                try lab.vpcGateway(for: subnet) == VPNLab.vpcGatewayA
            }
        }
    }

    private func openSession(_ name: String, hold: Int, keepalive: Int, pairs: Int = 1, policyPeer: Bool = false) throws -> Session {
        session?.close()
        session = nil
        let s = try Session(run: self, name: name, hold: hold, keepalive: keepalive, pairs: pairs, policyPeer: policyPeer)
        session = s
        return s
    }

    private func closeSession() {
        session?.close()
        session = nil
    }

    private func pingFile(_ tag: String) -> String { work + "/ping-\(tag).txt" }

    // MARK: - phase: dynamic (setup, AWS-timer failovers)

    func phaseDynamic() throws {
        let s = try openSession("dynamic", hold: 30, keepalive: 10)
        let vm = try s.tenant(router: "r1", bridge: "b1", octet: 1, vm: 1)
        let spec = try s.dynamicSpec("aws1", router: "r1", pair: 0, subnets: ["100.64.1.0/24"])
        var setups: [Double] = [], acks: [Double] = [], pings: [Double] = [], ups: [Double] = []
        for i in 1...options.runs {
            let idle = try s.lab.wait("idle", ["A", "B"], timeout: 120)
            let ping = try VPNPingRun(ns: vm.ns, target: s.lab.vpcHost, interval: VPNBench.pingInterval, file: pingFile("setup\(i)"))
            try vpnPause(0.3)
            let t0w = vpnWallNow(), t0 = vpnMonoNow()
            _ = try s.a.call("vpn.dynamic.create", spec)
            let ack = vpnMonoNow() - t0
            try vpnWaitUntil("aws1: both tunnels up with routes injected", timeout: 90) {
                let t = try s.tunnels("aws1")
                return Session.upWithRoutes(t["A"]) && Session.upWithRoutes(t["B"])
            }
            let up = vpnMonoNow() - t0
            try vpnWaitUntil("a ping answered through aws1", timeout: 60) { ping.firstReply(after: t0w) != nil }
            let first = ping.firstReply(after: t0w)! - t0w
            _ = try ping.stop()
            let setup = max(up, first)
            setups.append(setup); acks.append(ack); pings.append(first); ups.append(up)
            vpnNote("dynamic setup run \(i): create answered \(vpnFmt(ack)) s, first ping answered \(vpnFmt(first)) s, both tunnels up with routes \(vpnFmt(up)) s → \(vpnFmt(setup)) s (lab idle before: waited \(vpnFmt(idle, 1)) s)")
            let d0 = vpnMonoNow()
            _ = try s.a.call("vpn.dynamic.delete", ["id": "aws1"])
            vpnNote("dynamic delete run \(i): \(vpnFmt(vpnMonoNow() - d0)) s")
        }
        metric("vpn_dynamic_setup_s", vpnMedian(setups), "s")
        metric("vpn_dynamic_setup_max_s", setups.max()!, "s")
        metric("vpn_dynamic_create_answered_s", vpnMedian(acks), "s")
        metric("vpn_dynamic_first_ping_s", vpnMedian(pings), "s")
        metric("vpn_dynamic_tunnels_up_s", vpnMedian(ups), "s")

        _ = try s.a.call("vpn.dynamic.create", spec)
        var silent: [Double] = [], clean: [Double] = []
        for i in 1...options.awsRuns {
            silent.append(try failover(s, vm: vm, mode: "silent", tag: "silent-aws\(i)", timeout: 180))
        }
        for i in 1...options.runs {
            clean.append(try failover(s, vm: vm, mode: "clean", tag: "clean-aws\(i)", timeout: 60))
        }
        metric("vpn_failover_silent_aws_timers_loss_s", vpnMedian(silent), "s")
        if silent.count > 1 { metric("vpn_failover_silent_aws_timers_loss_max_s", silent.max()!, "s") }
        metric("vpn_failover_clean_loss_s", vpnMedian(clean), "s")
        metric("vpn_failover_clean_loss_max_s", clean.max()!, "s")
        closeSession()
    }

    // MARK: - phase: fast timers

    func phaseFast() throws {
        let s = try openSession("fast", hold: 3, keepalive: 1)
        let vm = try s.tenant(router: "r1", bridge: "b1", octet: 1, vm: 1)
        _ = try s.a.call("vpn.dynamic.create", try s.dynamicSpec("aws1", router: "r1", pair: 0, subnets: ["100.64.1.0/24"]))
        var silent: [Double] = [], clean: [Double] = []
        for i in 1...options.runs {
            silent.append(try failover(s, vm: vm, mode: "silent", tag: "silent-fast\(i)", timeout: 60))
        }
        for i in 1...options.runs {
            clean.append(try failover(s, vm: vm, mode: "clean", tag: "clean-fast\(i)", timeout: 60))
        }
        metric("vpn_failover_silent_fast_timers_loss_s", vpnMedian(silent), "s")
        metric("vpn_failover_silent_fast_timers_loss_max_s", silent.max()!, "s")
        metric("vpn_failover_clean_fast_timers_loss_s", vpnMedian(clean), "s")
        metric("vpn_failover_clean_fast_timers_loss_max_s", clean.max()!, "s")
        closeSession()
    }

    /// Fails tunnel A at the lab (silent outage or clean IKE DELETE) under a 50 Hz ping and
    /// returns the loss window; then heals it and waits until traffic is back on A.
    func failover(_ s: Session, vm: VPNVM, mode: String, tag: String, timeout: Double) throws -> Double {
        let subnet = "100.64.1.0/24", bGateway = VPNLab.vpcGatewayB
        try s.waitSteady("aws1", subnet: subnet)
        let ping = try VPNPingRun(ns: vm.ns, target: s.lab.vpcHost, interval: VPNBench.pingInterval, file: pingFile(tag))
        try vpnPause(2)
        guard ping.replies().count >= 50 else { _ = try? ping.stop(); throw VPNBenchError("\(tag): no steady traffic before the failure (\(ping.replies().count) replies in 2 s)") }
        let tf = vpnMonoNow(), tfw = vpnWallNow()
        try s.lab.fail("A", mode: mode)
        try vpnWaitUntil("\(tag): Warren to take tunnel A out", timeout: timeout) {
            let a = try s.tunnels("aws1")["A"]
            return a?["state"]?.stringValue != "up" || (a?["routesInjected"]?.intValue ?? 0) == 0
        }
        let warren = vpnMonoNow() - tf
        try vpnWaitUntil("\(tag): the VPC host to route \(subnet) through tunnel B", timeout: timeout, interval: 0.1) {
            try s.lab.vpcGateway(for: subnet) == bGateway
        }
        let vpc = vpnMonoNow() - tf
        try vpnWaitUntil("\(tag): traffic to flow again (through B)", timeout: 30) {
            let now = vpnWallNow()
            return ping.replies().filter { $0.time > now - 1.0 && $0.time > tfw }.count >= 30
        }
        try vpnPause(1)
        let sum = try ping.stop()
        vpnNote("failover \(tag): Warren took A out after \(vpnFmt(warren)) s, the VPC side moved to B after \(vpnFmt(vpc)) s; " +
             "\(sum.lost) of \(sum.transmitted) probes unanswered (one every \(vpnFmt(sum.spacing * 1000, 1)) ms) → loss window \(vpnFmt(sum.lossSeconds)) s (longest gap \(vpnFmt(sum.longestGapSeconds)) s)")
        let h0 = vpnMonoNow()
        try s.lab.heal("A")
        try s.waitSteady("aws1", subnet: subnet)
        vpnNote("failover \(tag): healed, traffic back on A and both ends settled after \(vpnFmt(vpnMonoNow() - h0, 1)) s")
        return sum.lossSeconds
    }

    // MARK: - phase: static (setup, throughput)

    func phaseStatic() throws {
        let s = try openSession("static", hold: 30, keepalive: 10, policyPeer: true)
        let vm1 = try s.tenant(router: "r1", bridge: "b1", octet: 1, vm: 1)
        let vm2 = try s.tenant(router: "r1", bridge: "b2", octet: 2, vm: 2, newRouter: false)
        let spec = try s.staticSpec("cs1", router: "r1", peer: "cs", localSubnets: ["100.64.1.0/24"])
        guard let hosts = s.lab.policyPeer("cs")?["peer_hosts"]?.objectValue, hosts.count >= 2 else { throw VPNBenchError("policy peer cs has no hosts") }
        let targets = hosts.sorted { $0.key < $1.key }.compactMap { ($0.key, $0.value.stringValue ?? "") }
        var setups: [Double] = [], ups: [Double] = [], pings: [Double] = []
        for i in 1...options.runs {
            let idle = try s.lab.wait("idle", ["cs"], timeout: 120)
            let runs = try targets.enumerated().map { j, t in
                try VPNPingRun(ns: vm1.ns, target: t.1, interval: VPNBench.pingInterval, file: pingFile("static\(i)-\(j)"))
            }
            try vpnPause(0.3)
            let t0w = vpnWallNow(), t0 = vpnMonoNow()
            _ = try s.a.call("vpn.static.create", spec)
            try vpnWaitUntil("cs1: every CHILD_SA installed", timeout: 90) {
                let v = try s.a.call("vpn.static.status", ["id": "cs1"])["items"]?[0]
                let children = v?["children"]?.arrayValue ?? []
                return v?["state"]?.stringValue == "up" && children.count == 2 && children.allSatisfy { $0["state"]?.stringValue == "INSTALLED" }
            }
            let up = vpnMonoNow() - t0
            try vpnWaitUntil("cs1: both remote hosts answering", timeout: 60) { runs.allSatisfy { $0.firstReply(after: t0w) != nil } }
            let first = runs.map { $0.firstReply(after: t0w)! - t0w }.max()!
            for r in runs { _ = try r.stop() }
            let setup = max(up, first)
            setups.append(setup); ups.append(up); pings.append(first)
            vpnNote("static setup run \(i): both CHILD_SAs installed \(vpnFmt(up)) s, both remote hosts answered \(vpnFmt(first)) s → \(vpnFmt(setup)) s (lab idle before: waited \(vpnFmt(idle, 1)) s)")
            _ = try s.a.call("vpn.static.delete", ["id": "cs1"])
        }
        metric("vpn_static_setup_s", vpnMedian(setups), "s")
        metric("vpn_static_setup_max_s", setups.max()!, "s")
        metric("vpn_static_children_installed_s", vpnMedian(ups), "s")
        metric("vpn_static_first_ping_s", vpnMedian(pings), "s")

        // Throughput: plain forwarding, StaticVPN tunnel, DynamicVPN tunnel A — one run.
        _ = try s.a.call("vpn.static.create", spec)
        _ = try s.a.call("vpn.dynamic.create", try s.dynamicSpec("aws1", router: "r1", pair: 0, subnets: ["100.64.1.0/24", "100.64.2.0/24"]))
        try vpnWaitUntil("cs1 up", timeout: 90) { try s.a.call("vpn.static.status", ["id": "cs1"])["items"]?[0]?["state"]?.stringValue == "up" }
        try s.waitSteady("aws1", subnet: "100.64.1.0/24")
        try s.lab.wait("settled", ["cs"], timeout: 60)
        let plain = try iperf(s, client: vm1.ns, serverNS: vm2.ns, server: vm2.ip, tag: "plain")
        let stat = try iperf(s, client: vm1.ns, serverNS: targets[0].0, server: targets[0].1, tag: "static")
        let dyn = try iperf(s, client: vm1.ns, serverNS: s.lab.ns("host"), server: s.lab.vpcHost, tag: "dynamic")
        let counters = try s.a.call("vpn.static.status", ["id": "cs1"])["items"]?[0]?["children"]?.arrayValue ?? []
        vpnNote("static CHILD_SA counters after the run: " + counters.map { "\($0["remoteSubnet"]?.stringValue ?? "?"): \($0["packetsOut"]?.intValue ?? 0) out / \($0["packetsIn"]?.intValue ?? 0) in" }.joined(separator: ", "))
        metric("vpn_tcp_plain_forwarding_mbit_s", plain.mbit, "Mbit/s")
        metric("vpn_tcp_static_tunnel_mbit_s", stat.mbit, "Mbit/s")
        metric("vpn_tcp_dynamic_tunnel_mbit_s", dyn.mbit, "Mbit/s")
        metric("vpn_tcp_static_tunnel_retransmits", Double(stat.retransmits), "segments")
        metric("vpn_tcp_dynamic_tunnel_retransmits", Double(dyn.retransmits), "segments")
        closeSession()
    }

    /// iperf3 -t 5 from `client` to a one-off server; receiver's rate and sender retransmits.
    func iperf(_ s: Session, client: String, serverNS: String, server: String, tag: String) throws -> (mbit: Double, retransmits: Int) {
        let srv = try VPNChild(["ip", "netns", "exec", serverNS, "iperf3", "-s", "-1", "-p", "5211"], stdout: work + "/iperf-server-\(tag).txt")
        defer {
            srv.signal(SIGTERM)
            srv.wait(timeout: 5)
        }
        try vpnPause(0.5)
        let r = try s.shell.inNS(client, ["iperf3", "-c", server, "-p", "5211", "-t", "5", "-J"], check: false, timeout: 60)
        guard let j = try? JSONValue(parsing: Array(r.stdout.utf8)), let bps = j["end"]?["sum_received"]?["bits_per_second"]?.doubleValue else {
            throw VPNBenchError("iperf3 \(tag) to \(server) failed: \(r.stdout.suffix(300))\(r.stderr.suffix(300))")
        }
        let retrans = Int(j["end"]?["sum_sent"]?["retransmits"]?.intValue ?? 0)
        vpnNote("iperf3 -t 5 \(tag): \(vpnFmt(bps / 1e6, 1)) Mbit/s received, \(retrans) retransmits")
        return (bps / 1e6, retrans)
    }

    // MARK: - phase: scale

    func phaseScale() throws {
        let n = options.vpns
        let s = try openSession("scale", hold: 30, keepalive: 10, pairs: n)
        var vms: [VPNVM] = []
        for k in 0..<n {
            vms.append(try s.tenant(router: "r\(k + 1)", bridge: "b\(k + 1)", octet: 10 + k, vm: k + 1))
        }
        try vpnPause(2)
        let rss0 = s.a.rssKiB
        let specs = try (0..<n).map { k in try s.dynamicSpec("aws\(k + 1)", router: "r\(k + 1)", pair: k, subnets: ["100.64.\(10 + k).0/24"]) }
        metric("vpn_scale_vpns", Double(n), "VPNs")

        // 1. The creates one after the other (each answered once both of its tunnels' IKE
        //    and CHILD SAs are up).
        let seq = try bringUp(s, specs: specs, vms: vms, concurrent: false)
        metric("vpn_scale_creates_answered_s", seq.answered, "s")
        metric("vpn_scale_all_tunnels_up_s", seq.up, "s")
        metric("vpn_scale_all_vms_reach_vpc_s", seq.reached, "s")

        try vpnPause(3)
        let items = try s.a.call("vpn.dynamic.status")["items"]?.arrayValue ?? []
        var rss: [Double] = [], pss: [Double] = []
        for v in items {
            var r = 0, p = 0
            for t in v["tunnels"]?.arrayValue ?? [] {
                for key in ["charon", "bird"] {
                    guard let pid = vpnPidIn(t[key]?.stringValue ?? ""), let kib = vpnRSSKiB(pid) else {
                        throw VPNBenchError("\(v["name"]?.stringValue ?? "?") tunnel \(t["tunnel"]?.stringValue ?? "?"): no running \(key) (status says \(t[key]?.stringValue ?? "nothing"))")
                    }
                    r += kib
                    p += vpnPSSKiB(pid) ?? 0
                }
            }
            rss.append(Double(r) / 1024)
            pss.append(Double(p) / 1024)
        }
        let rss1 = s.a.rssKiB
        let growth = Double(rss1 - rss0) / 1024 / Double(n)
        vpnNote("scale: agent RSS \(vpnFmt(Double(rss0) / 1024, 1)) MiB before, \(vpnFmt(Double(rss1) / 1024, 1)) MiB with \(n) VPNs up; per VPN daemons RSS min \(vpnFmt(rss.min() ?? 0, 1)) / max \(vpnFmt(rss.max() ?? 0, 1)) MiB")
        metric("vpn_scale_daemons_rss_per_vpn_mib", rss.reduce(0, +) / Double(rss.count), "MiB")
        metric("vpn_scale_daemons_pss_per_vpn_mib", pss.reduce(0, +) / Double(pss.count), "MiB")
        metric("vpn_scale_agent_rss_growth_per_vpn_mib", growth, "MiB")
        metric("vpn_scale_total_rss_per_vpn_mib", rss.reduce(0, +) / Double(rss.count) + growth, "MiB")

        let d0 = vpnMonoNow()
        for k in 0..<n { _ = try s.a.call("vpn.dynamic.delete", ["id": .string("aws\(k + 1)")], timeout: 300) }
        metric("vpn_scale_delete_all_s", vpnMonoNow() - d0, "s")
        let names = (0..<n).flatMap { k in k == 0 ? ["A", "B"] : [String(format: "A%02d", k), String(format: "B%02d", k)] }
        let idle = try s.lab.wait("idle", names, timeout: 180)
        vpnNote("scale: every lab endpoint idle \(vpnFmt(idle, 1)) s after the deletes")

        // 2. The same creates sent at once, each on its own connection (as a cloud
        //    controller handling several tenants would).
        let par = try bringUp(s, specs: specs, vms: vms, concurrent: true)
        metric("vpn_scale_concurrent_creates_answered_s", par.answered, "s")
        metric("vpn_scale_concurrent_all_tunnels_up_s", par.up, "s")
        metric("vpn_scale_concurrent_all_vms_reach_vpc_s", par.reached, "s")
        closeSession()
    }

    /// Creates every VPN (one after the other, or all at once on separate connections) and
    /// waits until every tunnel is up with routes and every VM's ping is answered by the VPC
    /// host; returns the seconds from the first create to each point.
    func bringUp(_ s: Session, specs: [JSONValue], vms: [VPNVM], concurrent: Bool) throws -> (answered: Double, up: Double, reached: Double) {
        let n = specs.count, how = concurrent ? "concurrent" : "sequential"
        let t0 = vpnMonoNow()
        if concurrent {
            final class Outcome: @unchecked Sendable {
                let lock = NSLock()
                var errors: [String] = []
            }
            let outcome = Outcome(), group = DispatchGroup(), socket = s.a.socketPath
            for spec in specs {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let c = try RPCClient(socketPath: socket)
                        _ = try c.call("vpn.dynamic.create", params: spec, timeout: 300)
                    } catch {
                        outcome.lock.lock()
                        outcome.errors.append("\(spec["name"]?.stringValue ?? "?"): \(error)")
                        outcome.lock.unlock()
                    }
                }.start()
            }
            group.wait()
            if !outcome.errors.isEmpty { throw VPNBenchError("concurrent creates failed: \(outcome.errors.joined(separator: "; "))") }
        } else {
            for spec in specs { _ = try s.a.call("vpn.dynamic.create", spec, timeout: 300) }
        }
        let answered = vpnMonoNow() - t0
        vpnNote("scale (\(how)): \(n) creates answered after \(vpnFmt(answered)) s")
        var lastReport = vpnMonoNow()
        try vpnWaitUntil("\(2 * n) tunnels up with routes", timeout: 600, interval: 0.2) {
            let items = try s.a.call("vpn.dynamic.status")["items"]?.arrayValue ?? []
            let tunnels = items.flatMap { $0["tunnels"]?.arrayValue ?? [] }
            let good = tunnels.filter { Session.upWithRoutes($0) }.count
            if vpnMonoNow() - lastReport > 10 {
                lastReport = vpnMonoNow()
                vpnNote("scale (\(how)): \(good) of \(2 * n) tunnels up with routes after \(vpnFmt(vpnMonoNow() - t0, 1)) s")
            }
            return items.count == n && good == 2 * n
        }
        let up = vpnMonoNow() - t0
        // Every VM reaches the VPC host through its own VPN.
        var reached = Set<Int>()
        var round = 0
        try vpnWaitUntil("every VM to reach the VPC host", timeout: 120, interval: 0.2) {
            round += 1
            let pending = vms.indices.filter { !reached.contains($0) }
            let children = try pending.map { i in
                (i, try VPNChild(["ip", "netns", "exec", vms[i].ns, "ping", "-n", "-c", "1", "-W", "1", s.lab.vpcHost],
                                 stdout: work + "/scale-ping-\(i).txt"))
            }
            for (i, c) in children where c.wait(timeout: 10) == 0 { reached.insert(i) }
            return reached.count == n
        }
        let all = vpnMonoNow() - t0
        vpnNote("scale (\(how)): all \(2 * n) tunnels up with routes after \(vpnFmt(up)) s, all \(n) VMs answered by the VPC host after \(vpnFmt(all)) s (ping rounds: \(round))")
        return (answered, up, all)
    }
}

extension VPNLab {
    /// Removes a lab (and extra peers) with this prefix even if this process did not build it.
    func forceDown() {
        _ = try? shell.run(["python3", root + "/Scripts/bench_vpn.py", "down", "--prefix", VPNLab.prefix], check: false, timeout: 300)
    }
}
