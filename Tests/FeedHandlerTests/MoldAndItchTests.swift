import Testing

@testable import FeedHandler
import MarketData

/// Bytes laid out by hand from Nasdaq's MoldUDP64 1.0 and TotalView-ITCH 5.0 specifications (big-endian), so these
/// tests check our reading of the specs, not our encoder against itself.
enum SpecBytes {
    static func be(_ value: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static func alpha(_ text: String, _ width: Int) -> [UInt8] {
        Array(text.utf8) + Array(repeating: 0x20, count: width - text.utf8.count)
    }

    /// Timestamp 10:00:00.000000123 after midnight: 36 000 000 000 123 ns.
    static let tenAM: UInt64 = 36_000_000_000_123

    /// R Stock Directory, 39 bytes: locate 1 = "AAPL".
    static let stockDirectory: [UInt8] =
        [0x52] + be(1, 2) + be(0, 2) + be(tenAM, 6) + alpha("AAPL", 8) + [0x51, 0x4E] + be(100, 4)
        + [0x4E, 0x43] + alpha("Z", 2) + [0x50, 0x4E, 0x4E, 0x31, 0x4E] + be(0, 4) + [0x4E]

    /// A Add Order, 36 bytes: ref 1001, buy 300 AAPL at 178.5200 (Price(4) 1785200).
    static let addOrder: [UInt8] =
        [0x41] + be(1, 2) + be(7, 2) + be(tenAM, 6) + be(1001, 8) + [0x42] + be(300, 4) + alpha("AAPL", 8)
        + be(1_785_200, 4)

    /// E Order Executed, 31 bytes: ref 1001, 100 shares, match 555.
    static let orderExecuted: [UInt8] = [0x45] + be(1, 2) + be(8, 2) + be(tenAM + 5, 6) + be(1001, 8) + be(100, 4) + be(555, 8)

    /// C Order Executed With Price, 36 bytes: ref 1001, 50 shares, match 556, printable, at 178.5300.
    static let executedWithPrice: [UInt8] =
        [0x43] + be(1, 2) + be(9, 2) + be(tenAM + 6, 6) + be(1001, 8) + be(50, 4) + be(556, 8) + [0x59] + be(1_785_300, 4)

    /// X Order Cancel, 23 bytes: ref 1001, 50 shares.
    static let orderCancel: [UInt8] = [0x58] + be(1, 2) + be(10, 2) + be(tenAM + 7, 6) + be(1001, 8) + be(50, 4)

    /// D Order Delete, 19 bytes: ref 1001.
    static let orderDelete: [UInt8] = [0x44] + be(1, 2) + be(11, 2) + be(tenAM + 8, 6) + be(1001, 8)

    /// P Trade (non-cross), 44 bytes: 200 AAPL at 178.6000, match 557.
    static let trade: [UInt8] =
        [0x50] + be(1, 2) + be(12, 2) + be(tenAM + 9, 6) + be(0, 8) + [0x53] + be(200, 4) + alpha("AAPL", 8)
        + be(1_786_000, 4) + be(557, 8)

    /// H Stock Trading Action, 25 bytes: AAPL halted, reason "LUDP".
    static let halt: [UInt8] = [0x48] + be(1, 2) + be(13, 2) + be(tenAM + 10, 6) + alpha("AAPL", 8) + [0x48, 0x20]
        + alpha("LUDP", 4)

    /// S System Event, 12 bytes: start of messages.
    static let systemEvent: [UInt8] = [0x53] + be(0, 2) + be(0, 2) + be(tenAM, 6) + [0x4F]

    static func moldPacket(session: String, sequence: UInt64, messages: [[UInt8]]) -> [UInt8] {
        alpha(session, 10) + be(sequence, 8) + be(UInt64(messages.count), 2)
            + messages.flatMap { be(UInt64($0.count), 2) + $0 }
    }
}

@Suite struct MoldUDP64Parsing {
    @Test func headerAndMessagesAreReadInPlace() throws {
        let bytes = SpecBytes.moldPacket(session: "SESSION001", sequence: 41, messages: [SpecBytes.systemEvent, SpecBytes.stockDirectory])
        try bytes.withUnsafeBytes { buffer in
            let packet = try MoldPacket(buffer)
            #expect(packet.session == MoldSession("SESSION001"))
            #expect(packet.session.description == "SESSION001")
            #expect(packet.sequenceNumber == 41)
            #expect(packet.messageCount == 2)
            var seen: [(UInt64, Int)] = []
            try packet.forEachMessage { sequence, message in seen.append((sequence, message.count)) }
            #expect(seen.map(\.0) == [41, 42])
            #expect(seen.map(\.1) == [12, 39])
        }
    }

    @Test func heartbeatsAndEndOfSessionCarryNoMessages() throws {
        let heartbeat = SpecBytes.alpha("S1", 10) + SpecBytes.be(100, 8) + SpecBytes.be(0, 2)
        let end = SpecBytes.alpha("S1", 10) + SpecBytes.be(100, 8) + [0xFF, 0xFF]
        #expect(try heartbeat.withUnsafeBytes { try MoldPacket($0).isHeartbeat })
        #expect(try end.withUnsafeBytes { try MoldPacket($0).isEndOfSession })
        #expect(MoldPacket.heartbeat(session: "S1", nextSequence: 100) == heartbeat)
    }

    @Test func aTruncatedPacketIsAnErrorAfterTheMessagesBeforeIt() throws {
        var bytes = SpecBytes.moldPacket(session: "S1", sequence: 1, messages: [SpecBytes.systemEvent, SpecBytes.addOrder])
        bytes.removeLast(10)
        try bytes.withUnsafeBytes { buffer in
            let packet = try MoldPacket(buffer)
            var delivered = 0
            #expect(throws: FeedParseError.self) { try packet.forEachMessage { _, _ in delivered += 1 } }
            #expect(delivered == 1)
        }
        let short: [UInt8] = Array(repeating: 0x20, count: 12)
        short.withUnsafeBytes { buffer in
            _ = #expect(throws: FeedParseError.truncatedPacket(length: 12, needed: 20)) { try MoldPacket(buffer) }
        }
    }

    @Test func ourEncoderWritesWhatTheSpecSays() {
        #expect(MoldPacket.encode(session: "S1", sequenceNumber: 7, messages: [SpecBytes.addOrder])
            == SpecBytes.moldPacket(session: "S1", sequence: 7, messages: [SpecBytes.addOrder]))
    }
}

@Suite struct ItchDecoding {
    func decode(_ bytes: [UInt8]) throws -> ItchMessage {
        try bytes.withUnsafeBytes { buffer in try ItchDecoder.decode(buffer) }
    }

    @Test func stockDirectoryBindsALocate() throws {
        let message = try decode(SpecBytes.stockDirectory)
        #expect(message == .stockDirectory(ItchHeader(stockLocate: 1, trackingNumber: 0, timestamp: SpecBytes.tenAM),
            stock: StockName("AAPL"), marketCategory: 0x51, roundLotSize: 100))
    }

    @Test func addOrderFieldsSitAtTheirOffsets() throws {
        let message = try decode(SpecBytes.addOrder)
        #expect(message == .addOrder(ItchHeader(stockLocate: 1, trackingNumber: 7, timestamp: SpecBytes.tenAM),
            reference: 1001, side: .buy, shares: 300, stock: StockName("AAPL"), price: 1_785_200, attribution: nil))
    }

    @Test func executionsCancelsDeletesTradesAndHalts() throws {
        #expect(try decode(SpecBytes.orderExecuted) == .orderExecuted(
            ItchHeader(stockLocate: 1, trackingNumber: 8, timestamp: SpecBytes.tenAM + 5), reference: 1001, shares: 100,
            matchNumber: 555))
        #expect(try decode(SpecBytes.executedWithPrice) == .orderExecutedWithPrice(
            ItchHeader(stockLocate: 1, trackingNumber: 9, timestamp: SpecBytes.tenAM + 6), reference: 1001, shares: 50,
            matchNumber: 556, printable: true, price: 1_785_300))
        #expect(try decode(SpecBytes.orderCancel) == .orderCancel(
            ItchHeader(stockLocate: 1, trackingNumber: 10, timestamp: SpecBytes.tenAM + 7), reference: 1001, shares: 50))
        #expect(try decode(SpecBytes.orderDelete) == .orderDelete(
            ItchHeader(stockLocate: 1, trackingNumber: 11, timestamp: SpecBytes.tenAM + 8), reference: 1001))
        #expect(try decode(SpecBytes.trade) == .trade(
            ItchHeader(stockLocate: 1, trackingNumber: 12, timestamp: SpecBytes.tenAM + 9), reference: 0, side: 0x53,
            shares: 200, stock: StockName("AAPL"), price: 1_786_000, matchNumber: 557))
        guard case let .tradingAction(_, stock, state, _) = try decode(SpecBytes.halt) else {
            Issue.record("H did not decode as a trading action")
            return
        }
        #expect(stock.description == "AAPL")
        #expect(state == UInt8(ascii: "H"))
    }

    @Test func aTruncatedMessageAndAnUnknownTypeAreErrors() {
        #expect(throws: FeedParseError.truncatedMessage(type: 0x41, length: 20, needed: 36)) {
            try decode(Array(SpecBytes.addOrder.prefix(20)))
        }
        #expect(throws: FeedParseError.unknownMessageType(0x5A)) { try decode([0x5A] + Array(repeating: 0, count: 30)) }
        #expect(throws: FeedParseError.emptyMessage) { try decode([]) }
    }

    @Test func ourEncoderWritesWhatTheSpecSays() {
        let header = ItchHeader(stockLocate: 1, trackingNumber: 7, timestamp: SpecBytes.tenAM)
        #expect(ItchEncoder.addOrder(header, reference: 1001, side: .buy, shares: 300, symbol: "AAPL", price: 1_785_200)
            == SpecBytes.addOrder)
        #expect(ItchEncoder.stockDirectory(ItchHeader(stockLocate: 1, timestamp: SpecBytes.tenAM), symbol: "AAPL")
            == SpecBytes.stockDirectory)
        #expect(ItchEncoder.orderExecuted(ItchHeader(stockLocate: 1, trackingNumber: 8, timestamp: SpecBytes.tenAM + 5),
            reference: 1001, shares: 100, matchNumber: 555) == SpecBytes.orderExecuted)
    }
}

@Suite struct ItchNormalization {
    let midnight: UInt64 = 1_764_565_200_000_000_000  // 2025-12-01 00:00 America/New_York

    func run(_ messages: [[UInt8]]) throws -> (ticks: [Tick], normalizer: ItchNormalizer) {
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: midnight)
        var ticks: [Tick] = []
        for (index, bytes) in messages.enumerated() {
            let message = try bytes.withUnsafeBytes { try ItchDecoder.decode($0) }
            normalizer.handle(message, venueSequence: UInt64(index + 1), into: &ticks)
        }
        return (ticks, normalizer)
    }

    @Test func anExecutionIsATradeAtTheOrdersPrice() throws {
        let (ticks, _) = try run([SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.orderExecuted])
        let trades = ticks.filter { $0.type == .trade }
        #expect(trades.count == 1)
        #expect(trades[0].symbol == "AAPL")
        #expect(trades[0].price == Price(fixedPoint: 178_520_000))
        #expect(trades[0].size == 100)
        #expect(trades[0].tradeID == 555)
        #expect(trades[0].venueSequence == 3)
        #expect(trades[0].exchangeTimestampNs == midnight + SpecBytes.tenAM + 5)
    }

    @Test func bookChangesAreQuotes() throws {
        let (ticks, _) = try run([SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.orderExecuted,
            SpecBytes.orderDelete])
        let quotes = ticks.filter { $0.type == .quote }
        #expect(quotes.map(\.bidSize) == [300, 200, 0])
        #expect(quotes[0].bidPrice == Price(fixedPoint: 178_520_000))
        #expect(quotes[2].bidPrice == .zero)
    }

    @Test func executionWithPriceAndNonDisplayedTradesUseTheirOwnPrice() throws {
        let (ticks, _) = try run([SpecBytes.stockDirectory, SpecBytes.addOrder, SpecBytes.executedWithPrice, SpecBytes.trade])
        let trades = ticks.filter { $0.type == .trade }
        #expect(trades.map(\.price) == [Price(fixedPoint: 178_530_000), Price(fixedPoint: 178_600_000)])
        #expect(trades.map(\.size) == [50, 200])
    }

    @Test func aHaltIsAStatus() throws {
        let (ticks, _) = try run([SpecBytes.stockDirectory, SpecBytes.halt])
        #expect(ticks.count == 1)
        #expect(ticks[0].type == .status)
        #expect(ticks[0].state == .halted)
        #expect(ticks[0].reason == "LUDP")
    }

    @Test func ordersNobodyAnnouncedAreCountedNotGuessed() throws {
        let (ticks, normalizer) = try run([SpecBytes.addOrder, SpecBytes.orderExecuted, SpecBytes.orderDelete])
        #expect(ticks.isEmpty)
        #expect(normalizer.counters.unknownLocate == 1)
        #expect(normalizer.counters.unknownOrder == 2)
    }
}

/// Sequence numbers from a datagram near 2^64: refused as the packet is read, so that no sum of a sequence and a
/// count in the stream can overflow.
@Suite struct MoldSequencesOutOfRange {
    /// Why the packet was refused, nil when it was read.
    static func refusal(_ bytes: [UInt8]) -> FeedParseError? {
        bytes.withUnsafeBytes { buffer -> FeedParseError? in
            do {
                _ = try MoldPacket(buffer)
                return nil
            } catch {
                return error as? FeedParseError
            }
        }
    }

    @Test func aPacketWhoseMessagesPassTheLargestSequenceIsRefused() throws {
        let messages = [SpecBytes.systemEvent, SpecBytes.systemEvent]
        for sequence in [UInt64.max, UInt64.max - 1, MoldPacket.maximumSequence, UInt64(1) << 63] {
            let bytes = SpecBytes.moldPacket(session: "S1", sequence: sequence, messages: messages)
            #expect(Self.refusal(bytes) == .sequenceOutOfRange(sequence), "\(sequence)")
        }
        let highest = SpecBytes.moldPacket(session: "S1", sequence: MoldPacket.maximumSequence - 2, messages: messages)
        try highest.withUnsafeBytes { buffer in
            var sequences: [UInt64] = []
            try MoldPacket(buffer).forEachMessage { sequence, _ in sequences.append(sequence) }
            #expect(sequences == [MoldPacket.maximumSequence - 2, MoldPacket.maximumSequence - 1])
        }
    }

    @Test func aHeartbeatBeyondTheLargestSequenceIsRefused() {
        let heartbeat = MoldPacket.heartbeat(session: "S1", nextSequence: UInt64.max)
        #expect(Self.refusal(heartbeat) == .sequenceOutOfRange(UInt64.max))
    }

    @Test func aStockDirectoryNamingASymbolTheRulesRefuseNamesNothing() {
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0, bookDepth: 0, bookIntervalNs: 1_000_000)
        var ticks: [Tick] = []
        for (locate, symbol) in [(1, "AA|B"), (2, "#HB"), (3, "A B"), (4, "GOOD")] {
            var bytes = SpecBytes.stockDirectory
            bytes.replaceSubrange(1..<3, with: SpecBytes.be(UInt64(locate), 2))
            bytes.replaceSubrange(11..<19, with: SpecBytes.alpha(symbol, 8))
            let message = bytes.withUnsafeBytes { try! ItchDecoder.decode($0) }
            normalizer.handle(message, venueSequence: UInt64(locate), into: &ticks)
        }
        #expect(normalizer.counters.badSymbols == 3)
        #expect((1...4).map { normalizer.symbol(of: UInt16($0)) } == [nil, nil, nil, "GOOD"])
    }
}
