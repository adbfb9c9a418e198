import Testing

import MarketData
@testable import TickerPlant

/// plantd's BOOK conflation: the first BOOK of a (symbol, venue) at once, then at most one per interval, the latest.
@Suite struct BookConflationTests {
    static func book(_ symbol: String, _ venue: String, bid: UInt64) -> Tick {
        var tick = Tick(symbol: symbol, type: .book, venue: venue)
        tick.bids = [BookLevel(price: Price(fixedPoint: 100_000_000), size: bid)]
        return tick
    }

    /// `admit` outside `#expect`, which cannot call a mutating method.
    func admit(_ books: inout BookConflation, _ book: Tick, symbolID: Int, nowNs: UInt64) -> Bool {
        books.admit(book, symbolID: symbolID, nowNs: nowNs)
    }

    /// The books `due` hands out, copied.
    func collectDue(_ books: inout BookConflation, nowNs: UInt64, into due: inout [(symbolID: Int, book: Tick)]) {
        books.due(nowNs: nowNs) { id, book in due.append((id, book)) }
    }

    @Test func aBookWaitsForItsIntervalAndTheLatestGoesOut() {
        var books = BookConflation(intervalNs: 100)
        var due: [(symbolID: Int, book: Tick)] = []
        #expect(admit(&books, Self.book("A", "XNAS", bid: 1), symbolID: 0, nowNs: 1_000))
        #expect(books.nextDueInNs(nowNs: 1_000) == nil)
        #expect(!admit(&books, Self.book("A", "XNAS", bid: 2), symbolID: 0, nowNs: 1_010))
        #expect(books.nextDueInNs(nowNs: 1_010) == 90)
        collectDue(&books, nowNs: 1_099, into: &due)
        #expect(due.isEmpty)
        #expect(!admit(&books, Self.book("A", "XNAS", bid: 3), symbolID: 0, nowNs: 1_060))
        #expect(books.conflated == 1)
        #expect(books.nextDueInNs(nowNs: 1_060) == 40)  // replacing the waiting book does not move its time
        collectDue(&books, nowNs: 1_100, into: &due)
        #expect(due.map(\.book.bids[0].size) == [3])
        #expect(books.nextDueInNs(nowNs: 1_100) == nil)
        // The interval counts from when the waiting book went out.
        #expect(!admit(&books, Self.book("A", "XNAS", bid: 4), symbolID: 0, nowNs: 1_150))
        #expect(books.nextDueInNs(nowNs: 1_150) == 50)
    }

    @Test func theNextDueBookIsTheEarliestOfAllThatWait() {
        var books = BookConflation(intervalNs: 100)
        var due: [(symbolID: Int, book: Tick)] = []
        #expect(admit(&books, Self.book("A", "XNAS", bid: 1), symbolID: 0, nowNs: 0))
        #expect(admit(&books, Self.book("B", "XNAS", bid: 1), symbolID: 1, nowNs: 30))
        #expect(admit(&books, Self.book("B", "BATS", bid: 1), symbolID: 1, nowNs: 60))
        #expect(!admit(&books, Self.book("B", "BATS", bid: 2), symbolID: 1, nowNs: 70))  // due at 160
        #expect(!admit(&books, Self.book("B", "XNAS", bid: 2), symbolID: 1, nowNs: 70))  // due at 130
        #expect(!admit(&books, Self.book("A", "XNAS", bid: 2), symbolID: 0, nowNs: 80))  // due at 100
        #expect(books.nextDueInNs(nowNs: 80) == 20)
        collectDue(&books, nowNs: 100, into: &due)
        #expect(due.map(\.book.symbol) == ["A"])
        #expect(books.nextDueInNs(nowNs: 100) == 30)
        due.removeAll()
        collectDue(&books, nowNs: 170, into: &due)  // a late turn: both of B's venues at once
        #expect(due.map(\.book.venue).sorted() == ["BATS", "XNAS"])
        #expect(books.nextDueInNs(nowNs: 170) == nil)
        due.removeAll()
        collectDue(&books, nowNs: 1_000, into: &due)
        #expect(due.isEmpty)
    }

    /// plantd decodes every tick into one scratch tick: a waiting book must be the one admitted, not what the scratch
    /// tick holds by the time it is due.
    @Test func aWaitingBookIsKeptWhileTheScratchTickIsRefilled() {
        var books = BookConflation(intervalNs: 100)
        var due: [(symbolID: Int, book: Tick)] = []
        var scratch = Self.book("A", "XNAS", bid: 1)
        #expect(admit(&books, scratch, symbolID: 0, nowNs: 0))
        scratch.bids[0].size = 2
        #expect(!admit(&books, scratch, symbolID: 0, nowNs: 10))
        scratch.bids[0].size = 3
        scratch.reset()
        scratch.symbol = "B"
        collectDue(&books, nowNs: 100, into: &due)
        #expect(due.map(\.book.symbol) == ["A"])
        #expect(due.map(\.book.bids) == [[BookLevel(price: Price(fixedPoint: 100_000_000), size: 2)]])
    }
}
