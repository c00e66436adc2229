// SocketPacketIO: PacketIO over an AF_PACKET socket with batched recvmmsg/sendmmsg.
//
// Why recvmmsg/sendmmsg rather than a TPACKET_V3 ring (measured on this kind of
// machine, LINUX-NOTES.md): both move 230–290 k 60-byte frames/s per core — the veth
// path in the kernel, not the copy, is the cost — but a V3 ring hands a block over only
// when it fills or its timer fires (≥ 1 ms), which puts a millisecond on every idle
// round trip, while poll-driven recvmmsg answers in tens of microseconds. The RTT goal
// (p50 ≤ 150 µs) decides it. Docs/benchmarks.md has the figures of this build.
//
// The socket uses PACKET_VNET_HDR: each received frame comes with a virtio-net header
// telling us whether the sender left its L4 checksum for offload (the datapath completes
// it) or handed us a segmentation super-frame. Frames we send carry a zeroed header (no
// offload requested).
// Threading: used by the datapath thread only.

import CWarrenShim
import WarrenLinux

public final class SocketPacketIO: PacketIO {
    public let socket: PacketSocket
    private var rxBatch: OpaquePointer?
    private var txBatch: OpaquePointer?
    private weak var rxOwner: PacketBatch?
    private weak var txOwner: PacketBatch?

    public var fileDescriptor: Int32 { socket.fd }
    public var interfaceName: String { socket.interfaceName }

    public init(interface: String, namespace: String? = nil) throws {
        socket = try PacketSocket(interface: interface, namespace: namespace)
    }

    deinit {
        cwarren_iobatch_destroy(rxBatch)
        cwarren_iobatch_destroy(txBatch)
    }

    /// The C iovec description of `batch`, built once per batch object.
    private func describe(_ batch: PacketBatch, _ cached: inout OpaquePointer?, _ owner: inout PacketBatch?) -> OpaquePointer? {
        if owner !== batch || cached == nil {
            cwarren_iobatch_destroy(cached)
            cached = cwarren_iobatch_create(UInt32(batch.capacity), batch.frames, batch.slotSize, batch.headers)
            owner = batch
        }
        return cached
    }

    public func receive(into batch: PacketBatch, truncated: inout Int) -> Int {
        guard socket.fd >= 0, let b = describe(batch, &rxBatch, &rxOwner) else { return 0 }
        var t: Int32 = 0
        let n = cwarren_iobatch_recv(b, socket.fd, batch.lengths, &t)
        truncated += Int(t)
        return n > 0 ? Int(n) : 0
    }

    public func send(_ batch: PacketBatch) -> Int {
        guard socket.fd >= 0, batch.count > 0, let b = describe(batch, &txBatch, &txOwner) else { return 0 }
        let n = cwarren_iobatch_send(b, socket.fd, batch.lengths, UInt32(batch.count))
        return n > 0 ? Int(n) : 0
    }

    public func close() { socket.close() }
}
