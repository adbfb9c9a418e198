import Foundation
import MarketData
import TickerPlant

/// `mktctl bench journal`: how fast plantd's journal takes ticks (with its fsync policy) and how long a restart
/// takes to read them back, on this machine's disk.
public struct JournalBench {
    public struct Result: Sendable, Codable {
        public var ticks: Int
        public var bytes: UInt64
        public var appendSeconds: Double
        public var fsyncs: UInt64
        /// Recovery reading every segment (as before checkpoints).
        public var recoverySeconds: Double
        public var recoveredRecords: UInt64
        public var segments: Int
        /// Recovery from the newest checkpoint (as plantd starts): the records and segments it read.
        public var checkpointRecoverySeconds: Double
        public var checkpointRecordsRead: UInt64
        public var checkpointSegmentsRead: Int
        public var ticksPerSecond: Double { appendSeconds > 0 ? Double(ticks) / appendSeconds : 0 }
    }

    /// Writes `ticks` trades (500 symbols, as plantd lays them out, in batches of `batch` like its turns) into a new
    /// journal in `directory` with segments of `segmentBytes` and checkpoints, then recovers it twice: reading every
    /// segment, and from the newest checkpoint as a restarting plantd does.
    public static func run(ticks: Int, batch: Int, fsync: Duration?, segmentBytes: Int, directory: String,
        progress: (String) -> Void) throws -> Result
    {
        var configuration = JournalConfiguration()
        configuration.directory = directory
        configuration.fsyncInterval = fsync
        configuration.segmentBytes = segmentBytes
        let writer = try JournalWriter(configuration: configuration, directory: directory, nextIndex: 1,
            checkpointsFrom: JournalState())
        let encoder = TickEncoder()
        let symbols = (0..<500).map { "S\($0)" }
        let topics = symbols.map { Array(Topic.make(symbol: $0, type: .trade).utf8) }
        var symbolSequences = [UInt64](repeating: 0, count: symbols.count)
        var outbound = OutboundBatch()
        let start = MonotonicClock.nowNanoseconds()
        var lastProgress = start
        for index in 1...ticks {
            let symbol = (index &* 7919) % symbols.count
            symbolSequences[symbol] += 1
            var tick = Tick.trade(symbol: symbols[symbol], venue: "XNAS",
                price: Price(fixedPoint: 100_000_000 + Int64(index % 100) * 10_000), size: 100)
            tick.streamSequence = UInt64(index)
            tick.symbolSequence = symbolSequences[symbol]
            tick.exchangeTimestampNs = 1_764_000_000_000_000_000 + UInt64(index)
            tick.feedReceiveNs = tick.exchangeTimestampNs + 1_000
            tick.feedTransmitNs = tick.feedReceiveNs + 1_000
            tick.plantReceiveNs = tick.feedTransmitNs + 1_000
            tick.plantTransmitNs = tick.plantReceiveNs + 1_000
            let payload = encoder.encode(tick)
            topics[symbol].withUnsafeBytes { topic in
                outbound.append(streamSequence: UInt64(index), symbolSequence: symbolSequences[symbol], feedID: 1,
                    feedSequence: UInt64(index), topic: topic, payload: payload)
            }
            if outbound.count == batch || index == ticks {
                writer.append(outbound)
                outbound.removeAll()
            }
            let now = MonotonicClock.nowNanoseconds()
            if now - lastProgress >= 500_000_000 {
                lastProgress = now
                progress(String(format: "journal: %d of %d ticks written (%.2f M/s)", index, ticks,
                    Double(index) / (Double(now - start) / 1e9) / 1e6))
            }
        }
        let appendSeconds = Double(MonotonicClock.nowNanoseconds() - start) / 1e9
        writer.close()
        let counters = writer.counters
        progress("journal: reading \(ticks) ticks back, every segment")
        let recoveryStart = MonotonicClock.nowNanoseconds()
        let recovery = try JournalRecovery(directory: directory, ringCapacity: 1_000_000, usingCheckpoints: false)
        let recoverySeconds = Double(MonotonicClock.nowNanoseconds() - recoveryStart) / 1e9
        progress("journal: reading \(ticks) ticks back, from the newest checkpoint")
        let checkpointStart = MonotonicClock.nowNanoseconds()
        let fromCheckpoint = try JournalRecovery(directory: directory, ringCapacity: 1_000_000)
        let checkpointSeconds = Double(MonotonicClock.nowNanoseconds() - checkpointStart) / 1e9
        guard fromCheckpoint.state == recovery.state else {
            throw BenchError("recovery from the checkpoint \(fromCheckpoint.checkpoint ?? "(none)") differs from "
                + "reading every segment")
        }
        return Result(ticks: ticks, bytes: counters["journal.bytes"] ?? 0, appendSeconds: appendSeconds,
            fsyncs: counters["journal.fsyncs"] ?? 0, recoverySeconds: recoverySeconds,
            recoveredRecords: recovery.records, segments: recovery.segments.count,
            checkpointRecoverySeconds: checkpointSeconds, checkpointRecordsRead: fromCheckpoint.recordsRead,
            checkpointSegmentsRead: fromCheckpoint.segmentsRead.count)
    }
}
