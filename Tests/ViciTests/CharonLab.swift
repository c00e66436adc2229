// CharonLab.swift — test fixture: two network namespaces joined by a veth, one charon in
// each, controlled over vici.
//
// What: creates namespaces wvt-l (203.0.113.1/24 on wvt-l0) and wvt-r (203.0.113.2/24 on
// wvt-r0), writes each instance's strongswan.conf with `CharonInstanceConfig`, starts
// charon with `CharonInstanceConfig.launchArguments` (private mount namespace, DIR on
// /run), and connects a `ViciClient`.
//
// Invariants: only names with the `wvt` prefix are created; only addresses from
// 203.0.113.0/24 and 169.254.0.0/16 are used, and only inside those namespaces. Every
// charon is killed by its own pid; `destroy()` (run by the test's teardown, also on
// failure) kills them, deletes the namespaces and the directories, and is idempotent.
// `removeLeftovers()` deletes wvt-l/wvt-r left by a crashed earlier run.
//
// Threading: used from one test at a time (XCTest runs test methods serially).

import Foundation
import WarrenVici
import XCTest
#if canImport(Glibc)
import Glibc
#endif

struct CommandError: Error, CustomStringConvertible {
    var command: [String]
    var status: Int32
    var output: String
    var description: String { "command \(command.joined(separator: " ")) exited \(status): \(output)" }
}

/// Runs a command to completion; returns stdout+stderr; throws on non-zero exit.
@discardableResult
func runCommand(_ args: [String], allowFailure: Bool = false) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let out = String(decoding: data, as: UTF8.self)
    if p.terminationStatus != 0 && !allowFailure {
        throw CommandError(command: args, status: p.terminationStatus, output: out)
    }
    return out
}

/// One charon instance in the lab.
final class CharonInstance: @unchecked Sendable {
    let netns: String
    let config: CharonInstanceConfig
    let address: String
    var process: Process?
    var client: ViciClient?
    /// Time from spawning charon to a vici connection that answered `version`.
    var startToViciReady: Duration = .zero

    init(netns: String, config: CharonInstanceConfig, address: String) {
        self.netns = netns
        self.config = config
        self.address = address
    }

    var pid: Int32? { process?.processIdentifier }

    /// Writes strongswan.conf, starts charon, connects vici and checks it answers.
    func start() async throws {
        try config.validate()
        try FileManager.default.createDirectory(atPath: config.directory, withIntermediateDirectories: true)
        try config.strongswanConf().write(toFile: config.configPath, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = config.launchArguments(netns: netns)
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        let clock = ContinuousClock()
        let t0 = clock.now
        try p.run()
        process = p
        let c = try await ViciClient.connect(socketPath: config.viciSocketPath, waitingUpTo: .seconds(10),
                                             commandTimeout: .seconds(20))
        _ = try await c.version()
        startToViciReady = clock.now - t0
        client = c
    }

    /// SIGKILLs this charon (by pid) and reaps it.
    func kill9() {
        guard let p = process else { return }
        process = nil
        if p.isRunning { _ = Glibc.kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    func stop() {
        client?.close()
        client = nil
        kill9()
    }

    var vici: ViciClient {
        get throws {
            guard let client else { throw CommandError(command: ["vici"], status: -1, output: "charon not started") }
            return client
        }
    }
}

/// Two namespaces, two charons.
final class CharonLab: @unchecked Sendable {
    static let left = "wvt-l"
    static let right = "wvt-r"
    let root: String
    let l: CharonInstance
    let r: CharonInstance
    private var destroyed = false

    /// Removes namespaces left over by an earlier crashed run (ours by prefix).
    static func removeLeftovers() {
        for ns in [left, right, "wvt-x"] {
            _ = try? runCommand(["ip", "netns", "del", ns], allowFailure: true)
        }
    }

    init(backend: CharonInstanceConfig.KernelBackend = .libipsec, loadUpdown: Bool = false) throws {
        Self.removeLeftovers()
        root = "/tmp/wvt-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        l = CharonInstance(netns: Self.left,
                           config: CharonInstanceConfig(directory: root + "/l", backend: backend, loadUpdown: loadUpdown),
                           address: "203.0.113.1")
        r = CharonInstance(netns: Self.right,
                           config: CharonInstanceConfig(directory: root + "/r", backend: backend, loadUpdown: loadUpdown),
                           address: "203.0.113.2")
        do {
            try runCommand(["ip", "netns", "add", Self.left])
            try runCommand(["ip", "netns", "add", Self.right])
            try runCommand(["ip", "-n", Self.left, "link", "add", "wvt-l0", "type", "veth", "peer", "name", "wvt-r0", "netns", Self.right])
            try runCommand(["ip", "-n", Self.left, "addr", "add", "203.0.113.1/24", "dev", "wvt-l0"])
            try runCommand(["ip", "-n", Self.right, "addr", "add", "203.0.113.2/24", "dev", "wvt-r0"])
            for (ns, dev) in [(Self.left, "wvt-l0"), (Self.right, "wvt-r0")] {
                try runCommand(["ip", "-n", ns, "link", "set", dev, "up"])
                try runCommand(["ip", "-n", ns, "link", "set", "lo", "up"])
            }
        } catch {
            destroy()
            throw error
        }
    }

    func startBoth() async throws {
        try await l.start()
        try await r.start()
    }

    /// Kills both charons, deletes namespaces and directories. Idempotent.
    func destroy() {
        if destroyed { return }
        destroyed = true
        l.stop()
        r.stop()
        _ = try? runCommand(["ip", "netns", "del", Self.left], allowFailure: true)
        _ = try? runCommand(["ip", "netns", "del", Self.right], allowFailure: true)
        // WVT_KEEP_LAB=1 keeps the instance directories (configs, logs) for debugging.
        if ProcessInfo.processInfo.environment["WVT_KEEP_LAB"] != "1" {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// The charon log of an instance (for failure messages).
    func log(_ i: CharonInstance) -> String {
        (try? String(contentsOfFile: i.config.logPath, encoding: .utf8)) ?? "<no log>"
    }

    /// A PSK site-to-site connection from `a` to `b` with 0.0.0.0/0 selectors.
    static func connection(name: String = "tun", version: IKEVersion, from a: CharonInstance, to b: CharonInstance,
                           childRekey: Int = 3240, childLife: Int? = 3600, ikeRekey: Int = 28800,
                           dpdDelay: Int = 10) -> ConnectionConfig {
        ConnectionConfig(
            name: name, version: version, localAddrs: [a.address], remoteAddrs: [b.address],
            proposals: ["aes128-sha1-modp1024"], rekeyTime: ikeRekey, overTime: ikeRekey < 600 ? 60 : nil,
            randTime: 0, dpdDelay: dpdDelay,
            keyingTries: 1, encap: true, mobike: false, unique: .replace,
            localAuth: .psk(id: a.address), remoteAuth: .psk(id: b.address),
            children: [ChildConfig(name: name, espProposals: ["aes128-sha1-modp1024"], rekeyTime: childRekey,
                                   lifeTime: childLife, randTime: 0, dpdAction: .clear, startAction: .none)])
    }

    /// Loads the connection and PSK on both sides. The timers apply to the left side; the
    /// right side keeps long ones (identical lifetimes on both ends cause rekey collisions).
    func loadTunnel(name: String = "tun", version: IKEVersion, pskLeft: String = "wvt.test.psk.01",
                    pskRight: String? = nil, childRekey: Int = 3240, childLife: Int? = 3600,
                    ikeRekey: Int = 28800) async throws {
        for (a, b, psk) in [(l, r, pskLeft), (r, l, pskRight ?? pskLeft)] {
            let vici = try a.vici
            let left = a === l
            try await vici.loadConnection(Self.connection(name: name, version: version, from: a, to: b,
                                                          childRekey: left ? childRekey : 3000,
                                                          childLife: left ? childLife : 3600,
                                                          ikeRekey: left ? ikeRekey : 28000))
            try await vici.loadSharedKey(id: "\(name)-psk", secret: psk, owners: [a.address, b.address])
        }
    }

    /// Puts 169.254.10.1/30 (left) and .2/30 (right) on the ipsec0 TUNs.
    func addressTunnels() throws {
        try runCommand(["ip", "-n", Self.left, "addr", "replace", "169.254.10.1/30", "dev", "ipsec0"])
        try runCommand(["ip", "-n", Self.right, "addr", "replace", "169.254.10.2/30", "dev", "ipsec0"])
    }

    /// Pings the right TUN address from the left namespace; true if all replies came.
    func pingAcross(count: Int = 3) -> Bool {
        (try? runCommand(["ip", "netns", "exec", Self.left, "ping", "-c", String(count), "-i", "0.2", "-W", "2",
                   "169.254.10.2"])) != nil
    }
}

/// Collects events from a subscription in the background so tests can wait for one.
final class EventRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ViciEvent] = []
    private(set) var finished = false
    private var task: Task<Void, Never>?

    init(_ stream: AsyncStream<ViciEvent>) {
        task = Task { [weak self] in
            for await e in stream {
                guard let self else { return }
                self.lock.withLock { self.events.append(e) }
            }
            self?.lock.withLock { self?.finished = true }
        }
    }

    var all: [ViciEvent] { lock.withLock { events } }
    var isFinished: Bool { lock.withLock { finished } }

    /// Waits until `predicate` holds for some recorded event; returns it or nil on timeout.
    func wait(timeout: Duration = .seconds(10), _ predicate: @escaping (ViciEvent) -> Bool) async -> ViciEvent? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let e = all.first(where: predicate) { return e }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return all.first(where: predicate)
    }

    /// Waits until the stream has finished (connection gone) or timeout.
    func waitFinished(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if isFinished { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return isFinished
    }

    func clear() { lock.withLock { events.removeAll() } }

    deinit { task?.cancel() }
}

/// Milliseconds of a Duration, for printing.
func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}
