import DequeModule
import NIOCore

/// The updates waiting for one slow client (DESIGN section 8, backpressure): filled only while the client's socket
/// does not take more, bounded in messages and bytes whatever the client does.
///
/// Above the soft mark a new update of a symbol replaces the one queued for it (conflation: the newest value wins),
/// unless a STATUS, snapshot or held update of the symbol is queued after that one: then it queues behind them, so
/// that a symbol's messages stay in seq order. At the hard mark the oldest updates go. STATUS messages and snapshots
/// are never dropped: a client may lag, but it never misses a halt, its resumption or its starting values.
struct ClientQueue {
    struct Entry {
        var symbol: String
        var text: ByteBuffer
        /// False for STATUS and snapshots.
        var droppable: Bool
        /// A live update held whole behind its symbol's replay or snapshot (`WebSocketSession.catchingUp`, at most
        /// `resume_max_updates` a symbol): never conflated or dropped, and outside the marks, which it would
        /// otherwise fill for a client that is only reading what it missed.
        var held = false
    }

    struct Limits: Sendable {
        var softMessages = 256
        var hardMessages = 1_024
        var hardBytes = 1 << 20
    }

    let limits: Limits
    private(set) var entries = Deque<Entry>()
    private(set) var bytes = 0
    /// Of `entries` and `bytes`, what is held (`Entry.held`).
    private(set) var heldCount = 0
    private(set) var heldBytes = 0
    /// Updates dropped or replaced before they were written, since the client connected.
    private(set) var dropped: UInt64 = 0

    init(limits: Limits) {
        self.limits = limits
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    var isOverHardMark: Bool {
        entries.count - heldCount >= limits.hardMessages || bytes - heldBytes >= limits.hardBytes
    }

    mutating func append(_ entry: Entry) {
        if entry.held {
            var entry = entry
            entry.droppable = false
            entries.append(entry)
            bytes += entry.text.readableBytes
            heldCount += 1
            heldBytes += entry.text.readableBytes
            return
        }
        // Only the symbol's newest entry may be replaced: a value put in the place of an older one ahead of a STATUS
        // (or a snapshot, or a held update) would reach the client before it, and the client drops what comes after
        // a seq it has passed: a resumption overtaken so would never show.
        if entry.droppable && entries.count - heldCount >= limits.softMessages,
            let queued = entries.lastIndex(where: { $0.symbol == entry.symbol }), entries[queued].droppable
        {
            // Conflation: the queued value of the symbol is stale; the new one takes its place in the line.
            bytes += entry.text.readableBytes - entries[queued].text.readableBytes
            entries[queued] = entry
            dropped += 1
        } else {
            entries.append(entry)
            bytes += entry.text.readableBytes
        }
        // At the hard mark the oldest updates go (never a STATUS or a snapshot).
        while entries.count - heldCount > limits.hardMessages || bytes - heldBytes > limits.hardBytes,
            let oldest = entries.firstIndex(where: \.droppable)
        {
            bytes -= entries[oldest].text.readableBytes
            entries.remove(at: oldest)
            dropped += 1
        }
    }

    mutating func popFirst() -> Entry? {
        guard let entry = entries.popFirst() else { return nil }
        bytes -= entry.text.readableBytes
        if entry.held {
            heldCount -= 1
            heldBytes -= entry.text.readableBytes
        }
        return entry
    }
}
