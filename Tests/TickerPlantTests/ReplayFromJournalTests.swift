import Foundation
import Logging
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// Symbol and stream replays that reach back before plantd's in-memory ring are read from its journal, across
/// segments, joined to the ring without a gap or a duplicate, and still served after a restart.
@Suite(.serialized) struct ReplayFromJournalTests {
    static func engine(
        _ context: ZMQContext, feed: PlantRecoveryTests.FakeFeed, journal: String, maxAnswerTicks: Int = 100_000,
        replayTicks: Int = 100, answerTicksPerSecond: Int? = nil
    ) throws -> PlantEngine {
        var configuration = PlantConfiguration()
        configuration.maxAnswerTicks = maxAnswerTicks
        if let answerTicksPerSecond { configuration.answerTicksPerSecond = answerTicksPerSecond }
        configuration.feeds = [try feed.publisher.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.snapshotEndpoint = "tcp://127.0.0.1:*"
        configuration.replayTicks = replayTicks  // 100: anything older than the last 100 comes from the journal
        configuration.journal.directory = journal
        configuration.journal.segmentBytes = 65_536  // several segments
        configuration.aggregation.nbbo = false
        configuration.aggregation.barIntervals = []
        let engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        return engine
    }

    struct Answer {
        var ticks: [Tick] = []
        var end: SnapshotEnd?
    }

    static func ask(_ request: ReplayRequest, of engine: PlantEngine, _ context: ZMQContext) throws -> Answer {
        let dealer = try ZMQSocket(context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 10_000)
        try dealer.connect(try #require(engine.endpoints["snapshot"]))
        _ = try dealer.send(request.encoded())
        var answer = Answer()
        while answer.end == nil {
            let frames = try #require(try dealer.receiveFrames(), "no answer within 10 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                answer.end = SnapshotEnd(decoding: frames[1])
            } else {
                answer.ticks.append(try TickDecoder.decode(frames[1]))
            }
        }
        return answer
    }

    /// Waits until the plant has published `count` ticks (its status says so).
    static func waitForStream(_ engine: PlantEngine, _ context: ZMQContext, reaching count: UInt64) throws {
        let control = try ZMQSocket(context, type: .request)
        defer { control.close() }
        try control.setReceiveTimeout(milliseconds: 2_000)
        try control.connect(try #require(engine.endpoints["control"]))
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            try control.send(#"{"cmd":"status"}"#)
            let reply = try JSONDecoder().decode(DaemonStatus.self, from: Data(try #require(try control.receiveFrames())[0]))
            if reply.counters["stream_seq", default: 0] >= count { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        Issue.record("the plant did not publish \(count) ticks within 10 s")
    }

    @Test func replaysBeforeTheRingComeFromTheJournalWholeAndInOrder() throws {
        let journal = FileManager.default.temporaryDirectory.appendingPathComponent("replay-journal-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let context = try ZMQContext()
        let feed = try PlantRecoveryTests.FakeFeed(context: context)
        var engine = try Self.engine(context, feed: feed, journal: journal)
        Thread.sleep(forTimeInterval: 0.4)
        // 3 300 trades over AAPL, MSFT, NVDA (1 100 each): stream_seq 1...3300, each symbol's symbol_seq 1...1100.
        try feed.publish(3_300)
        try Self.waitForStream(engine, context, reaching: 3_300)
        #expect(JournalCursor.segmentNames(journal).count > 3, "the journal spans several segments")

        func checkAnswers(_ label: String) throws {
            // The whole stream: 3 200 ticks from the journal, the last 100 from the ring.
            let stream = try Self.ask(.streamReplay(fromStreamSequence: 1, maxCount: 0), of: engine, context)
            #expect(stream.ticks.map(\.streamSequence) == Array(1...3_300), "\(label): the whole stream")
            #expect(stream.end?.complete == true && stream.end?.tickCount == 3_300, "\(label)")
            // A window within the journal, its count honoured.
            let window = try Self.ask(.streamReplay(fromStreamSequence: 500, maxCount: 1_000), of: engine, context)
            #expect(window.ticks.map(\.streamSequence) == Array(500...1_499), "\(label): a window")
            #expect(window.end?.complete == true, "\(label)")
            // One symbol from its first tick, and from the middle (found by its checkpoints, not from the start).
            let aapl = try Self.ask(.symbolReplay(symbol: "AAPL", fromSymbolSequence: 1), of: engine, context)
            #expect(aapl.ticks.allSatisfy { $0.symbol == "AAPL" }, "\(label)")
            #expect(aapl.ticks.map(\.symbolSequence) == Array(1...1_100), "\(label): AAPL from 1")
            #expect(aapl.end?.complete == true, "\(label)")
            let middle = try Self.ask(.symbolReplay(symbol: "MSFT", fromSymbolSequence: 1_050), of: engine, context)
            #expect(middle.ticks.map(\.symbolSequence) == Array(1_050...1_100), "\(label): MSFT from 1050")
            #expect(middle.end?.complete == true, "\(label)")
            // Up to date: nothing missed, complete. A symbol_seq beyond the next, or a symbol never published: the
            // asker's history is not this plant's, and it is told so (edged answers its client with a snapshot).
            let upToDate = try Self.ask(.symbolReplay(symbol: "MSFT", fromSymbolSequence: 1_101), of: engine, context)
            #expect(upToDate.ticks.isEmpty && upToDate.end?.complete == true, "\(label)")
            let ahead = try Self.ask(.symbolReplay(symbol: "MSFT", fromSymbolSequence: 1_102), of: engine, context)
            #expect(ahead.ticks.isEmpty && ahead.end?.complete == false, "\(label)")
            #expect(ahead.end?.error.contains("ahead of the last one published, 1100") == true, "\(label)")
            let unknown = try Self.ask(.symbolReplay(symbol: "AAPPL", fromSymbolSequence: 1), of: engine, context)
            #expect(unknown.end?.complete == false && unknown.end?.error.contains("unknown symbol") == true, "\(label)")
        }
        try checkAnswers("running")
        // Every 1 024th symbol_seq of a symbol is a checkpoint, found again in the journal after a restart.
        let recovered = try JournalRecovery(directory: journal, ringCapacity: 10)
        #expect(recovered.symbolCheckpoints["MSFT"]?.map(\.symbolSequence) == [1, 1_025])
        #expect(recovered.symbolCheckpoints["MSFT"]?.last?.streamSequence == 3_073)  // MSFT: stream_seq 1, 4, 7 ...
        // The ring rebuilt from the journal links each symbol's ticks, so a replay walks only the symbol's own:
        // the last ten stream_seqs kept are 3 291...3 300, of which MSFT's are 3 292, 3 295 and 3 298.
        #expect(recovered.newestStreamSequenceOf["MSFT"] == 3_298)
        #expect(recovered.ring.chain(from: 3_298, fromTag: 1).sequences == [3_292, 3_295, 3_298])

        // After a restart the checkpoints come back from the journal and the same answers come out.
        engine.stop()
        _ = engine.thread.join()
        engine = try Self.engine(context, feed: feed, journal: journal)
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        try checkAnswers("restarted")
    }

    @Test func aCursorReadsAcrossSegmentsInSlicesAndWaitsAtARecordStillBeingWritten() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try JournalTests.write(5_000, to: directory, segmentBytes: 65_536)
        var cursor = JournalCursor(directory: directory, from: 1_234)
        defer { cursor.close() }
        var sequences: [UInt64] = []
        var slices = 0
        var progress = JournalCursor.Progress.more
        while progress == .more {
            progress = cursor.read(maxBytes: 16_384) { sequences.append($0.streamSequence); return true }
            slices += 1
        }
        #expect(progress == .caughtUp)
        #expect(sequences == Array(1_234...5_000))
        #expect(slices > 10, "a slice reads about its budget, not everything")

        // Half a record at the end of the last segment (a write in progress) is waited for, not damage.
        let last = directory + "/" + JournalCursor.segmentNames(directory).last!
        let handle = try #require(FileHandle(forWritingAtPath: last))
        handle.seekToEndOfFile()
        handle.write(Data([200, 0, 0, 0, 1, 2, 3]))
        try handle.close()
        #expect(cursor.read(maxBytes: 1 << 20) { _ in true } == .caughtUp)

        // A cursor from a stream_seq in a later segment starts there, not at the journal's start.
        var late = JournalCursor(directory: directory, from: 4_990)
        defer { late.close() }
        var first: UInt64?
        _ = late.read(maxBytes: 1 << 20) { record in
            first = first ?? record.streamSequence
            return false
        }
        #expect(first == 4_990)
    }
}
