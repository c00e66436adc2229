// `warren-bench datapath`: real frames between two VM namespaces through a Linux kernel
// bridge, a Warren virtual bridge and two Warren bridges joined by a Warren router — the
// same veths and namespaces in every case (issue 4, "Benchmark"). Root only.
//
// Prints `METRIC <name> <value> <unit>` lines, per case (kernel, bridge, router; ovs when
// `ovs-vsctl` is installed and its daemon answers):
// - udp64 / udp1500: UDP frames/s delivered to VM 2 (60+FCS and 1514+FCS bytes, one flow);
// - udp64_10k: the same with source ports cycling over 10 000 values;
// - udp64_random: a random source port per frame;
// - udp64_setup (Warren only): a random source AND destination port per frame with a chain
//   on the ingress port that reads both ports, so every frame is a new megaflow — the
//   flow setup rate (simulate + install); installs_per_s is the agent's own count;
// - tcp: iperf3 -t 5 Mbit/s with offloads (tx csum, TSO, GSO, GRO) off on every veth end;
// - rtt_p50 / rtt_p99: 1000 pings at 2 ms intervals, microseconds;
// and each Warren figure's ratio to the kernel bridge (`…ratio_to_kernel`); then the
// agent's resident memory idle and with 100 000 flows installed (a fresh agent with a
// 600 s flow idle timeout, flow.stats checked).
// Frames are counted at the receiving VM (a recvmmsg receiver in VM 2), not at the switch.
// CPUs: the generator thread is pinned to --generator-cpu (0), every agent thread to
// --switch-cpu (1); the receiver floats unless --receiver-cpu is given.
// Everything created is removed on exit, also after an error or Ctrl-C.

import Foundation
import WarrenRPC
#if canImport(Glibc)
import Glibc
#endif

enum DatapathBench {
    struct Options {
        var agentPath: String
        var warmup = 1.0
        var seconds = 2.0
        var generatorCPU: Int? = 0
        var switchCPU: Int? = 1
        var receiverCPU: Int?
        var tcpSeconds = 5
        var pings = 1000
        var flowsForMemory = 100_000
        /// Which parts run (all by default); ratios need "kernel".
        var cases: Set<String> = DatapathBench.allCases
    }

    static let allCases: Set<String> = ["kernel", "ovs", "bridge", "router", "memory"]

    static let usage = """
    usage: warren-bench datapath [--agent PATH] [--seconds S] [--warmup S] [--generator-cpu N|any]
                                 [--switch-cpu N|any] [--receiver-cpu N|any] [--tcp-seconds S]
                                 [--pings N] [--memory-flows N] [--cases kernel,ovs,bridge,router,memory]
      --agent PATH   warren-agent binary (default: next to warren-bench)
    Run as root. Creates namespaces wbd-vm1, wbd-vm2, veths wbd1, wbd2 and bridge wbdbr0; removes them on exit.
    """

    static func run(_ arguments: [String]) -> Int32 {
        let selfPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var o = Options(agentPath: URL(fileURLWithPath: selfPath).deletingLastPathComponent().appendingPathComponent("warren-agent").path)
        var i = 0
        func value(_ name: String) throws -> String {
            i += 1
            guard i < arguments.count else { throw BenchError("\(name) needs a value") }
            return arguments[i]
        }
        func number(_ name: String) throws -> Double {
            let v = try value(name)
            guard let d = Double(v), d > 0 else { throw BenchError("\(name): expected a positive number, got \(v)") }
            return d
        }
        func cpu(_ name: String) throws -> Int? {
            let v = try value(name)
            if v == "any" { return nil }
            guard let c = Int(v), c >= 0, c < sysconf(Int32(_SC_NPROCESSORS_ONLN)) else {
                throw BenchError("\(name): expected a CPU number below \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) or \"any\", got \(v)")
            }
            return c
        }
        do {
            while i < arguments.count {
                switch arguments[i] {
                case "--agent": o.agentPath = try value("--agent")
                case "--seconds": o.seconds = try number("--seconds")
                case "--warmup": o.warmup = try number("--warmup")
                case "--generator-cpu": o.generatorCPU = try cpu("--generator-cpu")
                case "--switch-cpu": o.switchCPU = try cpu("--switch-cpu")
                case "--receiver-cpu": o.receiverCPU = try cpu("--receiver-cpu")
                case "--tcp-seconds": o.tcpSeconds = Int(try number("--tcp-seconds"))
                case "--pings": o.pings = Int(try number("--pings"))
                case "--memory-flows": o.flowsForMemory = Int(try number("--memory-flows"))
                case "--cases":
                    let list = try value("--cases").split(separator: ",").map(String.init)
                    if let bad = list.first(where: { !allCases.contains($0) }) {
                        throw BenchError("--cases: unknown case \(bad) (known: \(allCases.sorted().joined(separator: ", ")))")
                    }
                    o.cases = Set(list)
                case "-h", "--help": print(usage); return 0
                default: throw BenchError("unknown option \(arguments[i])")
                }
                i += 1
            }
        } catch {
            printError("warren-bench datapath: \(error)\n\(usage)")
            return 2
        }
        guard geteuid() == 0 else {
            printError("warren-bench datapath: must run as root (it creates namespaces and veths)")
            return 2
        }
        installInterruptHandlers()
        let cleanup = BenchCleanup()
        let runner = DatapathRunner(options: o, cleanup: cleanup)
        do {
            try runner.run()
            cleanup.runAll()
            return 0
        } catch {
            fflush(nil)
            printError("warren-bench datapath: \(error)")
            cleanup.runAll()
            return 1
        }
    }
}

/// Runs the cases in order; holds the figures for ratios and the summary.
final class DatapathRunner {
    let options: DatapathBench.Options
    let cleanup: BenchCleanup
    let lab: BenchLab
    var figures: [String: Double] = [:]
    var goals: [String] = []

    init(options: DatapathBench.Options, cleanup: BenchCleanup) {
        self.options = options
        self.cleanup = cleanup
        lab = BenchLab(cleanup: cleanup)
    }

    func note(_ text: String) {
        print("# \(text)")
        fflush(nil)
    }

    /// Prints a figure and, for a Warren case, its ratio to the kernel bridge's same figure.
    func record(_ name: String, _ value: Double, _ unit: String, kernelKey: String? = nil) {
        figures[name] = value
        metric("datapath.\(name)", value, unit)
        if let k = kernelKey, let base = figures[k], base > 0 {
            let ratioName = name.split(separator: ".").dropLast().joined(separator: ".")
            figures["\(ratioName).ratio_to_kernel"] = value / base
            metric("datapath.\(ratioName).ratio_to_kernel", value / base, "ratio")
        }
    }

    func run() throws {
        for tool in ["ip", "ethtool", "iperf3", "ping", "taskset", "timeout", "nft"] where !Shell.exists(tool) {
            throw BenchError("\(tool) is not installed (Scripts/setup.sh installs it)")
        }
        guard FileManager.default.isExecutableFile(atPath: options.agentPath) else {
            throw BenchError("--agent: \(options.agentPath) is not an executable (build it: swift build -c release --product warren-agent)")
        }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        note("\(cpus) CPUs; generator on CPU \(options.generatorCPU.map(String.init) ?? "any"), agent on CPU \(options.switchCPU.map(String.init) ?? "any"), receiver on CPU \(options.receiverCPU.map(String.init) ?? "any"); \(options.warmup) s warm-up, \(options.seconds) s per UDP figure")
        AgentProcess.removeLeftover()
        BenchLab.removeLeftovers()
        try lab.create()
        try checkInterrupted()

        let cases = options.cases
        // (a) Linux kernel bridge.
        if cases.contains("kernel") {
            try lab.address(routed: false)
            try lab.kernelBridgeUp()
            try lab.warmUpPing(from: lab.vm1, to: lab.vm2.address)
            try suite("kernel", destinationMAC: lab.vm2.mac, warren: nil)
            try lab.kernelBridgeDown()
        }

        // (d) Open vSwitch userspace datapath, when installed.
        if cases.contains("ovs") { try ovsCase() }

        // (b) one Warren bridge, (c) two Warren bridges and a router.
        if cases.contains("bridge") || cases.contains("router") {
            let agent = try AgentProcess(binary: options.agentPath, flows: [:], cleanup: cleanup)
            if let c = options.switchCPU { try agent.pin(cpu: c) }
            try createL4Chain(agent)
            if cases.contains("bridge") { try warrenBridge(agent) }
            if cases.contains("router") { try warrenRouter(agent) }
            agent.stop()
        }

        // Memory with 100k flows, on a fresh agent.
        if cases.contains("memory") { try memory() }
        summary()
    }

    // MARK: cases

    /// The figures of one case. `warren` (agent, ingress port) enables the flow-setup run.
    func suite(_ name: String, destinationMAC: [UInt8], warren: (agent: AgentProcess, ingressPort: String)?) throws {
        let kernel: (String) -> String? = { name == "kernel" ? nil : "kernel.\($0)" }
        for (figure, length, pattern) in [("udp64", 60, PortPattern.fixed), ("udp1500", 1514, .fixed),
                                         ("udp64_10k", 60, .cycle(10_000)), ("udp64_random", 60, .randomSource)] {
            let r = try udp(name: "\(name) \(figure)", length: length, pattern: pattern, destinationMAC: destinationMAC)
            record("\(name).\(figure).fps", r.delivered, "frames/s", kernelKey: kernel("\(figure).fps"))
        }
        let mbps = try tcp(name: name)
        record("\(name).tcp.mbps", mbps, "Mbit/s", kernelKey: kernel("tcp.mbps"))
        let rtt = try ping(name: name)
        record("\(name).rtt_p50.us", rtt.p50, "us", kernelKey: kernel("rtt_p50.us"))
        record("\(name).rtt_p99.us", rtt.p99, "us", kernelKey: kernel("rtt_p99.us"))

        if case let (agent, port)? = warren {
            // Flow setup: the chain reads both UDP ports, so they are part of every megaflow
            // and random ports make a new flow nearly every frame.
            try agent.call("chain.attach", ["chain": "wbd-l4", "port": .string(port), "hook": "inbound"])
            let before = try agent.call("flow.stats")
            let r = try udp(name: "\(name) udp64_setup", length: 60, pattern: .randomPair, destinationMAC: destinationMAC,
                            agent: agent)
            try agent.call("chain.attach", ["port": .string(port), "hook": "inbound"])
            record("\(name).udp64_setup.fps", r.delivered, "frames/s", kernelKey: "kernel.udp64_random.fps")
            if let s0 = r.statsAtStart, let s1 = r.statsAtEnd {
                let installs = Double((s1["installs"]?.intValue ?? 0) - (s0["installs"]?.intValue ?? 0)) / r.seconds
                let evictions = (s1["evictions"]?.intValue ?? 0) - (before["evictions"]?.intValue ?? 0)
                metric("datapath.\(name).udp64_setup.installs_per_s", installs, "flows/s")
                note("\(name) udp64_setup: \(Int(installs)) flow installs/s in the agent (\(Int(installs / max(r.delivered, 1) * 100)) % of delivered frames), \(evictions) evictions, \(s1["flows"]?.intValue ?? 0) flows at the end")
            }
        }
    }

    func warrenBridge(_ agent: AgentProcess) throws {
        try lab.address(routed: false)
        try agent.call("bridge.create", ["name": "wbd-br"])
        for (i, vm) in [(1, lab.vm1), (2, lab.vm2)] {
            try agent.call("port.create", ["device": "wbd-br", "name": .string("wbd-br-\(i)")])
            try agent.call("port.bind", ["port": .string("wbd-br-\(i)"), "interface": .string(vm.hostInterface)])
        }
        try agent.waitPortsUp([lab.vm1.hostInterface, lab.vm2.hostInterface])
        try lab.warmUpPing(from: lab.vm1, to: lab.vm2.address)
        try suite("bridge", destinationMAC: lab.vm2.mac, warren: (agent, "wbd-br-1"))
        for i in 1...2 { try agent.call("port.delete", ["id": .string("wbd-br-\(i)")]) }
        try agent.call("bridge.delete", ["id": "wbd-br"])
    }

    func warrenRouter(_ agent: AgentProcess) throws {
        try lab.address(routed: true)
        try agent.call("router.create", ["name": "wbd-r"])
        var routerMAC: [UInt8] = []
        for (side, vm) in [("a", lab.vm1), ("b", lab.vm2)] {
            let bridge = "wbd-b\(side)"
            try agent.call("bridge.create", ["name": .string(bridge)])
            let gw = vm.gateway!
            let port = try agent.call("port.create", ["device": "wbd-r", "name": .string("wbd-r-\(side)"), "address": .string("\(gw)/24")])
            if side == "a" {
                guard let text = port["mac"]?.stringValue, let mac = parseMAC(text) else {
                    throw BenchError("port.create wbd-r-a: no mac in the result \(port)")
                }
                routerMAC = mac
            }
            try agent.call("port.create", ["device": .string(bridge), "name": .string("\(bridge)-up")])
            try agent.call("port.link", ["port": .string("wbd-r-\(side)"), "peer": .string("\(bridge)-up")])
            try agent.call("port.create", ["device": .string(bridge), "name": .string("\(bridge)-1")])
            try agent.call("port.bind", ["port": .string("\(bridge)-1"), "interface": .string(vm.hostInterface)])
        }
        try agent.waitPortsUp([lab.vm1.hostInterface, lab.vm2.hostInterface])
        try lab.warmUpPing(from: lab.vm1, to: lab.vm2.address)
        try lab.warmUpPing(from: lab.vm2, to: lab.vm1.address)
        try suite("router", destinationMAC: routerMAC, warren: (agent, "wbd-ba-1"))
    }

    /// A chain whose two never-matching rules read the UDP source and destination ports.
    func createL4Chain(_ agent: AgentProcess) throws {
        try agent.call("chain.create", ["name": "wbd-l4", "defaultAction": "accept"])
        try agent.call("rule.add", ["chain": "wbd-l4", "action": "drop", "name": "sport1",
                                    "match": ["ipProto": 17, "srcPortMin": 1, "srcPortMax": 1]])
        try agent.call("rule.add", ["chain": "wbd-l4", "action": "drop", "name": "dport1",
                                    "match": ["ipProto": 17, "dstPortMin": 1, "dstPortMax": 1]])
    }

    func ovsCase() throws {
        guard Shell.exists("ovs-vsctl") else {
            note("ovs: skipped — ovs-vsctl is not installed (Debian openvswitch-switch; datapath_type=netdev)")
            return
        }
        let show = try Shell.run(["ovs-vsctl", "--timeout=5", "show"], check: false, timeout: 10)
        guard show.status == 0 else {
            note("ovs: skipped — ovs-vsctl does not reach ovs-vswitchd: \(show.err.trimmingCharacters(in: .whitespacesAndNewlines))")
            return
        }
        let br = "wbdovs0"
        try Shell.run(["ovs-vsctl", "--timeout=10", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"])
        cleanup.add("ovs bridge") { _ = try? Shell.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br], check: false) }
        // The netdev bridge's internal port is a tap in the root namespace: no address on it.
        _ = try? Shell.run(["ip", "link", "set", "dev", br, "addrgenmode", "none"], check: false)
        for vm in [lab.vm1, lab.vm2] { try Shell.run(["ovs-vsctl", "--timeout=10", "add-port", br, vm.hostInterface]) }
        try lab.warmUpPing(from: lab.vm1, to: lab.vm2.address, timeout: 20)
        try suite("ovs", destinationMAC: lab.vm2.mac, warren: nil)
        try Shell.run(["ovs-vsctl", "--timeout=10", "del-br", br])
    }

    // MARK: measurements

    struct UDPResult {
        var delivered: Double
        var offered: Double
        var seconds: Double
        var statsAtStart: JSONValue?
        var statsAtEnd: JSONValue?
    }

    /// Frames/s delivered to VM 2 (and offered by VM 1) over `options.seconds` after warm-up.
    func udp(name: String, length: Int, pattern: PortPattern, destinationMAC: [UInt8], agent: AgentProcess? = nil) throws -> UDPResult {
        try checkInterrupted()
        let spec = FrameSpec(sourceMAC: lab.vm1.mac, destinationMAC: destinationMAC, sourceIP: parseIPv4(lab.vm1.address),
                             destinationIP: parseIPv4(lab.vm2.address), length: length)
        let receiver = try TrafficReceiver(vm: lab.vm2, sourceIP: spec.sourceIP, cpu: options.receiverCPU)
        let generator = try TrafficGenerator(vm: lab.vm1, spec: spec, pattern: pattern, cpu: options.generatorCPU)
        try receiver.start()
        try generator.start()
        var result = UDPResult(delivered: 0, offered: 0, seconds: 0)
        do {
            try benchSleep(options.warmup)
            result.statsAtStart = try agent?.call("flow.stats")
            let (r0, s0, t0) = (receiver.received, generator.sent, monotonicNanos())
            try benchSleep(options.seconds)
            let (r1, s1, t1) = (receiver.received, generator.sent, monotonicNanos())
            result.statsAtEnd = try agent?.call("flow.stats")
            result.seconds = Double(t1 - t0) / 1e9
            result.delivered = Double(r1 - r0) / result.seconds
            result.offered = Double(s1 - s0) / result.seconds
        } catch {
            generator.stop(); receiver.stop()
            throw error
        }
        generator.stop()
        usleep(200_000)  // let queues drain before the next figure
        receiver.stop()
        note("\(name): offered \(Int(result.offered)) frames/s, delivered \(Int(result.delivered)) frames/s (\(Int(result.delivered / max(result.offered, 1) * 100)) %)")
        guard result.delivered > 0 else {
            throw BenchError("\(name): no frame reached \(lab.vm2.namespace) (offered \(Int(result.offered)) frames/s): the path under test does not forward")
        }
        return result
    }

    /// TCP throughput VM 1 → VM 2 with iperf3, Mbit/s as received.
    func tcp(name: String) throws -> Double {
        try checkInterrupted()
        let port = "5201"
        let log = NSTemporaryDirectory() + "/wbd-iperf3-\(getpid()).log"
        let server = try Shell.spawn(["ip", "netns", "exec", lab.vm2.namespace, "iperf3", "-s", "-1", "-B", lab.vm2.address, "-p", port], logPath: log)
        cleanup.add("iperf3 server") { stopProcess(server, wait: 2); unlink(log) }
        defer { stopProcess(server, wait: 2) }
        let end = monotonicNanos() + 5_000_000_000
        while true {
            let ss = try Shell.inNamespace(lab.vm2.namespace, ["ss", "-Hltn", "sport", "= :\(port)"], check: false)
            if ss.out.contains(":\(port)") { break }
            if monotonicNanos() > end || !server.isRunning {
                throw BenchError("\(name) tcp: the iperf3 server in \(lab.vm2.namespace) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            try benchSleep(0.05)
        }
        let r = try Shell.inNamespace(lab.vm1.namespace, ["iperf3", "-c", lab.vm2.address, "-p", port, "-t", String(options.tcpSeconds), "-J"],
                                      check: false, timeout: Double(options.tcpSeconds + 20))
        let json = try? JSONValue(parsing: Array(r.out.utf8))
        guard let bps = json?["end"]?["sum_received"]?["bits_per_second"]?.doubleValue ?? json?["end"]?["sum_received"]?["bits_per_second"]?.intValue.map(Double.init),
              bps > 0 else {
            let why = json?["error"]?.stringValue ?? r.err
            throw BenchError("\(name) tcp: iperf3 gave no throughput (exit \(r.status)): \(why.prefix(500))")
        }
        let retransmits = json?["end"]?["sum_sent"]?["retransmits"]?.intValue ?? 0
        note("\(name) tcp: \(retransmits) retransmits")
        return bps / 1e6
    }

    /// Ping RTT percentiles in microseconds (each reply's rtt parsed from ping's output).
    func ping(name: String) throws -> (p50: Double, p99: Double) {
        try checkInterrupted()
        let r = try Shell.inNamespace(lab.vm1.namespace, ["ping", "-n", "-c", String(options.pings), "-i", "0.002", "-W", "1", lab.vm2.address],
                                      check: false, timeout: Double(options.pings) * 0.01 + 15)
        var rtts: [Double] = []
        for line in r.out.split(separator: "\n") {
            guard let range = line.range(of: "time=") else { continue }
            let rest = line[range.upperBound...]
            if let ms = Double(rest.prefix { $0 == "." || $0.isNumber }) { rtts.append(ms * 1000) }
        }
        guard rtts.count >= options.pings / 2 else {
            throw BenchError("\(name) ping: only \(rtts.count) of \(options.pings) replies: \(r.err.prefix(300))")
        }
        rtts.sort()
        let pct = { (p: Double) in rtts[min(rtts.count - 1, Int((Double(rtts.count) * p).rounded(.up)) - 1)] }
        note("\(name) ping: \(rtts.count)/\(options.pings) replies, min \(Int(rtts.first!)) us, max \(Int(rtts.last!)) us")
        return (pct(0.5), pct(0.99))
    }

    /// A fresh agent with a 600 s idle timeout; drive `flowsForMemory` distinct flows through
    /// one bridge (the L4 chain makes each source/destination port pair a flow) and read VmRSS.
    func memory() throws {
        try checkInterrupted()
        let target = options.flowsForMemory
        let agent = try AgentProcess(binary: options.agentPath, flows: ["idleTimeoutSeconds": 600, "maxFlows": max(200_000, target * 2)],
                                     cleanup: cleanup)
        if let c = options.switchCPU { try agent.pin(cpu: c) }
        try lab.address(routed: false)
        try agent.call("bridge.create", ["name": "wbd-br"])
        for (i, vm) in [(1, lab.vm1), (2, lab.vm2)] {
            try agent.call("port.create", ["device": "wbd-br", "name": .string("wbd-br-\(i)")])
            try agent.call("port.bind", ["port": .string("wbd-br-\(i)"), "interface": .string(vm.hostInterface)])
        }
        try createL4Chain(agent)
        try agent.call("chain.attach", ["chain": "wbd-l4", "port": "wbd-br-1", "hook": "inbound"])
        try agent.waitPortsUp([lab.vm1.hostInterface, lab.vm2.hostInterface])
        try lab.warmUpPing(from: lab.vm1, to: lab.vm2.address)
        let idle = try agent.residentKiB()
        record("agent.rss_idle.mib", Double(idle) / 1024, "MiB")

        let spec = FrameSpec(sourceMAC: lab.vm1.mac, destinationMAC: lab.vm2.mac, sourceIP: parseIPv4(lab.vm1.address),
                             destinationIP: parseIPv4(lab.vm2.address), length: 60)
        let generator = try TrafficGenerator(vm: lab.vm1, spec: spec, pattern: .pairs(target), cpu: options.generatorCPU)
        try generator.start()
        var flows = 0
        let t0 = monotonicNanos()
        let deadline = t0 + 30_000_000_000
        do {
            while monotonicNanos() < deadline {
                try benchSleep(0.5)
                flows = try agent.call("flow.stats")["flows"]?.intValue.map(Int.init) ?? 0
                if flows >= target { break }
            }
        } catch {
            generator.stop()
            throw error
        }
        generator.stop()
        let seconds = Double(monotonicNanos() - t0) / 1e9
        try benchSleep(0.5)
        let stats = try agent.call("flow.stats")
        flows = stats["flows"]?.intValue.map(Int.init) ?? 0
        let rss = try agent.residentKiB()
        note("memory: \(flows) flows after \(generator.completedPasses) passes over \(target) port pairs in \(String(format: "%.1f", seconds)) s; flow table \(String(format: "%.1f", Double(stats["flowMemoryBytes"]?.intValue ?? 0) / 1_048_576)) MiB by its own estimate")
        guard flows >= target * 95 / 100 else {
            throw BenchError("memory: only \(flows) of \(target) flows installed within 30 s (flow.stats)")
        }
        record("agent.flows", Double(flows), "flows")
        record("agent.rss_with_flows.mib", Double(rss) / 1024, "MiB")
        agent.stop()
    }

    // MARK: summary

    func summary() {
        func check(_ what: String, _ key: String, _ goal: Double, atMost: Bool = false, unit: String = "") {
            guard let v = figures[key] else { return }
            let met = atMost ? v <= goal : v >= goal
            let shown = v >= 100 ? String(Int(v.rounded())) : String(format: "%.2f", v)
            note("goal \(what) \(atMost ? "≤" : "≥") \(goal)\(unit): \(shown)\(unit) — \(met ? "met" : "MISSED")")
        }
        check("bridge udp64 ratio to kernel", "bridge.udp64.ratio_to_kernel", 1.0, unit: "×")
        check("router udp64 ratio to kernel", "router.udp64.ratio_to_kernel", 0.8, unit: "×")
        check("bridge flow setup (random ports) frames/s", "bridge.udp64_setup.fps", 100_000)
        check("router flow setup (random ports) frames/s", "router.udp64_setup.fps", 100_000)
        check("bridge TCP Mbit/s", "bridge.tcp.mbps", 1500)
        check("router TCP Mbit/s", "router.tcp.mbps", 1500)
        check("bridge RTT p50 µs", "bridge.rtt_p50.us", 150, atMost: true)
        check("router RTT p50 µs", "router.rtt_p50.us", 150, atMost: true)
        check("agent RSS MiB with \(options.flowsForMemory) flows", "agent.rss_with_flows.mib", 64, atMost: true)
        if let b = figures["bridge.udp64.fps"], let ovs = figures["ovs.udp64.fps"], ovs > 0 {
            metric("datapath.bridge.udp64.ratio_to_ovs", b / ovs, "ratio")
            note("goal bridge udp64 ≥ 2× OVS (AF_PACKET ports): \(String(format: "%.2f", b / ovs))× — \(b / ovs >= 2 ? "met" : "MISSED")")
        }
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// "aa:bb:cc:dd:ee:ff" → 6 bytes.
func parseMAC(_ text: String) -> [UInt8]? {
    let parts = text.split(separator: ":").compactMap { UInt8($0, radix: 16) }
    return parts.count == 6 ? parts : nil
}
