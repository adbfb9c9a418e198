import Foundation
import Logging
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// plantd's engine in-process on ephemeral endpoints, fed by a real ZeroMQ PUB standing in for a feedd; stopped
/// when released.
final class PlantUnderTest {
    let context: ZMQContext
    let feed: ZMQSocket
    let engine: PlantEngine
    let encoder = TickEncoder()
    /// The feed's stream_seq of the last tick sent.
    var feedSequence: UInt64 = 0

    init(_ configure: (inout PlantConfiguration) -> Void = { _ in }) throws {
        context = try ZMQContext()
        feed = try ZMQSocket(context, type: .publish)
        try feed.bind("tcp://127.0.0.1:*")
        var configuration = PlantConfiguration()
        configuration.feeds = [try feed.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.snapshotEndpoint = "tcp://127.0.0.1:*"
        configure(&configuration)
        engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
    }

    deinit {
        engine.stop()
        _ = engine.thread.join()
    }

    func endpoint(_ name: String) throws -> String { try #require(engine.endpoints[name]) }

    /// A SUB to the plant's stream for `prefixes`, given the time its subscriptions take to reach the plant.
    func consumer(_ prefixes: [String]) throws -> ZMQSocket {
        let consumer = try ZMQSocket(context, type: .subscribe)
        for prefix in prefixes { try consumer.subscribe(prefix) }
        try consumer.setReceiveTimeout(milliseconds: 100)
        try consumer.connect(try endpoint("publish"))
        Thread.sleep(forTimeInterval: 0.4)
        return consumer
    }

    /// Sends a tick as the feed would, with the feed's next stream_seq.
    func send(_ tick: Tick) throws {
        var tick = tick
        feedSequence += 1
        tick.streamSequence = feedSequence
        try feed.send(tick.symbol.hasPrefix("#") ? tick.symbol : Topic.make(symbol: tick.symbol, type: tick.type),
            more: true)
        try feed.send(encoder.encodeToArray(tick))
    }

    /// The ticks `consumer` receives until `done` says so or `timeout` passes (plant topics `#...` left out).
    func collect(_ consumer: ZMQSocket, timeout: TimeInterval = 5, until done: ([Tick]) -> Bool) throws -> [Tick] {
        var ticks: [Tick] = []
        let deadline = Date().addingTimeInterval(timeout)
        while !done(ticks) && Date() < deadline {
            guard let frames = try consumer.receiveFrames(), frames[0].first != UInt8(ascii: "#") else { continue }
            ticks.append(try TickDecoder.decode(frames[1]))
        }
        return ticks
    }

    /// Asks the control endpoint `request` (JSON) and decodes the reply as `Reply`.
    func ask<Reply: Decodable>(_ request: String, as _: Reply.Type) throws -> Reply {
        let control = try ZMQSocket(context, type: .request)
        defer { control.close() }
        try control.setReceiveTimeout(milliseconds: 2000)
        try control.connect(try endpoint("control"))
        try control.send(request)
        return try JSONDecoder().decode(Reply.self, from: Data(try #require(try control.receiveFrames())[0]))
    }

    func status() throws -> DaemonStatus { try ask(#"{"cmd":"status"}"#, as: DaemonStatus.self) }
}

/// plantd's engine in-process, fed by a real ZeroMQ publisher that sends what a feedd sends.
@Suite(.serialized) struct PlantEngineOverRealSockets {
    @Test func symbolsGetContiguousSequencesAndPrefixesStayExact() throws {
        let plant = try PlantUnderTest { $0.heartbeatInterval = .milliseconds(200) }
        let consumer = try plant.consumer(["AAPL|", "#HB"])
        var sent = 0
        for (index, symbol) in ["AAPL", "AAPLX", "AAPL", "MSFT", "AAPL", "AAPLX"].enumerated() {
            try plant.send(Tick.trade(symbol: symbol, venue: "XNAS",
                price: Price(fixedPoint: Int64(100 + index) * 1_000_000), size: 100))
            sent += 1
        }

        var trades: [Tick] = []
        var heartbeats: [Tick] = []
        let deadline = Date().addingTimeInterval(5)
        while (trades.count < 3 || heartbeats.isEmpty) && Date() < deadline {
            guard let frames = try consumer.receiveFrames() else { continue }
            let tick = try TickDecoder.decode(frames[1])
            if frames[0] == Array("#HB".utf8) { heartbeats.append(tick) } else { trades.append(tick) }
        }
        #expect(trades.map(\.symbol) == ["AAPL", "AAPL", "AAPL"])
        #expect(trades.map(\.symbolSequence) == [1, 2, 3])
        #expect(trades.map(\.price.description) == ["100", "102", "104"])
        #expect(trades.allSatisfy { $0.plantTransmitNs >= $0.plantReceiveNs && $0.plantReceiveNs > 0 })
        // The plant's stream counts every tick it published, AAPLX and MSFT included.
        #expect(trades.map(\.streamSequence) == [1, 3, 5])
        let lastHeartbeat = try #require(heartbeats.last)
        #expect(lastHeartbeat.streamSequence <= UInt64(sent))
        // Heartbeats and snapshot ends name the plant's session (when it started): a consumer that sees it change
        // knows the plant restarted and joins again.
        #expect(lastHeartbeat.plantSession > 0 && lastHeartbeat.plantSession < WallClock.nowNanoseconds())
        #expect(Set(heartbeats.map(\.plantSession)).count == 1)
        let dealer = try ZMQSocket(plant.context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 5_000)
        try dealer.connect(try plant.endpoint("snapshot"))
        _ = try dealer.send(ReplayRequest.snapshot(prefix: "MSFT|").encoded())
        var end: SnapshotEnd?
        while end == nil, let frames = try dealer.receiveFrames() {
            if frames[0] == Array(SnapshotEnd.topic.utf8) { end = SnapshotEnd(decoding: frames[1]) }
        }
        #expect(end?.plantSession == lastHeartbeat.plantSession)
        #expect(end?.tickCount == 1)

        // The XPUB saw our subscriptions.
        let reply = try plant.ask(#"{"cmd":"subs"}"#, as: SubscriptionsReply.self)
        #expect(reply.prefixes["AAPL|"] == 1)
        #expect(reply.prefixes["#HB"] == 1)
    }

    @Test func rejectedTicksGoToQuarantineAndWhyListsThemAndAMarketHaltReachesEverySymbol() throws {
        let plant = try PlantUnderTest { $0.filters.modes[.size] = .shadow }
        let consumer = try plant.consumer(["AAPL|", "MSFT|", "#Q|AAPL"])
        func trade(_ symbol: String, _ price: Int64, size: UInt64 = 100) -> Tick {
            Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: price * 1_000_000), size: size)
        }
        var mwcb = Tick(symbol: Topic.system, type: .status, venue: "XNAS")
        mwcb.state = .halted
        mwcb.reason = "MWCB level 1 breached"
        for tick in [trade("AAPL", 100), trade("MSFT", 300), trade("AAPL", 0), trade("AAPL", 101, size: 0), mwcb,
            trade("AAPL", 102)]
        {
            try plant.send(tick)
        }

        var received: [(topic: String, tick: Tick)] = []
        let deadline = Date().addingTimeInterval(5)
        while received.count < 8 && Date() < deadline {
            guard let frames = try consumer.receiveFrames() else { continue }
            received.append((String(decoding: frames[0], as: UTF8.self), try TickDecoder.decode(frames[1])))
        }
        #expect(received.map(\.topic) == ["AAPL|T", "MSFT|T", "#Q|AAPL", "#Q|AAPL", "AAPL|T", "AAPL|S", "MSFT|S",
            "#Q|AAPL"])
        #expect(received[2].tick.reason == "price: non-positive price 0")
        #expect(received[3].tick.reason == "size (shadow): zero volume")  // a copy; the trade itself went on
        #expect(received[4].tick.price.description == "101")
        #expect(received[5].tick.state == .halted && received[5].tick.reason == "MWCB level 1 breached")
        #expect(received[7].tick.reason == "halt: trade during a market-wide halt (MWCB level 1 breached)")
        // Quarantine and halts never break a symbol's sequence.
        #expect(received.filter { $0.topic.hasPrefix("AAPL|") }.map(\.tick.symbolSequence) == [1, 2, 3])

        let why = try plant.ask(#"{"cmd":"why","symbol":"AAPL"}"#, as: WhyReply.self)
        #expect(why.rejections.map(\.rule) == [.halt, .size, .price])  // newest first
        #expect(why.rejections.map(\.enforced) == [true, false, true])
        #expect(why.modes["size"] == "shadow" && why.modes["price"] == "enforce")
        let status = try plant.status()
        #expect(status.counters["filter.price.rejected"] == 1)
        #expect(status.counters["filter.size.shadowed"] == 1)
        #expect(status.counters["filter.halt.rejected"] == 1)
        #expect(status.counters["quarantined"] == 3)
    }

    /// The last-value cache keeps every venue's last tick of each type and the consolidated ones: a snapshot of a
    /// symbol carries both venues' quotes, the NBBO and the last trade, newest bytes of each (a BOOK that grew past
    /// its first size included), in the order they were published; another symbol's values stay out.
    @Test func aSnapshotCarriesEveryVenuesLastValueAndTheNBBO() throws {
        let plant = try PlantUnderTest { $0.aggregation.barIntervals = [] }
        let consumer = try plant.consumer([""])

        var ticks: [Tick] = []
        func quote(_ symbol: String, _ venue: String, bid: Int64, ask: Int64) -> Tick {
            var tick = Tick(symbol: symbol, type: .quote, venue: venue)
            tick.bidPrice = Price(fixedPoint: bid * 10_000)
            tick.askPrice = Price(fixedPoint: ask * 10_000)
            tick.bidSize = 100
            tick.askSize = 200
            return tick
        }
        func book(levels: Int) -> Tick {
            var tick = Tick(symbol: "AAPL", type: .book, venue: "XNAS")
            tick.bids = (0..<levels).map { BookLevel(price: Price(fixedPoint: Int64(10_000 - $0) * 10_000), size: 100) }
            tick.asks = (0..<levels).map { BookLevel(price: Price(fixedPoint: Int64(10_001 + $0) * 10_000), size: 100) }
            return tick
        }
        ticks.append(quote("AAPL", "XNAS", bid: 10_000, ask: 10_002))
        ticks.append(book(levels: 1))
        ticks.append(quote("AAPL", "ARCX", bid: 10_001, ask: 10_003))
        ticks.append(Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 10_001 * 10_000), size: 50))
        ticks.append(quote("MSFT", "XNAS", bid: 40_000, ask: 40_010))
        ticks.append(quote("AAPL", "XNAS", bid: 9_999, ask: 10_002))
        ticks.append(book(levels: 10))
        for tick in ticks { try plant.send(tick) }
        // Everything published (NBBO updates included) has come out before the snapshot is asked for.
        let published = try plant.collect(consumer) { $0.contains { $0.type == .book && $0.bids.count == 10 } }

        let dealer = try ZMQSocket(plant.context, type: .dealer)
        try dealer.setReceiveTimeout(milliseconds: 5_000)
        try dealer.connect(try plant.endpoint("snapshot"))
        _ = try dealer.send(ReplayRequest.snapshot(prefix: "AAPL|").encoded())
        var snapshot: [Tick] = []
        while true {
            let frames = try #require(try dealer.receiveFrames(), "the snapshot did not end")
            if frames[0] == Array(SnapshotEnd.topic.utf8) { break }
            let tick = try TickDecoder.decode(frames[1])
            #expect(frames[0] == Array(tick.topic.utf8))
            snapshot.append(tick)
        }
        let kinds = snapshot.map { "\($0.type) \($0.venue)" }
        #expect(Set(kinds) == ["QUOTE XNAS", "QUOTE ARCX", "QUOTE CONS", "TRADE XNAS", "BOOK XNAS"])
        #expect(kinds.count == 5)
        #expect(snapshot.map(\.symbolSequence) == snapshot.map(\.symbolSequence).sorted())
        // Each is the last one published of its kind, as it went out.
        for tick in snapshot {
            let last = published.last { $0.symbol == "AAPL" && $0.type == tick.type && $0.venue == tick.venue }
            #expect(tick == last, "\(tick.type) \(tick.venue)")
        }
        #expect(snapshot.first { $0.type == .book }?.bids.count == 10)
        // The NBBO: ARCX's bid (XNAS lowered its own), XNAS's offer.
        let nbbo = try #require(snapshot.first { $0.venue == "CONS" })
        #expect(nbbo.bidPrice.description == "100.01" && nbbo.askPrice.description == "100.02")
    }

    /// Every published TRADE carries its symbol's consolidated volume today across venues; a quarantined trade does
    /// not count, a venue without sizes adds nothing, and a restarted plant goes on from the journal's last trades.
    @Test func tradesCarryTheConsolidatedDayVolumeAcrossVenuesAndRestarts() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("volume-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        // Each run is a plant on the same journal with a feed of its own.
        func run(_ trades: [(venue: String, price: Int64, size: UInt64)]) throws -> [Tick] {
            let plant = try PlantUnderTest {
                $0.journal.directory = journal
                $0.filters.unsizedVenues = ["JSNA"]
                $0.aggregation.barIntervals = []
            }
            let consumer = try plant.consumer(["AAPL|T"])
            for trade in trades {
                try plant.send(Tick.trade(symbol: "AAPL", venue: trade.venue,
                    price: Price(fixedPoint: trade.price * 10_000), size: trade.size))
            }
            let expected = trades.filter { $0.price > 0 }.count
            return try plant.collect(consumer) { $0.count >= expected }
        }

        let first = try run([("XNAS", 10_000, 100), ("ARCX", 10_001, 50), ("XNAS", 0, 999), ("JSNA", 10_002, 0),
            ("XNAS", 10_001, 25)])
        #expect(first.map(\.venue) == ["XNAS", "ARCX", "JSNA", "XNAS"])
        #expect(first.map(\.volume) == [100, 150, 150, 175], "the zero-price trade went to quarantine, uncounted")
        #expect(first.map(\.size) == [100, 50, 0, 25], "each trade keeps its own size")
        let second = try run([("ARCX", 10_000, 10)])
        #expect(second.map(\.volume) == [185], "the day goes on after a restart")
    }

    /// A venue's BOOKs of a symbol go out at most every `book_interval`: the first at once, then the latest one when
    /// the interval is up, even if nothing else comes; another venue's book is not held back by it; with 0 every
    /// book goes out.
    @Test(arguments: [UInt64(200_000_000), 0])
    func booksArePassedOnConflated(intervalNs: UInt64) throws {
        let plant = try PlantUnderTest { $0.aggregation.bookIntervalNs = intervalNs }
        let consumer = try plant.consumer(["AAPL|B"])
        try consumer.setReceiveTimeout(milliseconds: 50)

        let started = Date()
        for index in 1...11 {
            var book = Tick(symbol: "AAPL", type: .book, venue: index == 2 ? "ARCX" : "XNAS")
            book.bids = [BookLevel(price: Price(fixedPoint: Int64(100 + index) * 1_000_000), size: UInt64(index))]
            try plant.send(book)
        }
        var received: [(at: TimeInterval, book: Tick)] = []
        while Date().timeIntervalSince(started) < 1.0 {
            guard let frames = try consumer.receiveFrames() else { continue }
            received.append((Date().timeIntervalSince(started), try TickDecoder.decode(frames[1])))
        }
        let sizes = received.map { "\($0.book.venue) \($0.book.bids.first?.size ?? 0)" }
        if intervalNs == 0 {
            #expect(received.count == 11)
            return
        }
        // XNAS 1 at once, ARCX 2 at once (a venue of its own), XNAS 11 (the latest) when the interval is up.
        #expect(sizes == ["XNAS 1", "ARCX 2", "XNAS 11"])
        #expect(received.last.map { $0.at >= 0.15 && $0.at < 0.5 } == true, "the held book went out when its interval was up")
        #expect(received.map(\.book.symbolSequence) == [1, 2, 3], "symbol_seq counts what went out")
        #expect(try plant.status().counters["books_conflated"] == 8, "XNAS 3...10 were replaced before they went out")
    }

    @Test func aBadConfigNamesFileAndKey() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plantd-\(UUID()).toml").path
        try "[plant]\nfeeds = [\"127.0.0.1:7101\"]\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: ConfigError(file: file, key: "[plant] feeds",
            reason: #"expected an endpoint such as "tcp://127.0.0.1:7201", got "127.0.0.1:7101""#)) {
            try PlantConfiguration.load(file: file)
        }
    }
}
