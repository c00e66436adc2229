// `warren-bench rpc`: the JSON-RPC API's speed over the Unix socket.
//
// Starts a real warren-agent (the binary next to warren-bench, or --agent PATH) on a fresh
// state directory with its default configuration (store synchronous=full, datapath on,
// every compiled-in plugin), then drives it with WarrenRPC's blocking RPCClient, one
// client (one connection) per thread:
// - read:     `router.get {"name": …}` on an existing router;
// - mutation: each client `bridge.create`s and `bridge.delete`s its own bridge in turn —
//             each acknowledged only after its SQLite commit; the topology keeps its size;
// - create:   `bridge.create` with unique names, so the topology grows by every call (a
//             stress: each commit batch copies the topology's bridge tables once) — the
//             bridges deleted again after the phase (not timed);
// each with 1 and 16 concurrent clients (--clients). For every case it prints
//   METRIC rpc_<kind>_c<N>_rate <requests/s> req/s
//   METRIC rpc_<kind>_c<N>_p50  <ms> ms
//   METRIC rpc_<kind>_c<N>_p99  <ms> ms
// (latency = one call's round trip as the client sees it), then the agent's resident
// memory, and stops the agent with SIGTERM. Every call's answer is checked: an error or
// a wrong result aborts the run (exit 1), so a fast failure cannot pass for speed.
// Build in release mode: swift build -c release --product warren-bench --product warren-agent.

import Foundation
import WarrenRPC

#if canImport(Glibc)
import Glibc
#endif

enum RPCBench {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    struct Options {
        var agentPath: String
        var seconds = 3.0
        var warmup = 0.5
        var clients = [1, 16]
        var kinds = ["read", "mutation", "create"]
        var synchronous: String? = nil
    }

    static let usage = """
    usage: warren-bench rpc [--agent PATH] [--seconds S] [--warmup S] [--clients 1,16] [--kinds read,mutation,create]
                            [--synchronous full|normal]
      --agent PATH        warren-agent binary (default: the one next to warren-bench)
      --seconds S         measured time per case (default 3)
      --synchronous MODE  the store's synchronous setting (default: the agent's default, full)
    Starts its own agent on a temporary state directory and stops it at the end.
    """

    static func run(_ arguments: [String]) -> Int32 {
        let selfPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var o = Options(agentPath: URL(fileURLWithPath: selfPath).deletingLastPathComponent().appendingPathComponent("warren-agent").path)
        do {
            var i = 0
            func value(_ name: String) throws -> String {
                i += 1
                guard i < arguments.count else { throw Failure("\(name) needs a value") }
                return arguments[i]
            }
            while i < arguments.count {
                switch arguments[i] {
                case "--agent": o.agentPath = try value("--agent")
                case "--seconds":
                    let v = try value("--seconds")
                    guard let d = Double(v), d > 0 else { throw Failure("--seconds: expected a positive number, got \(v)") }
                    o.seconds = d
                case "--warmup":
                    let v = try value("--warmup")
                    guard let d = Double(v), d >= 0 else { throw Failure("--warmup: expected a number ≥ 0, got \(v)") }
                    o.warmup = d
                case "--clients":
                    let v = try value("--clients")
                    let list = v.split(separator: ",").compactMap { Int($0) }
                    guard !list.isEmpty, list.count == v.split(separator: ",").count, list.allSatisfy({ (1...256).contains($0) }) else {
                        throw Failure("--clients: expected a list of 1…256 such as 1,16, got \(v)")
                    }
                    o.clients = list
                case "--kinds":
                    let v = try value("--kinds")
                    let list = v.split(separator: ",").map(String.init)
                    guard !list.isEmpty, list.allSatisfy({ ["read", "mutation", "create"].contains($0) }) else {
                        throw Failure("--kinds: expected read, mutation and/or create, got \(v)")
                    }
                    o.kinds = list
                case "--synchronous":
                    let v = try value("--synchronous")
                    guard ["full", "normal"].contains(v) else { throw Failure("--synchronous: expected full or normal, got \(v)") }
                    o.synchronous = v
                case "-h", "--help":
                    print(usage)
                    return 0
                default:
                    throw Failure("unknown option \(arguments[i])\n\(usage)")
                }
                i += 1
            }
        } catch {
            FileHandle.standardError.write(Data("warren-bench rpc: \(error)\n".utf8))
            return 2
        }

        var agent: Agent?
        do {
            let a = try Agent(binary: o.agentPath, synchronous: o.synchronous)
            agent = a
            print("# agent \(o.agentPath) pid \(a.pid), state \(a.stateDirectory), store synchronous=\(o.synchronous ?? "full (default)"); \(o.seconds) s per case, \(ProcessInfo.processInfo.activeProcessorCount) CPUs")
            try runCases(o, agent: a)
            if let rss = a.residentKiB() { metric("rpc_agent_rss", Double(rss) / 1024, "MiB") }
            let status = a.stop()
            agent = nil
            guard status == 0 else { throw Failure("warren-agent exited with status \(status) on SIGTERM") }
            return 0
        } catch {
            FileHandle.standardError.write(Data("warren-bench rpc: \(error)\n".utf8))
            if let a = agent {
                FileHandle.standardError.write(Data("agent log tail:\n\(a.logTail())\n".utf8))
                _ = a.stop()
            }
            return 1
        }
    }

    static func runCases(_ o: Options, agent: Agent) throws {
        let setup = try RPCClient(socketPath: agent.socketPath)
        defer { setup.close() }
        let router = try setup.call("router.create", params: ["name": "bench-r1"], timeout: 30)
        guard let routerID = router["id"]?.stringValue else { throw Failure("router.create returned no id: \(router)") }

        for kind in o.kinds {
            for n in o.clients {
                let result: CaseResult
                switch kind {
                case "read":
                    result = try measure(clients: n, seconds: o.seconds, warmup: o.warmup, socket: agent.socketPath) { client, _, _ in
                        let r = try client.call("router.get", params: ["name": "bench-r1"], timeout: 30)
                        guard r["id"]?.stringValue == routerID else { throw Failure("router.get returned \(r)") }
                    }
                case "mutation":
                    // Each client creates and deletes its own bridge in turn: every call is a
                    // committed transaction, and the topology stays at its size (steady state).
                    result = try measure(clients: n, seconds: o.seconds, warmup: o.warmup, socket: agent.socketPath) { client, worker, i in
                        let name = "bench-m\(n)-w\(worker)"
                        if i % 2 == 0 {
                            let r = try client.call("bridge.create", params: ["name": .string(name)], timeout: 30)
                            guard r["name"]?.stringValue == name else { throw Failure("bridge.create returned \(r)") }
                        } else {
                            let r = try client.call("bridge.delete", params: ["name": .string(name)], timeout: 30)
                            guard r.objectValue != nil else { throw Failure("bridge.delete returned \(r)") }
                        }
                    }
                    try cleanup(socket: agent.socketPath, workers: n, prefix: "bench-m\(n)-")
                default:
                    result = try measure(clients: n, seconds: o.seconds, warmup: o.warmup, socket: agent.socketPath) { client, worker, i in
                        let name = "bench-c\(n)-w\(worker)-\(i)"
                        let r = try client.call("bridge.create", params: ["name": .string(name)], timeout: 30)
                        guard r["name"]?.stringValue == name else { throw Failure("bridge.create returned \(r)") }
                    }
                    try cleanup(socket: agent.socketPath, workers: n, prefix: "bench-c\(n)-")
                }
                metric("rpc_\(kind)_c\(n)_rate", result.rate, "req/s")
                metric("rpc_\(kind)_c\(n)_p50", result.p50 * 1000, "ms")
                metric("rpc_\(kind)_c\(n)_p99", result.p99 * 1000, "ms")
                let what = ["read": "router.get", "mutation": "bridge.create/bridge.delete alternating, each a committed transaction",
                            "create": "bridge.create with unique names, each a committed transaction; the topology grows by every call"][kind]!
                print("# \(kind) with \(n) client(s): \(result.calls) calls in \(String(format: "%.2f", result.elapsed)) s (\(what))")
            }
        }
    }

    /// Deletes every bridge whose name starts with `prefix`, with several clients (not timed).
    static func cleanup(socket: String, workers: Int, prefix: String) throws {
        let lister = try RPCClient(socketPath: socket)
        defer { lister.close() }
        let all = try lister.call("bridge.list", timeout: 60)["items"]?.arrayValue ?? []
        let names = all.compactMap { $0["name"]?.stringValue }.filter { $0.hasPrefix(prefix) }
        let shards = max(1, min(workers, 8))
        let errors = ErrorBox()
        var threads: [Thread] = []
        let done = DispatchSemaphore(value: 0)
        for s in 0..<shards {
            let mine = stride(from: s, to: names.count, by: shards).map { names[$0] }
            let t = Thread {
                do {
                    let c = try RPCClient(socketPath: socket)
                    defer { c.close() }
                    for name in mine { _ = try c.call("bridge.delete", params: ["name": .string(name)], timeout: 60) }
                } catch { errors.set("cleanup: \(error)") }
                done.signal()
            }
            threads.append(t)
            t.start()
        }
        for _ in threads { done.wait() }
        if let e = errors.value { throw Failure(e) }
        let left = try lister.call("bridge.list", timeout: 60)["items"]?.arrayValue ?? []
        guard !left.contains(where: { $0["name"]?.stringValue?.hasPrefix(prefix) == true }) else {
            throw Failure("cleanup left bridges named \(prefix)*")
        }
    }

    // MARK: measurement

    struct CaseResult {
        var calls: Int
        var elapsed: Double
        var rate: Double
        var p50: Double
        var p99: Double
    }

    final class ErrorBox: @unchecked Sendable {
        private let lock = NSLock()
        private var first: String?
        func set(_ e: String) { lock.withLock { if first == nil { first = e } } }
        var value: String? { lock.withLock { first } }
    }

    /// Releases every client thread at once and tells them the common start time.
    final class StartGate: @unchecked Sendable {
        private let condition = NSCondition()
        private var start: UInt64?
        func open(at t: UInt64) {
            condition.lock()
            start = t
            condition.broadcast()
            condition.unlock()
        }
        func wait() -> UInt64 {
            condition.lock()
            defer { condition.unlock() }
            while start == nil { condition.wait() }
            return start!
        }
    }

    /// One client thread's latencies (nanoseconds) for the measured window.
    final class Worker: @unchecked Sendable {
        var latencies: [UInt64] = []
        init() { latencies.reserveCapacity(1 << 16) }
    }

    /// Runs `call(client, worker, i)` on `clients` threads, each with its own connection:
    /// `warmup` seconds unrecorded, then `seconds` recorded; all threads start together.
    static func measure(clients: Int, seconds: Double, warmup: Double, socket: String,
                        _ call: @escaping @Sendable (RPCClient, Int, Int) throws -> Void) throws -> CaseResult {
        let errors = ErrorBox()
        let workers = (0..<clients).map { _ in Worker() }
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let gate = StartGate()
        for w in 0..<clients {
            let worker = workers[w]
            let thread = Thread {
                defer { done.signal() }
                let client: RPCClient
                do { client = try RPCClient(socketPath: socket) } catch {
                    errors.set("client \(w): \(error)")
                    ready.signal()
                    return
                }
                defer { client.close() }
                ready.signal()
                let begin = gate.wait()
                let recordFrom = begin + UInt64(warmup * 1e9)
                let end = recordFrom + UInt64(seconds * 1e9)
                var i = 0
                while errors.value == nil {
                    let a = monotonicNanos()
                    if a >= end { break }
                    do { try call(client, w, i) } catch {
                        errors.set("client \(w) call \(i): \(error)")
                        return
                    }
                    let b = monotonicNanos()
                    if a >= recordFrom { worker.latencies.append(b - a) }
                    i += 1
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        for _ in 0..<clients { ready.wait() }
        gate.open(at: monotonicNanos())
        for _ in 0..<clients { done.wait() }
        if let e = errors.value { throw Failure(e) }

        var all: [UInt64] = []
        for w in workers { all.append(contentsOf: w.latencies) }
        guard !all.isEmpty else { throw Failure("no call completed in the measured window") }
        all.sort()
        func quantile(_ q: Double) -> Double {
            Double(all[min(all.count - 1, Int((Double(all.count) * q).rounded(.down)))]) / 1e9
        }
        return CaseResult(calls: all.count, elapsed: seconds, rate: Double(all.count) / seconds,
                          p50: quantile(0.50), p99: quantile(0.99))
    }

    // MARK: the agent process

    final class Agent {
        let stateDirectory: String
        let process: Process
        var pid: Int32 { process.processIdentifier }
        var socketPath: String { stateDirectory + "/warren.sock" }

        init(binary: String, synchronous: String?) throws {
            guard FileManager.default.isExecutableFile(atPath: binary) else {
                throw Failure("--agent: \(binary) is not an executable (build it: swift build -c release --product warren-agent)")
            }
            var template = Array("/tmp/warren-rpcbench-XXXXXX".utf8CString)
            guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw Failure("cannot create a state directory under /tmp")
            }
            stateDirectory = String(cString: dir)
            var config: [String: Any] = ["stateDirectory": stateDirectory, "logLevel": "warning"]
            if let s = synchronous { config["store"] = ["synchronous": s] }
            let configPath = stateDirectory + "/config.json"
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
            FileManager.default.createFile(atPath: stateDirectory + "/agent.log", contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: stateDirectory + "/agent.log"))
            process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["--config", configPath]
            process.standardOutput = log
            process.standardError = log
            try process.run()
            let deadline = monotonicNanos() + 30_000_000_000
            while monotonicNanos() < deadline {
                guard process.isRunning else {
                    throw Failure("warren-agent exited with status \(process.terminationStatus): \(logTail())")
                }
                if let c = try? RPCClient(socketPath: socketPath) {
                    defer { c.close() }
                    if (try? c.call("agent.status", timeout: 5)) != nil { return }
                }
                usleep(100_000)
            }
            _ = stop()
            throw Failure("warren-agent did not answer on \(socketPath) within 30 s: \(logTail())")
        }

        func residentKiB() -> Int? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
            for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
            }
            return nil
        }

        func logTail() -> String {
            String(((try? String(contentsOfFile: stateDirectory + "/agent.log", encoding: .utf8)) ?? "").suffix(2000))
        }

        /// SIGTERM, wait up to 30 s (then SIGKILL); removes the state directory. Returns the exit status.
        func stop() -> Int32 {
            if process.isRunning {
                kill(pid, SIGTERM)
                let deadline = monotonicNanos() + 30_000_000_000
                while process.isRunning && monotonicNanos() < deadline { usleep(20_000) }
                if process.isRunning { kill(pid, SIGKILL) }
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(atPath: stateDirectory)
            return process.terminationStatus
        }
    }
}
