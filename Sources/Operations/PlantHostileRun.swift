import DaemonMetrics
import Foundation
import Glibc
import MarketData
import Synchronization
import ZeroMQ

/// `mktctl bench plant-hostile`: the release plantd as its own process, fed a steady market by a stand-in feedd,
/// read by one well-behaved raw consumer, and then beside hostile raw peers (DESIGN section 12: what a peer can make
/// plantd spend is bounded). It measures what plantd's memory and the live stream's latency become while they stay.
public struct PlantHostileRun {
    /// The kinds of hostile peer, each a group of its own.
    public enum Behaviour: String, CaseIterable, Codable, Sendable {
        /// A DEALER that asks a snapshot of everything ten times a second and never reads.
        case snapshotHoarder = "snapshot-hoarder"
        /// A DEALER that asks a stream replay from stream_seq 1 ten times a second and never reads (journal reads).
        case streamReplayer = "stream-replayer"
        /// A DEALER that asks every symbol's replay from symbol_seq 1 ten times a second and never reads.
        case symbolReplaySprayer = "symbol-replay-sprayer"
        /// A SUB to everything that never reads.
        case stalledSubscriber = "stalled-subscriber"
        /// A SUB that subscribes to 500 prefixes and unsubscribes them again, 50 times a second.
        case subscriptionChurner = "subscription-churner"
    }

    public struct Result: Codable, Sendable {
        public var peers: [String: Int]
        public var ticksPerSecond: Int
        public var symbols: Int
        public var sendHighWaterMark: Int
        public var maxAnswerTicks: Int
        public var answerTicksPerSecond: Int
        public var quiet: LatencySummary
        public var beside: LatencySummary
        /// The peers' first seconds (their first answers go out whole before their queues fill), and after.
        public var arrival: LatencySummary
        public var settled: LatencySummary
        public var besideP99UsBySecond: [Double]
        public var plantdAlive: Bool
        /// Ticks the consumer got, and stream_seq numbers it missed or saw twice (none, in a good run).
        public var consumerTicks: Int
        public var consumerMissed: Int
        public var consumerRepeated: Int
        public var rssBeforeBytes: Int
        public var rssPeakBytes: Int
        public var rssMBBySecond: [Double]
        /// What the limits let the hostile peers hold at most (`bound`), and how it adds up.
        public var boundBytes: Int
        public var bound: String
        public var plantdCounters: [String: UInt64]

        public var p99Ratio: Double { quiet.p99Us > 0 ? beside.p99Us / quiet.p99Us : 0 }
        public var settledP99Ratio: Double { quiet.p99Us > 0 ? settled.p99Us / quiet.p99Us : 0 }
    }

    public var peersPerBehaviour = 40
    public var behaviours = Behaviour.allCases
    public var ticksPerSecond = 20_000
    public var symbols = 500
    public var seconds = 15.0
    /// plantd's `[plant] send_hwm` (its default unless given) and `max_answer_ticks`.
    public var sendHighWaterMark = 100_000
    public var maxAnswerTicks = 100_000
    public var answerTicksPerSecond = 100_000
    /// Seconds of the hostile window counted as the peers' arrival.
    public var arrivalSeconds = 2

    public init() {}

    /// What one message a plantd socket holds for a peer costs, at most, in libzmq's queue: its frames' message
    /// structures (64 bytes each: topic and payload) and the payload's heap copy with its header.
    static let bytesPerQueuedTick = 2 * 64 + 224

    public func run(plantd binary: String, progress: (String) -> Void) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-plant-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let context = try ZMQContext()
        let names = (0..<symbols).map { "S\($0)" }
        let feed = try StandInFeed(context: context, symbols: names)
        let ports = try (0..<2).map { _ in try EdgeProcess.freePort() }
        let publishEndpoint = "tcp://127.0.0.1:\(ports[0])", snapshotEndpoint = "tcp://127.0.0.1:\(ports[1])"
        let control = "ipc://\(directory.path)/control"
        let file = directory.appendingPathComponent("plantd.toml")
        try """
            [plant]
            feeds = ["\(feed.endpoint)"]
            publish = "\(publishEndpoint)"
            snapshot = "\(snapshotEndpoint)"
            control = "\(control)"
            metrics = ""
            send_hwm = \(sendHighWaterMark)
            max_answer_ticks = \(maxAnswerTicks)
            answer_ticks_per_second = \(answerTicksPerSecond)
            heartbeat_interval = "500ms"

            [journal]
            directory = "\(directory.appendingPathComponent("journal").path)"
            """.write(to: file, atomically: true, encoding: .utf8)
        let plant = try ServerProcess(executable: binary, arguments: ["--config", file.path],
            listeningWhen: "plantd publishing", log: directory.appendingPathComponent("plantd.log"))
        defer { plant.stop() }

        let consumer = try LiveConsumer(context: context, endpoint: publishEndpoint)
        defer { consumer.stop() }
        var rssPeak = 0
        var rssBySecond: [Double] = []
        var besideBySecond: [Double] = []
        let publisher = RatePublisher(feed: feed, perSecond: ticksPerSecond)
        /// Publishes for `seconds`, calling `everySecond` once a second.
        func publish(_ label: String, for seconds: Double, everySecond: () -> Void = {}) {
            let end = MonotonicClock.nowNanoseconds() + UInt64(seconds * 1e9)
            var secondEnd = MonotonicClock.nowNanoseconds() + 1_000_000_000
            publisher.publish { sent in
                let now = MonotonicClock.nowNanoseconds()
                if now >= secondEnd {
                    secondEnd += 1_000_000_000
                    rssPeak = max(rssPeak, plant.residentBytes())
                    everySecond()
                    progress("plant-hostile: \(label), \(sent) ticks, plantd \(plant.residentBytes() / 1_000_000) MB")
                }
                return now >= end || !plant.process.isRunning
            }
        }
        // The consumer's subscription reaches plantd, and a first round of every symbol sets its last values.
        usleep(500_000)
        publish("warming up", for: 3)
        _ = consumer.takeLatencies()
        publish("quiet", for: seconds)
        usleep(200_000)
        let quiet = LatencySummary(consumer.takeLatencies())
        let rssBefore = plant.residentBytes()
        rssPeak = rssBefore

        let peers = HostilePlantPeers(snapshot: snapshotEndpoint, publish: publishEndpoint, symbols: names,
            counts: Dictionary(uniqueKeysWithValues: behaviours.map { ($0, peersPerBehaviour) }))
        defer { peers.stop() }
        var arrivalSamples: [UInt32] = []
        var settledSamples: [UInt32] = []
        publish("beside \(peersPerBehaviour * behaviours.count) hostile peers", for: seconds) {
            let samples = consumer.takeLatencies()
            besideBySecond.append(LatencySummary(samples).p99Us)
            rssBySecond.append(Double(plant.residentBytes()) / 1e6)
            if besideBySecond.count <= arrivalSeconds { arrivalSamples += samples } else { settledSamples += samples }
        }
        usleep(300_000)
        settledSamples += consumer.takeLatencies()
        let alive = plant.process.isRunning
        let counters = ControlClient.status(context: context, endpoint: control, timeoutMilliseconds: 3_000)?.counters
            ?? [:]
        peers.stop()
        let (ticks, missed, repeated) = consumer.sequenceFigures()

        // What the limits let them hold: each stalled subscriber a full send queue, each DEALER two answers queued
        // in libzmq (the snapshot ROUTER's high-water mark) and one read from the journal at a time (32 in all).
        let count = { (behaviour: Behaviour) in behaviours.contains(behaviour) ? peersPerBehaviour : 0 }
        let subscriberBytes = count(.stalledSubscriber) * sendHighWaterMark * Self.bytesPerQueuedTick
        let dealers = count(.snapshotHoarder) + count(.streamReplayer) + count(.symbolReplaySprayer)
        let answerBytes = dealers * 2 * (maxAnswerTicks + 1) * Self.bytesPerQueuedTick
        let journalBytes = 32 * (2 << 20) + (64 << 20)
        let bound = "\(count(.stalledSubscriber)) stalled x send_hwm \(sendHighWaterMark) x \(Self.bytesPerQueuedTick) B"
            + " + \(dealers) DEALERs x 2 x (max_answer_ticks \(maxAnswerTicks) + 1) x \(Self.bytesPerQueuedTick) B"
            + " + 32 journal replays x 2 MiB + 64 MiB of held answers"
            + (count(.subscriptionChurner) > 0 ? "; churners: no bound (libzmq queues their subscriptions)" : "")
        return Result(
            peers: Dictionary(uniqueKeysWithValues: behaviours.map { ($0.rawValue, peersPerBehaviour) }),
            ticksPerSecond: ticksPerSecond, symbols: symbols, sendHighWaterMark: sendHighWaterMark,
            maxAnswerTicks: maxAnswerTicks, answerTicksPerSecond: answerTicksPerSecond, quiet: quiet, beside: LatencySummary(arrivalSamples + settledSamples),
            arrival: LatencySummary(arrivalSamples), settled: LatencySummary(settledSamples),
            besideP99UsBySecond: besideBySecond, plantdAlive: alive, consumerTicks: ticks, consumerMissed: missed,
            consumerRepeated: repeated, rssBeforeBytes: rssBefore, rssPeakBytes: rssPeak, rssMBBySecond: rssBySecond,
            boundBytes: subscriberBytes + answerBytes + journalBytes, bound: bound, plantdCounters: counters)
    }
}

/// A stand-in feedd: a PUB that sends trades with the feed's stream_seq and its send time stamped, as feedd does.
final class StandInFeed {
    let endpoint: String
    private let socket: ZMQSocket
    private let encoder = TickEncoder()
    private var topics: [[UInt8]]
    private var trades: BenchTrades
    private var symbolSequences: [Int]
    private(set) var streamSequence: UInt64 = 0

    init(context: ZMQContext, symbols: [String]) throws {
        socket = try ZMQSocket(context, type: .publish)
        try socket.setSendHighWaterMark(10_000_000)
        try socket.bind("tcp://127.0.0.1:*")
        endpoint = try socket.lastEndpoint
        topics = symbols.map { Array(Topic.make(symbol: $0, type: .trade).utf8) }
        trades = BenchTrades(symbols: symbols)
        symbolSequences = [Int](repeating: 0, count: symbols.count)
    }

    deinit { socket.close() }

    func publish(symbol index: Int) {
        symbolSequences[index] += 1
        streamSequence += 1
        var tick = trades.trade(symbol: index, seq: symbolSequences[index])
        tick.streamSequence = streamSequence
        tick.venueSequence = streamSequence
        tick.feedTransmitNs = WallClock.nowNanoseconds()
        _ = topics[index].withUnsafeBytes { try? socket.send($0, more: true) }
        _ = try? socket.send(encoder.encode(tick))
    }
}

/// Sends a stand-in feed's trades evenly at `perSecond`, symbol after symbol.
final class RatePublisher {
    let feed: StandInFeed
    let perSecond: Int
    private(set) var sent = 0

    init(feed: StandInFeed, perSecond: Int) {
        self.feed = feed
        self.perSecond = perSecond
    }

    /// Publishes until `done` says so (asked every millisecond's worth of ticks, with the count sent so far). The
    /// pace starts afresh at each call: the pause between windows is not made up for by a burst (which the first
    /// second of the next window would have measured as plantd's delay).
    func publish(until done: (_ sent: Int) -> Bool) {
        let startNs = MonotonicClock.nowNanoseconds()
        let sentBefore = sent
        let symbols = feed.symbolCount
        let perMillisecond = max(1, perSecond / 1_000)
        while !done(sent) {
            let due = startNs + UInt64(Double(sent - sentBefore) * 1e9 / Double(perSecond))
            while MonotonicClock.nowNanoseconds() < due { usleep(100) }
            for _ in 0..<perMillisecond {
                feed.publish(symbol: sent % symbols)
                sent += 1
            }
        }
    }
}

extension StandInFeed {
    var symbolCount: Int { topics.count }
}

/// The well-behaved raw consumer: a SUB to everything on a thread of its own, timing each tick from the stand-in
/// feed's send to its arrival (through plantd) and checking that plantd's stream_seq runs on without a hole.
final class LiveConsumer: @unchecked Sendable {
    // @unchecked: `socket` is used by the reading thread alone once started; the figures are behind the mutex.
    private let socket: ZMQSocket
    private struct Figures {
        var latencies: [UInt32] = []
        var ticks = 0
        var missed = 0
        var repeated = 0
        var lastStreamSequence: UInt64 = 0
    }
    private let figures = Mutex(Figures())
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(context: ZMQContext, endpoint: String) throws {
        socket = try ZMQSocket(context, type: .subscribe)
        try socket.setReceiveHighWaterMark(0)
        try socket.setReceiveTimeout(milliseconds: 100)
        try socket.subscribe("")
        try socket.connect(endpoint)
        let thread = Thread { [self] in read() }
        thread.name = "live-consumer"
        thread.start()
    }

    private func read() {
        var tick = Tick(symbol: "", type: .trade, venue: "")
        while !stopping.load(ordering: .relaxed) {
            guard let frames = try? socket.receiveFrames(), frames.count == 2 else { continue }
            let received = WallClock.nowNanoseconds()
            guard (try? frames[1].withUnsafeBytes({ try TickWire.decode($0, into: &tick) })) != nil,
                !tick.symbol.hasPrefix("#")
            else { continue }
            figures.withLock { figures in
                figures.ticks += 1
                let sequence = tick.streamSequence
                if figures.lastStreamSequence != 0 {
                    if sequence <= figures.lastStreamSequence {
                        figures.repeated += 1
                    } else {
                        figures.missed += Int(sequence - figures.lastStreamSequence - 1)
                    }
                }
                figures.lastStreamSequence = max(figures.lastStreamSequence, sequence)
                if tick.feedTransmitNs > 0 && received > tick.feedTransmitNs {
                    figures.latencies.append(UInt32(clamping: received - tick.feedTransmitNs))
                }
            }
        }
        socket.close()
        finished.signal()
    }

    func takeLatencies() -> [UInt32] {
        figures.withLock { figures in
            defer { figures.latencies.removeAll(keepingCapacity: true) }
            return figures.latencies
        }
    }

    func sequenceFigures() -> (ticks: Int, missed: Int, repeated: Int) {
        figures.withLock { ($0.ticks, $0.missed, $0.repeated) }
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        finished.wait()
    }
}

/// The hostile raw peers, on a thread of their own with a context of their own: each kind does what
/// `PlantHostileRun.Behaviour` says, until stopped.
final class HostilePlantPeers: @unchecked Sendable {
    // @unchecked: the sockets live on the peers' thread alone; `stopping` is atomic.
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    init(snapshot: String, publish: String, symbols: [String],
        counts: [PlantHostileRun.Behaviour: Int])
    {
        let thread = Thread { [self] in
            run(snapshot: snapshot, publish: publish, symbols: symbols, counts: counts)
        }
        thread.name = "hostile-peers"
        thread.start()
    }

    private func run(snapshot: String, publish: String, symbols: [String], counts: [PlantHostileRun.Behaviour: Int]) {
        defer { finished.signal() }
        guard let context = try? ZMQContext() else { return }
        var dealers: [(PlantHostileRun.Behaviour, ZMQSocket)] = []
        var churners: [ZMQSocket] = []
        var stalled: [ZMQSocket] = []
        for (behaviour, count) in counts.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for _ in 0..<count {
                switch behaviour {
                case .snapshotHoarder, .streamReplayer, .symbolReplaySprayer:
                    guard let dealer = try? ZMQSocket(context, type: .dealer) else { continue }
                    // Reads nothing: its answers back up into TCP and then into plantd's queue for it.
                    try? dealer.setReceiveHighWaterMark(1)
                    try? dealer.setSendHighWaterMark(100_000)
                    try? dealer.setLinger(milliseconds: 0)
                    try? dealer.connect(snapshot)
                    dealers.append((behaviour, dealer))
                case .stalledSubscriber:
                    guard let subscriber = try? ZMQSocket(context, type: .subscribe) else { continue }
                    try? subscriber.setReceiveHighWaterMark(1)
                    try? subscriber.setLinger(milliseconds: 0)
                    try? subscriber.subscribe("")
                    try? subscriber.connect(publish)
                    stalled.append(subscriber)
                case .subscriptionChurner:
                    guard let subscriber = try? ZMQSocket(context, type: .subscribe) else { continue }
                    try? subscriber.setReceiveHighWaterMark(1)
                    try? subscriber.setSendHighWaterMark(0)
                    try? subscriber.setLinger(milliseconds: 0)
                    try? subscriber.connect(publish)
                    churners.append(subscriber)
                }
            }
        }
        let prefixes = symbols.prefix(500).map { $0 + "|" }
        let snapshotAll = ReplayRequest.snapshot(prefix: "").encoded()
        let replayAll = ReplayRequest.streamReplay(fromStreamSequence: 1, maxCount: 0).encoded()
        let symbolReplays = symbols.map { ReplayRequest.symbolReplay(symbol: $0, fromSymbolSequence: 1).encoded() }
        var round = 0
        while !stopping.load(ordering: .relaxed) {
            let roundStart = MonotonicClock.nowNanoseconds()
            // Every 20 ms: the churners subscribe or unsubscribe everything (50 times a second); every fifth
            // round (ten times a second) each DEALER asks again.
            for churner in churners {
                for prefix in prefixes {
                    _ = try? (round % 2 == 0 ? churner.subscribe(prefix) : churner.unsubscribe(prefix))
                }
            }
            if round % 5 == 0 {
                for (behaviour, dealer) in dealers {
                    switch behaviour {
                    case .snapshotHoarder: _ = try? dealer.send(snapshotAll, dontWait: true)
                    case .streamReplayer: _ = try? dealer.send(replayAll, dontWait: true)
                    default: for request in symbolReplays { _ = try? dealer.send(request, dontWait: true) }
                    }
                }
            }
            round += 1
            let elapsed = MonotonicClock.nowNanoseconds() - roundStart
            if elapsed < 20_000_000 { usleep(UInt32((20_000_000 - elapsed) / 1_000)) }
        }
        for (_, socket) in dealers { socket.close() }
        for socket in churners + stalled { socket.close() }
    }

    func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        finished.wait()
    }
}
