// PacketSocket: an AF_PACKET raw socket bound to one interface, for the datapath.
//
// What: a non-blocking, close-on-exec SOCK_RAW socket for all protocols (ETH_P_ALL), created
// inside a namespace when asked (via `NetworkNamespace.run`), with the options the datapath
// needs (promiscuous membership, PACKET_IGNORE_OUTGOING, PACKET_QDISC_BYPASS,
// PACKET_VNET_HDR, forced buffer sizes). `MultiMessageBatch` does batched I/O with
// recvmmsg/sendmmsg over caller-owned contiguous slot memory; the mmsghdr/iovec arrays are
// filled once by the C shim, so Swift never touches the C layouts per packet.
// `PacketReceiveRing` maps a TPACKET_V2 receive ring instead (walked by the C shim).
// Invariants: `fd` is valid until `close()`; close is idempotent and also done by deinit.
// With `vnetHeader` every frame on the wire of this socket is preceded by a 10-byte
// virtio_net_hdr (`VirtioNetHeader`), in RX and TX.
// Threading: the socket may be used from any thread; a MultiMessageBatch belongs to one
// thread at a time (it owns per-slot kernel structures that each call rewrites).

#if canImport(Glibc)
import Glibc
#endif
import CWarrenShim

/// An AF_PACKET raw socket bound to one interface (see file comment).
public final class PacketSocket: @unchecked Sendable {
    /// Socket options.
    public struct Options: Sendable, Hashable {
        /// Receive frames not addressed to the interface (PACKET_MR_PROMISC membership).
        public var promiscuous: Bool
        /// Do not receive frames this host sends on the interface (PACKET_IGNORE_OUTGOING).
        public var ignoreOutgoing: Bool
        /// Send straight to the driver, bypassing the qdisc layer (PACKET_QDISC_BYPASS).
        public var qdiscBypass: Bool
        /// Prefix each frame with a virtio_net_hdr carrying checksum/GSO offload state
        /// (PACKET_VNET_HDR) — frames then arrive with checksums still to be completed.
        public var vnetHeader: Bool
        /// Receive buffer in bytes (SO_RCVBUFFORCE), nil for the default.
        public var receiveBufferSize: Int?
        /// Send buffer in bytes (SO_SNDBUFFORCE), nil for the default.
        public var sendBufferSize: Int?
        /// Receive packet metadata (PACKET_AUXDATA): needed to see 802.1Q tags, which the
        /// kernel strips from received frames (`MultiMessageBatch(restoreVLANTags:)`).
        public var auxData = false

        /// Options for a datapath port: promiscuous, ignoring outgoing, bypassing the qdisc.
        public init(promiscuous: Bool = true, ignoreOutgoing: Bool = true, qdiscBypass: Bool = true,
                    vnetHeader: Bool = false, receiveBufferSize: Int? = nil, sendBufferSize: Int? = nil) {
            self.promiscuous = promiscuous; self.ignoreOutgoing = ignoreOutgoing; self.qdiscBypass = qdiscBypass
            self.vnetHeader = vnetHeader; self.receiveBufferSize = receiveBufferSize; self.sendBufferSize = sendBufferSize
        }
    }

    /// The socket's file descriptor (non-blocking). Invalid after `close()`.
    public let fd: Int32
    /// The bound interface's index (in its namespace).
    public let ifindex: Int32
    /// The bound interface's name.
    public let interfaceName: String
    /// The namespace the socket was created in (nil: the caller's own).
    public let namespace: String?
    /// The options it was opened with.
    public let options: Options
    private let lock = Lock()
    private var closed = false

    /// Opens a packet socket on `interface`, created inside `namespace` if given.
    /// Throws `SystemCallError` naming the step that failed (e.g. the interface is missing).
    public init(interface: String, namespace: String? = nil, options: Options = Options()) throws {
        guard !interface.isEmpty, interface.utf8.count < 16 else {
            throw ArgumentError(argument: "interface", value: interface, reason: "must be 1–15 characters")
        }
        var o = cwarren_packet_options(
            promiscuous: options.promiscuous ? 1 : 0, ignore_outgoing: options.ignoreOutgoing ? 1 : 0,
            qdisc_bypass: options.qdiscBypass ? 1 : 0, vnet_header: options.vnetHeader ? 1 : 0,
            rcvbuf: Int32(clamping: options.receiveBufferSize ?? 0), sndbuf: Int32(clamping: options.sendBufferSize ?? 0))
        var index: Int32 = 0
        var step: Int32 = 0
        let rc = try NetworkNamespace.run(inOptional: namespace) { cwarren_packet_open(interface, &o, &index, &step) }
        if rc < 0 {
            let place = namespace.map { " in \($0)" } ?? ""
            throw SystemCallError("opening a packet socket on \(interface)\(place) (\(String(cString: cwarren_packet_step_name(step))))", errno: -rc)
        }
        if options.auxData {
            let a = cwarren_packet_enable_auxdata(rc)
            if a < 0 {
                _ = Glibc.close(rc)
                throw SystemCallError("enabling PACKET_AUXDATA on \(interface)", errno: -a)
            }
        }
        fd = rc
        ifindex = index
        interfaceName = interface
        self.namespace = namespace
        self.options = options
    }

    deinit { close() }

    /// Closes the socket. Idempotent.
    public func close() {
        let shouldClose = lock.withLock { () -> Bool in
            if closed { return false }
            closed = true
            return true
        }
        if shouldClose { _ = Glibc.close(fd) }
    }

    /// Whether `close()` was called.
    public var isClosed: Bool { lock.withLock { closed } }
}

/// Batched receive/send on a packet socket over caller-owned memory: slot i's frame buffer
/// is `frames + i * slotSize`; with virtio-net headers, slot i's header is
/// `headers + i * VirtioNetHeader.size`. The memory must outlive the batch.
public final class MultiMessageBatch {
    /// Number of slots.
    public let capacity: Int
    /// Bytes per frame slot.
    public let slotSize: Int
    /// Whether a header buffer is attached (use with `PacketSocket.Options.vnetHeader`).
    public let hasHeaders: Bool
    private let messages: UnsafeMutableRawPointer
    private let iovecs: UnsafeMutablePointer<iovec>
    private let frames: UnsafeMutableRawPointer
    private let headers: UnsafeMutableRawPointer?
    /// Control buffers for PACKET_AUXDATA, when VLAN tags are restored.
    private let control: UnsafeMutableRawPointer?
    private let controlSize: Int
    /// Received frames whose 802.1Q tag did not fit back into the slot.
    public private(set) var vlanTagsLost = 0

    /// Prepares `capacity` slots. Pass `headers` exactly when the socket uses vnet headers.
    /// With `restoreVLANTags` (the socket must use `Options.auxData`), received frames get
    /// back the 802.1Q tag the kernel stripped into metadata.
    public init(capacity: Int, frames: UnsafeMutableRawPointer, slotSize: Int, headers: UnsafeMutableRawPointer?,
                restoreVLANTags: Bool = false) {
        precondition(capacity > 0 && slotSize > 0, "MultiMessageBatch needs at least one slot of at least one byte")
        self.capacity = capacity
        self.slotSize = slotSize
        self.frames = frames
        self.headers = headers
        hasHeaders = headers != nil
        messages = .allocate(byteCount: cwarren_mmsghdr_size() * capacity, alignment: 16)
        let perMessage = headers == nil ? 1 : 2
        iovecs = .allocate(capacity: capacity * perMessage)
        cwarren_mmsg_setup(messages, iovecs, UInt32(capacity), frames, slotSize, headers, VirtioNetHeader.size)
        controlSize = restoreVLANTags ? cwarren_auxdata_control_size() : 0
        control = restoreVLANTags ? .allocate(byteCount: controlSize * capacity, alignment: 16) : nil
    }

    deinit {
        messages.deallocate()
        iovecs.deallocate()
        control?.deallocate()
    }

    /// Receives up to `min(capacity, limit)` frames without blocking. Stores each frame's
    /// length in `lengths[i]` (clamped to `slotSize`; oversized frames are counted in
    /// `truncated`). Returns the number received, 0 when nothing is waiting.
    public func receive(from socket: PacketSocket, lengths: UnsafeMutablePointer<Int>, truncated: inout Int,
                        limit: Int = .max) throws -> Int {
        let count = UInt32(min(capacity, limit))
        cwarren_mmsg_reset_lengths(messages, count, slotSize)
        if let control { cwarren_mmsg_reset_control(messages, count, control, controlSize) }
        let n = cwarren_recvmmsg(socket.fd, messages, count, cwarren_msg_dontwait() | cwarren_msg_trunc())
        if n < 0 {
            if -n == EAGAIN || -n == EWOULDBLOCK || -n == EINTR { return 0 }
            throw SystemCallError("receiving on \(socket.interfaceName)", errno: -n)
        }
        truncated += Int(cwarren_mmsg_get_lengths(messages, UInt32(n), hasHeaders ? VirtioNetHeader.size : 0, slotSize, lengths))
        if control != nil {
            vlanTagsLost += Int(cwarren_mmsg_restore_vlan(messages, UInt32(n), frames, slotSize, lengths))
        }
        return Int(n)
    }

    /// Sends the first `count` slots (frame i is `lengths[i]` bytes; with headers, each
    /// slot's header is sent first) without blocking. Returns how many the kernel took,
    /// 0 when its queue is full.
    public func send(on socket: PacketSocket, count: Int, lengths: UnsafePointer<Int>) throws -> Int {
        let count = min(count, capacity)
        if count == 0 { return 0 }
        cwarren_mmsg_set_lengths(messages, UInt32(count), lengths)
        let n = cwarren_sendmmsg(socket.fd, messages, UInt32(count), cwarren_msg_dontwait())
        if n < 0 {
            if -n == EAGAIN || -n == EWOULDBLOCK || -n == EINTR || -n == ENOBUFS { return 0 }
            throw SystemCallError("sending on \(socket.interfaceName)", errno: -n)
        }
        return Int(n)
    }
}

/// The virtio-net header (struct virtio_net_hdr, 10 bytes, host byte order) that precedes
/// each frame on a socket with PACKET_VNET_HDR: checksum and segmentation offload state.
public struct VirtioNetHeader: Sendable, Hashable {
    /// VIRTIO_NET_HDR_F_* flags.
    public var flags: UInt8
    /// VIRTIO_NET_HDR_GSO_* type.
    public var gsoType: UInt8
    /// Length of the headers to copy into each segment.
    public var headerLength: UInt16
    /// Segment payload size for GSO.
    public var gsoSize: UInt16
    /// Where checksumming starts (offset from the frame start).
    public var checksumStart: UInt16
    /// Where to store the checksum, relative to `checksumStart`.
    public var checksumOffset: UInt16

    /// The header's size in bytes.
    public static let size = 10
    /// Flag: the checksum at checksumStart+checksumOffset must be completed.
    public static let needsChecksum: UInt8 = 1
    /// Flag: the checksum is already valid.
    public static let dataValid: UInt8 = 2
    /// GSO types.
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoECN: UInt8 = 0x80

    /// Creates a header (all zero: no offload).
    public init(flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
                checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0) {
        self.flags = flags; self.gsoType = gsoType; self.headerLength = headerLength
        self.gsoSize = gsoSize; self.checksumStart = checksumStart; self.checksumOffset = checksumOffset
    }

    /// Parses the 10 bytes at `raw`.
    public init(_ raw: UnsafeRawPointer) {
        self.init(flags: raw.load(fromByteOffset: 0, as: UInt8.self),
                  gsoType: raw.load(fromByteOffset: 1, as: UInt8.self),
                  headerLength: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self),
                  gsoSize: raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self),
                  checksumStart: raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self),
                  checksumOffset: raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    /// Parses a header from bytes; nil if fewer than 10.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count >= Self.size else { return nil }
        let copy = Array(bytes.prefix(Self.size))
        self = copy.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) }
    }

    /// Writes the 10 bytes at `raw`.
    public func write(to raw: UnsafeMutableRawPointer) {
        raw.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
        raw.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        raw.storeBytes(of: headerLength, toByteOffset: 2, as: UInt16.self)
        raw.storeBytes(of: gsoSize, toByteOffset: 4, as: UInt16.self)
        raw.storeBytes(of: checksumStart, toByteOffset: 6, as: UInt16.self)
        raw.storeBytes(of: checksumOffset, toByteOffset: 8, as: UInt16.self)
    }
}

/// A TPACKET_V2 receive ring on a packet socket: the kernel writes each received frame
/// (with its virtio-net header and stripped 802.1Q tag) into a memory-mapped slot and
/// flips the slot's status; `receive` walks the ring without a system call. V2 hands
/// over every frame on its own (V3 hands over whole blocks, on a ≥ 1 ms timer when
/// traffic is light), so latency stays that of `recvmmsg`.
/// Open it after the socket's options are set (PACKET_VNET_HDR must precede the ring).
/// The virtio-net header in ring slots needs Linux ≥ 5.8; `isSupported` says so.
/// Threading: used by one thread (the datapath's).
public final class PacketReceiveRing {
    private var ring = cwarren_rx_ring()
    /// Number of frame slots in the ring.
    public let slots: Int
    /// Received frames whose 802.1Q tag did not fit back into the batch slot.
    public private(set) var vlanTagsLost = 0

    /// Maps a ring for frames of up to `maxFrame` bytes, with `headerSize` bytes of vnet
    /// header (0 without PACKET_VNET_HDR), about `frames` slots.
    public init(socket: PacketSocket, maxFrame: Int, headerSize: Int, frames: Int = 256) throws {
        let r = cwarren_rx_ring_open(socket.fd, maxFrame, headerSize, UInt32(max(1, frames)), &ring)
        guard r == 0 else { throw SystemCallError("mapping a receive ring on \(socket.interfaceName)", errno: -r) }
        slots = Int(ring.frame_count)
    }

    deinit { cwarren_rx_ring_close(&ring) }

    /// Whether this kernel writes virtio-net headers into ring slots (Linux ≥ 5.8).
    public static var isSupported: Bool {
        var u = utsname()
        guard uname(&u) == 0 else { return false }
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return parts[0] > 5 || (parts[0] == 5 && parts[1] >= 8)
    }

    /// Moves up to `capacity` waiting frames into the slots at `frames` (lengths into
    /// `lengths`, vnet headers into `headers` when `headerSize` > 0). Frames longer than a
    /// slot are dropped and counted in `truncated`. Returns how many; 0 when none waits.
    public func receive(capacity: Int, frames: UnsafeMutableRawPointer, slotSize: Int, headers: UnsafeMutableRawPointer?,
                        headerSize: Int, lengths: UnsafeMutablePointer<Int>, truncated: inout Int) -> Int {
        var cut: UInt = 0, lost: UInt = 0
        let n = cwarren_rx_ring_receive(&ring, UInt32(capacity), frames, slotSize, headers, headers == nil ? 0 : headerSize,
                                        lengths, &cut, &lost)
        truncated += Int(cut)
        vlanTagsLost += Int(lost)
        return Int(n)
    }
}
