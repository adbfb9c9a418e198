import Foundation
import Logging
import Testing

@testable import EdgeServer
import MarketData
import ZeroMQ

@Suite struct EdgeJSONFormat {
    @Test func aTradeIsTheNormalizedJSONOfTheDesign() {
        var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 178_520_000), size: 100,
            exchangeTimestampNs: 1_701_432_000_000_999_999)
        tick.symbolSequence = 812
        var out: [UInt8] = []
        EdgeJSON.write(tick, into: &out)
        #expect(String(decoding: out, as: UTF8.self)
            == #"{"type":"TRADE","symbol":"AAPL","price":178.52,"size":100,"timestamp":1701432000000,"exchange":"NASDAQ","seq":812}"#)
    }

    @Test func quotesAndStatusesCarryTheirFields() {
        var quote = Tick(symbol: "MSFT", type: .quote, venue: "ARCX")
        quote.bidPrice = Price(fixedPoint: 410_100_000)
        quote.bidSize = 300
        quote.askPrice = Price(fixedPoint: 410_120_000)
        quote.askSize = 200
        quote.symbolSequence = 5
        var out: [UInt8] = []
        EdgeJSON.write(quote, into: &out)
        #expect(String(decoding: out, as: UTF8.self)
            == #"{"type":"QUOTE","symbol":"MSFT","bid":410.1,"bidSize":300,"ask":410.12,"askSize":200,"timestamp":0,"exchange":"NYSE ARCA","seq":5}"#)
        var status = Tick(symbol: "AAPL", type: .status, venue: "XNAS")
        status.state = .halted
        status.quality = .ok
        status.reason = "LU\"DP"
        EdgeJSON.write(status, into: &out)
        #expect(String(decoding: out, as: UTF8.self)
            == #"{"type":"STATUS","symbol":"AAPL","state":"HALTED","quality":"OK","reason":"LU\"DP","timestamp":0,"exchange":"NASDAQ","seq":0}"#)
    }
}

/// edged in-process, between a real ZeroMQ XPUB standing in for plantd's publisher and real WebSocket clients.
@Suite(.serialized) struct EdgeServerOverRealSockets {
    final class Fixture {
        let context: ZMQContext
        let upstream: ZMQSocket
        let server: EdgeServer
        let port: Int
        let encoder = TickEncoder()
        var symbolSequence: UInt64 = 0

        init(
            maxSymbols: Int = 500, auth: AuthConfiguration? = nil,
            configure: (inout EdgeConfiguration) -> Void = { _ in }
        ) async throws {
            context = try ZMQContext()
            upstream = try ZMQSocket(context, type: .extendedPublish)
            try upstream.setVerboseSubscriptions(true)
            try upstream.setSendHighWaterMark(1_000_000)  // a burst from a test is never dropped on its way to edged
            try upstream.setReceiveTimeout(milliseconds: 3000)
            try upstream.bind("tcp://127.0.0.1:*")
            var configuration = EdgeConfiguration()
            configuration.port = 0
            configuration.upstream = try upstream.lastEndpoint
            configuration.controlEndpoint = "tcp://127.0.0.1:*"
            configuration.maxSymbolsPerClient = maxSymbols
            configuration.auth = auth
            configuration.drainTimeout = .milliseconds(300)  // clients left open by a test do not hold its stop
            configure(&configuration)
            server = EdgeServer(configuration: configuration, context: context, logger: Logger(label: "test"))
            try await server.start()
            port = try #require(server.port)
        }

        /// The next subscription change edged made upstream: "+AAPL|" or "-AAPL|".
        func nextUpstreamChange() throws -> String? {
            guard let frames = try upstream.receiveFrames(), let frame = frames.first, !frame.isEmpty else { return nil }
            return (frame[0] == 1 ? "+" : "-") + String(decoding: frame.dropFirst(), as: UTF8.self)
        }

        func publishTrade(_ symbol: String, price: Int64) throws {
            symbolSequence += 1
            var tick = Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: price), size: 100,
                exchangeTimestampNs: 1_701_432_000_000_000_000)
            tick.symbolSequence = symbolSequence
            try upstream.send(Topic.make(symbol: symbol, type: .trade), more: true)
            try upstream.send(encoder.encodeToArray(tick))
        }

        /// Publishes any tick, with the next symbol_seq.
        func publish(_ tick: Tick) throws {
            var tick = tick
            symbolSequence += 1
            tick.symbolSequence = symbolSequence
            try upstream.send(Topic.make(symbol: tick.symbol, type: tick.type), more: true)
            try upstream.send(encoder.encodeToArray(tick))
        }

        func stop() async { await server.stop() }
    }

    @Test func aSubscriberGetsItsSymbolsUpdatesAndTheEdgeSubscribesUpstreamOnlyForThem() async throws {
        let fixture = try await Fixture()
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        #expect(try client.receiveText() == #"{"type":"subscribed","symbols":["AAPL"]}"#)
        #expect(try fixture.nextUpstreamChange() == "+AAPL|")
        try await Task.sleep(for: .milliseconds(200))

        try fixture.publishTrade("AAPLX", price: 1_000_000)
        try fixture.publishTrade("AAPL", price: 178_520_000)
        let update = try client.receiveJSON()
        #expect(update["type"] as? String == "TRADE")
        #expect(update["symbol"] as? String == "AAPL")
        #expect((update["price"] as? NSNumber)?.decimalValue == Decimal(string: "178.52"))
        #expect(update["exchange"] as? String == "NASDAQ")

        // A second client on the same symbol shares the upstream subscription; the last one to leave drops it.
        let second = try TestWebSocketClient(port: fixture.port)
        try second.send(text: #"{"action":"subscribe","symbols":["AAPL","MSFT"]}"#)
        _ = try second.receiveJSON()
        #expect(try fixture.nextUpstreamChange() == "+MSFT|")
        try client.send(text: #"{"action":"unsubscribe","symbol":"AAPL"}"#)
        #expect(try client.receiveText() == #"{"type":"unsubscribed","symbols":["AAPL"]}"#)
        try second.send(opcode: 0x8, [0x03, 0xE8])
        var changes: Set<String> = []
        while changes.count < 2, let change = try fixture.nextUpstreamChange() { changes.insert(change) }
        #expect(changes == ["-AAPL|", "-MSFT|"])
        await fixture.stop()
    }

    @Test func badMessagesGetTheirErrorCodesAndTheConnectionStays() async throws {
        let fixture = try await Fixture(maxSymbols: 2)
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(text: "not json")
        var reply = try client.receiveJSON()
        #expect(reply["type"] as? String == "error")
        #expect(reply["code"] as? Int == 400)
        try client.send(text: #"{"action":"dance"}"#)
        #expect(try client.receiveJSON()["code"] as? Int == 400)
        try client.send(text: #"{"action":"subscribe","symbol":"AA|PL"}"#)
        #expect(try client.receiveJSON()["code"] as? Int == 400)
        try client.send(text: #"{"action":"subscribe","symbols":["A","B","C"]}"#)
        reply = try client.receiveJSON()
        #expect(reply["code"] as? Int == 405)
        try client.send(text: #"{"action":"ping"}"#)
        #expect(try client.receiveJSON()["type"] as? String == "pong")
        await fixture.stop()
    }

    @Test func healthzAnswersPlainHTTPAndOtherPathsAre404() async throws {
        let fixture = try await Fixture()
        let health = try TestWebSocketClient.httpGet(port: fixture.port, path: "/healthz")
        #expect(health.hasPrefix("HTTP/1.1 200"))
        #expect(health.contains(#"{"status":"ok"}"#))
        #expect(try TestWebSocketClient.httpGet(port: fixture.port, path: "/nope").hasPrefix("HTTP/1.1 404"))
        #expect(throws: TestWebSocketClient.Failure.self) { try TestWebSocketClient(port: fixture.port, path: "/other") }
        await fixture.stop()
    }
}
