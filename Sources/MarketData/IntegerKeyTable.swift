/// A hash table from 64-bit integer keys (ITCH order references, match numbers, short symbols packed into 8 bytes)
/// for the per-message path.
///
/// Swift's Dictionary hashes every key with seeded SipHash, which was a fifth of feedd's time per ITCH message. Keys
/// here come from the venue, are mostly consecutive, and need no protection against chosen collisions, so a
/// multiplicative (Fibonacci) hash spreads them well enough. Open addressing with linear probing keeps a lookup in
/// one or two cache lines; deletion shifts followers back instead of leaving tombstones, so a table that sees
/// millions of adds and deletes a day never degrades. It grows (allocating) at half full and never shrinks, so a
/// steady market allocates nothing.
public struct IntegerKeyTable<Value> {
    private struct Slot {
        var key: UInt64
        var value: Value
    }

    private var slots: [Slot?]
    private var mask: Int
    private var shift: UInt64
    public private(set) var count = 0

    /// A table that holds `minimumCapacity` keys before it first grows.
    public init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity *= 2 }
        slots = Array(repeating: nil, count: capacity)
        mask = capacity - 1
        shift = UInt64(64 - capacity.trailingZeroBitCount)
    }

    public var isEmpty: Bool { count == 0 }

    public subscript(key: UInt64) -> Value? {
        get {
            guard let index = find(key) else { return nil }
            return slots[index]!.value
        }
        set {
            if let newValue { insert(key, newValue) } else { removeValue(forKey: key) }
        }
    }

    /// Changes the value of an existing key in place; returns false (and changes nothing) when the key is absent.
    @discardableResult
    public mutating func update(_ key: UInt64, _ body: (inout Value) -> Void) -> Bool {
        guard let index = find(key) else { return false }
        body(&slots[index]!.value)
        return true
    }

    @discardableResult
    public mutating func removeValue(forKey key: UInt64) -> Value? {
        guard var hole = find(key) else { return nil }
        let removed = slots[hole]!.value
        // Backward-shift deletion: every follower in the probe run that may live in the hole moves into it, so that
        // no lookup ever stops early at a gap its key probed past.
        var next = (hole + 1) & mask
        while let follower = slots[next] {
            let home = homeIndex(follower.key)
            if (next &- home) & mask >= (next &- hole) & mask {
                slots[hole] = follower
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = nil
        count -= 1
        return removed
    }

    public mutating func removeAll() {
        for index in slots.indices { slots[index] = nil }
        count = 0
    }

    private func homeIndex(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    private func find(_ key: UInt64) -> Int? {
        var index = homeIndex(key)
        while let slot = slots[index] {
            if slot.key == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    private mutating func insert(_ key: UInt64, _ value: Value) {
        var index = homeIndex(key)
        while let slot = slots[index] {
            if slot.key == key {
                slots[index]!.value = value
                return
            }
            index = (index + 1) & mask
        }
        slots[index] = Slot(key: key, value: value)
        count += 1
        if count * 2 > slots.count { grow() }
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: nil, count: old.count * 2)
        mask = slots.count - 1
        shift -= 1
        count = 0
        for case let slot? in old { insert(slot.key, slot.value) }
    }
}
