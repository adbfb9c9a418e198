import Foundation
import Logging
import Testing
import TestSupport

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
        /// The next change of edged's upstream subscriptions, "+TOPIC" or "-TOPIC"; the heartbeats' (which edged
        /// subscribes to at start, to see plant restarts) passed over.
        func nextUpstreamChange() throws -> String? {
            while true {
                guard let frames = try upstream.receiveFrames(), let frame = frames.first, !frame.isEmpty else {
                    return nil
                }
                let change = (frame[0] == 1 ? "+" : "-") + String(decoding: frame.dropFirst(), as: UTF8.self)
                if change != "+" + Topic.heartbeat { return change }
            }
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
        let health = try LoopbackHTTP.request(port: fixture.port, path: "/healthz")
        #expect(health.hasPrefix("HTTP/1.1 200"))
        #expect(health.contains(#"{"status":"ok"}"#))
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/nope").hasPrefix("HTTP/1.1 404"))
        #expect { try TestWebSocketClient(port: fixture.port, path: "/other") } throws: {
            ($0 as? TestWebSocketClient.Refused)?.status == 404
        }
        await fixture.stop()
    }
}

/// edged's subscriptions upstream when its clients watch thousands of symbols. A SUB socket sends each subscription
/// to the publisher as a message, and libzmq drops those past the socket's send high-water mark (1 000 by default)
/// without a word: when thousands are made at once, and when the SUB reconnects to a restarted plantd and sends them
/// all again. A symbol dropped so would never update again, its last value shown as if it were current.
@Suite(.serialized) struct EdgeUpstreamSubscriptionsOverRealSockets {
    @Test func fiveThousandSymbolsAreAllSubscribedUpstreamAndAgainAfterPlantdRestarts() async throws {
        let symbols = (0..<5_000).map { "S\($0)" }
        let fixture = try await EdgeServerOverRealSockets.Fixture(maxSymbols: symbols.count) {
            $0.maxMessagesPerSecond = 1_000
        }
        let client = try TestWebSocketClient(port: fixture.port)
        for start in stride(from: 0, to: symbols.count, by: 500) {
            let batch = symbols[start..<start + 500].map { "\"\($0)\"" }.joined(separator: ",")
            try client.send(text: #"{"action":"subscribe","symbols":["# + batch + "]}")
            #expect(try client.receiveJSON()["type"] as? String == "subscribed")
        }
        let wanted = Set(symbols.map { $0 + "|" } + [Topic.heartbeat])
        let first = Set(try PublisherSubscriptions.read(from: fixture.upstream, count: wanted.count, within: 10))
        let missing = wanted.subtracting(first).prefix(3)
        #expect(first.count == wanted.count, "plantd saw \(first.count) of \(wanted.count), not \(missing)")

        // plantd restarts: its XPUB goes, a new one binds the same port, edged's SUB reconnects and subscribes again.
        let endpoint = try fixture.upstream.lastEndpoint
        fixture.upstream.close()
        let restarted = try ZMQSocket(fixture.context, type: .extendedPublish)
        try restarted.setVerboseSubscriptions(true)
        try restarted.setReceiveTimeout(milliseconds: 3000)
        var bound = false
        for _ in 0..<100 where !bound {  // the old socket's port is let go by libzmq's I/O thread, soon after
            bound = (try? restarted.bind(endpoint)) != nil
            if !bound { try await Task.sleep(for: .milliseconds(50)) }
        }
        try #require(bound, "could not bind \(endpoint) again")
        let again = Set(try PublisherSubscriptions.read(from: restarted, count: wanted.count, within: 10))
        #expect(again.count == wanted.count, "the restarted plantd saw \(again.count) of \(wanted.count)")

        // The last symbol subscribed still updates.
        var tick = Tick.trade(symbol: "S4999", venue: "XNAS", price: Price(fixedPoint: 178_520_000), size: 100,
            exchangeTimestampNs: 1_701_432_000_000_000_000)
        tick.symbolSequence = 1
        try restarted.send(Topic.make(symbol: tick.symbol, type: .trade), more: true)
        try restarted.send(fixture.encoder.encodeToArray(tick))
        let update = try client.receiveJSON()
        #expect(update["symbol"] as? String == "S4999" && update["type"] as? String == "TRADE")
        restarted.close()
        await fixture.stop()
    }
}

/// RFC 6455 below the protocol of section 8, on `/prices` (the Autobahn testsuite checks the same layer through
/// `/echo`, `make autobahn`): fragments, pings between them, the frame size limit, UTF-8, reserved bits, the
/// closing handshake.
@Suite(.serialized) struct EdgeWebSocketLayerOverRealSockets {
    /// The code of the close frame the client gets next (nil for a close without a code).
    static func closeCode(_ client: TestWebSocketClient) throws -> Int? {
        while true {
            let frame = try client.receiveFrame()
            guard frame.opcode == 0x8 else { continue }
            return frame.payload.count >= 2 ? Int(frame.payload[0]) << 8 | Int(frame.payload[1]) : nil
        }
    }

    @Test func aFragmentedMessageWithAPingBetweenItsFragmentsIsOneMessage() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(opcode: 0x1, Array(#"{"action":"subs"#.utf8), fin: false)
        try client.send(opcode: 0x9, Array("are you there".utf8))
        try client.send(opcode: 0x0, Array(#"cribe","symbol""#.utf8), fin: false)
        try client.send(opcode: 0x0, Array(#":"AAPL"}"#.utf8))
        let pong = try client.receiveFrame()
        #expect(pong.opcode == 0xA && pong.payload == Array("are you there".utf8))
        #expect(try client.receiveText() == #"{"type":"subscribed","symbols":["AAPL"]}"#)
        await fixture.stop()
    }

    @Test(arguments: [
        ("a frame over max_frame_bytes", 1009),
        ("fragments adding up to more than max_frame_bytes", 1009),
        ("text that is not UTF-8", 1007),
        ("a reserved bit", 1002),
        ("an unknown opcode", 1002),
        ("a continuation with no message begun", 1002),
    ])
    func aFrameThatBreaksTheProtocolClosesWithItsCode(_ what: String, code: Int) async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.maxFrameBytes = 1_024 }
        let client = try TestWebSocketClient(port: fixture.port)
        switch what {
        case "a frame over max_frame_bytes":
            try client.send(Array(repeating: UInt8(ascii: " "), count: 2_000))
        case "fragments adding up to more than max_frame_bytes":
            try client.send(opcode: 0x1, Array(repeating: UInt8(ascii: " "), count: 1_000), fin: false)
            try client.send(opcode: 0x0, Array(repeating: UInt8(ascii: " "), count: 1_000))
        case "text that is not UTF-8":
            try client.send([0x7B, 0xC0, 0xAF, 0x7D])  // an overlong "/"
        case "a reserved bit":
            try client.send(opcode: 0x1 | 0x40, Array("{}".utf8))
        case "an unknown opcode":
            try client.send(opcode: 0x3, Array("{}".utf8))
        default:
            try client.send(opcode: 0x0, Array("{}".utf8))
        }
        #expect(try Self.closeCode(client) == code, "\(what)")
        await fixture.stop()
    }

    @Test func aClientsCloseIsEchoedWithItsCodeAndAnInvalidOneIs1002() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        let client = try TestWebSocketClient(port: fixture.port)
        try client.send(opcode: 0x8, [0x0B, 0xB8] + Array("bye".utf8))  // 3000
        #expect(try Self.closeCode(client) == 3_000)
        let invalid = try TestWebSocketClient(port: fixture.port)
        try invalid.send(opcode: 0x8, [0x03, 0xED])  // 1005 must never be sent
        #expect(try Self.closeCode(invalid) == 1_002)
        // /echo exists only where a configuration turns it on (the conformance run).
        #expect { try TestWebSocketClient(port: fixture.port, path: "/echo") } throws: {
            ($0 as? TestWebSocketClient.Refused)?.status == 404
        }
        await fixture.stop()
    }
}
