import Foundation
import Testing

@testable import Operations

/// `mktctl bench feed` on a small market at a rate any machine keeps up with: the bench itself must count right.
@Suite(.serialized) struct FeedBenchTests {
    @Test func everyMessageSentIsCountedByTheBareReceiverAndByFeedd() throws {
        var settings = FeedBench.Settings()
        settings.messages = 60_000
        settings.symbols = 20
        let bench = FeedBench(settings: settings) { _ in }
        let bare = try bench.runRawReceiver()
        #expect(bare.sent >= 60_000)
        #expect(bare.received == bare.sent)
        let feedd = try bench.runFeedEngine(rate: 60_000, messages: 60_000)
        #expect(feedd.sent >= 60_000)
        #expect(feedd.received == feedd.sent)
        #expect(feedd.lost == 0 && feedd.gaps == 0 && feedd.kernelDrops == 0)
        #expect(feedd.ticksPublished > 10_000)  // the subscriber drained ticks: quotes and trades of the market
        let table = FeedBench.table([bare, feedd])
        #expect(table.contains("bare receiver (recvmmsg, count)") && table.contains("feedd at 60 k/s"))
    }
}

/// `mktctl bench plant` on a small market: both relays deliver every tick, so their rates compare like with like.
@Suite(.serialized) struct PlantBenchTests {
    @Test func theBareRelayAndPlantdDeliverEveryTick() throws {
        let bench = PlantBench(ticks: 20_000, symbols: 50) { _ in }
        let bare = try bench.runBareRelay()
        let plant = try bench.runPlant()
        #expect(bare.received == 20_000 && bare.seconds > 0)
        #expect(plant.received == 20_000 && plant.seconds > 0)
        #expect(PlantBench.table([bare, plant]).contains("plantd, every filter on"))
    }

    /// With working ends the publisher encodes every tick and the consumer decodes every one with protobuf-c: a tick
    /// it could not decode would not be counted, so every tick arriving says plantd's output decodes.
    @Test func withWorkingEndsEveryTickIsEncodedAndDecoded() throws {
        var bench = PlantBench(ticks: 20_000, symbols: 50) { _ in }
        bench.workingEnds = true
        let bare = try bench.runBareRelay()
        let plant = try bench.runPlant()
        #expect(bare.received == 20_000 && plant.received == 20_000)
    }

    /// Several rounds: each kind of run is shown by its median, and the ratio is of medians.
    @Test func theTableShowsEachRunsMedianOverItsRounds() {
        let runs = [(1, 1.0), (2, 2.0), (3, 9.0)].flatMap { round, plantSeconds in
            [PlantBench.Run(name: "bare", sent: 1_000_000, received: 1_000_000, seconds: 1, round: round),
             PlantBench.Run(name: "plant", sent: 1_000_000, received: 1_000_000, seconds: plantSeconds, round: round)]
        }
        let table = PlantBench.table(runs)
        // Bare: 1 M/s each round. Plant: 1 M/s, 0.5 M/s, 0.11 M/s -> median 500 k/s, half the bare relay's.
        #expect(table.contains("500 k/s"))
        #expect(table.contains("111-1000 k/s"))
        #expect(table.contains("0.50"))
    }
}
