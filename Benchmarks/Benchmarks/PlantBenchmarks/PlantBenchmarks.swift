import Benchmark
import BenchmarkMarkets
import Glibc
import MarketData
import TickerPlant
import ZeroMQ

/// plantd's per-tick work without sockets, piece by piece: read the tick, run the filters, derive the NBBO and bars,
/// splice the plant's fields into the bytes that go out (laid out as the journal record), keep the last value. One
/// iteration is one tick of a market of 500 symbols (three quotes to two trades); mallocs are counted and must stay 0.
let plantMarket = SyntheticTicks.market
/// Each tick's topic (`S123|T`), as plantd publishes it.
let plantTopics = plantMarket.map { bytes in
    var tick = Tick(symbol: "", type: .trade, venue: "")
    bytes.withUnsafeBytes { try? TickWire.decode($0, into: &tick) }
    return Array(Topic.make(symbol: tick.symbol, type: tick.type).utf8)
}

let benchmarks: @Sendable () -> Void = {
    let perTick = Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])

    Benchmark("Plant_read_tick", configuration: perTick) { benchmark in
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            plantMarket[index].withUnsafeBytes { try? TickWire.decode($0, into: &tick) }
            blackHole(tick.streamSequence)
            index = index + 1 == plantMarket.count ? 0 : index + 1
        }
    }

    Benchmark("Plant_read_tick_in_a_ZeroMQ_message", configuration: perTick) { benchmark in
        // As plantd reads each tick: in place, in the message libzmq received it into, through `ZMQMessage`, with a
        // closure that throws the reader's typed error. A per-tick allocation hid here once (the closure wrapped in
        // a heap-allocated thunk on every call), which the benchmark above, calling the reader directly, missed.
        // The frames are received once; each iteration reads one of them again.
        let context = try ZMQContext()
        let sender = try ZMQSocket(context, type: .pair)
        let receiver = try ZMQSocket(context, type: .pair)
        try receiver.bind("inproc://plant-read-tick")
        try sender.connect("inproc://plant-read-tick")
        var messages: [ZMQMessage] = []
        for payload in plantMarket.prefix(64) {
            _ = try payload.withUnsafeBytes { try sender.send($0) }
            let message = ZMQMessage()
            _ = try receiver.receive(into: message)
            messages.append(message)
        }
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let read = try? messages[index].withUnsafeBytes { bytes throws(TickDecodeError) -> UInt64 in
                try TickWire.decode(bytes, into: &tick)
                return tick.streamSequence
            }
            blackHole(read)
            index = index + 1 == messages.count ? 0 : index + 1
        }
        benchmark.stopMeasurement()
        sender.close()
        receiver.close()
    }

    // Topic matching, which libzmq does in plantd's XPUB: each tick's topic (`S123|T`) is matched against the prefixes
    // its subscribers asked for, and the tick queued to those that match. A subscriber of the market's 500 symbols
    // against one of 20 000 (the same 500 and 19 500 more, as an edged whose clients watch a whole exchange): the same
    // ticks queued, only the prefixes to match among differ. One iteration is one tick sent as plantd sends it (topic
    // and payload frames, not waiting); the subscriber reads them after the measurement. The mallocs are libzmq's:
    // each payload frame copied into a message of its own (above its 33-byte inline size), 1 000 a sample (its file
    // in Thresholds/), and a block of its queue for every 256 frames waiting (up to 16 a sample more, below). Ours
    // add none; one of ours a tick would double them.
    for subscribed in [500, 20_000] {
        Benchmark("Plant_publish_to_a_subscriber_of_\(subscribed)_prefixes", configuration: .init(
            metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 16])])
        ) { benchmark in
            let context = try ZMQContext()
            let publisher = try ZMQSocket(context, type: .extendedPublish)
            let subscriber = try ZMQSocket(context, type: .subscribe)
            // No limits: the ticks of a measurement wait for the subscriber, and the subscriptions are messages too,
            // which libzmq would drop past the subscriber's send limit.
            try publisher.setSendHighWaterMark(0)
            try subscriber.setReceiveHighWaterMark(0)
            try subscriber.setSendHighWaterMark(0)
            try subscriber.setReceiveTimeout(milliseconds: 1_000)
            try publisher.bind("inproc://plant-topic-match-\(subscribed)")
            try subscriber.connect("inproc://plant-topic-match-\(subscribed)")
            for symbol in 0..<subscribed { try subscriber.subscribe("S\(symbol)|") }
            let message = ZMQMessage()
            func publish(_ index: Int) throws {
                try plantTopics[index].withUnsafeBytes { _ = try publisher.send($0, more: true, dontWait: true) }
                try plantMarket[index].withUnsafeBytes { _ = try publisher.send($0, dontWait: true) }
            }
            func receive(_ count: Int) throws {
                for _ in 0..<count {
                    let delivered = try subscriber.receive(into: message) && subscriber.receive(into: message)
                    precondition(delivered, "a tick was not delivered")
                }
            }
            // The subscriptions reach the publisher a while after they are made: until the last one has, a tick of
            // its symbol is not delivered.
            let last = "S\(subscribed - 1)|T"
            var arrived = false
            while !arrived {
                _ = try publisher.send(last, more: true, dontWait: true)
                _ = try publisher.send("probe", dontWait: true)
                arrived = try subscriber.receive(into: message, dontWait: true)
                if arrived { _ = try subscriber.receive(into: message) } else { usleep(1_000) }
            }
            while try subscriber.receive(into: message, dontWait: true) {}
            // The XPUB hands each subscription over to be read (plantd counts them); read them all before measuring.
            while try publisher.receive(into: message, dontWait: true) {}
            for _ in 0..<3 {
                for index in 0..<1_000 { try publish(index) }
                try receive(1_000)
            }
            var index = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                try publish(index)
                index = index + 1 == plantMarket.count ? 0 : index + 1
            }
            benchmark.stopMeasurement()
            // Every tick sent reached the subscriber: none was dropped, so each was matched.
            try receive(benchmark.scaledIterations.count)
            publisher.close()
            subscriber.close()
        }
    }

    Benchmark("Plant_filters_and_aggregation", configuration: perTick) { benchmark in
        var filters = TickFilters(configuration: FilterConfiguration())
        var aggregator = Aggregator(configuration: AggregationConfiguration())
        var outcomes: [FilterOutcome] = []
        outcomes.reserveCapacity(16)
        var derived: [Tick] = []
        derived.reserveCapacity(16)
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var symbolIDs: [String: Int] = [:]
        func run(_ index: Int) {
            plantMarket[index].withUnsafeBytes { try? TickWire.decode($0, into: &tick) }
            let id = symbolIDs[tick.symbol] ?? {
                symbolIDs[tick.symbol] = symbolIDs.count
                return symbolIDs.count - 1
            }()
            filters.admit(tick, symbolID: id, nowNs: 1, into: &outcomes)
            aggregator.observe(tick, symbolID: id, nowNs: 1, into: &derived)
            blackHole(outcomes.count + derived.count)
            outcomes.removeAll(keepingCapacity: true)
            derived.removeAll(keepingCapacity: true)
        }
        // Warm up: every symbol known, every venue seen, bars open.
        for index in plantMarket.indices { run(index) }
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            run(index)
            index = index + 1 == plantMarket.count ? 0 : index + 1
        }
    }

    // A symbol's replay (a client's `fromSeq` through edged) from plantd's ring, full at a million ticks of 500
    // symbols: one iteration is one replay of a symbol's last 40 ticks. A restarted edged asks for hundreds at once,
    // all answered on plantd's publishing thread. Walking every tick kept, as plantd did, against walking the
    // symbol's own ticks back from its newest (`TickRing.chain`), the same replay in the same run.
    let perReplay = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal], scalingFactor: .one, maxDuration: .seconds(3))
    let replayRing: (ring: TickRing, newest: [UInt64], symbolSequence: [UInt64]) = {
        var ring = TickRing(capacity: 1_000_000, linked: true)
        var newest = [UInt64](repeating: 0, count: 500)
        var symbolSequence = [UInt64](repeating: 0, count: 500)
        let payload = [UInt8](repeating: 7, count: 90)
        for sequence in UInt64(1)...1_000_000 {
            let symbol = Int(sequence % 500)
            symbolSequence[symbol] += 1
            ring.link(sequence, toPrevious: newest[symbol])
            newest[symbol] = sequence
            Array("S\(symbol)|T".utf8).withUnsafeBytes { topic in
                payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topic, payload: $0, tag: symbolSequence[symbol]) }
            }
        }
        return (ring, newest, symbolSequence)
    }()
    let replayPrefixes = (0..<500).map { Array("S\($0)|".utf8) }

    Benchmark("Plant_symbol_replay_walking_every_tick", configuration: perReplay) { benchmark in
        var symbol = 0
        for _ in benchmark.scaledIterations {
            let from = replayRing.symbolSequence[symbol] - 39
            let result = replayRing.ring.forEach(topicPrefix: replayPrefixes[symbol], fromTag: from) { _, _, payload in
                blackHole(payload.count)
            }
            blackHole(result.count)
            symbol = (symbol + 7) % 500
        }
    }

    Benchmark("Plant_symbol_replay_walking_its_own_ticks", configuration: perReplay) { benchmark in
        var symbol = 0
        for _ in benchmark.scaledIterations {
            let from = replayRing.symbolSequence[symbol] - 39
            let chain = replayRing.ring.chain(from: replayRing.newest[symbol], fromTag: from)
            replayRing.ring.forEach(chain.sequences) { _, _, payload in blackHole(payload.count) }
            blackHole(chain.sequences.count)
            symbol = (symbol + 7) % 500
        }
    }

    Benchmark("Plant_book_conflation", configuration: perTick) { benchmark in
        // As plantd passes on venues' BOOKs: each read into the one scratch tick, then admitted or kept waiting for its
        // (symbol, venue)'s interval, and the waiting ones published when due. 64 symbols on two venues, five levels a
        // side, a BOOK every 10 us, so each (symbol, venue) has one every 1.28 ms against an interval of 2 ms: some go
        // out at once, some wait, some replace a waiting one.
        let encoder = TickEncoder()
        let books = (0..<128).map { index in
            var book = Tick(symbol: "S\(index % 64)", type: .book, venue: index % 2 == 0 ? "XNAS" : "ARCX")
            for level in 0..<5 {
                book.bids.append(BookLevel(price: Price(fixedPoint: Int64(100_000_000 - level * 10_000)), size: 100))
                book.asks.append(BookLevel(price: Price(fixedPoint: Int64(100_010_000 + level * 10_000)), size: 200))
            }
            book.streamSequence = UInt64(index)
            return encoder.encodeToArray(book)
        }
        var conflation = BookConflation(intervalNs: 2_000_000)
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var nowNs: UInt64 = 1_000_000_000
        func run(_ index: Int) {
            books[index].withUnsafeBytes { try? TickWire.decode($0, into: &tick) }
            nowNs += 10_000
            if conflation.admit(tick, symbolID: index % 64, nowNs: nowNs) { blackHole(tick.bids.count) }
            conflation.due(nowNs: nowNs) { _, book in blackHole(book.asks.count) }
        }
        // Warm up: every (symbol, venue) seen and a book of each waiting once.
        for _ in 0..<4 { for index in books.indices { run(index) } }
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            run(index)
            index = index + 1 == books.count ? 0 : index + 1
        }
    }

    Benchmark("Plant_splice_record_and_last_value", configuration: perTick) { benchmark in
        // As plantd publishes a tick that passed as it came: its bytes with the plant's fields replaced, laid straight
        // into the turn's journal batch, then kept as the last value of its (symbol, type, venue).
        var batch = OutboundBatch()
        var lastValues = LastValueCache()
        for _ in 0..<500 { lastValues.addSymbol() }
        let topic = Array("S1|Q".utf8)
        func run(_ index: Int, sequence: UInt64) {
            plantMarket[index].withUnsafeBytes { payload in
                topic.withUnsafeBytes { topicBytes in
                    batch.append(streamSequence: sequence, symbolSequence: sequence, feedID: 7, feedSequence: 1,
                        topic: topicBytes, payloadAtMost: TickWire.maximumSplicedLength(payload.count)) { destination in
                        try? TickWire.replacePlantFields(of: payload, plantReceiveNs: 1_764_000_000_000_000_000,
                            plantTransmitNs: 1_764_000_000_000_001_000, streamSequence: sequence,
                            symbolSequence: sequence, into: destination)
                    }
                }
            }
            batch.withLastPayload { payload in
                lastValues.store(symbolID: index % 500, type: .quote, venue: index % 3 == 0 ? "ARCX" : "XNAS",
                    symbolSequence: sequence, payload: payload)
            }
            if batch.count == 256 { batch.removeAll() }
        }
        // Warm up: every symbol's last values have their place.
        for index in plantMarket.indices { run(index, sequence: 1 << 40) }
        var index = 0
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            run(index, sequence: UInt64(iteration))
            index = index + 1 == plantMarket.count ? 0 : index + 1
        }
    }
}
