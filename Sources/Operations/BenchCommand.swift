import ArgumentParser
import Foundation
import MarketData

/// What every bench prints: a progress line on standard error, rewritten in place, and the result as JSON when asked.
enum BenchOutput {
    static let progress: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    /// A progress bar: "[########............]  40%".
    static func bar(_ fraction: Double, width: Int = 20) -> String {
        let done = Int((min(1, max(0, fraction)) * Double(width)).rounded(.down))
        return "[" + String(repeating: "#", count: done) + String(repeating: ".", count: width - done) + "] "
            + String(format: "%3.0f%%", min(1, max(0, fraction)) * 100)
    }

    static func clearProgress() { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }

    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

/// `mktctl bench`: measurements with a progress line and a table at the end.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure parts of the chain on this machine.",
        subcommands: [ChainBenchCommand.self, FeedBenchCommand.self, PlantBenchCommand.self,
            PlantHostileBenchCommand.self, JournalBenchCommand.self, EdgeBenchCommand.self, EdgeClientsCommand.self])

    public init() {}
}

/// `mktctl bench feed`: ITCH over UDP into a bare receiver and into feedd's engine, same packets, same run.
public struct FeedBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "feed",
        abstract: "ITCH messages per second over UDP on 127.0.0.1: a bare receiver (the ceiling), then feedd's engine at --rate and faster until it loses.")

    @Option(name: .long, help: "ITCH messages per run.")
    public var messages = 10_000_000

    @Option(name: .long, help: "Messages per second of the paced feedd run.")
    public var rate = 1_000_000

    @Option(name: .long, help: "Symbols in the synthetic market.")
    public var symbols = 500

    @Option(name: .long, help: "Faster runs after the paced one (each 1.5 times the last, 3 s) until one loses; 0 for none.")
    public var maximumSteps = 6

    @Flag(name: .long, help: "Print the runs as JSON instead of a table.")
    public var json = false

    public init() {}

    public func validate() throws {
        guard messages > 0 else { throw ValidationError("--messages: expected a positive number, got \(messages)") }
        guard rate > 0 else { throw ValidationError("--rate: expected a positive number, got \(rate)") }
        guard (1...60_000).contains(symbols) else {
            throw ValidationError("--symbols: expected 1 to 60000, got \(symbols)")
        }
    }

    public func run() throws {
        var settings = FeedBench.Settings()
        settings.messages = messages
        settings.symbols = symbols
        let bench = FeedBench(settings: settings, progress: BenchOutput.progress)
        var runs: [FeedBench.Run] = []
        let ceiling = try bench.runRawReceiver()
        runs.append(ceiling)
        let paced = try bench.runFeedEngine(rate: rate, messages: messages)
        runs.append(paced)
        // Then feedd's highest rate without loss: half as fast again each step, three seconds each, until it loses.
        var highestLossless = paced.lost == 0 ? paced : nil
        var stepRate = Double(rate) * 1.5
        while highestLossless != nil && maximumSteps > 0 && runs.count < 2 + maximumSteps {
            let step = try bench.runFeedEngine(rate: Int(stepRate), messages: Int(stepRate * 3))
            runs.append(step)
            if step.lost > 0 { break }
            highestLossless = step
            stepRate *= 1.5
        }
        BenchOutput.clearProgress()
        if json {
            try BenchOutput.printJSON(runs)
        } else {
            print(FeedBench.table(runs))
            if let highestLossless, ceiling.messagesPerSecond > 0 {
                print(String(format: "feedd's highest rate without loss here: %@, %.0f%% of the bare receiver's %@",
                    FeedBench.formatRate(highestLossless.messagesPerSecond),
                    100 * highestLossless.messagesPerSecond / ceiling.messagesPerSecond,
                    FeedBench.formatRate(ceiling.messagesPerSecond)))
            } else {
                print("feedd lost messages at \(FeedBench.formatRate(Double(rate)))")
            }
        }
        if runs[1].lost > 0 { throw ExitCode(1) }
    }
}

/// `mktctl bench journal`: plantd's journal append rate with its fsync policy, and the time a restart takes to read it.
public struct JournalBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "Append ticks to a journal as plantd does (fsync on its own thread), then recover it as a restart does.")

    @Option(name: .long, help: "Ticks to write.")
    public var ticks = 10_000_000

    @Option(name: .long, help: "Ticks per write, like plantd's publishing turns.")
    public var batch = 256

    @Option(name: .long, help: "fsync interval such as 10ms, or off.")
    public var fsync = "10ms"

    @Option(name: .long, help: "Segment size in bytes ([journal] segment_bytes).")
    public var segmentBytes = 256 << 20

    @Option(name: .long, help: "Directory for the journal (a new one under it; removed afterwards).")
    public var directory = FileManager.default.temporaryDirectory.path

    @Flag(name: .long, help: "Print the result as JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        guard ticks > 0, batch > 0, segmentBytes > 0 else {
            throw ValidationError("--ticks, --batch and --segment-bytes: expected positive numbers")
        }
        var interval: Duration?
        if fsync != "off" {
            guard let parsed = ConfigReader.parseDuration(fsync), parsed > .zero else {
                throw ValidationError("--fsync: expected a duration such as 10ms, or off, got \"\(fsync)\"")
            }
            interval = parsed
        }
        let journal = directory + "/tickplant-journal-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let result = try JournalBench.run(ticks: ticks, batch: batch, fsync: interval, segmentBytes: segmentBytes,
            directory: journal, progress: BenchOutput.progress)
        BenchOutput.clearProgress()
        if json {
            try BenchOutput.printJSON(result)
            return
        }
        print(TextTable.render(header: ["what", "figure"], rows: [
            ["ticks written", "\(result.ticks)"],
            ["bytes", String(format: "%.0f MB (%.0f bytes a tick)", Double(result.bytes) / 1e6,
                Double(result.bytes) / Double(result.ticks))],
            ["append rate", String(format: "%.2f M ticks/s (%.2f s)", result.ticksPerSecond / 1e6, result.appendSeconds)],
            ["fsyncs", "\(result.fsyncs) (\(fsync))"],
            ["recovery, every segment", String(format: "%.2f s for %llu records in %d segments (%.2f M/s)",
                result.recoverySeconds, result.recoveredRecords, result.segments,
                Double(result.recoveredRecords) / result.recoverySeconds / 1e6)],
            ["recovery from checkpoint", String(format: "%.2f s, %llu records read in %d segment(s) (x%.2f)",
                result.checkpointRecoverySeconds, result.checkpointRecordsRead, result.checkpointSegmentsRead,
                result.checkpointRecoverySeconds / result.recoverySeconds)],
        ]))
    }
}

/// `mktctl bench plant`: plantd in to out beside a bare libzmq relay, same messages, same publisher and consumer.
public struct PlantBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plant",
        abstract: "Ticks per second through plantd (every filter on; then with its journal) beside a bare libzmq SUB->PUB relay.")

    @Option(name: .long, help: "Ticks per run.")
    public var ticks = 2_000_000

    @Option(name: .long, help: "Symbols in the market.")
    public var symbols = 500

    @Option(name: .long, help: "Rounds of the three runs, taken in turn; the table shows each run's median.")
    public var rounds = 3

    @Flag(name: .long, help: "Ends that work: the publisher encodes every tick (as feedd), the consumer decodes every tick with protobuf-c.")
    public var workingEnds = false

    @Flag(name: .long, help: "Print the runs as JSON instead of a table.")
    public var json = false

    public init() {}

    public func run() throws {
        guard ticks > 0, symbols > 0, rounds > 0 else {
            throw ValidationError("--ticks, --symbols and --rounds: expected positive numbers")
        }
        BenchOutput.progress("encoding \(ticks) ticks")
        var bench = PlantBench(ticks: ticks, symbols: symbols, progress: BenchOutput.progress)
        bench.workingEnds = workingEnds
        let journal = FileManager.default.temporaryDirectory.path + "/tickplant-plant-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: journal) }
        // The runs take turns, so that whatever else this machine is doing weighs on each of them alike.
        var runs: [PlantBench.Run] = []
        for round in 1...rounds {
            for var run in [try bench.runBareRelay(), try bench.runPlant(), try bench.runPlant(journal: journal)] {
                run.round = round
                runs.append(run)
            }
            try? FileManager.default.removeItem(atPath: journal)
        }
        BenchOutput.clearProgress()
        if json {
            try BenchOutput.printJSON(runs)
        } else {
            print(PlantBench.table(runs))
        }
        if runs.contains(where: { $0.received < $0.sent }) { throw ExitCode(1) }
    }
}
