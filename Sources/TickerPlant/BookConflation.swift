import MarketData

/// The venues' BOOK ticks, passed on conflated: for each (symbol, venue) at most one every `book_interval`, and the
/// latest one when the interval is up (a book that changed three times in between goes out once, as it stands).
/// feedd conflates its own books too; the plant's conflation holds for every feed, whatever it was set to.
///
/// Allocates nothing per BOOK once each (symbol, venue) has been seen and has waited once: a waiting book is copied
/// into its slot's own tick, level by level (`Tick.copyKeepingArrays`), and handed out from there when due.
public struct BookConflation {
    public let intervalNs: UInt64

    /// One (symbol, venue).
    struct Slot {
        var venue: String
        var lastSentNs: UInt64
        /// Whether `waiting` holds a book not sent yet.
        var isWaiting = false
        /// The latest book not sent yet, while `isWaiting`; its arrays are kept for the next one.
        var waiting = Tick(symbol: "", type: .book, venue: "")
    }

    private var slotsOf: [[Slot]] = []
    /// The slots with a book waiting, in the order they began to wait, so that the sweep walks only these.
    private var waitingSlots: [(symbolID: Int, slot: Int)] = []
    /// When the first waiting book is due (nil when none waits): a loop turn before it looks at no slot (the loop
    /// asks every turn, and walking the waiting books each time was a few percent of plantd's thread).
    private var earliestDueNs: UInt64?
    /// Books replaced by a later one before they went out.
    public private(set) var conflated: UInt64 = 0

    public init(intervalNs: UInt64) {
        self.intervalNs = intervalNs
    }

    /// Whether `book` goes out now; if not, it waits (replacing whatever of its venue waited before).
    public mutating func admit(_ book: Tick, symbolID id: Int, nowNs: UInt64) -> Bool {
        guard intervalNs > 0 else { return true }
        if id >= slotsOf.count { slotsOf.append(contentsOf: repeatElement([], count: id + 1 - slotsOf.count)) }
        guard let slot = slotsOf[id].firstIndex(where: { $0.venue == book.venue }) else {
            slotsOf[id].append(Slot(venue: book.venue, lastSentNs: nowNs))
            return true
        }
        if slotsOf[id][slot].isWaiting {
            conflated += 1
        } else if nowNs &- slotsOf[id][slot].lastSentNs >= intervalNs {
            slotsOf[id][slot].lastSentNs = nowNs
            return true
        } else {
            slotsOf[id][slot].isWaiting = true
            waitingSlots.append((id, slot))
            let dueNs = slotsOf[id][slot].lastSentNs &+ intervalNs
            earliestDueNs = min(earliestDueNs ?? dueNs, dueNs)
        }
        slotsOf[id][slot].waiting.copyKeepingArrays(of: book)
        return false
    }

    /// Hands each waiting book whose interval is up to `publish`, in the order they began to wait. The book is lent
    /// for the call (its stamps may be set in place): it stays the slot's, to be refilled by the next that waits.
    public mutating func due(nowNs: UInt64, _ publish: (_ symbolID: Int, _ book: inout Tick) -> Void) {
        guard let earliest = earliestDueNs, nowNs >= earliest else { return }
        var nextEarliest: UInt64?
        var stillWaiting = 0
        for index in waitingSlots.indices {
            let (id, slot) = waitingSlots[index]
            let dueNs = slotsOf[id][slot].lastSentNs &+ intervalNs
            if nowNs >= dueNs {
                slotsOf[id][slot].isWaiting = false
                slotsOf[id][slot].lastSentNs = nowNs
                publish(id, &slotsOf[id][slot].waiting)
            } else {
                waitingSlots[stillWaiting] = waitingSlots[index]
                stillWaiting += 1
                nextEarliest = min(nextEarliest ?? dueNs, dueNs)
            }
        }
        waitingSlots.removeLast(waitingSlots.count - stillWaiting)
        earliestDueNs = nextEarliest
    }

    /// How long until the next waiting book is due (nil when none waits).
    public func nextDueInNs(nowNs: UInt64) -> UInt64? {
        earliestDueNs.map { $0 > nowNs ? $0 - nowNs : 0 }
    }
}
