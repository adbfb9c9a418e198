import MarketData

/// The market the per-tick benchmarks read, as a feed handler publishes it: 500 symbols, three quotes to two trades,
/// on two venues, every feed stamp set; each tick already encoded (protobuf) so that a benchmark measures only its
/// own work on it.
public enum SyntheticTicks {
    public static let market: [[UInt8]] = {
        let encoder = TickEncoder()
        return (1...50_000).map { index in
            let symbol = "S\((index &* 7919) % 500)"
            let price = Int64(100_000_000 + (index % 50) * 10_000)
            let venue = index % 3 == 0 ? "ARCX" : "XNAS"
            var tick: Tick
            if index % 5 < 2 {
                tick = Tick.trade(symbol: symbol, venue: venue, price: Price(fixedPoint: price), size: 100)
            } else {
                tick = Tick(symbol: symbol, type: .quote, venue: venue)
                tick.bidPrice = Price(fixedPoint: price - 10_000)
                tick.askPrice = Price(fixedPoint: price + 10_000)
                tick.bidSize = 300
                tick.askSize = 200
            }
            tick.streamSequence = UInt64(index)
            tick.exchangeTimestampNs = 1_764_000_000_000_000_000 + UInt64(index) * 1_000
            tick.feedReceiveNs = tick.exchangeTimestampNs + 500
            tick.feedTransmitNs = tick.exchangeTimestampNs + 900
            return encoder.encodeToArray(tick)
        }
    }()

    /// The symbols of `market`.
    public static let symbols = (0..<500).map { "S\($0)" }
}
