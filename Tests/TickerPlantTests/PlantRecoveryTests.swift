import Foundation
import Logging
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// plantd restarting on its journal, in-process, with a stand-in feedd: a PUB for the live stream and a replay
/// ROUTER that answers from everything it published, as feedd's does.
@Suite(.serialized) struct PlantRecoveryTests {
    final class FakeFeed {
        let publisher: ZMQSocket
        let replay: ZMQSocket
        let encoder = TickEncoder()
        var ring = TickRing(capacity: 100_000)
        var sequence: UInt64 = 0
        var topic: [UInt8] = []

        init(context: ZMQContext) throws {
            publisher = try ZMQSocket(context, type: .publish)
            try publisher.setSendHighWaterMark(1_000_000)
            try publisher.bind("tcp://127.0.0.1:*")
            replay = try ZMQSocket(context, type: .router)
            try replay.bind("tcp://127.0.0.1:*")
        }

        /// Publishes `count` trades over three symbols; the venue_seq names each one.
        func publish(_ count: Int) throws {
            for _ in 0..<count {
                sequence += 1
                let symbol = ["AAPL", "MSFT", "NVDA"][Int(sequence % 3)]
                var tick = Tick.trade(symbol: symbol, venue: "XNAS",
                    price: Price(fixedPoint: 100_000_000 + Int64(sequence % 7) * 10_000), size: 100)
                tick.streamSequence = sequence
                tick.venueSequence = sequence
                Topic.write(symbol: symbol, type: .trade, into: &topic)
                let payload = encoder.encode(tick)
                topic.withUnsafeBytes { ring.store(sequence: sequence, topic: $0, payload: payload) }
                _ = try topic.withUnsafeBytes { try publisher.send($0, more: true) }
                _ = try publisher.send(payload)
            }
        }

        /// Answers one replay request, if one is waiting within `timeout`; at most `answerLimit` ticks, as feedd's
        /// `max_answer_ticks` cuts an answer (incomplete, saying where to ask again from).
        func serveReplay(timeout: TimeInterval, answerLimit: UInt64 = .max) throws -> Bool {
            try replay.setReceiveTimeout(milliseconds: Int32(timeout * 1000))
            guard let frames = try replay.receiveFrames(),
                case let .streamReplay(from, maxCount) = ReplayRequest(decoding: frames[frames.count - 1])
            else { return false }
            var count: UInt64 = 0
            let limit = min(maxCount == 0 ? .max : maxCount, answerLimit)
            let result = ring.forEach(from: from, maxCount: limit) { _, topic, tick in
                _ = try? replay.send(frames[0], more: true)
                _ = try? replay.send(topic, more: true)
                _ = try? replay.send(tick)
                count += 1
            }
            let cut = count == answerLimit && from + count <= sequence
            _ = try replay.send(frames[0], more: true)
            _ = try replay.send(SnapshotEnd.topic, more: true)
            _ = try replay.send(SnapshotEnd(streamSequence: sequence, tickCount: count, complete: result.complete && !cut,
                error: cut ? "an answer carries at most \(answerLimit) ticks: ask again from \(from + count)" : "").encoded())
            return true
        }
    }

    /// A plant with a journal of its own, a stand-in feed, and a consumer of `prefix` on its PUB; stopped and cleaned
    /// up when released.
    final class LivePlant {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("plant-journal-\(UUID())").path
        let context: ZMQContext
        let feed: FakeFeed
        let engine: PlantEngine
        let consumer: ZMQSocket

        init(subscribe prefix: String) throws {
            context = try ZMQContext()
            feed = try FakeFeed(context: context)
            engine = try PlantRecoveryTests.engine(context, feed: feed, journal: journal)
            consumer = try ZMQSocket(context, type: .subscribe)
            try consumer.subscribe(prefix)
            try consumer.connect(try #require(engine.endpoints["publish"]))
            Thread.sleep(forTimeInterval: 0.5)  // the subscription reaches the plant
        }

        deinit {
            consumer.close()
            engine.stop()
            _ = engine.thread.join()
            try? FileManager.default.removeItem(atPath: journal)
        }
    }

    static func engine(_ context: ZMQContext, feed: FakeFeed, journal: String, segmentBytes: Int? = nil) throws
        -> PlantEngine
    {
        var configuration = PlantConfiguration()
        configuration.feeds = [try feed.publisher.lastEndpoint]
        configuration.replays = [try feed.replay.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.snapshotEndpoint = "tcp://127.0.0.1:*"
        configuration.journal.directory = journal
        if let segmentBytes { configuration.journal.segmentBytes = segmentBytes }
        let engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        return engine
    }

    /// A SUB to everything `engine` publishes, connected and given the time for its subscription to arrive.
    static func consumer(of engine: PlantEngine, _ context: ZMQContext) throws -> ZMQSocket {
        let consumer = try ZMQSocket(context, type: .subscribe)
        try consumer.subscribe("")
        try consumer.connect(try #require(engine.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.5)
        return consumer
    }

    /// `engine`'s reply to `status`.
    static func status(of engine: PlantEngine, _ context: ZMQContext) throws -> DaemonStatus {
        let control = try ZMQSocket(context, type: .request)
        defer { control.close() }
        try control.setReceiveTimeout(milliseconds: 2000)
        try control.connect(try #require(engine.endpoints["control"]))
        try control.send(#"{"cmd":"status"}"#)
        return try JSONDecoder().decode(DaemonStatus.self, from: Data(try #require(try control.receiveFrames())[0]))
    }

    static func collect(_ socket: ZMQSocket, until count: Int, timeout: TimeInterval = 5) throws -> [Tick] {
        var ticks: [Tick] = []
        let deadline = Date().addingTimeInterval(timeout)
        try socket.setReceiveTimeout(milliseconds: 100)
        while ticks.count < count && Date() < deadline {
            guard let frames = try socket.receiveFrames() else { continue }
            ticks.append(try TickDecoder.decode(frames[1]))
        }
        return ticks
    }

    @Test func aRestartedPlantGoesOnFromItsJournalAndTakesWhatItMissedFromTheFeedsReplay() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("plant-journal-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let context = try ZMQContext()
        let feed = try FakeFeed(context: context)

        // First life: 300 ticks.
        let first = try Self.engine(context, feed: feed, journal: journal)
        let consumer = try ZMQSocket(context, type: .subscribe)
        try consumer.subscribe("")
        try consumer.connect(try #require(first.endpoints["publish"]))
        Thread.sleep(forTimeInterval: 0.5)
        try feed.publish(300)
        let before = try Self.collect(consumer, until: 300)
        #expect(before.count == 300)
        first.stop()
        _ = first.thread.join()
        consumer.close()

        // While the plant is down the feed goes on: nobody takes these 200.
        try feed.publish(200)

        // Second life: it asks the feed for everything after its journal's last tick, then goes on live.
        let second = try Self.engine(context, feed: feed, journal: journal)
        defer {
            second.stop()
            _ = second.thread.join()
        }
        let again = try Self.consumer(of: second, context)
        defer { again.close() }
        #expect(try feed.serveReplay(timeout: 5), "the restarted plant did not ask for a replay")
        Thread.sleep(forTimeInterval: 0.3)
        try feed.publish(100)
        let after = try Self.collect(again, until: 300)

        // Every tick the feed sent, once, in order, with the plant's sequences running on from the first life.
        let all = (before + after).filter { !$0.symbol.hasPrefix("#") }
        #expect(all.map(\.venueSequence) == Array(1...600))
        #expect(all.map(\.streamSequence) == Array(1...600))
        for symbol in ["AAPL", "MSFT", "NVDA"] {
            let sequences = all.filter { $0.symbol == symbol }.map(\.symbolSequence)
            #expect(sequences == Array(1...UInt64(sequences.count)), "\(symbol)")
        }

        // The plant says what it recovered and replayed.
        let status = try Self.status(of: second, context)
        #expect(status.counters["journal.recovered_records"] == 300)
        // The first life wrote its segment's checkpoint as it began: the second started from it.
        #expect(status.counters["journal.recovered_from_checkpoint"] == 1)
        #expect(status.counters["journal.recovered_segments"] == 1)
        #expect(status.counters["feed1.replayed"] == 200)
        #expect(status.counters["feed1.lost"] == 0)
        #expect(status.counters["journal.records"] == 300)
    }

    @Test func aRestartedPlantTakesWhatItMissedInPartsWhenTheFeedCutsItsAnswers() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("plant-journal-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let context = try ZMQContext()
        let feed = try FakeFeed(context: context)
        let first = try Self.engine(context, feed: feed, journal: journal)
        try feed.publish(300)
        try ReplayFromJournalTests.waitForStream(first, context, reaching: 300)
        first.stop()
        _ = first.thread.join()
        // 200 the plant misses while it is down; the feed answers at most 64 ticks at a time, as feedd with
        // `max_answer_ticks = 64`: 301-364, 365-428, 429-492 (each cut), then 493-500 (complete).
        try feed.publish(200)
        let second = try Self.engine(context, feed: feed, journal: journal)
        defer {
            second.stop()
            _ = second.thread.join()
        }
        let consumer = try Self.consumer(of: second, context)
        defer { consumer.close() }
        var answers = 0
        while try feed.serveReplay(timeout: 2, answerLimit: 64) { answers += 1 }
        #expect(answers == 4)
        try ReplayFromJournalTests.waitForStream(second, context, reaching: 500)
        // Trades and the symbols' RECOVERING and OK statuses: everything that comes within 3 s.
        let after = try Self.collect(consumer, until: .max, timeout: 3).filter { $0.type == .trade }
        #expect(after.map(\.venueSequence) == Array(301...500))
        #expect(after.map(\.streamSequence) == Array(301...500))

        let status = try Self.status(of: second, context)
        #expect(status.counters["feed1.replays"] == 1, "one catch-up, asked in four parts")
        #expect(status.counters["feed1.replayed"] == 200)
        #expect(status.counters["feed1.lost"] == 0)
    }

    @Test func aGapInTheLiveStreamIsFilledFromTheFeedsReplay() throws {
        let plant = try LivePlant(subscribe: "")
        let feed = plant.feed
        try feed.publish(10)
        // Ticks 11-15 are "lost on the way": stored for replay, never published.
        for _ in 0..<5 {
            feed.sequence += 1
            var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 100_000_000), size: 100)
            tick.streamSequence = feed.sequence
            tick.venueSequence = feed.sequence
            let payload = feed.encoder.encode(tick)
            Array("AAPL|T".utf8).withUnsafeBytes { feed.ring.store(sequence: feed.sequence, topic: $0, payload: payload) }
        }
        try feed.publish(10)
        #expect(try feed.serveReplay(timeout: 5), "the plant did not ask for the missing ticks")
        let ticks = try Self.collect(plant.consumer, until: 31)
        let trades = ticks.filter { $0.type == .trade }
        #expect(trades.map(\.venueSequence) == Array(1...25))
        // While the gap was being filled, each symbol the feed brings was RECOVERING; then OK again, before the
        // ticks that came after the gap.
        let statuses = ticks.filter { $0.type == .status }
        #expect(statuses.map(\.quality) == [.recovering, .recovering, .recovering, .ok, .ok, .ok])
        #expect(Set(statuses.map(\.symbol)) == ["AAPL", "MSFT", "NVDA"])
        #expect(statuses.allSatisfy { $0.venue == "CONS" && $0.state == .trading })
        let firstOK = try #require(ticks.firstIndex { $0.quality == .ok && $0.type == .status })
        #expect(ticks[..<firstOK].filter { $0.type == .trade }.map(\.venueSequence) == Array(1...15))
    }

    @Test func aGapFeeddGaveUpMarksTheVenuesSymbolsUntilTheirNextTick() throws {
        let plant = try LivePlant(subscribe: "AAPL|")
        let feed = plant.feed
        try feed.publish(3)  // MSFT, NVDA, AAPL
        // feedd gives a MoldUDP64 gap of XNAS up: a GAP status on #SYS.
        feed.sequence += 1
        var gap = Tick(symbol: Topic.system, type: .status, venue: "XNAS")
        gap.quality = .gap
        gap.reason = "XNAS session S1: messages 100...120 lost"
        gap.streamSequence = feed.sequence
        _ = try feed.publisher.send(Topic.system, more: true)
        _ = try feed.publisher.send(feed.encoder.encodeToArray(gap))
        try feed.publish(3)
        let ticks = try Self.collect(plant.consumer, until: 4)
        #expect(ticks.map(\.type) == [.trade, .status, .status, .trade])
        #expect(ticks[1].quality == .gap && ticks[1].reason == "XNAS session S1: messages 100...120 lost")
        #expect(ticks[2].quality == .ok && ticks[2].reason == "receiving again after a gap")
        #expect(ticks.map(\.symbolSequence) == [1, 2, 3, 4])
    }
}
