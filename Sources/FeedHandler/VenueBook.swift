/// One venue's orders and the price levels they make, per stock locate. ITCH executions and cancels name only an
/// order reference, so the book is what gives them a price and a symbol.
public struct VenueBook {
    public struct Order: Equatable, Sendable {
        public var locate: UInt16
        public var side: OrderSide
        /// ITCH Price(4).
        public var price: UInt32
        public var shares: UInt32
    }

    /// The best bid and offer of one symbol; price 0 means that side is empty.
    public struct TopOfBook: Equatable, Sendable {
        public var bidPrice: UInt32 = 0
        public var bidSize: UInt64 = 0
        public var askPrice: UInt32 = 0
        public var askSize: UInt64 = 0
    }

    struct SymbolLevels {
        var bids: [UInt32: UInt64] = [:]
        var asks: [UInt32: UInt64] = [:]
        var top = TopOfBook()

        mutating func change(side: OrderSide, price: UInt32, by delta: Int64) {
            if side == .buy {
                let size = UInt64(max(0, Int64(bids[price, default: 0]) + delta))
                bids[price] = size == 0 ? nil : size
                if size > 0 && price >= top.bidPrice {
                    top.bidPrice = price
                    top.bidSize = size
                } else if price == top.bidPrice {
                    // The best level emptied: the next best is found by a scan (books are shallow per symbol).
                    top.bidPrice = bids.keys.max() ?? 0
                    top.bidSize = bids[top.bidPrice] ?? 0
                }
            } else {
                let size = UInt64(max(0, Int64(asks[price, default: 0]) + delta))
                asks[price] = size == 0 ? nil : size
                if size > 0 && (top.askPrice == 0 || price <= top.askPrice) {
                    top.askPrice = price
                    top.askSize = size
                } else if price == top.askPrice {
                    top.askPrice = asks.keys.min() ?? 0
                    top.askSize = asks[top.askPrice] ?? 0
                }
            }
        }
    }

    public private(set) var orders: [UInt64: Order] = [:]
    var levels: [UInt16: SymbolLevels] = [:]

    public init() {}

    public func top(of locate: UInt16) -> TopOfBook { levels[locate]?.top ?? TopOfBook() }

    /// The best `depth` levels of each side, best first (prices in ITCH Price(4), sizes summed over orders).
    public func depth(of locate: UInt16, levels depth: Int) -> (bids: [(price: UInt32, size: UInt64)],
        asks: [(price: UInt32, size: UInt64)])
    {
        guard let book = levels[locate] else { return ([], []) }
        let bids = book.bids.sorted { $0.key > $1.key }.prefix(depth).map { (price: $0.key, size: $0.value) }
        let asks = book.asks.sorted { $0.key < $1.key }.prefix(depth).map { (price: $0.key, size: $0.value) }
        return (Array(bids), Array(asks))
    }

    public func order(_ reference: UInt64) -> Order? { orders[reference] }

    public mutating func add(reference: UInt64, locate: UInt16, side: OrderSide, price: UInt32, shares: UInt32) {
        orders[reference] = Order(locate: locate, side: side, price: price, shares: shares)
        levels[locate, default: SymbolLevels()].change(side: side, price: price, by: Int64(shares))
    }

    /// Takes `shares` off an order (execution or partial cancel); returns the order as it was, nil when unknown.
    @discardableResult
    public mutating func reduce(reference: UInt64, shares: UInt32) -> Order? {
        guard var order = orders[reference] else { return nil }
        let before = order
        let taken = min(shares, order.shares)
        order.shares -= taken
        orders[reference] = order.shares == 0 ? nil : order
        levels[order.locate, default: SymbolLevels()].change(side: order.side, price: order.price, by: -Int64(taken))
        return before
    }

    /// Removes an order whole; returns it, nil when unknown.
    @discardableResult
    public mutating func delete(reference: UInt64) -> Order? {
        guard let order = orders.removeValue(forKey: reference) else { return nil }
        levels[order.locate, default: SymbolLevels()].change(side: order.side, price: order.price, by: -Int64(order.shares))
        return order
    }
}
