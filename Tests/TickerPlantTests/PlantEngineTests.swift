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
