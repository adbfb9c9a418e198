import Testing

import MarketData
@testable import TickerPlant

/// The NBBO across venues (with one going stale and coming back), and bars.
@Suite struct AggregatorTests {
    static let second: UInt64 = 1_000_000_000

    static func quote(_ venue: String, bid: String, bidSize: UInt64 = 100, ask: String, askSize: UInt64 = 100,
        symbol: String = "AAPL") -> Tick
    {
        var tick = Tick(symbol: symbol, type: .quote, venue: venue)
        tick.bidPrice = try! Price(parsing: bid)
        tick.bidSize = bidSize
        tick.askPrice = try! Price(parsing: ask)
        tick.askSize = askSize
        return tick
    }

    static func trade(_ price: String, size: UInt64, at exchangeNs: UInt64, venue: String = "XNAS") -> Tick {
        var tick = Tick.trade(symbol: "AAPL", venue: venue, price: try! Price(parsing: price), size: size)
        tick.exchangeTimestampNs = exchangeNs
        return tick
    }

    @Test func theNBBOTakesTheBestOfEachSideAcrossVenuesAndAddsSizesAtTheBest() {
        var aggregator = Aggregator(configuration: AggregationConfiguration())
        var output: [Tick] = []
        aggregator.observe(Self.quote("XNAS", bid: "100.00", ask: "100.05"), nowNs: 1, into: &output)
        aggregator.observe(Self.quote("ARCX", bid: "100.01", ask: "100.05", askSize: 300), nowNs: 2, into: &output)
        aggregator.observe(Self.quote("ARCX", bid: "100.01", ask: "100.05", askSize: 300), nowNs: 3, into: &output)
        #expect(output.count == 2, "an unchanged NBBO is not published again")
        let nbbo = output[1]
        #expect(nbbo.venue == "CONS" && nbbo.type == .quote)
        #expect(nbbo.bidPrice.description == "100.01" && nbbo.bidSize == 100)
        #expect(nbbo.askPrice.description == "100.05" && nbbo.askSize == 400)
    }

    @Test func aStaleVenueLeavesTheNBBOWithAStatusAndComesBackWhenItQuotesAgain() {
        var configuration = AggregationConfiguration()
        configuration.staleAfterNs = 5 * Self.second
        var aggregator = Aggregator(configuration: configuration)
        var output: [Tick] = []
        aggregator.observe(Self.quote("XNAS", bid: "100.00", ask: "100.10"), nowNs: 0, into: &output)
        aggregator.observe(Self.quote("ARCX", bid: "100.02", ask: "100.08"), nowNs: 1, into: &output)
        // XNAS keeps quoting; ARCX goes silent.
        aggregator.observe(Self.quote("XNAS", bid: "100.00", ask: "100.09"), nowNs: 4 * Self.second, into: &output)
        output.removeAll()
        aggregator.advance(wallNs: 1, nowNs: 6 * Self.second, into: &output)
        #expect(output.first?.symbol == "#SYS" && output.first?.quality == .stale)
        #expect(output.first?.reason.hasPrefix("ARCX stale") == true)
        let withoutARCX = output.filter { $0.type == .quote }
        #expect(withoutARCX.map(\.bidPrice.description) == ["100"] && withoutARCX.map(\.askPrice.description) == ["100.09"])
        #expect(aggregator.staleVenues == ["ARCX"])
        // XNAS goes stale too: AAPL has no fresh venue left.
        output.removeAll()
        aggregator.advance(wallNs: 1, nowNs: 10 * Self.second, into: &output)
        #expect(output.contains { $0.symbol == "AAPL" && $0.type == .status && $0.quality == .stale })
        // ARCX quotes again: fresh, back in the NBBO, AAPL OK again.
        output.removeAll()
        aggregator.observe(Self.quote("ARCX", bid: "100.03", ask: "100.07"), nowNs: 11 * Self.second, into: &output)
        #expect(output.contains { $0.symbol == "#SYS" && $0.quality == .ok && $0.reason.hasPrefix("ARCX fresh") })
        #expect(output.contains { $0.symbol == "AAPL" && $0.type == .status && $0.quality == .ok })
        #expect(output.last?.type == .quote && output.last?.bidPrice.description == "100.03")
    }

    @Test func barsCarryOpenHighLowCloseAndVolumePerIntervalAndCloseByTheClock() {
        var configuration = AggregationConfiguration()
        configuration.barIntervals = [1, 60]
        var aggregator = Aggregator(configuration: configuration)
        var output: [Tick] = []
        let base = 1_764_000_000 * Self.second  // a whole minute
        aggregator.observe(Self.trade("10.00", size: 100, at: base + 100), nowNs: 1, into: &output)
        aggregator.observe(Self.trade("10.50", size: 200, at: base + 200), nowNs: 1, into: &output)
        aggregator.observe(Self.trade("9.90", size: 50, at: base + 300, venue: "ARCX"), nowNs: 1, into: &output)
        aggregator.observe(Self.trade("10.10", size: 10, at: base + Self.second + 5), nowNs: 1, into: &output)
        // The first second closed when a trade of the next second came.
        #expect(output.count == 1)
        let bar = output[0]
        #expect(bar.type == .bar && bar.venue == "CONS" && bar.barIntervalSeconds == 1 && bar.barStartNs == base)
        #expect([bar.open, bar.high, bar.low, bar.close].map(\.description) == ["10", "10.5", "9.9", "9.9"])
        #expect(bar.volume == 350)
        // The clock closes the rest a second after their intervals end.
        output.removeAll()
        aggregator.advance(wallNs: base + 2 * Self.second, nowNs: 1, into: &output)
        #expect(output.map(\.barIntervalSeconds) == [])
        aggregator.advance(wallNs: base + 61 * Self.second, nowNs: 200_000_000, into: &output)
        #expect(output.map(\.barIntervalSeconds).sorted() == [1, 60])
        let minute = output.first { $0.barIntervalSeconds == 60 }
        #expect(minute?.volume == 360 && minute?.close.description == "10.1" && minute?.high.description == "10.5")
    }
}
