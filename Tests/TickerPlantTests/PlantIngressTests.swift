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
}
