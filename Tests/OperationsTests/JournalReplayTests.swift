import Foundation
import Testing

import MarketData
@testable import Operations
import ZeroMQ

/// `mktctl replay`: a journal played into a PUB comes out as plantd published it, in order, filtered by prefix.
@Suite(.serialized) struct JournalReplayTests {
    @Test func aJournalPlaysBackInOrderWholeOrByPrefix() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try JournalBench.run(ticks: 2_000, batch: 64, fsync: nil, segmentBytes: 50_000,
            directory: directory) { _ in }
        #expect(written.recoveredRecords == 2_000)
        #expect(written.segments > 2 && written.checkpointRecordsRead < 2_000, "segments and checkpoints beside them")

        let context = try ZMQContext()
        for (prefix, expected) in [("", 2_000), ("S1|", 4)] {
            let publisher = try ZMQSocket(context, type: .publish)
            try publisher.setSendHighWaterMark(0)
            try publisher.bind("inproc://replay-\(UUID())")
            let subscriber = try ZMQSocket(context, type: .subscribe)
            try subscriber.setReceiveHighWaterMark(0)
            try subscriber.subscribe("")
            try subscriber.connect(try publisher.lastEndpoint)
            try subscriber.setReceiveTimeout(milliseconds: 500)
            let summary = try JournalReplayer(directory: directory, speed: nil, prefix: prefix).run(on: publisher)
            #expect(summary.records == UInt64(expected) && summary.damage == nil)
            var ticks: [Tick] = []
            while let frames = try subscriber.receiveFrames() { ticks.append(try TickDecoder.decode(frames[1])) }
            #expect(ticks.count == expected)
            #expect(ticks.map(\.streamSequence) == ticks.map(\.streamSequence).sorted())
            if prefix.isEmpty { #expect(ticks.map(\.streamSequence) == Array(1...2_000)) }
            #expect(ticks.allSatisfy { Topic.make(symbol: $0.symbol, type: $0.type).hasPrefix(prefix) })
            publisher.close()
            subscriber.close()
        }
        #expect(throws: (any Error).self) {
            try JournalReplayer(directory: directory + "/nothing", speed: nil).run(on: try ZMQSocket(context, type: .publish))
        }
    }
}
