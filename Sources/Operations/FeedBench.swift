import FeedHandler
import Foundation
import Logging
import MarketData
import Synchronization
import ZeroMQ

/// `mktctl bench feed`: how many ITCH messages a second this machine takes in over UDP on 127.0.0.1, first by a bare
/// receiver (recvmmsg and count: the ceiling) and then by feedd's engine (decode, book, normalize, encode, publish to
/// a subscriber that drains every tick), from the same MoldUDP64 packets in the same run.
public struct FeedBench {
    public struct Settings: Sendable {
        /// ITCH messages each run sends.
        public var messages = 10_000_000
        public var symbols = 500
        public init() {}
    }

    /// One run: what was sent, what arrived, how fast.
    public struct Run: Sendable, Codable {
        public var name: String
        public var sent: UInt64
        public var received: UInt64
        public var seconds: Double
        public var kernelDrops: UInt64
        public var gaps: UInt64
        public var ticksPublished: UInt64
        public var messagesPerSecond: Double { seconds > 0 ? Double(received) / seconds : 0 }
        public var lost: UInt64 { sent - min(sent, received) }
    }

    let settings: Settings
    /// The stock directory, sent once at the start of each run.
    let directoryPackets: [[UInt8]]
    /// One round of the market: sent again and again, with fresh sequence numbers, until enough messages went out.
    let roundPackets: [[UInt8]]
    let progress: @Sendable (String) -> Void

    public init(settings: Settings, progress: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.progress = progress
        let messages = SyntheticItchMarket.messages(symbols: settings.symbols, orders: settings.symbols * 100)
        let directorySize = SyntheticItchMarket.directorySize(symbols: settings.symbols)
        directoryPackets = Self.packets(Array(messages[..<directorySize]))
        roundPackets = Self.packets(Array(messages[directorySize...]))
    }

    static let session = "BENCH00001"

    /// MoldUDP64 packets of at most 1400 bytes (one Ethernet frame), sequence numbers patched in when sent.
    static func packets(_ messages: [[UInt8]]) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var pending: [[UInt8]] = []
        var bytes = 0
        for message in messages {
            if bytes + message.count + 2 > 1400 - MoldPacket.headerLength {
                packets.append(MoldPacket.encode(session: session, sequenceNumber: 0, messages: pending))
                pending.removeAll()
                bytes = 0
            }
            pending.append(message)
            bytes += message.count + 2
        }
        if !pending.isEmpty { packets.append(MoldPacket.encode(session: session, sequenceNumber: 0, messages: pending)) }
        return packets
    }

    /// The ceiling: a bare socket that receives in batches and counts the messages in each packet's header.
    public func runRawReceiver() throws -> Run {
        let receiver = try UDPReceiver(address: try SocketAddress(host: "127.0.0.1", port: 0),
            receiveBufferBytes: 8 << 20)
        let port = receiver.descriptor.localPort
        let shared = SharedCounters()
        let reader = Thread { [handOff = ReceiverHandOff(receiver: receiver)] in
            let batch = DatagramBatch()
            while !shared.done.load(ordering: .relaxed) {
                let count = handOff.receiver.receive(into: batch)
                if count == 0 {
                    usleep(50)
                    continue
                }
                var messages: UInt64 = 0
                for index in 0..<count {
                    guard let datagram = batch.datagram(index), let packet = try? MoldPacket(datagram),
                        !packet.isHeartbeat, !packet.isEndOfSession
                    else { continue }
                    messages += UInt64(packet.messageCount)
                }
                shared.received.wrappingAdd(messages, ordering: .relaxed)
                shared.lastArrivalNs.store(MonotonicClock.nowNanoseconds(), ordering: .relaxed)
            }
            shared.finished.store(true, ordering: .releasing)
        }
        reader.start()
        let start = MonotonicClock.nowNanoseconds()
        let sent = try send(to: port, rate: nil, messages: settings.messages, name: "bare receiver") {
            shared.received.load(ordering: .relaxed)
        }
        waitForQuiet(count: { shared.received.load(ordering: .relaxed) }, target: sent)
        shared.done.store(true, ordering: .relaxed)
        while !shared.finished.load(ordering: .acquiring) { usleep(1_000) }
        let seconds = Double(shared.lastArrivalNs.load(ordering: .relaxed) - start) / 1e9
        return Run(name: "bare receiver (recvmmsg, count)", sent: sent,
            received: shared.received.load(ordering: .relaxed), seconds: seconds,
            kernelDrops: receiver.kernelDrops ?? 0, gaps: 0, ticksPublished: 0)
    }

    /// feedd's engine in this process, exactly as the daemon runs it, with a subscriber draining its ticks.
    /// `rate` nil sends as fast as the sender can.
    public func runFeedEngine(rate: Int?, messages: Int) throws -> Run {
        let context = try ZMQContext()
        var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0)
        source.gapGiveUp = .seconds(1)
        var configuration = FeedConfiguration()
        configuration.name = "bench"
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = "tcp://127.0.0.1:*"
        configuration.replayEndpoint = "tcp://127.0.0.1:*"
        configuration.udpReceiveBufferBytes = 8 << 20
        configuration.venues = [.init(venue: "XNAS", source: .itch(source), timezone: "America/New_York")]
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let engine = FeedEngine(configuration: configuration, context: context, logger: logger)
        try engine.start()
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        guard let publish = engine.endpoints["publish"], let control = engine.endpoints["control"],
            let udp = engine.endpoints["udp:XNAS"], let port = ConfigReader.parseHostPort(udp)?.port
        else { throw BenchError("feedd's engine did not report its endpoints") }

        let shared = SharedCounters()
        let drain = Thread {
            guard let subscriber = try? ZMQSocket(context, type: .subscribe) else { return }
            defer { subscriber.close() }
            try? subscriber.setReceiveHighWaterMark(0)
            try? subscriber.subscribe("")
            try? subscriber.connect(publish)
            try? subscriber.setReceiveTimeout(milliseconds: 50)
            shared.ready.store(true, ordering: .releasing)
            let message = ZMQMessage()
            while !shared.done.load(ordering: .relaxed) {
                guard (try? subscriber.receive(into: message)) == true else { continue }
                if !message.hasMore { shared.ticks.wrappingAdd(1, ordering: .relaxed) }
            }
            shared.finished.store(true, ordering: .releasing)
        }
        drain.start()
        defer {
            shared.done.store(true, ordering: .relaxed)
            while !shared.finished.load(ordering: .acquiring) { usleep(1_000) }
        }
        while !shared.ready.load(ordering: .acquiring) { usleep(1_000) }
        usleep(300_000)  // the subscription reaches the PUB (ZeroMQ's slow joiner)

        let status = try StatusAsker(context: context, endpoint: control, whose: "feedd's engine")
        func counters() throws -> [String: UInt64] { try status.ask().counters }
        let start = MonotonicClock.nowNanoseconds()
        var lastCount: UInt64 = 0
        var lastCountNs = start
        let name = rate.map { "feedd at \(Self.formatRate(Double($0)))" } ?? "feedd, unpaced"
        let sent = try send(to: port, rate: rate, messages: messages, name: name) {
            (try? counters())?["XNAS.messages"] ?? 0
        }
        // Poll feedd's own count until it has every message or stops moving.
        while true {
            let now = try counters()
            let count = now["XNAS.messages"] ?? 0
            if count != lastCount {
                lastCount = count
                lastCountNs = MonotonicClock.nowNanoseconds()
            }
            if count >= sent || MonotonicClock.nowNanoseconds() - lastCountNs > 2_000_000_000 { break }
            usleep(2_000)
        }
        let final = try counters()
        return Run(name: name, sent: sent, received: final["XNAS.messages"] ?? 0,
            seconds: Double(lastCountNs - start) / 1e9, kernelDrops: final["XNAS.kernel_drops"] ?? 0,
            gaps: final["XNAS.gaps"] ?? 0, ticksPublished: shared.ticks.load(ordering: .relaxed))
    }

    /// Sends the directory and then rounds of the market until `messages` went out, paced to `rate` messages a second
    /// when given. Returns the messages sent. `stampingExchangeTime` writes the time of sending into every message's
    /// ITCH timestamp (nanoseconds since midnight UTC: the venue's timezone must be UTC), so that the exchange -> feedd
    /// hop can be measured.
    func send(
        to port: Int, rate: Int?, messages: Int, name: String, stampingExchangeTime: Bool = false,
        received: () -> UInt64
    ) throws -> UInt64 {
        let sender = try UDPSender(destination: try SocketAddress(host: "127.0.0.1", port: port))
        var sequence: UInt64 = 1
        var sent: UInt64 = 0
        let start = MonotonicClock.nowNanoseconds()
        var lastProgress = start
        var round = roundPackets
        func transmit(_ packet: inout [UInt8]) {
            let count = UInt64(packet[18]) << 8 | UInt64(packet[19])
            for byte in 0..<8 { packet[10 + byte] = UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(byte))) }
            if stampingExchangeTime {
                Self.stamp(&packet, sinceMidnightNs: WallClock.nowNanoseconds() % 86_400_000_000_000)
            }
            while !sender.send(packet) { usleep(10) }  // the socket's buffer is full: wait, never drop here
            sequence += count
            sent += count
        }
        var directory = directoryPackets
        for index in directory.indices { transmit(&directory[index]) }
        let total = UInt64(messages)
        while sent < total {
            for index in round.indices where sent < total {
                if let rate {
                    // Ahead of the pace: wait until the next packet is due.
                    while true {
                        let due = Double(MonotonicClock.nowNanoseconds() - start) / 1e9 * Double(rate)
                        if Double(sent) <= due { break }
                        usleep(20)
                    }
                }
                transmit(&round[index])
                let now = MonotonicClock.nowNanoseconds()
                if now - lastProgress >= 500_000_000 {
                    lastProgress = now
                    let seconds = Double(now - start) / 1e9
                    progress(String(format: "%@ %@: sent %llu of %llu (%@), received %llu",
                        BenchOutput.bar(Double(sent) / Double(total)), name, sent, total,
                        Self.formatRate(Double(sent) / seconds), received()))
                }
            }
        }
        return sent
    }

    /// Writes `sinceMidnightNs` into the 6-byte timestamp (bytes 5 to 10) of every ITCH message of a MoldUDP64 packet.
    static func stamp(_ packet: inout [UInt8], sinceMidnightNs: UInt64) {
        var offset = MoldPacket.headerLength
        while offset + 2 <= packet.count {
            let length = Int(packet[offset]) << 8 | Int(packet[offset + 1])
            offset += 2
            guard length >= 11, offset + length <= packet.count else { return }
            for byte in 0..<6 {
                packet[offset + 5 + byte] = UInt8(truncatingIfNeeded: sinceMidnightNs >> (40 - 8 * UInt64(byte)))
            }
            offset += length
        }
    }

    /// Waits until `count` reaches `target` or stops moving for half a second.
    private func waitForQuiet(count: () -> UInt64, target: UInt64) {
        var last = count()
        var lastChangeNs = MonotonicClock.nowNanoseconds()
        while last < target && MonotonicClock.nowNanoseconds() - lastChangeNs < 500_000_000 {
            usleep(2_000)
            let now = count()
            if now != last {
                last = now
                lastChangeNs = MonotonicClock.nowNanoseconds()
            }
        }
    }

    static func formatRate(_ perSecond: Double) -> String {
        perSecond >= 1e6 ? String(format: "%.2f M/s", perSecond / 1e6) : String(format: "%.0f k/s", perSecond / 1e3)
    }

    /// The runs as the table `mktctl bench feed` prints.
    public static func table(_ runs: [Run]) -> String {
        let header = ["run", "sent", "received", "lost", "kernel drops", "gaps", "seconds", "messages/s", "ticks out"]
        let rows = runs.map { run in
            [run.name, "\(run.sent)", "\(run.received)", "\(run.lost)", "\(run.kernelDrops)", "\(run.gaps)",
                String(format: "%.2f", run.seconds), formatRate(run.messagesPerSecond),
                run.ticksPublished == 0 ? "-" : "\(run.ticksPublished)"]
        }
        return TextTable.render(header: header, rows: rows)
    }
}

/// What a run's helper thread and the run share.
private final class SharedCounters: Sendable {
    let done = Atomic<Bool>(false)
    let ready = Atomic<Bool>(false)
    let finished = Atomic<Bool>(false)
    let received = Atomic<UInt64>(0)
    let ticks = Atomic<UInt64>(0)
    let lastArrivalNs = Atomic<UInt64>(0)
}

/// Gives the bare receiver's socket to its reader thread.
/// @unchecked Sendable: from the hand-off on only the reader thread receives on the socket; the creator reads the
/// kernel's drop count (from /proc, not the socket) after the reader has finished.
private struct ReceiverHandOff: @unchecked Sendable {
    let receiver: UDPReceiver
}

/// Asks a daemon engine's control endpoint for its status, again and again on one REQ socket (a bench polls while it
/// measures: no socket made per question).
struct StatusAsker {
    let socket: ZMQSocket
    /// Named in the error when it does not answer.
    let whose: String

    init(context: ZMQContext, endpoint: String, whose: String) throws {
        self.whose = whose
        socket = try ZMQSocket(context, type: .request)
        try socket.setReceiveTimeout(milliseconds: 2_000)
        try socket.connect(endpoint)
    }

    func ask() throws -> DaemonStatus {
        try socket.send(#"{"cmd":"status"}"#)
        guard let reply = try socket.receiveFrames()?.first else { throw BenchError("\(whose) did not answer status") }
        return try JSONDecoder().decode(DaemonStatus.self, from: Data(reply))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
