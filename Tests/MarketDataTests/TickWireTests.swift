import Testing

@testable import MarketData

/// The wire reader and the plant-field splice, held to protobuf-c (the encoder and the reference).
@Suite struct TickWireTests {
    /// `reset` sets its fields one by one: every stored field of a tick must come back to a fresh tick's value. The
    /// tick here has every field set away from it (checked by reflection, so a field added to `Tick` and not set
    /// here fails too), and the book arrays keep their capacity.
    @Test func resetBringsEveryFieldBackAndKeepsTheBooksCapacity() {
        // Every hop stamp and sequence as the codec's tests set them, then the rest.
        var tick = TickCodecRoundTrip.stamped(Tick(symbol: "AAPL", type: .book, venue: "XNAS"))
        tick.price = Price(fixedPoint: 9)
        tick.size = 10
        tick.tradeID = 11
        tick.bidPrice = Price(fixedPoint: 12)
        tick.askPrice = Price(fixedPoint: 13)
        tick.bidSize = 14
        tick.askSize = 15
        tick.bids = Array(repeating: BookLevel(price: Price(fixedPoint: 1), size: 1), count: 10)
        tick.asks = Array(repeating: BookLevel(price: Price(fixedPoint: 2), size: 1), count: 10)
        tick.state = .halted
        tick.quality = .stale
        tick.reason = "why"
        tick.open = Price(fixedPoint: 16)
        tick.high = Price(fixedPoint: 17)
        tick.low = Price(fixedPoint: 18)
        tick.close = Price(fixedPoint: 19)
        tick.volume = 20
        tick.barStartNs = 21
        tick.barIntervalSeconds = 22
        tick.plantSession = 23
        let fresh = Tick(symbol: "", type: .trade, venue: "")
        let freshFields = Dictionary(uniqueKeysWithValues: Mirror(reflecting: fresh).children.map {
            ($0.label ?? "", String(describing: $0.value))
        })
        for field in Mirror(reflecting: tick).children {
            #expect(String(describing: field.value) != freshFields[field.label ?? ""],
                "\(field.label ?? "?") is not set away from a fresh tick's value here")
        }
        let bidsCapacity = tick.bids.capacity
        tick.reset()
        #expect(tick == fresh)
        #expect(tick.bids.capacity == bidsCapacity && tick.asks.capacity >= 10)
    }

    /// `copyKeepingArrays` makes an equal tick whose book arrays are its own (kept aside while the other is refilled,
    /// neither has to copy on its next write) and keeps the capacity it had.
    @Test func aCopyKeepingArraysIsEqualAndSharesNoLevels() {
        var random = SplitMix64(seed: 41)
        var kept = Tick(symbol: "", type: .book, venue: "")
        kept.bids.reserveCapacity(20)
        kept.asks.reserveCapacity(20)
        let bidsCapacity = kept.bids.capacity
        for _ in 0..<50 {
            var other = Self.randomTick(&random)
            other.bids = (0..<Int(random.next() % 6)).map { BookLevel(price: Price(fixedPoint: Int64($0)), size: 1) }
            other.asks = (0..<Int(random.next() % 6)).map { BookLevel(price: Price(fixedPoint: Int64($0)), size: 2) }
            kept.copyKeepingArrays(of: other)
            #expect(kept == other)
            #expect(kept.bids.capacity == bidsCapacity && kept.asks.capacity >= 20)
            if !other.bids.isEmpty {
                let ownBids = kept.bids.withUnsafeBufferPointer { $0.baseAddress }
                #expect(ownBids != other.bids.withUnsafeBufferPointer { $0.baseAddress })
            }
        }
    }

    /// A tick with random values in every field its type may use, extremes included.
    static func randomTick(_ random: inout SplitMix64) -> Tick {
        func value() -> UInt64 {
            switch random.next() % 4 {
            case 0: 0
            case 1: UInt64.max
            case 2: random.next() % 1_000
            default: random.next()
            }
        }
        func price() -> Price { Price(fixedPoint: Int64(bitPattern: value()) / (random.next() % 2 == 0 ? 1 : 3)) }
        let type = TickType.allCases[Int(random.next() % 5)]
        var tick = Tick(symbol: ["AAPL", "BRK.A", "GOOGL", "X", "ABCDEFGHIJKLMNOPQRST"][Int(random.next() % 5)],
            type: type, venue: ["XNAS", "ARCX", "CONS", ""][Int(random.next() % 4)])
        tick.exchangeTimestampNs = value()
        tick.feedReceiveNs = value()
        tick.feedTransmitNs = value()
        tick.plantReceiveNs = value()
        tick.plantTransmitNs = value()
        tick.venueSequence = value()
        tick.streamSequence = value()
        tick.symbolSequence = value()
        tick.price = price()
        tick.size = value()
        tick.tradeID = value()
        tick.bidPrice = price()
        tick.askPrice = price()
        tick.bidSize = value()
        tick.askSize = value()
        tick.bids = (0..<Int(random.next() % 4)).map { _ in
            BookLevel(price: price(), size: value(), orders: UInt32(truncatingIfNeeded: value()))
        }
        tick.asks = (0..<Int(random.next() % 4)).map { _ in BookLevel(price: price(), size: value()) }
        tick.state = TradingState.allCases[Int(random.next() % 5)]
        tick.quality = DataQuality.allCases[Int(random.next() % 5)]
        tick.reason = random.next() % 2 == 0 ? "" : "LULD auction collar: reference 178.52 \u{2014} é"
        tick.open = price()
        tick.high = price()
        tick.low = price()
        tick.close = price()
        tick.volume = value()
        tick.barStartNs = value()
        tick.barIntervalSeconds = UInt32(truncatingIfNeeded: value())
        tick.plantSession = value()
        return tick
    }

    /// Read into one reused Tick, as plantd does: its venue string is kept from the previous tick only when it is the
    /// same (runs of one venue here, as a feed sends them), and a symbol the caller knew from `leadingSymbol` is taken
    /// as given.
    @Test func theWireReaderReadsWhatProtobufCReadsForTenThousandRandomTicks() throws {
        var random = SplitMix64(seed: 5)
        let encoder = TickEncoder()
        var reused = Tick(symbol: "", type: .trade, venue: "")
        for _ in 0..<10_000 {
            var tick = Self.randomTick(&random)
            if random.next() % 2 == 0 { tick.venue = "XNAS" }
            let bytes = encoder.encodeToArray(tick)
            let reference = try bytes.withUnsafeBytes { try TickDecoder.decodeWithProtobufC($0) }
            let symbol = bytes.withUnsafeBytes { TickWire.leadingSymbol($0).map { String(decoding: $0, as: UTF8.self) } }
            #expect(symbol == (tick.symbol.isEmpty ? nil : tick.symbol))
            let known = random.next() % 2 == 0 ? symbol : nil
            try bytes.withUnsafeBytes { try TickWire.decode($0, into: &reused, knownSymbol: known) }
            #expect(reused == reference)
            #expect(reused == tick)
            let sequences = try bytes.withUnsafeBytes { payload in
                (try TickWire.streamSequence(of: payload), try TickWire.symbolSequence(of: payload))
            }
            #expect(sequences == (tick.streamSequence, tick.symbolSequence))
        }
    }

    /// The writer `encode` uses lays out exactly the bytes protobuf-c packs, extremes and empty fields included.
    @Test func theWireWriterWritesWhatProtobufCPacksForTenThousandRandomTicks() throws {
        var random = SplitMix64(seed: 11)
        let encoder = TickEncoder(initialCapacity: 64)
        for _ in 0..<10_000 {
            let tick = Self.randomTick(&random)
            let written = encoder.encodeToArray(tick)
            #expect(written == encoder.encodeWithProtobufCToArray(tick), "\(tick)")
            #expect(try written.withUnsafeBytes { try TickDecoder.decodeWithProtobufC($0) } == tick)
        }
    }

    @Test func unknownFieldsAreSkippedAndDamageIsAnErrorNeverACrash() throws {
        let encoder = TickEncoder()
        var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 178_520_000), size: 100)
        tick.streamSequence = 42
        let bytes = encoder.encodeToArray(tick)
        // A field from a later version of tick.proto (number 40, each wire type) is skipped.
        // (The key of field 40 takes two varint bytes: 40 << 3 | wire type is above 127.)
        let future: [UInt8] = [0xC0, 0x02, 0x96, 0x01, 0xC2, 0x02, 3, 1, 2, 3, 0xC1, 0x02] + [UInt8](repeating: 9, count: 8)
            + [0xC5, 0x02, 1, 2, 3, 4]
        #expect(try (future + bytes).withUnsafeBytes { try TickDecoder.decode($0) } == tick)
        // Every truncation is an error, not a crash or a wrong tick taken for right.
        for length in 1..<bytes.count {
            let cut = Array(bytes.prefix(length))
            if let decoded = try? cut.withUnsafeBytes({ try TickDecoder.decode($0) }) {
                #expect(decoded != tick, "a tick cut to \(length) bytes read as whole")
            }
        }
        // Random garbage: errors or some tick, never a crash.
        var random = SplitMix64(seed: 11)
        for _ in 0..<20_000 {
            let garbage = (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            _ = try? garbage.withUnsafeBytes { try TickDecoder.decode($0) }
        }
        #expect(throws: TickDecodeError.self) { try [UInt8]([0x10, 0x09]).withUnsafeBytes { try TickDecoder.decode($0) } }
    }

    @Test func shortSymbolsPackIntoDistinctKeys() {
        let symbols = ["A", "AA", "AAA", "AAPL", "AAPLX", "BRK.B", "ABCDEFGH", "HGFEDCBA", "Z"]
        let keys = symbols.map { symbol in Array(symbol.utf8).withUnsafeBytes { TickWire.packedSymbol($0) } }
        #expect(keys.allSatisfy { $0 != nil })
        #expect(Set(keys.compactMap { $0 }).count == symbols.count)
        #expect(Array("ABCDEFGHI".utf8).withUnsafeBytes { TickWire.packedSymbol($0) } == nil, "longer than 8 bytes")
        #expect([UInt8]().withUnsafeBytes { TickWire.packedSymbol($0) } == nil)
    }

    @Test func replacingThePlantFieldsGivesTheTickWithTheNewValuesForProtobufCToo() throws {
        var random = SplitMix64(seed: 23)
        let encoder = TickEncoder()
        var output: [UInt8] = []
        for _ in 0..<2_000 {
            let tick = Self.randomTick(&random)
            let bytes = encoder.encodeToArray(tick)
            let (receive, transmit, stream, symbol) = (random.next(), random.next() % 3 == 0 ? 0 : random.next(),
                random.next() % 1_000_000, random.next() % 1_000)
            // The day volume too: a new one, none (an incoming one is then dropped), or the one that came in.
            let volume: UInt64 = [random.next() % 10_000_000, 0, tick.volume][Int(random.next() % 3)]
            try bytes.withUnsafeBytes { payload in
                try TickWire.replacingPlantFields(of: payload, plantReceiveNs: receive, plantTransmitNs: transmit,
                    streamSequence: stream, symbolSequence: symbol, volume: volume, into: &output)
            }
            var expected = tick
            expected.plantReceiveNs = receive
            expected.plantTransmitNs = transmit
            expected.streamSequence = stream
            expected.symbolSequence = symbol
            expected.volume = volume
            #expect(try output.withUnsafeBytes { try TickDecoder.decodeWithProtobufC($0) } == expected)
            #expect(try output.withUnsafeBytes { try TickDecoder.decode($0) } == expected)
        }
    }
}
