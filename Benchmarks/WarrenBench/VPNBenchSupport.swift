// Support for `warren-bench vpn` (VPNBench.swift): child processes, the agent under test,
// VM namespaces, the peer lab (Scripts/bench_vpn.py + Scripts/lab/labctl.py), ping runs and
// cleanup.
//
// Conventions (project rules): every namespace and host interface created here carries the
// prefix "wvb" (lab "wvb-*", uplink "wvb-up", VMs "wvb-vm<n>" with host ends "wvbv<n>");
// addresses only from 100.64.0.0/10, 198.51.100.0/24, 203.0.113.0/24, 169.254.0.0/16 and
// never in the root namespace; only processes started here are signalled, by PID.
// Threading: single-threaded; SIGINT/SIGTERM only set a flag that every wait checks, so an
// interrupted run unwinds through the normal error path and cleans up.

import Foundation
import WarrenRPC

#if canImport(Glibc)
import Glibc
#endif

struct VPNBenchError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

// MARK: - interruption

nonisolated(unsafe) var vpnBenchInterrupted: Int32 = 0

func vpnInstallInterruptHandlers() {
    signal(SIGINT) { _ in vpnBenchInterrupted = 1 }
    signal(SIGTERM) { _ in vpnBenchInterrupted = 1 }
    signal(SIGPIPE, SIG_IGN)
}

func vpnCheckInterrupted() throws {
    if vpnBenchInterrupted != 0 { throw VPNBenchError("interrupted") }
}

// MARK: - clocks and waiting

/// Monotonic seconds.
func vpnMonoNow() -> Double { Double(monotonicNanos()) / 1e9 }

/// Wall-clock seconds (what `ping -D` prints).
func vpnWallNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Sleeps, waking every 50 ms to notice an interrupt.
func vpnPause(_ seconds: Double) throws {
    let end = vpnMonoNow() + seconds
    while true {
        try vpnCheckInterrupted()
        let left = end - vpnMonoNow()
        if left <= 0 { return }
        usleep(UInt32(min(left, 0.05) * 1e6))
    }
}

/// Polls `body` until it returns true; returns the seconds waited.
@discardableResult
func vpnWaitUntil(_ what: String, timeout: Double, interval: Double = 0.05, _ body: () throws -> Bool) throws -> Double {
    let start = vpnMonoNow()
    while true {
        try vpnCheckInterrupted()
        if try body() { return vpnMonoNow() - start }
        if vpnMonoNow() - start > timeout { throw VPNBenchError("timed out after \(Int(timeout)) s waiting for \(what)") }
        try vpnPause(interval)
    }
}

func vpnMedian(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func vpnNote(_ text: String) {
    print("# " + text)
    fflush(nil)
}

func vpnFmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

// MARK: - child processes

/// A child process started with posix_spawnp in its own process group (a Ctrl-C reaches
/// only the benchmark, which then stops its children in order). Output goes to files.
final class VPNChild {
    let pid: pid_t
    let argv: [String]
    private(set) var exitStatus: Int32?

    init(_ argv: [String], stdout: String, stderr: String? = nil) throws {
        self.argv = argv
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        if let stderr {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        let env = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        var cargv: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for p in cargv { free(p) }
            for p in cenv { free(p) }
        }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, argv[0], &actions, &attr, &cargv, &cenv)
        guard rc == 0 else { throw VPNBenchError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// Non-blocking: whether it has exited (reaps it).
    var exited: Bool {
        if exitStatus != nil { return true }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid {
            exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return true
        }
        return r < 0
    }

    /// Waits for the exit; after `timeout` seconds sends SIGKILL. Returns the exit status
    /// (128 + signal when killed by one).
    @discardableResult
    func wait(timeout: Double = .infinity) -> Int32 {
        let end = vpnMonoNow() + timeout
        while !exited {
            if vpnMonoNow() > end {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                exitStatus = 128 + SIGKILL
                break
            }
            usleep(10_000)
        }
        return exitStatus ?? -1
    }

    func signal(_ sig: Int32) {
        if !exited { kill(pid, sig) }
    }
}

/// Runs `argv` to completion and returns its stdout. Output is captured through files in
/// `scratch` (removed at once: the lab description contains keys).
final class VPNShell {
    let scratch: String
    private var serial = 0

    init(scratch: String) { self.scratch = scratch }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    @discardableResult
    func run(_ argv: [String], check: Bool = true, timeout: Double = 300) throws -> Result {
        serial += 1
        let out = "\(scratch)/cmd\(serial).out", err = "\(scratch)/cmd\(serial).err"
        defer {
            unlink(out)
            unlink(err)
        }
        let child = try VPNChild(argv, stdout: out, stderr: err)
        let end = vpnMonoNow() + timeout
        while !child.exited {
            if vpnBenchInterrupted != 0 || vpnMonoNow() > end {
                child.signal(SIGTERM)
                child.wait(timeout: 5)
                throw VPNBenchError(vpnBenchInterrupted != 0 ? "interrupted" : "\(argv.prefix(4).joined(separator: " ")) did not finish within \(Int(timeout)) s")
            }
            usleep(5_000)
        }
        let r = Result(status: child.exitStatus ?? -1,
                       stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
        if check && r.status != 0 {
            let text = (r.stderr.isEmpty ? r.stdout : r.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
            throw VPNBenchError("\(argv.prefix(6).joined(separator: " ")) failed (exit \(r.status)): \(text.suffix(600))")
        }
        return r
    }

    /// `ip netns exec ns argv...`
    @discardableResult
    func inNS(_ ns: String, _ argv: [String], check: Bool = true, timeout: Double = 300) throws -> Result {
        try run(["ip", "netns", "exec", ns] + argv, check: check, timeout: timeout)
    }
}

// MARK: - memory

/// A process's resident set size in KiB (VmRSS), nil if it is gone.
func vpnRSSKiB(_ pid: Int) -> Int? {
    procStatusField(pid, file: "status", field: "VmRSS:")
}

/// Proportional set size in KiB (shared pages divided among their users).
func vpnPSSKiB(_ pid: Int) -> Int? {
    procStatusField(pid, file: "smaps_rollup", field: "Pss:")
}

private func procStatusField(_ pid: Int, file: String, field: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/\(file)", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field) {
        return Int(line.dropFirst(field.count).split(whereSeparator: \.isWhitespace).first ?? "")
    }
    return nil
}

/// The pid in a process description "running (pid 123)".
func vpnPidIn(_ text: String) -> Int? {
    guard let r = text.range(of: "pid ") else { return nil }
    return Int(text[r.upperBound...].prefix { $0.isNumber })
}

// MARK: - the agent under test

final class VPNAgent {
    let stateDir: String
    let child: VPNChild
    private var client: RPCClient?
    let socketPath: String

    init(binary: String, stateDir: String, uplink: String) throws {
        self.stateDir = stateDir
        socketPath = stateDir + "/warren.sock"
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let config: JSONValue = [
            "stateDirectory": .string(stateDir),
            "logLevel": "info",
            "daemons": ["stopOnShutdown": true],
            "pluginSettings": ["ipsec": ["uplink": ["interface": .string(uplink), "gateway": "203.0.113.1", "prefixLength": 24]]],
        ]
        let path = stateDir + "/config.json"
        FileManager.default.createFile(atPath: path, contents: Data(config.serialized()), attributes: [.posixPermissions: 0o600])
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw VPNBenchError("warren-agent not found at \(binary) (build it with the same scratch path, or set WARREN_BUILD_DIR)")
        }
        child = try VPNChild([binary, "--config", path], stdout: stateDir + "/agent.log")
        try vpnWaitUntil("warren-agent to answer on \(socketPath)", timeout: 30, interval: 0.1) {
            if child.exited { throw VPNBenchError("warren-agent exited (\(child.exitStatus ?? -1)); see \(stateDir)/agent.log") }
            return (try? call("agent.status")) != nil
        }
    }

    func call(_ method: String, _ params: JSONValue? = nil, timeout: Double = 120) throws -> JSONValue {
        if client == nil || client?.isOpen != true { client = try RPCClient(socketPath: socketPath) }
        do {
            return try client!.call(method, params: params, timeout: timeout)
        } catch let e as RPCError {
            throw VPNBenchError("\(method): \(e.code) \(e.message) \(e.data.map { "\($0)" } ?? "")")
        }
    }

    var rssKiB: Int { vpnRSSKiB(Int(child.pid)) ?? 0 }

    /// IDs of every IPsec instance directory (namespace warren-vpn-<id>) this agent has.
    func instanceIDs() -> [String] {
        var ids: [String] = []
        for plugin in ["vpn.dynamic", "vpn.static"] {
            let dir = stateDir + "/plugins/" + plugin + "/instances"
            ids += (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        }
        return ids.filter { $0.count == 8 && $0.allSatisfy(\.isHexDigit) }
    }

    /// Deletes every VPN, stops the agent (its daemons stop with it) and removes whatever an
    /// instance left behind (only this agent's instances, by ID).
    func shutdown(shell: VPNShell) {
        let ids = instanceIDs()
        if !child.exited {
            for prefix in ["vpn.dynamic", "vpn.static"] {
                for v in (try? call(prefix + ".list", timeout: 30))?["items"]?.arrayValue ?? [] {
                    if let id = v["id"]?.stringValue { _ = try? call(prefix + ".delete", ["id": .string(id)], timeout: 60) }
                }
            }
            client?.close()
            child.signal(SIGTERM)
            child.wait(timeout: 30)
        }
        for id in ids {
            let ns = "warren-vpn-" + id
            if FileManager.default.fileExists(atPath: "/run/netns/" + ns) {
                let pids = (try? shell.run(["ip", "netns", "pids", ns], check: false))?.stdout.split(whereSeparator: \.isWhitespace) ?? []
                for p in pids { if let pid = Int32(p) { kill(pid, SIGKILL) } }
                _ = try? shell.run(["ip", "netns", "del", ns], check: false)
            }
            for link in ["wvo" + id, "wvi" + id] where FileManager.default.fileExists(atPath: "/sys/class/net/" + link) {
                _ = try? shell.run(["ip", "link", "del", link], check: false)
            }
        }
    }
}

// MARK: - VMs

/// A "VM": namespace wvb-vm<n> with eth0, whose host end wvbv<n> is bound to a Warren port.
struct VPNVM {
    let ns: String
    let hostIf: String
    let ip: String
}

final class VPNVMs {
    let shell: VPNShell
    private(set) var created: [VPNVM] = []

    init(shell: VPNShell) { self.shell = shell }

    func create(_ n: Int, cidr: String, gateway: String) throws -> VPNVM {
        let vm = VPNVM(ns: "wvb-vm\(n)", hostIf: "wvbv\(n)", ip: String(cidr.split(separator: "/")[0]))
        try remove(vm)
        try shell.run(["ip", "netns", "add", vm.ns])
        created.append(vm)
        try shell.run(["ip", "link", "add", vm.hostIf, "type", "veth", "peer", "name", "eth0", "netns", vm.ns])
        try shell.run(["ip", "link", "set", vm.hostIf, "up"])
        try shell.run(["ip", "-n", vm.ns, "link", "set", "lo", "up"])
        try shell.run(["ip", "-n", vm.ns, "link", "set", "eth0", "up"])
        try shell.run(["ip", "-n", vm.ns, "addr", "add", cidr, "dev", "eth0"])
        try shell.run(["ip", "-n", vm.ns, "route", "add", "default", "via", gateway])
        // The datapath does not segment TSO/GSO super-frames (as in the e2e harness).
        try shell.inNS(vm.ns, ["ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off"], check: false)
        return vm
    }

    private func remove(_ vm: VPNVM) throws {
        if FileManager.default.fileExists(atPath: "/sys/class/net/" + vm.hostIf) {
            try shell.run(["ip", "link", "del", vm.hostIf], check: false)
        }
        if FileManager.default.fileExists(atPath: "/run/netns/" + vm.ns) {
            try shell.run(["ip", "netns", "del", vm.ns], check: false)
        }
    }

    func cleanup() {
        for vm in created { try? remove(vm) }
        created.removeAll()
    }
}

// MARK: - the peer lab

/// The lab (Scripts/lab) through Scripts/bench_vpn.py and labctl.py, prefix "wvb".
final class VPNLab {
    static let prefix = "wvb"
    static let uplink = "wvb-up"
    /// Tunnel A's and B's endpoint addresses on the VPC LAN (bench_vpn.py's lab config): the
    /// VPC host's next hop shows which tunnel carries the traffic back.
    static let vpcGatewayA = "100.64.200.2"
    static let vpcGatewayB = "100.64.200.3"
    let shell: VPNShell
    let root: String
    private(set) var description: JSONValue = nil
    private(set) var isUp = false

    init(shell: VPNShell, root: String) {
        self.shell = shell
        self.root = root
    }

    private var helper: [String] { ["python3", root + "/Scripts/bench_vpn.py"] }
    private var labctl: [String] { ["python3", root + "/Scripts/lab/labctl.py", "--prefix", VPNLab.prefix] }

    /// Builds the lab; `description` then holds every pair (with PSKs: never print it).
    func up(hold: Int, keepalive: Int, pairs: Int = 1, policyPeer: Bool = false) throws {
        var argv = helper + ["up", "--prefix", VPNLab.prefix, "--hold", "\(hold)", "--keepalive", "\(keepalive)", "--pairs", "\(pairs)"]
        if policyPeer { argv.append("--policy-peer") }
        isUp = true
        let r = try shell.run(argv, timeout: 300)
        do {
            description = try JSONValue(parsing: Array(r.stdout.utf8))
        } catch {
            throw VPNBenchError("bench_vpn.py up printed something that is not JSON (\(r.stdout.count) bytes)")
        }
    }

    func down() {
        guard isUp else { return }
        _ = try? shell.run(helper + ["down", "--prefix", VPNLab.prefix], check: false, timeout: 300)
        isUp = false
    }

    /// Waits until the named peers are `settled` or `idle` (see bench_vpn.py); seconds waited.
    @discardableResult
    func wait(_ state: String, _ names: [String], timeout: Double = 90) throws -> Double {
        let r = try shell.run(helper + ["wait", "--prefix", VPNLab.prefix, "--state", state, "--timeout", "\(Int(timeout))"] + names,
                              timeout: timeout + 60)
        return (try? JSONValue(parsing: Array(r.stdout.utf8)))?["seconds"]?.doubleValue ?? 0
    }

    func fail(_ name: String, mode: String) throws {
        try shell.run(labctl + ["fail-tunnel", name, "--mode", mode])
    }

    func heal(_ name: String) throws {
        try shell.run(labctl + ["heal-tunnel", name])
    }

    func ns(_ short: String) -> String { VPNLab.prefix + "-" + short }

    var pairs: [JSONValue] { description["pairs"]?.arrayValue ?? [] }
    var aws: JSONValue { description["aws"] ?? nil }
    var vpcHost: String { aws["vpc_host"]?.stringValue ?? "100.64.200.10" }
    func policyPeer(_ name: String) -> JSONValue? {
        description["policy_peers"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }

    /// The VPC host's route to `prefix`: the gateway it goes through, nil when none.
    func vpcGateway(for prefix: String) throws -> String? {
        let out = try shell.inNS(ns("host"), ["ip", "-4", "route", "show", prefix], check: false).stdout
        guard let r = out.range(of: "via ") else { return nil }
        return String(out[r.upperBound...].prefix { !$0.isWhitespace })
    }
}

// MARK: - ping runs

/// A background `ping -D` writing to a file (never a pipe: a full pipe stops ping). Bounded
/// by a probe count, not `-w`: with a deadline, iputils ping exits at the first ICMP error
/// (e.g. the router's "net unreachable" before the VPN's routes exist).
final class VPNPingRun {
    let child: VPNChild
    let file: String
    let interval: Double
    let started: Double

    init(ns: String, target: String, interval: Double, file: String, maxSeconds: Int = 900) throws {
        self.file = file
        self.interval = interval
        started = vpnWallNow()
        child = try VPNChild(["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", "\(interval)", "-W", "1", "-c", "\(Int(Double(maxSeconds) / interval))", target],
                          stdout: file)
    }

    struct Reply {
        var time: Double
        var seq: Int
    }

    /// Replies so far: (wall-clock time, icmp_seq).
    func replies() -> [Reply] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        var out: [Reply] = []
        for line in text.split(separator: "\n") where line.hasPrefix("[") && line.contains("bytes from") {
            guard let close = line.firstIndex(of: "]"), let t = Double(line[line.index(after: line.startIndex)..<close]),
                  let r = line.range(of: "icmp_seq="), let seq = Int(line[r.upperBound...].prefix { $0.isNumber }) else { continue }
            out.append(Reply(time: t, seq: seq))
        }
        return out
    }

    /// Wall-clock time of the first reply at or after `after`.
    func firstReply(after: Double) -> Double? {
        replies().first { $0.time >= after }?.time
    }

    struct Summary {
        var transmitted: Int
        var received: Int
        /// Probes between the first and the last answered one that got no answer.
        var lost: Int
        /// ping's real spacing between probes (median between consecutive answers): the
        /// kernel's timer granularity makes `-i 0.02` about 24 ms here.
        var spacing: Double
        /// Wall-clock time without answers: for every run of unanswered probes, the time
        /// between the answers around it minus one spacing.
        var lossSeconds: Double
        var longestGapSeconds: Double
    }

    /// Stops ping (SIGINT: it prints its summary) and measures the gaps.
    func stop() throws -> Summary {
        child.signal(SIGINT)
        child.wait(timeout: 5)
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        guard let r = text.range(of: #"(\d+) packets transmitted, (\d+) received"#, options: .regularExpression) else {
            throw VPNBenchError("ping printed no summary: \(text.suffix(300))")
        }
        let nums = text[r].split(separator: " ").compactMap { Int($0) }
        // Probes after the last answered one were still in flight when ping stopped (the
        // callers stop only after traffic has flowed again for a while): not losses.
        var bySeq: [Int: Double] = [:]
        for reply in replies() where bySeq[reply.seq] == nil { bySeq[reply.seq] = reply.time }
        let seqs = bySeq.keys.sorted()
        var steps: [Double] = []
        for (a, b) in zip(seqs, seqs.dropFirst()) where b == a + 1 { steps.append(bySeq[b]! - bySeq[a]!) }
        let spacing = steps.isEmpty ? interval : vpnMedian(steps)
        var lost = 0, loss = 0.0, longest = 0.0
        for (a, b) in zip(seqs, seqs.dropFirst()) where b > a + 1 {
            lost += b - a - 1
            let gap = max(0, bySeq[b]! - bySeq[a]! - spacing)
            loss += gap
            longest = max(longest, gap)
        }
        return Summary(transmitted: nums[0], received: nums[1], lost: lost, spacing: spacing,
                       lossSeconds: loss, longestGapSeconds: longest)
    }
}
