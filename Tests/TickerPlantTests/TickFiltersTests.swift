import Foundation
import Testing

import MarketData
@testable import TickerPlant

/// Each filter rule on its own, enforced and in shadow mode, fed ticks as feedd publishes them.
@Suite struct TickFiltersTests {
    static func trade(_ price: String, size: UInt64 = 100, venue: String = "XNAS", symbol: String = "AAPL",
        at exchangeNs: UInt64 = 0) -> Tick
    {
        var tick = Tick.trade(symbol: symbol, venue: venue, price: try! Price(parsing: price), size: size)
        tick.exchangeTimestampNs = exchangeNs
        return tick
    }

    static func status(_ state: TradingState, symbol: String = "AAPL", reason: String = "") -> Tick {
        var tick = Tick(symbol: symbol, type: .status, venue: "XNAS")
        tick.state = state
        tick.quality = .ok
        tick.reason = reason
        return tick
    }

    /// Runs ticks through filters; returns what was published and what was quarantined (rule, enforced).
    static func run(_ ticks: [Tick], _ configure: (inout FilterConfiguration) -> Void = { _ in })
        -> (published: [Tick], quarantined: [(tick: Tick, rule: FilterRule, reason: String, enforced: Bool)],
            filters: TickFilters)
    {
        var configuration = FilterConfiguration()
        configure(&configuration)
        var filters = TickFilters(configuration: configuration)
        var outcomes: [FilterOutcome] = []
        var published: [Tick] = []
        var quarantined: [(Tick, FilterRule, String, Bool)] = []
        for tick in ticks {
            if filters.admit(tick, nowNs: 1, into: &outcomes) {
                #expect(outcomes.isEmpty, "a tick that passed alone leaves the outcomes as they were")
                published.append(tick)
            }
            for outcome in outcomes {
                switch outcome {
                case .passed: published.append(tick)
                case .publish(let tick): published.append(tick)
                case let .quarantine(tick, rule, reason, enforced): quarantined.append((tick, rule, reason, enforced))
                }
            }
            outcomes.removeAll()
        }
        for outcome in outcomes {
            switch outcome {
            case .passed: break
            case .publish(let tick): published.append(tick)
            case let .quarantine(tick, rule, reason, enforced): quarantined.append((tick, rule, reason, enforced))
            }
        }
        return (published, quarantined.map { (tick: $0.0, rule: $0.1, reason: $0.2, enforced: $0.3) }, filters)
    }

    @Test func aNonPositivePriceIsRejectedOrShadowed() {
        let enforced = Self.run([Self.trade("178.52"), Self.trade("0"), Self.trade("178.53")])
        #expect(enforced.published.map(\.price.description) == ["178.52", "178.53"])
        #expect(enforced.quarantined.map(\.rule) == [.price])
        #expect(enforced.quarantined.first?.reason == "non-positive price 0")
        #expect(enforced.filters.counters.rejected[.price] == 1)

        let shadow = Self.run([Self.trade("178.52"), Self.trade("0")]) { $0.modes[.price] = .shadow }
        #expect(shadow.published.count == 2)  // let through ...
        #expect(shadow.quarantined.map(\.enforced) == [false])  // ... with a copy in quarantine
        #expect(shadow.filters.counters.shadowed[.price] == 1)
        #expect(shadow.filters.counters.rejected[.price, default: 0] == 0)
    }

    @Test func aJumpIsHeldThenQuarantinedWhenTheNextTradeIsBackAtTheOldLevel() {
        let result = Self.run([Self.trade("100"), Self.trade("1000"), Self.trade("100.05")])
        #expect(result.published.map(\.price.description) == ["100", "100.05"])
        #expect(result.quarantined.map(\.tick.price.description) == ["1000"])
        #expect(result.quarantined.first?.reason
            == "jump of +900.0% from the last good trade at 100 (max 10.0%), the next trade was at 100.05")
    }

    @Test func aSymbolsFirstTradeIsJudgedAgainstTheQuoteBeforeIt() {
        var quote = Tick(symbol: "AAPL", type: .quote, venue: "XNAS")
        quote.bidPrice = try! Price(parsing: "99.9")
        quote.askPrice = try! Price(parsing: "100.1")
        let result = Self.run([quote, Self.trade("1000"), Self.trade("100")])
        #expect(result.published.map(\.type) == [.quote, .trade])
        #expect(result.published.last?.price.description == "100")
        #expect(result.quarantined.first?.reason
            == "jump of +900.0% from the quote's middle 100 (max 10.0%), the next trade was at 100")
    }

    @Test func aJumpConfirmedByTheNextTradesIsReleasedInOrder() {
        let result = Self.run([Self.trade("100"), Self.trade("150"), Self.trade("150.5"), Self.trade("149.8"),
            Self.trade("150.1")])
        // 150 jumps 50%; 150.5 and 149.8 confirm it (jump_confirm_trades 2): all three go out, in order, then 150.1.
        #expect(result.published.map(\.price.description) == ["100", "150", "150.5", "149.8", "150.1"])
        #expect(result.quarantined.isEmpty)
        #expect(result.filters.counters.jumpsConfirmed == 1)
    }

    @Test func aJumpNotConfirmedInTimeGoesToQuarantine() {
        var configuration = FilterConfiguration()
        configuration.jumpHoldNs = 1_000
        var filters = TickFilters(configuration: configuration)
        var outcomes: [FilterOutcome] = []
        #expect(filters.admit(Self.trade("100"), nowNs: 10, into: &outcomes))  // passed alone
        #expect(!filters.admit(Self.trade("500"), nowNs: 20, into: &outcomes))  // held
        #expect(outcomes.isEmpty)
        filters.expireHeld(nowNs: 500, into: &outcomes)
        #expect(outcomes.isEmpty)  // not yet
        filters.expireHeld(nowNs: 1_020, into: &outcomes)
        guard case let .quarantine(tick, .price, reason, true) = outcomes.last else {
            Issue.record("expected the held jump in quarantine, got \(outcomes)")
            return
        }
        #expect(tick.price.description == "500")
        #expect(reason.hasSuffix("not confirmed within 0.0 s") || reason.contains("not confirmed within"))
    }

    @Test func zeroVolumeIsRejectedExceptFromVenuesThatReportNoSize() {
        let result = Self.run([Self.trade("10", size: 0), Self.trade("10", size: 0, venue: "ARCX"),
            Self.trade("10", size: 5)]) { $0.unsizedVenues = ["ARCX"] }
        #expect(result.published.map(\.venue) == ["ARCX", "XNAS"])
        #expect(result.quarantined.map(\.rule) == [.size])
        #expect(result.quarantined.first?.reason == "zero volume")
    }

    @Test func aTickOlderThanItsVenuesLastBeyondTheToleranceIsRejected() {
        let second: UInt64 = 1_000_000_000
        let result = Self.run([
            Self.trade("10", at: 100 * second),
            Self.trade("10.01", at: 99 * second),  // 1 s late: within the 2 s tolerance
            Self.trade("10.02", at: 95 * second),  // 5 s late: rejected
            Self.trade("10.03", venue: "BATS", at: 95 * second),  // another venue keeps its own clock
        ])
        #expect(result.published.map(\.price.description) == ["10", "10.01", "10.03"])
        #expect(result.quarantined.map(\.rule) == [.time])
        #expect(result.quarantined.first?.reason == "5.0 s older than the last accepted XNAS tick")
    }

    @Test func aTickStampedFurtherAheadOfThePlantsClockThanMaxAheadIsRejectedAndTheNextOnesPass() {
        let second: UInt64 = 1_000_000_000
        func received(_ tick: Tick, at ns: UInt64) -> Tick {
            var tick = tick
            tick.plantReceiveNs = ns
            return tick
        }
        let result = Self.run([
            received(Self.trade("10", at: 100 * second), at: 100 * second),
            received(Self.trade("10.01", at: 104 * second), at: 100 * second),  // 4 s ahead: within the 5 s allowed
            received(Self.trade("10.02", at: 3_600 * second), at: 101 * second),  // an hour ahead: rejected
            received(Self.trade("10.03", at: 103 * second), at: 102 * second),
        ])
        // Before, the hour-ahead trade was taken and every real one after it was "older than the last accepted".
        #expect(result.published.map(\.price.description) == ["10", "10.01", "10.03"])
        #expect(result.quarantined.map(\.rule) == [.time])
        #expect(result.quarantined.first?.reason == "3499.0 s ahead of the plant's clock (max 5.0 s)")
    }

    @Test func onlyTicksThatGoDownstreamMoveTheTimeRulesMemory() {
        let second: UInt64 = 1_000_000_000
        let result = Self.run([
            Self.trade("10", at: 100 * second),
            Self.trade("0", at: 110 * second),  // quarantined by the price rule, 10 s after the last
            Self.trade("1000", at: 120 * second),  // a jump held, then refuted by the next trade
            Self.trade("10.01", at: 101 * second),
            Self.trade("10.02", at: 102 * second),
        ])
        // Before, the quarantined trades' times were taken: 10.01 was "19.0 s older than the last accepted".
        #expect(result.published.map(\.price.description) == ["10", "10.01", "10.02"])
        #expect(result.quarantined.map(\.rule) == [.price, .price])
    }

    @Test func tradesDuringAHaltArePausedOrMarketWideHaltAreRejectedAndTheStatusPasses() {
        var mwcb = Tick(symbol: Topic.system, type: .status, venue: "XNAS")
        mwcb.state = .halted
        mwcb.reason = "MWCB level 1 breached"
        let result = Self.run([
            Self.status(.halted, reason: "T1"), Self.trade("10"),
            Self.status(.trading), Self.trade("10.01"),
            Self.status(.paused, symbol: "MSFT", reason: "LULD"), Self.trade("20", symbol: "MSFT"),
            mwcb, Self.trade("10.02"),
            Self.status(.trading), Self.trade("10.03"),
        ])
        #expect(result.published.filter { $0.type == .trade }.map(\.price.description) == ["10.01", "10.03"])
        #expect(result.published.filter { $0.type == .status }.count == 5)
        #expect(result.quarantined.map(\.rule) == [.halt, .halt, .halt])
        #expect(result.quarantined.map(\.reason) == ["trade while HALTED (T1)", "trade while PAUSED (LULD)",
            "trade during a market-wide halt (MWCB level 1 breached)"])
    }

    @Test func testSymbolsAreRejectedWhateverTheirType() {
        var quote = Tick(symbol: "ZVZZT", type: .quote, venue: "XNAS")
        quote.bidPrice = try! Price(parsing: "10")
        let result = Self.run([Self.trade("10", symbol: "ZVZZT"), quote, Self.trade("10")])
        #expect(result.published.map(\.symbol) == ["AAPL"])
        #expect(result.quarantined.map(\.rule) == [.testSymbol, .testSymbol])
        let off = Self.run([Self.trade("10", symbol: "ZVZZT")]) { $0.modes[.testSymbol] = .off }
        #expect(off.published.count == 1 && off.quarantined.isEmpty)
    }

    @Test func theFiltersSectionIsReadAndBadValuesNameTheKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plantd-\(UUID()).toml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let base = "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\n[filters]\n"
        try (base + "max_jump_pct = 5\nshadow = [\"price\"]\noff = [\"time\"]\nunsized_venues = [\"ARCX\"]\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = try PlantConfiguration.load(file: file).filters
        #expect(loaded.maxJumpPercent == 5)
        #expect(loaded.mode(.price) == .shadow && loaded.mode(.time) == .off && loaded.mode(.size) == .enforce)
        #expect(loaded.unsizedVenues == ["ARCX"])
        for (text, key, reason) in [
            ("max_jump_pct = \"abc\"", "[filters] max_jump_pct", #"expected a number between 0.0 and 100.0, got "abc""#),
            ("shadow = [\"prices\"]", "[filters] shadow",
                #"expected rule names among price, size, time, halt, test_symbol, got "prices""#),
            ("shadow = [\"size\"]\noff = [\"size\"]", "[filters] off", #""size" is also in shadow; a rule runs one way"#),
        ] {
            try (base + text + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            #expect(throws: ConfigError(file: file, key: key, reason: reason)) { try PlantConfiguration.load(file: file) }
        }
    }
}
