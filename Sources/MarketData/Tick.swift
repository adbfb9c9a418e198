/// What a tick says (Proto/tick.proto `TickType`). The raw values are the protobuf enum numbers.
public enum TickType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case trade = 1, quote = 2, book = 3, status = 4, bar = 5

    /// The type letter of the topic `SYMBOL|T` (DESIGN section 5).
    public var topicLetter: UInt8 {
        switch self {
        case .trade: UInt8(ascii: "T")
        case .quote: UInt8(ascii: "Q")
        case .book: UInt8(ascii: "B")
        case .status: UInt8(ascii: "S")
        case .bar: UInt8(ascii: "R")
        }
    }

    public init?(topicLetter: UInt8) {
        guard let type = TickType.allCases.first(where: { $0.topicLetter == topicLetter }) else { return nil }
        self = type
    }

    /// The name consumers see ("TRADE", "QUOTE", ...).
    public var description: String {
        switch self {
        case .trade: "TRADE"
        case .quote: "QUOTE"
        case .book: "BOOK"
        case .status: "STATUS"
        case .bar: "BAR"
        }
    }
}

/// A symbol's trading state (STATUS ticks).
public enum TradingState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case unspecified = 0, trading = 1, halted = 2, paused = 3, quotationOnly = 4

    public var description: String {
        switch self {
        case .unspecified: "UNSPECIFIED"
        case .trading: "TRADING"
        case .halted: "HALTED"
        case .paused: "PAUSED"
        case .quotationOnly: "QUOTATION_ONLY"
        }
    }
}

/// Whether the values shown for a symbol can be trusted (STATUS ticks).
public enum DataQuality: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case unspecified = 0, ok = 1, stale = 2, gap = 3, recovering = 4

    public var description: String {
        switch self {
        case .unspecified: "UNSPECIFIED"
        case .ok: "OK"
        case .stale: "STALE"
        case .gap: "GAP"
        case .recovering: "RECOVERING"
        }
    }
}

/// One price level of a BOOK tick.
public struct BookLevel: Equatable, Sendable {
    public var price: Price
    public var size: UInt64
    public var orders: UInt32

    public init(price: Price, size: UInt64, orders: UInt32 = 0) {
        self.price = price
        self.size = size
        self.orders = orders
    }
}

/// The one normalized update every hop carries (Proto/tick.proto). Fields a type does not use stay zero.
public struct Tick: Equatable, Sendable {
    public var symbol: String
    public var type: TickType
    /// ISO 10383 MIC of the source venue, or "CONS" for consolidated values.
    public var venue: String

    /// Nanoseconds since the Unix epoch (CLOCK_REALTIME) of the venue's own timestamp and of each hop.
    public var exchangeTimestampNs: UInt64 = 0
    public var feedReceiveNs: UInt64 = 0
    public var feedTransmitNs: UInt64 = 0
    public var plantReceiveNs: UInt64 = 0
    public var plantTransmitNs: UInt64 = 0

    /// The source's own sequence number.
    public var venueSequence: UInt64 = 0
    /// Per publisher and stream, with no gaps on the wire.
    public var streamSequence: UInt64 = 0
    /// Per symbol, assigned by plantd.
    public var symbolSequence: UInt64 = 0

    // TRADE
    public var price: Price = .zero
    /// Shares; 0 when the venue does not report a size.
    public var size: UInt64 = 0
    public var tradeID: UInt64 = 0

    // QUOTE
    public var bidPrice: Price = .zero
    public var askPrice: Price = .zero
    public var bidSize: UInt64 = 0
    public var askSize: UInt64 = 0

    // BOOK
    public var bids: [BookLevel] = []
    public var asks: [BookLevel] = []

    // STATUS
    public var state: TradingState = .unspecified
    public var quality: DataQuality = .unspecified
    public var reason: String = ""

    // BAR
    public var open: Price = .zero
    public var high: Price = .zero
    public var low: Price = .zero
    public var close: Price = .zero
    public var volume: UInt64 = 0
    public var barStartNs: UInt64 = 0
    public var barIntervalSeconds: UInt32 = 0

    // HEARTBEAT (#HB): when this plantd process started (CLOCK_REALTIME ns); it changes when the plant restarts.
    public var plantSession: UInt64 = 0

    /// Whether the time between its stamps is latency: a BOOK waits on purpose (conflated, at most one per
    /// `book_interval`) and a BAR is made at its interval's end, so their stamps' gaps say nothing of how fast the
    /// chain is and would swamp the figures of the ticks that are passed on at once.
    public var measuresLatency: Bool { type != .book && type != .bar }

    public init(symbol: String, type: TickType, venue: String) {
        self.symbol = symbol
        self.type = type
        self.venue = venue
    }

    public static func trade(
        symbol: String, venue: String, price: Price, size: UInt64, exchangeTimestampNs: UInt64 = 0
    ) -> Tick {
        var tick = Tick(symbol: symbol, type: .trade, venue: venue)
        tick.price = price
        tick.size = size
        tick.exchangeTimestampNs = exchangeTimestampNs
        return tick
    }

    /// Every field back to its zero (type TRADE until set), keeping the book arrays' capacity: a decoder that fills
    /// one tick again and again allocates nothing for them.
    ///
    /// Field by field (a new field must be added here: a test holds `reset` to a fresh tick with every field set):
    /// building a whole new tick and moving the arrays back cost a tenth of reading one.
    public mutating func reset() {
        symbol = ""
        type = .trade
        venue = ""
        exchangeTimestampNs = 0
        feedReceiveNs = 0
        feedTransmitNs = 0
        plantReceiveNs = 0
        plantTransmitNs = 0
        venueSequence = 0
        streamSequence = 0
        symbolSequence = 0
        price = .zero
        size = 0
        tradeID = 0
        bidPrice = .zero
        askPrice = .zero
        bidSize = 0
        askSize = 0
        bids.removeAll(keepingCapacity: true)
        asks.removeAll(keepingCapacity: true)
        state = .unspecified
        quality = .unspecified
        reason = ""
        open = .zero
        high = .zero
        low = .zero
        close = .zero
        volume = 0
        barStartNs = 0
        barIntervalSeconds = 0
        plantSession = 0
    }

    /// This tick made equal to `other`, its book levels copied into its own arrays rather than sharing `other`'s.
    /// A tick kept aside while `other` is a decoder's scratch tick must be filled this way: with shared arrays, the
    /// next decode into the scratch tick would have to copy them (an allocation), and plain assignment would drop
    /// this tick's capacity.
    public mutating func copyKeepingArrays(of other: Tick) {
        var ownBids: [BookLevel] = []
        var ownAsks: [BookLevel] = []
        swap(&ownBids, &bids)
        swap(&ownAsks, &asks)
        self = other
        ownBids.removeAll(keepingCapacity: true)
        ownBids.append(contentsOf: other.bids)
        ownAsks.removeAll(keepingCapacity: true)
        ownAsks.append(contentsOf: other.asks)
        swap(&ownBids, &bids)
        swap(&ownAsks, &asks)
    }

    /// The topic this tick is published under.
    public var topic: String { Topic.make(symbol: symbol, type: type) }
}
