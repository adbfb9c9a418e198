/// A hash table from 64-bit integer keys (ITCH order references, match numbers, short symbols packed into 8 bytes)
/// for the per-message path.
///
/// Swift's Dictionary hashes every key with seeded SipHash, which was a fifth of feedd's time per ITCH message. Keys
/// here come from the venue, are mostly consecutive, and need no protection against chosen collisions, so a
/// multiplicative (Fibonacci) hash spreads them well enough. Open addressing with linear probing keeps a lookup in
/// one or two cache lines; deletion shifts followers back instead of leaving tombstones, so a table that sees
/// millions of adds and deletes a day never degrades. It grows (allocating) at half full and never shrinks, so a
/// steady market allocates nothing.
///
/// Everything is `@inlinable` so that feedd's and plantd's modules specialize it for their value types: called
/// generically across the module boundary, every lookup asked the runtime for the generic metadata of its slots
/// (`swift_getGenericMetadata`), which doubled feedd's time per ITCH message when the table moved here.
public struct IntegerKeyTable<Value> {
    @usableFromInline
    struct Slot {
        @usableFromInline var key: UInt64
        @usableFromInline var value: Value

        @inlinable
        init(key: UInt64, value: Value) {
            self.key = key
            self.value = value
        }
    }

    @usableFromInline var slots: [Slot?]
    @usableFromInline var mask: Int
    @usableFromInline var shift: UInt64
    @usableFromInline var storedCount = 0

    @inlinable
    public var count: Int { storedCount }

    /// A table that holds `minimumCapacity` keys before it first grows.
    @inlinable
    public init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity *= 2 }
        slots = Array(repeating: nil, count: capacity)
        mask = capacity - 1
        shift = UInt64(64 - capacity.trailingZeroBitCount)
    }

    @inlinable
    public var isEmpty: Bool { storedCount == 0 }

    /// Keys the table holds before it next grows.
    @inlinable
    public var capacity: Int { slots.count / 2 }

    @inlinable
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
    @inlinable @discardableResult
    public mutating func update(_ key: UInt64, _ body: (inout Value) -> Void) -> Bool {
        guard let index = find(key) else { return false }
        body(&slots[index]!.value)
        return true
    }

    @inlinable @discardableResult
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
        storedCount -= 1
        return removed
    }

    @inlinable
    public mutating func removeAll() {
        for index in slots.indices { slots[index] = nil }
        storedCount = 0
    }

    /// Calls `body` with every key and its value, in no particular order, letting it change the value in place.
    @inlinable
    public mutating func updateEach(_ body: (UInt64, inout Value) -> Void) {
        for index in slots.indices where slots[index] != nil {
            body(slots[index]!.key, &slots[index]!.value)
        }
    }

    @inlinable
    func homeIndex(_ key: UInt64) -> Int { Self.homeIndex(key, shift: shift) }

    /// Fibonacci hashing: the key times 2^64 / golden ratio, its top bits (64 - `shift` of them) index the slots.
    @inlinable
    static func homeIndex(_ key: UInt64, shift: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    @inlinable
    func find(_ key: UInt64) -> Int? {
        var index = homeIndex(key)
        while let slot = slots[index] {
            if slot.key == key { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    @inlinable
    mutating func insert(_ key: UInt64, _ value: Value) {
        var index = homeIndex(key)
        while let slot = slots[index] {
            if slot.key == key {
                slots[index]!.value = value
                return
            }
            index = (index + 1) & mask
        }
        slots[index] = Slot(key: key, value: value)
        storedCount += 1
        if storedCount * 2 > slots.count { grow() }
    }

    /// Doubles the table. Every key is placed straight into the new slots (each is known to be there once): the
    /// growth holds the caller's thread for as long as it takes to move every key, which is what a table made for
    /// its load at the start (`minimumCapacity`) avoids. With feedd's 24-byte order slots on the project's machine:
    /// 1 ms at 16 000 keys, 30 ms at 262 000, 137 ms at a million (4, 59 and 238 ms when each key went through
    /// `insert`).
    @usableFromInline
    mutating func grow() {
        var grown = [Slot?](repeating: nil, count: slots.count * 2)
        let grownMask = grown.count - 1
        let grownShift = shift - 1
        grown.withUnsafeMutableBufferPointer { target in
            slots.withUnsafeBufferPointer { source in
                for case let slot? in source {
                    var index = Self.homeIndex(slot.key, shift: grownShift)
                    while target[index] != nil { index = (index + 1) & grownMask }
                    target[index] = slot
                }
            }
        }
        slots = grown
        mask = grownMask
        shift = grownShift
    }
}
