// FlowTable: the datapath's cache of simulation results.
//
// Two tiers, as in Open vSwitch's userspace datapath:
// 1. an exact-match cache (EMC): a fixed array indexed by the full key's hash (two
//    candidate slots per key) pointing at megaflows; a hit costs one hash, at most two
//    key compares and a generation check;
// 2. a megaflow classifier by tuple-space search: one hash table per distinct mask
//    ("subtable"), holding keys already masked; a lookup masks the packet's key with
//    each subtable's mask in turn and probes. Subtables are kept ranked by hits so the
//    busiest are probed first.
// A miss returns -1; the caller simulates and `install`s the result.
//
// Invalidation: each flow carries the flow tags of what it depended on; `invalidate`
// removes every flow carrying one of the given tags. Removal bumps the slot's
// generation, which is how stale EMC entries are recognised (no EMC sweep needed).
// Idle flows expire in `expire(now:)`; at the flow limit, `install` evicts the least
// recently used of a small clock-hand sample.
//
// Invariants: (1) every live flow is in exactly one subtable, under its masked key;
// (2) a subtable exists iff it holds at least one flow; (3) EMC entries are hints only
// and are trusted only when their generation matches; (4) installed megaflows do not
// overlap with different actions — guaranteed by the simulator's masks being complete
// and by invalidating before re-installing (checked by `conflicts()` in tests).
//
// Memory is manually managed (raw buffers of trivial structs) so that the lookup path
// does no reference counting, no allocation and no bounds-checked collection access.
// Threading: not thread-safe; owned by the datapath thread.

public struct FlowTableConfiguration: Sendable, Hashable, Codable {
    /// Installing beyond this many flows evicts the least recently used.
    public var maxFlows: Int
    /// Entries in the exact-match cache (rounded up to a power of two); 0 disables it.
    public var exactMatchEntries: Int
    /// Flows unused for this long (ns) are removed by `expire(now:)`.
    public var idleTimeout: UInt64

    public init(maxFlows: Int = 200_000, exactMatchEntries: Int = 8192, idleTimeout: UInt64 = 10_000_000_000) {
        self.maxFlows = maxFlows
        self.exactMatchEntries = exactMatchEntries
        self.idleTimeout = idleTimeout
    }
}

public struct FlowTableCounters: Sendable, Hashable, Codable {
    public var exactHits: UInt64 = 0
    public var megaflowHits: UInt64 = 0
    public var misses: UInt64 = 0
    /// Subtables probed, summed over megaflow hits (divide by megaflowHits for the mean).
    public var subtablesProbedOnHits: UInt64 = 0
    public var installs: UInt64 = 0
    public var invalidations: UInt64 = 0
    public var evictions: UInt64 = 0
    public var expirations: UInt64 = 0

    public init() {}

    public var lookups: UInt64 { exactHits + megaflowHits + misses }
    public var subtablesPerHit: Double {
        megaflowHits == 0 ? 0 : Double(subtablesProbedOnHits) / Double(megaflowHits)
    }
}

/// A read-only copy of one flow, for `flow.list`.
public struct FlowSnapshot: Sendable, Hashable {
    public var index: Int32
    public var match: FlowMatch
    public var actions: [FlowAction]
    public var tags: [FlowTag]
    public var packets: UInt64
    public var bytes: UInt64
    public var installedAt: UInt64
    public var lastUsed: UInt64
}

/// Per-flow state touched on every hit (kept small and separate so a busy working set
/// stays in cache); a trivial type living in raw memory.
@usableFromInline
struct FlowHot {
    @usableFromInline var actions: UnsafeMutablePointer<FlowAction>? = nil
    @usableFromInline var actionCount: Int32 = 0
    @usableFromInline var generation: UInt32 = 0
    @usableFromInline var lastUsed: UInt64 = 0
    @usableFromInline var packets: UInt64 = 0
    @usableFromInline var bytes: UInt64 = 0

    @usableFromInline init() {}
}

/// Per-flow state used only on install, removal and inspection.
@usableFromInline
struct FlowSlot {
    @usableFromInline var key: FlowKey = .zero
    @usableFromInline var subtable: Int32 = -1
    @usableFromInline var live = false
    @usableFromInline var installedAt: UInt64 = 0
    /// Index of the flow's interned program (actions and tags) in `FlowTable.programs`.
    @usableFromInline var program: Int32 = -1

    init() {}
}

/// The actions and tags of one or more flows: flows with the same actions and tags (most
/// flows of one traffic pattern — they differ only in their match) share one record.
struct FlowProgramKey: Hashable {
    var actions: [FlowAction]
    var tags: [FlowTag]
}

struct FlowProgram {
    var actions: UnsafeMutableBufferPointer<FlowAction>
    var tags: UnsafeMutableBufferPointer<FlowTag>
    var key: FlowProgramKey?
    var users = 0
}

@usableFromInline
struct EMCEntry {
    @usableFromInline var key: FlowKey
    @usableFromInline var flow: Int32
    @usableFromInline var generation: UInt32

    @usableFromInline init(key: FlowKey, flow: Int32, generation: UInt32) {
        self.key = key
        self.flow = flow
        self.generation = generation
    }
}

/// An open-addressing (linear probing) hash map from masked keys to flow indexes.
/// Slots hold only a 32-bit hash and the flow index (8 bytes), so the probe arrays of
/// many subtables stay cache-resident; the full key is compared against the flow's own
/// record only when the hash matches.
@usableFromInline
struct KeyMap {
    @usableFromInline struct Slot {
        @usableFromInline var hash: UInt32
        @usableFromInline var flow: Int32   // -1: empty
    }

    @usableFromInline var slots: UnsafeMutablePointer<Slot>
    @usableFromInline var capacity: Int
    @usableFromInline var count = 0

    init(capacity: Int = 16) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(hash: 0, flow: -1), count: capacity)
    }

    func free() { slots.deallocate() }

    @inlinable @inline(__always)
    func find(_ key: FlowKey, hash: UInt64, flows: UnsafeMutablePointer<FlowSlot>) -> Int32 {
        let m = capacity - 1
        let h32 = UInt32(truncatingIfNeeded: hash)
        var i = Int(h32) & m
        while true {
            let s = slots[i]
            if s.flow < 0 { return -1 }
            if s.hash == h32 && flows[Int(s.flow)].key == key { return s.flow }
            i = (i + 1) & m
        }
    }

    /// Inserts `flow` (whose record already holds `key`); the caller has made sure the
    /// key is not present.
    mutating func insert(hash: UInt64, flow: Int32) {
        if (count + 1) * 2 > capacity { grow() }
        place(Slot(hash: UInt32(truncatingIfNeeded: hash), flow: flow))
        count += 1
    }

    private mutating func place(_ slot: Slot) {
        let m = capacity - 1
        var i = Int(slot.hash) & m
        while slots[i].flow >= 0 { i = (i + 1) & m }
        slots[i] = slot
    }

    /// Removes `flow` (backward-shift deletion keeps probe chains intact).
    mutating func remove(hash: UInt64, flow: Int32) {
        let m = capacity - 1
        var i = Int(UInt32(truncatingIfNeeded: hash)) & m
        while true {
            if slots[i].flow < 0 { return }
            if slots[i].flow == flow { break }
            i = (i + 1) & m
        }
        var hole = i
        var j = (i + 1) & m
        while slots[j].flow >= 0 {
            let home = Int(slots[j].hash) & m
            // Move j into the hole if its home is not in (hole, j] cyclically.
            let inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
            if !inRange {
                slots[hole] = slots[j]
                hole = j
            }
            j = (j + 1) & m
        }
        slots[hole].flow = -1
        count -= 1
    }

    private mutating func grow() {
        let old = slots, oldCapacity = capacity
        capacity *= 2
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: Slot(hash: 0, flow: -1), count: capacity)
        for i in 0..<oldCapacity where old[i].flow >= 0 { place(old[i]) }
        old.deallocate()
    }
}

@usableFromInline
struct Subtable {
    @usableFromInline var mask: FlowMask
    @usableFromInline var map: KeyMap
    @usableFromInline var hits: UInt64 = 0
    @usableFromInline var live = true
}

public final class FlowTable {
    public private(set) var configuration: FlowTableConfiguration
    @usableFromInline var _counters = FlowTableCounters()
    public var counters: FlowTableCounters { _counters }

    @usableFromInline var slots: UnsafeMutablePointer<FlowSlot>
    @usableFromInline var hot: UnsafeMutablePointer<FlowHot>
    @usableFromInline var slotCapacity: Int
    @usableFromInline var slotCount = 0        // slots ever used (high-water mark)
    @usableFromInline var freeSlots: [Int32] = []
    public private(set) var liveFlows = 0

    @usableFromInline var emc: UnsafeMutablePointer<EMCEntry>
    @usableFromInline let emcMask: Int
    @usableFromInline let emcEnabled: Bool

    @usableFromInline var subtables: UnsafeMutablePointer<Subtable>
    @usableFromInline var subtableCapacity: Int
    @usableFromInline var subtableCount = 0    // including dead ones awaiting reuse
    /// Live subtable indexes, busiest first.
    @usableFromInline var order: UnsafeMutablePointer<Int32>
    @usableFromInline var orderCount = 0
    @usableFromInline var lookupsSinceRank = 0
    @usableFromInline var emcContention = 0

    private var tagIndex: [FlowTag: [UInt64]] = [:]
    private var programs: [FlowProgram] = []
    private var programIndex: [FlowProgramKey: Int32] = [:]
    private var freePrograms: [Int32] = []
    private var tagRefs = 0
    private var clockHand = 0

    public init(configuration: FlowTableConfiguration = FlowTableConfiguration()) {
        self.configuration = configuration
        slotCapacity = 1024
        slots = .allocate(capacity: slotCapacity)
        slots.initialize(repeating: FlowSlot(), count: slotCapacity)
        hot = .allocate(capacity: slotCapacity)
        hot.initialize(repeating: FlowHot(), count: slotCapacity)
        emcEnabled = configuration.exactMatchEntries > 0
        var n = 1
        while n < max(2, configuration.exactMatchEntries) { n <<= 1 }
        emcMask = n - 1
        emc = .allocate(capacity: n)
        emc.initialize(repeating: EMCEntry(key: .zero, flow: -1, generation: 0), count: n)
        subtableCapacity = 8
        subtables = .allocate(capacity: subtableCapacity)
        order = .allocate(capacity: subtableCapacity)
    }

    deinit {
        for i in 0..<slotCount where slots[i].live { freeBuffers(Int32(i)) }
        slots.deinitialize(count: slotCapacity)
        slots.deallocate()
        hot.deallocate()
        emc.deallocate()
        for i in 0..<subtableCount where subtables[i].live { subtables[i].map.free() }
        subtables.deinitialize(count: subtableCount)
        subtables.deallocate()
        order.deallocate()
    }

    public var subtableCountLive: Int { orderCount }

    /// Changes the flow limit and idle timeout (the EMC size is fixed at creation).
    public func reconfigure(maxFlows: Int, idleTimeout: UInt64) {
        configuration.maxFlows = max(1, maxFlows)
        configuration.idleTimeout = idleTimeout
        while liveFlows > configuration.maxFlows { evictOne() }
    }

    // MARK: lookup (fast path)

    /// Finds the flow for `key`, counting a packet of `bytes` bytes against it.
    /// Returns the flow index, or -1 on a miss.
    @inlinable
    public func lookup(_ key: FlowKey, now: UInt64, bytes: Int = 0) -> Int32 {
        let h = key.hash64
        let i1 = Int(truncatingIfNeeded: h) & emcMask
        let i2 = Int(truncatingIfNeeded: h >> 29) & emcMask
        if emcEnabled {
            var e = emc[i1]
            if e.flow >= 0 && e.key == key && hot[Int(e.flow)].generation == e.generation {
                return hit(e.flow, now: now, bytes: bytes, exact: true)
            }
            e = emc[i2]
            if e.flow >= 0 && e.key == key && hot[Int(e.flow)].generation == e.generation {
                return hit(e.flow, now: now, bytes: bytes, exact: true)
            }
        }
        lookupsSinceRank &+= 1
        if lookupsSinceRank >= 1 << 16 { rankSubtables() }
        var probes: UInt64 = 0
        for o in 0..<orderCount {
            let s = Int(order[o])
            probes &+= 1
            let masked = key.masked(by: subtables[s].mask)
            let f = subtables[s].map.find(masked, hash: masked.hash64, flows: slots)
            if f >= 0 {
                subtables[s].hits &+= 1
                _counters.subtablesProbedOnHits &+= probes
                if emcEnabled {
                    // Take a free (or stale) slot when there is one; otherwise replace a
                    // live entry only once in 16 tries, so a stable working set settles
                    // instead of two colliding keys evicting each other forever.
                    let target: Int
                    if emcSlotIsFree(i1) { target = i1 } else if emcSlotIsFree(i2) { target = i2 } else {
                        emcContention &+= 1
                        target = emcContention & 15 == 0 ? (emcContention & 16 == 0 ? i1 : i2) : -1
                    }
                    if target >= 0 { emc[target] = EMCEntry(key: key, flow: f, generation: hot[Int(f)].generation) }
                }
                return hit(f, now: now, bytes: bytes, exact: false)
            }
        }
        _counters.misses &+= 1
        return -1
    }

    @inlinable @inline(__always)
    func emcSlotIsFree(_ i: Int) -> Bool {
        let e = emc[i]
        return e.flow < 0 || hot[Int(e.flow)].generation != e.generation
    }

    @inlinable @inline(__always)
    func hit(_ f: Int32, now: UInt64, bytes: Int, exact: Bool) -> Int32 {
        let p = hot + Int(f)
        p.pointee.lastUsed = now
        p.pointee.packets &+= 1
        p.pointee.bytes &+= UInt64(truncatingIfNeeded: bytes)
        if exact { _counters.exactHits &+= 1 } else { _counters.megaflowHits &+= 1 }
        return f
    }

    /// The actions of flow `f` (valid until the flow is removed).
    @inlinable
    public func actions(of f: Int32) -> UnsafeBufferPointer<FlowAction> {
        UnsafeBufferPointer(start: hot[Int(f)].actions, count: Int(hot[Int(f)].actionCount))
    }

    // MARK: install and remove (slow path)

    /// Installs a megaflow. An existing flow with the same match is replaced.
    @discardableResult
    public func install(_ match: FlowMatch, actions: [FlowAction], tags: [FlowTag], now: UInt64,
                        packets: UInt64 = 0, bytes: UInt64 = 0) -> Int32 {
        let s = subtableIndex(for: match.mask)
        let hash = match.key.hash64
        let existing = subtables[s].map.find(match.key, hash: hash, flows: slots)
        if existing >= 0 { remove(existing) }
        if liveFlows >= configuration.maxFlows { evictOne() }
        // The eviction may have emptied (and freed) the subtable; look it up again.
        let st = subtableIndex(for: match.mask)
        let f = allocateSlot()
        let p = slots + Int(f)
        p.pointee.key = match.key
        p.pointee.subtable = Int32(st)
        p.pointee.live = true
        p.pointee.installedAt = now
        let h = hot + Int(f)
        h.pointee.lastUsed = now
        h.pointee.packets = packets
        h.pointee.bytes = bytes
        // A canonical tag order (by value, duplicates dropped), so equal tag sets intern to
        // one program. The simulator already returns its tags sorted, so this is one pass.
        var uniqueTags = tags
        if !uniqueTags.isEmpty {
            var sorted = true
            for i in 1..<uniqueTags.count where uniqueTags[i - 1].rawValue > uniqueTags[i].rawValue { sorted = false; break }
            if !sorted { uniqueTags.sort { $0.rawValue < $1.rawValue } }
            var w = 1
            for r in 1..<uniqueTags.count where uniqueTags[r] != uniqueTags[w - 1] {
                uniqueTags[w] = uniqueTags[r]
                w += 1
            }
            uniqueTags.removeLast(uniqueTags.count - w)
        }
        let program = intern(FlowProgramKey(actions: actions, tags: uniqueTags))
        h.pointee.actions = programs[Int(program)].actions.baseAddress
        h.pointee.actionCount = Int32(actions.count)
        p.pointee.program = program
        subtables[st].map.insert(hash: hash, flow: f)
        let ref = UInt64(UInt32(bitPattern: f)) << 32 | UInt64(h.pointee.generation)
        for tag in uniqueTags { tagIndex[tag, default: []].append(ref) }
        tagRefs += uniqueTags.count
        liveFlows += 1
        _counters.installs &+= 1
        return f
    }

    private func allocateSlot() -> Int32 {
        if let f = freeSlots.popLast() { return f }
        if slotCount == slotCapacity {
            let newCapacity = slotCapacity * 2
            let fresh = UnsafeMutablePointer<FlowSlot>.allocate(capacity: newCapacity)
            fresh.moveInitialize(from: slots, count: slotCapacity)
            (fresh + slotCapacity).initialize(repeating: FlowSlot(), count: newCapacity - slotCapacity)
            slots.deallocate()
            slots = fresh
            let freshHot = UnsafeMutablePointer<FlowHot>.allocate(capacity: newCapacity)
            freshHot.moveInitialize(from: hot, count: slotCapacity)
            (freshHot + slotCapacity).initialize(repeating: FlowHot(), count: newCapacity - slotCapacity)
            hot.deallocate()
            hot = freshHot
            slotCapacity = newCapacity
        }
        slotCount += 1
        return Int32(slotCount - 1)
    }

    private func subtableIndex(for mask: FlowMask) -> Int {
        for o in 0..<orderCount where subtables[Int(order[o])].mask == mask { return Int(order[o]) }
        // Reuse a dead subtable record or append one.
        var idx = -1
        for i in 0..<subtableCount where !subtables[i].live { idx = i; break }
        if idx < 0 {
            if subtableCount == subtableCapacity {
                let newCapacity = subtableCapacity * 2
                let fresh = UnsafeMutablePointer<Subtable>.allocate(capacity: newCapacity)
                fresh.moveInitialize(from: subtables, count: subtableCount)
                subtables.deallocate()
                subtables = fresh
                let freshOrder = UnsafeMutablePointer<Int32>.allocate(capacity: newCapacity)
                freshOrder.moveInitialize(from: order, count: orderCount)
                order.deallocate()
                order = freshOrder
                subtableCapacity = newCapacity
            }
            idx = subtableCount
            subtableCount += 1
            (subtables + idx).initialize(to: Subtable(mask: mask, map: KeyMap()))
        } else {
            subtables[idx] = Subtable(mask: mask, map: KeyMap())
        }
        order[orderCount] = Int32(idx)
        orderCount += 1
        return idx
    }

    /// The program record for `key`, shared with every flow that has the same one.
    private func intern(_ key: FlowProgramKey) -> Int32 {
        if let i = programIndex[key] {
            programs[Int(i)].users += 1
            return i
        }
        let a = UnsafeMutableBufferPointer<FlowAction>.allocate(capacity: max(1, key.actions.count))
        _ = a.initialize(from: key.actions)
        let t = UnsafeMutableBufferPointer<FlowTag>.allocate(capacity: max(1, key.tags.count))
        _ = t.initialize(from: key.tags)
        let record = FlowProgram(actions: a, tags: t, key: key, users: 1)
        let i: Int32
        if let free = freePrograms.popLast() { i = free; programs[Int(i)] = record }
        else { i = Int32(programs.count); programs.append(record) }
        programIndex[key] = i
        return i
    }

    /// Tags of flow `f`.
    private func tags(of f: Int) -> UnsafeMutableBufferPointer<FlowTag> {
        let p = slots[f].program
        guard p >= 0 else { return UnsafeMutableBufferPointer(start: nil, count: 0) }
        return UnsafeMutableBufferPointer(rebasing: programs[Int(p)].tags[0..<programs[Int(p)].key!.tags.count])
    }

    private func freeBuffers(_ f: Int32) {
        hot[Int(f)].actions = nil
        hot[Int(f)].actionCount = 0
        let p = Int(slots[Int(f)].program)
        slots[Int(f)].program = -1
        guard p >= 0 else { return }
        programs[p].users -= 1
        if programs[p].users == 0 {
            programIndex[programs[p].key!] = nil
            programs[p].actions.deallocate()
            programs[p].tags.deallocate()
            programs[p].key = nil
            freePrograms.append(Int32(p))
        }
    }

    /// Removes flow `f`.
    private func remove(_ f: Int32) {
        let p = slots + Int(f)
        guard p.pointee.live else { return }
        let s = Int(p.pointee.subtable)
        subtables[s].map.remove(hash: p.pointee.key.hash64, flow: f)
        if subtables[s].map.count == 0 {
            subtables[s].map.free()
            subtables[s].live = false
            for o in 0..<orderCount where order[o] == Int32(s) {
                (order + o).update(from: order + o + 1, count: orderCount - o - 1)
                orderCount -= 1
                break
            }
        }
        freeBuffers(f)
        p.pointee.live = false
        hot[Int(f)].generation &+= 1
        p.pointee.subtable = -1
        freeSlots.append(f)
        liveFlows -= 1
    }

    private func evictOne() {
        guard liveFlows > 0, slotCount > 0 else { return }
        var victim: Int32 = -1
        var oldest = UInt64.max
        var scanned = 0, seen = 0
        while seen < 32 && scanned < slotCount {
            clockHand = (clockHand + 1) % slotCount
            scanned += 1
            if slots[clockHand].live {
                seen += 1
                if hot[clockHand].lastUsed < oldest {
                    oldest = hot[clockHand].lastUsed
                    victim = Int32(clockHand)
                }
            }
        }
        if victim >= 0 {
            remove(victim)
            _counters.evictions &+= 1
        }
    }

    /// Re-sorts subtables so the most hit are probed first.
    public func rankSubtables() {
        lookupsSinceRank = 0
        var idx = (0..<orderCount).map { order[$0] }
        idx.sort { subtables[Int($0)].hits > subtables[Int($1)].hits }
        for (o, s) in idx.enumerated() {
            order[o] = s
            subtables[Int(s)].hits /= 2   // decay, so ranking follows current traffic
        }
    }

    // MARK: invalidation and expiry

    /// Removes every flow carrying any of `tags`. Returns how many were removed.
    @discardableResult
    public func invalidate<S: Sequence>(tags: S) -> Int where S.Element == FlowTag {
        var removed = 0
        for tag in tags {
            guard let refs = tagIndex.removeValue(forKey: tag) else { continue }
            tagRefs -= refs.count
            for ref in refs {
                let f = Int32(bitPattern: UInt32(truncatingIfNeeded: ref >> 32))
                let gen = UInt32(truncatingIfNeeded: ref)
                if slots[Int(f)].live && hot[Int(f)].generation == gen {
                    remove(f)
                    removed += 1
                }
            }
        }
        _counters.invalidations &+= UInt64(removed)
        return removed
    }

    /// Removes every flow.
    public func removeAll() {
        for i in 0..<slotCount where slots[i].live { remove(Int32(i)) }
        tagIndex.removeAll()
        tagRefs = 0
    }

    /// Removes flows idle since before `now - idleTimeout`. Returns how many.
    @discardableResult
    public func expire(now: UInt64) -> Int {
        var removed = 0
        let timeout = configuration.idleTimeout
        for i in 0..<slotCount where slots[i].live && hot[i].lastUsed &+ timeout <= now {
            remove(Int32(i))
            removed += 1
        }
        _counters.expirations &+= UInt64(removed)
        compactTagIndex()
        rankSubtables()
        return removed
    }

    /// Drops references to removed flows from the tag index when they dominate it.
    private func compactTagIndex() {
        guard tagRefs > 1024, tagRefs > 4 * max(1, liveTagRefs) else { return }
        var fresh: [FlowTag: [UInt64]] = [:]
        var n = 0
        for i in 0..<slotCount where slots[i].live {
            let ref = UInt64(UInt32(i)) << 32 | UInt64(hot[i].generation)
            for tag in tags(of: i) { fresh[tag, default: []].append(ref); n += 1 }
        }
        tagIndex = fresh
        tagRefs = n
    }

    private var liveTagRefs: Int {
        var n = 0
        for i in 0..<slotCount where slots[i].live { n += tags(of: i).count }
        return n
    }

    // MARK: inspection

    public func snapshot(limit: Int = .max) -> [FlowSnapshot] {
        var out: [FlowSnapshot] = []
        for i in 0..<slotCount where slots[i].live {
            if out.count >= limit { break }
            let s = slots[i], h = hot[i]
            let mask = subtables[Int(s.subtable)].mask
            out.append(FlowSnapshot(index: Int32(i), match: FlowMatch(key: s.key, mask: mask), actions: Array(actions(of: Int32(i))),
                                    tags: Array(tags(of: i)), packets: h.packets, bytes: h.bytes,
                                    installedAt: s.installedAt, lastUsed: h.lastUsed))
        }
        return out
    }

    /// Pairs of live flows whose matches overlap but whose actions differ (must be empty).
    public func conflicts() -> [(Int32, Int32)] {
        let all = snapshot()
        var out: [(Int32, Int32)] = []
        for i in 0..<all.count {
            for j in (i + 1)..<all.count where all[i].match.overlaps(all[j].match) && all[i].actions != all[j].actions {
                out.append((all[i].index, all[j].index))
            }
        }
        return out
    }

    /// Approximate bytes held by the table (slots, EMC, subtables, actions, tags, index).
    public var approximateMemory: Int {
        var bytes = slotCapacity * (MemoryLayout<FlowSlot>.stride + MemoryLayout<FlowHot>.stride)
            + (emcMask + 1) * MemoryLayout<EMCEntry>.stride
        for o in 0..<orderCount { bytes += subtables[Int(order[o])].map.capacity * MemoryLayout<KeyMap.Slot>.stride }
        for p in programs where p.key != nil {
            // The two buffers, and the key's two arrays plus its index entry.
            bytes += 2 * (p.actions.count * MemoryLayout<FlowAction>.stride + p.tags.count * MemoryLayout<FlowTag>.stride + 64)
        }
        bytes += programs.count * MemoryLayout<FlowProgram>.stride
        bytes += tagRefs * 8 + tagIndex.count * 48
        return bytes
    }
}
