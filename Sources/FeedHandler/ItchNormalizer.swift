import MarketData

/// Turns one venue's ITCH messages into ticks: executions become TRADE at the order's price, changes of the best bid
/// or offer become QUOTE, trading actions and operational halts become STATUS.
public struct ItchNormalizer {
    public struct Counters: Equatable, Sendable {
        public var messages: UInt64 = 0
        /// Order messages for a locate no stock directory message named.
        public var unknownLocate: UInt64 = 0
        /// Executions, cancels and deletes of an order the book never saw.
        public var unknownOrder: UInt64 = 0
        /// Messages decoded but informational only (S, Y, L, K, I, N, O, V).
        public var notActedOn: UInt64 = 0
        /// Broken trades whose execution this session never saw.
        public var unknownBrokenTrades: UInt64 = 0
        /// Stock directory messages naming a symbol the rules refuse (a `|` would break exact prefixes, a leading
        /// `#` would speak as the plant): the locate stays unnamed, so its orders count as `unknownLocate`.
        public var badSymbols: UInt64 = 0
    }

    public let venue: String
    /// Nanoseconds since the epoch of midnight of the session date, in the venue's zone: ITCH stamps count from it.
    public let sessionMidnightNs: UInt64
    public private(set) var book: VenueBook
    public private(set) var counters = Counters()

    /// What the normalizer knows of one stock locate.
    private struct LocateState {
        /// From the stock directory (R); nil until the venue names the locate.
        var symbol: String?
        /// The top of book last published as a QUOTE.
        var publishedTop = VenueBook.TopOfBook()
        /// Waiting in its BOOK slot since its book last went out.
        var bookChanged = false
        /// Exchange time of its book's latest change, stamped on the BOOK tick.
        var bookChangeNs: UInt64 = 0
    }

    /// Indexed by stock locate, which venues assign densely from 1: an array lookup instead of a hash per message.
    private var locates: [LocateState] = []
    /// Which symbol each recent execution was in, so that a broken trade (which names only the match number) can be
    /// published for its symbol. Venues number matches upwards through the day, so a table indexed by the match
    /// number's low bits keeps the latest `rememberedMatches` without hashing or growing; a later match evicts the
    /// one it shares a slot with, which is always older.
    private var recentMatches: [RememberedMatch] = []
    private struct RememberedMatch {
        var matchNumber: UInt64 = 0
        var locate: UInt16 = 0
    }
    /// How many recent matches are remembered: a power of two, 2^20 (16 MiB, taken at the day's first execution)
    /// unless a test or the fuzzer asks for fewer (a table that size per input would be most of a fuzz run's time).
    public let rememberedMatches: Int
    /// The market-wide circuit breaker levels of the day (V), quoted in the STATUS of a breach (W).
    public private(set) var circuitBreakerLevels: [Price] = []

    /// Levels per side in BOOK ticks; 0 publishes none.
    public let bookDepth: Int
    /// A symbol's BOOK goes out at most once per `book_interval`, at its own point of the interval: the interval is
    /// cut into slots (`bookSlotCount`, up to 100) and a symbol's changed book waits in the slot of its locate. So a
    /// few BOOKs go out at every slot rather than every changed book at one instant: a burst of hundreds of BOOKs
    /// queued every TRADE and QUOTE behind it at each hop after feedd (in the chain bench, the ZeroMQ hops' p99
    /// halved without them).
    private var booksWaiting: [[UInt16]]
    private var waitingBookCount = 0
    private let bookSlotNs: UInt64
    /// The last slot (counted from the monotonic clock's zero) whose books went out.
    private var lastBookSlot: UInt64?
    /// Every BOOK tick is built here and handed out one at a time: once the caller has let go of it, its level
    /// arrays are this tick's alone again and are refilled in place, so a BOOK allocates nothing.
    private var bookTick: Tick

    public init(
        venue: String, sessionMidnightNs: UInt64, bookDepth: Int = 0, bookIntervalNs: UInt64 = 100_000_000,
        bookOrders: Int = 16, rememberedMatches: Int = 1 << 20
    ) {
        precondition(rememberedMatches > 0 && rememberedMatches & (rememberedMatches - 1) == 0,
            "rememberedMatches must be a power of two")
        self.rememberedMatches = rememberedMatches
        book = VenueBook(orders: bookOrders)
        self.venue = venue
        self.sessionMidnightNs = sessionMidnightNs
        self.bookDepth = bookDepth
        let slots = Self.bookSlotCount(intervalNs: bookIntervalNs)
        booksWaiting = Array(repeating: [], count: slots)
        bookSlotNs = max(1, bookIntervalNs / UInt64(slots))
        bookTick = Tick(symbol: "", type: .book, venue: venue)
    }

    /// Slots of at least a millisecond each, at most 100 per interval.
    public static func bookSlotCount(intervalNs: UInt64) -> Int {
        Int(min(100, max(1, intervalNs / 1_000_000)))
    }

    /// Hands `publish` the BOOK ticks due by `nowNs` (monotonic), one at a time: those of every slot that began
    /// since the last call, each symbol's book as it stands, at most one per `book_interval` (a busy book costs one
    /// tick an interval, not one per order). Call it every loop turn. `publish` must not keep the tick (nor a copy
    /// of it) past its return, or the next BOOK copies its level arrays.
    public mutating func flushDueBooks(nowNs: UInt64, _ publish: (Tick) -> Void) {
        let current = nowNs / bookSlotNs
        let slots = UInt64(booksWaiting.count)
        let first = lastBookSlot.map { $0 &+ 1 } ?? current
        lastBookSlot = current
        guard bookDepth > 0, current >= first else { return }
        for slot in first...min(current, first + slots - 1) {
            flushBooks(inSlot: Int(slot % slots), publish)
        }
    }

    /// Appends the BOOK ticks due by `nowNs` to `ticks` (for tests and tools: each BOOK kept costs its level arrays).
    public mutating func flushDueBooks(nowNs: UInt64, into ticks: inout [Tick]) {
        flushDueBooks(nowNs: nowNs) { ticks.append($0) }
    }

    /// Hands `publish` a BOOK tick for every symbol whose book changed and has not gone out since, whatever its
    /// slot, one at a time (as `flushDueBooks`).
    public mutating func flushBooks(_ publish: (Tick) -> Void) {
        for slot in booksWaiting.indices where waitingBookCount > 0 { flushBooks(inSlot: slot, publish) }
    }

    /// Appends those BOOK ticks to `ticks` (for tests and tools: each BOOK kept costs its level arrays).
    public mutating func flushBooks(into ticks: inout [Tick]) {
        flushBooks { ticks.append($0) }
    }

    /// Whether a changed book waits to go out.
    public var booksAreWaiting: Bool { waitingBookCount > 0 }

    /// How long after `nowNs` the next slot with a waiting book begins (nil when no book waits): the feed's loop
    /// sleeps no longer, and no shorter, than that.
    public func nanosecondsUntilWaitingBooks(nowNs: UInt64) -> UInt64? {
        guard waitingBookCount > 0 else { return nil }
        let slots = UInt64(booksWaiting.count)
        let current = nowNs / bookSlotNs
        for ahead in UInt64(1)...slots where !booksWaiting[Int((current + ahead) % slots)].isEmpty {
            return (current + ahead) * bookSlotNs - nowNs
        }
        return nil
    }

    private mutating func flushBooks(inSlot slot: Int, _ publish: (Tick) -> Void) {
        guard !booksWaiting[slot].isEmpty else { return }
        for locate in booksWaiting[slot] {
            locates[Int(locate)].bookChanged = false
            guard let symbol = symbol(of: locate) else { continue }
            bookTick.reset()
            bookTick.symbol = symbol
            bookTick.type = .book
            bookTick.venue = venue
            bookTick.exchangeTimestampNs = locates[Int(locate)].bookChangeNs
            book.forEachLevel(of: locate, side: .buy, levels: bookDepth) { bookTick.bids.append(Self.bookLevel($0)) }
            book.forEachLevel(of: locate, side: .sell, levels: bookDepth) { bookTick.asks.append(Self.bookLevel($0)) }
            publish(bookTick)
        }
        waitingBookCount -= booksWaiting[slot].count
        booksWaiting[slot].removeAll(keepingCapacity: true)
    }

    private static func bookLevel(_ level: VenueBook.Level) -> BookLevel {
        BookLevel(price: Price(itchPrice4: level.price), size: level.size, orders: level.orders)
    }

    /// The symbol the stock directory gave `locate`, nil when none did.
    public func symbol(of locate: UInt16) -> String? {
        Int(locate) < locates.count ? locates[Int(locate)].symbol : nil
    }

    private mutating func markBookChanged(_ locate: UInt16, exchangeNs: UInt64) {
        guard bookDepth > 0 else { return }
        locates[Int(locate)].bookChangeNs = exchangeNs
        guard !locates[Int(locate)].bookChanged else { return }
        locates[Int(locate)].bookChanged = true
        booksWaiting[Int(locate) % booksWaiting.count].append(locate)
        waitingBookCount += 1
    }

    /// Appends the ticks `message` produces to `ticks` (at most two: a trade and the quote it changed).
    public mutating func handle(_ message: ItchMessage, venueSequence: UInt64, into ticks: inout [Tick]) {
        counters.messages += 1
        switch message {
        case let .stockDirectory(header, stock, _, _):
            let index = Int(header.stockLocate)
            if index >= locates.count {
                locates.append(contentsOf: repeatElement(LocateState(), count: index + 1 - locates.count))
            }
            let symbol = stock.description
            guard SymbolRules.problem(with: symbol) == nil else {
                counters.badSymbols += 1
                locates[index].symbol = nil
                return
            }
            locates[index].symbol = symbol
        case let .addOrder(header, reference, side, shares, _, price, _):
            guard symbol(of: header.stockLocate) != nil else {
                counters.unknownLocate += 1
                return
            }
            book.add(reference: reference, locate: header.stockLocate, side: side, price: price, shares: shares)
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .orderExecuted(header, reference, shares, matchNumber):
            guard let order = book.reduce(reference: reference, shares: shares) else {
                counters.unknownOrder += 1
                return
            }
            emitTrade(header, locate: order.locate, price: order.price, shares: shares, matchNumber: matchNumber,
                venueSequence: venueSequence, into: &ticks)
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .orderExecutedWithPrice(header, reference, shares, matchNumber, printable, price):
            guard let order = book.reduce(reference: reference, shares: shares) else {
                counters.unknownOrder += 1
                return
            }
            if printable {
                emitTrade(header, locate: order.locate, price: price, shares: shares, matchNumber: matchNumber,
                    venueSequence: venueSequence, into: &ticks)
            }
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .orderCancel(header, reference, shares):
            guard book.reduce(reference: reference, shares: shares) != nil else {
                counters.unknownOrder += 1
                return
            }
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .orderDelete(header, reference):
            guard book.delete(reference: reference) != nil else {
                counters.unknownOrder += 1
                return
            }
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .orderReplace(header, originalReference, newReference, shares, price):
            guard let old = book.delete(reference: originalReference) else {
                counters.unknownOrder += 1
                return
            }
            book.add(reference: newReference, locate: old.locate, side: old.side, price: price, shares: shares)
            emitQuoteIfChanged(header, venueSequence: venueSequence, into: &ticks)
        case let .trade(header, _, _, shares, _, price, matchNumber):
            emitTrade(header, locate: header.stockLocate, price: price, shares: shares, matchNumber: matchNumber,
                venueSequence: venueSequence, into: &ticks)
        case let .crossTrade(header, shares, _, price, matchNumber, _):
            guard shares > 0 else { return }
            emitTrade(header, locate: header.stockLocate, price: price, shares: UInt32(clamping: shares),
                matchNumber: matchNumber, venueSequence: venueSequence, into: &ticks)
        case let .tradingAction(header, _, state, reason):
            let tradingState: TradingState =
                switch state {
                case UInt8(ascii: "H"): .halted
                case UInt8(ascii: "P"): .paused
                case UInt8(ascii: "Q"): .quotationOnly
                default: .trading
                }
            emitStatus(header, state: tradingState, reason: reasonText(reason), venueSequence: venueSequence, into: &ticks)
        case let .operationalHalt(header, _, _, action):
            emitStatus(header, state: action == UInt8(ascii: "H") ? .halted : .trading, reason: "operational halt",
                venueSequence: venueSequence, into: &ticks)
        case let .brokenTrade(header, matchNumber):
            let slot = Int(truncatingIfNeeded: matchNumber) & (rememberedMatches - 1)
            guard !recentMatches.isEmpty, recentMatches[slot].matchNumber == matchNumber, matchNumber != 0,
                let symbol = symbol(of: recentMatches[slot].locate)
            else {
                counters.unknownBrokenTrades += 1
                return
            }
            // Downstream corrects: a STATUS naming the broken trade's id (its match number) for the symbol.
            var tick = Tick(symbol: symbol, type: .status, venue: venue)
            tick.tradeID = matchNumber
            tick.quality = .ok
            tick.reason = "BROKEN TRADE \(matchNumber)"
            tick.exchangeTimestampNs = exchangeTime(header)
            tick.venueSequence = venueSequence
            ticks.append(tick)
        case let .mwcbDeclineLevel(_, level1, level2, level3):
            circuitBreakerLevels = [level1, level2, level3].map { Price(itchPrice8: $0) }
            counters.notActedOn += 1
        case let .mwcbStatus(header, breachedLevel):
            // A market-wide halt: one STATUS on #SYS for every consumer, not one per symbol.
            let level = Int(breachedLevel) - Int(UInt8(ascii: "0"))
            var tick = Tick(symbol: Topic.system, type: .status, venue: venue)
            tick.state = .halted
            tick.quality = .ok
            let price = (1...3).contains(level) && circuitBreakerLevels.count == 3
                ? " at \(circuitBreakerLevels[level - 1])" : ""
            tick.reason = "MWCB level \(Character(Unicode.Scalar(breachedLevel))) breached\(price)"
            tick.exchangeTimestampNs = exchangeTime(header)
            tick.venueSequence = venueSequence
            ticks.append(tick)
        case let .luldAuctionCollar(header, _, reference, upper, lower, extensions):
            guard let symbol = symbol(of: header.stockLocate) else {
                counters.unknownLocate += 1
                return
            }
            var tick = Tick(symbol: symbol, type: .status, venue: venue)
            tick.state = .paused
            tick.quality = .ok
            tick.reason = "LULD auction collar: reference \(Price(itchPrice4: reference)), "
                + "\(Price(itchPrice4: lower))-\(Price(itchPrice4: upper)), extension \(extensions)"
            tick.exchangeTimestampNs = exchangeTime(header)
            tick.venueSequence = venueSequence
            ticks.append(tick)
        case .systemEvent, .regSHORestriction, .marketParticipantPosition, .ipoQuotingPeriod, .netOrderImbalance,
            .retailInterest, .directListingPriceDiscovery:
            counters.notActedOn += 1
        }
    }

    private func exchangeTime(_ header: ItchHeader) -> UInt64 { sessionMidnightNs &+ header.timestamp }

    private mutating func emitTrade(
        _ header: ItchHeader, locate: UInt16, price: UInt32, shares: UInt32, matchNumber: UInt64,
        venueSequence: UInt64, into ticks: inout [Tick]
    ) {
        guard let symbol = symbol(of: locate) else {
            counters.unknownLocate += 1
            return
        }
        rememberMatch(matchNumber, locate: locate)
        var tick = Tick(symbol: symbol, type: .trade, venue: venue)
        tick.price = Price(itchPrice4: price)
        tick.size = UInt64(shares)
        tick.tradeID = matchNumber
        tick.exchangeTimestampNs = exchangeTime(header)
        tick.venueSequence = venueSequence
        ticks.append(tick)
    }

    private mutating func rememberMatch(_ matchNumber: UInt64, locate: UInt16) {
        if recentMatches.isEmpty {
            recentMatches = Array(repeating: RememberedMatch(), count: rememberedMatches)
        }
        let slot = Int(truncatingIfNeeded: matchNumber) & (rememberedMatches - 1)
        recentMatches[slot] = RememberedMatch(matchNumber: matchNumber, locate: locate)
    }

    private mutating func emitQuoteIfChanged(_ header: ItchHeader, venueSequence: UInt64, into ticks: inout [Tick]) {
        let locate = header.stockLocate == 0 ? nil : header.stockLocate
        guard let locate, let symbol = symbol(of: locate) else { return }
        markBookChanged(locate, exchangeNs: exchangeTime(header))
        let top = book.top(of: locate)
        guard locates[Int(locate)].publishedTop != top else { return }
        locates[Int(locate)].publishedTop = top
        var tick = Tick(symbol: symbol, type: .quote, venue: venue)
        tick.bidPrice = Price(itchPrice4: top.bidPrice)
        tick.bidSize = top.bidSize
        tick.askPrice = Price(itchPrice4: top.askPrice)
        tick.askSize = top.askSize
        tick.exchangeTimestampNs = exchangeTime(header)
        tick.venueSequence = venueSequence
        ticks.append(tick)
    }

    private mutating func emitStatus(
        _ header: ItchHeader, state: TradingState, reason: String, venueSequence: UInt64, into ticks: inout [Tick]
    ) {
        guard let symbol = symbol(of: header.stockLocate) else {
            counters.unknownLocate += 1
            return
        }
        var tick = Tick(symbol: symbol, type: .status, venue: venue)
        tick.state = state
        tick.quality = .ok
        tick.reason = reason
        tick.exchangeTimestampNs = exchangeTime(header)
        tick.venueSequence = venueSequence
        ticks.append(tick)
    }

    private func reasonText(_ raw: UInt32) -> String {
        let bytes = [UInt8(raw >> 24), UInt8(truncatingIfNeeded: raw >> 16), UInt8(truncatingIfNeeded: raw >> 8),
            UInt8(truncatingIfNeeded: raw)]
        return String(decoding: bytes, as: UTF8.self).trimmingTrailingSpaces()
    }
}
