import MarketData

/// The venues' BOOK ticks, passed on conflated: for each (symbol, venue) at most one every `book_interval`, and the
/// latest one when the interval is up (a book that changed three times in between goes out once, as it stands).
/// feedd conflates its own books too; the plant's conflation holds for every feed, whatever it was set to.
struct BookConflation {
    let intervalNs: UInt64

    struct Slot {
        var venue: String
        var lastSentNs: UInt64
        /// The latest BOOK not sent yet, waiting for the interval to be up.
        var waiting: Tick?
    }

    private var slotsOf: [[Slot]] = []
    /// Symbols with a BOOK waiting, so that the sweep does not walk every symbol.
    private var symbolsWaiting: Set<Int> = []
    /// When the first waiting book is due (nil when none waits): a loop turn before it looks at no symbol (the loop
    /// asks every turn, and walking the waiting symbols each time, copying their books, was a few percent of
    /// plantd's thread).
    private var earliestDueNs: UInt64?
    /// Books replaced by a later one before they went out.
    private(set) var conflated: UInt64 = 0

    init(intervalNs: UInt64) {
        self.intervalNs = intervalNs
    }

    /// Whether `book` goes out now; if not, it waits (replacing whatever of its venue waited before).
    mutating func admit(_ book: Tick, symbolID id: Int, nowNs: UInt64) -> Bool {
        guard intervalNs > 0 else { return true }
        if id >= slotsOf.count { slotsOf.append(contentsOf: repeatElement([], count: id + 1 - slotsOf.count)) }
        guard let slot = slotsOf[id].firstIndex(where: { $0.venue == book.venue }) else {
            slotsOf[id].append(Slot(venue: book.venue, lastSentNs: nowNs, waiting: nil))
            return true
        }
        if nowNs &- slotsOf[id][slot].lastSentNs >= intervalNs && slotsOf[id][slot].waiting == nil {
            slotsOf[id][slot].lastSentNs = nowNs
            return true
        }
        if slotsOf[id][slot].waiting != nil {
            conflated += 1
        } else {
            let dueNs = slotsOf[id][slot].lastSentNs &+ intervalNs
            earliestDueNs = min(earliestDueNs ?? dueNs, dueNs)
        }
        slotsOf[id][slot].waiting = book
        symbolsWaiting.insert(id)
        return false
    }

    /// The waiting books whose interval is up, to publish now, oldest symbol first.
    mutating func due(nowNs: UInt64, into books: inout [(symbolID: Int, book: Tick)]) {
        guard let earliest = earliestDueNs, nowNs >= earliest else { return }
        var nextEarliest: UInt64?
        for id in symbolsWaiting.sorted() {
            var stillWaiting = false
            for slot in slotsOf[id].indices where slotsOf[id][slot].waiting != nil {
                let dueNs = slotsOf[id][slot].lastSentNs &+ intervalNs
                if nowNs >= dueNs {
                    books.append((id, slotsOf[id][slot].waiting!))
                    slotsOf[id][slot].waiting = nil
                    slotsOf[id][slot].lastSentNs = nowNs
                } else {
                    stillWaiting = true
                    nextEarliest = min(nextEarliest ?? dueNs, dueNs)
                }
            }
            if !stillWaiting { symbolsWaiting.remove(id) }
        }
        earliestDueNs = nextEarliest
    }

    /// How long until the next waiting book is due (nil when none waits).
    func nextDueInNs(nowNs: UInt64) -> UInt64? {
        earliestDueNs.map { $0 > nowNs ? $0 - nowNs : 0 }
    }
}
