import ArgumentParser
import Foundation

/// `mktctl bench plant-hostile`: the release plantd beside hostile raw peers (`PlantHostileRun`).
public struct PlantHostileBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plant-hostile",
        abstract: "plantd (its own process) with a steady market and one consumer, quiet and then beside hostile raw peers: its memory and the consumer's latency.")

    @Option(name: .long, help: "Peers of each kind.")
    public var peers = 40

    @Option(name: .long, parsing: .upToNextOption, help: """
        Only these kinds: \(PlantHostileRun.Behaviour.allCases.map(\.rawValue).joined(separator: ", ")).
        """)
    public var only: [String] = []

    @Option(name: .long, help: "Ticks a second from the stand-in feedd.")
    public var rate = 20_000

    @Option(name: .long, help: "Seconds of each window (quiet, then beside the peers).")
    public var seconds = 15.0

    @Option(name: .long, help: "plantd's [plant] send_hwm for the run.")
    public var sendHwm = 100_000

    @Option(name: .long, help: "plantd's [plant] max_answer_ticks for the run.")
    public var maxAnswerTicks = 100_000

    @Option(name: .long, help: "plantd's [plant] answer_ticks_per_second for the run.")
    public var answerRate = 100_000

    @Option(name: .long, help: "The plantd executable (default: the one beside mktctl).")
    public var plantd: String?

    @Flag(name: .long, help: "Print the result as JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        guard peers >= 0, rate > 0, seconds > 0, sendHwm > 0, maxAnswerTicks > 0,
            answerRate >= 1_000
        else {
            throw ValidationError("--peers, --rate, --seconds, --send-hwm and --max-answer-ticks: expected positive "
                + "numbers; --answer-rate: at least 1000")
        }
        var behaviours: [PlantHostileRun.Behaviour] = []
        for name in only {
            guard let behaviour = PlantHostileRun.Behaviour(rawValue: name) else {
                throw ValidationError("--only: no kind \"\(name)\"")
            }
            behaviours.append(behaviour)
        }
        let binary = plantd
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("plantd").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ValidationError("no plantd at \(binary) (build it, or give --plantd PATH)")
        }
        var run = PlantHostileRun()
        run.peersPerBehaviour = peers
        if !behaviours.isEmpty { run.behaviours = behaviours }
        run.ticksPerSecond = rate
        run.seconds = seconds
        run.sendHighWaterMark = sendHwm
        run.maxAnswerTicks = maxAnswerTicks
        run.answerTicksPerSecond = answerRate
        let result = try run.run(plantd: binary, progress: BenchOutput.progress)
        BenchOutput.clearProgress()
        if json { return try BenchOutput.printJSON(result) }
        func latency(_ summary: LatencySummary) -> String {
            String(format: "%.0f / %.0f / %.0f us (%d ticks)", summary.p50Us, summary.p99Us, summary.maxUs, summary.count)
        }
        print(TextTable.render(header: ["what", "figure"], rows: [
            ["hostile peers", result.peers.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")],
            ["market", "\(result.ticksPerSecond) ticks/s over \(result.symbols) symbols"],
            ["plantd", "send_hwm \(result.sendHighWaterMark), max_answer_ticks \(result.maxAnswerTicks), "
                + "answer_ticks_per_second \(result.answerTicksPerSecond)"],
            ["consumer p50 / p99 / max, quiet", latency(result.quiet)],
            ["consumer p50 / p99 / max, beside", latency(result.beside) + String(format: " (p99 x%.2f)", result.p99Ratio)],
            ["  their first \(PlantHostileRun().arrivalSeconds) s", latency(result.arrival)],
            ["  after", latency(result.settled) + String(format: " (p99 x%.2f)", result.settledP99Ratio)],
            ["consumer p99 by second, beside", result.besideP99UsBySecond.map { String(format: "%.0f", $0) }.joined(separator: " ")],
            ["consumer stream", "\(result.consumerTicks) ticks, \(result.consumerMissed) missed, \(result.consumerRepeated) repeated"],
            ["plantd up at the end", result.plantdAlive ? "yes" : "NO"],
            ["plantd RSS", String(format: "%.1f MB quiet, %.1f MB at most beside (+%.1f MB; bound +%.0f MB)",
                Double(result.rssBeforeBytes) / 1e6, Double(result.rssPeakBytes) / 1e6,
                Double(result.rssPeakBytes - result.rssBeforeBytes) / 1e6, Double(result.boundBytes) / 1e6)],
            ["plantd RSS by second, MB", result.rssMBBySecond.map { String(format: "%.0f", $0) }.joined(separator: " ")],
            ["bound", result.bound],
            ["plantd counted", result.plantdCounters.filter {
                ["answers_refused", "answers_cut", "snapshots_served", "answers_to_unread_peers", "requests_dropped", "subscriptions"].contains($0.key)
            }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")],
        ]))
        guard result.plantdAlive, result.consumerMissed == 0, result.consumerRepeated == 0 else { throw ExitCode(1) }
    }
}
