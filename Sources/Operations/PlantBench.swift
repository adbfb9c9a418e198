import Foundation
import Logging
import MarketData
import Synchronization
import TickerPlant
import ZeroMQ

/// `mktctl bench plant`: ticks per second through plantd (SUB in, filters, sequencing, last values, XPUB out) beside
/// a bare libzmq SUB -> PUB relay thread that forwards the same messages without looking at them, with the same
/// publisher and consumer, in the same run.
public struct PlantBench {
    public struct Run: Sendable, Codable {
        public var name: String
        public var sent: Int
        public var received: Int
        public var seconds: Double
        /// Which round of `mktctl bench plant --rounds` it was (1 for a single one).
        public var round = 1
        public var ticksPerSecond: Double { seconds > 0 ? Double(received) / seconds : 0 }
    }

    let ticks: Int
    /// Every tick encoded once, back to back: the publisher only sends.
    let payloads: [UInt8]
    let offsets: [Int]
    let topics: [[UInt8]]
    let topicOfTick: [Int]
    let symbols: Int
    let startNs: UInt64
    let progress: @Sendable (String) -> Void
    /// Ends that work as real ones do: the publisher builds and encodes every tick as feedd does, the consumer
    /// decodes every tick with protobuf-c as a C consumer does. Without it the publisher sends pre-encoded bytes and
    /// the consumer only counts, which leaves the relay under test as much of the two cores as it can take.
    public var workingEnds = false

    /// A market of `ticks` ticks over `symbols` symbols: trades and quotes (three quotes to two trades), with
    /// stream_seq 1, 2, 3 ... as a feedd sends them, and prices that never trip the filters.
    public init(ticks: Int, symbols: Int, progress: @escaping @Sendable (String) -> Void) {
        self.ticks = ticks
        self.progress = progress
        let encoder = TickEncoder()
        var payloads: [UInt8] = []
        payloads.reserveCapacity(ticks * 70)
        var offsets: [Int] = [0]
        var topics: [[UInt8]] = []
        var topicOfTick: [Int] = []
        topicOfTick.reserveCapacity(ticks)
        for symbol in 0..<symbols {
            topics.append(Array(Topic.make(symbol: "S\(symbol)", type: .trade).utf8))
            topics.append(Array(Topic.make(symbol: "S\(symbol)", type: .quote).utf8))
        }
        let now = WallClock.nowNanoseconds()
        for index in 1...ticks {
            let (tick, topic) = Self.tick(index, symbols: symbols, nowNs: now)
            topicOfTick.append(topic)
            payloads.append(contentsOf: encoder.encode(tick))
            offsets.append(payloads.count)
        }
        self.payloads = payloads
        self.offsets = offsets
        self.topics = topics
        self.topicOfTick = topicOfTick
        self.symbols = symbols
        self.startNs = now
    }

    /// Tick `index` of the market, and the place of its topic in `topics`.
    static func tick(_ index: Int, symbols: Int, nowNs now: UInt64) -> (Tick, Int) {
        let symbol = (index &* 7919) % symbols
        let price = Int64(100_000_000 + (index % 50) * 10_000)
        var tick: Tick
        let topic: Int
        if index % 5 < 2 {
            tick = Tick.trade(symbol: "S\(symbol)", venue: "XNAS", price: Price(fixedPoint: price), size: 100)
            topic = symbol * 2
        } else {
            tick = Tick(symbol: "S\(symbol)", type: .quote, venue: "XNAS")
            tick.bidPrice = Price(fixedPoint: price - 10_000)
            tick.askPrice = Price(fixedPoint: price + 10_000)
            tick.bidSize = 300
            tick.askSize = 200
            topic = symbol * 2 + 1
        }
        tick.streamSequence = UInt64(index)
        tick.venueSequence = UInt64(index)
        tick.exchangeTimestampNs = now + UInt64(index)
        tick.feedReceiveNs = now + UInt64(index)
        tick.feedTransmitNs = now + UInt64(index)
        return (tick, topic)
    }

    /// The baseline: one thread that receives each frame and sends it on, zero copy.
    public func runBareRelay() throws -> Run {
        let context = try ZMQContext()
        let publisher = try feedPublisher(context)
        let upstream = try publisher.lastEndpoint
        let relayThread = SocketThread(name: "bare-relay")
        let endpoints = try relayThread.startLoop { _ in try BareRelay(context: context, upstream: upstream) }
        guard let endpoint = endpoints["publish"] else { throw BenchError("the relay did not bind") }
        defer {
            relayThread.stop()
            _ = relayThread.join()
        }
        return try measure(name: "bare libzmq relay (SUB -> PUB, zero copy)", context: context, publisher: publisher,
            downstream: endpoint)
    }

    /// The floor of any hop: the publisher straight to the consumer, one libzmq PUB -> SUB.
    public func runBarePublishSubscribe() throws -> Run {
        let context = try ZMQContext()
        let publisher = try feedPublisher(context)
        return try measure(name: "bare libzmq PUB -> SUB", context: context, publisher: publisher,
            downstream: try publisher.lastEndpoint)
    }

    /// plantd's engine in this process, every filter on, no journal (or with one in `journal`), no aggregation (so
    /// that it sends exactly the messages the bare relay does).
    public func runPlant(journal: String? = nil) throws -> Run {
        let context = try ZMQContext()
        let publisher = try feedPublisher(context)
        var configuration = PlantConfiguration()
        configuration.feeds = [try publisher.lastEndpoint]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.snapshotEndpoint = "tcp://127.0.0.1:*"
        configuration.receiveHighWaterMark = 0
        configuration.sendHighWaterMark = 0
        configuration.replayTicks = 100_000
        configuration.journal.directory = journal
        // The NBBO and bars would add ticks of their own; the relays are compared on the same messages.
        configuration.aggregation.nbbo = false
        configuration.aggregation.barIntervals = []
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let engine = PlantEngine(configuration: configuration, context: context, logger: logger)
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        guard let downstream = engine.endpoints["publish"] else { throw BenchError("plantd did not bind") }
        return try measure(name: journal == nil ? "plantd, every filter on" : "plantd, every filter on, journal",
            context: context, publisher: publisher, downstream: downstream)
    }

    private func feedPublisher(_ context: ZMQContext) throws -> ZMQSocket {
        let publisher = try ZMQSocket(context, type: .publish)
        try publisher.setSendHighWaterMark(0)
        try publisher.bind("tcp://127.0.0.1:*")
        return publisher
    }

    /// Sends every tick through the relay under test to a consumer that counts them; the rate is what the consumer
    /// took from its first tick to its last.
    private func measure(name: String, context: ZMQContext, publisher: ZMQSocket, downstream: String) throws -> Run {
        let counts = ConsumerCounts()
        let consumerThread = SocketThread(name: "bench-consumer")
        let decoding = workingEnds
        _ = try consumerThread.startLoop { _ in
            try CountingConsumer(context: context, endpoint: downstream, counts: counts, decoding: decoding)
        }
        defer {
            consumerThread.stop()
            _ = consumerThread.join()
        }
        usleep(500_000)  // every subscription reaches its publisher before the first tick
        let encoder = TickEncoder()
        for index in 0..<ticks {
            _ = try topics[topicOfTick[index]].withUnsafeBytes { try publisher.send($0, more: true) }
            if workingEnds {
                _ = try publisher.send(encoder.encode(Self.tick(index + 1, symbols: symbols, nowNs: startNs).0))
            } else {
                _ = try payloads.withUnsafeBytes { all in
                    try publisher.send(UnsafeRawBufferPointer(rebasing: all[offsets[index]..<offsets[index + 1]]))
                }
            }
            if index % 200_000 == 0 && index > 0 {
                progress("\(name): sent \(index) of \(ticks), received \(counts.received.load(ordering: .relaxed))")
            }
        }
        // Until every tick is in, or the count stops moving for two seconds.
        var last = -1
        var lastChange = MonotonicClock.nowNanoseconds()
        while counts.received.load(ordering: .relaxed) < ticks {
            let now = counts.received.load(ordering: .relaxed)
            if now != last {
                last = now
                lastChange = MonotonicClock.nowNanoseconds()
                progress("\(name): received \(now) of \(ticks)")
            } else if MonotonicClock.nowNanoseconds() - lastChange > 2_000_000_000 {
                break
            }
            usleep(20_000)
        }
        let seconds = Double(counts.lastNs.load(ordering: .relaxed) &- counts.firstNs.load(ordering: .relaxed)) / 1e9
        publisher.close()
        return Run(name: name, sent: ticks, received: counts.received.load(ordering: .relaxed), seconds: seconds)
    }

    /// One row per kind of run, in the order they first ran: the median rate over its rounds (and the range when
    /// there were several), and that median over the first kind's (the bare relay's).
    public static func table(_ runs: [Run]) -> String {
        var names: [String] = []
        for run in runs where !names.contains(run.name) { names.append(run.name) }
        let rounds = names.map { name in runs.filter { $0.name == name } }
        let medians = rounds.map { median($0.map(\.ticksPerSecond)) }
        let baseline = medians.first ?? 0
        return TextTable.render(
            header: ["run", "rounds", "sent", "received", "ticks/s (median)", "range", "of the bare relay"],
            rows: zip(names, zip(rounds, medians)).map { name, roundsAndMedian in
                let (rounds, median) = roundsAndMedian
                let rates = rounds.map(\.ticksPerSecond)
                return [name, "\(rounds.count)", "\(rounds.map(\.sent).reduce(0, +))",
                    "\(rounds.map(\.received).reduce(0, +))", String(format: "%.0f k/s", median / 1e3),
                    String(format: "%.0f-%.0f k/s", (rates.min() ?? 0) / 1e3, (rates.max() ?? 0) / 1e3),
                    baseline > 0 ? String(format: "%.2f", median / baseline) : "-"]
            })
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
            : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

/// The baseline relay: receives each frame and sends it on without copying or looking at it.
final class BareRelay: SocketLoop {
    let input: ZMQSocket
    let output: ZMQSocket
    let boundEndpoints: [String: String]

    init(context: ZMQContext, upstream: String) throws {
        input = try ZMQSocket(context, type: .subscribe)
        try input.setReceiveHighWaterMark(0)
        try input.subscribe("")
        try input.connect(upstream)
        try input.setReceiveTimeout(milliseconds: 50)
        output = try ZMQSocket(context, type: .publish)
        try output.setSendHighWaterMark(0)
        try output.bind("tcp://127.0.0.1:*")
        boundEndpoints = ["publish": try output.lastEndpoint]
    }

    func run(_ thread: SocketThread) {
        let message = ZMQMessage()
        while !thread.isStopping {
            guard (try? input.receive(into: message)) == true else { continue }
            _ = try? output.send(message, more: message.hasMore)
        }
        input.close()
        output.close()
    }
}

/// What the bench's consumer counted, shared with the thread that waits for it.
private final class ConsumerCounts: Sendable {
    let received = Atomic<Int>(0)
    let firstNs = Atomic<UInt64>(0)
    let lastNs = Atomic<UInt64>(0)
}

/// Counts the ticks (two-frame messages whose topic begins with S) that reach it, with the time of the first and last.
private final class CountingConsumer: SocketLoop {
    let socket: ZMQSocket
    let counts: ConsumerCounts
    let decoding: Bool
    let boundEndpoints: [String: String] = [:]

    init(context: ZMQContext, endpoint: String, counts: ConsumerCounts, decoding: Bool) throws {
        self.counts = counts
        self.decoding = decoding
        socket = try ZMQSocket(context, type: .subscribe)
        try socket.setReceiveHighWaterMark(0)
        try socket.subscribe("S")  // the ticks, not the plant's #HB
        try socket.connect(endpoint)
        try socket.setReceiveTimeout(milliseconds: 50)
    }

    func run(_ thread: SocketThread) {
        let message = ZMQMessage()
        var count = 0
        while !thread.isStopping {
            guard (try? socket.receive(into: message)) == true, !message.hasMore else { continue }
            if decoding {
                let decoded = message.withUnsafeBytes { try? TickDecoder.decodeWithProtobufC($0) }
                guard decoded != nil else { continue }
            }
            count += 1
            let now = MonotonicClock.nowNanoseconds()
            if count == 1 { counts.firstNs.store(now, ordering: .relaxed) }
            counts.lastNs.store(now, ordering: .relaxed)
            counts.received.store(count, ordering: .relaxed)
        }
        socket.close()
    }
}
