import ArgumentParser
import Foundation

/// `mktctl bench`: measurements with a progress line and a table at the end.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure parts of the chain on this machine.",
        subcommands: [FeedBenchCommand.self])

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
        let bench = FeedBench(settings: settings) { line in
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        }
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
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(runs), as: UTF8.self))
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
