import Testing

import MarketData
@testable import Operations

/// The hops `mktctl latency` and the chain bench's consumer make of each tick's stamps.
@Suite struct HopLatenciesTests {
    static func tick(_ type: TickType = .trade, stamps: [UInt64]) -> Tick {
        var tick = Tick(symbol: "AAPL", type: type, venue: "XNAS")
        (tick.exchangeTimestampNs, tick.feedReceiveNs, tick.feedTransmitNs, tick.plantReceiveNs,
            tick.plantTransmitNs) = (stamps[0], stamps[1], stamps[2], stamps[3], stamps[4])
        return tick
    }

    @Test func eachHopIsTheTimeBetweenTwoStampsInTheOrderTicksShowThemEndToEndLast() {
        var latencies = HopLatencies(here: "consumer")
        // No plantd stamps first: feedd straight to here.
        // (Durations under 2 048 ns: the histograms hold them exactly.)
        latencies.record(Self.tick(stamps: [100, 300, 350, 0, 0]), receivedNs: 1_000)
        latencies.record(Self.tick(stamps: [100, 200, 240, 500, 510]), receivedNs: 900)
        latencies.record(Self.tick(stamps: [100, 200, 240, 500, 530]), receivedNs: 900)
        let hops = latencies.inOrder
        #expect(hops.map(\.name) == ["exchange -> feedd", "in feedd", "feedd -> consumer", "feedd -> plantd",
            "in plantd", "plantd -> consumer", "end to end"])
        #expect(hops.map { $0.histogram.totalCount } == [3, 3, 1, 2, 2, 2, 3])
        let inPlant = hops[4].histogram
        #expect(inPlant.min == 10 && inPlant.max == 30)
        #expect(hops[2].histogram.max == 650, "feedd out at 350, here at 1 000")
        #expect(hops.last?.histogram.max == 900 && hops.last?.histogram.min == 800)
        #expect(latencies.ticks == 3)
    }

    @Test func aHopThatRunsBackwardsIsCountedNotTimedAndHeldTicksAreLeftOut() {
        var latencies = HopLatencies(here: "mktctl")
        latencies.record(Self.tick(stamps: [1_000, 2_000, 1_500, 3_000, 3_100]), receivedNs: 4_000)
        latencies.record(Self.tick(.book, stamps: [1_000, 2_000, 2_100, 3_000, 3_100]), receivedNs: 4_000)
        latencies.record(Self.tick(stamps: [0, 0, 0, 3_000, 3_100]), receivedNs: 4_000)  // plantd's own
        let inFeed = latencies.inOrder.first { $0.name == "in feedd" }
        #expect(inFeed?.negative == 1 && inFeed?.histogram.totalCount == 0)
        #expect(latencies.ticks == 1)
        latencies.recordExternal(name: "PUB -> SUB", histogram: latencies.inOrder[0].histogram)
        #expect(latencies.inOrder.map(\.name).suffix(2) == ["end to end", "PUB -> SUB"])
    }
}
