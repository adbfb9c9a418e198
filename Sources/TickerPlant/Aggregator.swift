import MarketData

/// How venues are combined (`[aggregation]` in etc/plantd.toml).
public struct AggregationConfiguration: Sendable, Equatable {
    /// Publish the NBBO (QUOTE ticks with venue CONS) from every fresh venue's best bid and offer.
    public var nbbo = true
    /// A venue that sends nothing for this long drops out of the NBBO, and STATUS says so.
    public var staleAfterNs: UInt64 = 5_000_000_000
    /// Bar intervals in seconds (BAR ticks, venue CONS, built from every venue's trades).
    public var barIntervals: [UInt32] = [1, 60]
    /// A venue's BOOK of a symbol goes out at most this often, the latest when the interval is up (0: every one).
    public var bookIntervalNs: UInt64 = 100_000_000

    public init() {}
}

/// What the plant derives from the venues' ticks: the NBBO, bars, and venues going stale. Fed every tick the plant
/// publishes, and the clock; appends the ticks to publish in turn.
public struct Aggregator {
    public let configuration: AggregationConfiguration

    struct VenueQuote {
        var venue: String
        var bid: Int64
        var bidSize: UInt64
        var ask: Int64
        var askSize: UInt64
    }

    struct Bar {
        var startNs: UInt64
        var open: Int64
        var high: Int64
        var low: Int64
        var close: Int64
        var volume: UInt64
    }

    struct SymbolState {
        var quotes: [VenueQuote] = []
        var published = (bid: Int64(0), bidSize: UInt64(0), ask: Int64(0), askSize: UInt64(0))
        /// One open bar per configured interval (nil until a trade opens it).
        var bars: [Bar?]
        /// Every venue of the symbol is stale (STATUS STALE was published).
        var stale = false
    }

    private var symbolIndex: [String: Int] = [:]
    private var symbols: [String] = []
    private var states: [SymbolState] = []
    /// When each venue last sent anything, and whether it is stale now.
    private var venues: [(venue: String, lastNs: UInt64, stale: Bool)] = []
    private var nextBarCheckNs: UInt64 = 0

    public init(configuration: AggregationConfiguration) {
        self.configuration = configuration
    }

    /// Venues stale now.
    public var staleVenues: [String] { venues.filter(\.stale).map(\.venue) }

    /// Takes a tick the plant published and appends what follows from it: a new NBBO, a bar that closed, a venue
    /// that is fresh again.
    /// `symbolID` as for `TickFilters.admit`: the caller's number for the symbol, or nil to look it up here.
    public mutating func observe(_ tick: Tick, symbolID: Int? = nil, nowNs: UInt64, into output: inout [Tick]) {
        guard tick.venue != Venue.consolidated, tick.symbol.utf8.first != UInt8(ascii: "#") else { return }
        noteVenue(tick.venue, nowNs: nowNs, into: &output)
        switch tick.type {
        case .quote where configuration.nbbo:
            let index = self.index(of: tick.symbol, symbolID: symbolID)
            var state = SymbolState(bars: [])
            swap(&state, &states[index])
            defer { swap(&state, &states[index]) }
            let quote = VenueQuote(venue: tick.venue, bid: tick.bidPrice.fixedPoint, bidSize: tick.bidSize,
                ask: tick.askPrice.fixedPoint, askSize: tick.askSize)
            if let existing = state.quotes.firstIndex(where: { $0.venue == tick.venue }) {
                state.quotes[existing] = quote
            } else {
                state.quotes.append(quote)
            }
            if state.stale {
                state.stale = false
                output.append(Self.status(tick.symbol, quality: .ok, reason: "\(tick.venue) quoting again",
                    exchangeNs: tick.exchangeTimestampNs))
            }
            publishNBBO(tick.symbol, &state, exchangeNs: tick.exchangeTimestampNs, into: &output)
        case .trade:
            guard !configuration.barIntervals.isEmpty, tick.price.fixedPoint > 0, tick.exchangeTimestampNs > 0 else {
                return
            }
            let index = self.index(of: tick.symbol, symbolID: symbolID)
            for (slot, interval) in configuration.barIntervals.enumerated() {
                let length = UInt64(interval) * 1_000_000_000
                let start = tick.exchangeTimestampNs / length * length
                let price = tick.price.fixedPoint
                if var bar = states[index].bars[slot], bar.startNs == start {
                    bar.high = max(bar.high, price)
                    bar.low = min(bar.low, price)
                    bar.close = price
                    bar.volume += tick.size
                    states[index].bars[slot] = bar
                    continue
                }
                if let finished = states[index].bars[slot], finished.startNs < start {
                    output.append(Self.barTick(tick.symbol, finished, interval: interval))
                }
                states[index].bars[slot] = Bar(startNs: start, open: price, high: price, low: price, close: price,
                    volume: tick.size)
            }
        default:
            break
        }
    }

    /// The clock: closes bars whose interval ended (by exchange time, judged against the wall clock) and drops
    /// venues silent past `staleAfterNs` from the NBBO.
    public mutating func advance(wallNs: UInt64, nowNs: UInt64, into output: inout [Tick]) {
        for index in venues.indices where !venues[index].stale && nowNs &- venues[index].lastNs > configuration.staleAfterNs {
            venues[index].stale = true
            let venue = venues[index].venue
            var notice = Tick(symbol: Topic.system, type: .status, venue: venue)
            notice.quality = .stale
            notice.reason = "\(venue) stale: nothing for \(configuration.staleAfterNs / 1_000_000_000) s; out of the NBBO"
            notice.exchangeTimestampNs = wallNs
            output.append(notice)
            dropFromNBBO(venue, wallNs: wallNs, into: &output)
        }
        guard nowNs >= nextBarCheckNs else { return }
        nextBarCheckNs = nowNs + 100_000_000
        for index in states.indices {
            for (slot, interval) in configuration.barIntervals.enumerated() {
                guard let bar = states[index].bars[slot] else { continue }
                // A bar closes once its interval is over by the wall clock, with a second's grace for late trades.
                if wallNs >= bar.startNs + UInt64(interval) * 1_000_000_000 + 1_000_000_000 {
                    output.append(Self.barTick(symbols[index], bar, interval: interval))
                    states[index].bars[slot] = nil
                }
            }
        }
    }

    private mutating func index(of symbol: String, symbolID: Int?) -> Int {
        if let symbolID {
            while symbolID >= states.count {
                symbols.append("")
                states.append(SymbolState(bars: Array(repeating: nil, count: configuration.barIntervals.count)))
            }
            if symbols[symbolID].isEmpty { symbols[symbolID] = symbol }
            return symbolID
        }
        if let index = symbolIndex[symbol] { return index }
        symbolIndex[symbol] = states.count
        symbols.append(symbol)
        states.append(SymbolState(bars: Array(repeating: nil, count: configuration.barIntervals.count)))
        return states.count - 1
    }

    private mutating func noteVenue(_ venue: String, nowNs: UInt64, into output: inout [Tick]) {
        if let index = venues.firstIndex(where: { $0.venue == venue }) {
            venues[index].lastNs = nowNs
            if venues[index].stale {
                venues[index].stale = false
                var notice = Tick(symbol: Topic.system, type: .status, venue: venue)
                notice.quality = .ok
                notice.reason = "\(venue) fresh again; back in the NBBO"
                output.append(notice)
            }
        } else {
            venues.append((venue, nowNs, false))
        }
    }

    private func isStale(_ venue: String) -> Bool { venues.first { $0.venue == venue }?.stale ?? false }

    /// Recomputes the NBBO of a symbol from its fresh venues; appends a CONS QUOTE when it changed.
    private func publishNBBO(_ symbol: String, _ state: inout SymbolState, exchangeNs: UInt64, into output: inout [Tick]) {
        var bid: Int64 = 0
        var bidSize: UInt64 = 0
        var ask: Int64 = 0
        var askSize: UInt64 = 0
        for quote in state.quotes where !isStale(quote.venue) {
            if quote.bid > 0 {
                if quote.bid > bid {
                    bid = quote.bid
                    bidSize = quote.bidSize
                } else if quote.bid == bid {
                    bidSize += quote.bidSize
                }
            }
            if quote.ask > 0 {
                if ask == 0 || quote.ask < ask {
                    ask = quote.ask
                    askSize = quote.askSize
                } else if quote.ask == ask {
                    askSize += quote.askSize
                }
            }
        }
        guard (bid, bidSize, ask, askSize) != state.published else { return }
        state.published = (bid, bidSize, ask, askSize)
        var nbbo = Tick(symbol: symbol, type: .quote, venue: Venue.consolidated)
        nbbo.bidPrice = Price(fixedPoint: bid)
        nbbo.bidSize = bidSize
        nbbo.askPrice = Price(fixedPoint: ask)
        nbbo.askSize = askSize
        nbbo.exchangeTimestampNs = exchangeNs
        output.append(nbbo)
    }

    /// A venue went stale: every NBBO it was part of is recomputed without it, and a symbol left with no fresh
    /// venue is marked STALE.
    private mutating func dropFromNBBO(_ venue: String, wallNs: UInt64, into output: inout [Tick]) {
        for index in states.indices where states[index].quotes.contains(where: { $0.venue == venue }) {
            var state = SymbolState(bars: [])
            swap(&state, &states[index])
            if configuration.nbbo { publishNBBO(symbols[index], &state, exchangeNs: wallNs, into: &output) }
            if !state.stale && state.quotes.allSatisfy({ isStale($0.venue) }) {
                state.stale = true
                output.append(Self.status(symbols[index], quality: .stale,
                    reason: "every venue quoting \(symbols[index]) is stale", exchangeNs: wallNs))
            }
            swap(&state, &states[index])
        }
    }

    static func status(_ symbol: String, quality: DataQuality, reason: String, exchangeNs: UInt64) -> Tick {
        var tick = Tick(symbol: symbol, type: .status, venue: Venue.consolidated)
        tick.quality = quality
        tick.reason = reason
        tick.exchangeTimestampNs = exchangeNs
        return tick
    }

    static func barTick(_ symbol: String, _ bar: Bar, interval: UInt32) -> Tick {
        var tick = Tick(symbol: symbol, type: .bar, venue: Venue.consolidated)
        tick.open = Price(fixedPoint: bar.open)
        tick.high = Price(fixedPoint: bar.high)
        tick.low = Price(fixedPoint: bar.low)
        tick.close = Price(fixedPoint: bar.close)
        tick.volume = bar.volume
        tick.barStartNs = bar.startNs
        tick.barIntervalSeconds = interval
        tick.exchangeTimestampNs = bar.startNs + UInt64(interval) * 1_000_000_000
        return tick
    }
}
