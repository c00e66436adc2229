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

import WarrenLinux

public final class SocketPacketIO: PacketIO {
    public let socket: PacketSocket
    private var rx: (batch: PacketBatch, io: MultiMessageBatch)?
    private var tx: (batch: PacketBatch, io: MultiMessageBatch)?

    public var fileDescriptor: Int32 { socket.fd }
    public var interfaceName: String { socket.interfaceName }

    public init(interface: String, namespace: String? = nil) throws {
        socket = try PacketSocket(interface: interface, namespace: namespace,
                                  options: SocketPacketIO.options)
    }

    static let options: PacketSocket.Options = {
        var o = PacketSocket.Options(vnetHeader: true, receiveBufferSize: 4 << 20, sendBufferSize: 4 << 20)
        o.auxData = true  // the kernel strips 802.1Q tags into metadata; we put them back
        return o
    }()

    /// The iovec description of `batch`, built once per batch object.
    private func messages(_ batch: PacketBatch, _ cached: inout (batch: PacketBatch, io: MultiMessageBatch)?, receiving: Bool) -> MultiMessageBatch {
        if let c = cached, c.batch === batch { return c.io }
        let io = MultiMessageBatch(capacity: batch.capacity, frames: batch.frames, slotSize: batch.slotSize, headers: batch.headers,
                                   restoreVLANTags: receiving)
        cached = (batch, io)
        return io
    }

    public func receive(into batch: PacketBatch, truncated: inout Int) -> Int {
        let io = messages(batch, &rx, receiving: true)
        return (try? io.receive(from: socket, lengths: batch.lengths, truncated: &truncated)) ?? 0
    }

    public func send(_ batch: PacketBatch) -> Int {
        guard batch.count > 0 else { return 0 }
        let io = messages(batch, &tx, receiving: false)
        return (try? io.send(on: socket, count: batch.count, lengths: batch.lengths)) ?? 0
    }

    public func close() { socket.close() }
}
