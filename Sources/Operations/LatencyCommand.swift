import ArgumentParser
import DaemonMetrics
import Foundation
import Histogram
import MarketData
import ZeroMQ

/// The latency of each hop of the chain, from the stamps every tick carries (exchange, feedd in and out, plantd in
/// and out) and the moment it reaches this process: HDR histograms over a window.
public struct HopLatencies: Sendable {
    /// The stamps in the order a tick meets them; a hop is the time between two stamps both set.
    static let stamps = ["exchange", "feedd in", "feedd out", "plantd in", "plantd out"]
    /// Where each hop's histogram is kept: between stamps `from` and `to` at `from * stamps.count + to`, from the
    /// last stamp to here after those, end to end last. A tick finds its hops by index: no name is made or hashed
    /// per tick (the chain bench's consumer records every tick while sharing the cores with the chain it measures).
    private static let toHereSlots = stamps.count * stamps.count
    private static let endToEndSlot = toHereSlots + stamps.count

    public struct Hop: Sendable {
        public var name: String
        /// Nanoseconds, up to a minute, to three significant digits.
        public var histogram = Histogram<UInt64>(
            highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        /// Ticks whose later stamp was earlier than the first: the two clocks are not comparable (two hosts).
        public var negative: UInt64 = 0
    }

    private var slots: [Hop?] = Array(repeating: nil, count: endToEndSlot + 1)
    /// Slots in the order ticks first showed them.
    private var firstShown: [Int] = []
    private var external: [Hop] = []
    public private(set) var ticks: UInt64 = 0
    let here: String

    public init(here: String = "mktctl") { self.here = here }

    /// exchange -> feedd, in feedd, feedd -> plantd, in plantd, the last stamp -> here (in the order ticks first
    /// showed them), end to end last; then the hops recorded by other means.
    public var inOrder: [Hop] {
        let measured = firstShown.filter { $0 != Self.endToEndSlot } + [Self.endToEndSlot]
        return measured.compactMap { slots[$0] } + external
    }

    static func hopName(from: Int, to: Int) -> String {
        switch (from, to) {
        case (0, 1): "exchange -> feedd"
        case (1, 2): "in feedd"
        case (2, 3): "feedd -> plantd"
        case (3, 4): "in plantd"
        default: "\(stamps[from]) -> \(stamps[to])"
        }
    }

    @inline(__always)
    private static func stamp(_ index: Int, of tick: Tick) -> UInt64 {
        switch index {
        case 0: tick.exchangeTimestampNs
        case 1: tick.feedReceiveNs
        case 2: tick.feedTransmitNs
        case 3: tick.plantReceiveNs
        default: tick.plantTransmitNs
        }
    }

    /// Records one tick received at `receivedNs` (wall clock, ns since the epoch). Ticks no feed handler took in
    /// (plantd's own: consolidated quotes, bars) have no hops to show and are left out, and so are BOOKs, held on
    /// purpose (`Tick.measuresLatency`).
    public mutating func record(_ tick: Tick, receivedNs: UInt64) {
        guard tick.feedReceiveNs != 0, tick.measuresLatency else { return }
        var last = -1
        for index in 0..<Self.stamps.count {
            let value = Self.stamp(index, of: tick)
            guard value != 0 else { continue }
            if last >= 0 { add(slot: last * Self.stamps.count + index, from: Self.stamp(last, of: tick), to: value) }
            last = index
        }
        // feedd's stamp is set, so `last` is at least 1.
        ticks += 1
        add(slot: Self.toHereSlots + last, from: Self.stamp(last, of: tick), to: receivedNs)
        if tick.exchangeTimestampNs != 0 { add(slot: Self.endToEndSlot, from: tick.exchangeTimestampNs, to: receivedNs) }
    }

    /// Adds a hop measured by other means (a bench's bare baseline, timed from its own stamp).
    mutating func recordExternal(name: String, histogram: Histogram<UInt64>) {
        external.removeAll { $0.name == name }
        external.append(Hop(name: name, histogram: histogram))
    }

    private func name(ofSlot slot: Int) -> String {
        if slot == Self.endToEndSlot { return "end to end" }
        if slot >= Self.toHereSlots {
            let stamp = Self.stamps[slot - Self.toHereSlots]
            let sender = stamp.split(separator: " ").first.map(String.init) ?? stamp
            return "\(sender) -> \(here)"
        }
        return Self.hopName(from: slot / Self.stamps.count, to: slot % Self.stamps.count)
    }

    private mutating func add(slot: Int, from: UInt64, to: UInt64) {
        if slots[slot] == nil {
            slots[slot] = Hop(name: name(ofSlot: slot))
            firstShown.append(slot)
        }
        if to < from {
            slots[slot]!.negative += 1
        } else {
            _ = slots[slot]!.histogram.record(min(to - from, 60_000_000_000))
        }
    }
}

/// `mktctl latency`: per-hop and end-to-end latency percentiles of the live stream, a terminal histogram of the end
/// to end, and an SVG picture (DESIGN section 7).
public struct LatencyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Show per-hop and end-to-end latency of the live stream (HDR histograms), as a table and a picture.",
        discussion: """
            Every tick carries the exchange's time and when feedd and plantd took it in and sent it on; mktctl adds \
            when it got it. A hop whose two stamps come from different hosts' clocks says so (its later stamp came \
            first) and is not trusted. Exchange -> feedd includes the difference between the exchange's clock and \
            feedd's.
            """)

    @OptionGroup public var options: ChainOptions

    @OptionGroup public var curve: CurveClientOptions

    @Argument(help: "Topic prefixes to measure (every symbol when none given).")
    public var prefixes: [String] = []

    @Option(name: .long, help: "plantd, feedd, or a ZeroMQ endpoint such as tcp://127.0.0.1:7201.")
    public var from: String = "plantd"

    @Option(name: .long, help: "Seconds of ticks per measurement.")
    public var seconds: Double = 5

    @Option(name: .long, help: "Write an SVG picture of every hop's percentiles to this file.")
    public var plot: String?

    @Flag(name: .long, help: "Measure again and again, each window replacing the last on the screen (Ctrl-C stops).")
    public var watch = false

    public init() {}

    public func validate() throws {
        guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds: expected above 0, at most 3600") }
    }

    struct Report: Codable {
        var source: String
        var seconds: Double
        var ticks: UInt64
        var hops: [HopFigures]
    }

    public func run() async throws {
        let context = try ZMQContext()
        let curveKeys = try curve.keys(from: from, options: options)
        let (socket, endpoint) = try TickSource.subscribe(from: from, options: options, prefixes: prefixes, raw: false,
            context: context, curve: curveKeys)
        // edged measures plantd -> edged itself (for the symbols its clients watch): asked at the start of a window
        // (which starts its own) and at the end.
        let edge = from == "plantd" ? (try? ChainEndpoints.load(etc: options.etc))?.edgeControl : nil
        let edgeCurve = edge == nil ? nil : try options.controlCurve(of: "edged")
        _ = edge.flatMap { Self.edgeHops(context: context, endpoint: $0, curve: edgeCurve) }
        repeat {
            let latencies = try measure(socket)
            var report = Self.report(latencies, source: "\(from) (\(endpoint))", seconds: seconds)
            let edgeHops = edge.flatMap { Self.edgeHops(context: context, endpoint: $0, curve: edgeCurve) } ?? []
            // plantd -> edged and edged -> client (half a WebSocket ping's round trip), where edged measured them.
            if let plantOut = report.hops.firstIndex(where: { $0.hop == "plantd -> mktctl" }) {
                report.hops.insert(contentsOf: edgeHops.filter { $0.count > 0 }, at: plantOut)
            }
            if let plot {
                let picture = Self.svg(latencies, title: "tickplant latency per hop, \(report.source)")
                try picture.write(toFile: plot, atomically: true, encoding: .utf8)
            }
            var text: String
            if options.json {
                text = try ChainOptions.jsonLine(report, snakeCase: true) + "\n"
            } else {
                text = Self.render(report, latencies: latencies) + "\n"
                // Watching on a terminal: each window replaces the last on the screen.
                if watch && isatty(1) != 0 { text = "\u{1B}[2J\u{1B}[H" + text }
            }
            // Unbuffered, so that a window shows as soon as it is measured even through a pipe.
            FileHandle.standardOutput.write(Data(text.utf8))
            // Nothing came: what was asked could not be measured.
            if report.ticks == 0 && !watch { throw ExitCode(1) }
        } while watch
        socket.close()
    }

    /// Takes ticks for `seconds` and records each.
    func measure(_ socket: ZMQSocket) throws -> HopLatencies {
        let poller = ZMQPoller()
        try poller.add(socket)
        let topic = ZMQMessage()
        let payload = ZMQMessage()
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var latencies = HopLatencies()
        let deadline = MonotonicClock.nowNanoseconds() + UInt64(seconds * 1e9)
        while MonotonicClock.nowNanoseconds() < deadline {
            let left = Int(min(200, (deadline - min(deadline, MonotonicClock.nowNanoseconds())) / 1_000_000 + 1))
            try poller.poll(timeoutMilliseconds: left)
            while (try? socket.receive(into: topic, dontWait: true)) == true {
                guard topic.hasMore, (try? socket.receive(into: payload)) == true else { continue }
                let received = WallClock.nowNanoseconds()
                let decoded = payload.withUnsafeBytes { (try? TickWire.decode($0, into: &tick)) != nil }
                guard decoded, !tick.symbol.hasPrefix("#") else { continue }
                latencies.record(tick, receivedNs: received)
            }
        }
        return latencies
    }

    /// edged's own hops since the last time it was asked (nil when it does not answer).
    static func edgeHops(context: ZMQContext, endpoint: String, curve: CurveClientKeys?) -> [HopFigures]? {
        ControlClient.ask(ControlRequest(cmd: "latency"), as: LatencyReply.self, context: context, endpoint: endpoint,
            timeoutMilliseconds: 500, curve: curve)?.hops
    }

    static func report(_ latencies: HopLatencies, source: String, seconds: Double) -> Report {
        let rows = latencies.inOrder.map { hop in
            HopFigures(hop: hop.name, histogram: hop.histogram, clockSkewed: hop.negative)
        }
        return Report(source: source, seconds: seconds, ticks: latencies.ticks, hops: rows)
    }

    /// A duration for people: 850 ns, 41 us, 2.3 ms, 1.2 s.
    static func duration(_ nanoseconds: UInt64) -> String {
        switch nanoseconds {
        case ..<1_000: "\(nanoseconds) ns"
        case ..<10_000: String(format: "%.1f us", Double(nanoseconds) / 1e3)
        case ..<1_000_000: "\(nanoseconds / 1_000) us"
        case ..<10_000_000: String(format: "%.1f ms", Double(nanoseconds) / 1e6)
        case ..<1_000_000_000: "\(nanoseconds / 1_000_000) ms"
        default: String(format: "%.1f s", Double(nanoseconds) / 1e9)
        }
    }

    static func render(_ report: Report, latencies: HopLatencies) -> String {
        var out = "Latency over \(report.seconds) s, \(report.ticks) ticks from \(report.source)\n"
        guard !report.hops.isEmpty else { return out + "(no tick came)" }
        let rows = report.hops.map { row in
            [row.hop, String(row.count), duration(row.p50Ns), duration(row.p90Ns), duration(row.p99Ns),
                duration(row.p999Ns), duration(row.maxNs)]
        }
        out += TextTable.render(header: ["HOP", "COUNT", "P50", "P90", "P99", "P99.9", "MAX"], rows: rows)
        for row in report.hops where row.clockSkewed > 0 {
            out += "\n\(row.hop): \(row.clockSkewed) ticks arrived before they left: these two clocks are not "
                + "comparable (different hosts?), so this hop's figures are not to be trusted"
        }
        if let end = latencies.inOrder.last {  // end to end, when the ticks had the exchange's stamp
            out += "\n\n\(end.name):\n" + terminalHistogram(end.histogram)
        }
        return out
    }

    /// Bars of the share of ticks within each doubling of latency (1-2 us, 2-4 us, ...), 40 characters at most.
    static func terminalHistogram(_ histogram: Histogram<UInt64>) -> String {
        guard histogram.totalCount > 0 else { return "(empty)" }
        var lower: UInt64 = 1_000
        while lower * 2 <= histogram.min { lower *= 2 }
        var lines: [String] = []
        var bucket = lower
        while bucket <= histogram.max {
            let count = histogram.count(within: bucket...(bucket * 2 - 1))
            let share = Double(count) / Double(histogram.totalCount)
            let bar = String(repeating: "#", count: Int((share * 40).rounded(.up)))
            lines.append(
                "\(duration(bucket).padding(toLength: 8, withPad: " ", startingAt: 0)) - "
                    + "\(duration(bucket * 2).padding(toLength: 8, withPad: " ", startingAt: 0)) "
                    + bar.padding(toLength: 41, withPad: " ", startingAt: 0) + String(format: "%5.1f%%", share * 100))
            bucket *= 2
        }
        return lines.joined(separator: "\n")
    }

    /// Each hop's latency against its percentile, in HDR fashion: the percentile axis stretched toward the tail
    /// (50, 90, 99, 99.9, 99.99 equally spaced), latency on a log scale.
    static func svg(_ latencies: HopLatencies, title: String) -> String {
        let width = 760.0, height = 420.0, left = 70.0, right = 170.0, top = 40.0, bottom = 50.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let hops = latencies.inOrder.filter { $0.histogram.totalCount > 0 }
        let highest = Double(max(1_000, hops.map { $0.histogram.max }.max() ?? 1_000))
        let lowest = Double(max(100, hops.map { max(1, $0.histogram.min) }.min() ?? 100))
        let logLow = log10(lowest), logHigh = log10(highest) + 0.1
        let maxNines = 4.0
        func x(_ percentile: Double) -> Double {
            let nines = min(maxNines, -log10(max(1e-9, 1 - percentile / 100)))
            return left + nines / maxNines * plotWidth
        }
        func y(_ nanoseconds: Double) -> Double {
            top + plotHeight - (log10(max(lowest, nanoseconds)) - logLow) / (logHigh - logLow) * plotHeight
        }
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#333333"]
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="20" font-size="13">\(escape(title))</text>

            """
        for (label, percentile) in [("0", 0.0), ("90", 90.0), ("99", 99.0), ("99.9", 99.9), ("99.99", 99.99)] {
            let position = x(percentile)
            svg += "<line x1=\"\(position)\" y1=\"\(top)\" x2=\"\(position)\" y2=\"\(top + plotHeight)\" "
                + "stroke=\"#ddd\"/><text x=\"\(position)\" y=\"\(top + plotHeight + 15)\" "
                + "text-anchor=\"middle\">\(label)%</text>\n"
        }
        var tick = pow(10, floor(logLow))
        while tick <= highest * 1.3 {
            if tick >= lowest {
                let position = y(tick)
                svg += "<line x1=\"\(left)\" y1=\"\(position)\" x2=\"\(left + plotWidth)\" y2=\"\(position)\" "
                    + "stroke=\"#ddd\"/><text x=\"\(left - 5)\" y=\"\(position + 4)\" "
                    + "text-anchor=\"end\">\(duration(UInt64(tick)))</text>\n"
            }
            tick *= 10
        }
        svg += "<text x=\"\(left + plotWidth / 2)\" y=\"\(height - 12)\" text-anchor=\"middle\">percentile</text>\n"
        for (index, hop) in hops.enumerated() {
            let color = colors[index % colors.count]
            var points: [String] = []
            var percentile = 0.0
            while percentile <= 99.99 {
                let value = Double(hop.histogram.valueAtPercentile(percentile))
                points.append(String(format: "%.1f,%.1f", x(percentile), y(value)))
                percentile = percentile < 90 ? percentile + 5 : 100 - (100 - percentile) * 0.7
            }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" "
                + "points=\"\(points.joined(separator: " "))\"><title>\(escape(hop.name))</title></polyline>\n"
            let legendY = top + 14 + Double(index) * 16
            svg += "<rect x=\"\(width - right + 15)\" y=\"\(legendY - 9)\" width=\"12\" height=\"3\" "
                + "fill=\"\(color)\"/>"
                + "<text x=\"\(width - right + 32)\" y=\"\(legendY - 4)\">\(escape(hop.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
