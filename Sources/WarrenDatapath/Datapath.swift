// Datapath: moves real packets between the host interfaces bound to exterior ports.
//
// One dedicated thread runs the loop: poll the bound interfaces → receive a batch →
// for each frame: complete offloaded checksums, parse, extract the flow key, look it up
// in the FlowTable; on a hit execute the cached actions straight into the output ports'
// TX batches; on a miss simulate (WarrenCore), apply what was learned (MAC/ARP entries,
// invalidating the flows that depended on them), send generated packets, queue packets
// waiting for ARP, install the flow if cacheable and execute it → send every TX batch
// with one system call per port. Once a second: expire idle flows and aged MAC/ARP
// entries, time out ARP waits, retry interfaces that were missing, publish statistics.
//
// The control plane talks to the thread through a mailbox: `apply(topology:invalidate:)`
// swaps in a new configuration and invalidates the flows it affects (so an API change
// takes effect for the very next packet), `perform` runs a closure on the thread (for
// flow listings and snapshots). The fast path takes no lock and does not allocate:
// the mailbox is checked once per loop iteration.
//
// Threading: all state except `lock`-protected fields belongs to the datapath thread
// (or to the caller of `runIteration` in tests, when the thread is not started).

import WarrenCore
import WarrenLinux
#if canImport(Glibc)
import Glibc
#endif

public struct DatapathConfiguration: Sendable, Hashable {
    /// Frames received per system call.
    public var batchSize = 64
    /// Bytes per frame slot (frames larger than this are dropped and counted).
    public var slotSize = 2048
    /// Receive through a TPACKET_V2 ring (no system call per batch) where the kernel
    /// supports it; false uses recvmmsg. Read by the I/O factory.
    public var receiveRing = true
    /// Frame slots per receive ring (each ~2.1 KiB of kernel memory mapped into the agent).
    public var receiveRingSlots = 256
    public var flowTable = FlowTableConfiguration()
    /// Packets held per next hop while ARP resolves it, and how long (ns).
    public var arpQueueLength = 16
    public var arpQueueTimeout: UInt64 = 1_000_000_000
    /// How often idle flows, aged entries and missing interfaces are looked at (ns).
    public var maintenanceInterval: UInt64 = 1_000_000_000

    public init() {}
}

/// Counters of one bound port.
public struct PortCounters: Sendable, Hashable, Codable {
    public var rxPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Frames dropped because they did not parse (see `DatapathStats.malformed`).
    public var rxMalformed: UInt64 = 0
    /// Frames larger than a slot, or segmentation-offload super-frames.
    public var rxOversize: UInt64 = 0
    /// Frames that could not be queued or sent.
    public var txDropped: UInt64 = 0
    public init() {}
}

public struct PortStatus: Sendable, Hashable, Codable {
    public var number: UInt32
    public var port: String
    public var interface: String
    /// "up", or why not ("waiting for interface: …").
    public var state: String
    /// How frames are received while up: "ring" (TPACKET_V2) or "recvmmsg".
    public var receive: String?
    public var counters: PortCounters
}

public struct DatapathStats: Sendable {
    public var flowTable = FlowTableCounters()
    public var flows = 0
    public var subtables = 0
    public var flowMemoryBytes = 0
    public var simulations: UInt64 = 0
    public var generatedPackets: UInt64 = 0
    public var arpQueued: Int = 0
    public var arpTimeouts: UInt64 = 0
    public var malformed: [String: UInt64] = [:]
    public var ports: [PortStatus] = []
    public var macEntries = 0
    public var arpEntries = 0
    public var topologyVersion: UInt64 = 0
    public var running = false
    public init() {}
}

final class BoundPort {
    let number: UInt32
    let id: ResourceID
    let name: String
    let interface: String
    var io: (any PacketIO)?
    var state: String
    let rx: PacketBatch
    let tx: PacketBatch
    var counters = PortCounters()
    var dirty = false

    init(port: Port, interface: String, batchSize: Int, slotSize: Int) {
        number = port.number
        id = port.id
        name = port.name
        self.interface = interface
        state = "opening"
        rx = PacketBatch(capacity: batchSize, slotSize: slotSize)
        tx = PacketBatch(capacity: batchSize, slotSize: slotSize)
    }
}

struct PendingPacket {
    var port: UInt32
    var frame: [UInt8]
    var since: UInt64
}

struct PendingKey: Hashable {
    var router: ResourceID
    var ip: IPv4Address
}

public final class Datapath: @unchecked Sendable {
    public let configuration: DatapathConfiguration
    let ioFactory: PacketIOFactory
    let clock: @Sendable () -> UInt64

    // Shared with the control plane, under `lock`.
    private let lock = Lock()
    private var mailbox: [(Datapath) -> Void] = []
    private var published = DatapathStats()
    private var thread: pthread_t?
    private var stopRequested = false
    private var wakePipe: (read: Int32, write: Int32) = (-1, -1)

    // Datapath-thread state.
    private(set) var topology = Topology()
    private(set) var learned = LearnedState()
    let table: FlowTable
    private var ports: [UInt32: BoundPort] = [:]
    private var portArray: [BoundPort?] = []
    private var pending: [PendingKey: [PendingPacket]] = [:]
    private var pendingCount = 0
    private var replay: [PendingPacket] = []
    private var stats = DatapathStats()
    private var nextMaintenance: UInt64 = 0
    private var pollFDs: [pollfd] = []
    private var pollPorts: [BoundPort?] = []
    private var pollDirty = true

    public init(configuration: DatapathConfiguration = DatapathConfiguration(),
                clock: @escaping @Sendable () -> UInt64 = monotonicNanoseconds,
                ioFactory: @escaping PacketIOFactory) {
        self.configuration = configuration
        self.clock = clock
        self.ioFactory = ioFactory
        table = FlowTable(configuration: configuration.flowTable)
        var fds: [Int32] = [0, 0]
        if pipe(&fds) == 0 {
            wakePipe = (fds[0], fds[1])
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        }
    }

    deinit {
        for p in ports.values { p.io?.close() }
        if wakePipe.read >= 0 { Glibc.close(wakePipe.read); Glibc.close(wakePipe.write) }
    }

    // MARK: control plane API (any thread)

    /// Replaces the configuration and invalidates the flows tagged with `tags`. Takes
    /// effect before the next packet is looked up.
    public func apply(topology: Topology, invalidate tags: [FlowTag]) {
        enqueue { dp in dp.install(topology: topology, invalidate: tags) }
    }

    /// Returns once every topology handed to `apply` before the call is installed (ports
    /// bound by it open, its tags invalidated): the mailbox is FIFO, so a no-op behind them
    /// has run after them. Returns also when the thread is stopped (commands run inline).
    public func settle() async { await perform { _ in () } }

    /// Runs `body` on the datapath thread and returns its result.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (DatapathView) -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            enqueue { dp in
                let result = body(DatapathView(datapath: dp))
                dp.publishStats()
                c.resume(returning: result)
            }
        }
    }

    /// Statistics as of now (published by the datapath thread on request).
    public func currentStatistics() async -> DatapathStats {
        _ = await perform { _ in 0 }
        return statistics
    }

    /// The statistics published at the last maintenance tick (or after `perform`).
    public var statistics: DatapathStats { lock.withLock { published } }

    /// Starts the datapath thread.
    public func start() {
        lock.withLock {
            guard thread == nil else { return }
            stopRequested = false
            let unmanaged = Unmanaged.passRetained(self)
            var t = pthread_t()
            let rc = pthread_create(&t, nil, { arg in
                let dp = Unmanaged<Datapath>.fromOpaque(arg!).takeRetainedValue()
                dp.threadMain()
                return nil
            }, unmanaged.toOpaque())
            if rc == 0 { thread = t } else { unmanaged.release() }
        }
    }

    /// Stops the thread and closes every port.
    public func stop() {
        let t: pthread_t? = lock.withLock {
            stopRequested = true
            let t = thread
            thread = nil
            return t
        }
        wake()
        if let t { pthread_join(t, nil) }
        // Commands queued while the thread was exiting still run (a caller may await one).
        drainMailbox()
        for p in ports.values { p.io?.close(); p.io = nil }
        lock.withLock { published.running = false }
    }

    private func enqueue(_ command: @escaping (Datapath) -> Void) {
        let running = lock.withLock {
            mailbox.append(command)
            return thread != nil
        }
        if running { wake() } else { drainMailbox() }
    }

    private func wake() {
        var b: UInt8 = 1
        _ = Glibc.write(wakePipe.write, &b, 1)
    }

    private func threadMain() {
        // Name the thread (visible in top/ps) without the GNU-only pthread_setname_np.
        let fd = Glibc.open("/proc/thread-self/comm", O_WRONLY)
        if fd >= 0 {
            _ = "warren-dp".withCString { Glibc.write(fd, $0, 9) }
            Glibc.close(fd)
        }
        lock.withLock { published.running = true }
        while !lock.withLock({ stopRequested }) {
            runIteration(timeoutMilliseconds: 100)
        }
    }

    // MARK: the loop

    /// One loop iteration: wait for traffic (at most `timeoutMilliseconds`), process the
    /// mailbox, every readable port, and maintenance when due. Tests call this directly.
    public func runIteration(timeoutMilliseconds: Int32 = 0) {
        if pollDirty { rebuildPollSet() }
        let hasFakes = pollPorts.contains { $0?.io?.fileDescriptor == -1 }
        let now0 = clock()
        let untilMaintenance = nextMaintenance > now0 ? Int32(min(UInt64(Int32.max), (nextMaintenance - now0) / 1_000_000)) : 0
        var timeout = min(timeoutMilliseconds, max(untilMaintenance, 0))
        if hasFakes || !replay.isEmpty { timeout = 0 }
        let n = pollFDs.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
        if n > 0 && pollFDs[0].revents != 0 {
            var buf = [UInt8](repeating: 0, count: 64)
            while Glibc.read(wakePipe.read, &buf, 64) > 0 {}
        }
        drainMailbox()
        if pollDirty { rebuildPollSet() }
        for i in 1..<pollFDs.count {
            guard let port = pollPorts[i], port.io != nil else { continue }
            if pollFDs[i].fd == -1 || pollFDs[i].revents & Int16(POLLIN) != 0 { receive(port) }
        }
        if !replay.isEmpty { replayPending() }
        let now = clock()
        if now >= nextMaintenance {
            maintenance(now: now)
            nextMaintenance = now + configuration.maintenanceInterval
        }
    }

    private func drainMailbox() {
        let commands: [(Datapath) -> Void] = lock.withLock {
            defer { mailbox.removeAll(keepingCapacity: true) }
            return mailbox
        }
        for c in commands { c(self) }
    }

    private func rebuildPollSet() {
        pollFDs = [pollfd(fd: wakePipe.read, events: Int16(POLLIN), revents: 0)]
        pollPorts = [nil]
        for p in ports.values.sorted(by: { $0.number < $1.number }) where p.io != nil {
            pollFDs.append(pollfd(fd: p.io!.fileDescriptor, events: Int16(POLLIN), revents: 0))
            pollPorts.append(p)
        }
        pollDirty = false
    }

    // MARK: receive and forward

    private func receive(_ port: BoundPort) {
        guard let io = port.io else { return }
        for _ in 0..<4 {
            var truncated = 0
            let n = io.receive(into: port.rx, truncated: &truncated)
            port.counters.rxOversize &+= UInt64(truncated)
            if n == 0 { break }
            let now = clock()
            for i in 0..<n { handle(port, slot: i, now: now) }
            flushDirty()
            if n < port.rx.capacity { break }
        }
    }

    @inline(__always)
    private func handle(_ port: BoundPort, slot i: Int, now: UInt64) {
        let frame = port.rx.frame(i)
        port.counters.rxPackets &+= 1
        port.counters.rxBytes &+= UInt64(frame.count)
        let header = port.rx.header(i)
        if header.gsoType != 0 {
            // A segmentation-offload super-frame: the sender has TSO/GSO on. Dropped
            // and counted (documented: turn segmentation offload off on VM interfaces).
            port.counters.rxOversize &+= 1
            return
        }
        if header.flags & VirtioNetHeader.needsChecksum != 0 {
            _ = completeOffloadedChecksum(frame, header: header)
        }
        process(UnsafeRawBufferPointer(frame), inPort: port, now: now)
    }

    private func process(_ frame: UnsafeRawBufferPointer, inPort port: BoundPort, now: UInt64) {
        let layout: FrameLayout
        do { layout = try FrameLayout.parse(frame) } catch {
            port.counters.rxMalformed &+= 1
            stats.malformed[error.metricName, default: 0] &+= 1
            return
        }
        let key = FlowKey(frame: frame, layout: layout, inPort: port.number)
        var f = table.lookup(key, now: now, bytes: frame.count)
        if f < 0 { f = miss(frame, layout: layout, port: port, now: now) }
        if f >= 0 {
            var sink = TxSink(datapath: self)
            ActionExecutor.execute(table.actions(of: f), frame: frame, layout: layout, sink: &sink)
        }
    }

    /// Simulates a frame the flow table did not know. Returns the installed flow, or -1
    /// when the result was not cacheable (its actions have been executed already).
    private func miss(_ frame: UnsafeRawBufferPointer, layout: FrameLayout, port: BoundPort, now: UInt64) -> Int32 {
        stats.simulations &+= 1
        let result = Simulator(topology: topology, learned: learned).simulate(frame: frame, inPort: port.number, now: now)
        for e in result.effects {
            let tags = learned.apply(e, now: now)
            if !tags.isEmpty { table.invalidate(tags: tags) }
            if case .arp(let router, let ip, _, _) = e, let waiting = pending.removeValue(forKey: PendingKey(router: router, ip: ip)) {
                pendingCount -= waiting.count
                replay += waiting
            }
        }
        for g in result.generated {
            guard let out = portArray.indices.contains(Int(g.port)) ? portArray[Int(g.port)] : nil, out.io != nil else { continue }
            if out.tx.isFull { flush(out) }
            if g.frame.withUnsafeBytes({ out.tx.append($0) }) {
                out.dirty = true
                stats.generatedPackets &+= 1
            } else {
                out.counters.txDropped &+= 1
            }
        }
        for w in result.pending {
            let key = PendingKey(router: w.router, ip: w.ip)
            if pending[key, default: []].count < configuration.arpQueueLength {
                pending[key, default: []].append(PendingPacket(port: port.number, frame: Array(frame), since: now))
                pendingCount += 1
            }
        }
        if result.cacheable {
            // The packet that created the flow counts as its first.
            return table.install(result.match, actions: result.actions, tags: result.tags, now: now,
                                 packets: 1, bytes: UInt64(frame.count))
        }
        if !result.actions.isEmpty {
            var sink = TxSink(datapath: self)
            result.actions.withUnsafeBufferPointer { ActionExecutor.execute($0, frame: frame, layout: layout, sink: &sink) }
        }
        return -1
    }

    private func replayPending() {
        let packets = replay
        replay = []
        let now = clock()
        for p in packets {
            guard let port = ports[p.port] else { continue }
            p.frame.withUnsafeBytes { process($0, inPort: port, now: now) }
        }
        flushDirty()
    }

    struct TxSink: PacketSink {
        unowned(unsafe) let datapath: Datapath

        @inline(__always)
        mutating func buffer(for port: UInt32) -> UnsafeMutableRawBufferPointer? {
            let i = Int(port)
            guard i < datapath.portArray.count, let out = datapath.portArray[i], out.io != nil else { return nil }
            if out.tx.isFull { datapath.flush(out) }
            return out.tx.reserve()
        }

        @inline(__always)
        mutating func commit(port: UInt32, length: Int) {
            let out = datapath.portArray[Int(port)]!
            out.tx.commit(length: length)
            out.dirty = true
        }
    }

    private func flushDirty() {
        for p in ports.values where p.dirty { flush(p) }
    }

    fileprivate func flush(_ port: BoundPort) {
        port.dirty = false
        let n = port.tx.count
        guard n > 0 else { return }
        var sent = 0
        if let io = port.io { sent = io.send(port.tx) }
        for i in 0..<sent { port.counters.txBytes &+= UInt64(port.tx.lengths[i]) }
        port.counters.txPackets &+= UInt64(sent)
        port.counters.txDropped &+= UInt64(n - sent)
        port.tx.count = 0
    }

    // MARK: configuration

    private func install(topology new: Topology, invalidate tags: [FlowTag]) {
        topology = new
        var all = tags
        // Reconcile bound interfaces with the exterior ports of the new topology.
        var desired: [UInt32: (Port, String)] = [:]
        for p in new.exteriorPorts { if let i = p.binding.interfaceName { desired[p.number] = (p, i) } }
        for (number, bound) in ports where desired[number]?.1 != bound.interface || desired[number]?.0.id != bound.id {
            bound.io?.close()
            bound.io = nil
            ports[number] = nil
            all += learned.forget(port: bound.id)
            pollDirty = true
        }
        for (number, (port, interface)) in desired where ports[number] == nil {
            let b = BoundPort(port: port, interface: interface, batchSize: configuration.batchSize, slotSize: configuration.slotSize)
            ports[number] = b
            open(b)
        }
        let maxNumber = Int(ports.keys.max() ?? 0)
        portArray = Array(repeating: nil, count: maxNumber + 1)
        for (n, p) in ports { portArray[Int(n)] = p }
        table.invalidate(tags: all)
        publishStats()
    }

    private func open(_ port: BoundPort) {
        do {
            port.io = try ioFactory(port.interface)
            port.state = "up"
        } catch {
            port.io = nil
            port.state = "waiting for interface \(port.interface): \(error)"
        }
        pollDirty = true
    }

    // MARK: maintenance

    private func maintenance(now: UInt64) {
        table.expire(now: now)
        let aged = learned.expire(now: now, topology: topology)
        if !aged.isEmpty { table.invalidate(tags: aged) }
        for (key, list) in pending {
            let kept = list.filter { now &- $0.since < configuration.arpQueueTimeout }
            stats.arpTimeouts &+= UInt64(list.count - kept.count)
            pendingCount -= list.count - kept.count
            pending[key] = kept.isEmpty ? nil : kept
        }
        for p in ports.values where p.io == nil { open(p) }
        publishStats()
    }

    private func publishStats() {
        stats.flowTable = table.counters
        stats.flows = table.liveFlows
        stats.subtables = table.subtableCountLive
        stats.flowMemoryBytes = table.approximateMemory
        stats.arpQueued = pendingCount
        stats.macEntries = learned.macEntryCount
        stats.arpEntries = learned.arpEntryCount
        stats.topologyVersion = topology.version
        stats.ports = ports.values.sorted { $0.number < $1.number }.map {
            PortStatus(number: $0.number, port: $0.name, interface: $0.interface, state: $0.state,
                       receive: $0.io?.receiveMode, counters: $0.counters)
        }
        let s = stats
        lock.withLock {
            let running = published.running
            published = s
            published.running = running
        }
    }
}

/// What `Datapath.perform` closures may look at, on the datapath thread.
public struct DatapathView {
    let datapath: Datapath
    public var topology: Topology { datapath.topology }
    public var learned: LearnedState { datapath.learned }
    public var flowTable: FlowTable { datapath.table }
    public func flows(limit: Int) -> [FlowSnapshot] { datapath.table.snapshot(limit: limit) }
}

/// Nanoseconds of CLOCK_MONOTONIC.
@Sendable public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
