import MarketData
import Testing

@testable import FeedHandler

/// The book's fast structures (sorted level arrays, locate-indexed symbols; its order table in IntegerKeyTableTests)
/// checked against plain Swift dictionaries over long random sequences, where a wrong probe or shift shows up as a
/// mismatch.
@Suite struct VenueBookModelTests {

    /// A book made for `book_orders` holds that many without growing its order table (growing moves every order,
    /// a few with each add that follows); one order more grows it, and the orders are all still there.
    @Test func aBookMadeForItsOrdersHoldsThemWithoutGrowing() {
        var book = VenueBook(orders: 10_000)
        let made = book.orderCapacity
        #expect(made >= 10_000)
        for reference in UInt64(1)...UInt64(made) {
            book.add(reference: reference, locate: 1, side: .buy, price: 1_000 + UInt32(reference % 50), shares: 100)
        }
        #expect(book.orderCapacity == made && book.orderCount == made)
        book.add(reference: UInt64(made) + 1, locate: 1, side: .sell, price: 5_000, shares: 100)
        #expect(book.orderCapacity > made && book.orderCount == made + 1)
        #expect(book.delete(reference: 1) != nil && book.delete(reference: UInt64(made) + 1) != nil)
    }

    @Test func bookTopAndDepthMatchAModelOverRandomOrderFlow() {
        var random = SplitMix64(seed: 42)
        var book = VenueBook()
        var orders: [UInt64: VenueBook.Order] = [:]
        var nextReference: UInt64 = 1
        for step in 0..<60_000 {
            let action = UInt8.random(in: 0..<10, using: &random)
            if action < 5 || orders.isEmpty {
                let locate = UInt16.random(in: 1...3, using: &random)
                let side: OrderSide = Bool.random(using: &random) ? .buy : .sell
                let price = UInt32.random(in: 990...1_010, using: &random) * 100
                let shares = UInt32.random(in: 1...500, using: &random)
                book.add(reference: nextReference, locate: locate, side: side, price: price, shares: shares)
                orders[nextReference] = .init(locate: locate, side: side, price: price, shares: shares)
                nextReference += 1
            } else {
                let reference = orders.keys.randomElement(using: &random)!
                if action < 8 {
                    let shares = UInt32.random(in: 1...300, using: &random)
                    #expect(book.reduce(reference: reference, shares: shares) == orders[reference])
                    orders[reference]!.shares -= min(shares, orders[reference]!.shares)
                    if orders[reference]!.shares == 0 { orders[reference] = nil }
                } else {
                    #expect(book.delete(reference: reference) == orders.removeValue(forKey: reference))
                }
            }
            guard step % 500 == 0 else { continue }
            #expect(book.orderCount == orders.count)
            for locate in UInt16(1)...3 {
                let (bids, asks) = book.depth(of: locate, levels: 5)
                #expect(bids == Self.levels(orders.values, locate: locate, side: .buy, best: >, depth: 5))
                #expect(asks == Self.levels(orders.values, locate: locate, side: .sell, best: <, depth: 5))
                let top = book.top(of: locate)
                #expect(top.bidPrice == bids.first?.price ?? 0 && top.bidSize == bids.first?.size ?? 0)
                #expect(top.askPrice == asks.first?.price ?? 0 && top.askSize == asks.first?.size ?? 0)
            }
        }
    }

    @Test func reusingALiveReferenceReplacesTheOldOrderInItsLevel() {
        var book = VenueBook()
        book.add(reference: 1, locate: 1, side: .buy, price: 10_000, shares: 100)
        book.add(reference: 1, locate: 1, side: .buy, price: 10_100, shares: 50)
        #expect(book.depth(of: 1, levels: 5).bids == [.init(price: 10_100, size: 50, orders: 1)])
        #expect(book.orderCount == 1)
    }

    static func levels(
        _ orders: Dictionary<UInt64, VenueBook.Order>.Values, locate: UInt16, side: OrderSide,
        best: (UInt32, UInt32) -> Bool, depth: Int
    ) -> [VenueBook.Level] {
        var byPrice: [UInt32: VenueBook.Level] = [:]
        for order in orders where order.locate == locate && order.side == side {
            byPrice[order.price, default: .init(price: order.price, size: 0, orders: 0)].size += UInt64(order.shares)
            byPrice[order.price]!.orders += 1
        }
        return Array(byPrice.values.sorted { best($0.price, $1.price) }.prefix(depth))
    }
}
