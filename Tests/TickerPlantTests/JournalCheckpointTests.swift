import Foundation
import Testing

import MarketData
@testable import TickerPlant

/// Checkpoints: a restart reads the newest checkpoint and the segments after it, and ends in exactly the state that
/// reading every segment gives; a checkpoint that is damaged or does not fit its segment is passed over for an
/// older one; the file's every count and length is checked.
@Suite(.serialized) struct JournalCheckpointTests {
    static func checkpoints(_ directory: String) -> [String] { JournalCheckpoint.names(in: directory) }

    @Test func aRestartReadsOnlyTheSegmentAfterTheNewestCheckpointAndEndsAsReadingEverySegmentDoes() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try JournalTests.write(20_000, to: directory, segmentBytes: 200_000, checkpoints: true)
        let segments = JournalTests.segments(directory).filter { $0.hasSuffix(".tpj") }
        #expect(segments.count > 3, "segments roll by size")
        // One checkpoint per segment begun; the two newest stay.
        #expect(writer.counters["journal.checkpoints_written"] == UInt64(segments.count))
        #expect(writer.counters["journal.checkpoint_errors"] == 0)
        #expect(Self.checkpoints(directory) == segments.suffix(2).map { JournalCheckpoint.name(ofSegment: $0) })

        let everySegment = try JournalRecovery(directory: directory, ringCapacity: 1_000, usingCheckpoints: false)
        let restart = try JournalRecovery(directory: directory, ringCapacity: 1_000)
        let last = segments.last!
        #expect(restart.checkpoint == JournalCheckpoint.name(ofSegment: last))
        #expect(restart.segmentsRead == [last])
        #expect(everySegment.segmentsRead == segments)
        let atLastSegment = try JournalCheckpoint.read(directory + "/" + JournalCheckpoint.name(ofSegment: last))
        #expect(atLastSegment.streamSequence + 1 == JournalCursor.firstStreamSequence(directory + "/" + last))
        #expect(restart.recordsRead == 20_000 - atLastSegment.records)
        #expect(restart.state == everySegment.state)
        #expect(restart.records == 20_000 && restart.streamSequence == 20_000)
        #expect(restart.feedCursors == [7: 60_000, 9: 59_997])
        #expect(restart.ring.lastSequence == 20_000 && restart.ring.firstSequence == 19_001)
        #expect(restart.damage == nil && restart.checkpointsRefused.isEmpty)
    }

    /// plantd's way: each start hands the writer what recovery found, so the chain of checkpoints runs on.
    @Test func theChainOfCheckpointsRunsOnAcrossRestarts() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var first: UInt64 = 1
        for _ in 0..<3 {
            let recovery = try JournalRecovery(directory: directory, ringCapacity: 100)
            #expect(recovery.streamSequence == first - 1)
            try JournalTests.write(6_000, to: directory, segmentBytes: 150_000, startingAt: first,
                nextIndex: recovery.nextSegmentIndex, checkpoints: true, checkpointsFrom: recovery.state)
            first += 6_000
        }
        let everySegment = try JournalRecovery(directory: directory, ringCapacity: 100, usingCheckpoints: false)
        let restart = try JournalRecovery(directory: directory, ringCapacity: 100)
        #expect(restart.state == everySegment.state)
        #expect(restart.records == 18_000)
        #expect(restart.segmentsRead == [everySegment.segments.last!])
    }

    @Test func aDamagedNewestCheckpointIsPassedOverForTheOlderOne() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try JournalTests.write(20_000, to: directory, segmentBytes: 200_000, checkpoints: true)
        let segments = JournalTests.segments(directory).filter { $0.hasSuffix(".tpj") }
        let (older, newer) = (Self.checkpoints(directory)[0], Self.checkpoints(directory)[1])
        let path = directory + "/" + newer
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let restart = try JournalRecovery(directory: directory, ringCapacity: 1_000)
        #expect(restart.checkpoint == older)
        #expect(restart.segmentsRead == Array(segments.suffix(2)))
        #expect(restart.checkpointsRefused == ["\(newer): checksum mismatch"])
        #expect(restart.state == (try JournalRecovery(directory: directory, ringCapacity: 1_000, usingCheckpoints: false)).state)
    }

    /// A whole, well-formed checkpoint whose stream_seq is not before its segment's first record (a file copied
    /// from another journal, or segments replaced) would make recovery skip or count records twice: passed over.
    @Test func aCheckpointThatDoesNotFitItsSegmentIsPassedOver() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try JournalTests.write(20_000, to: directory, segmentBytes: 200_000, checkpoints: true)
        let segments = JournalTests.segments(directory).filter { $0.hasSuffix(".tpj") }
        let everySegment = try JournalRecovery(directory: directory, ringCapacity: 1_000, usingCheckpoints: false)
        try JournalCheckpoint.write(everySegment.state, directory: directory, segment: segments.last!, forcing: false)

        let restart = try JournalRecovery(directory: directory, ringCapacity: 1_000)
        #expect(restart.checkpoint == JournalCheckpoint.name(ofSegment: segments[segments.count - 2]))
        #expect(restart.checkpointsRefused.count == 1)
        #expect(restart.checkpointsRefused.first?.contains("is not before \(segments.last!)'s first record") == true)
        #expect(restart.state == everySegment.state)
    }

    /// Segments removed by `keep_days` take their ticks with them, but not the last values: the checkpoint carries
    /// them, as a running plant does. Reading every segment (no checkpoint) knows only what the segments kept hold.
    @Test func aSymbolsLastValueOutlivesTheSegmentsItWasIn() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // S5 and S6 trade only in the first run's segment.
        try JournalTests.write(2_000, symbols: 7, to: directory, segmentBytes: 1 << 20, checkpoints: true)
        let afterFirst = try JournalRecovery(directory: directory, ringCapacity: 100)
        try JournalTests.write(10_000, symbols: 5, to: directory, segmentBytes: 200_000, startingAt: 2_001,
            nextIndex: afterFirst.nextSegmentIndex, checkpoints: true, checkpointsFrom: afterFirst.state)
        let segments = JournalTests.segments(directory).filter { $0.hasSuffix(".tpj") }
        try FileManager.default.removeItem(atPath: directory + "/" + segments[0])

        let topics = { (recovery: JournalRecovery) in Set(recovery.lastValues.map { String(decoding: $0.topic, as: UTF8.self) }) }
        let restart = try JournalRecovery(directory: directory, ringCapacity: 100)
        #expect(topics(restart) == Set((0..<7).map { "S\($0)|T" }))
        let everySegment = try JournalRecovery(directory: directory, ringCapacity: 100, usingCheckpoints: false)
        #expect(topics(everySegment) == Set((0..<5).map { "S\($0)|T" }))
    }

    @Test func aCheckpointsCountsAndLengthsAreCheckedAgainstItsBytes() throws {
        var state = JournalState()
        let encoder = TickEncoder()
        var batch = OutboundBatch()
        for sequence in UInt64(1)...3 {
            var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 1_000_000), size: 100)
            tick.streamSequence = sequence
            tick.symbolSequence = sequence
            Array("AAPL|T".utf8).withUnsafeBytes { topic in
                batch.append(streamSequence: sequence, symbolSequence: sequence, feedID: 7, feedSequence: sequence,
                    topic: topic, payload: encoder.encode(tick))
            }
        }
        batch.withBytes { bytes in
            var offset = 0
            while case let .success((record, next)) = JournalRecord.read(bytes, at: offset) {
                state.take(record)
                offset = next
            }
        }
        #expect(state.records == 3 && state.lastValues.count == 1 && state.feedCursors == [7: 3])
        let good = JournalCheckpoint.encode(state)
        #expect(try good.withUnsafeBytes { try JournalCheckpoint.decode($0) } == state)

        func refusal(_ bytes: [UInt8]) -> String? {
            do {
                _ = try bytes.withUnsafeBytes { try JournalCheckpoint.decode($0, verifyingChecksum: false) }
                return nil
            } catch { return "\(error)" }
        }
        // Cut anywhere inside, it ends inside a field (the last 4 bytes stand for the checksum).
        #expect(refusal(Array(good.prefix(40)) + [0, 0, 0, 0]) == "it ends inside a field")
        // The count of last values (after the header, two u64 and one feed) made 2^32 - 1: no allocation follows it.
        var manyValues = good
        let valuesCount = 8 + 16 + 4 + 12
        for index in valuesCount..<(valuesCount + 4) { manyValues[index] = 0xFF }
        #expect(refusal(manyValues) == "it ends inside a field")
        // A last value's payload length beyond the largest record.
        var longPayload = good
        for index in (valuesCount + 4 + 2)..<(valuesCount + 4 + 6) { longPayload[index] = 0xFF }
        #expect(refusal(longPayload) == "a last value of 4294967295 bytes is impossible")
        // More records than stream_seqs before it (a count that would run the plant's past its end).
        var tooManyRecords = good
        for index in 16..<24 { tooManyRecords[index] = 0xFF }
        #expect(refusal(tooManyRecords) == "18446744073709551615 records cannot have come before stream_seq 3")
        // Bytes after the last symbol.
        #expect(refusal(Array(good.dropLast(4)) + [1, 2, 3] + Array(good.suffix(4))) == "3 bytes follow the last symbol")
        #expect(refusal(Array("TPJ1".utf8) + [UInt8](repeating: 0, count: 20)) == "not a checkpoint (no TPC1 header)")
        #expect(throws: JournalError.self) { try good.dropLast().withUnsafeBytes { try JournalCheckpoint.decode($0) } }
    }
}
