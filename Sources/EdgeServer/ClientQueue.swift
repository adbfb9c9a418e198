import DequeModule
import NIOCore

/// The updates waiting for one slow client (DESIGN section 8, backpressure): filled only while the client's socket
/// does not take more, bounded in messages and bytes whatever the client does.
///
/// Above the soft mark a new update of a symbol replaces the one queued for it (conflation: the newest value wins),
/// unless a STATUS, snapshot or held update of the symbol is queued after that one: then it queues behind them, so
/// that a symbol's messages stay in seq order. At the hard mark the oldest updates go. STATUS messages and snapshots
/// are never dropped: a client may lag, but it never misses a halt, its resumption or its starting values.
public struct ClientQueue {
    public struct Entry {
        public var symbol: String
        public var text: ByteBuffer
        /// False for STATUS and snapshots.
        public var droppable: Bool
        /// A live update held whole behind its symbol's replay or snapshot (`WebSocketSession.catchingUp`, at most
        /// `resume_max_updates` a symbol): never conflated or dropped, and outside the marks, which it would
        /// otherwise fill for a client that is only reading what it missed.
        public var held = false

        public init(symbol: String, text: ByteBuffer, droppable: Bool, held: Bool = false) {
            self.symbol = symbol
            self.text = text
            self.droppable = droppable
            self.held = held
        }
    }

    public struct Limits: Sendable {
        public var softMessages = 256
        public var hardMessages = 1_024
        public var hardBytes = 1 << 20

        public init(softMessages: Int = 256, hardMessages: Int = 1_024, hardBytes: Int = 1 << 20) {
            self.softMessages = softMessages
            self.hardMessages = hardMessages
            self.hardBytes = hardBytes
        }
    }

    public let limits: Limits
    /// Oldest first. An update dropped at the hard mark is left in its place, empty (`Slot.removed`), so that the
    /// positions `newestOfSymbol` holds stay true; removed slots leave from the front as the client reads, or all at
    /// once when they outnumber the rest (`compact`). The front slot is never a removed one.
    private var slots = Deque<Slot>()
    /// Where the symbol's newest entry is (a position counts every slot ever queued: `slots[position -
    /// frontPosition]`), while it is queued. A symbol without one has no entry a new update may replace. Looked up
    /// instead of walking the queue: a slow client watching 500 symbols walked about 200 entries an update.
    private var newestOfSymbol: [String: Int] = [:]
    /// The position of `slots.first`.
    private var frontPosition = 0
    /// Slots left in place, removed (`Slot.removed`).
    private(set) var removedCount = 0
    public private(set) var bytes = 0
    /// Of the entries and `bytes`, what is held (`Entry.held`).
    private(set) var heldCount = 0
    private(set) var heldBytes = 0
    /// Updates dropped or replaced before they were written, since the client connected.
    public private(set) var dropped: UInt64 = 0

    private struct Slot {
        var entry: Entry
        /// Dropped at the hard mark after later entries queued: no longer sent, its text already let go.
        var removed = false
    }

    public init(limits: Limits) {
        self.limits = limits
    }

    public var isEmpty: Bool { slots.isEmpty }
    /// Entries waiting to be written.
    public var count: Int { slots.count - removedCount }
    public var isOverHardMark: Bool {
        count - heldCount >= limits.hardMessages || bytes - heldBytes >= limits.hardBytes
    }

    public mutating func append(_ entry: Entry) {
        if entry.held {
            var entry = entry
            entry.droppable = false
            heldCount += 1
            heldBytes += entry.text.readableBytes
            enqueue(entry)
            return
        }
        if entry.droppable && count - heldCount >= limits.softMessages,
            let newest = newestOfSymbol[entry.symbol], slots[newest - frontPosition].entry.droppable
        {
            // Conflation: the queued value of the symbol is stale; the new one takes its place in the line. Only the
            // symbol's newest entry may be replaced: a value put in the place of an older one ahead of a STATUS (or a
            // snapshot, or a held update) would reach the client before it, and the client drops what comes after a
            // seq it has passed: a resumption overtaken so would never show.
            bytes += entry.text.readableBytes - slots[newest - frontPosition].entry.text.readableBytes
            slots[newest - frontPosition].entry = entry
            dropped += 1
        } else {
            enqueue(entry)
        }
        // At the hard mark the oldest updates go (never a STATUS or a snapshot); a larger value in a conflated slot may
        // have crossed the byte mark.
        while count - heldCount > limits.hardMessages || bytes - heldBytes > limits.hardBytes,
            let oldest = slots.firstIndex(where: { !$0.removed && $0.entry.droppable })
        {
            remove(at: oldest)
        }
    }

    private mutating func enqueue(_ entry: Entry) {
        newestOfSymbol[entry.symbol] = frontPosition + slots.count
        slots.append(Slot(entry: entry))
        bytes += entry.text.readableBytes
    }

    public mutating func popFirst() -> Entry? {
        guard let slot = slots.popFirst() else { return nil }
        forget(slot.entry.symbol, at: frontPosition)
        frontPosition += 1
        let entry = slot.entry
        bytes -= entry.text.readableBytes
        if entry.held {
            heldCount -= 1
            heldBytes -= entry.text.readableBytes
        }
        dropRemovedFromFront()
        releaseIndexIfEmpty()
        return entry
    }

    private mutating func remove(at index: Int) {
        let symbol = slots[index].entry.symbol
        bytes -= slots[index].entry.text.readableBytes
        dropped += 1
        // The oldest droppable entry: if it was its symbol's newest, the symbol's older ones are STATUS, snapshots or
        // held updates, which a new update must queue behind, as if the symbol had none.
        forget(symbol, at: frontPosition + index)
        if index == 0 {
            slots.removeFirst()
            frontPosition += 1
            dropRemovedFromFront()
            releaseIndexIfEmpty()
            return
        }
        slots[index].removed = true
        slots[index].entry.text = ByteBuffer()
        removedCount += 1
        if removedCount > count { compact() }
    }

    private mutating func forget(_ symbol: String, at position: Int) {
        if let newest = newestOfSymbol[symbol], newest == position { newestOfSymbol[symbol] = nil }
    }

    /// A queue that empties lets a large index go: a client that was behind once keeps no more than one that never was.
    private mutating func releaseIndexIfEmpty() {
        if slots.isEmpty && newestOfSymbol.capacity > 64 { newestOfSymbol = [:] }
    }

    private mutating func dropRemovedFromFront() {
        while slots.first?.removed == true {
            slots.removeFirst()
            frontPosition += 1
            removedCount -= 1
        }
    }

    /// Removed slots behind entries that never drop (a client reading nothing while STATUS messages queue): taken out
    /// once they outnumber the rest, so that they cost at most as much room as what waits, and positions renumbered.
    private mutating func compact() {
        slots.removeAll(where: \.removed)
        removedCount = 0
        newestOfSymbol.removeAll(keepingCapacity: true)
        for index in slots.indices { newestOfSymbol[slots[index].entry.symbol] = frontPosition + index }
    }
}
