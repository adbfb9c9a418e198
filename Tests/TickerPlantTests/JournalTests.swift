import Foundation
import Testing

import MarketData
@testable import TickerPlant

/// The journal's files: records written in batches read back exactly, and damage (a torn tail, a corrupt record in
/// the middle) recovered up to the damage and reported.
@Suite(.serialized) struct JournalTests {
    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID())").path
    }

    /// Writes `count` ticks over `symbols` symbols from two feeds in batches of 10; returns the writer (closed).
    /// `checkpoints`: a checkpoint at each segment's start, from `checkpointsFrom` (empty: a new journal).
    @discardableResult
    static func write(_ count: Int, symbols: Int = 5, to directory: String, segmentBytes: Int = 1 << 20,
        startingAt first: UInt64 = 1, nextIndex: Int = 1, checkpoints: Bool = false,
        checkpointsFrom initial: JournalState = JournalState()) throws -> JournalWriter
    {
        var configuration = JournalConfiguration()
        configuration.directory = directory
        configuration.segmentBytes = segmentBytes
        configuration.fsyncInterval = .milliseconds(5)
        let writer = try JournalWriter(configuration: configuration, directory: directory, nextIndex: nextIndex,
            checkpointsFrom: checkpoints ? initial : nil)
        let encoder = TickEncoder()
        var batch = OutboundBatch()
        for index in 0..<count {
            let sequence = first + UInt64(index)
            let symbol = "S\(Int(sequence) % symbols)"
            var tick = Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: Int64(sequence) * 10_000),
                size: 100)
            tick.streamSequence = sequence
            tick.symbolSequence = sequence / UInt64(symbols) + 1
            let topic = Array(Topic.make(symbol: symbol, type: .trade).utf8)
            topic.withUnsafeBytes { topicBytes in
                batch.append(streamSequence: sequence, symbolSequence: tick.symbolSequence,
                    feedID: sequence % 2 == 0 ? 7 : 9, feedSequence: sequence * 3, topic: topicBytes,
                    payload: encoder.encode(tick))
            }
            if batch.count == 10 || index == count - 1 {
                writer.append(batch)
                batch.removeAll()
            }
        }
        writer.close()
        return writer
    }

    static func segments(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test func recordsComeBackExactlyAcrossSegments() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try Self.write(20_000, to: directory, segmentBytes: 200_000)
        #expect(writer.counters["journal.records"] == 20_000)
        #expect(writer.counters["journal.write_errors"] == 0)
        #expect(Self.segments(directory).count > 3, "segments roll by size")

        let recovery = try JournalRecovery(directory: directory, ringCapacity: 1_000)
        #expect(recovery.damage == nil)
        #expect(recovery.records == 20_000)
        #expect(recovery.streamSequence == 20_000)
        #expect(recovery.feedCursors == [7: 60_000, 9: 59_997])
        #expect(recovery.nextSegmentIndex == Self.segments(directory).count + 1)
        // The last value of each topic is its latest tick.
        #expect(recovery.lastValues.count == 5)
        for value in recovery.lastValues {
            let tick = try TickDecoder.decode(value.payload)
            #expect(String(decoding: value.topic, as: UTF8.self) == "\(tick.symbol)|T")
            #expect(tick.streamSequence > 19_995 && tick.symbolSequence == value.symbolSequence)
        }
        // The ring holds the latest ticks, tagged with their symbol_seq.
        #expect(recovery.ring.firstSequence == 19_001 && recovery.ring.lastSequence == 20_000)
    }

    /// A record whose payload is written in place reads back like one appended from a buffer; a payload writer that
    /// fails leaves the batch as it was.
    @Test func aPayloadWrittenInPlaceReadsBackAndAFailedOneLeavesNoTrace() {
        var batch = OutboundBatch()
        let topic: [UInt8] = Array("AAPL|T".utf8)
        let payload: [UInt8] = [8, 1, 18, 4, 65, 65, 80, 76]
        topic.withUnsafeBytes { topicBytes in
            payload.withUnsafeBytes {
                batch.append(streamSequence: 1, symbolSequence: 1, feedID: 3, feedSequence: 10, topic: topicBytes,
                    payload: $0)
            }
            let before = batch.withBytes { Array($0) }
            let failed = batch.append(streamSequence: 2, symbolSequence: 2, feedID: 3, feedSequence: 11,
                topic: topicBytes, payloadAtMost: 100) { destination in
                destination[0] = 0xFF
                return nil
            }
            #expect(!failed && batch.withBytes { Array($0) } == before && batch.count == 1)
            let appended = batch.append(streamSequence: 2, symbolSequence: 2, feedID: 3, feedSequence: 11,
                topic: topicBytes, payloadAtMost: 100) { destination in
                for (index, byte) in payload.reversed().enumerated() { destination[index] = byte }
                return payload.count
            }
            #expect(appended && batch.count == 2)
        }
        var read: [(UInt64, UInt64, [UInt8], [UInt8])] = []
        batch.forEach { read.append(($0.streamSequence, $0.feedSequence, Array($0.topic), Array($0.payload))) }
        #expect(read.count == 2)
        #expect(read.first.map { $0.0 == 1 && $0.1 == 10 && $0.2 == topic && $0.3 == payload } == true)
        #expect(read.last.map { $0.0 == 2 && $0.1 == 11 && $0.2 == topic && $0.3 == payload.reversed() } == true)
        // Every record's checksum holds, as a restarted plant checks it.
        batch.withBytes { all in
            var offset = 0
            while offset < all.count {
                guard case let .success((_, next)) = JournalRecord.read(all, at: offset, verifyingChecksum: true)
                else { Issue.record("record at \(offset) does not read back"); return }
                offset = next
            }
        }
    }

    @Test func aTornTailIsCutAndEverythingBeforeItKept() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.write(1_000, to: directory)
        let segment = directory + "/" + Self.segments(directory).last!
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        // A crash in the middle of a write: half of one more record.
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data([60, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]))
        try handle.close()

        let recovery = try JournalRecovery(directory: directory, ringCapacity: 100)
        #expect(recovery.records == 1_000)
        #expect(recovery.streamSequence == 1_000)
        let damage = try #require(recovery.damage)
        #expect(damage.isTornTail && damage.offset == size && damage.bytesCut == 11)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int == size)
        // The journal goes on after it, and the next start reads both.
        try Self.write(10, to: directory, startingAt: 1_001, nextIndex: recovery.nextSegmentIndex)
        let again = try JournalRecovery(directory: directory, ringCapacity: 100)
        #expect(again.damage == nil && again.records == 1_010 && again.streamSequence == 1_010)
    }

    @Test func aCorruptRecordInTheMiddleIsReportedAndWhatFollowsSetAside() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.write(5_000, to: directory, segmentBytes: 100_000)
        let names = Self.segments(directory)
        #expect(names.count >= 3)
        // Flip one byte in the middle of the first segment.
        let first = directory + "/" + names[0]
        var bytes = try #require(FileManager.default.contents(atPath: first))
        let flipped = bytes.count / 2
        bytes[flipped] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: first))

        let recovery = try JournalRecovery(directory: directory, ringCapacity: 100)
        let damage = try #require(recovery.damage)
        #expect(!damage.isTornTail)
        #expect(damage.segment == names[0] && damage.offset <= flipped)
        #expect(damage.reason == .badChecksum || damage.reason == .malformedBody || {
            if case .badLength = damage.reason { return true } else { return false }
        }())
        #expect(damage.segmentsSetAside == Array(names.dropFirst()))
        #expect(recovery.records > 0 && recovery.records < 5_000)
        #expect(recovery.streamSequence == recovery.records, "every record before the damage, in order")
        // What was cut is kept for a person to look at; the journal now ends at the damage.
        #expect(FileManager.default.fileExists(atPath: first + ".damaged"))
        #expect(Self.segments(directory).filter { $0.hasSuffix(".tpj") } == [names[0]])
        let again = try JournalRecovery(directory: directory, ringCapacity: 100)
        #expect(again.damage == nil && again.records == recovery.records)
    }
}
