import MarketData

/// One venue's orders and the price levels they make, per stock locate. ITCH executions and cancels name only an
/// order reference, so the book is what gives them a price and a symbol.
///
/// Built for the per-message path: orders live in an `IntegerKeyTable`, symbols in an array indexed by stock locate
/// (a 16-bit number the venue assigns densely), and each side's levels in a sorted array with the best level last,
/// where most changes happen, so that the top of book is one read and the depth a walk from the end.
public struct VenueBook {
    public struct Order: Equatable, Sendable, BitwiseCopyable {
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

    /// One price level: the shares and the number of orders resting at the price.
    public struct Level: Equatable, Sendable {
        public var price: UInt32
        public var size: UInt64
        public var orders: UInt32
    }

    /// One side's levels sorted so that the best is last: bids by rising price, asks by falling price.
    struct SideLevels {
        var levels: [Level] = []
        let bestIsHighest: Bool

        init(bestIsHighest: Bool) { self.bestIsHighest = bestIsHighest }

        var best: Level? { levels.last }

        /// True when `price` sorts before `other` on this side (is worse than it).
        @inline(__always)
        private func isWorse(_ price: UInt32, than other: UInt32) -> Bool {
            bestIsHighest ? price < other : price > other
        }

        /// Index of the level at `price`, or where it would be inserted.
        private func position(of price: UInt32) -> Int {
            // Most changes are at or near the top, so look there first before a binary search.
            var high = levels.count
            if high > 0 && !isWorse(levels[high - 1].price, than: price) {
                if levels[high - 1].price == price { return high - 1 }
                high -= 1
            } else {
                return high
            }
            var low = 0
            while low < high {
                let middle = (low + high) / 2
                if isWorse(levels[middle].price, than: price) { low = middle + 1 } else { high = middle }
            }
            return low
        }

        mutating func change(price: UInt32, shares: Int64, orders: Int32) {
            let index = position(of: price)
            if index < levels.count && levels[index].price == price {
                let size = Int64(levels[index].size) + shares
                if size <= 0 {
                    levels.remove(at: index)
                } else {
                    levels[index].size = UInt64(size)
                    levels[index].orders = UInt32(clamping: Int64(levels[index].orders) + Int64(orders))
                }
            } else if shares > 0 {
                levels.insert(Level(price: price, size: UInt64(shares), orders: UInt32(clamping: max(0, orders))),
                    at: index)
            }
        }
    }

    struct SymbolBook {
        var bids = SideLevels(bestIsHighest: true)
        var asks = SideLevels(bestIsHighest: false)

        var top: TopOfBook {
            TopOfBook(bidPrice: bids.best?.price ?? 0, bidSize: bids.best?.size ?? 0,
                askPrice: asks.best?.price ?? 0, askSize: asks.best?.size ?? 0)
        }

        mutating func change(side: OrderSide, price: UInt32, shares: Int64, orders: Int32) {
            if side == .buy {
                bids.change(price: price, shares: shares, orders: orders)
            } else {
                asks.change(price: price, shares: shares, orders: orders)
            }
        }
    }

    private var orders: IntegerKeyTable<Order>
    /// Indexed by stock locate; grows to the highest locate seen.
    private var symbolBooks: [SymbolBook] = []

    /// A book whose order table holds `orders` before it first grows. Growing costs every add that follows it a
    /// little (each moves a few orders into the table twice the size; about 0.7 us for 262 000 adds at a million
    /// orders), so a venue's book is made for the orders it rests at its busiest (`book_orders`).
    public init(orders: Int = 16) { self.orders = IntegerKeyTable(minimumCapacity: orders) }

    /// Orders resting in the book.
    public var orderCount: Int { orders.count }

    /// Orders the book holds before its table next grows.
    public var orderCapacity: Int { orders.capacity }

    public func top(of locate: UInt16) -> TopOfBook {
        Int(locate) < symbolBooks.count ? symbolBooks[Int(locate)].top : TopOfBook()
    }

    /// The best `depth` levels of each side, best first (prices in ITCH Price(4), sizes summed over orders).
    public func depth(of locate: UInt16, levels depth: Int) -> (bids: [Level], asks: [Level]) {
        var bids: [Level] = []
        var asks: [Level] = []
        forEachLevel(of: locate, side: .buy, levels: depth) { bids.append($0) }
        forEachLevel(of: locate, side: .sell, levels: depth) { asks.append($0) }
        return (bids, asks)
    }

    /// Calls `body` with the best `depth` levels of one side, best first, copying no level array (BOOK ticks are
    /// built from it without allocating).
    public func forEachLevel(of locate: UInt16, side: OrderSide, levels depth: Int, _ body: (Level) -> Void) {
        guard Int(locate) < symbolBooks.count else { return }
        let levels = side == .buy ? symbolBooks[Int(locate)].bids.levels : symbolBooks[Int(locate)].asks.levels
        for level in levels.suffix(depth).reversed() { body(level) }
    }

    public func order(_ reference: UInt64) -> Order? { orders[reference] }

    public mutating func add(reference: UInt64, locate: UInt16, side: OrderSide, price: UInt32, shares: UInt32) {
        if let replaced = orders[reference] {
            // A venue reusing a live reference: the old order goes, so that its shares do not linger in a level.
            change(replaced, shares: -Int64(replaced.shares), orders: -1)
        }
        let order = Order(locate: locate, side: side, price: price, shares: shares)
        orders[reference] = order
        change(order, shares: Int64(shares), orders: 1)
    }

    /// Takes `shares` off an order (execution or partial cancel); returns the order as it was, nil when unknown.
    @discardableResult
    public mutating func reduce(reference: UInt64, shares: UInt32) -> Order? {
        var before: Order?
        var removesOrder = false
        orders.update(reference) { order in
            before = order
            let taken = min(shares, order.shares)
            order.shares -= taken
            removesOrder = order.shares == 0
        }
        guard let before else { return nil }
        if removesOrder { orders.removeValue(forKey: reference) }
        change(before, shares: -Int64(min(shares, before.shares)), orders: removesOrder ? -1 : 0)
        return before
    }

    /// Removes an order whole; returns it, nil when unknown.
    @discardableResult
    public mutating func delete(reference: UInt64) -> Order? {
        guard let order = orders.removeValue(forKey: reference) else { return nil }
        change(order, shares: -Int64(order.shares), orders: -1)
        return order
    }

    private mutating func change(_ order: Order, shares: Int64, orders: Int32) {
        let index = Int(order.locate)
        if index >= symbolBooks.count {
            symbolBooks.append(contentsOf: repeatElement(SymbolBook(), count: index + 1 - symbolBooks.count))
        }
        symbolBooks[index].change(side: order.side, price: order.price, shares: shares, orders: orders)
    }
}
