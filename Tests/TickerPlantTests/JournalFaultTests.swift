import Foundation
import Glibc
import Testing

import MarketData
@testable import TickerPlant

/// The journal when the disk does not cooperate: a full disk, a failing fsync, old segments past retention, a
/// segment larger than one read at recovery. Each writes real files; the full disk is a real tmpfs of 256 KiB.
@Suite(.serialized) struct JournalFaultTests {
    /// `count` trades from stream_seq `first` on, laid out as plantd's turn lays them out.
    static func batch(from first: UInt64, count: Int) -> OutboundBatch {
        let encoder = TickEncoder()
        var batch = OutboundBatch(checksummed: true)
        for sequence in first..<(first + UInt64(count)) {
            var tick = Tick.trade(symbol: "S\(sequence % 7)", venue: "XNAS",
                price: Price(fixedPoint: Int64(sequence) * 10_000), size: 100)
            tick.streamSequence = sequence
            tick.symbolSequence = sequence
            let topic = Array(Topic.make(symbol: tick.symbol, type: .trade).utf8)
            topic.withUnsafeBytes { topicBytes in
                batch.append(streamSequence: sequence, symbolSequence: sequence, feedID: 7, feedSequence: sequence,
                    topic: topicBytes, payload: encoder.encode(tick))
            }
        }
        return batch
    }

    static func configuration(_ directory: String, keepDays: Int = 0) -> JournalConfiguration {
        var configuration = JournalConfiguration()
        configuration.directory = directory
        configuration.fsyncInterval = .milliseconds(5)
        configuration.keepDays = keepDays
        return configuration
    }

    /// A tmpfs of `bytes` mounted on a new directory, or nil where this process may not mount (not root).
    static func mountSmallDisk(bytes: Int) -> String? {
        let directory = JournalTests.temporaryDirectory()
        guard mkdir(directory, 0o700) == 0 else { return nil }
        guard "size=\(bytes),mode=0700".withCString({ mount("tmpfs", directory, "tmpfs", 0, $0) }) == 0 else {
            rmdir(directory)
            return nil
        }
        return directory
    }

    static func unmount(_ directory: String) {
        umount2(directory, 0)
        rmdir(directory)
    }

    static let canMount: Bool = {
        guard let directory = mountSmallDisk(bytes: 4096) else { return false }
        unmount(directory)
        return true
    }()

    /// The disk fills in the middle of a batch (tmpfs takes part of the write): the part is taken back, the batches
    /// that fail are counted and not journaled, and once there is room again the journal goes on. A restart reads
    /// every record that was journaled, no damage: no torn record sits between two whole ones.
    @Test(.enabled(if: canMount, "mounting a tmpfs needs root (CI runs as root)"))
    func aFullDiskLeavesNoTornRecordAndTheJournalGoesOnWhenThereIsRoomAgain() throws {
        let disk = try #require(Self.mountSmallDisk(bytes: 256 << 10))
        defer { Self.unmount(disk) }
        // Room for the journal is made later by removing this.
        let filler = disk + "/filler"
        let fillerDescriptor = open(filler, O_WRONLY | O_CREAT, 0o600)
        let fillerBytes = [UInt8](repeating: 0xAA, count: 64 << 10)
        #expect(fillerBytes.withUnsafeBytes { write(fillerDescriptor, $0.baseAddress, $0.count) } == 64 << 10)
        Glibc.close(fillerDescriptor)

        let directory = disk + "/journal"
        let writer = try JournalWriter(configuration: Self.configuration(directory), directory: directory, nextIndex: 1)
        var journaled: [ClosedRange<UInt64>] = []
        var failed = 0
        var next: UInt64 = 1
        // Batches of 37 records (~4.5 KB, not a multiple of a page): the one that meets the end of the disk is cut.
        while failed < 3 {
            let batch = Self.batch(from: next, count: 37)
            if writer.append(batch) { journaled.append(next...(next + 36)) } else { failed += 1 }
            next += 37
        }
        #expect(writer.counters["journal.write_errors"] == 3)
        #expect(writer.counters["journal.failing"] == 1, "mktctl status shows JOURNAL FAILING")
        #expect(writer.lastError.contains("No space left on device"))
        #expect(unlink(filler) == 0)
        for _ in 0..<5 {
            let batch = Self.batch(from: next, count: 37)
            #expect(writer.append(batch), "room again: the journal goes on")
            journaled.append(next...(next + 36))
            next += 37
        }
        #expect(writer.counters["journal.failing"] == 0)
        writer.close()

        let recovery = try JournalRecovery(directory: directory, ringCapacity: 10_000)
        #expect(recovery.damage == nil, "no torn record between whole ones")
        let expected = journaled.reduce(0) { $0 + $1.count }
        #expect(recovery.records == UInt64(expected))
        #expect(recovery.streamSequence == next - 1)
        // Exactly the journaled records, none of a failed batch.
        var read: [UInt64] = []
        var cursor = JournalCursor(directory: directory, from: 1)
        _ = cursor.read(maxBytes: 1 << 30) { read.append($0.streamSequence); return true }
        cursor.close()
        let expectedSequences = journaled.flatMap { Array($0) }
        #expect(read.count == expectedSequences.count && read.elementsEqual(expectedSequences),
            "the journaled records, in order, and no other")
    }

    /// fsync refused (a pipe stands in for a disk that reports a writeback error: fsync of a pipe fails with EINVAL):
    /// counted, shown as failing until an fsync succeeds, and handed once to the plant's log.
    @Test func anFsyncThatFailsIsCountedShownAsFailingAndHandedToTheLogOnce() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let writer = try JournalWriter(configuration: Self.configuration(directory), directory: directory, nextIndex: 1)
        defer { writer.close() }
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { pipeEnds.forEach { Glibc.close($0) } }
        writer.forceToDisk(pipeEnds[1], what: "a pipe")
        #expect(writer.counters["journal.fsync_errors"] == 1)
        #expect(writer.counters["journal.failing"] == 1)
        let logged = writer.takeNewSyncErrors()
        #expect(logged.count == 1 && logged[0].contains("fsync of a pipe failed"))
        #expect(writer.takeNewSyncErrors().isEmpty, "each failure is logged once")
        let file = open(directory + "/probe", O_WRONLY | O_CREAT, 0o600)
        writer.forceToDisk(file, what: "a file")
        Glibc.close(file)
        #expect(writer.counters["journal.fsync_errors"] == 1)
        #expect(writer.counters["journal.failing"] == 0)
    }

    /// Segments and their directory are not world-readable: ticks may be licensed data.
    @Test func segmentsAreReadableByTheOwnerAndGroupOnly() throws {
        let parent = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = parent + "/journal"
        let writer = try JournalWriter(configuration: Self.configuration(directory), directory: directory, nextIndex: 1)
        #expect(writer.append(Self.batch(from: 1, count: 3)))
        writer.close()
        let previous = umask(0)
        umask(previous)
        var status = stat()
        #expect(stat(writer.currentSegment, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o640 & ~previous)
        #expect(stat(directory, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o750 & ~previous)
    }

    /// `keep_days = 2`: the segments of the two newest session dates stay (today's among them), older ones go as
    /// the writer begins a segment; `keep_days = 0` removes nothing.
    @Test func segmentsPastKeepDaysAreRemovedAndTheNewestDatesKept() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let old = ["20261201-000001.tpj", "20261201-000002.tpj", "20261202-000003.tpj", "20261203-000004.tpj"]
        for name in old { #expect(FileManager.default.createFile(atPath: directory + "/" + name, contents: Data())) }

        let keepingAll = try JournalWriter(configuration: Self.configuration(directory), directory: directory,
            nextIndex: 5)
        keepingAll.close()
        #expect(JournalTests.segments(directory).count == 5)
        #expect(keepingAll.counters["journal.segments_removed"] == 0)

        let writer = try JournalWriter(configuration: Self.configuration(directory, keepDays: 2),
            directory: directory, nextIndex: 6)
        let deadline = Date().addingTimeInterval(5)
        while JournalTests.segments(directory).count > 3 && Date() < deadline { usleep(5_000) }
        writer.close()
        let today = String(writer.currentSegment.split(separator: "/").last!.prefix(8))
        #expect(JournalTests.segments(directory) == ["20261203-000004.tpj", today + "-000005.tpj", today + "-000006.tpj"])
        #expect(writer.counters["journal.segments_removed"] == 3)
    }

    /// A segment several times larger than recovery's read: records cut by a read's end are read whole, and a torn
    /// tail past the first read is found at its offset and cut there.
    @Test func aSegmentLargerThanOneReadRecoversWholeAndItsTornTailIsCutWhereItIs() throws {
        let directory = JournalTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = Self.configuration(directory)
        configuration.segmentBytes = 1 << 30
        let writer = try JournalWriter(configuration: configuration, directory: directory, nextIndex: 1)
        var next: UInt64 = 1
        while writer.counters["journal.bytes"]! < UInt64(3 * JournalRecovery.readChunkBytes) {
            #expect(writer.append(Self.batch(from: next, count: 251)))
            next += 251
        }
        writer.close()
        let segment = writer.currentSegment
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        let torn = open(segment, O_WRONLY | O_APPEND)
        #expect([UInt8](arrayLiteral: 90, 0, 0, 0, 1, 2, 3).withUnsafeBytes { write(torn, $0.baseAddress, 7) } == 7)
        Glibc.close(torn)

        let recovery = try JournalRecovery(directory: directory, ringCapacity: 1_000)
        #expect(recovery.records == next - 1)
        #expect(recovery.streamSequence == next - 1)
        let damage = try #require(recovery.damage)
        #expect(damage.isTornTail && damage.offset == size && damage.bytesCut == 7)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int == size)
        #expect(readWholeFile(segment + ".damaged") == [90, 0, 0, 0, 1, 2, 3])
    }
}
