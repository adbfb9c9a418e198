/// The last `capacity` published ticks of a stream, as the bytes that went out (topic and payload), by stream_seq:
/// what the replay ROUTERs serve so that a restarted plant or a consumer with a gap can catch up.
///
/// The ticks' bytes lie one after the other in one circular arena, and a slot per stream_seq says where: storing a
/// tick is two copies and no allocation. The arena is made at once for `capacity` ticks of `expectedTickBytes`,
/// uninitialized: the kernel maps its pages as they are first written, so memory is taken as ticks come, and no tick
/// waits for the arena to grow. Growing while ticks flow copies every tick kept into a new arena: at a few tens of
/// megabytes that held the publishing thread for 10-30 ms, most of the chain's p99 (docs/performance.md). It still
/// doubles when ticks run larger than expected, so the ring always keeps the last `capacity` ticks whatever their
/// sizes.
public struct TickRing {
    public let capacity: Int

    private struct Slot {
        var offset = 0
        var topicLength: Int32 = 0
        var payloadLength: Int32 = 0
        /// A number the publisher keeps with each tick: plantd its symbol_seq, so that one symbol can be replayed.
        var tag: UInt64 = 0

        var length: Int { Int(topicLength) + Int(payloadLength) }
    }

    private var slots: [Slot]
    /// For each stream_seq, the stream_seq of the tick before it in the same chain (plantd: the same symbol), 0 for
    /// none; empty unless the ring was made `linked`. A symbol's replay walks its own ticks back from the newest
    /// instead of every tick kept: a restarted edged's clients resume hundreds of symbols at once, and each walk of a
    /// million ticks held plantd's stream for milliseconds.
    private var links: [UInt64] = []
    private var arena: [UInt8] = []
    /// Where the next tick's bytes go.
    private var writeOffset = 0
    /// How many ticks are kept: `lastSequence - storedCount + 1 ... lastSequence`.
    private var storedCount = 0
    /// stream_seq of the newest tick stored (0: none yet).
    public private(set) var lastSequence: UInt64 = 0

    /// Slots are a power of two (at least `capacity`), so that a stream_seq finds its slot with a mask: a division
    /// per tick showed in plantd's profile.
    private let slotMask: UInt64

    /// Bytes a tick takes (topic and payload) that the arena is first made for: a TRADE or QUOTE with its stamps takes
    /// about 100, a BOOK with ten levels a side about 300.
    public static let expectedTickBytes = 192

    public init(capacity: Int, expectedTickBytes: Int = TickRing.expectedTickBytes, linked: Bool = false) {
        self.capacity = max(capacity, 1)
        var slotCount = 1
        while slotCount < self.capacity { slotCount <<= 1 }
        slotMask = UInt64(slotCount - 1)
        slots = Array(repeating: Slot(), count: slotCount)
        if linked { links = Array(repeating: 0, count: slotCount) }
        arena = Self.uninitializedArena(count: max(1024, self.capacity * max(expectedTickBytes, 1)))
    }

    /// An arena whose bytes are not written here: only what `store` writes is ever read, and pages never written are
    /// never touched (a large allocation comes straight from the kernel, mapped as it is first written).
    private static func uninitializedArena(count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { _, initializedCount in initializedCount = count }
    }

    /// The oldest stream_seq still stored (0 when none is).
    public var firstSequence: UInt64 {
        storedCount == 0 ? 0 : lastSequence - UInt64(storedCount) + 1
    }

    /// Bytes the arena spans (made for `capacity` ticks, grown when they run larger, never shrunk): at most what the
    /// ring costs in memory beside its slots (pages not yet written take none).
    public var arenaBytes: Int { arena.count }

    /// Stores the tick published with `sequence`. A sequence that does not follow the previous one starts the ring
    /// afresh: what came before cannot be served as a stream with it.
    public mutating func store(
        sequence: UInt64, topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, tag: UInt64 = 0
    ) {
        if storedCount > 0 && sequence != lastSequence &+ 1 { storedCount = 0 }
        if storedCount == capacity { storedCount -= 1 }  // the oldest tick leaves
        let length = topic.count + payload.count
        let offset = place(length)
        arena.withUnsafeMutableBytes { bytes in
            if let base = topic.baseAddress { (bytes.baseAddress! + offset).copyMemory(from: base, byteCount: topic.count) }
            if let base = payload.baseAddress {
                (bytes.baseAddress! + offset + topic.count).copyMemory(from: base, byteCount: payload.count)
            }
        }
        slots[slotIndex(sequence)] = Slot(offset: offset, topicLength: Int32(topic.count),
            payloadLength: Int32(payload.count), tag: tag)
        writeOffset = offset + length
        storedCount += 1
        lastSequence = sequence
    }

    /// Where `length` bytes go: after the newest tick, or at the start of the arena when they do not fit before its
    /// end, never over a tick still kept (the arena grows instead).
    private mutating func place(_ length: Int) -> Int {
        guard storedCount > 0 else {
            if arena.count < length { grow(toHold: length) }
            return 0
        }
        let head = slots[slotIndex(firstSequence)].offset
        if writeOffset > head {
            // Kept: head ..< writeOffset. Free: after it, and before head.
            if writeOffset + length <= arena.count { return writeOffset }
            if length <= head { return 0 }
        } else if writeOffset + length <= head {
            // Wrapped: kept from head to the arena's end and from 0 to writeOffset; free between.
            return writeOffset
        }
        grow(toHold: length)
        return writeOffset
    }

    /// Doubles the arena (at least), laying the kept ticks out from its start in order.
    private mutating func grow(toHold length: Int) {
        var kept = 0
        var sequence = firstSequence
        while storedCount > 0 && sequence <= lastSequence {
            kept += slots[slotIndex(sequence)].length
            sequence += 1
        }
        let newCount = max(arena.count * 2, (kept + length) * 2, 1024)
        var newArena = Self.uninitializedArena(count: newCount)
        var offset = 0
        newArena.withUnsafeMutableBytes { destination in
            arena.withUnsafeBytes { source in
                var sequence = firstSequence
                while storedCount > 0 && sequence <= lastSequence {
                    let index = slotIndex(sequence)
                    let slot = slots[index]
                    (destination.baseAddress! + offset).copyMemory(from: source.baseAddress! + slot.offset,
                        byteCount: slot.length)
                    slots[index].offset = offset
                    offset += slot.length
                    sequence += 1
                }
            }
        }
        arena = newArena
        writeOffset = offset
    }

    private func slotIndex(_ sequence: UInt64) -> Int { Int(truncatingIfNeeded: sequence & slotMask) }

    /// Links the tick that is stored (or is about to be) with `sequence` to the one before it in its chain (0: the
    /// first). Only a `linked` ring keeps links.
    public mutating func link(_ sequence: UInt64, toPrevious previous: UInt64) {
        guard !links.isEmpty else { return }
        links[slotIndex(sequence)] = previous
    }

    /// The stored ticks of the chain whose newest tick is `newest`, walked back while their tags are at least
    /// `fromTag`: their stream_seqs oldest first, and the tag of the oldest tick walked (the first one below
    /// `fromTag`, when the walk reached one: the ring then reaches back past `fromTag`); nil when `newest` is not
    /// stored. The walk stops where the chain leaves the ring or began.
    public func chain(from newest: UInt64, fromTag: UInt64) -> (sequences: [UInt64], oldestTag: UInt64?) {
        guard !links.isEmpty, storedCount > 0 else { return ([], nil) }
        var sequences: [UInt64] = []
        sequences.reserveCapacity(64)  // a resume of a few seconds: one allocation
        var oldestTag: UInt64?
        var sequence = newest
        let first = firstSequence
        while sequence != 0 && sequence >= first && sequence <= lastSequence {
            let index = slotIndex(sequence)
            let tag = slots[index].tag
            oldestTag = tag
            if tag < fromTag { break }
            sequences.append(sequence)
            // A link always points back; one that does not was never written for this lap of the ring.
            let previous = links[index]
            guard previous < sequence else { break }
            sequence = previous
        }
        sequences.reverse()
        return (sequences, oldestTag)
    }

    /// Calls `body` with each of `sequences` that is stored (its stream_seq, topic and payload, valid during the
    /// call), in the order given.
    public func forEach(
        _ sequences: [UInt64], _ body: (UInt64, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) {
        let first = firstSequence
        for sequence in sequences where storedCount > 0 && sequence >= first && sequence <= lastSequence {
            withTick(slots[slotIndex(sequence)]) { body(sequence, $0, $1) }
        }
    }

    private func withTick<Result>(
        _ slot: Slot, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Result
    ) -> Result {
        arena.withUnsafeBytes { bytes in
            let topic = UnsafeRawBufferPointer(rebasing: bytes[slot.offset ..< slot.offset + Int(slot.topicLength)])
            let payloadStart = slot.offset + Int(slot.topicLength)
            let payload = UnsafeRawBufferPointer(rebasing: bytes[payloadStart ..< payloadStart + Int(slot.payloadLength)])
            return body(topic, payload)
        }
    }

    /// Calls `body` with each stored tick from `from` on (its stream_seq, topic and payload, valid during the call),
    /// at most `maxCount`; returns how many it gave and whether it could start at `from` (false when that tick is no
    /// longer stored).
    public func forEach(
        from: UInt64, maxCount: UInt64, _ body: (UInt64, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) -> (count: UInt64, complete: Bool) {
        guard storedCount > 0 else { return (0, from > lastSequence) }
        let start = max(from, firstSequence)
        var count: UInt64 = 0
        var sequence = start
        while sequence <= lastSequence && count < maxCount {
            withTick(slots[slotIndex(sequence)]) { body(sequence, $0, $1) }
            sequence += 1
            count += 1
        }
        return (count, start == from || from == 0)
    }

    /// Calls `body` with each stored tick whose topic is exactly `topic` or begins with it, and whose tag is at least
    /// `fromTag`, oldest first. Returns how many it gave and the smallest tag among the stored ticks of that topic
    /// (nil when none is stored), so the caller can tell whether the ring reached back far enough.
    public func forEach(
        topicPrefix topic: [UInt8], fromTag: UInt64,
        _ body: (UInt64, UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) -> (count: UInt64, oldestTag: UInt64?) {
        guard storedCount > 0 else { return (0, nil) }
        var count: UInt64 = 0
        var oldestTag: UInt64?
        var sequence = firstSequence
        while sequence <= lastSequence {
            let slot = slots[slotIndex(sequence)]
            withTick(slot) { tickTopic, payload in
                guard tickTopic.starts(with: topic) else { return }
                if oldestTag == nil { oldestTag = slot.tag }
                if slot.tag >= fromTag {
                    body(sequence, tickTopic, payload)
                    count += 1
                }
            }
            sequence += 1
        }
        return (count, oldestTag)
    }
}
