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
        public var notActedOn: UInt64 = 0
    }

    public let venue: String
    /// Nanoseconds since the epoch of midnight of the session date, in the venue's zone: ITCH stamps count from it.
    public let sessionMidnightNs: UInt64
    public private(set) var symbols: [UInt16: String] = [:]
    public private(set) var book = VenueBook()
    public private(set) var counters = Counters()
    private var publishedTop: [UInt16: VenueBook.TopOfBook] = [:]

    public init(venue: String, sessionMidnightNs: UInt64) {
        self.venue = venue
        self.sessionMidnightNs = sessionMidnightNs
    }

    /// Appends the ticks `message` produces to `ticks` (at most two: a trade and the quote it changed).
    public mutating func handle(_ message: ItchMessage, venueSequence: UInt64, into ticks: inout [Tick]) {
        counters.messages += 1
        switch message {
        case let .stockDirectory(header, stock, _, _):
            symbols[header.stockLocate] = stock.description
        case let .addOrder(header, reference, side, shares, _, price, _):
            guard symbols[header.stockLocate] != nil else {
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
        case .systemEvent, .regSHORestriction, .brokenTrade, .notActedOn:
            counters.notActedOn += 1
        }
    }

    private func exchangeTime(_ header: ItchHeader) -> UInt64 { sessionMidnightNs &+ header.timestamp }

    private mutating func emitTrade(
        _ header: ItchHeader, locate: UInt16, price: UInt32, shares: UInt32, matchNumber: UInt64,
        venueSequence: UInt64, into ticks: inout [Tick]
    ) {
        guard let symbol = symbols[locate] else {
            counters.unknownLocate += 1
            return
        }
        var tick = Tick(symbol: symbol, type: .trade, venue: venue)
        tick.price = Price(itchPrice4: price)
        tick.size = UInt64(shares)
        tick.tradeID = matchNumber
        tick.exchangeTimestampNs = exchangeTime(header)
        tick.venueSequence = venueSequence
        ticks.append(tick)
    }

    private mutating func emitQuoteIfChanged(_ header: ItchHeader, venueSequence: UInt64, into ticks: inout [Tick]) {
        let locate = header.stockLocate == 0 ? nil : header.stockLocate
        guard let locate, let symbol = symbols[locate] else { return }
        let top = book.top(of: locate)
        guard publishedTop[locate] != top else { return }
        publishedTop[locate] = top
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
        guard let symbol = symbols[header.stockLocate] else {
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
