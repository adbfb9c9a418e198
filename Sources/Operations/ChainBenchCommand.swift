import ArgumentParser
import Foundation
import MarketData

/// `mktctl bench chain`: sim -> feedd -> plantd -> consumer at stepped rates beside bare libzmq, on each number of
/// cores asked for (`taskset` narrows a child run to the first N), with a table, SVG plots and a block of
/// docs/performance.md written from the same figures.
public struct ChainBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "chain",
        abstract: "sim -> feedd -> plantd -> a raw consumer at stepped rates until it loses or falls behind, beside bare libzmq PUB->SUB and PUB->relay->SUB.")

    // Defaults are the bench's own (`ChainBench.Settings`), so that the command and a test running the bench agree.
    @Option(name: .long, help: "Symbols in the synthetic market.")
    public var symbols = ChainBench.Settings().symbols

    @Option(name: .long, help: "ITCH messages per second of the first step.")
    public var firstRate = ChainBench.Settings().firstRate

    @Option(name: .long, help: "Each step this many times faster than the last.")
    public var stepFactor = ChainBench.Settings().stepFactor

    @Option(name: .long, help: "Steps at most (the steps stop at the first that loses).")
    public var maximumSteps = ChainBench.Settings().maximumSteps

    @Option(name: .long, help: "Seconds each step sends for.")
    public var stepSeconds = ChainBench.Settings().stepSeconds

    @Option(name: .long, help: "Ticks per second out of plantd at which the chain's latency is compared with a bare hop's.")
    public var latencyRate = ChainBench.Settings().latencyTicksPerSecond

    @Option(name: .long, help: "Ticks each baseline sends unpaced.")
    public var baselineTicks = ChainBench.Settings().baselineTicks

    @Option(name: .long, help: "Rounds of the latency comparison (a bare hop, then the chain); the median ratio is reported.")
    public var latencyRounds = ChainBench.Settings().latencyRounds

    @Option(name: .long, help: "Milliseconds more that ticks sent in a step's last half second may lag than those sent in its first, for the step to count as carried (not falling behind).")
    public var lagGrowthLimit = ChainBench.Settings().lagGrowthLimitMs

    @Option(name: .long, help: "Numbers of cores to run on, such as 1,all (each below what this process may use runs under taskset).")
    public var cores: String?

    @Option(name: .long, help: "Write chain-latency.svg and chain-throughput.svg into this directory.")
    public var svgDirectory: String?

    @Option(name: .long, help: "Write the figures into this Markdown file, between its 'mktctl bench chain' markers.")
    public var report: String?

    @Flag(name: .long, help: "Print the reports as JSON instead of tables.")
    public var json = false

    public init() {}

    var coreCounts: [Int] {
        get throws {
            let allowed = ChainBench.allowedCPUs()
            guard let cores else { return [allowed] }
            let counts = cores.split(separator: ",").map { item -> Int? in
                let item = item.trimmingCharacters(in: .whitespaces)
                return item == "all" ? allowed : Int(item)
            }
            guard !counts.isEmpty, counts.allSatisfy({ $0 != nil && $0! >= 1 && $0! <= allowed }) else {
                throw ValidationError(
                    "--cores: expected numbers from 1 to \(allowed) or all, such as 1,all, got \"\(cores)\"")
            }
            // Each count once, fewest first (1,all on a one-core machine is one run).
            return Set(counts.compactMap { $0 }).sorted()
        }
    }

    public func validate() throws {
        guard symbols > 0, firstRate > 0, stepFactor > 1, maximumSteps > 0, stepSeconds > 0, latencyRate > 0,
            baselineTicks > 0, latencyRounds > 0, lagGrowthLimit > 0
        else {
            throw ValidationError("--symbols, --first-rate, --maximum-steps, --step-seconds, --latency-rate, "
                + "--baseline-ticks, --latency-rounds and --lag-growth-limit: expected positive numbers; "
                + "--step-factor above 1")
        }
        _ = try coreCounts
    }

    var settings: ChainBench.Settings {
        var settings = ChainBench.Settings()
        settings.symbols = symbols
        settings.firstRate = firstRate
        settings.stepFactor = stepFactor
        settings.maximumSteps = maximumSteps
        settings.stepSeconds = stepSeconds
        settings.latencyTicksPerSecond = latencyRate
        settings.baselineTicks = baselineTicks
        settings.latencyRounds = latencyRounds
        settings.lagGrowthLimitMs = lagGrowthLimit
        return settings
    }

    public func run() throws {
        var reports: [ChainBench.Report] = []
        for count in try coreCounts {
            if count == ChainBench.allowedCPUs() {
                reports.append(try ChainBench(settings: settings, progress: { line in
                    BenchOutput.progress("\(count) core\(count == 1 ? "" : "s"): \(line)")
                }).run())
            } else {
                reports.append(try runNarrowed(to: count))
            }
        }
        BenchOutput.clearProgress()
        if json {
            try BenchOutput.printJSON(reports)
        } else {
            print(ChainBenchReport.text(reports))
        }
        if let svgDirectory {
            try FileManager.default.createDirectory(atPath: svgDirectory, withIntermediateDirectories: true)
            try ChainBenchReport.latencySVG(reports).write(
                toFile: svgDirectory + "/chain-latency.svg", atomically: true, encoding: .utf8)
            try ChainBenchReport.throughputSVG(reports).write(
                toFile: svgDirectory + "/chain-throughput.svg", atomically: true, encoding: .utf8)
        }
        if let report {
            let pictures = svgDirectory.map { directory in
                URL(fileURLWithPath: directory).standardizedFileURL.path
                    .replacingOccurrences(
                        of: URL(fileURLWithPath: report).deletingLastPathComponent().standardizedFileURL.path + "/",
                        with: "")
            }
            try ChainBenchReport.writeMarkdown(reports, into: report, pictures: pictures)
        }
    }

    /// The same bench in a child process that `taskset` keeps on the first `count` cores; its JSON report.
    func runNarrowed(to count: Int) throws -> ChainBench.Report {
        guard let taskset = ["/usr/bin/taskset", "/bin/taskset"].first(where: FileManager.default.isExecutableFile)
        else { throw BenchError("--cores \(count): taskset (util-linux) is needed to narrow a run to fewer cores") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: taskset)
        process.arguments = ["-c", count == 1 ? "0" : "0-\(count - 1)", "/proc/self/exe".resolvingSymlinks,
            "bench", "chain", "--json", "--cores", "\(count)", "--symbols", "\(symbols)",
            "--first-rate", "\(firstRate)", "--step-factor", "\(stepFactor)", "--maximum-steps", "\(maximumSteps)",
            "--step-seconds", "\(stepSeconds)",
            "--latency-rate", "\(latencyRate)", "--baseline-ticks", "\(baselineTicks)",
            "--latency-rounds", "\(latencyRounds)", "--lag-growth-limit", "\(lagGrowthLimit)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let report = try? JSONDecoder().decode([ChainBench.Report].self, from: data).first
        else { throw BenchError("the run on \(count) core(s) failed (exit status \(process.terminationStatus))") }
        return report
    }
}

extension String {
    /// The path a symbolic link such as /proc/self/exe points to.
    fileprivate var resolvingSymlinks: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: self)) ?? self
    }
}

/// The chain bench's figures as a table, as SVG pictures and as Markdown.
public enum ChainBenchReport {
    static func rate(_ perSecond: Double) -> String { FeedBench.formatRate(perSecond) }
    /// "100 k ticks/s", "1.28 M ticks/s".
    static func ticks(_ perSecond: Double) -> String {
        rate(perSecond).replacingOccurrences(of: "/s", with: " ticks/s")
    }
    static func duration(_ nanoseconds: UInt64) -> String { LatencyCommand.duration(nanoseconds) }
    static func cores(_ count: Int) -> String { "\(count) core\(count == 1 ? "" : "s")" }
    /// ", 4.2% of the machine's CPU time stolen by the hypervisor during the run", or nothing where not counted.
    static func steal(_ report: ChainBench.Report) -> String {
        report.stealPercent.map {
            String(format: ", %.1f%% of the machine's CPU time stolen by the hypervisor during the run", $0)
        } ?? ""
    }

    static func baselineRows(_ report: ChainBench.Report) -> [[String]] {
        report.baselines.map { baseline in
            [baseline.name, rate(baseline.ticksPerSecond),
                baseline.latency.map { duration($0.p50Ns) } ?? "-", baseline.latency.map { duration($0.p99Ns) } ?? "-"]
        }
    }

    static func stepRows(_ report: ChainBench.Report) -> [[String]] {
        report.steps.map { step in
            let end = step.endToEnd
            return [rate(Double(step.offeredMessagesPerSecond)), rate(step.ticksPerSecond),
                "\(step.itchSent - min(step.itchSent, step.itchReceived))", "\(step.kernelDrops)",
                "\(step.plantMissing + step.consumerMissing)",
                duration(step.lagAtStartNs) + " -> " + duration(step.lagAtEndNs), carried(step),
                end.map { duration($0.p50Ns) } ?? "-", end.map { duration($0.p99Ns) } ?? "-"]
        }
    }

    /// "yes", or what was lost and whether the chain fell behind.
    static func carried(_ step: ChainBench.Step) -> String {
        if step.carried { return "yes" }
        var why = step.losses
        if step.fellBehind { why.append("fell behind (its lag grew through the step)") }
        return "NO: " + why.joined(separator: "; ")
    }

    /// The chain's highest rate carried and the bare relay's, for each number of cores.
    static func coreRows(_ reports: [ChainBench.Report]) -> [[String]] {
        reports.map { [cores($0.cpus), $0.highestCarried.map { rate($0.ticksPerSecond) } ?? "-",
            $0.relay.map { rate($0.ticksPerSecond) } ?? "-"] }
    }

    /// Where the cores went during a step, by part of the chain, and in all.
    static func coreUseRows(_ step: ChainBench.Step, cpus: Int) -> [[String]] {
        let ticksOut = max(step.consumerReceived, 1)
        let coreNs = Double(max(step.measuredNs, 1)) * Double(max(cpus, 1))
        func row(_ part: String, _ threads: Int, _ runNs: UInt64, _ waitNs: UInt64, _ runs: UInt64) -> [String] {
            [part, "\(threads)", duration(runNs / ticksOut), String(format: "%.0f%%", Double(runNs) / coreNs * 100),
                String(format: "%.0f%%", Double(waitNs) / Double(max(runNs + waitNs, 1)) * 100),
                String(format: "%.0f", Double(runs) / Double(ticksOut) * 1000)]
        }
        let use = step.threadUse
        return use.map { row($0.part, $0.threads, $0.runNs, $0.waitNs, $0.runs) }
            + [row("all", use.reduce(0) { $0 + $1.threads }, use.reduce(0) { $0 + $1.runNs },
                use.reduce(0) { $0 + $1.waitNs }, use.reduce(0) { $0 + $1.runs })]
    }

    /// The step whose use of the cores is shown: the fastest carried, else the first.
    static func coreUseStep(_ report: ChainBench.Report) -> ChainBench.Step? {
        (report.highestCarried ?? report.steps.first).flatMap { $0.threadUse.isEmpty ? nil : $0 }
    }

    static func coreUseTitle(_ step: ChainBench.Step) -> String {
        "Where the cores went at \(rate(Double(step.offeredMessagesPerSecond))) ITCH offered, "
            + "\(ticks(step.ticksPerSecond)) out (\(step.carried ? "the fastest step carried" : "the first step")):"
    }

    static func hopRows(_ step: ChainBench.Step) -> [[String]] {
        step.hops.map { [$0.hop, "\($0.count)", duration($0.p50Ns), duration($0.p90Ns), duration($0.p99Ns),
            duration($0.p999Ns), duration($0.maxNs)] }
    }

    static func goals(_ report: ChainBench.Report) -> [String] {
        var lines: [String] = []
        if let best = report.highestCarried, let relay = report.relay, let ratio = report.throughputRatio {
            lines.append(String(format: "chain's highest rate carried (no loss, not falling behind) %@ = %.2f of the "
                + "bare relay's %@ (goal: at least 0.7)", ticks(best.ticksPerSecond), ratio, ticks(relay.ticksPerSecond)))
        } else {
            lines.append("no step of the chain was carried without loss and without falling behind")
        }
        if let round = report.medianLatencyRound, let ratio = round.ratio, let chain = round.chain.endToEnd {
            lines.append(String(format: "p99 exchange -> consumer at %@: %@ = %.1f times a bare hop's %@ measured "
                + "just before it (goal: at most 3)", ticks(round.chain.ticksPerSecond), duration(chain.p99Ns), ratio,
                duration(round.bareHop.p99Ns)))
            if report.latencyRounds.count > 1 {
                lines.append("(the median of \(report.latencyRounds.count) rounds; their ratios: "
                    + report.latencyRounds.map { $0.ratio.map { String(format: "%.1f", $0) } ?? "-" }
                        .joined(separator: ", ") + ")")
            }
            if round.chain.ticksPerSecond > report.highestCarried?.ticksPerSecond ?? 0 {
                lines.append("(that rate is above what the chain carries here: its latency is a backlog's)")
            }
        }
        return lines
    }

    static let baselineHeader = ["BASELINE (SAME TICKS)", "TICKS/S UNPACED", "P50 AT LATENCY RATE", "P99"]
    static let stepHeader = ["OFFERED ITCH/S", "TICKS/S OUT", "ITCH LOST", "KERNEL DROPS", "TICKS MISSING",
        "LAG, FIRST -> LAST 0.5 S SENT", "CARRIED", "P50 END TO END", "P99"]
    static let coreUseHeader = ["PART", "THREADS", "CPU PER TICK OUT", "OF THE CORES", "WAITING FOR A CORE",
        "RUNS PER 1000 TICKS"]
    static let coreHeader = ["CORES", "CHAIN TICKS/S", "BARE RELAY TICKS/S"]
    static let hopHeader = ["HOP", "COUNT", "P50", "P90", "P99", "P99.9", "MAX"]

    public static func text(_ reports: [ChainBench.Report]) -> String {
        var out = ""
        for report in reports {
            out += "\(cores(report.cpus)) (\(report.machine)), \(report.date)\(steal(report))\n"
            out += TextTable.render(header: baselineHeader, rows: baselineRows(report)) + "\n"
            out += "sim -> feedd -> plantd -> consumer, \(report.settings.stepSeconds) s a step:\n"
            out += TextTable.render(header: stepHeader, rows: stepRows(report)) + "\n"
            if let step = coreUseStep(report) {
                out += coreUseTitle(step) + "\n"
                out += TextTable.render(header: coreUseHeader, rows: coreUseRows(step, cpus: report.cpus)) + "\n"
            }
            if let step = report.latencyStep {
                out += "Each hop at \(ticks(step.ticksPerSecond)) out of plantd (the median latency round):\n"
                out += TextTable.render(header: hopHeader, rows: hopRows(step)) + "\n"
            }
            out += goals(report).joined(separator: "\n") + "\n\n"
        }
        if reports.count > 1 {
            out += "What each core gives (highest rate carried):\n"
            out += TextTable.render(header: coreHeader, rows: coreRows(reports))
        }
        return out
    }

    // MARK: Markdown

    public static let beginMarker = "<!-- mktctl bench chain: begin (written by make bench) -->"
    public static let endMarker = "<!-- mktctl bench chain: end -->"

    static func markdownTable(_ header: [String], _ rows: [[String]]) -> String {
        let lines = [header, header.map { _ in "---" }] + rows
        return lines.map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n") + "\n"
    }

    static func markdown(_ reports: [ChainBench.Report], pictures: String?) -> String {
        var out = ""
        for report in reports {
            out += "\n**\(cores(report.cpus))** (\(report.machine)), \(report.date)\(steal(report)):\n\n"
            out += markdownTable(baselineHeader.map { $0.lowercased() }, baselineRows(report)) + "\n"
            out += markdownTable(stepHeader.map { $0.lowercased() }, stepRows(report)) + "\n"
            if let step = coreUseStep(report) {
                out += coreUseTitle(step) + "\n\n"
                out += markdownTable(coreUseHeader.map { $0.lowercased() }, coreUseRows(step, cpus: report.cpus)) + "\n"
            }
            if let step = report.latencyStep {
                out += "Each hop at \(ticks(step.ticksPerSecond)) out of plantd (the median latency round):\n\n"
                out += markdownTable(hopHeader.map { $0.lowercased() }, hopRows(step)) + "\n"
            }
            out += goals(report).map { "- " + $0 }.joined(separator: "\n") + "\n"
        }
        if reports.count > 1 {
            out += "\nWhat each core gives (highest rate carried):\n\n"
                + markdownTable(coreHeader.map { $0.lowercased() }, coreRows(reports))
        }
        if let pictures {
            out += "\n![latency per hop](\(pictures)/chain-latency.svg)\n"
            out += "![ticks out per offered rate](\(pictures)/chain-throughput.svg)\n"
        }
        return out
    }

    /// Replaces what lies between the markers of `path` (or appends a section with them) with the figures.
    public static func writeMarkdown(_ reports: [ChainBench.Report], into path: String, pictures: String?) throws {
        let existing = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let block = beginMarker + "\n" + markdown(reports, pictures: pictures) + endMarker
        let updated: String
        if let begin = existing.range(of: beginMarker), let end = existing.range(of: endMarker),
            begin.upperBound <= end.lowerBound
        {
            updated = existing.replacingCharacters(in: begin.lowerBound..<end.upperBound, with: block)
        } else {
            updated = existing + "\n## The whole chain: `mktctl bench chain`\n\n" + block + "\n"
        }
        try updated.write(toFile: path, atomically: true, encoding: .utf8)
    }

    // MARK: SVG

    static let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#333333"]

    /// Each hop's latency at its percentiles (50, 90, 99, 99.9, max) on a log scale, the bare baselines beside the
    /// chain's hops, for the first report's latency step (the most cores).
    public static func latencySVG(_ reports: [ChainBench.Report]) -> String {
        guard let report = reports.max(by: { $0.cpus < $1.cpus }), let step = report.latencyStep else {
            return emptySVG("no latency step")
        }
        let series = step.hops + report.baselines.compactMap(\.latency)
        let width = 780.0, height = 420.0, left = 70.0, right = 190.0, top = 40.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let labels = ["p50", "p90", "p99", "p99.9", "max"]
        let values = series.map { [$0.p50Ns, $0.p90Ns, $0.p99Ns, $0.p999Ns, $0.maxNs].map { Double(max(1, $0)) } }
        let lowest = max(100, values.flatMap { $0 }.min() ?? 100)
        let highest = max(lowest * 10, values.flatMap { $0 }.max() ?? 1_000)
        let logLow = log10(lowest) - 0.1, logHigh = log10(highest) + 0.1
        func x(_ index: Int) -> Double { left + Double(index) / Double(labels.count - 1) * plotWidth }
        func y(_ nanoseconds: Double) -> Double {
            top + plotHeight - (log10(max(lowest, nanoseconds)) - logLow) / (logHigh - logLow) * plotHeight
        }
        var svg = header(width, height, title: "Latency per hop at \(ticks(step.ticksPerSecond)), "
            + "\(cores(report.cpus)), \(report.date.prefix(10))")
        for (index, label) in labels.enumerated() {
            svg += gridLine(x1: x(index), y1: top, x2: x(index), y2: top + plotHeight)
                + text(x(index), top + plotHeight + 15, label, anchor: "middle")
        }
        var tick = pow(10, floor(logLow))
        while tick <= pow(10, logHigh) {
            if log10(tick) >= logLow {
                svg += gridLine(x1: left, y1: y(tick), x2: left + plotWidth, y2: y(tick))
                    + text(left - 5, y(tick) + 4, duration(UInt64(tick)), anchor: "end")
            }
            tick *= 10
        }
        for (index, hop) in series.enumerated() {
            let color = colors[index % colors.count]
            let dashed = index >= step.hops.count ? " stroke-dasharray=\"5,4\"" : ""
            let points = values[index].enumerated().map { String(format: "%.1f,%.1f", x($0.offset), y($0.element)) }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed) "
                + "points=\"\(points.joined(separator: " "))\"><title>\(escape(hop.hop))</title></polyline>\n"
            svg += legend(index, width - right + 15, top, color: color, label: hop.hop, dashed: !dashed.isEmpty)
        }
        return svg + "</svg>\n"
    }

    /// Ticks per second out of plantd against the ITCH rate offered, one line per core count (a step not carried marked
    /// with a red ring: it lost or fell behind), and each bare relay's unpaced rate as a dashed line.
    public static func throughputSVG(_ reports: [ChainBench.Report]) -> String {
        let steps = reports.flatMap(\.steps)
        guard !steps.isEmpty else { return emptySVG("no step") }
        let width = 780.0, height = 420.0, left = 80.0, right = 190.0, top = 40.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let highestX = Double(steps.map(\.offeredMessagesPerSecond).max() ?? 1) * 1.05
        let highestY = max(steps.map(\.ticksPerSecond).max() ?? 1,
            reports.compactMap { $0.relay?.ticksPerSecond }.max() ?? 1) * 1.1
        func x(_ value: Double) -> Double { left + value / highestX * plotWidth }
        func y(_ value: Double) -> Double { top + plotHeight - value / highestY * plotHeight }
        var svg = header(width, height, title: "Ticks out of plantd per ITCH messages offered, "
            + "\(reports.first?.date.prefix(10) ?? "")")
        for fraction in stride(from: 0.0, through: 1.0, by: 0.25) {
            svg += gridLine(x1: x(highestX * fraction), y1: top, x2: x(highestX * fraction), y2: top + plotHeight)
                + text(x(highestX * fraction), top + plotHeight + 15, rate(highestX * fraction), anchor: "middle")
            svg += gridLine(x1: left, y1: y(highestY * fraction), x2: left + plotWidth, y2: y(highestY * fraction))
                + text(left - 5, y(highestY * fraction) + 4, rate(highestY * fraction), anchor: "end")
        }
        svg += text(left + plotWidth / 2, height - 12, "ITCH messages offered per second", anchor: "middle")
        var legendIndex = 0
        for (index, report) in reports.enumerated() {
            let color = colors[index % colors.count]
            let points = report.steps.map { String(format: "%.1f,%.1f", x(Double($0.offeredMessagesPerSecond)),
                y($0.ticksPerSecond)) }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" "
                + "points=\"\(points.joined(separator: " "))\"/>\n"
            for step in report.steps {
                svg += "<circle cx=\"\(x(Double(step.offeredMessagesPerSecond)))\" cy=\"\(y(step.ticksPerSecond))\" "
                    + "r=\"\(step.carried ? 3 : 6)\" fill=\"\(step.carried ? color : "none")\" "
                    + "stroke=\"\(step.carried ? color : "#d62728")\" stroke-width=\"2\"/>\n"
            }
            svg += legend(legendIndex, width - right + 15, top, color: color, label: "chain, \(cores(report.cpus))")
            legendIndex += 1
            if let relay = report.relay {
                svg += "<line x1=\"\(left)\" y1=\"\(y(relay.ticksPerSecond))\" x2=\"\(left + plotWidth)\" "
                    + "y2=\"\(y(relay.ticksPerSecond))\" stroke=\"\(color)\" stroke-dasharray=\"5,4\"/>\n"
                svg += legend(legendIndex, width - right + 15, top, color: color,
                    label: "bare relay, \(cores(report.cpus))", dashed: true)
                legendIndex += 1
            }
        }
        svg += legend(legendIndex, width - right + 15, top, color: "#d62728", label: "(ring: a step that lost)")
        return svg + "</svg>\n"
    }

    static func header(_ width: Double, _ height: Double, title: String) -> String {
        """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
        font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="70" y="20" font-size="13">\(escape(title))</text>

        """
    }

    static func emptySVG(_ why: String) -> String { header(400, 60, title: why) + "</svg>\n" }

    static func gridLine(x1: Double, y1: Double, x2: Double, y2: Double) -> String {
        String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", x1, y1, x2, y2)
    }

    static func text(_ x: Double, _ y: Double, _ content: String, anchor: String) -> String {
        String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%@\">", x, y, anchor) + escape(content) + "</text>\n"
    }

    static func legend(_ index: Int, _ x: Double, _ top: Double, color: String, label: String, dashed: Bool = false)
        -> String
    {
        let y = top + 14 + Double(index) * 16
        return "<line x1=\"\(x)\" y1=\"\(y - 4)\" x2=\"\(x + 14)\" y2=\"\(y - 4)\" stroke=\"\(color)\" "
            + "stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"4,3\"" : "")/>"
            + text(x + 18, y, label, anchor: "start")
    }

    static func escape(_ text: String) -> String { LatencyCommand.escape(text) }
}
