// SocketPacketIO: PacketIO over an AF_PACKET socket: frames arrive through a TPACKET_V2
// receive ring (or recvmmsg) and leave with sendmmsg, in batches.
//
// Receive path, by measurement (Docs/benchmarks.md, `warren-bench datapath`): with
// recvmmsg, 93 % of the datapath thread's time is in the kernel, a third of it in the
// receive system call and its copy to user space. A TPACKET_V2 ring removes the system
// call per batch: the kernel writes each frame into a mapped slot and flips its status,
// and the datapath walks the ring. V2, not V3: a V3 ring hands over whole blocks, on a
// ≥ 1 ms timer when traffic is light, which would put a millisecond on every idle round
// trip (RTT goal p50 ≤ 150 µs); V2 hands over each frame at once. recvmmsg remains the
// fallback (kernels before 5.8 write no virtio-net header into ring slots; or
// `DatapathConfiguration.receiveRing = false`).
//
// The socket uses PACKET_VNET_HDR: each received frame comes with a virtio-net header
// telling us whether the sender left its L4 checksum for offload (the datapath completes
// it) or handed us a segmentation super-frame. Frames we send carry a zeroed header (no
// offload requested). Stripped 802.1Q tags are put back (ring slot header or
// PACKET_AUXDATA).
// Threading: used by the datapath thread only.

import WarrenLinux

public final class SocketPacketIO: PacketIO {
    public let socket: PacketSocket
    private var rx: (batch: PacketBatch, io: MultiMessageBatch)?
    private var tx: (batch: PacketBatch, io: MultiMessageBatch)?
    /// The receive ring, when in use.
    public let ring: PacketReceiveRing?

    public var fileDescriptor: Int32 { socket.fd }
    public var interfaceName: String { socket.interfaceName }

    /// Opens the socket; with `receiveRing` (and a kernel that supports it) maps a receive
    /// ring for frames of up to `maxFrame` bytes, falling back to recvmmsg if that fails.
    public init(interface: String, namespace: String? = nil, receiveRing: Bool = true, maxFrame: Int = 2048,
                ringSlots: Int = 256) throws {
        socket = try PacketSocket(interface: interface, namespace: namespace,
                                  options: SocketPacketIO.options)
        if receiveRing && PacketReceiveRing.isSupported {
            ring = try? PacketReceiveRing(socket: socket, maxFrame: maxFrame, headerSize: VirtioNetHeader.size, frames: ringSlots)
        } else {
            ring = nil
        }
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
        if let ring {
            return ring.receive(capacity: batch.capacity, frames: batch.frames, slotSize: batch.slotSize, headers: batch.headers,
                                headerSize: VirtioNetHeader.size, lengths: batch.lengths, truncated: &truncated)
        }
        let io = messages(batch, &rx, receiving: true)
        return (try? io.receive(from: socket, lengths: batch.lengths, truncated: &truncated)) ?? 0
    }

    public func send(_ batch: PacketBatch) -> Int {
        guard batch.count > 0 else { return 0 }
        let io = messages(batch, &tx, receiving: false)
        return (try? io.send(on: socket, count: batch.count, lengths: batch.lengths)) ?? 0
    }

    public func close() { socket.close() }

    public var receiveMode: String { ring == nil ? "recvmmsg" : "ring" }
}
