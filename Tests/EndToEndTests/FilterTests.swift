import Foundation
import Testing

import MarketData
import ZeroMQ

/// The plant's filters with the real executables: the simulator makes up bad trades on ITCH and the JSON venues and
/// halts AAPL; a raw ZeroMQ consumer and a WebSocket client watch what comes out.
@Suite(.serialized) struct PlantFiltersEndToEnd {
    struct SentTrade: Decodable, Hashable {
        var venue: String
        var symbol: String
        var price: String
        var size: UInt64
        var chaos: String?
    }

    @Test func badTradesFromItchAndJSONAreQuarantinedAndAHaltReachesEveryKindOfConsumer() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        let clients = Chain.packageRoot.appendingPathComponent("Tests/Clients")
        try chain.start("ws_client", executable: Chain.python,
            [clients.appendingPathComponent("ws_client.py").path,
                "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices", "16", "AAPL"])
        let context = try ZMQContext()
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.setReceiveHighWaterMark(1_000_000)
        try subscriber.subscribe("AAPL|")
        try subscriber.subscribe("#Q|AAPL")
        try subscriber.connect(chain.endpoint("plant_pub"))
        let ready = Date().addingTimeInterval(10)
        while Date() < ready && !chain.log("ws_client").contains("subscribed") { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 0.5)

        let tradeLog = chain.directory.appendingPathComponent("trades.jsonl")
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path,
            "--duration", "6", "--chaos", "badprice=3%,negvolume=3%,halt=AAPL@2s+2s", "--trade-log", tradeLog.path,
            "--quiet"])
        #expect(try chain.waitForExit("mktctl", timeout: 40) == 0, "\(chain.log("mktctl"))")

        // Everything the plant published for AAPL, in order, until the stream has been quiet for 3 s (a held jump
        // goes to quarantine at the latest 2 s after it came).
        try subscriber.setReceiveTimeout(milliseconds: 500)
        var received: [(topic: String, tick: Tick)] = []
        var lastArrival = Date()
        while Date().timeIntervalSince(lastArrival) < 3 {
            guard let frames = try subscriber.receiveFrames() else { continue }
            received.append((String(decoding: frames[0], as: UTF8.self), try TickDecoder.decode(frames[1])))
            lastArrival = Date()
        }
        _ = try chain.waitForExit("ws_client", timeout: 20)

        let sent = try String(contentsOf: tradeLog, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(SentTrade.self, from: Data($0.utf8))
        }.filter { $0.symbol == "AAPL" }
        let madeUp = sent.filter { $0.chaos != nil }
        #expect(madeUp.filter { $0.chaos == "badprice" }.count > 20, "too few bad prices to prove anything")
        #expect(madeUp.filter { $0.chaos == "negvolume" }.count > 20, "too few bad volumes to prove anything")
        #expect(Set(madeUp.filter { $0.chaos == "badprice" }.map(\.venue)).count == 3, "bad prices on every venue")

        // Every made-up trade went to quarantine, and only those and the trades of the halt did.
        let quarantined = received.filter { $0.topic == "#Q|AAPL" }.map(\.tick)
        func key(_ tick: Tick) -> String { "\(tick.price)/\(tick.size)" }
        func key(_ trade: SentTrade) -> String { "\(trade.price)/\(trade.size)" }
        var unmatched = Dictionary(grouping: quarantined, by: key).mapValues(\.count)
        for trade in madeUp {
            guard let left = unmatched[key(trade)], left > 0 else {
                Issue.record("made-up trade \(trade) is not in quarantine")
                continue
            }
            unmatched[key(trade)] = left - 1
        }
        // Ticks quarantined by a rule other than the halt's are made-up ones (during the halt, made-up and real
        // trades alike go there for the halt).
        var madeUpLeft = Dictionary(grouping: madeUp, by: key).mapValues(\.count)
        for tick in quarantined where !tick.reason.hasPrefix("halt:") {
            guard let left = madeUpLeft[key(tick)], left > 0 else {
                Issue.record("quarantined though the market sent it: \(tick.price) x \(tick.size): \(tick.reason)")
                continue
            }
            madeUpLeft[key(tick)] = left - 1
        }
        #expect(quarantined.contains { $0.reason.hasPrefix("price: non-positive price 0") })
        #expect(quarantined.contains { $0.reason.hasPrefix("price: jump of +") })
        #expect(quarantined.contains { $0.reason == "size: zero volume" })

        // What consumers got: no made-up price, symbol_seq contiguous, HALTED then TRADING with no trade between.
        let published = received.filter { $0.topic.hasPrefix("AAPL|") }.map(\.tick)
        let realPrices = Set(sent.filter { $0.chaos == nil }.map(\.price))
        for trade in published where trade.type == .trade {
            #expect(realPrices.contains(trade.price.description) && trade.size > 0 || trade.venue != "XNAS" && trade.size == 0,
                "a bad trade reached consumers: \(trade.price) x \(trade.size) from \(trade.venue)")
        }
        let sequences = published.map(\.symbolSequence)
        #expect(sequences == Array((sequences.first ?? 1)..<((sequences.first ?? 1) + UInt64(sequences.count))))
        let states = published.enumerated().filter { $0.element.type == .status }.map { ($0.offset, $0.element.state) }
        let halted = try #require(states.first { $0.1 == .halted }, "no HALTED status for AAPL")
        let resumed = try #require(states.first { $0.0 > halted.0 && $0.1 == .trading }, "no TRADING status after it")
        #expect(!published[halted.0..<resumed.0].contains { $0.type == .trade }, "a trade went out during the halt")
        #expect(quarantined.contains { $0.reason.hasPrefix("halt: trade while HALTED") })

        // The WebSocket client saw the halt and the resumption, and no trade between them.
        let messages = chain.log("ws_client").split(separator: "\n").map(String.init)
        let haltIndex = try #require(messages.firstIndex { $0.contains(#""state":"HALTED""#) }, "\(messages.suffix(3))")
        let resumeIndex = try #require(messages[haltIndex...].firstIndex { $0.contains(#""state":"TRADING""#) })
        #expect(!messages[haltIndex..<resumeIndex].contains { $0.contains(#""type":"TRADE""#) })
        for message in messages where message.contains(#""type":"TRADE""#) {
            #expect(!message.contains(#""price":0,"#) && !message.contains(#""price":0}"#), "\(message)")
        }
    }
}
