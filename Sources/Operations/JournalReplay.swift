import ArgumentParser
import Foundation
import MarketData
import TickerPlant
import ZeroMQ

/// Plays a plant journal into a PUB endpoint: every record as plantd published it (topic and Tick), in order, at the
/// pace it was published times a speed, or as fast as it goes. For what-if runs: point a test plant, an edge or a
/// risk system at the endpoint.
public struct JournalReplayer {
    public struct Summary: Sendable, Equatable {
        public var records: UInt64 = 0
        public var skipped: UInt64 = 0
        public var segments = 0
        public var damage: String?
    }

    public let directory: String
    /// 1 is the pace it was published at, 10 ten times faster; nil as fast as possible.
    public let speed: Double?
    public let fromStreamSequence: UInt64
    public let prefix: [UInt8]

    public init(directory: String, speed: Double?, fromStreamSequence: UInt64 = 0, prefix: String = "") {
        self.directory = directory
        self.speed = speed
        self.fromStreamSequence = fromStreamSequence
        self.prefix = Array(prefix.utf8)
    }

    /// Sends every matching record on `socket`; `progress` is called about twice a second.
    public func run(on socket: ZMQSocket, shouldStop: () -> Bool = { false },
        progress: (Summary, UInt64) -> Void = { _, _ in }) throws -> Summary
    {
        var summary = Summary()
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".tpj") }.sorted()
        guard !names.isEmpty else { throw BenchError("no journal segments (*.tpj) in \(directory)") }
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var firstPublishedNs: UInt64 = 0
        let start = MonotonicClock.nowNanoseconds()
        var lastProgress = start
        for name in names {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else {
                throw BenchError("cannot read \(directory)/\(name)")
            }
            summary.segments += 1
            let damage: String? = try data.withUnsafeBytes { bytes in
                guard bytes.count >= JournalFormat.segmentHeaderLength, bytes.starts(with: JournalFormat.magic) else {
                    return "\(name) is not a journal segment"
                }
                var offset = JournalFormat.segmentHeaderLength
                while offset < bytes.count {
                    if shouldStop() { return nil }
                    switch JournalRecord.read(bytes, at: offset) {
                    case let .failure(reason):
                        return "\(name) at byte \(offset): \(reason)"
                    case let .success((record, next)):
                        offset = next
                        guard record.streamSequence >= fromStreamSequence, record.topic.starts(with: prefix) else {
                            summary.skipped += 1
                            continue
                        }
                        if let speed {
                            try? TickWire.decode(record.payload, into: &tick)
                            let publishedNs = tick.plantTransmitNs
                            if firstPublishedNs == 0 { firstPublishedNs = publishedNs }
                            let dueNs = start + UInt64(Double(publishedNs &- firstPublishedNs) / speed)
                            let now = MonotonicClock.nowNanoseconds()
                            if publishedNs > firstPublishedNs && dueNs > now {
                                usleep(UInt32(min(1_000_000, (dueNs - now) / 1_000)))
                            }
                        }
                        _ = try socket.send(record.topic, more: true)
                        _ = try socket.send(record.payload)
                        summary.records += 1
                        let now = MonotonicClock.nowNanoseconds()
                        if now - lastProgress >= 500_000_000 {
                            lastProgress = now
                            progress(summary, record.streamSequence)
                        }
                    }
                }
                return nil
            }
            if let damage {
                summary.damage = damage
                break
            }
        }
        return summary
    }
}

/// `mktctl replay`: a plant journal into a PUB endpoint at any speed.
public struct ReplayCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Play a plant journal into a ZeroMQ PUB endpoint, at its own pace times --speed or as fast as it goes.")

    @Option(name: .long, help: "The journal directory ([journal] directory of plantd).")
    public var journal: String

    @Option(name: .long, help: "The PUB endpoint to bind, e.g. tcp://127.0.0.1:7301.")
    public var publish: String

    @Option(name: .long, help: "1 for the pace the ticks were published at, 10 ten times faster, or max.")
    public var speed = "1"

    @Option(name: .long, help: "Start at this stream_seq.")
    public var fromStreamSeq: UInt64 = 0

    @Option(name: .long, help: "Only topics that begin with this prefix (AAPL| for all of AAPL).")
    public var prefix = ""

    @Option(name: .long, help: "Seconds to wait after binding, so that subscribers connect before the first tick.")
    public var wait = 1.0

    @Flag(name: .long, help: "No progress line.")
    public var quiet = false

    public init() {}

    public func validate() throws {
        if speed != "max" && (Double(speed).map { $0 <= 0 } ?? true) {
            throw ValidationError("--speed: expected a positive number or max, got \"\(speed)\"")
        }
        if !publish.hasPrefix("tcp://") && !publish.hasPrefix("ipc://") && !publish.hasPrefix("inproc://") {
            throw ValidationError("--publish: expected an endpoint such as tcp://127.0.0.1:7301, got \"\(publish)\"")
        }
    }

    public func run() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .publish)
        try socket.setSendHighWaterMark(0)
        try socket.setLinger(milliseconds: 5_000)
        try socket.setMaximumMessageSize(maximumPeerMessageBytes)
        do {
            try socket.bind(publish)
        } catch {
            FileHandle.standardError.write(Data("mktctl replay: cannot bind \(publish): \(error)\n".utf8))
            throw ExitCode(1)
        }
        usleep(UInt32(max(0, wait) * 1e6))
        SignalFlag.install()
        let replayer = JournalReplayer(directory: journal, speed: speed == "max" ? nil : Double(speed),
            fromStreamSequence: fromStreamSeq, prefix: prefix)
        let quiet = self.quiet
        let summary: JournalReplayer.Summary
        do {
            summary = try replayer.run(on: socket, shouldStop: { SignalFlag.isSet }) { summary, streamSequence in
                guard !quiet else { return }
                FileHandle.standardError.write(Data(
                    "\r\u{1B}[Kreplay: \(summary.records) ticks sent, at stream_seq \(streamSequence)".utf8))
            }
        } catch {
            FileHandle.standardError.write(Data("mktctl replay: \(error)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardError.write(Data(
            "\r\u{1B}[Kreplay: \(summary.records) ticks from \(summary.segments) segments sent on \(publish)\n".utf8))
        socket.close()
        if let damage = summary.damage {
            FileHandle.standardError.write(Data("mktctl replay: stopped at damage: \(damage)\n".utf8))
            throw ExitCode(1)
        }
    }
}
