import FeedHandler
import Foundation
import Histogram
import Logging
import MarketData
import Synchronization
import TickerPlant
import ZeroMQ

/// `mktctl bench chain`: the whole chain in this process as the daemons run it (MoldUDP64/ITCH over UDP on
/// 127.0.0.1 -> feedd's engine -> plantd's engine -> a raw consumer that checks every stream_seq), at stepped rates
/// until something is lost, with each hop's latency from the stamps the ticks carry. Beside it, in the same run and
/// with ticks of the same shape: a bare libzmq PUB -> SUB and PUB -> relay thread -> SUB, for their rate (unpaced)
/// and their latency at the rate the chain's latency is measured at.
public struct ChainBench {
    public struct Settings: Sendable, Codable {
        public var symbols = 500
        /// ITCH messages per second of the first step; each next step is `stepFactor` times faster.
        public var firstRate = 200_000
        public var stepFactor = 1.25
        public var maximumSteps = 14
        public var stepSeconds = 3.0
        /// The rate out of plantd at which latency is compared with the bare hop (the 100 000 ticks/s).
        public var latencyTicksPerSecond = 100_000
        /// Ticks each baseline's unpaced run sends.
        public var baselineTicks = 2_000_000
        /// Rounds of the latency comparison, each a bare hop and then the chain at `latencyTicksPerSecond`; the report
        /// takes the round whose ratio is the median. A p99 moves with the machine's load from one run to the next
        /// (a bare hop's p99 went from 134 to 439 us within one session here), so one pair would say as much of the
        /// load as of the chain.
        public var latencyRounds = 3
        /// How much more the ticks sent in a step's last half second may lag than those sent in its first (exchange
        /// stamp to consumer, on average) for the step to count as keeping up. A chain past what it carries queues
        /// the surplus (8 MB of UDP receive buffer first, then ZeroMQ's pipes) and delivers every tick of a 3 s step
        /// late but whole; its lag grows all through the step, and a longer run would lose.
        public var lagGrowthLimitMs = 10.0
        public init() {}
    }

    /// One run of the chain at one offered rate.
    public struct Step: Sendable, Codable {
        public var offeredMessagesPerSecond: Int
        public var seconds: Double
        public var itchSent: UInt64
        public var itchReceived: UInt64
        public var kernelDrops: UInt64
        public var feedTicksOut: UInt64
        public var plantIn: UInt64
        public var plantMissing: UInt64
        public var plantPublished: UInt64
        public var consumerReceived: UInt64
        /// stream_seq numbers the consumer never saw, between the first it saw and plantd's last.
        public var consumerMissing: UInt64
        public var ticksPerSecond: Double
        /// Trades plantd's price filter held for confirmation (a jump): their time in plantd is the hold's.
        public var heldByPriceFilter: UInt64
        /// What was lost, where (empty: nothing).
        public var losses: [String]
        public var hops: [HopFigures]
        /// The mean exchange -> consumer latency of the ticks sent in the step's first and last half second.
        public var lagAtStartNs: UInt64
        public var lagAtEndNs: UInt64
        /// The lag grew by more than `lagGrowthLimitMs` through the step: the chain fell behind what was offered.
        public var fellBehind: Bool
        /// What each part of the chain used of the cores from the first packet sent until the consumer had the last
        /// tick (`measuredNs` of wall time), in the order of the chain.
        public var threadUse: [ThreadUse]
        public var measuredNs: UInt64
        public var lossFree: Bool { losses.isEmpty }
        /// Nothing lost and nothing left behind: the chain carries this rate for as long as it is offered.
        public var carried: Bool { lossFree && !fellBehind }
        /// The hop from the exchange stamp to the consumer.
        public var endToEnd: HopFigures? { hops.first { $0.hop == "end to end" } }
    }

    /// A part of the chain's time on the cores during a step: its threads' time running and waiting for a core.
    public struct ThreadUse: Sendable, Codable {
        public var part: String
        public var threads: Int
        public var runNs: UInt64
        public var waitNs: UInt64
        public var runs: UInt64

        /// The part a thread belongs to, by its kernel name (the chain's threads name themselves); the thread that
        /// sends the market is the exchange. One that was there before the chain started (another ZeroMQ context's
        /// I/O thread, in a process that runs more than the bench) is none of its parts.
        static func part(of thread: ThreadTimes.Thread, id: Int, senderID: Int, olderThreads: Set<Int>) -> String {
            if id == senderID { return "sender (the exchange)" }
            if olderThreads.contains(id) { return "the rest" }
            if thread.name.hasPrefix("feedd") { return "feedd" }
            if thread.name.hasPrefix("plantd") { return "plantd" }
            if thread.name.hasPrefix("bench-chain-con") { return "consumer" }
            if thread.name.hasPrefix("ZMQbg/IO") { return "libzmq I/O threads" }
            return "the rest"
        }

        static let order = ["sender (the exchange)", "feedd", "plantd", "consumer", "libzmq I/O threads", "the rest"]

        /// Each thread's use summed by part, in the chain's order; parts that used nothing are left out.
        static func byPart(_ use: [Int: ThreadTimes.Thread], senderID: Int, olderThreads: Set<Int>) -> [ThreadUse] {
            var parts: [String: ThreadUse] = [:]
            for (id, thread) in use {
                let part = Self.part(of: thread, id: id, senderID: senderID, olderThreads: olderThreads)
                parts[part, default: ThreadUse(part: part, threads: 0, runNs: 0, waitNs: 0, runs: 0)].threads += 1
                parts[part]!.runNs += thread.runNs
                parts[part]!.waitNs += thread.waitNs
                parts[part]!.runs += thread.runs
            }
            return order.compactMap { parts[$0] }.filter { $0.runNs > 0 }
        }
    }

    /// A bare libzmq topology with the chain's message shape.
    public struct Baseline: Sendable, Codable {
        public var name: String
        public var ticksPerSecond: Double
        public var latency: HopFigures?
    }

    /// A bare hop's latency and then the chain's, back to back at the same rate out.
    public struct LatencyRound: Sendable, Codable {
        public var bareHop: HopFigures
        public var chain: Step
        /// The chain's p99 from the exchange stamp to the consumer over the bare hop's p99.
        public var ratio: Double? {
            guard let chain = chain.endToEnd?.p99Ns, bareHop.p99Ns > 0 else {
                return nil
            }
            return Double(chain) / Double(bareHop.p99Ns)
        }
    }

    public struct Report: Sendable, Codable {
        public var date: String
        public var machine: String
        public var cpus: Int
        public var settings: Settings
        public var baselines: [Baseline]
        public var steps: [Step]
        public var latencyRounds: [LatencyRound]
        /// The share of the machine's CPU time that the hypervisor gave to other guests while this ran (steal, from
        /// /proc/stat), in percent; nil where the kernel does not count it. On a shared virtual machine it says how
        /// much of a slow run was the neighbours'.
        public var stealPercent: Double?

        /// The round whose ratio is the median of all rounds' (the lower middle one of an even count).
        public var medianLatencyRound: LatencyRound? {
            let measured = latencyRounds.filter { $0.ratio != nil }.sorted { $0.ratio! < $1.ratio! }
            return measured.isEmpty ? nil : measured[(measured.count - 1) / 2]
        }
        /// The median round's chain: its hops are the ones reported.
        public var latencyStep: Step? { medianLatencyRound?.chain }

        /// The fastest step carried whole and in time (`Step.carried`).
        public var highestCarried: Step? { steps.filter(\.carried).max { $0.ticksPerSecond < $1.ticksPerSecond } }
        public var relay: Baseline? { baselines.first { $0.name.contains("relay") } }
        /// The chain's highest rate carried without loss and without falling behind, over the bare relay's (goal: at
        /// least 0.7). The relay's rate is what it passes on unpaced, which it can keep up for ever.
        public var throughputRatio: Double? {
            guard let chain = highestCarried?.ticksPerSecond, let relay = relay?.ticksPerSecond, relay > 0 else {
                return nil
            }
            return chain / relay
        }
        /// The chain's p99 from the exchange stamp to the consumer over a bare hop's p99 measured just before it at
        /// the same rate, the median of the rounds (goal: at most 3).
        public var latencyRatio: Double? { medianLatencyRound?.ratio }
    }

    let settings: Settings
    let feed: FeedBench
    let progress: @Sendable (String) -> Void

    public init(settings: Settings, progress: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.progress = progress
        var feedSettings = FeedBench.Settings()
        feedSettings.symbols = settings.symbols
        feed = FeedBench(settings: feedSettings, progress: progress)
    }

    /// Baselines, the stepped chain until a step loses, then the chain at the latency rate.
    public func run() throws -> Report {
        let timesAtStart = Self.cpuTimes()
        var baselines: [Baseline] = []
        progress("encoding \(settings.baselineTicks) ticks for the baselines")
        let plantBench = PlantBench(ticks: settings.baselineTicks, symbols: settings.symbols, progress: progress)
        for relay in [false, true] {
            let rate = relay ? try plantBench.runBareRelay() : try plantBench.runBarePublishSubscribe()
            // The bare hop's latency is the median latency round's (below), measured beside the chain's.
            let latency = relay ? try baselineLatency(relay: true, ticksPerSecond: settings.latencyTicksPerSecond) : nil
            baselines.append(Baseline(name: rate.name, ticksPerSecond: rate.ticksPerSecond, latency: latency))
        }
        var steps: [Step] = []
        var rate = Double(settings.firstRate)
        for _ in 0..<settings.maximumSteps {
            let step = try runChain(rate: Int(rate))
            steps.append(step)
            if !step.carried { break }
            rate *= settings.stepFactor
        }
        // The ITCH rate that makes the latency rate out of plantd: the market's ticks per message, from the steps.
        var latencyRounds: [LatencyRound] = []
        if let first = steps.first, first.itchSent > 0, first.plantPublished > 0 {
            let ticksPerMessage = Double(first.plantPublished) / Double(first.itchSent)
            for round in 1...max(1, settings.latencyRounds) {
                progress("latency round \(round) of \(settings.latencyRounds)")
                let bareHop = try baselineLatency(relay: false, ticksPerSecond: settings.latencyTicksPerSecond)
                let chain = try runChain(rate: Int(Double(settings.latencyTicksPerSecond) / ticksPerMessage))
                latencyRounds.append(LatencyRound(bareHop: bareHop, chain: chain))
            }
        }
        var stealPercent: Double?
        if let start = timesAtStart, let end = Self.cpuTimes(), end.total > start.total {
            stealPercent = Double(end.steal - start.steal) / Double(end.total - start.total) * 100
        }
        let formatter = ISO8601DateFormatter()
        var report = Report(date: formatter.string(from: Date()), machine: Self.machine(), cpus: Self.allowedCPUs(),
            settings: settings, baselines: baselines, steps: steps, latencyRounds: latencyRounds,
            stealPercent: stealPercent)
        if let bare = report.baselines.firstIndex(where: { !$0.name.contains("relay") }) {
            report.baselines[bare].latency = report.medianLatencyRound?.bareHop
        }
        return report
    }

    // MARK: The chain

    /// sim's packets -> feedd -> plantd -> consumer at `rate` ITCH messages a second for `stepSeconds`.
    public func runChain(rate: Int) throws -> Step {
        let olderThreads = Set(ThreadTimes.now().threads.keys)
        // A ZeroMQ context (an I/O thread) each, as the daemons and the consumer have in their own processes.
        let feedContext = try ZMQContext()
        let plantContext = try ZMQContext()
        let context = try ZMQContext()
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0)
        source.gapGiveUp = .seconds(1)
        var feedConfiguration = FeedConfiguration()
        feedConfiguration.name = "bench"
        feedConfiguration.publishEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.controlEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.replayEndpoint = "tcp://127.0.0.1:*"
        feedConfiguration.udpReceiveBufferBytes = 8 << 20
        // UTC, so that the sender's stamp (nanoseconds since midnight UTC) reads back as the time it was sent.
        feedConfiguration.venues = [.init(venue: "XNAS", source: .itch(source), timezone: "UTC")]
        let feedEngine = FeedEngine(configuration: feedConfiguration, context: feedContext, logger: logger)
        try feedEngine.start()
        defer {
            feedEngine.stop()
            _ = feedEngine.thread.join()
        }
        guard let feedPublish = feedEngine.endpoints["publish"], let feedControl = feedEngine.endpoints["control"],
            let udp = feedEngine.endpoints["udp:XNAS"], let port = ConfigReader.parseHostPort(udp)?.port
        else { throw BenchError("feedd's engine did not report its endpoints") }

        var plantConfiguration = PlantConfiguration()
        plantConfiguration.feeds = [feedPublish]
        plantConfiguration.publishEndpoint = "tcp://127.0.0.1:*"
        plantConfiguration.controlEndpoint = "tcp://127.0.0.1:*"
        plantConfiguration.snapshotEndpoint = "tcp://127.0.0.1:*"
        // One tick out for each tick in, as through the relays: no NBBO or bars of plantd's own.
        plantConfiguration.aggregation.nbbo = false
        plantConfiguration.aggregation.barIntervals = []
        let plantEngine = PlantEngine(configuration: plantConfiguration, context: plantContext, logger: logger)
        try plantEngine.start()
        defer {
            plantEngine.stop()
            _ = plantEngine.thread.join()
        }
        guard let plantPublish = plantEngine.endpoints["publish"], let plantControl = plantEngine.endpoints["control"]
        else { throw BenchError("plantd's engine did not report its endpoints") }

        let consumer = ChainConsumer()
        let consumerThread = SocketThread(name: "bench-chain-consumer")
        _ = try consumerThread.startLoop { _ in try ChainConsumerLoop(context: context, endpoint: plantPublish,
            consumer: consumer) }
        defer {
            consumerThread.stop()
            _ = consumerThread.join()
        }
        usleep(500_000)  // every subscription reaches its publisher before the first packet

        let feedStatus = try StatusAsker(context: context, endpoint: feedControl, whose: "feedd's engine")
        let plantStatus = try StatusAsker(context: context, endpoint: plantControl, whose: "plantd's engine")
        let messages = Int(Double(rate) * settings.stepSeconds)
        let name = "chain at \(FeedBench.formatRate(Double(rate))) ITCH"
        let timesBefore = ThreadTimes.now()
        let measureStartNs = MonotonicClock.nowNanoseconds()
        let sent = try feed.send(to: port, rate: rate, messages: messages, name: name, stampingExchangeTime: true) {
            consumer.received.load(ordering: .relaxed)
        }
        // Until plantd's last stream_seq reached the consumer, or nothing moves for two seconds.
        var lastCount: UInt64 = 0
        var lastChangeNs = MonotonicClock.nowNanoseconds()
        while true {
            let count = consumer.received.load(ordering: .relaxed)
            let published = (try? plantStatus.ask())?.counters["stream_seq"] ?? 0
            let feedIn = (try? feedStatus.ask())?.counters["XNAS.messages"] ?? 0
            if count != lastCount {
                lastCount = count
                lastChangeNs = MonotonicClock.nowNanoseconds()
            }
            progress("\(name): sent \(sent), feedd took \(feedIn), plantd published \(published), consumer \(count)")
            if feedIn >= sent && published > 0 && consumer.lastStreamSequence.load(ordering: .relaxed) >= published {
                break
            }
            if MonotonicClock.nowNanoseconds() - lastChangeNs > 2_000_000_000 { break }
            usleep(50_000)
        }
        let threadUse = ThreadUse.byPart(ThreadTimes.now().since(timesBefore), senderID: ThreadTimes.currentThreadID,
            olderThreads: olderThreads)
        let measuredNs = MonotonicClock.nowNanoseconds() - measureStartNs
        // What plantd sends later of its own (a held trade the price filter lets go) reaches the consumer too.
        usleep(300_000)
        let feedFinal = try feedStatus.ask()
        let plantFinal = try plantStatus.ask()
        let settled = MonotonicClock.nowNanoseconds() + 2_000_000_000
        while consumer.lastStreamSequence.load(ordering: .relaxed) < plantFinal.counters["stream_seq"] ?? 0
            && MonotonicClock.nowNanoseconds() < settled
        {
            usleep(10_000)
        }
        consumerThread.stop()
        _ = consumerThread.join()
        // plantd may publish after its counters were read (a held trade let go): the consumer's last is then newer.
        let published = max(plantFinal.counters["stream_seq"] ?? 0, consumer.lastStreamSequence.load(ordering: .relaxed))
        let received = consumer.received.load(ordering: .relaxed)
        let first = consumer.firstStreamSequence.load(ordering: .relaxed)
        let expected = first == 0 ? published : published - first + 1
        let firstNs = consumer.firstNs.load(ordering: .relaxed)
        let seconds = Double(consumer.lastNs.load(ordering: .relaxed) &- firstNs) / 1e9
        let itchReceived = feedFinal.counters["XNAS.messages"] ?? 0
        let plantMissing = plantFinal.counters["feed1.missing"] ?? 0
        var losses: [String] = []
        if itchReceived < sent { losses.append("feedd took \(itchReceived) of \(sent) ITCH messages") }
        if let lost = feedFinal.counters["XNAS.messages_lost"], lost > 0 {
            losses.append("feedd gave up \(lost) ITCH messages")
        }
        if plantMissing > 0 { losses.append("plantd missed \(plantMissing) of feedd's ticks") }
        if plantFinal.messagesIn != feedFinal.messagesOut {
            losses.append("plantd took \(plantFinal.messagesIn) of feedd's \(feedFinal.messagesOut) ticks")
        }
        if first != 1 { losses.append("the consumer's first stream_seq was \(first)") }
        if received != expected { losses.append("the consumer got \(received) of plantd's \(expected)") }
        let unsequenced = consumer.unsequenced.load(ordering: .relaxed)
        if unsequenced > 0 {
            losses.append("the consumer got \(unsequenced) messages without a new stream_seq")
        }
        let hops = consumer.latencies.withLock { latencies in
            latencies.inOrder.map { HopFigures(hop: $0.name, histogram: $0.histogram, clockSkewed: $0.negative) }
        }
        let lag = consumer.lag.withLock { $0 }
        let lagAtStart = lag.meanLagNs(inFirst: true) ?? 0
        let lagAtEnd = lag.meanLagNs(inFirst: false) ?? 0
        return Step(offeredMessagesPerSecond: rate, seconds: seconds, itchSent: sent, itchReceived: itchReceived,
            kernelDrops: feedFinal.counters["XNAS.kernel_drops"] ?? 0, feedTicksOut: feedFinal.messagesOut,
            plantIn: plantFinal.messagesIn, plantMissing: plantMissing, plantPublished: published,
            consumerReceived: received, consumerMissing: expected > received ? expected - received : 0,
            ticksPerSecond: seconds > 0 ? Double(received) / seconds : 0,
            heldByPriceFilter: plantFinal.counters["filter.price.held"] ?? 0, losses: losses, hops: hops,
            lagAtStartNs: lagAtStart, lagAtEndNs: lagAtEnd,
            fellBehind: Double(lagAtEnd) > Double(lagAtStart) + settings.lagGrowthLimitMs * 1e6,
            threadUse: threadUse, measuredNs: measuredNs)
    }

    // MARK: The baselines' latency

    /// A bare PUB -> SUB (or PUB -> relay thread -> SUB) at `ticksPerSecond`, each tick stamped with its send time:
    /// from that stamp to the consumer.
    func baselineLatency(relay: Bool, ticksPerSecond: Int) throws -> HopFigures {
        let context = try ZMQContext()
        let publisher = try ZMQSocket(context, type: .publish)
        defer { publisher.close() }
        try publisher.setSendHighWaterMark(0)
        try publisher.bind("tcp://127.0.0.1:*")
        var downstream = try publisher.lastEndpoint
        let relayThread = SocketThread(name: "bench-relay")
        if relay {
            let upstream = downstream
            let endpoints = try relayThread.startLoop { _ in try BareRelay(context: context, upstream: upstream) }
            guard let endpoint = endpoints["publish"] else { throw BenchError("the relay did not bind") }
            downstream = endpoint
        }
        defer {
            if relay {
                relayThread.stop()
                _ = relayThread.join()
            }
        }
        let consumer = ChainConsumer()
        let consumerThread = SocketThread(name: "bench-baseline-consumer")
        let hop = relay ? "PUB -> relay -> SUB" : "PUB -> SUB"
        let endpoint = downstream
        _ = try consumerThread.startLoop { _ in
            try ChainConsumerLoop(context: context, endpoint: endpoint, consumer: consumer, baselineHop: hop)
        }
        defer {
            consumerThread.stop()
            _ = consumerThread.join()
        }
        usleep(500_000)
        let encoder = TickEncoder()
        let count = Int(Double(ticksPerSecond) * settings.stepSeconds)
        let start = MonotonicClock.nowNanoseconds()
        let now = WallClock.nowNanoseconds()
        for index in 1...count {
            while Double(MonotonicClock.nowNanoseconds() - start) / 1e9 * Double(ticksPerSecond) < Double(index - 1) {
                usleep(20)
            }
            var (tick, _) = PlantBench.tick(index, symbols: settings.symbols, nowNs: now)
            tick.plantTransmitNs = WallClock.nowNanoseconds()
            _ = try publisher.send(Topic.make(symbol: tick.symbol, type: tick.type), more: true)
            _ = try publisher.send(encoder.encode(tick))
            if index % 50_000 == 0 { progress("\(hop) at \(ticksPerSecond) ticks/s: sent \(index) of \(count)") }
        }
        let deadline = MonotonicClock.nowNanoseconds() + 2_000_000_000
        while consumer.received.load(ordering: .relaxed) < count && MonotonicClock.nowNanoseconds() < deadline {
            usleep(10_000)
        }
        consumerThread.stop()
        _ = consumerThread.join()
        return consumer.latencies.withLock { latencies in
            latencies.inOrder.first { $0.name == hop }
                .map { HopFigures(hop: hop, histogram: $0.histogram, clockSkewed: $0.negative) }
                ?? HopFigures(hop: hop, count: 0, p50Ns: 0, p90Ns: 0, p99Ns: 0, p999Ns: 0, maxNs: 0, clockSkewed: 0)
        }
    }

    // MARK: The machine

    /// The CPU model and memory, from /proc.
    static func machine() -> String {
        let cpuInfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuInfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "" } ?? "?"
        let memory = ProcessInfo.processInfo.physicalMemory
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(model), "
            + String(format: "%.0f GiB", Double(memory) / Double(1 << 30))
    }

    /// The machine's CPU time so far, in clock ticks: stolen by the hypervisor, and in all (the first line of
    /// /proc/stat: user nice system idle iowait irq softirq steal ...); nil without a steal column.
    static func cpuTimes() -> (steal: UInt64, total: UInt64)? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 8 else { return nil }
        // guest and guest_nice (fields 9 and 10) are counted in user and nice already.
        return (fields[7], fields.prefix(8).reduce(0, +))
    }

    /// The CPUs this process may run on (`taskset` narrows them), from /proc/self/status.
    public static func allowedCPUs() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            return ProcessInfo.processInfo.activeProcessorCount
        }
        var count = 0
        for range in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
            .split(separator: ",")
        {
            let ends = range.split(separator: "-").compactMap { Int($0) }
            count += ends.count == 2 ? ends[1] - ends[0] + 1 : 1
        }
        return max(1, count)
    }
}

/// What the consumer thread found, read by the bench once the thread has stopped (the histograms) or while it runs
/// (the atomics).
final class ChainConsumer: Sendable {
    let received = Atomic<UInt64>(0)
    /// Messages without a stream_seq, or with one seen already.
    let unsequenced = Atomic<UInt64>(0)
    let missing = Atomic<UInt64>(0)
    let firstStreamSequence = Atomic<UInt64>(0)
    let lastStreamSequence = Atomic<UInt64>(0)
    let firstNs = Atomic<UInt64>(0)
    let lastNs = Atomic<UInt64>(0)
    let latencies = Mutex(HopLatencies(here: "consumer"))
    let lag = Mutex(LagBySendTime())
}

/// How late the ticks of a step reached the consumer, by when they were sent: the mean exchange -> consumer latency
/// of the ticks sent in each half second (by their exchange stamp). A chain that keeps up lags as much at the end of a
/// step as at its start; one offered more than it carries lags more with every half second, its surplus queued.
public struct LagBySendTime: Sendable {
    public static let sliceNs: UInt64 = 500_000_000
    /// Slices kept: 60 s of sending (a step is a few seconds); later ticks count in the last.
    static let slices = 120
    var firstSentNs: UInt64 = 0
    var lagSums = [UInt64](repeating: 0, count: slices)
    var counts = [UInt64](repeating: 0, count: slices)

    public init() {}

    /// A tick sent (exchange stamp) at `sentNs` reached the consumer at `receivedNs` (both wall clock).
    public mutating func record(sentNs: UInt64, receivedNs: UInt64) {
        guard sentNs != 0, receivedNs >= sentNs else { return }
        if firstSentNs == 0 { firstSentNs = sentNs }
        // Ticks arrive in about the order they were sent: one sent before the first seen belongs to the first slice.
        let slice = sentNs < firstSentNs ? 0 : min(Int((sentNs - firstSentNs) / Self.sliceNs), Self.slices - 1)
        lagSums[slice] &+= receivedNs - sentNs
        counts[slice] += 1
    }

    /// The mean lag of the ticks sent in the first slice, or in the last slice anything was sent in.
    public func meanLagNs(inFirst first: Bool) -> UInt64? {
        let slice = first ? counts.firstIndex { $0 > 0 } : counts.lastIndex { $0 > 0 }
        return slice.map { lagSums[$0] / counts[$0] }
    }
}

/// A raw consumer as a risk system runs one: every message of plantd's stream, each tick read, its stream_seq checked
/// to follow on, and its hops recorded. With `baselineHop` it times each tick from its `plant_tx` stamp (the bare
/// publisher's send time) under that name instead.
private final class ChainConsumerLoop: SocketLoop {
    let socket: ZMQSocket
    let consumer: ChainConsumer
    let baselineHop: String?
    let boundEndpoints: [String: String] = [:]

    init(context: ZMQContext, endpoint: String, consumer: ChainConsumer, baselineHop: String? = nil) throws {
        self.consumer = consumer
        self.baselineHop = baselineHop
        socket = try ZMQSocket(context, type: .subscribe)
        try socket.setReceiveHighWaterMark(0)
        try socket.subscribe("")
        try socket.connect(endpoint)
        try socket.setReceiveTimeout(milliseconds: 50)
    }

    func run(_ thread: SocketThread) {
        let topic = ZMQMessage()
        let payload = ZMQMessage()
        var tick = Tick(symbol: "", type: .trade, venue: "")
        var latencies = HopLatencies(here: "consumer")
        var lag = LagBySendTime()
        var baseline = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var received: UInt64 = 0
        var missing: UInt64 = 0
        var last: UInt64 = 0
        while !thread.isStopping {
            guard (try? socket.receive(into: topic)) == true, topic.hasMore,
                (try? socket.receive(into: payload)) == true
            else { continue }
            let now = WallClock.nowNanoseconds()
            guard payload.withUnsafeBytes({ (try? TickWire.decode($0, into: &tick)) != nil }) else { continue }
            if baselineHop != nil {
                if now >= tick.plantTransmitNs { _ = baseline.record(now - tick.plantTransmitNs) }
            } else {
                guard tick.symbol != Topic.heartbeat else { continue }
                latencies.record(tick, receivedNs: now)
                if tick.measuresLatency { lag.record(sentNs: tick.exchangeTimestampNs, receivedNs: now) }
                let sequence = tick.streamSequence
                if sequence == 0 || (last != 0 && sequence <= last) {
                    consumer.unsequenced.wrappingAdd(1, ordering: .relaxed)
                    continue
                }
                if last == 0 {
                    consumer.firstStreamSequence.store(sequence, ordering: .relaxed)
                } else if sequence > last + 1 {
                    missing += sequence - last - 1
                }
                last = max(last, sequence)
                consumer.lastStreamSequence.store(last, ordering: .relaxed)
                consumer.missing.store(missing, ordering: .relaxed)
            }
            received += 1
            let monotonic = MonotonicClock.nowNanoseconds()
            if received == 1 { consumer.firstNs.store(monotonic, ordering: .relaxed) }
            consumer.lastNs.store(monotonic, ordering: .relaxed)
            consumer.received.store(received, ordering: .relaxed)
        }
        socket.close()
        if let baselineHop {
            latencies.recordExternal(name: baselineHop, histogram: baseline)
        }
        consumer.latencies.withLock { $0 = latencies }
        consumer.lag.withLock { $0 = lag }
    }
}
