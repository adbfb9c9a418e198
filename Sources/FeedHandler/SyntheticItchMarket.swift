/// A deterministic market of ITCH messages for benchmarks (`make bench`, `mktctl bench feed`): a stock directory,
/// then rounds in which orders are added near a moving price and later executed (in part, then whole) or deleted, so
/// the live book neither grows nor empties. The last orders are deleted at the end, so the rounds can be replayed
/// again and again from the same book.
public enum SyntheticItchMarket {
    public static func directorySize(symbols: Int) -> Int { symbols }

    public static func messages(symbols: Int, orders: Int) -> [[UInt8]] {
        var messages: [[UInt8]] = []
        for locate in 1...symbols {
            messages.append(ItchEncoder.stockDirectory(ItchHeader(stockLocate: UInt16(locate), timestamp: 0),
                symbol: "S\(locate)"))
        }
        var match: UInt64 = 1
        let live = 8  // orders alive per symbol at any time
        for reference in 1...UInt64(orders) {
            let locate = UInt16((reference - 1) % UInt64(symbols) + 1)
            let header = ItchHeader(stockLocate: locate, timestamp: reference)
            let side: OrderSide = reference % 2 == 0 ? .buy : .sell
            let price = UInt32(1_000_000 + (side == .buy ? -1 : 1) * Int(reference % 7) * 100)
            messages.append(ItchEncoder.addOrder(header, reference: reference, side: side, shares: 300,
                symbol: "S\(locate)", price: price))
            // Retire the order added `live` rounds ago for this symbol.
            let old = reference &- UInt64(symbols * live)
            guard reference > UInt64(symbols * live) else { continue }
            switch old % 3 {
            case 0:
                messages.append(ItchEncoder.orderExecuted(header, reference: old, shares: 100, matchNumber: match))
                messages.append(ItchEncoder.orderExecuted(header, reference: old, shares: 200, matchNumber: match + 1))
                match += 2
            case 1:
                messages.append(ItchEncoder.orderCancel(header, reference: old, shares: 100))
                messages.append(ItchEncoder.orderDelete(header, reference: old))
            default:
                messages.append(ItchEncoder.orderDelete(header, reference: old))
            }
        }
        // Close the remaining orders so that the next pass over the messages starts from the same book.
        for old in (UInt64(orders) - UInt64(symbols * live) + 1)...UInt64(orders) {
            let locate = UInt16((old - 1) % UInt64(symbols) + 1)
            messages.append(ItchEncoder.orderDelete(ItchHeader(stockLocate: locate, timestamp: old), reference: old))
        }
        return messages
    }
}
