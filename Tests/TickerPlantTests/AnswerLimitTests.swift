import Foundation
import Logging
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// What a peer of plantd's snapshot ROUTER can make it do is bounded (DESIGN section 12): no answer carries more
/// than `[plant] max_answer_ticks`, and replays read from the journal are bounded per peer. Over real sockets, with
/// a real journal.
@Suite(.serialized) struct AnswerLimitTests {
    /// A plant whose ring keeps the last 100 ticks (older ones come from its journal), fed 3 300 trades over AAPL,
    /// MSFT and NVDA (1 100 each), answering at most `maxAnswerTicks` ticks at a time.
    final class FedPlant {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("answers-\(UUID())").path
        let context: ZMQContext
        let engine: PlantEngine

        init(maxAnswerTicks: Int, trades: Int = 3_300) throws {
            context = try ZMQContext()
            let feed = try PlantRecoveryTests.FakeFeed(context: context)
            engine = try ReplayFromJournalTests.engine(context, feed: feed, journal: journal,
                maxAnswerTicks: maxAnswerTicks)
            Thread.sleep(forTimeInterval: 0.4)
            try feed.publish(trades)
            try ReplayFromJournalTests.waitForStream(engine, context, reaching: UInt64(trades))
        }

        func ask(_ request: ReplayRequest) throws -> ReplayFromJournalTests.Answer {
            try ReplayFromJournalTests.ask(request, of: engine, context)
        }

        func counter(_ name: String) throws -> UInt64? {
            try PlantRecoveryTests.status(of: engine, context).counters[name]
        }

        deinit {
            engine.stop()
            _ = engine.thread.join()
            try? FileManager.default.removeItem(atPath: journal)
        }
    }

    @Test func aStreamReplayOfEverythingIsCutAtTheAnswerLimitAndSaysWhereToGoOn() throws {
        let plant = try FedPlant(maxAnswerTicks: 1_000)
        // From the journal (before the ring): 1-1000, cut.
        let first = try plant.ask(.streamReplay(fromStreamSequence: 1, maxCount: 0))
        #expect(first.ticks.map(\.streamSequence) == Array(1...1_000))
        #expect(first.end?.complete == false && first.end?.tickCount == 1_000)
        #expect(first.end?.error.contains("ask again from stream_seq 1001") == true, "\(first.end?.error ?? "")")
        // A count beyond the limit is cut the same way; from the ring (3201-3300), nothing is left to cut.
        let second = try plant.ask(.streamReplay(fromStreamSequence: 1_001, maxCount: 5_000))
        #expect(second.ticks.map(\.streamSequence) == Array(1_001...2_000))
        #expect(second.end?.complete == false)
        let ring = try plant.ask(.streamReplay(fromStreamSequence: 3_201, maxCount: 0))
        #expect(ring.ticks.map(\.streamSequence) == Array(3_201...3_300))
        #expect(ring.end?.complete == true && ring.end?.error == "")
        // Within the limit: whole, as asked.
        let window = try plant.ask(.streamReplay(fromStreamSequence: 2_001, maxCount: 1_000))
        #expect(window.ticks.map(\.streamSequence) == Array(2_001...3_000))
        #expect(window.end?.complete == true && window.end?.error == "")
        #expect(try plant.counter("answers_refused") == 0, "a cut answer is not a refusal")
    }

    @Test func aSymbolReplayOrSnapshotLargerThanTheLimitIsRefusedBeforeAnyOfItIsRead() throws {
        let plant = try FedPlant(maxAnswerTicks: 1_000)
        // AAPL from 1: 1 100 updates, more than an answer carries: refused, nothing sent; the asker takes a snapshot.
        let whole = try plant.ask(.symbolReplay(symbol: "AAPL", fromSymbolSequence: 1))
        #expect(whole.ticks.isEmpty && whole.end?.complete == false)
        #expect(whole.end?.error.contains("1100 updates of AAPL") == true, "\(whole.end?.error ?? "")")
        // Exactly the limit (101...1100): served whole, from the journal.
        let fits = try plant.ask(.symbolReplay(symbol: "AAPL", fromSymbolSequence: 101))
        #expect(fits.ticks.map(\.symbolSequence) == Array(101...1_100) && fits.end?.complete == true)
        #expect(try plant.counter("answers_refused") == 1)

        let narrow = try FedPlant(maxAnswerTicks: 2, trades: 3)
        // Three symbols with one last value each: "" holds 3, more than 2; one symbol's holds 1.
        let everything = try narrow.ask(.snapshot(prefix: ""))
        #expect(everything.ticks.isEmpty && everything.end?.complete == false)
        #expect(everything.end?.error.contains("holds 3 values") == true, "\(everything.end?.error ?? "")")
        let one = try narrow.ask(.snapshot(prefix: "MSFT|"))
        #expect(one.ticks.map(\.symbol) == ["MSFT"] && one.end?.complete == true)
        let byType = try narrow.ask(.snapshot(prefix: "MSFT|T"))
        #expect(byType.ticks.map(\.symbol) == ["MSFT"] && byType.end?.complete == true)
        let none = try narrow.ask(.snapshot(prefix: "MSFT|Q"))
        #expect(none.ticks.isEmpty && none.end?.complete == true)
        #expect(try narrow.counter("answers_refused") == 1)
    }

    @Test func aPeersAnswersComeWholeAndInTheOrderAskedThoughSomeAreReadFromTheJournal() throws {
        // 10 000 ticks (MSFT 3 334 of them, AAPL and NVDA 3 333): a replay of everything from the journal takes several of the plant's turns, while one that
        // the ring serves could be answered at once.
        let plant = try FedPlant(maxAnswerTicks: 100_000, trades: 10_000)
        let dealer = try ZMQSocket(plant.context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 10_000)
        try dealer.connect(try #require(plant.engine.endpoints["snapshot"]))
        Thread.sleep(forTimeInterval: 0.2)
        // From the journal, the ring, the journal, the cache, the ring.
        let requests: [ReplayRequest] = [
            .streamReplay(fromStreamSequence: 1, maxCount: 0), .streamReplay(fromStreamSequence: 9_950, maxCount: 0),
            .symbolReplay(symbol: "MSFT", fromSymbolSequence: 2), .snapshot(prefix: "AAPL|"),
            .symbolReplay(symbol: "NVDA", fromSymbolSequence: 3_320),
        ]
        for request in requests { _ = try dealer.send(request.encoded()) }
        var answers: [[Tick]] = [[]]
        var ends: [SnapshotEnd] = []
        while ends.count < requests.count {
            let frames = try #require(try dealer.receiveFrames(), "every answer within 10 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                ends.append(try #require(SnapshotEnd(decoding: frames[1])))
                answers.append([])
            } else {
                answers[answers.count - 1].append(try TickDecoder.decode(frames[1]))
            }
        }
        #expect(ends.allSatisfy { $0.complete }, "\(ends.map(\.error))")
        #expect(answers[0].map(\.streamSequence) == Array(1...10_000))
        #expect(answers[1].map(\.streamSequence) == Array(9_950...10_000))
        #expect(answers[2].map(\.symbolSequence) == Array(2...3_334) && answers[2].allSatisfy { $0.symbol == "MSFT" })
        #expect(answers[3].map(\.symbol) == ["AAPL"])
        #expect(answers[4].map(\.symbolSequence) == Array(3_320...3_333) && answers[4].allSatisfy { $0.symbol == "NVDA" })
    }

    @Test func atMostThirtyTwoReplaysAreReadFromTheJournalAtOnceAndTheRestAreToldToAskAgain() throws {
        // 30 000 ticks: a replay of MSFT from its second tick reads the whole journal (about 3 MB, a few turns of
        // the plant's when alone, dozens when 32 share the reading), so the forty requests all find the first ones
        // still being read.
        let plant = try FedPlant(maxAnswerTicks: 100_000, trades: 30_000)
        let dealers = try (0..<40).map { _ in
            let dealer = try ZMQSocket(plant.context, type: .dealer)
            try dealer.setReceiveTimeout(milliseconds: 10_000)
            try dealer.connect(try #require(plant.engine.endpoints["snapshot"]))
            return dealer
        }
        defer { dealers.forEach { $0.close() } }
        Thread.sleep(forTimeInterval: 0.3)
        for dealer in dealers {
            _ = try dealer.send(ReplayRequest.symbolReplay(symbol: "MSFT", fromSymbolSequence: 2).encoded())
        }
        var ends: [SnapshotEnd] = []
        for dealer in dealers {
            var ticks: UInt64 = 0
            while true {
                let frames = try #require(try dealer.receiveFrames(), "an answer within 10 s")
                guard frames[0] == Array(SnapshotEnd.topic.utf8) else {
                    ticks += 1
                    continue
                }
                let end = try #require(SnapshotEnd(decoding: frames[1]))
                #expect(end.tickCount == ticks)
                ends.append(end)
                break
            }
        }
        let busy = ends.filter { $0.error.hasPrefix("busy") }
        #expect(busy.count == 8, "\(ends.map(\.error))")
        #expect(busy.allSatisfy { !$0.complete && $0.tickCount == 0 })
        #expect(ends.filter { $0.complete && $0.tickCount == 9_999 }.count == 32)
        #expect(try plant.counter("answers_refused") == 8)
        #expect(try plant.counter("journal_replays_in_flight") == 0)
    }

    /// A peer that asks and never reads fills its queue (libzmq's, at two whole answers, and the TCP buffers before
    /// it): from then its answers are cut and its requests refused at the cost of one send each, while another peer
    /// is answered whole. Once it has read everything, it is answered again.
    @Test func aPeerThatStopsReadingGetsNoMoreWorkAndIsServedAgainOnceItReads() throws {
        let plant = try FedPlant(maxAnswerTicks: 1_000)
        let hog = try ZMQSocket(plant.context, type: .dealer)
        defer { hog.close() }
        try hog.setReceiveHighWaterMark(1)
        try hog.setSendHighWaterMark(0)
        try hog.connect(try #require(plant.engine.endpoints["snapshot"]))
        Thread.sleep(forTimeInterval: 0.2)
        // Each answer is a thousand ticks (about 130 KB) read from the journal: far more than the buffers hold.
        let request = ReplayRequest.streamReplay(fromStreamSequence: 1, maxCount: 0).encoded()
        var unread: UInt64 = 0
        let deadline = Date().addingTimeInterval(20)
        while unread == 0 && Date() < deadline {
            for _ in 0..<50 { _ = try hog.send(request) }
            Thread.sleep(forTimeInterval: 0.2)
            unread = try plant.counter("answers_to_unread_peers") ?? 0
        }
        #expect(unread > 0, "the peer that does not read was never found out")
        #expect((try plant.counter("answers_cut") ?? 0) >= 1)
        // Another peer is answered whole meanwhile.
        let other = try plant.ask(.streamReplay(fromStreamSequence: 3_201, maxCount: 0))
        #expect(other.ticks.map(\.streamSequence) == Array(3_201...3_300) && other.end?.complete == true)

        // The hog reads everything it was sent (until nothing comes for a second), then asks again: the first
        // request may still be told its answers were unread (that refusal is what finds room again); by the
        // second it is answered whole.
        try hog.setReceiveTimeout(milliseconds: 1_000)
        while try hog.receiveFrames() != nil {}
        var answered: SnapshotEnd?
        for _ in 0..<2 where answered?.complete != true {
            _ = try hog.send(ReplayRequest.streamReplay(fromStreamSequence: 3_201, maxCount: 0).encoded())
            var ticks = 0
            while let frames = try hog.receiveFrames() {
                guard frames[0] == Array(SnapshotEnd.topic.utf8) else {
                    ticks += 1
                    continue
                }
                answered = SnapshotEnd(decoding: frames[1])
                #expect(answered?.tickCount == UInt64(ticks))
                break
            }
        }
        // From 3 201 to the newest tick (plantd publishes some of its own while the test runs: markers of a quiet feed).
        #expect(answered?.complete == true && answered?.tickCount == (answered?.streamSequence ?? 0) - 3_200,
            "\(String(describing: answered))")
    }

    /// A stream replay of more than a turn's worth of ticks (`AnswerLimits.ticksPerTurn`) from the ring goes out over
    /// several turns, as journal replays do: whole, in order, complete, running on to the newest tick when the
    /// stream moves meanwhile; a count is kept exactly.
    @Test func aStreamReplayOfManyTicksFromTheRingComesWholeAndInOrderOverSeveralTurns() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("slices-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let context = try ZMQContext()
        let feed = try PlantRecoveryTests.FakeFeed(context: context)
        let engine = try ReplayFromJournalTests.engine(context, feed: feed, journal: journal, replayTicks: 50_000)
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        Thread.sleep(forTimeInterval: 0.4)
        try feed.publish(10_000)
        try ReplayFromJournalTests.waitForStream(engine, context, reaching: 10_000)

        let dealer = try ZMQSocket(context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 10_000)
        try dealer.connect(try #require(engine.endpoints["snapshot"]))
        _ = try dealer.send(ReplayRequest.streamReplay(fromStreamSequence: 1, maxCount: 0).encoded())
        try feed.publish(2_000)
        var sequences: [UInt64] = []
        var end: SnapshotEnd?
        while end == nil {
            let frames = try #require(try dealer.receiveFrames(), "no answer within 10 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                end = SnapshotEnd(decoding: frames[1])
            } else {
                sequences.append(try TickDecoder.decode(frames[1]).streamSequence)
            }
        }
        #expect(sequences.count >= 10_000 && sequences == Array(1...UInt64(sequences.count)))
        #expect(end?.complete == true && end?.error == "" && end?.tickCount == UInt64(sequences.count))
        #expect((end?.streamSequence ?? 0) >= UInt64(sequences.count))

        let window = try ReplayFromJournalTests.ask(.streamReplay(fromStreamSequence: 5_001, maxCount: 3_000), of: engine, context)
        #expect(window.ticks.map(\.streamSequence) == Array(5_001...8_000))
        #expect(window.end?.complete == true && window.end?.tickCount == 3_000)
    }

    /// An answer larger than `AnswerLimits.ticksSentAtOnce` is taken whole when asked and sent at the pace of
    /// `[plant] answer_ticks_per_second`: it holds exactly the ticks up to the stream_seq its end names though the
    /// stream moves on while it goes out, and a small answer asked meanwhile is not held up behind it.
    @Test func aLargeAnswerGoesOutAtTheBudgetsPaceAsOfWhenItWasAskedAndSmallOnesPassIt() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("budget-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let context = try ZMQContext()
        let feed = try PlantRecoveryTests.FakeFeed(context: context)
        let engine = try ReplayFromJournalTests.engine(context, feed: feed, journal: journal, replayTicks: 50_000,
            answerTicksPerSecond: 1_000)
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        Thread.sleep(forTimeInterval: 0.4)
        try feed.publish(3_300)
        try ReplayFromJournalTests.waitForStream(engine, context, reaching: 3_300)

        let dealer = try ZMQSocket(context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 10_000)
        try dealer.connect(try #require(engine.endpoints["snapshot"]))
        Thread.sleep(forTimeInterval: 0.2)
        let asked = Date()
        _ = try dealer.send(ReplayRequest.symbolReplay(symbol: "AAPL", fromSymbolSequence: 1).encoded())
        Thread.sleep(forTimeInterval: 0.2)
        try feed.publish(300)
        let small = try ReplayFromJournalTests.ask(.symbolReplay(symbol: "MSFT", fromSymbolSequence: 1_101), of: engine,
            context)
        let smallAnswered = Date()
        var symbolSequences: [UInt64] = []
        var end: SnapshotEnd?
        while end == nil {
            let frames = try #require(try dealer.receiveFrames(), "no answer within 10 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                end = SnapshotEnd(decoding: frames[1])
            } else {
                symbolSequences.append(try TickDecoder.decode(frames[1]).symbolSequence)
            }
        }
        let elapsed = Date().timeIntervalSince(asked)
        #expect(symbolSequences == Array(1...1_100), "\(symbolSequences.count) ticks")
        #expect(end?.streamSequence == 3_300 && end?.complete == true && end?.tickCount == 1_100)
        // 1 100 ticks and an end at 1 000 a second, less the budget's first turn's worth (256): at least 0.84 s.
        #expect(elapsed >= 0.8, "answered in \(elapsed) s")
        #expect(small.ticks.map(\.symbolSequence) == Array(1_101...1_200) && small.end?.complete == true)
        #expect(smallAnswered < Date().addingTimeInterval(-0.1), "the small answer came after the large one ended")
    }
}
