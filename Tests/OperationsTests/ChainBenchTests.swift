import Foundation
import Testing

import MarketData
import Operations
import ZeroMQ

/// `mktctl bench chain` on a small scale: the chain in-process (UDP into feedd's engine, plantd's engine, a raw
/// consumer) at two rates, the bare libzmq baselines, and what it writes (Markdown block, SVG pictures).
@Suite(.serialized) struct ChainBenchTests {
    @Test func theChainAndItsBaselinesAreMeasuredAndWrittenDown() throws {
        var settings = ChainBench.Settings()
        settings.symbols = 50
        settings.firstRate = 20_000
        settings.maximumSteps = 2
        settings.stepSeconds = 0.5
        settings.latencyTicksPerSecond = 5_000
        settings.baselineTicks = 50_000
        settings.latencyRounds = 2
        // Another ZeroMQ context alive in the process (as an earlier test's may still be): its I/O thread is not the
        // chain's.
        let bystander = try ZMQContext()
        let bystanderSocket = try ZMQSocket(bystander, type: .subscribe)
        defer { bystanderSocket.close() }
        let report = try ChainBench(settings: settings, progress: { _ in }).run()

        #expect(report.baselines.count == 2 && report.baselines.allSatisfy { $0.ticksPerSecond > 0 })
        #expect(report.baselines.allSatisfy { ($0.latency?.count ?? 0) > 1_000 }, "each baseline timed at 5 000/s")
        let first = try #require(report.steps.first)
        #expect(first.lossFree, "20 000 ITCH messages/s go through whole: \(first.losses)")
        #expect(first.carried, "and in time: lag \(first.lagAtStartNs) ns at the start, \(first.lagAtEndNs) at the end")
        #expect(first.lagAtStartNs > 0 && first.lagAtEndNs > 0, "both ends of the step timed")
        // Every part of the chain had the cores for a while (the kernel's scheduler statistics, by thread name; a
        // kernel built without them has no /proc/self/task/*/schedstat, and the bench then shows no such table).
        let schedulerStatistics = !ThreadTimes.now().threads.isEmpty
        let parts = first.threadUse.map(\.part)
        for part in ["sender (the exchange)", "feedd", "plantd", "consumer", "libzmq I/O threads"]
        where schedulerStatistics {
            #expect(parts.contains(part), "\(part) timed: \(parts)")
        }
        #expect(!schedulerStatistics || first.threadUse.first { $0.part == "libzmq I/O threads" }?.threads == 3,
            "a context each")
        #expect(first.threadUse.allSatisfy { $0.runNs > 0 && $0.runNs < first.measuredNs * 2 },
            "no part ran longer than two cores for the step: \(first.threadUse)")
        #expect(first.itchReceived == first.itchSent && first.consumerReceived == first.plantPublished)
        #expect(first.consumerReceived > 1_000, "the market's messages became ticks at the consumer")
        #expect(report.latencyRounds.count == 2)
        // Linux counts steal in /proc/stat (0 on bare metal): a share of the run, never more than all of it.
        let steal = try #require(report.stealPercent)
        #expect(steal >= 0 && steal <= 100)
        #expect(report.latencyRounds.allSatisfy { $0.bareHop.count > 1_000 && $0.ratio != nil })
        // Of two rounds, the lower ratio is the median's.
        let lowest = report.latencyRounds.compactMap(\.ratio).min()
        #expect(report.latencyRatio == lowest)
        let step = try #require(report.latencyStep)
        let hops = step.hops.map(\.hop)
        #expect(hops == ["exchange -> feedd", "in feedd", "feedd -> plantd", "in plantd", "plantd -> consumer",
            "end to end"])
        let inPlant = try #require(step.hops.first { $0.hop == "in plantd" })
        // BOOKs wait in plantd on purpose (conflated): left out, the plant's own time is microseconds.
        #expect(inPlant.p50Ns < 1_000_000)
        #expect(report.throughputRatio != nil && report.latencyRatio != nil)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chain-bench-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let markdown = directory.appendingPathComponent("performance.md").path
        try "# Performance\n\nBy hand.\n".write(toFile: markdown, atomically: true, encoding: .utf8)
        try ChainBenchReport.writeMarkdown([report], into: markdown, pictures: "bench")
        try ChainBenchReport.writeMarkdown([report], into: markdown, pictures: "bench")
        let written = try String(contentsOfFile: markdown, encoding: .utf8)
        #expect(written.hasPrefix("# Performance\n\nBy hand.\n"), "what was there stays")
        #expect(written.components(separatedBy: ChainBenchReport.beginMarker).count == 2, "one block, replaced")
        #expect(written.contains("| 20 k/s |") && written.contains("![latency per hop](bench/chain-latency.svg)"))
        #expect(written.contains("| yes |") && written.contains("highest rate carried"))
        #expect(!schedulerStatistics
            || (written.contains("Where the cores went at ") && written.contains("| feedd | 1 |")))
        for svg in [ChainBenchReport.latencySVG([report]), ChainBenchReport.throughputSVG([report])] {
            #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n") && svg.contains("<polyline"))
        }
    }

    /// A step's lag by when its ticks were sent: the same at both ends for a chain that keeps up, growing for one
    /// offered more than it carries (its surplus queued and delivered late).
    @Test func theLagOfTheFirstAndLastHalfSecondSentIsMeasured() {
        let start: UInt64 = 1_700_000_000_000_000_000
        var keepingUp = LagBySendTime()
        var fallingBehind = LagBySendTime()
        #expect(keepingUp.meanLagNs(inFirst: true) == nil, "nothing sent, nothing timed")
        // 3 s of ticks every millisecond: one chain 200 us behind throughout, the other 10 us later with each tick.
        for index in 0..<3_000 {
            let sent = start + UInt64(index) * 1_000_000
            keepingUp.record(sentNs: sent, receivedNs: sent + 200_000)
            fallingBehind.record(sentNs: sent, receivedNs: sent + 200_000 + UInt64(index) * 10_000)
        }
        #expect(keepingUp.meanLagNs(inFirst: true) == 200_000 && keepingUp.meanLagNs(inFirst: false) == 200_000)
        // Ticks 0..499 lag 200 us + 0..4.99 ms (mean 2.695 ms); ticks 2500..2999 200 us + 25..29.99 ms.
        #expect(fallingBehind.meanLagNs(inFirst: true) == 2_695_000)
        #expect(fallingBehind.meanLagNs(inFirst: false) == 27_695_000)
        // A tick stamped before the first one seen counts in the first half second; a clock read backwards is skipped.
        fallingBehind.record(sentNs: start - 1_000, receivedNs: start + 200_000_000)
        #expect(fallingBehind.meanLagNs(inFirst: true)! > 2_695_000)
        fallingBehind.record(sentNs: start + 2_900_000_000, receivedNs: start)
        #expect(fallingBehind.meanLagNs(inFirst: false) == 27_695_000)
    }
}
