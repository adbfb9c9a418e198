import Foundation
import Glibc
import Testing

import MarketData
@testable import TickerPlant
import ZeroMQ

/// A whole plantd whose journal's disk fills while it runs: a real tmpfs, a stand-in feed, a real consumer.
@Suite(.serialized) struct PlantDiskFullTests {
    /// The disk fills part way through the run, across segment rolls and checkpoints: every tick is still published
    /// in order, status says the journal is failing, and what is on the disk is whole: no damage, no checkpoint that
    /// disagrees with its segments, and a second plantd starts from exactly the records the first journaled.
    @Test(.enabled(if: JournalFaultTests.canMount, "mounting a tmpfs needs root (CI runs as root)"))
    func aPlantWhoseDiskFillsPublishesEveryTickSaysSoAndRestartsFromAWholeJournal() throws {
        let disk = try #require(JournalFaultTests.mountSmallDisk(bytes: 384 << 10))
        defer { JournalFaultTests.unmount(disk) }
        // Room made after the first life, so that the second has some.
        let filler = disk + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: Data(repeating: 0xAA, count: 64 << 10)))
        let journal = disk + "/journal"
        let context = try ZMQContext()
        let feed = try PlantRecoveryTests.FakeFeed(context: context)

        let first = try PlantRecoveryTests.engine(context, feed: feed, journal: journal, segmentBytes: 48 << 10)
        let consumer = try PlantRecoveryTests.consumer(of: first, context)
        // About 130 bytes a record: 4 000 of them are more than the disk has left.
        for _ in 0..<8 {
            try feed.publish(500)
            Thread.sleep(forTimeInterval: 0.05)
        }
        let ticks = try PlantRecoveryTests.collect(consumer, until: 4_000, timeout: 10).filter { !$0.symbol.hasPrefix("#") }
        consumer.close()
        #expect(ticks.map(\.venueSequence) == Array(1...4_000), "every tick published, in order")
        let status = try PlantRecoveryTests.status(of: first, context)
        first.stop()
        _ = first.thread.join()
        #expect(status.counters["journal.failing"] == 1, "mktctl status shows JOURNAL FAILING")
        #expect((status.counters["journal.write_errors"] ?? 0) > 0)
        let journaled = try #require(status.counters["journal.records"])
        #expect(journaled > 500 && journaled < 4_000, "the disk filled part way: \(journaled) records journaled")

        // What the disk holds is whole, and the checkpoints on it agree with the segments.
        #expect(unlink(filler) == 0)
        let recovery = try JournalRecovery(directory: journal, ringCapacity: 1_000)
        let everySegment = try JournalRecovery(directory: journal, ringCapacity: 1_000, usingCheckpoints: false)
        #expect(recovery.damage == nil && everySegment.damage == nil)
        #expect(recovery.checkpointsRefused.isEmpty)
        #expect(recovery.state == everySegment.state)
        #expect(recovery.records == journaled)

        let second = try PlantRecoveryTests.engine(context, feed: feed, journal: journal, segmentBytes: 48 << 10)
        defer {
            second.stop()
            _ = second.thread.join()
        }
        let again = try PlantRecoveryTests.status(of: second, context)
        #expect(again.counters["journal.recovered_records"] == journaled)
        #expect(again.counters["journal.damaged"] == 0)
    }
}
