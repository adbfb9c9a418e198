import Testing

@testable import FeedHandler
import MarketData

/// Every message type of TotalView-ITCH 5.0, each built by hand from the specification's offsets.
@Suite struct EveryItchMessageType {
    typealias B = SpecBytes

    static func header(_ type: Character, tracking: UInt64 = 0) -> [UInt8] {
        [type.asciiValue!] + B.be(1, 2) + B.be(tracking, 2) + B.be(B.tenAM, 6)
    }

    static let header = ItchHeader(stockLocate: 1, trackingNumber: 0, timestamp: B.tenAM)

    func decode(_ bytes: [UInt8]) throws -> ItchMessage {
        try bytes.withUnsafeBytes { try ItchDecoder.decode($0) }
    }

    @Test func everyTypeHasItsSpecifiedLength() {
        let lengths: [Character: Int] = ["S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35,
            "h": 21, "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19, "I": 50,
            "N": 20, "O": 48]
        for (type, length) in lengths { #expect(ItchDecoder.specifiedLength(of: type.asciiValue!) == length, "\(type)") }
        #expect(ItchDecoder.specifiedLength(of: UInt8(ascii: "Z")) == nil)
    }

    @Test func systemEventAndRegSHO() throws {
        #expect(try decode(Self.header("S") + [UInt8(ascii: "Q")]) == .systemEvent(Self.header, eventCode: UInt8(ascii: "Q")))
        #expect(try decode(Self.header("Y") + B.alpha("AAPL", 8) + [UInt8(ascii: "1")])
            == .regSHORestriction(Self.header, stock: StockName("AAPL"), action: UInt8(ascii: "1")))
    }

    @Test func marketParticipantPosition() throws {
        let bytes = Self.header("L") + B.alpha("GSCO", 4) + B.alpha("AAPL", 8) + Array("YNA".utf8)
        #expect(try decode(bytes) == .marketParticipantPosition(Self.header, mpid: 0x4753_434F, stock: StockName("AAPL"),
            primaryMarketMaker: true, mode: UInt8(ascii: "N"), state: UInt8(ascii: "A")))
    }

    @Test func circuitBreakerLevelsAndStatus() throws {
        let levels = Self.header("V") + B.be(4_500_00000000, 8) + B.be(4_200_00000000, 8) + B.be(3_900_00000000, 8)
        #expect(try decode(levels) == .mwcbDeclineLevel(Self.header, level1: 4_500_00000000, level2: 4_200_00000000,
            level3: 3_900_00000000))
        #expect(try decode(Self.header("W") + [UInt8(ascii: "2")]) == .mwcbStatus(Self.header, breachedLevel: UInt8(ascii: "2")))
    }

    @Test func ipoQuotingPeriod() throws {
        let bytes = Self.header("K") + B.alpha("NEWCO", 8) + B.be(36_000, 4) + [UInt8(ascii: "A")] + B.be(250_000, 4)
        #expect(try decode(bytes) == .ipoQuotingPeriod(Self.header, stock: StockName("NEWCO"), releaseTime: 36_000,
            qualifier: UInt8(ascii: "A"), price: 250_000))
    }

    @Test func luldAuctionCollar() throws {
        let bytes = Self.header("J") + B.alpha("AAPL", 8) + B.be(1_785_200, 4) + B.be(1_874_400, 4) + B.be(1_696_000, 4)
            + B.be(1, 4)
        #expect(try decode(bytes) == .luldAuctionCollar(Self.header, stock: StockName("AAPL"), referencePrice: 1_785_200,
            upperPrice: 1_874_400, lowerPrice: 1_696_000, extension: 1))
    }

    @Test func operationalHalt() throws {
        #expect(try decode(Self.header("h") + B.alpha("AAPL", 8) + Array("QH".utf8))
            == .operationalHalt(Self.header, stock: StockName("AAPL"), marketCode: UInt8(ascii: "Q"), action: UInt8(ascii: "H")))
    }

    @Test func addOrderWithAttribution() throws {
        let bytes = Self.header("F") + B.be(7, 8) + [UInt8(ascii: "S")] + B.be(500, 4) + B.alpha("MSFT", 8)
            + B.be(4_101_000, 4) + B.alpha("GSCO", 4)
        #expect(try decode(bytes) == .addOrder(Self.header, reference: 7, side: .sell, shares: 500, stock: StockName("MSFT"),
            price: 4_101_000, attribution: 0x4753_434F))
    }

    @Test func orderReplace() throws {
        let bytes = Self.header("U") + B.be(7, 8) + B.be(8, 8) + B.be(300, 4) + B.be(4_102_000, 4)
        #expect(try decode(bytes) == .orderReplace(Self.header, originalReference: 7, newReference: 8, shares: 300,
            price: 4_102_000))
    }

    @Test func crossTradeAndBrokenTrade() throws {
        let cross = Self.header("Q") + B.be(10_000, 8) + B.alpha("AAPL", 8) + B.be(1_785_000, 4) + B.be(99, 8)
            + [UInt8(ascii: "O")]
        #expect(try decode(cross) == .crossTrade(Self.header, shares: 10_000, stock: StockName("AAPL"), price: 1_785_000,
            matchNumber: 99, crossType: UInt8(ascii: "O")))
        #expect(try decode(Self.header("B") + B.be(99, 8)) == .brokenTrade(Self.header, matchNumber: 99))
    }

    @Test func netOrderImbalanceAndRetailInterest() throws {
        let imbalance = Self.header("I") + B.be(1000, 8) + B.be(200, 8) + [UInt8(ascii: "B")] + B.alpha("AAPL", 8)
            + B.be(1_790_000, 4) + B.be(1_786_000, 4) + B.be(1_785_500, 4) + [UInt8(ascii: "C"), UInt8(ascii: "L")]
        #expect(try decode(imbalance) == .netOrderImbalance(Self.header, pairedShares: 1000, imbalanceShares: 200,
            direction: UInt8(ascii: "B"), stock: StockName("AAPL"), farPrice: 1_790_000, nearPrice: 1_786_000,
            referencePrice: 1_785_500, crossType: UInt8(ascii: "C"), priceVariation: UInt8(ascii: "L")))
        #expect(try decode(Self.header("N") + B.alpha("AAPL", 8) + [UInt8(ascii: "A")])
            == .retailInterest(Self.header, stock: StockName("AAPL"), flag: UInt8(ascii: "A")))
    }

    @Test func directListingPriceDiscovery() throws {
        let bytes = Self.header("O") + B.alpha("DLCO", 8) + [UInt8(ascii: "Y")] + B.be(100_000, 4) + B.be(300_000, 4)
            + B.be(200_000, 4) + B.be(36_000_000_000_000, 8) + B.be(150_000, 4) + B.be(250_000, 4)
        #expect(try decode(bytes) == .directListingPriceDiscovery(Self.header, stock: StockName("DLCO"),
            openEligible: true, minimumPrice: 100_000, maximumPrice: 300_000, nearExecutionPrice: 200_000,
            nearExecutionTime: 36_000_000_000_000, lowerCollar: 150_000, upperCollar: 250_000))
    }
}

@Suite struct ItchStatusAndCorrections {
    func run(_ messages: [[UInt8]]) throws -> (ticks: [Tick], normalizer: ItchNormalizer) {
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0)
        var ticks: [Tick] = []
        for (index, bytes) in messages.enumerated() {
            normalizer.handle(try bytes.withUnsafeBytes { try ItchDecoder.decode($0) }, venueSequence: UInt64(index + 1),
                into: &ticks)
        }
        return (ticks, normalizer)
    }

    @Test func aBrokenTradeIsPublishedForTheSymbolOfTheTradeItBreaks() throws {
        let broken = EveryItchMessageType.header("B") + SpecBytes.be(555, 8)
        let (ticks, _) = try run([SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.orderExecuted, broken])
        let correction = try #require(ticks.last)
        #expect(correction.type == .status)
        #expect(correction.symbol == "AAPL")
        #expect(correction.tradeID == 555)
        #expect(correction.reason == "BROKEN TRADE 555")
        let (unknown, normalizer) = try run([SpecBytes.stockDirectory, broken])
        #expect(unknown.isEmpty)
        #expect(normalizer.counters.unknownBrokenTrades == 1)
    }

    @Test func aBrokenTradeOlderThanTheRememberedMatchesIsCountedNotMisattributed() throws {
        // Match 555 + 2^20 takes 555's place: breaking 555 afterwards must not name the later trade's symbol.
        let later = SpecBytes.be(1, 2) + SpecBytes.be(9, 2) + SpecBytes.be(1, 6)
        let execution = [UInt8(ascii: "E")] + later + SpecBytes.be(1001, 8) + SpecBytes.be(10, 4)
            + SpecBytes.be(555 + (1 << 20), 8)  // the default rememberedMatches
        let broken = EveryItchMessageType.header("B") + SpecBytes.be(555, 8)
        let (ticks, normalizer) = try run([SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.orderExecuted,
            execution, broken])
        #expect(ticks.filter { $0.type == .status }.isEmpty)
        #expect(normalizer.counters.unknownBrokenTrades == 1)
    }

    @Test func aCircuitBreakerBreachHaltsTheMarketOnSys() throws {
        let levels = EveryItchMessageType.header("V") + SpecBytes.be(4_500_00000000, 8) + SpecBytes.be(4_200_00000000, 8)
            + SpecBytes.be(3_900_00000000, 8)
        let (ticks, _) = try run([levels, EveryItchMessageType.header("W") + [UInt8(ascii: "1")]])
        #expect(ticks.count == 1)
        #expect(ticks[0].symbol == Topic.system)
        #expect(ticks[0].state == .halted)
        #expect(ticks[0].reason == "MWCB level 1 breached at 4500")
    }

    @Test func aLuldCollarPausesTheSymbolWithItsBand() throws {
        let collar = EveryItchMessageType.header("J") + SpecBytes.alpha("AAPL", 8) + SpecBytes.be(1_785_200, 4)
            + SpecBytes.be(1_874_400, 4) + SpecBytes.be(1_696_000, 4) + SpecBytes.be(0, 4)
        let (ticks, _) = try run([SpecBytes.stockDirectory, collar])
        #expect(ticks.count == 1)
        #expect(ticks[0].symbol == "AAPL")
        #expect(ticks[0].state == .paused)
        #expect(ticks[0].reason == "LULD auction collar: reference 178.52, 169.6-187.44, extension 0")
    }

    @Test func bookStateFollowsAddsPartialExecutionsReplacesCancelsAndDeletes() throws {
        let h = ItchHeader(stockLocate: 1, timestamp: 1)
        var book = VenueBook()
        book.add(reference: 1, locate: 1, side: .buy, price: 1_000_000, shares: 300)
        book.add(reference: 2, locate: 1, side: .buy, price: 1_001_000, shares: 100)
        book.add(reference: 3, locate: 1, side: .sell, price: 1_002_000, shares: 200)
        #expect(book.top(of: 1) == .init(bidPrice: 1_001_000, bidSize: 100, askPrice: 1_002_000, askSize: 200))
        book.reduce(reference: 2, shares: 40)  // partial execution
        #expect(book.top(of: 1).bidSize == 60)
        book.delete(reference: 2)
        #expect(book.top(of: 1) == .init(bidPrice: 1_000_000, bidSize: 300, askPrice: 1_002_000, askSize: 200))
        book.reduce(reference: 1, shares: 300)  // fully executed: gone
        #expect(book.order(1) == nil)
        #expect(book.top(of: 1).bidPrice == 0)
        // Replace through the normalizer: the new order keeps the side and takes the new price.
        let (ticks, normalizer) = try run([
            SpecBytes.stockDirectory,
            ItchEncoder.addOrder(h, reference: 10, side: .sell, shares: 100, symbol: "AAPL", price: 1_790_000),
            ItchEncoder.orderReplace(h, originalReference: 10, newReference: 11, shares: 50, price: 1_789_000),
            ItchEncoder.orderCancel(h, reference: 11, shares: 20),
        ])
        #expect(normalizer.book.order(10) == nil)
        #expect(normalizer.book.order(11)?.shares == 30)
        #expect(ticks.filter { $0.type == .quote }.map(\.askPrice.description) == ["179", "178.9", "178.9"])
        #expect(ticks.filter { $0.type == .quote }.map(\.askSize) == [100, 50, 30])
    }

    @Test func bookTicksCarryTheTopLevelsBestFirstConflatedPerFlush() throws {
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0, bookDepth: 2)
        var ticks: [Tick] = []
        let h = ItchHeader(stockLocate: 1, timestamp: 5)
        let messages = [
            SpecBytes.stockDirectory,
            ItchEncoder.addOrder(h, reference: 1, side: .buy, shares: 100, symbol: "AAPL", price: 1_000_000),
            ItchEncoder.addOrder(h, reference: 2, side: .buy, shares: 200, symbol: "AAPL", price: 1_001_000),
            ItchEncoder.addOrder(h, reference: 3, side: .buy, shares: 300, symbol: "AAPL", price: 999_000),
            ItchEncoder.addOrder(h, reference: 4, side: .buy, shares: 50, symbol: "AAPL", price: 1_001_000),
            ItchEncoder.addOrder(h, reference: 5, side: .sell, shares: 400, symbol: "AAPL", price: 1_003_000),
        ]
        for bytes in messages {
            normalizer.handle(try bytes.withUnsafeBytes { try ItchDecoder.decode($0) }, venueSequence: 1, into: &ticks)
        }
        ticks.removeAll()
        normalizer.flushBooks(into: &ticks)
        #expect(ticks.count == 1)  // five changes, one BOOK tick
        let book = try #require(ticks.first)
        #expect(book.type == .book && book.symbol == "AAPL")
        #expect(book.bids == [BookLevel(price: Price(fixedPoint: 100_100_000), size: 250, orders: 2),
            BookLevel(price: Price(fixedPoint: 100_000_000), size: 100, orders: 1)])
        #expect(book.asks == [BookLevel(price: Price(fixedPoint: 100_300_000), size: 400, orders: 1)])
        #expect(book.exchangeTimestampNs == 5)
        ticks.removeAll()
        normalizer.flushBooks(into: &ticks)
        #expect(ticks.isEmpty)  // nothing changed since
    }

    /// BOOKs go out a few per slot of `book_interval`, each symbol at its own point of the interval, at most once an
    /// interval, instead of every changed book at one instant (a burst that delayed every tick behind it).
    @Test func bookTicksAreSpreadOverTheIntervalOncePerSymbol() throws {
        let intervalNs: UInt64 = 100_000_000
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0, bookDepth: 1, bookIntervalNs: intervalNs)
        #expect(ItchNormalizer.bookSlotCount(intervalNs: intervalNs) == 100)
        #expect(ItchNormalizer.bookSlotCount(intervalNs: 1_000_000) == 1)
        #expect(ItchNormalizer.bookSlotCount(intervalNs: 5_000_000_000) == 100)
        var ticks: [Tick] = []
        func handle(_ bytes: [UInt8]) throws {
            normalizer.handle(try bytes.withUnsafeBytes { try ItchDecoder.decode($0) }, venueSequence: 1, into: &ticks)
        }
        let symbols = 300
        var reference: UInt64 = 0
        func changeEveryBook(price: UInt32) throws {
            for locate in 1...symbols {
                reference += 1
                let header = ItchHeader(stockLocate: UInt16(locate), timestamp: 9)
                try handle(ItchEncoder.addOrder(header, reference: reference, side: .buy, shares: 100,
                    symbol: "S\(locate)", price: price + UInt32(locate)))
            }
        }
        for locate in 1...symbols {
            let header = ItchHeader(stockLocate: UInt16(locate), timestamp: 1)
            try handle(ItchEncoder.stockDirectory(header, symbol: "S\(locate)"))
        }
        let start: UInt64 = 7_000_000_000
        normalizer.flushDueBooks(nowNs: start, into: &ticks)
        try changeEveryBook(price: 1_000)
        #expect(normalizer.booksAreWaiting)
        #expect(normalizer.nanosecondsUntilWaitingBooks(nowNs: start + 250_000) == 750_000)
        ticks.removeAll()

        /// The symbol's best bid as `changeEveryBook(price:)` set it: each BOOK is built in the place of the last,
        /// so a kept copy must still say its own symbol's levels.
        func expectOwnLevels(_ tick: Tick, _ price: UInt32) {
            let locate = UInt32(tick.symbol.dropFirst())!
            #expect(tick.type == .book && tick.bids.first?.price == Price(itchPrice4: price + locate))
            #expect(tick.bids.count == 1 && tick.asks.isEmpty)
        }

        // One interval, a millisecond at a time: every symbol once, never more than its slot's share at a time.
        var seen: [String: UInt64] = [:]
        var largestBurst = 0
        for step in UInt64(1)...100 {
            let now = start + step * 1_000_000
            normalizer.flushDueBooks(nowNs: now, into: &ticks)
            largestBurst = max(largestBurst, ticks.count)
            for tick in ticks {
                expectOwnLevels(tick, 1_000)
                #expect(seen.updateValue(now, forKey: tick.symbol) == nil, "\(tick.symbol) went out twice")
            }
            ticks.removeAll()
        }
        #expect(seen.count == symbols)
        #expect(largestBurst == symbols / 100)
        #expect(!normalizer.booksAreWaiting)
        #expect(normalizer.nanosecondsUntilWaitingBooks(nowNs: start + 100 * 1_000_000) == nil)

        // Changed again at once: each goes out at its slot of the next interval, an interval after the last one.
        try changeEveryBook(price: 2_000)
        ticks.removeAll()
        normalizer.flushDueBooks(nowNs: start + 100 * 1_000_000 + 500_000, into: &ticks)
        #expect(ticks.isEmpty)
        // The last slot went out at start + 100 ms; the next one with a book is a millisecond later.
        #expect(normalizer.nanosecondsUntilWaitingBooks(nowNs: start + 100 * 1_000_000 + 500_000) == 500_000)
        normalizer.flushDueBooks(nowNs: start + 250 * 1_000_000, into: &ticks)  // a late loop turn catches up
        #expect(ticks.count == symbols)
        #expect(Set(ticks.map(\.symbol)).count == symbols)
        for tick in ticks { expectOwnLevels(tick, 2_000) }
    }
}
