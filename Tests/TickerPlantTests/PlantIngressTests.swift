import Foundation
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// What plantd takes from a feed it does not control (DESIGN section 12): the symbol rules again at ingress, no `#`
/// topic but a feed's `#SYS`, and a bounded symbol table.
@Suite(.serialized) struct PlantIngressOverRealSockets {
    @Test func symbolsTheRulesRefuseAndPlantTopicsAndSymbolsPastTheLimitAreRefusedAndCounted() throws {
        let plant = try PlantUnderTest { $0.maxSymbols = 2 }
        let consumer = try plant.consumer([""])
        func trade(_ symbol: String) -> Tick {
            Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: 100_000_000), size: 100)
        }
        var fakeHeartbeat = Tick(symbol: "#HB", type: .status, venue: "EVIL")
        fakeHeartbeat.streamSequence = 1
        for tick in [trade("AA|PL"), fakeHeartbeat, trade("#Q|AAPL"), trade("AAPL"), trade("MSFT"), trade("IBM"),
            trade("AAPL")]
        {
            try plant.send(tick)
        }
        var topics: [String] = []
        var heartbeatVenues: Set<String> = []
        let deadline = Date().addingTimeInterval(3)
        while topics.filter({ $0.hasSuffix("|T") }).count < 3 && Date() < deadline {
            guard let frames = try consumer.receiveFrames() else { continue }
            let topic = String(decoding: frames[0], as: UTF8.self)
            if topic == "#HB" { heartbeatVenues.insert(try TickDecoder.decode(frames[1]).venue) }
            topics.append(topic)
        }
        #expect(topics.filter { $0.hasSuffix("|T") } == ["AAPL|T", "MSFT|T", "AAPL|T"])
        #expect(!topics.contains { $0.hasPrefix("AA|") || $0.hasPrefix("IBM") || $0.hasPrefix("#Q|AAPL") })
        #expect(!heartbeatVenues.contains("EVIL"))
        let status = try plant.status()
        #expect(status.counters["refused_symbols"] == 4)
        #expect(status.counters["symbols"] == 2)
    }

    @Test func oneFutureDatedTradeIsQuarantinedAndTheVenuesRealTradesFlowOn() throws {
        let plant = try PlantUnderTest()
        let consumer = try plant.consumer(["AAPL|T", "#Q|AAPL"])
        let now = WallClock.nowNanoseconds()
        func trade(_ price: Int64, at exchangeNs: UInt64) -> Tick {
            var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: price), size: 100)
            tick.exchangeTimestampNs = exchangeNs
            return tick
        }
        // 2100-01-01: before, it was taken, and every real XNAS trade of AAPL after it was "older than the last
        // accepted" until plantd restarted.
        try plant.send(trade(100_000_000, at: now))
        try plant.send(trade(100_010_000, at: 4_102_444_800_000_000_000))
        for index in 1...3 { try plant.send(trade(100_000_000 + Int64(index) * 20_000, at: now + UInt64(index))) }
        var trades: [Int64] = []
        var quarantined: [Tick] = []
        let deadline = Date().addingTimeInterval(3)
        while trades.count < 4 && Date() < deadline {
            guard let frames = try consumer.receiveFrames() else { continue }
            let tick = try TickDecoder.decode(frames[1])
            if frames[0].first == UInt8(ascii: "#") {
                quarantined.append(tick)
            } else {
                trades.append(tick.price.fixedPoint)
            }
        }
        #expect(trades == [100_000_000, 100_020_000, 100_040_000, 100_060_000])
        #expect(quarantined.map(\.price.fixedPoint) == [100_010_000])
        #expect(quarantined.first?.reason.contains("ahead of the plant's clock") == true)
    }
}
