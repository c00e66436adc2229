// The lab of `warren-bench datapath`: commands, cleanup, the two VM namespaces and the
// agent process.
//
// What: `Shell` runs `ip`, `ethtool`, `iperf3`, `ping`, `taskset` to completion (or in the
// background); `BenchCleanup` is a LIFO list of undo steps run on every exit path (normal
// end, error, SIGINT/SIGTERM: the handler only raises a flag that the bench checks between
// steps, so cleanup never runs inside a signal handler); `BenchLab` owns namespaces
// wbd-vm1/wbd-vm2 (interface eth0 inside), host veth ends wbd1/wbd2 and the kernel bridge
// wbdbr0 — never an address in the root namespace (IPv6 address generation is off on the
// host ends); `AgentProcess` starts a warren-agent on its own state directory and talks
// JSON-RPC to it.
// Invariants: everything created is registered for cleanup before the next step; leftovers
// of an interrupted run (same fixed names) are removed at start, including processes still
// inside our namespaces and an agent whose pid file we wrote.
// Threading: main thread only, except `benchInterrupted` (an atomic).

import Foundation
import Synchronization
import WarrenRPC
#if canImport(Glibc)
import Glibc
#endif

/// Raised by SIGINT/SIGTERM; checked between steps and inside measurement loops.
let benchInterruptFlag = Atomic<Int>(0)

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Throws when the user interrupted the run.
func checkInterrupted() throws {
    if benchInterruptFlag.load(ordering: .relaxed) != 0 { throw BenchError("interrupted") }
}

func installInterruptHandlers() {
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal(sig) { _ in benchInterruptFlag.store(1, ordering: .relaxed) }
    }
}

/// Sleeps up to `seconds`, returning early (throwing) when interrupted.
func benchSleep(_ seconds: Double) throws {
    let end = monotonicNanos() + UInt64(seconds * 1e9)
    while monotonicNanos() < end {
        try checkInterrupted()
        usleep(UInt32(min(50_000, max(1, (end &- monotonicNanos()) / 1000))))
    }
}

// MARK: - commands

struct CommandResult {
    var status: Int32
    var out: String
    var err: String
}

enum Shell {
    /// Runs `args` (looked up in PATH) to completion, killed after `timeout` seconds.
    /// With `check`, a non-zero exit throws an error naming the command and its stderr.
    @discardableResult
    static func run(_ args: [String], check: Bool = true, timeout: Double = 60) throws -> CommandResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["-k", "2", String(Int(timeout.rounded(.up)))] + args
        let out = Pipe()
        p.standardOutput = out
        let errPath = NSTemporaryDirectory() + "/wbd-cmd-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { unlink(errPath) }
        guard let errHandle = FileHandle(forUpdatingAtPath: errPath) else { throw BenchError("cannot create \(errPath)") }
        defer { try? errHandle.close() }
        p.standardError = errHandle
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw BenchError("cannot run \(args.joined(separator: " ")): \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try? errHandle.seek(toOffset: 0)
        let errData = (try? errHandle.readToEnd()) ?? Data()
        let r = CommandResult(status: p.terminationStatus, out: String(decoding: data, as: UTF8.self),
                              err: String(decoding: errData, as: UTF8.self))
        if check && r.status != 0 {
            let why = r.status == 124 ? "timed out after \(Int(timeout)) s" : "exit status \(r.status)"
            throw BenchError("`\(args.joined(separator: " "))` failed (\(why)): \(r.err.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return r
    }

    /// Starts `args` in the background with stdout and stderr appended to `logPath`.
    static func spawn(_ args: [String], logPath: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw BenchError("cannot open \(logPath)") }
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw BenchError("cannot start \(args.joined(separator: " ")): \(error)") }
        try? log.close()
        return p
    }

    static func exists(_ tool: String) -> Bool {
        ((try? run(["sh", "-c", "command -v \(tool)"], check: false))?.status ?? 1) == 0
    }

    /// Runs `args` inside network namespace `ns`.
    @discardableResult
    static func inNamespace(_ ns: String, _ args: [String], check: Bool = true, timeout: Double = 60) throws -> CommandResult {
        try run(["ip", "netns", "exec", ns] + args, check: check, timeout: timeout)
    }
}

/// Sends `sig` to `pid` and waits up to `wait` seconds for it to go, then SIGKILLs it.
/// Only for processes this bench started.
func stopProcess(_ p: Process, wait: Double = 10) {
    guard p.isRunning else { return }
    kill(p.processIdentifier, SIGTERM)
    let end = monotonicNanos() + UInt64(wait * 1e9)
    while p.isRunning && monotonicNanos() < end { usleep(20_000) }
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }
}

// MARK: - cleanup

/// Undo steps, run last-registered first, each at most once.
final class BenchCleanup {
    private var steps: [(what: String, run: () -> Void)] = []

    func add(_ what: String, _ step: @escaping () -> Void) { steps.append((what, step)) }

    func runAll() {
        while let step = steps.popLast() { step.run() }
    }
}

// MARK: - the lab

/// One VM: a namespace with `eth0`, whose veth peer `hostInterface` is in the root namespace.
struct BenchVM {
    let namespace: String
    let hostInterface: String
    let mac: [UInt8]
    var address: String = ""   // "100.64.50.1"
    var prefixLength = 24
    var gateway: String?

    var macText: String { mac.map { String(format: "%02x", $0) }.joined(separator: ":") }
}

final class BenchLab {
    static let bridgeName = "wbdbr0"
    var vm1 = BenchVM(namespace: "wbd-vm1", hostInterface: "wbd1", mac: [0x02, 0x00, 0x64, 0xbd, 0x00, 0x01])
    var vm2 = BenchVM(namespace: "wbd-vm2", hostInterface: "wbd2", mac: [0x02, 0x00, 0x64, 0xbd, 0x00, 0x02])
    let cleanup: BenchCleanup

    init(cleanup: BenchCleanup) { self.cleanup = cleanup }

    /// Removes what an interrupted earlier run left behind (only our fixed names).
    static func removeLeftovers() {
        for ns in ["wbd-vm1", "wbd-vm2"] { removeNamespace(ns) }
        for link in ["wbd1", "wbd2", bridgeName] {
            if (try? Shell.run(["ip", "link", "show", "dev", link], check: false))?.status == 0 {
                _ = try? Shell.run(["ip", "link", "del", "dev", link], check: false)
            }
        }
    }

    /// Kills the processes still inside one of our namespaces (by pid), then deletes it.
    static func removeNamespace(_ ns: String) {
        guard FileManager.default.fileExists(atPath: "/run/netns/\(ns)") else { return }
        if let pids = try? Shell.run(["ip", "netns", "pids", ns], check: false) {
            for line in pids.out.split(separator: "\n") { if let pid = Int32(line) { kill(pid, SIGKILL) } }
        }
        _ = try? Shell.run(["ip", "netns", "del", ns], check: false)
    }

    func create() throws {
        for vm in [vm1, vm2] {
            try Shell.run(["ip", "netns", "add", vm.namespace])
            cleanup.add("namespace \(vm.namespace)") { BenchLab.removeNamespace(vm.namespace) }
            try Shell.run(["ip", "link", "add", vm.hostInterface, "type", "veth", "peer", "name", "eth0", "netns", vm.namespace])
            cleanup.add("link \(vm.hostInterface)") { _ = try? Shell.run(["ip", "link", "del", "dev", vm.hostInterface], check: false) }
            // No address of any kind in the root namespace: no IPv6 link-local on the host end.
            try Shell.run(["ip", "link", "set", "dev", vm.hostInterface, "addrgenmode", "none"])
            // Inside the VM: no IPv6 chatter (router solicitations, MLD) on the measured path.
            try Shell.inNamespace(vm.namespace, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
            try Shell.inNamespace(vm.namespace, ["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
            try Shell.run(["ip", "-n", vm.namespace, "link", "set", "dev", "eth0", "address", vm.macText])
            try Shell.run(["ip", "-n", vm.namespace, "link", "set", "dev", "lo", "up"])
            try Shell.run(["ip", "-n", vm.namespace, "link", "set", "dev", "eth0", "up"])
            try Shell.run(["ip", "link", "set", "dev", vm.hostInterface, "up"])
            // Offloads off on both ends (the TCP figure is "with offloads off"; a packet-socket
            // datapath does not segment TSO/GSO super-frames). The same for every case.
            try Shell.inNamespace(vm.namespace, ["ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off", "gro", "off"])
            try Shell.run(["ethtool", "-K", vm.hostInterface, "tx", "off", "tso", "off", "gso", "off", "gro", "off"])
        }
        // VM 2 drops the UDP test frames at its ingress hook, which runs after the counting
        // packet socket has seen them: its IP stack (a route lookup and a rate-limited ICMP
        // port-unreachable attempt per frame) then costs nothing, in every case alike, and
        // the figures are the switch's, not VM 2's kernel's. TCP and ICMP pass.
        try Shell.inNamespace(vm2.namespace, ["nft", "add table netdev wbd; add chain netdev wbd in { type filter hook ingress device eth0 priority 0; policy accept; }; add rule netdev wbd in ip protocol udp drop"])
    }

    /// Puts both VMs in one subnet (bridged cases) or in two subnets behind gateways.
    func address(routed: Bool) throws {
        if routed {
            vm1.address = "100.64.51.10"; vm1.gateway = "100.64.51.1"
            vm2.address = "100.64.52.10"; vm2.gateway = "100.64.52.1"
        } else {
            vm1.address = "100.64.50.1"; vm1.gateway = nil
            vm2.address = "100.64.50.2"; vm2.gateway = nil
        }
        for vm in [vm1, vm2] {
            try Shell.run(["ip", "-n", vm.namespace, "addr", "flush", "dev", "eth0"])
            try Shell.run(["ip", "-n", vm.namespace, "neigh", "flush", "dev", "eth0"])
            try Shell.run(["ip", "-n", vm.namespace, "addr", "add", "\(vm.address)/\(vm.prefixLength)", "dev", "eth0"])
            if let gw = vm.gateway { try Shell.run(["ip", "-n", vm.namespace, "route", "replace", "default", "via", gw]) }
        }
    }

    /// Enslaves both host ends to a new kernel bridge wbdbr0 (no address on it).
    func kernelBridgeUp() throws {
        let br = BenchLab.bridgeName
        try Shell.run(["ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        cleanup.add("link \(br)") { _ = try? Shell.run(["ip", "link", "del", "dev", br], check: false) }
        try Shell.run(["ip", "link", "set", "dev", br, "addrgenmode", "none"])
        for vm in [vm1, vm2] { try Shell.run(["ip", "link", "set", "dev", vm.hostInterface, "master", br]) }
        try Shell.run(["ip", "link", "set", "dev", br, "up"])
    }

    func kernelBridgeDown() throws {
        for vm in [vm1, vm2] { try Shell.run(["ip", "link", "set", "dev", vm.hostInterface, "nomaster"]) }
        try Shell.run(["ip", "link", "del", "dev", BenchLab.bridgeName])
    }

    /// Pings until `count` consecutive replies arrive or `timeout` passes (ARP, MAC learning).
    func warmUpPing(from: BenchVM, to address: String, timeout: Double = 10) throws {
        let end = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < end {
            try checkInterrupted()
            let r = try Shell.inNamespace(from.namespace, ["ping", "-n", "-c", "3", "-i", "0.05", "-W", "1", address], check: false, timeout: 10)
            if r.status == 0 { return }
        }
        throw BenchError("no ping replies from \(address) in \(from.namespace) within \(Int(timeout)) s (the path under test does not forward)")
    }
}

// MARK: - the agent

final class AgentProcess {
    let binary: String
    let stateDirectory: String
    private(set) var process: Process
    private var client: RPCClient?

    var pid: Int32 { process.processIdentifier }
    var socketPath: String { stateDirectory + "/warren.sock" }
    static let pidFile = "/tmp/wbd-bench-agent.pid"

    /// Kills an agent an interrupted earlier run left (its pid file names it and its command
    /// line still is a warren-agent on a wbd-bench state directory).
    static func removeLeftover() {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return }
        if let cmd = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
           cmd.contains("warren-agent"), cmd.contains("wbd-bench-") {
            kill(pid, SIGKILL)
            usleep(200_000)
        }
        unlink(pidFile)
    }

    /// Starts the agent with `flows` settings (e.g. idleTimeoutSeconds) on a fresh state directory.
    init(binary: String, flows: [String: Any], cleanup: BenchCleanup) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("--agent: \(binary) is not an executable (build it: swift build -c release --product warren-agent)")
        }
        self.binary = binary
        var template = Array("/tmp/wbd-bench-XXXXXX".utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("cannot create a state directory under /tmp")
        }
        stateDirectory = String(cString: dir)
        let state = stateDirectory
        cleanup.add("state directory") { try? FileManager.default.removeItem(atPath: state) }
        let config: [String: Any] = ["stateDirectory": state, "logLevel": "warning", "flows": flows,
                                     "store": ["synchronous": "normal"]]
        let configPath = state + "/config.json"
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: configPath))
        process = try Shell.spawn([binary, "--config", configPath], logPath: state + "/agent.log")
        try? "\(process.processIdentifier)\n".write(toFile: AgentProcess.pidFile, atomically: true, encoding: .utf8)
        cleanup.add("agent") { [self] in stop() }
        try waitReady()
    }

    private func waitReady(timeout: Double = 30) throws {
        let end = monotonicNanos() + UInt64(timeout * 1e9)
        while monotonicNanos() < end {
            try checkInterrupted()
            guard process.isRunning else { throw BenchError("warren-agent exited with status \(process.terminationStatus): \(logTail())") }
            if (try? call("agent.status")) != nil { return }
            client?.close(); client = nil
            usleep(100_000)
        }
        throw BenchError("warren-agent did not answer on \(socketPath) within \(Int(timeout)) s: \(logTail())")
    }

    func logTail() -> String {
        let log = (try? String(contentsOfFile: stateDirectory + "/agent.log", encoding: .utf8)) ?? ""
        return String(log.suffix(2000))
    }

    @discardableResult
    func call(_ method: String, _ params: [String: JSONValue] = [:]) throws -> JSONValue {
        if client == nil { client = try RPCClient(socketPath: socketPath) }
        do {
            return try client!.call(method, params: .object(params), timeout: 30)
        } catch let e as RPCClientError {
            client?.close(); client = nil
            throw BenchError("\(method): \(e)")
        } catch {
            throw BenchError("\(method) \(JSONValue.object(params)): \(error)")
        }
    }

    /// Waits until the datapath reports every interface in `interfaces` as "up".
    func waitPortsUp(_ interfaces: [String], timeout: Double = 10) throws {
        let end = monotonicNanos() + UInt64(timeout * 1e9)
        var last = ""
        while monotonicNanos() < end {
            try checkInterrupted()
            let ports = try call("flow.stats")["ports"]?.arrayValue ?? []
            let up = Set(ports.filter { $0["state"]?.stringValue == "up" }.compactMap { $0["interface"]?.stringValue })
            if interfaces.allSatisfy(up.contains) { return }
            last = ports.map { "\($0["interface"]?.stringValue ?? "?"): \($0["state"]?.stringValue ?? "?")" }.joined(separator: ", ")
            usleep(50_000)
        }
        throw BenchError("datapath ports not up within \(Int(timeout)) s (\(last))")
    }

    /// Pins every thread of the agent to `cpu` (threads it creates later inherit it).
    func pin(cpu: Int) throws {
        try Shell.run(["taskset", "-a", "-p", "-c", String(cpu), String(pid)])
    }

    /// The agent's resident memory (VmRSS) in KiB.
    func residentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first?.trimmingCharacters(in: .whitespaces) ?? "") else {
            throw BenchError("no VmRSS in /proc/\(pid)/status")
        }
        return kib
    }

    func stop() {
        client?.close(); client = nil
        stopProcess(process)
        unlink(AgentProcess.pidFile)
    }
}
