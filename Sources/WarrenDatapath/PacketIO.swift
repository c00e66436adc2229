// PacketIO: the boundary between the datapath and the host's interfaces.
//
// `SocketPacketIO` (in SocketPacketIO.swift) uses an AF_PACKET socket with a TPACKET_V2
// receive ring (or batched recvmmsg) and batched sendmmsg; `MemoryPacketIO` is the in-memory fake the unit tests drive. The
// datapath only sees this protocol, so every forwarding rule is testable without a
// kernel, and the same scenarios run for real in network namespaces.
// Threading: an instance is used by the datapath thread only (opened and closed there).

import WarrenCore
import WarrenLinux

public protocol PacketIO: AnyObject {
    /// A descriptor to wait on for readability, or -1 (fakes are polled every loop).
    var fileDescriptor: Int32 { get }
    /// The interface this I/O is attached to.
    var interfaceName: String { get }
    /// Fills `batch` with up to `batch.capacity` received frames (lengths and virtio-net
    /// headers); returns how many. Never blocks. `truncated` counts frames larger than a slot.
    func receive(into batch: PacketBatch, truncated: inout Int) -> Int
    /// Sends the first `batch.count` frames; returns how many the kernel took. Never blocks.
    func send(_ batch: PacketBatch) -> Int
    func close()
    /// How frames are received, for status ("ring", "recvmmsg", "memory").
    var receiveMode: String { get }
}

extension PacketIO {
    public var receiveMode: String { "batched" }
}

/// Opens packet I/O for an interface name; throws when the interface does not exist yet
/// (the datapath retries).
public typealias PacketIOFactory = @Sendable (_ interface: String) throws -> any PacketIO

/// An in-memory PacketIO for tests: frames pushed with `inject` are received; frames
/// the datapath sends are collected in `sent`.
public final class MemoryPacketIO: PacketIO, @unchecked Sendable {
    public let interfaceName: String
    public var fileDescriptor: Int32 { -1 }
    private let lock = Lock()
    private var inbox: [[UInt8]] = []
    private var outbox: [[UInt8]] = []
    public private(set) var closed = false

    public init(interfaceName: String) { self.interfaceName = interfaceName }

    /// Queues a frame as if it arrived on the interface.
    public func inject(_ frame: [UInt8]) { lock.withLock { inbox.append(frame) } }

    /// Takes the frames sent so far.
    public func takeSent() -> [[UInt8]] { lock.withLock { defer { outbox = [] }; return outbox } }

    public func receive(into batch: PacketBatch, truncated: inout Int) -> Int {
        lock.withLock {
            var n = 0
            while n < batch.capacity, !inbox.isEmpty {
                let f = inbox.removeFirst()
                let len = min(f.count, batch.slotSize)
                if f.count > batch.slotSize { truncated += 1 }
                f.withUnsafeBytes { (batch.frames + n * batch.slotSize).copyMemory(from: $0.baseAddress!, byteCount: len) }
                (batch.headers + n * VirtioNetHeader.size).initializeMemory(as: UInt8.self, repeating: 0, count: VirtioNetHeader.size)
                batch.lengths[n] = len
                n += 1
            }
            return n
        }
    }

    public func send(_ batch: PacketBatch) -> Int {
        lock.withLock {
            for i in 0..<batch.count {
                outbox.append(Array(UnsafeRawBufferPointer(start: batch.frames + i * batch.slotSize, count: batch.lengths[i])))
            }
            return batch.count
        }
    }

    public func close() { lock.withLock { closed = true } }

    public var receiveMode: String { "memory" }
}
