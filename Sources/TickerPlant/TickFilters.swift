import MarketData

/// The plant's data-quality rules (DESIGN section 6). Each is named, has its own counters, and runs enforced (a tick
/// it rejects goes to quarantine instead of downstream), in shadow (a copy goes to quarantine, the tick goes on) or
/// off.
public enum FilterRule: String, Sendable, CaseIterable, Codable {
    /// Trades at a price of zero or below, or jumping beyond `max_jump_pct` from the last good trade unless the next
    /// trades confirm the new level.
    case price
    /// Trades of zero shares (a negative volume cannot travel: sizes are unsigned from the venue on).
    case size
    /// Ticks older than the last accepted tick of the same symbol and venue by more than `time_tolerance`, or
    /// stamped further ahead of the plant's clock than `max_ahead`.
    case time
    /// Trades while the symbol, or the whole market, is halted, paused or quoting only.
    case halt
    /// Ticks of the venues' test symbols.
    case testSymbol = "test_symbol"
}

public enum FilterMode: String, Sendable, CaseIterable {
    case enforce, shadow, off
}

/// How the rules are set (`[filters]` in etc/plantd.toml).
public struct FilterConfiguration: Sendable, Equatable {
    public var modes: [FilterRule: FilterMode] = Dictionary(uniqueKeysWithValues: FilterRule.allCases.map { ($0, .enforce) })
    /// A trade further than this from the last good trade of its symbol is held until confirmed.
    public var maxJumpPercent = 10.0
    /// Trades near the new level that make a jump real; until then the jump and its followers are held.
    public var jumpConfirmTrades = 2
    /// A jump not confirmed within this time goes to quarantine.
    public var jumpHoldNs: UInt64 = 2_000_000_000
    public var timeToleranceNs: UInt64 = 2_000_000_000
    /// A tick whose exchange time is further ahead of the plant's receive time than this is rejected: no venue's
    /// clock runs that far ahead of ours, and taken, it would make every real tick after it look old.
    public var maxAheadNs: UInt64 = 5_000_000_000
    /// Nasdaq's and NYSE's published test symbols.
    public var testSymbols: Set<String> = ["ZVZZT", "ZWZZT", "ZXZZT", "ZJZZT", "ZAZZT", "ZBZZT", "ZCZZT", "ZEXIT",
        "ZIEXT", "ZTEST", "NTEST", "ATEST", "CTEST", "PTEST"]
    /// Venues whose trades carry no size (our JSON venues): their size 0 means "not reported", not a bad volume.
    public var unsizedVenues: Set<String> = []

    public init() {}

    public func mode(_ rule: FilterRule) -> FilterMode { modes[rule] ?? .enforce }
}

/// What the filters make of one tick, in the order it must happen.
public enum FilterOutcome: Equatable, Sendable {
    /// The tick just admitted goes downstream as it came, here in order with what else followed from it (a shadow
    /// rule's copy, a refuted jump); a tick that passes alone is not listed (`admit` returns true).
    case passed
    /// Goes downstream (a held trade released by a confirmed jump).
    case publish(Tick)
    /// Goes to `#Q|SYMBOL`; `enforced` false for a shadow rule's copy (the tick itself went on).
    case quarantine(Tick, rule: FilterRule, reason: String, enforced: Bool)
}

/// Per rule: how many ticks it rejected (enforced) and would have rejected (shadow).
public struct FilterCounters: Sendable, Equatable {
    public var rejected: [FilterRule: UInt64] = [:]
    public var shadowed: [FilterRule: UInt64] = [:]
    /// Trades held while a price jump waits for confirmation, and jumps confirmed.
    public var held: UInt64 = 0
    public var jumpsConfirmed: UInt64 = 0
}

/// The rules' state for every symbol, on plantd's thread. Feed it every tick in arrival order with `admit`, and call
/// `expireHeld` now and then so that an unconfirmed jump does not wait for ever.
public struct TickFilters {
    public private(set) var configuration: FilterConfiguration
    public private(set) var counters = FilterCounters()

    struct SymbolState {
        /// Fixed point of the last trade let through; before the first, the middle of the latest two-sided quote, so
        /// that a symbol's first trade is judged too; 0 while neither is known.
        var lastGoodPrice: Int64 = 0
        var hasTraded = false
        /// A price jump and the trades since, waiting for confirmation (the jump first).
        var held: [Tick] = []
        var heldSinceNs: UInt64 = 0
        var state: TradingState = .trading
        var stateReason = ""
        /// When the state was set, in the order of the plant's events, to tell it from a market-wide halt.
        var stateEvent: UInt64 = 0
        /// Decided when the symbol first comes (nil until then).
        var isTestSymbol: Bool?
        /// The latest exchange time accepted from each venue.
        var lastExchangeNs: [(venue: String, ns: UInt64)] = []
    }

    /// Each symbol's place in `states`: one hash per tick.
    private var symbolIndex: [String: Int] = [:]
    private var states: [SymbolState] = []
    /// Symbols (their index) with held trades, so that expiry does not walk every symbol.
    private var symbolsHolding: Set<Int> = []
    /// A market-wide halt (MWCB): symbols whose own state is older than this are halted.
    private var marketHalt: (event: UInt64, reason: String)?
    private var events: UInt64 = 0

    /// Each rule's mode by its place in `FilterRule.allCases`, and the venues without sizes as a list: looked at
    /// for every tick, so no hashing.
    private var modes: [FilterMode]
    private var unsizedVenues: [String]

    public init(configuration: FilterConfiguration) {
        self.configuration = configuration
        modes = FilterRule.allCases.map { configuration.mode($0) }
        unsizedVenues = configuration.unsizedVenues.sorted()
    }

    /// The rules of a reloaded configuration; what the filters know of each symbol (its last good price, its trading
    /// state, the trades held on a jump) stays. Held trades are judged by the new rules as they come.
    public mutating func reconfigure(_ configuration: FilterConfiguration) {
        self.configuration = configuration
        modes = FilterRule.allCases.map { configuration.mode($0) }
        unsizedVenues = configuration.unsizedVenues.sorted()
        // Test symbols may have changed: decided again at each symbol's next tick.
        for index in states.indices { states[index].isTestSymbol = nil }
    }

    @inline(__always)
    private func mode(_ rule: FilterRule) -> FilterMode {
        switch rule {
        case .price: modes[0]
        case .size: modes[1]
        case .time: modes[2]
        case .halt: modes[3]
        case .testSymbol: modes[4]
        }
    }

    /// The place of a symbol's state: `symbolID` when the caller numbers its symbols (plantd's symbol table, one
    /// lookup per tick for everything), else from this filter's own table. One instance uses one way or the other.
    private mutating func slot(for symbol: String, symbolID: Int?) -> Int {
        if let symbolID {
            if symbolID >= states.count {
                states.append(contentsOf: repeatElement(SymbolState(), count: symbolID + 1 - states.count))
            }
            return symbolID
        }
        if let known = symbolIndex[symbol] { return known }
        symbolIndex[symbol] = states.count
        states.append(SymbolState())
        return states.count - 1
    }

    /// The symbol's trading state as its STATUS ticks (and a market-wide halt) left it.
    public func tradingState(of symbol: String) -> TradingState {
        tradingState(symbolID: symbolIndex[symbol])
    }

    public func tradingState(symbolID index: Int?) -> TradingState {
        guard let index, index < states.count else { return marketHalt == nil ? .trading : .halted }
        if let marketHalt, marketHalt.event > states[index].stateEvent { return .halted }
        return states[index].state == .unspecified ? .trading : states[index].state
    }

    /// Runs `tick` through the rules. Returns true when the tick passed as it came and nothing else follows from it
    /// (the common case: `outcomes` is left as it was, so the caller publishes it without a list); otherwise appends
    /// what follows from it to `outcomes` in order: nothing while a jump is held, several ticks when one is confirmed
    /// or refuted, `.passed` where the tick itself goes on.
    @discardableResult
    public mutating func admit(
        _ tick: Tick, symbolID: Int? = nil, nowNs: UInt64, into outcomes: inout [FilterOutcome]
    ) -> Bool {
        events &+= 1
        if tick.symbol.utf8.first == UInt8(ascii: "#") {
            noteSystemStatus(tick)
            return true
        }
        let index = slot(for: tick.symbol, symbolID: symbolID)
        // The state is moved out and back (not copied), so that changing its arrays never copies them.
        var state = SymbolState()
        swap(&state, &states[index])
        defer { swap(&state, &states[index]) }
        if tick.type == .status && tick.state != .unspecified {
            state.state = tick.state
            state.stateReason = tick.reason
            state.stateEvent = events
        }
        // Whether a symbol is a test symbol is decided once, when it first comes.
        if state.isTestSymbol == nil { state.isTestSymbol = self.configuration.testSymbols.contains(tick.symbol) }
        // Each rule's condition is a test of scalars; its reason is written only for a tick it rejects.
        let outcomesBefore = outcomes.count
        if state.isTestSymbol == true,
            reject(.testSymbol, tick, "\(tick.symbol) is a test symbol", outcomes: &outcomes)
        {
            return false
        }
        if tick.type == .trade {
            if let haltReason = Self.haltReason(state, marketHalt: marketHalt),
                reject(.halt, tick, haltReason, outcomes: &outcomes)
            {
                return false
            }
            if tick.size == 0 && !unsizedVenues.contains(tick.venue),
                reject(.size, tick, "zero volume", outcomes: &outcomes)
            {
                return false
            }
        }
        if tick.type != .status && tick.exchangeTimestampNs != 0 {
            let last = state.lastExchangeNs.first { $0.venue == tick.venue }?.ns ?? 0
            if tick.exchangeTimestampNs &+ configuration.timeToleranceNs < last, reject(.time, tick,
                "\(Self.seconds(last - tick.exchangeTimestampNs)) older than the last accepted \(tick.venue) tick",
                outcomes: &outcomes)
            {
                return false
            }
            let receivedNs = tick.plantReceiveNs
            if receivedNs != 0, tick.exchangeTimestampNs > receivedNs.saturatingAdd(configuration.maxAheadNs),
                reject(.time, tick,
                    "\(Self.seconds(tick.exchangeTimestampNs - receivedNs)) ahead of the plant's clock (max "
                        + "\(Self.seconds(configuration.maxAheadNs)))", outcomes: &outcomes)
            {
                return false
            }
        }
        if tick.type == .trade {
            let admitted = admitTrade(tick, index: index, state: &state, nowNs: nowNs, outcomesBefore: outcomesBefore,
                outcomes: &outcomes)
            if admitted || outcomes[outcomesBefore...].contains(.passed) { Self.noteAccepted(tick, in: &state) }
            return admitted
        }
        if tick.type == .quote && !state.hasTraded && tick.bidPrice.fixedPoint > 0
            && tick.askPrice.fixedPoint >= tick.bidPrice.fixedPoint
        {
            state.lastGoodPrice = tick.bidPrice.fixedPoint / 2 + tick.askPrice.fixedPoint / 2
        }
        Self.noteAccepted(tick, in: &state)
        return passes(outcomesBefore: outcomesBefore, outcomes: &outcomes)
    }

    /// The time rule's memory: the latest exchange time accepted from each venue. Only a tick that goes downstream
    /// moves it (one that was quarantined or still waits on a jump does not), so a bad tick cannot make the good
    /// ones after it look old.
    private static func noteAccepted(_ tick: Tick, in state: inout SymbolState) {
        guard tick.type != .status && tick.exchangeTimestampNs != 0 else { return }
        if let venueIndex = state.lastExchangeNs.firstIndex(where: { $0.venue == tick.venue }) {
            state.lastExchangeNs[venueIndex].ns = max(state.lastExchangeNs[venueIndex].ns, tick.exchangeTimestampNs)
        } else {
            state.lastExchangeNs.append((tick.venue, tick.exchangeTimestampNs))
        }
    }

    /// The tick goes on: alone (true, nothing appended) unless a shadow rule's copy went to `outcomes` before it.
    private func passes(outcomesBefore: Int, outcomes: inout [FilterOutcome]) -> Bool {
        if outcomes.count == outcomesBefore { return true }
        outcomes.append(.passed)
        return false
    }

    /// Takes in a tick the plant published before it restarted (its last values from the journal): the last good
    /// trade and the trading state, so that the rules go on where they were.
    public mutating func remember(_ tick: Tick, symbolID: Int? = nil) {
        guard tick.symbol.utf8.first != UInt8(ascii: "#") else { return }
        let index = slot(for: tick.symbol, symbolID: symbolID)
        switch tick.type {
        case .trade where tick.price.fixedPoint > 0:
            states[index].lastGoodPrice = tick.price.fixedPoint
            states[index].hasTraded = true
        case .status where tick.state != .unspecified:
            events &+= 1
            states[index].state = tick.state
            states[index].stateReason = tick.reason
            states[index].stateEvent = events
        default:
            break
        }
    }

    /// Quarantines jumps held longer than `jumpHoldNs` without confirmation.
    public mutating func expireHeld(nowNs: UInt64, into outcomes: inout [FilterOutcome]) {
        guard !symbolsHolding.isEmpty else { return }
        for index in symbolsHolding {
            guard !states[index].held.isEmpty, nowNs &- states[index].heldSinceNs >= configuration.jumpHoldNs
            else { continue }
            var state = SymbolState()
            swap(&state, &states[index])
            refuteHeld(&state, because: "not confirmed within \(Self.seconds(configuration.jumpHoldNs))",
                outcomes: &outcomes)
            swap(&state, &states[index])
            symbolsHolding.remove(index)
        }
    }

    /// A rule found `tick` bad: returns true when it is rejected (the caller stops); a shadow rule appends a copy to
    /// quarantine and lets the tick go on; a rule that is off does nothing.
    private mutating func reject(
        _ rule: FilterRule, _ tick: Tick, _ reason: String, outcomes: inout [FilterOutcome]
    ) -> Bool {
        switch mode(rule) {
        case .off:
            return false
        case .enforce:
            counters.rejected[rule, default: 0] += 1
            outcomes.append(.quarantine(tick, rule: rule, reason: reason, enforced: true))
            return true
        case .shadow:
            counters.shadowed[rule, default: 0] += 1
            outcomes.append(.quarantine(tick, rule: rule, reason: reason, enforced: false))
            return false
        }
    }

    private static func haltReason(_ state: SymbolState, marketHalt: (event: UInt64, reason: String)?) -> String? {
        if let marketHalt, marketHalt.event > state.stateEvent { return "trade during a market-wide halt (\(marketHalt.reason))" }
        switch state.state {
        case .halted, .paused, .quotationOnly:
            let why = state.stateReason.isEmpty ? "" : " (\(state.stateReason))"
            return "trade while \(state.state)\(why)"
        case .trading, .unspecified:
            return nil
        }
    }

    /// A market-wide status on #SYS: an MWCB halt applies to every symbol until its own state says otherwise.
    private mutating func noteSystemStatus(_ tick: Tick) {
        guard tick.type == .status else { return }
        switch tick.state {
        case .halted: marketHalt = (events, tick.reason)
        case .trading: marketHalt = nil
        default: break
        }
    }

    /// The price rule for a trade; returns as `admit` does (false too when the trade is held on a jump).
    private mutating func admitTrade(
        _ tick: Tick, index: Int, state: inout SymbolState, nowNs: UInt64, outcomesBefore: Int,
        outcomes: inout [FilterOutcome]
    ) -> Bool {
        let mode = self.mode(.price)
        let price = tick.price.fixedPoint
        if price <= 0 {
            if reject(.price, tick, "non-positive price \(tick.price)", outcomes: &outcomes) { return false }
        } else if mode == .enforce && !state.held.isEmpty {
            if isNear(price, state.held[0].price.fixedPoint) {
                // Another trade at the new level: it confirms the jump once enough have come.
                state.held.append(tick)
                counters.held += 1
                if state.held.count > configuration.jumpConfirmTrades {
                    counters.jumpsConfirmed += 1
                    for held in state.held {
                        outcomes.append(.publish(held))
                        Self.noteAccepted(held, in: &state)
                    }
                    state.lastGoodPrice = price
                    state.hasTraded = true
                    state.held.removeAll(keepingCapacity: true)
                    symbolsHolding.remove(index)
                }
                return false
            }
            refuteHeld(&state, because: "the next trade was at \(tick.price)", outcomes: &outcomes)
            symbolsHolding.remove(index)
        }
        if price > 0 && state.lastGoodPrice > 0 && !isNear(price, state.lastGoodPrice) {
            switch mode {
            case .enforce:
                // Held, not rejected: a real move is confirmed by the trades that follow it.
                state.held = [tick]
                state.heldSinceNs = nowNs
                counters.held += 1
                symbolsHolding.insert(index)
                return false
            case .shadow:
                let jump = Self.percent(price, from: state.lastGoodPrice)
                let reason = "jump of \(jump) from \(Self.reference(state)) (max \(configuration.maxJumpPercent)%)"
                counters.shadowed[.price, default: 0] += 1
                outcomes.append(.quarantine(tick, rule: .price, reason: reason, enforced: false))
            case .off:
                break
            }
        }
        if price > 0 {
            state.lastGoodPrice = price
            state.hasTraded = true
        }
        return passes(outcomesBefore: outcomesBefore, outcomes: &outcomes)
    }

    /// The held jump was not real: it and the trades held with it go to quarantine.
    private mutating func refuteHeld(_ state: inout SymbolState, because why: String, outcomes: inout [FilterOutcome]) {
        let first = state.held[0].price.fixedPoint
        for held in state.held {
            counters.rejected[.price, default: 0] += 1
            let reason = "jump of \(Self.percent(first, from: state.lastGoodPrice)) from \(Self.reference(state)) "
                + "(max \(configuration.maxJumpPercent)%), \(why)"
            outcomes.append(.quarantine(held, rule: .price, reason: reason, enforced: true))
        }
        state.held.removeAll(keepingCapacity: true)
    }

    private static func reference(_ state: SymbolState) -> String {
        (state.hasTraded ? "the last good trade at " : "the quote's middle ") + "\(Price(fixedPoint: state.lastGoodPrice))"
    }

    private func isNear(_ price: Int64, _ reference: Int64) -> Bool {
        let difference = Double(price > reference ? price - reference : reference - price)
        return difference * 100 <= configuration.maxJumpPercent * Double(reference)
    }

    static func percent(_ price: Int64, from reference: Int64) -> String {
        guard reference > 0 else { return "?" }
        let value = (Double(price) - Double(reference)) * 100 / Double(reference)
        return (value >= 0 ? "+" : "") + String(Int((value * 10).rounded())).insertingDecimal() + "%"
    }

    static func seconds(_ nanoseconds: UInt64) -> String {
        let tenths = (nanoseconds + 50_000_000) / 100_000_000
        return "\(tenths / 10).\(tenths % 10) s"
    }
}

extension String {
    /// "123" as tenths: "12.3"; "-5" as "-0.5".
    fileprivate func insertingDecimal() -> String {
        let negative = hasPrefix("-")
        var digits = negative ? String(dropFirst()) : self
        while digits.count < 2 { digits = "0" + digits }
        return (negative ? "-" : "") + digits.dropLast() + "." + digits.suffix(1)
    }
}
