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
    @discardableResult
    static func write(_ count: Int, symbols: Int = 5, to directory: String, segmentBytes: Int = 1 << 20,
        startingAt first: UInt64 = 1, nextIndex: Int = 1) throws -> JournalWriter
    {
        var configuration = JournalConfiguration()
        configuration.directory = directory
        configuration.segmentBytes = segmentBytes
        configuration.fsyncInterval = .milliseconds(5)
        let writer = try JournalWriter(configuration: configuration, directory: directory, nextIndex: nextIndex)
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
