import Testing

@testable import MarketData

@Suite struct Topics {
    @Test func topicsAreSymbolBarTypeLetter() {
        #expect(Topic.make(symbol: "AAPL", type: .trade) == "AAPL|T")
        #expect(Topic.make(symbol: "AAPL", type: .quote) == "AAPL|Q")
        #expect(Topic.make(symbol: "AAPL", type: .book) == "AAPL|B")
        #expect(Topic.make(symbol: "AAPL", type: .status) == "AAPL|S")
        #expect(Topic.make(symbol: "AAPL", type: .bar) == "AAPL|R")
        var buffer: [UInt8] = [1, 2, 3]
        Topic.write(symbol: "MSFT", type: .trade, into: &buffer)
        #expect(buffer == Array("MSFT|T".utf8))
    }

    /// The publishers' topic buffer: each write replaces the last; a name longer than its room grows it.
    @Test func theTopicScratchHoldsTheLastTopicWritten() {
        let scratch = TopicScratch(capacity: 8)
        scratch.write(symbol: "AAPL", type: .trade)
        #expect(Array(scratch.bytes) == Array("AAPL|T".utf8))
        scratch.write(name: Topic.system)
        #expect(Array(scratch.bytes) == Array("#SYS".utf8))
        scratch.write(symbol: "ABCDEFGHIJKLMNOP", type: .status)
        #expect(Array(scratch.bytes) == Array("ABCDEFGHIJKLMNOP|S".utf8))
        scratch.write(symbol: "MSFT", type: .quote)
        #expect(Array(scratch.bytes) == Array("MSFT|Q".utf8))
        #expect(scratch.count == 6)
    }

    @Test func aSymbolPrefixMatchesThatSymbolAndNeverALongerOne() {
        let prefix = Topic.allTypes(of: "AAPL")
        #expect(Topic.matches("AAPL|T", prefix: prefix))
        #expect(Topic.matches("AAPL|Q", prefix: prefix))
        #expect(!Topic.matches("AAPLX|T", prefix: prefix))
        #expect(Topic.matches("AAPLX|T", prefix: "AA"))
        #expect(Topic.matches("AAPL|Q", prefix: "AAPL|Q"))
        #expect(!Topic.matches("AAPL|T", prefix: "AAPL|Q"))
        #expect(Topic.matches("anything", prefix: ""))
    }

    @Test func topicsParseBackAndPlantTopicsAreNotTicks() throws {
        let parsed = try #require(Topic.parse("AAPLX|Q"))
        #expect(parsed.symbol == "AAPLX")
        #expect(parsed.type == .quote)
        #expect(Topic.parse("#HB") == nil)
        #expect(Topic.parse("#Q|AAPL") == nil)
        #expect(Topic.parse("AAPL|Z") == nil)
        #expect(Topic.parse("AAPL") == nil)
    }

    @Test func symbolRulesKeepTopicsUnambiguous() {
        #expect(SymbolRules.problem(with: "AAPL") == nil)
        #expect(SymbolRules.problem(with: "BRK.B") == nil)
        #expect(SymbolRules.problem(with: "") != nil)
        #expect(SymbolRules.problem(with: "AA|PL") != nil)
        #expect(SymbolRules.problem(with: "#HB") != nil)
        #expect(SymbolRules.problem(with: "A APL") != nil)
        #expect(SymbolRules.problem(with: String(repeating: "A", count: 17)) != nil)
    }
}

@Suite struct SequenceTracking {
    @Test func inOrderNumbersAreInOrder() {
        var tracker = SequenceTracker()
        #expect(tracker.observe(5) == .first)
        #expect(tracker.observe(6) == .inOrder)
        #expect(tracker.observe(7) == .inOrder)
        #expect(tracker.expected == 8)
        #expect(tracker.gaps == 0)
    }

    @Test func aJumpIsAGapNamingWhatIsMissing() {
        var tracker = SequenceTracker()
        _ = tracker.observe(1)
        #expect(tracker.observe(5) == .gap(missing: 2...4))
        #expect(tracker.gaps == 1)
        #expect(tracker.missingMessages == 3)
        #expect(tracker.observe(6) == .inOrder)
    }

    @Test func olderNumbersAreDuplicates() {
        var tracker = SequenceTracker()
        _ = tracker.observe(10)
        _ = tracker.observe(11)
        #expect(tracker.observe(11) == .duplicate)
        #expect(tracker.observe(3) == .duplicate)
        #expect(tracker.duplicates == 2)
        #expect(tracker.observe(12) == .inOrder)
    }

    @Test func startingAgainAtOneIsAReset() {
        var tracker = SequenceTracker()
        _ = tracker.observe(100)
        #expect(tracker.observe(1) == .reset)
        #expect(tracker.resets == 1)
        #expect(tracker.observe(2) == .inOrder)
    }

    @Test func aTrackerStartedFromASnapshotExpectsTheNextNumber() {
        var tracker = SequenceTracker(expecting: 42)
        #expect(tracker.observe(42) == .inOrder)
        #expect(tracker.observe(44) == .gap(missing: 43...43))
    }
}
