import Glibc

/// A hash table from 64-bit integer keys (ITCH order references, match numbers, short symbols packed into 8 bytes)
/// for the per-message path.
///
/// Swift's Dictionary hashes every key with seeded SipHash, which was a fifth of feedd's time per ITCH message. Keys
/// here come from the venue, are mostly consecutive, and need no protection against chosen collisions, so a
/// multiplicative (Fibonacci) hash spreads them well enough. Open addressing with linear probing keeps a lookup in
/// one or two cache lines; deletion shifts followers back instead of leaving tombstones, so a table that sees
/// millions of adds and deletes a day never degrades. It grows at half full and never shrinks, so a steady market
/// allocates nothing.
///
/// Growing never holds the caller for long. Moving every key into the doubled slots at once held feedd's thread
/// for 243 ms at a million orders (datagrams queue meanwhile, and ticks go out late); now the doubled slots are
/// mapped zeroed (the kernel maps their pages as they are first written) and the old slots are drained a few at a
/// time by each insert that follows, while lookups look in both. The old slots are emptied long before the new
/// ones fill: they hold half their count of keys when the table grows, each insert drains `drainedPerInsert` of
/// them, and the next growth is at least four times that many inserts away. Values are plain bytes
/// (`BitwiseCopyable`), so slots are zeroed, copied and given back as memory.
///
/// Everything is `@inlinable` so that feedd's and plantd's modules specialize it for their value types: called
/// generically across the module boundary, every lookup asked the runtime for the generic metadata of its slots
/// (`swift_getGenericMetadata`), which doubled feedd's time per ITCH message when the table moved here.
public struct IntegerKeyTable<Value: BitwiseCopyable> {
    @usableFromInline
    struct Slot {
        @usableFromInline var key: UInt64
        @usableFromInline var value: Value
        /// `SlotState`'s raw value; 0 (empty) is what a fresh mapping reads as.
        @usableFromInline var state: UInt8

        @inlinable
        init(key: UInt64, value: Value, state: UInt8) {
            self.key = key
            self.value = value
            self.state = state
        }
    }

    @usableFromInline
    enum SlotState {
        @inlinable static var empty: UInt8 { 0 }
        @inlinable static var holding: UInt8 { 1 }
        /// In the slots being drained only: the key moved to the new slots or was removed. Lookups probe past it,
        /// so that the old slots' probe runs stay whole until they are freed.
        @inlinable static var vacated: UInt8 { 2 }
    }

    /// One block of slots, mapped from the kernel zeroed (its pages are mapped as they are first written) and
    /// unmapped when the last table holding it goes. A class only for that and for copy-on-write: a copied table
    /// shares its slots until either side changes. Not `malloc`: freeing tens of megabytes of written pages at once
    /// takes milliseconds (5 ms for 48 MB here; 0.3 ms even after their pages were given back with `madvise`, the
    /// kernel still walking their page tables), so drained slots are unmapped a few pages at a time
    /// (`returnPages`), which needs a mapping of its own.
    @usableFromInline
    final class SlotMemory {
        @usableFromInline let base: UnsafeMutablePointer<Slot>
        @usableFromInline let count: Int
        let mappedBytes: Int
        /// Asked of the system once per block, not at every drain step.
        let pageBytes = Int(sysconf(Int32(_SC_PAGESIZE)))
        /// Bytes from the start already given back to the kernel.
        var returnedBytes = 0

        /// Drained pages go back in runs of at least this many bytes: one `munmap` per few hundred inserts.
        static var returnedAtOnce: Int { 64 * 1024 }

        @usableFromInline
        init(zeroedCount count: Int) {
            mappedBytes = (count * MemoryLayout<Slot>.stride + pageBytes - 1) / pageBytes * pageBytes
            let mapped = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let mapped, mapped != UnsafeMutableRawPointer(bitPattern: -1) else {
                fatalError("IntegerKeyTable: no memory for \(count) slots (errno \(errno))")
            }
            base = mapped.bindMemory(to: Slot.self, capacity: count)
            self.count = count
        }

        @usableFromInline
        convenience init(copying other: SlotMemory) {
            self.init(zeroedCount: other.count)
            // Slots in pages already given back are empty (drained), as they are in the fresh mapping.
            let firstMapped = (other.returnedBytes + MemoryLayout<Slot>.stride - 1) / MemoryLayout<Slot>.stride
            (base + firstMapped).update(from: other.base + firstMapped, count: count - firstMapped)
        }

        /// Unmaps the pages wholly below slot `index`, which no lookup reads again (`findDraining`).
        @usableFromInline
        func returnPages(below index: Int) {
            let end = index * MemoryLayout<Slot>.stride / pageBytes * pageBytes
            guard end - returnedBytes >= Self.returnedAtOnce else { return }
            munmap(UnsafeMutableRawPointer(base) + returnedBytes, end - returnedBytes)
            returnedBytes = end
        }

        deinit { munmap(UnsafeMutableRawPointer(base) + returnedBytes, mappedBytes - returnedBytes) }
    }

    /// A power-of-two count of slots with linear probing.
    @usableFromInline
    struct Slots {
        @usableFromInline var memory: SlotMemory
        /// `memory.base`, kept here so that a lookup reads no class field.
        @usableFromInline var base: UnsafeMutablePointer<Slot>
        @usableFromInline let mask: Int
        @usableFromInline let shift: UInt64

        @inlinable
        init(count: Int) {
            memory = SlotMemory(zeroedCount: count)
            base = memory.base
            mask = count - 1
            shift = UInt64(64 - count.trailingZeroBitCount)
        }

        @inlinable
        var count: Int { mask + 1 }

        /// Fibonacci hashing: the key times 2^64 / golden ratio, its top bits (64 - `shift` of them) index the slots.
        @inlinable
        func homeIndex(_ key: UInt64) -> Int {
            Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
        }

        @inlinable
        func find(_ key: UInt64) -> Int? {
            var index = homeIndex(key)
            while base[index].state != SlotState.empty {
                if base[index].key == key && base[index].state == SlotState.holding { return index }
                index = (index + 1) & mask
            }
            return nil
        }

        /// `find` in slots being drained, whose slots up to `lastEmptyDrained` may be unmapped. A key still there
        /// lies at or after `drainedUpTo`, and its probe run from its home has no empty slot, so its home is after
        /// the empty slot `lastEmptyDrained` and its run does not wrap past the end (it would cross that slot): a
        /// probe that starts at or before `lastEmptyDrained`, or wraps, is for an absent key.
        @inlinable
        func findDraining(_ key: UInt64, lastEmptyDrained: Int) -> Int? {
            var index = homeIndex(key)
            if index <= lastEmptyDrained { return nil }
            while base[index].state != SlotState.empty {
                if base[index].key == key && base[index].state == SlotState.holding { return index }
                index += 1
                if index == count {
                    if lastEmptyDrained >= 0 { return nil }
                    index = 0
                }
            }
            return nil
        }

        /// Puts a key known to be absent into the first free slot of its probe run.
        @inlinable
        func place(_ key: UInt64, _ value: Value) {
            var index = homeIndex(key)
            while base[index].state != SlotState.empty { index = (index + 1) & mask }
            base[index] = Slot(key: key, value: value, state: SlotState.holding)
        }

        /// Backward-shift deletion: every follower in the probe run that may live in the hole moves into it, so that
        /// no lookup ever stops early at a gap its key probed past. Only for slots without vacated ones.
        @inlinable
        func remove(at removed: Int) {
            var hole = removed
            var next = (hole + 1) & mask
            while base[next].state != SlotState.empty {
                let home = homeIndex(base[next].key)
                if (next &- home) & mask >= (next &- hole) & mask {
                    base[hole] = base[next]
                    hole = next
                }
                next = (next + 1) & mask
            }
            base[hole].state = SlotState.empty
        }

        @inlinable
        mutating func makeUnique() {
            if !isKnownUniquelyReferenced(&memory) {
                memory = SlotMemory(copying: memory)
                base = memory.base
            }
        }
    }

    /// Slots of the table before its last growth, while they still hold keys; nil when drained.
    @usableFromInline var draining: Slots?
    /// Every slot of `draining` below this has been drained.
    @usableFromInline var drainedUpTo = 0
    /// The last slot below `drainedUpTo` that was empty when drained, -1 for none. No key left in `draining` has its
    /// home at or below it (a probe run never crosses an empty slot), so no lookup needs the slots before it and
    /// their pages can go back to the kernel.
    @usableFromInline var lastEmptyDrained = -1
    @usableFromInline var slots: Slots
    @usableFromInline var storedCount = 0

    /// Slots of the old table each insert drains after a growth: with the old slots half full, about half this many
    /// keys move per insert (with the new slots' first-touch page faults, about 0.7 us an insert at a million keys),
    /// and the old slots are empty after an eighth of their count of inserts, a quarter of the way to the next growth.
    @inlinable static var drainedPerInsert: Int { 8 }

    @inlinable
    public var count: Int { storedCount }

    /// A table that holds `minimumCapacity` keys before it first grows. Its slots are mapped as they are first
    /// written, so a table made big costs memory only as it fills.
    @inlinable
    public init(minimumCapacity: Int = 16) {
        var capacity = 16
        while capacity < minimumCapacity * 2 { capacity *= 2 }
        slots = Slots(count: capacity)
    }

    @inlinable
    public var isEmpty: Bool { storedCount == 0 }

    /// Keys the table holds before it next grows.
    @inlinable
    public var capacity: Int { slots.count / 2 }

    /// True while the slots from before the last growth still hold keys (for tests).
    var isDraining: Bool { draining != nil }

    @inlinable
    public subscript(key: UInt64) -> Value? {
        get {
            if let index = slots.find(key) { return slots.base[index].value }
            if let draining, let index = drainingIndex(of: key) { return draining.base[index].value }
            return nil
        }
        set {
            if let newValue { insert(key, newValue) } else { removeValue(forKey: key) }
        }
    }

    /// Changes the value of an existing key in place; returns false (and changes nothing) when the key is absent.
    @inlinable @discardableResult
    public mutating func update(_ key: UInt64, _ body: (inout Value) -> Void) -> Bool {
        makeUnique()
        if let index = slots.find(key) {
            body(&slots.base[index].value)
            return true
        }
        if let draining, let index = drainingIndex(of: key) {
            body(&draining.base[index].value)
            return true
        }
        return false
    }

    @inlinable @discardableResult
    public mutating func removeValue(forKey key: UInt64) -> Value? {
        makeUnique()
        if let index = slots.find(key) {
            let removed = slots.base[index].value
            slots.remove(at: index)
            storedCount -= 1
            return removed
        }
        if let draining, let index = drainingIndex(of: key) {
            draining.base[index].state = SlotState.vacated
            storedCount -= 1
            return draining.base[index].value
        }
        return nil
    }

    @inlinable
    public mutating func removeAll() {
        draining = nil
        drainedUpTo = 0
        lastEmptyDrained = -1
        slots = Slots(count: slots.count)
        storedCount = 0
    }

    /// Calls `body` with every key and its value, in no particular order, letting it change the value in place.
    @inlinable
    public mutating func updateEach(_ body: (UInt64, inout Value) -> Void) {
        makeUnique()
        func visit(_ table: Slots, from first: Int) {
            for index in first..<table.count where table.base[index].state == SlotState.holding {
                body(table.base[index].key, &table.base[index].value)
            }
        }
        visit(slots, from: 0)
        if let draining { visit(draining, from: drainedUpTo) }
    }

    @inlinable
    func drainingIndex(of key: UInt64) -> Int? {
        draining?.findDraining(key, lastEmptyDrained: lastEmptyDrained)
    }

    @inlinable
    mutating func makeUnique() {
        slots.makeUnique()
        draining?.makeUnique()
    }

    @inlinable
    mutating func insert(_ key: UInt64, _ value: Value) {
        makeUnique()
        if let index = slots.find(key) {
            slots.base[index].value = value
            return
        }
        if let draining, let index = drainingIndex(of: key) {
            draining.base[index].value = value
            return
        }
        slots.place(key, value)
        storedCount += 1
        if draining != nil { drain(Self.drainedPerInsert) }
        if storedCount * 2 > slots.count { grow() }
    }

    /// Moves the keys of the next `count` old slots into the current ones; frees the old slots when all are drained.
    @inlinable
    mutating func drain(_ count: Int) {
        guard let old = draining else { return }
        let end = min(drainedUpTo + count, old.count)
        for index in drainedUpTo..<end {
            switch old.base[index].state {
            case SlotState.holding:
                slots.place(old.base[index].key, old.base[index].value)
                old.base[index].state = SlotState.vacated
            case SlotState.empty:
                lastEmptyDrained = index
            default:
                break
            }
        }
        drainedUpTo = end
        if end == old.count {
            draining = nil
        } else if lastEmptyDrained > 0 {
            old.memory.returnPages(below: lastEmptyDrained)
        }
    }

    /// Doubles the table: the current slots become the ones being drained (finishing an earlier drain first, which
    /// the pace of draining makes never happen in practice) and fresh zeroed slots take the inserts.
    @inlinable
    mutating func grow() {
        if let old = draining { drain(old.count) }
        draining = slots
        drainedUpTo = 0
        lastEmptyDrained = -1
        slots = Slots(count: slots.count * 2)
    }
}
