// Flow actions and their execution on a frame.
//
// A flow's actions are a list executed in order against a *rewrite state* that starts
// empty: `setEthSrc`, `setEthDst`, `decrementTTL`, `pushVLAN`, `popVLAN` and `clampMSS`
// change the state; `output(port)` writes the original frame, rewritten by the current
// state, to that port; `restore` empties the state again (the simulator emits it between
// branches of a flood that need different rewrites). An empty list means drop.
//
// Because rewrites are applied while copying the frame into the output buffer, a
// flow with several outputs copies the frame once per output and never modifies the
// received buffer. Checksums are updated incrementally (RFC 1624).
//
// `FlowAction` is a trivial type (no references), so action lists can live in raw memory
// owned by the flow table and be executed without reference counting.
// Threading: pure functions over caller-owned memory; no allocation.

/// One step of a flow's behaviour.
public enum FlowAction: Hashable, Sendable, CustomStringConvertible {
    /// Transmit the packet, as rewritten so far, on an exterior port (by port number).
    case output(UInt32)
    case setEthSrc(MACAddress)
    case setEthDst(MACAddress)
    /// Decrement the IPv4 TTL by one (the header checksum is updated).
    case decrementTTL
    /// Tag the frame with this VLAN ID (replacing the ID if it is already tagged).
    case pushVLAN(UInt16)
    /// Remove the frame's 802.1Q tag.
    case popVLAN
    /// Lower the MSS option of TCP SYN segments to at most this value.
    case clampMSS(UInt16)
    /// Forget every rewrite so far (the next outputs see the received frame).
    case restore

    public var description: String {
        switch self {
        case .output(let p): "output:\(p)"
        case .setEthSrc(let m): "set_eth_src:\(m)"
        case .setEthDst(let m): "set_eth_dst:\(m)"
        case .decrementTTL: "dec_ttl"
        case .pushVLAN(let v): "push_vlan:\(v)"
        case .popVLAN: "pop_vlan"
        case .clampMSS(let m): "clamp_mss:\(m)"
        case .restore: "restore"
        }
    }

    /// True for actions that change the packet.
    public var isRewrite: Bool {
        switch self {
        case .output, .restore: false
        default: true
        }
    }
}

/// The accumulated effect of rewrite actions.
public struct PacketRewrite: Sendable, Hashable {
    public var ethSrc: MACAddress?
    public var ethDst: MACAddress?
    public var ttlDecrement: UInt8 = 0
    /// nil: leave the tag alone; 0...4095: tag with that ID; -1: remove the tag.
    public var vlan: Int32?
    public var mss: UInt16?

    public init() {}

    @inlinable public var isEmpty: Bool {
        ethSrc == nil && ethDst == nil && ttlDecrement == 0 && vlan == nil && mss == nil
    }

    @inlinable public mutating func apply(_ a: FlowAction) {
        switch a {
        case .setEthSrc(let m): ethSrc = m
        case .setEthDst(let m): ethDst = m
        case .decrementTTL: ttlDecrement &+= 1
        case .pushVLAN(let v): vlan = Int32(v & 0x0FFF)
        case .popVLAN: vlan = -1
        case .clampMSS(let m): mss = min(m, mss ?? m)
        case .restore: self = PacketRewrite()
        case .output: break
        }
    }

    /// Writes `frame` rewritten by `self` into `out`. Returns the number of bytes
    /// written, or nil if `out` is too small.
    @inlinable
    public func write(_ frame: UnsafeRawBufferPointer, layout: FrameLayout, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let tagged = layout.vlanTCI != nil
        var addTag = false, removeTag = false
        if let v = vlan {
            if v < 0 { removeTag = tagged } else { addTag = !tagged }
        }
        let length = frame.count + (addTag ? 4 : 0) - (removeTag ? 4 : 0)
        guard out.count >= length, frame.count >= 14 else { return nil }
        let base = out.baseAddress!
        let src = frame.baseAddress!
        // Ethernet addresses (12 bytes), then the tag, then the rest from the EtherType.
        base.copyMemory(from: src, byteCount: 12)
        let inRest = tagged ? 16 : 12
        var outRest = 12
        if addTag {
            out.put16(12, EtherType.vlan)
            out.put16(14, UInt16(truncatingIfNeeded: vlan!))
            outRest = 16
        } else if tagged && !removeTag {
            base.advanced(by: 12).copyMemory(from: src.advanced(by: 12), byteCount: 4)
            if let v = vlan, v >= 0 {
                let pcp = frame.be16(14) & 0xF000
                out.put16(14, pcp | UInt16(truncatingIfNeeded: v))
            }
            outRest = 16
        }
        base.advanced(by: outRest).copyMemory(from: src.advanced(by: inRest), byteCount: frame.count - inRest)
        if let m = ethDst { out.putMAC(0, m.rawValue) }
        if let m = ethSrc { out.putMAC(6, m.rawValue) }
        guard layout.etherType == EtherType.ipv4, layout.ipHeaderLength > 0 else { return length }
        let l3 = layout.l3Offset - inRest + outRest
        if ttlDecrement > 0 {
            let ro = UnsafeRawBufferPointer(out)
            let ttl = out[l3 + 8]
            let newTTL = ttl >= ttlDecrement ? ttl - ttlDecrement : 0
            let proto = out[l3 + 9]
            out[l3 + 8] = newTTL
            let c = updateChecksum(ro.be16(l3 + 10), old: UInt16(ttl) << 8 | UInt16(proto), new: UInt16(newTTL) << 8 | UInt16(proto))
            out.put16(l3 + 10, c)
        }
        if let mss = mss, layout.l4Offset != 0, out[l3 + 9] == IPProtocolNumber.tcp {
            PacketRewrite.clampMSS(out, l4: layout.l4Offset - inRest + outRest, end: l3 + layout.ipTotalLength, mss: mss)
        }
        return length
    }

    /// Lowers the MSS option of a TCP SYN in place.
    @inlinable
    static func clampMSS(_ out: UnsafeMutableRawBufferPointer, l4: Int, end: Int, mss: UInt16) {
        let ro = UnsafeRawBufferPointer(out)
        guard ro[l4 + 13] & UInt8(TCPFlags.syn) != 0 else { return }
        let headerEnd = min(end, l4 + Int(ro[l4 + 12] >> 4) * 4)
        var i = l4 + 20
        while i < headerEnd {
            let kind = ro[i]
            if kind == 0 { return }
            if kind == 1 { i += 1; continue }
            guard i + 1 < headerEnd else { return }
            let len = Int(ro[i + 1])
            guard len >= 2, i + len <= headerEnd else { return }
            if kind == 2 && len == 4 {
                let old = ro.be16(i + 2)
                if old > mss {
                    out.put16(i + 2, mss)
                    out.put16(l4 + 16, updateChecksum(ro.be16(l4 + 16), old: old, new: mss))
                }
                return
            }
            i += len
        }
    }
}

/// Where executed actions send their output.
public protocol PacketSink {
    /// A buffer to write a frame for `port` into, or nil if the port cannot take it now.
    mutating func buffer(for port: UInt32) -> UnsafeMutableRawBufferPointer?
    /// The frame of `length` bytes written into the last buffer for `port` is complete.
    mutating func commit(port: UInt32, length: Int)
}

/// Executes flow actions.
public enum ActionExecutor {
    /// Runs `actions` on `frame`; each output is written straight into the sink's buffer.
    /// Returns the number of frames output.
    @inlinable @discardableResult
    public static func execute<S: PacketSink>(_ actions: UnsafeBufferPointer<FlowAction>, frame: UnsafeRawBufferPointer,
                                              layout: FrameLayout, sink: inout S) -> Int {
        var rewrite = PacketRewrite()
        var outputs = 0
        for a in actions {
            if case .output(let port) = a {
                guard let buf = sink.buffer(for: port) else { continue }
                if let n = rewrite.write(frame, layout: layout, into: buf) {
                    sink.commit(port: port, length: n)
                    outputs += 1
                }
            } else {
                rewrite.apply(a)
            }
        }
        return outputs
    }
}
