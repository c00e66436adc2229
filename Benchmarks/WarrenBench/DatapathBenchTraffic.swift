// Traffic for `warren-bench datapath`: a UDP frame generator inside VM 1 and a counting
// receiver inside VM 2, each on its own POSIX thread.
//
// What: the generator writes prebuilt Ethernet/IPv4/UDP frames with sendmmsg on an
// AF_PACKET socket opened inside the VM namespace (`PacketSocket(namespace:)`,
// `MultiMessageBatch`), rewriting only the UDP ports between batches (fixed, cycling over N
// source ports, random source ports, random source and destination ports, or N fixed
// source/destination pairs sent in order). The receiver wakes every 0.5 ms and drains with
// recvmmsg, counting only frames that carry the generator's source address and payload
// magic — ARP, ICMP errors and other chatter on the VM's interface are not counted.
// Invariants: frames are 60 bytes (a "64-byte" frame with its FCS) up to 1514 bytes; the
// UDP checksum is 0 (none) and the IPv4 checksum is computed once (ports do not enter it);
// the generator never allocates in its loop.
// Threading: each object's counters are atomics read by the main thread; its socket and
// buffers belong to its own thread between start() and stop().

import Synchronization
import WarrenCore
import WarrenLinux
#if canImport(Glibc)
import Glibc
#endif

/// How the generator varies the UDP ports.
enum PortPattern: Sendable {
    /// One flow.
    case fixed
    /// Source ports cycling over `n` values (n distinct flows).
    case cycle(Int)
    /// A random source port per frame.
    case randomSource
    /// Random source and destination ports per frame (≈ 4·10⁹ combinations).
    case randomPair
    /// `n` distinct (source, destination) pairs, each sent in order (none skipped).
    case pairs(Int)
}

/// What the generated frames look like.
struct FrameSpec: Sendable {
    var sourceMAC: [UInt8]
    var destinationMAC: [UInt8]
    var sourceIP: UInt32
    var destinationIP: UInt32
    /// Bytes on the wire without the FCS: 60 ("64-byte frames") … 1514.
    var length: Int
    static let destinationPort: UInt16 = 9  // discard
    static let basePort: UInt16 = 2000
    static let magic: UInt32 = 0x5742_4421  // "WBD!"
}

func parseIPv4(_ text: String) -> UInt32 {
    text.split(separator: ".").reduce(UInt32(0)) { $0 << 8 | UInt32($1)! }
}

/// Writes a complete frame for `spec` at `p` (IPv4 checksum included, UDP checksum 0).
func buildFrame(_ spec: FrameSpec, at p: UnsafeMutableRawPointer) {
    let b = p.assumingMemoryBound(to: UInt8.self)
    b.initialize(repeating: 0, count: spec.length)
    for i in 0..<6 { b[i] = spec.destinationMAC[i]; b[6 + i] = spec.sourceMAC[i] }
    b[12] = 0x08; b[13] = 0x00
    let ipLength = spec.length - 14
    let ip = b + 14
    ip[0] = 0x45; ip[2] = UInt8(ipLength >> 8); ip[3] = UInt8(ipLength & 0xFF)
    ip[6] = 0x40  // DF
    ip[8] = 64; ip[9] = 17
    for i in 0..<4 {
        ip[12 + i] = UInt8(truncatingIfNeeded: spec.sourceIP >> (24 - 8 * i))
        ip[16 + i] = UInt8(truncatingIfNeeded: spec.destinationIP >> (24 - 8 * i))
    }
    var sum: UInt32 = 0
    for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    let checksum = ~UInt16(sum)
    ip[10] = UInt8(checksum >> 8); ip[11] = UInt8(checksum & 0xFF)
    let udp = ip + 20
    let udpLength = ipLength - 20
    udp[0] = UInt8(FrameSpec.basePort >> 8); udp[1] = UInt8(FrameSpec.basePort & 0xFF)
    udp[2] = UInt8(FrameSpec.destinationPort >> 8); udp[3] = UInt8(FrameSpec.destinationPort & 0xFF)
    udp[4] = UInt8(udpLength >> 8); udp[5] = UInt8(udpLength & 0xFF)
    for i in 0..<4 { udp[8 + i] = UInt8(truncatingIfNeeded: FrameSpec.magic >> (24 - 8 * i)) }
}

// MARK: - threads and CPUs

/// Runs `body` on a new joinable POSIX thread.
func startBenchThread(_ body: @escaping () -> Void) throws -> pthread_t {
    final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(box).release()
        throw BenchError("cannot start a thread: \(String(cString: strerror(rc)))")
    }
    return t
}

/// Pins the calling thread to `cpu` (sched_setaffinity is a GNU extension Swift's Glibc
/// module does not declare; it is looked up at run time). Returns false on failure.
@discardableResult
func pinCurrentThread(cpu: Int) -> Bool {
    typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    guard cpu >= 0, cpu < 1024, let sym = dlsym(nil, "sched_setaffinity") else { return false }
    let setAffinity = unsafeBitCast(sym, to: SetAffinity.self)
    var mask = [UInt64](repeating: 0, count: 16)
    mask[cpu / 64] = 1 << UInt64(cpu % 64)
    return mask.withUnsafeBytes { setAffinity(0, $0.count, $0.baseAddress!) } == 0
}

// MARK: - generator

final class TrafficGenerator: @unchecked Sendable {
    let socket: PacketSocket
    let pattern: PortPattern
    let capacity = 64
    private let slotSize: Int
    private let frames: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private let io: MultiMessageBatch
    private let stopFlag = Atomic<Bool>(false)
    private let sentFrames = Atomic<Int>(0)
    /// Completed passes over a `.pairs(n)` pattern.
    private let passes = Atomic<Int>(0)
    private var thread: pthread_t?
    private let cpu: Int?

    var sent: Int { sentFrames.load(ordering: .relaxed) }
    var completedPasses: Int { passes.load(ordering: .relaxed) }

    init(vm: BenchVM, spec: FrameSpec, pattern: PortPattern, cpu: Int?) throws {
        var o = PacketSocket.Options(promiscuous: false, ignoreOutgoing: true, qdiscBypass: true,
                                     vnetHeader: false, receiveBufferSize: nil, sendBufferSize: 4 << 20)
        o.auxData = false
        socket = try PacketSocket(interface: "eth0", namespace: vm.namespace, options: o)
        self.pattern = pattern
        self.cpu = cpu
        slotSize = (spec.length + 63) & ~63
        frames = .allocate(byteCount: capacity * slotSize, alignment: 64)
        lengths = .allocate(capacity: capacity)
        for i in 0..<capacity {
            buildFrame(spec, at: frames + i * slotSize)
            lengths[i] = spec.length
        }
        io = MultiMessageBatch(capacity: capacity, frames: frames, slotSize: slotSize, headers: nil)
    }

    deinit {
        stop()
        socket.close()
        frames.deallocate()
        lengths.deallocate()
    }

    func start() throws {
        thread = try startBenchThread { [self] in loop() }
    }

    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        if let t = thread { pthread_join(t, nil); thread = nil }
    }

    @inline(__always)
    private func setPorts(slot i: Int, source: UInt16, destination: UInt16?) {
        let udp = (frames + i * slotSize + 34).assumingMemoryBound(to: UInt8.self)
        udp[0] = UInt8(source >> 8); udp[1] = UInt8(source & 0xFF)
        if let d = destination { udp[2] = UInt8(d >> 8); udp[3] = UInt8(d & 0xFF) }
    }

    private func loop() {
        if let cpu { pinCurrentThread(cpu: cpu) }
        var rng = SeededGenerator(seed: UInt64(monotonicNanos()))
        var next = 0  // index of the next frame of a cycle/pairs pattern not yet sent
        var total = 0
        while !stopFlag.load(ordering: .relaxed) {
            switch pattern {
            case .fixed:
                break
            case .cycle(let n):
                for i in 0..<capacity { setPorts(slot: i, source: FrameSpec.basePort &+ UInt16((next + i) % n), destination: nil) }
            case .randomSource:
                for i in 0..<capacity { setPorts(slot: i, source: 1024 &+ UInt16(truncatingIfNeeded: rng.next() % 64_000), destination: nil) }
            case .randomPair:
                for i in 0..<capacity {
                    let r = rng.next()
                    setPorts(slot: i, source: 1024 &+ UInt16(truncatingIfNeeded: r % 64_000),
                             destination: 1024 &+ UInt16(truncatingIfNeeded: (r >> 32) % 64_000))
                }
            case .pairs(let n):
                for i in 0..<capacity {
                    let j = (next + i) % n
                    setPorts(slot: i, source: FrameSpec.basePort &+ UInt16(j % 50_000), destination: FrameSpec.basePort &+ UInt16(j / 50_000))
                }
            }
            let n = (try? io.send(on: socket, count: capacity, lengths: lengths)) ?? 0
            if n == 0 { sched_yield(); continue }
            total += n
            sentFrames.store(total, ordering: .relaxed)
            switch pattern {
            case .cycle(let c): next = (next + n) % c
            case .pairs(let c):
                if next + n >= c { passes.add(1, ordering: .relaxed) }
                next = (next + n) % c
            default: break
            }
        }
    }
}

// MARK: - receiver

final class TrafficReceiver: @unchecked Sendable {
    let socket: PacketSocket
    private let capacity = 256
    /// Only the headers are looked at: longer frames are truncated into the slot (MSG_TRUNC).
    private let slotSize = 128
    private let frames: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private let io: MultiMessageBatch
    private let sourceIP: UInt32
    private let stopFlag = Atomic<Bool>(false)
    private let counted = Atomic<Int>(0)
    private var thread: pthread_t?
    private let cpu: Int?

    /// Frames from the generator delivered to the VM so far.
    var received: Int { counted.load(ordering: .relaxed) }

    init(vm: BenchVM, sourceIP: UInt32, cpu: Int?) throws {
        var o = PacketSocket.Options(promiscuous: false, ignoreOutgoing: true, qdiscBypass: false,
                                     vnetHeader: false, receiveBufferSize: 32 << 20, sendBufferSize: nil)
        o.auxData = false
        socket = try PacketSocket(interface: "eth0", namespace: vm.namespace, options: o)
        self.sourceIP = sourceIP
        self.cpu = cpu
        frames = .allocate(byteCount: capacity * slotSize, alignment: 64)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        io = MultiMessageBatch(capacity: capacity, frames: frames, slotSize: slotSize, headers: nil)
    }

    deinit {
        stop()
        socket.close()
        frames.deallocate()
        lengths.deallocate()
    }

    func start() throws {
        thread = try startBenchThread { [self] in loop() }
    }

    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        if let t = thread { pthread_join(t, nil); thread = nil }
    }

    private func loop() {
        if let cpu { pinCurrentThread(cpu: cpu) }
        var total = 0
        var truncated = 0
        let wantIP = sourceIP.bigEndian
        let wantMagic = FrameSpec.magic.bigEndian
        while !stopFlag.load(ordering: .relaxed) {
            // Sleep instead of blocking in poll(): a sleeping poller must be woken for each
            // queued frame by the CPU that delivers it — the switch's CPU for a userspace
            // switch — which would charge the measuring apparatus to the switch. The 32 MiB
            // receive buffer holds far more than a millisecond of frames.
            usleep(500)
            while true {
                let n = (try? io.receive(from: socket, lengths: lengths, truncated: &truncated)) ?? 0
                if n == 0 { break }
                for i in 0..<n where lengths[i] >= 46 {
                    let f = UnsafeRawPointer(frames + i * slotSize)
                    if f.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x0800).bigEndian,
                       f.load(fromByteOffset: 23, as: UInt8.self) == 17,
                       f.loadUnaligned(fromByteOffset: 26, as: UInt32.self) == wantIP,
                       f.loadUnaligned(fromByteOffset: 42, as: UInt32.self) == wantMagic {
                        total += 1
                    }
                }
                counted.store(total, ordering: .relaxed)
                if n < capacity { break }
            }
        }
    }
}
