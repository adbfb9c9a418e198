import Foundation
import Glibc
import Synchronization
import Testing

import MarketData
import ZeroMQ

/// kill -9 of a real plantd under load, and its restart from the journal: consumers, with the documented gap
/// procedure (a symbol replay from the first missing symbol_seq), end with every tick the feed sent, each once.
@Suite(.serialized) struct CrashEndToEnd {
    /// At 200 000 ticks/s a debug plantd is the bottleneck, so `make test` runs the release one.
    static let releaseBinDirectory = ProcessInfo.processInfo.environment["TICKPLANT_RELEASE_BIN_DIR"]
    static let rate = releaseBinDirectory == nil ? 40_000 : 200_000
    static let binDirectory = releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory

    /// What feedd does, for this test: publishes ticks over 500 symbols at a rate (venue_seq numbers each one) and
    /// answers stream replays from everything it sent.
    final class Feed: Sendable {
        let thread = SocketThread(name: "feed")
        let sent = Atomic<Int>(0)
        /// Set by the test once plantd and the consumer are connected: the feed publishes from then on.
        let go = Atomic<Bool>(false)
        let replaysServed = Atomic<Int>(0)

        init(publish: String, replay: String, context: ZMQContext, rate: Int, total: Int) {
            thread.start { [self] thread in
                guard let publisher = try? ZMQSocket(context, type: .publish),
                    let router = try? ZMQSocket(context, type: .router)
                else { return }
                defer {
                    publisher.close()
                    router.close()
                }
                try? publisher.setSendHighWaterMark(10_000_000)
                try? router.setSendHighWaterMark(0)
                try? publisher.bind(publish)
                try? router.bind(replay)
                var ring = TickRing(capacity: total + 10)
                let encoder = TickEncoder()
                var prices = [Int64](repeating: 100_000_000, count: 500)
                var topic: [UInt8] = []
                while !go.load(ordering: .relaxed) && !thread.isStopping { usleep(10_000) }
                let start = MonotonicClock.nowNanoseconds()
                var index = 0
                while !thread.isStopping {
                    while let frames = try? router.receiveFrames(dontWait: true), frames.count >= 2,
                        case let .streamReplay(from, maxCount) = ReplayRequest(decoding: frames[frames.count - 1])
                    {
                        var count: UInt64 = 0
                        let result = ring.forEach(from: from, maxCount: maxCount == 0 ? .max : maxCount) { _, topic, tick in
                            _ = try? router.send(frames[0], more: true)
                            _ = try? router.send(topic, more: true)
                            _ = try? router.send(tick)
                            count += 1
                        }
                        _ = try? router.send(frames[0], more: true)
                        _ = try? router.send(SnapshotEnd.topic, more: true)
                        _ = try? router.send(SnapshotEnd(streamSequence: UInt64(index), tickCount: count,
                            complete: result.complete).encoded())
                        replaysServed.wrappingAdd(1, ordering: .relaxed)
                    }
                    let due = min(total, Int(Double(MonotonicClock.nowNanoseconds() - start) / 1e9 * Double(rate)))
                    if index >= due {
                        usleep(index >= total ? 20_000 : 200)
                        continue
                    }
                    while index < due {
                        index += 1
                        let symbol = (index &* 7919) % prices.count
                        prices[symbol] += index % 3 == 0 ? 10_000 : -5_000
                        var tick = Tick.trade(symbol: "S\(symbol)", venue: "XNAS",
                            price: Price(fixedPoint: prices[symbol]), size: 100)
                        tick.streamSequence = UInt64(index)
                        tick.venueSequence = UInt64(index)
                        tick.exchangeTimestampNs = WallClock.nowNanoseconds()
                        Topic.write(symbol: tick.symbol, type: .trade, into: &topic)
                        let payload = encoder.encode(tick)
                        topic.withUnsafeBytes { ring.store(sequence: UInt64(index), topic: $0, payload: payload) }
                        // Counted before it goes, tick by tick: whatever plantd has when it is killed is at most
                        // `sent` then (a count kept per burst lagged behind a burst in flight under load).
                        sent.store(index, ordering: .relaxed)
                        _ = try? topic.withUnsafeBytes { try publisher.send($0, more: true) }
                        _ = try? publisher.send(payload)
                    }
                }
            }
        }
    }

    @Test func killingPlantdUnderLoadLosesNothingAndDuplicatesNothing() throws {
        let chain = try Chain()
        defer { chain.stop() }
        let context = try ZMQContext()
        let total = Self.rate * 6
        let feed = Feed(publish: chain.endpoint("feed_pub"), replay: chain.endpoint("feed_replay"), context: context,
            rate: Self.rate, total: total)
        defer {
            feed.thread.stop()
            _ = feed.thread.join()
        }
        let plantConfig = chain.etc.appendingPathComponent("plantd-journal.toml").path
        let plantd = Self.binDirectory.appendingPathComponent("plantd").path
        let first = try chain.start("plantd", executable: plantd, ["--config", plantConfig])
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))

        // A consumer of a shard, on its own socket for the whole test: ZeroMQ reconnects it to the new plantd.
        let shard = "S1"
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.setReceiveHighWaterMark(0)
        try subscriber.subscribe(shard)
        try subscriber.connect(chain.endpoint("plant_pub"))
        try subscriber.setReceiveTimeout(milliseconds: 100)
        var received: [Tick] = []
        func receive(for seconds: Double) throws {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                guard let frames = try subscriber.receiveFrames() else { continue }
                received.append(try TickDecoder.decode(frames[1]))
            }
        }

        // plantd's SUB and the consumer's subscription connect before the first tick.
        Thread.sleep(forTimeInterval: 0.5)
        feed.go.store(true, ordering: .relaxed)

        // Two seconds under load, then kill -9, then a new plantd on the same journal half a second later.
        while feed.sent.load(ordering: .relaxed) < Self.rate * 2 { try receive(for: 0.05) }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let killedAt = feed.sent.load(ordering: .relaxed)
        try receive(for: 0.5)
        try chain.start("plantd-2", executable: plantd, ["--config", plantConfig])
        try chain.waitUntilAnswering("plantd-2", endpoint: chain.endpoint("plant_ctl"))
        while feed.sent.load(ordering: .relaxed) < total { try receive(for: 0.1) }
        // Until plantd has caught up and the stream is quiet.
        var lastCount = -1
        while received.count != lastCount {
            lastCount = received.count
            try receive(for: 1.5)
        }
        #expect(killedAt < total - Self.rate, "the kill happened under load")
        #expect(feed.replaysServed.load(ordering: .relaxed) >= 1, "the new plantd asked the feed for what it missed")
        #expect(chain.log("plantd-2").contains("journal recovered"), "\(chain.log("plantd-2"))")
        // What the new plantd missed while it was down shows in `gaps`: filled by the feed's replay, and how long that
        // took.
        let gaps = try Chain.run(Self.binDirectory.appendingPathComponent("mktctl").path,
            ["gaps", "--plant", chain.endpoint("plant_ctl"), "--etc", chain.directory.path, "--json"])
        let plantGaps = try JSONDecoder().decode(PlantGapsReplyOnly.self, from: Data(gaps.output.utf8)).plantd.gaps
        let catchUp = try #require(plantGaps.first, "no gap in plantd's reply: \(gaps.output)")
        #expect(catchUp.healedBy == "feedd replay" && catchUp.durationNs != nil, "\(catchUp)")
        #expect(catchUp.firstSequence <= UInt64(killedAt) + 1 && catchUp.lastSequence >= UInt64(killedAt),
            "\(catchUp), killed at \(killedAt)")

        // The consumer's gap procedure: per symbol, a replay from the first missing symbol_seq.
        let ticks = received.filter { !$0.symbol.hasPrefix("#") }
        var bySymbol = Dictionary(grouping: ticks, by: \.symbol)
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.setReceiveTimeout(milliseconds: 5_000)
        try dealer.connect(chain.endpoint("plant_snap"))
        var repaired = 0
        for (symbol, symbolTicks) in bySymbol {
            let sequences = symbolTicks.map(\.symbolSequence)
            #expect(Set(sequences).count == sequences.count, "\(symbol): a duplicate reached the consumer")
            // The first missing number: 1 when the consumer's first tick of the symbol was not its first.
            guard let missing = sequences.first != 1 ? 1
                : zip(sequences, sequences.dropFirst()).first(where: { $1 != $0 + 1 }).map({ $0.0 + 1 })
            else { continue }
            _ = try dealer.send(ReplayRequest.symbolReplay(symbol: symbol, fromSymbolSequence: missing).encoded())
            var replayed: [Tick] = []
            while true {
                let frames = try #require(try dealer.receiveFrames(), "no replay answer for \(symbol)")
                if frames[0] == Array(SnapshotEnd.topic.utf8) {
                    #expect(SnapshotEnd(decoding: frames[1])?.complete == true, "\(symbol): replay incomplete")
                    break
                }
                replayed.append(try TickDecoder.decode(frames[1]))
            }
            let kept = symbolTicks.filter { $0.symbolSequence < missing }
            bySymbol[symbol] = kept + replayed
            repaired += 1
        }

        // Every symbol contiguous from 1, and exactly the ticks the feed sent for the shard.
        for (symbol, symbolTicks) in bySymbol {
            let sequences = symbolTicks.map(\.symbolSequence)
            #expect(sequences == Array(1...UInt64(sequences.count)), "\(symbol): gap or duplicate after repair")
        }
        // The feed's ticks (the plant's own NBBO and bars, venue CONS, come on top of them).
        let delivered = bySymbol.values.flatMap { $0 }.filter { $0.venue != "CONS" }.map(\.venueSequence).sorted()
        let expected = (1...total).filter { "S\(($0 &* 7919) % 500)".hasPrefix(shard) }.map(UInt64.init)
        #expect(delivered.count == expected.count, "delivered \(delivered.count) of \(expected.count)")
        #expect(delivered == expected, "the set of ticks differs from what the feed sent")
        print("crash test: \(ticks.count) ticks received live, \(repaired) symbols repaired by replay")
    }
}

/// The plantd half of `mktctl gaps --json` (its feedd half is null here: the test's feed is no feedd).
private struct PlantGapsReplyOnly: Decodable {
    var plantd: PlantGapsReply
}
