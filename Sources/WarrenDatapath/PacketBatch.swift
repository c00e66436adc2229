// Packet batches: preallocated, fixed-size frame buffers that packet I/O fills (RX) or
// drains (TX) in one system call per batch.
//
// A batch is `capacity` slots of `slotSize` bytes in one allocation, plus per-slot
// lengths and virtio-net headers (checksum offload metadata from PACKET_VNET_HDR). The
// fast path writes output frames straight into TX slots and never allocates.
// Threading: owned by the datapath thread.

import WarrenCore
import WarrenLinux

public final class PacketBatch {
    public let capacity: Int
    public let slotSize: Int
    /// Frame storage: slot i at `frames + i * slotSize`.
    public let frames: UnsafeMutableRawPointer
    /// Virtio-net headers: slot i at `headers + i * VirtioNetHeader.size`.
    public let headers: UnsafeMutableRawPointer
    /// Frame lengths; for RX set by the I/O, for TX by `commit`.
    public let lengths: UnsafeMutablePointer<Int>
    /// For TX: the destination's port number of each frame; unused for RX.
    public var count = 0

    public init(capacity: Int, slotSize: Int) {
        self.capacity = capacity
        self.slotSize = slotSize
        frames = .allocate(byteCount: capacity * slotSize, alignment: 64)
        headers = .allocate(byteCount: capacity * VirtioNetHeader.size, alignment: 16)
        headers.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * VirtioNetHeader.size)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
    }

    deinit {
        frames.deallocate()
        headers.deallocate()
        lengths.deallocate()
    }

    @inlinable public var isFull: Bool { count == capacity }

    /// The received frame in slot `i`.
    @inlinable public func frame(_ i: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: frames + i * slotSize, count: lengths[i])
    }

    @inlinable public func header(_ i: Int) -> VirtioNetHeader {
        VirtioNetHeader(headers + i * VirtioNetHeader.size)
    }

    /// The next free TX slot, or nil when the batch is full.
    @inlinable public func reserve() -> UnsafeMutableRawBufferPointer? {
        count < capacity ? UnsafeMutableRawBufferPointer(start: frames + count * slotSize, count: slotSize) : nil
    }

    /// Marks the reserved slot as holding a frame of `length` bytes.
    @inlinable public func commit(length: Int) {
        lengths[count] = length
        count += 1
    }

    /// Appends a copy of `bytes` (for generated packets); false if full or too big.
    @discardableResult
    public func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let slot = reserve(), bytes.count <= slot.count else { return false }
        slot.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        commit(length: bytes.count)
        return true
    }
}

/// Completes a partial checksum the sender left for offload (VIRTIO_NET_HDR_F_NEEDS_CSUM):
/// the field at start+offset holds the pseudo-header sum; the checksum covers
/// [start, end). Returns false if the header points outside the frame.
@inlinable
public func completeOffloadedChecksum(_ frame: UnsafeMutableRawBufferPointer, header: VirtioNetHeader) -> Bool {
    let start = Int(header.checksumStart), field = start + Int(header.checksumOffset)
    guard start < frame.count, field + 2 <= frame.count else { return false }
    let sum = checksumSum(UnsafeRawBufferPointer(rebasing: frame[start...]))
    var c = ~foldChecksum(sum)
    // A computed UDP checksum of 0 is sent as 0xFFFF (0 means "no checksum").
    if c == 0 { c = 0xFFFF }
    frame[field] = UInt8(c >> 8)
    frame[field + 1] = UInt8(c & 0xFF)
    return true
}
