/// The last `capacity` published ticks of a stream, as the bytes that went out (topic and payload), by stream_seq:
/// what the replay ROUTER serves so that a restarted plant can catch up. Each slot keeps its buffers, so once warm,
/// storing a tick copies its bytes without allocating.
public struct TickRing {
    public let capacity: Int
    private var topics: [[UInt8]]
    private var payloads: [[UInt8]]
    /// A number the publisher keeps with each tick: plantd its symbol_seq, so that one symbol can be replayed.
    private var tags: [UInt64]
    /// stream_seq of the newest tick stored (0: none yet).
    public private(set) var lastSequence: UInt64 = 0

    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        topics = Array(repeating: [], count: self.capacity)
        payloads = Array(repeating: [], count: self.capacity)
        tags = Array(repeating: 0, count: self.capacity)
    }

    /// The oldest stream_seq still stored.
    public var firstSequence: UInt64 {
        lastSequence == 0 ? 0 : lastSequence - UInt64(min(UInt64(capacity), lastSequence)) + 1
    }

    /// Stores the tick published with `sequence`, which must follow the previous one.
    public mutating func store(
        sequence: UInt64, topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, tag: UInt64 = 0
    ) {
        let slot = Int(sequence % UInt64(capacity))
        tags[slot] = tag
        topics[slot].removeAll(keepingCapacity: true)
        topics[slot].append(contentsOf: topic)
        payloads[slot].removeAll(keepingCapacity: true)
        payloads[slot].append(contentsOf: payload)
        lastSequence = sequence
    }

    /// Calls `body` with each stored tick from `from` on, at most `maxCount`; returns how many it gave and whether it
    /// could start at `from` (false when that tick is no longer stored).
    public func forEach(
        from: UInt64, maxCount: UInt64, _ body: (UInt64, [UInt8], [UInt8]) -> Void
    ) -> (count: UInt64, complete: Bool) {
        guard lastSequence > 0 else { return (0, from > lastSequence) }
        let start = max(from, firstSequence)
        var count: UInt64 = 0
        var sequence = start
        while sequence <= lastSequence && count < maxCount {
            let slot = Int(sequence % UInt64(capacity))
            body(sequence, topics[slot], payloads[slot])
            sequence += 1
            count += 1
        }
        return (count, start == from || from == 0)
    }

    /// Calls `body` with each stored tick whose topic is exactly `topic` or begins with it, and whose tag is at least
    /// `fromTag`, oldest first. Returns how many it gave and the smallest tag among the stored ticks of that topic
    /// (nil when none is stored), so the caller can tell whether the ring reached back far enough.
    public func forEach(
        topicPrefix topic: [UInt8], fromTag: UInt64, _ body: (UInt64, [UInt8], [UInt8]) -> Void
    ) -> (count: UInt64, oldestTag: UInt64?) {
        guard lastSequence > 0 else { return (0, nil) }
        var count: UInt64 = 0
        var oldestTag: UInt64?
        var sequence = firstSequence
        while sequence <= lastSequence {
            let slot = Int(sequence % UInt64(capacity))
            if topics[slot].starts(with: topic) {
                if oldestTag == nil { oldestTag = tags[slot] }
                if tags[slot] >= fromTag {
                    body(sequence, topics[slot], payloads[slot])
                    count += 1
                }
            }
            sequence += 1
        }
        return (count, oldestTag)
    }
}
