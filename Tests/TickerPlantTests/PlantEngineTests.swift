import Foundation
import Logging
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// plantd's engine in-process, fed by a real ZeroMQ publisher that sends what a feedd sends.
@Suite(.serialized) struct PlantEngineOverRealSockets {
    @Test func symbolsGetContiguousSequencesAndPrefixesStayExact() throws {
        let context = try ZMQContext()
        let feed = try ZMQSocket(context, type: .publish)
        try feed.setSendHighWaterMark(100_000)
        try feed.bind("tcp://127.0.0.1:*")
        var configuration = PlantConfiguration()
        configuration.feeds = [try feed.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.heartbeatInterval = .milliseconds(200)
        let engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        let consumer = try ZMQSocket(context, type: .subscribe)
        try consumer.subscribe("AAPL|")
        try consumer.subscribe("#HB")
        try consumer.setReceiveTimeout(milliseconds: 100)
        try consumer.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.4)

        let encoder = TickEncoder()
        var sent = 0
        for (index, symbol) in ["AAPL", "AAPLX", "AAPL", "MSFT", "AAPL", "AAPLX"].enumerated() {
            var tick = Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: Int64(100 + index) * 1_000_000),
                size: 100)
            tick.streamSequence = UInt64(index + 1)
            try feed.send(Topic.make(symbol: symbol, type: .trade), more: true)
            try feed.send(encoder.encodeToArray(tick))
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

        // The XPUB saw our subscriptions.
        let control = try ZMQSocket(context, type: .request)
        try control.setReceiveTimeout(milliseconds: 2000)
        try control.connect(try #require(engine.endpoints["control"]))
        try control.send(#"{"cmd":"subs"}"#)
        let reply = try JSONDecoder().decode(SubscriptionsReply.self, from: Data(try #require(try control.receiveFrames())[0]))
        #expect(reply.prefixes["AAPL|"] == 1)
        #expect(reply.prefixes["#HB"] == 1)
    }

    @Test func rejectedTicksGoToQuarantineAndWhyListsThemAndAMarketHaltReachesEverySymbol() throws {
        let context = try ZMQContext()
        let feed = try ZMQSocket(context, type: .publish)
        try feed.bind("tcp://127.0.0.1:*")
        var configuration = PlantConfiguration()
        configuration.feeds = [try feed.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.filters.modes[.size] = .shadow
        let engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        let consumer = try ZMQSocket(context, type: .subscribe)
        try consumer.subscribe("AAPL|")
        try consumer.subscribe("MSFT|")
        try consumer.subscribe("#Q|AAPL")
        try consumer.setReceiveTimeout(milliseconds: 100)
        try consumer.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.4)

        let encoder = TickEncoder()
        var streamSequence: UInt64 = 0
        func send(_ tick: Tick) throws {
            var tick = tick
            streamSequence += 1
            tick.streamSequence = streamSequence
            try feed.send(tick.symbol.hasPrefix("#") ? tick.symbol : Topic.make(symbol: tick.symbol, type: tick.type),
                more: true)
            try feed.send(encoder.encodeToArray(tick))
        }
        func trade(_ symbol: String, _ price: Int64, size: UInt64 = 100) -> Tick {
            Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: price * 1_000_000), size: size)
        }
        var mwcb = Tick(symbol: Topic.system, type: .status, venue: "XNAS")
        mwcb.state = .halted
        mwcb.reason = "MWCB level 1 breached"
        for tick in [trade("AAPL", 100), trade("MSFT", 300), trade("AAPL", 0), trade("AAPL", 101, size: 0), mwcb,
            trade("AAPL", 102)]
        {
            try send(tick)
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

        let control = try ZMQSocket(context, type: .request)
        try control.setReceiveTimeout(milliseconds: 2000)
        try control.connect(try #require(engine.endpoints["control"]))
        try control.send(#"{"cmd":"why","symbol":"AAPL"}"#)
        let why = try JSONDecoder().decode(WhyReply.self, from: Data(try #require(try control.receiveFrames())[0]))
        #expect(why.rejections.map(\.rule) == [.halt, .size, .price])  // newest first
        #expect(why.rejections.map(\.enforced) == [true, false, true])
        #expect(why.modes["size"] == "shadow" && why.modes["price"] == "enforce")
        try control.send(#"{"cmd":"status"}"#)
        let status = try JSONDecoder().decode(DaemonStatus.self, from: Data(try #require(try control.receiveFrames())[0]))
        #expect(status.counters["filter.price.rejected"] == 1)
        #expect(status.counters["filter.size.shadowed"] == 1)
        #expect(status.counters["filter.halt.rejected"] == 1)
        #expect(status.counters["quarantined"] == 3)
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
