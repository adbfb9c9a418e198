import Logging
import MarketData

/// Where a feed hands its ticks and its problems: the feed loop, which stamps and publishes them.
protocol TickSink: AnyObject {
    /// Publishes `ticks` (stamping stream_seq and hop times) and empties the array, keeping its capacity.
    func publish(_ ticks: inout [Tick], receivedNs: UInt64)
    /// Counts nothing itself; logs a per-message problem at a rate limit.
    func logBadInput(_ source: String, _ problem: String)
}

/// A MoldUDP64 gap that was given up: what was lost, when and why. `mktctl gaps` lists them.
public struct LostGap: Codable, Sendable, Equatable {
    public var venue: String
    public var session: String
    public var firstSequence: UInt64
    public var lastSequence: UInt64
    public var reason: String
    public var atNs: UInt64
}

/// One ITCH 5.0 venue over MoldUDP64: its UDP socket, the in-order stream with gap recovery, the retransmission
/// client and the normalizer. Lives on the feed thread.
final class ItchFeed {
    let venue: String
    let source: FeedConfiguration.ItchSource
    let timezone: String
    let receiver: UDPReceiver
    let retransmission: RetransmissionClient?
    // Every message changes these three while calling out (the stream calls `deliver`, which runs the normalizer into
    // `ticks` and hands them to the sink), so the runtime checked each access for an overlapping one: 8% of feedd's
    // thread (perf, 600 000 ITCH messages/s). Not checked: only the feed thread touches an ItchFeed, and nothing
    // called while one of them changes (the stream, the normalizer, the sink's publish) reaches back into it.
    @exclusivity(unchecked) var normalizer: ItchNormalizer
    var session: MoldSession?
    @exclusivity(unchecked) var stream: MoldStream
    /// Keeps a datagram of another session, or one far ahead, from moving the stream until others prove it.
    var gate: MoldSessionGate
    var malformed: UInt64 = 0
    var unknownTypes: UInt64 = 0
    /// Datagrams from a sender `allowed_sources` does not list, dropped unread.
    var foreignDatagrams: UInt64 = 0
    private var foreignLog = LogRateLimiter(interval: .seconds(10))
    var sessionsEnded: UInt64 = 0
    private var earlierSessionsGivenUp: UInt64 = 0
    private var earlierSessionsLost: UInt64 = 0
    /// Gaps given up since feedd started, over every session of the venue.
    var gapsGivenUp: UInt64 { earlierSessionsGivenUp + stream.counters.gapsGivenUp }
    /// Messages lost in those gaps.
    var messagesLost: UInt64 { earlierSessionsLost + stream.counters.messagesLost }
    var lostGaps: [LostGap] = []
    @exclusivity(unchecked) private var ticks: [Tick] = []
    private var receivedNs: UInt64 = 0
    /// While recovery releases held messages, their ticks wait so that a GAP status can go out before them.
    private var deferPublishing = false
    private let logger: Logger

    init(venue: String, source: FeedConfiguration.ItchSource, timezone: String, receiveBufferBytes: Int,
        logger: Logger) throws
    {
        self.venue = venue
        self.source = source
        self.timezone = timezone
        self.logger = logger
        receiver = try UDPReceiver(
            address: try SocketAddress(host: source.listenHost, port: source.listenPort),
            receiveBufferBytes: receiveBufferBytes, multicastInterface: source.multicastInterface)
        retransmission = try source.retransmission.map { server in
            RetransmissionClient(address: try SocketAddress(host: server.host, port: server.port),
                reconnectIntervalNs: source.retransmissionRetry.nanoseconds)
        }
        normalizer = Self.normalizer(venue: venue, source: source, timezone: timezone)
        stream = MoldStream(configuration: source.recovery)
        gate = MoldSessionGate(configuration: source.sessionGate)
        ticks.reserveCapacity(4)
    }

    /// A venue's normalizer for a new session (a new trading day: orders and symbols start over).
    private static func normalizer(venue: String, source: FeedConfiguration.ItchSource, timezone: String)
        -> ItchNormalizer
    {
        ItchNormalizer(venue: venue, sessionMidnightNs: sessionMidnightNanoseconds(timezone: timezone),
            bookDepth: source.bookDepth, bookIntervalNs: source.bookInterval.nanoseconds, bookOrders: source.bookOrders,
            rememberedMatches: source.rememberedMatches)
    }

    // MARK: Downstream

    /// Reads the waiting datagrams a batch at a time (one recvmmsg per batch). After `maximumBatchesPerTurn` full
    /// batches it returns, so that the other venues and the retransmission sockets get their turn; the poller calls
    /// again at once while datagrams wait.
    func readDatagrams(batch: DatagramBatch, sink: TickSink) {
        for _ in 0..<ItchFeed.maximumBatchesPerTurn {
            let count = receiver.receive(into: batch)
            guard count > 0 else { return }
            receivedNs = WallClock.nowNanoseconds()
            for index in 0..<count {
                guard source.allowedSources.admits(batch.source(index)) else {
                    foreignDatagrams += 1
                    if let heldBack = foreignLog.admit() {
                        sink.logBadInput(venue, "datagram from \(SourceFilter.describe(batch.source(index))), which "
                            + "allowed_sources does not list: dropped (\(heldBack) more since the last such line)")
                    }
                    continue
                }
                guard let datagram = batch.datagram(index) else {
                    // Longer than any MoldUDP64 packet on an Ethernet path: counted, and its messages recovered.
                    malformed += 1
                    sink.logBadInput(venue, "datagram longer than \(batch.slotSize) bytes, cut by the kernel")
                    continue
                }
                handlePacket(datagram, sink: sink)
            }
            if count < batch.capacity { return }
        }
    }

    static let maximumBatchesPerTurn = 16

    /// One datagram from the venue's port, whatever it holds (internal, not private: the fuzz target drives it).
    func handlePacket(_ bytes: UnsafeRawBufferPointer, sink: TickSink) {
        let now = MonotonicClock.nowNanoseconds()
        let packet: MoldPacket
        do {
            packet = try MoldPacket(bytes)
        } catch {
            malformed += 1
            sink.logBadInput(venue, "\(error)")
            return
        }
        switch gate.judge(packet, following: session, highestKnown: stream.highestKnown) {
        case .pass:
            if session != packet.session { startSession(packet.session) }
            take(packet, now: now, sink: sink)
        case .held:
            sink.logBadInput(venue, "MoldUDP64 packet of session \(packet.session) sequence \(packet.sequenceNumber) "
                + "held aside: \(session == packet.session ? "too far ahead" : "not the session followed") until "
                + "\(gate.configuration.proofPackets) consecutive packets prove it")
        case let .proven(provenSession, packets):
            logger.warning("MoldUDP64 stream moved after consecutive packets proved it", metadata: [
                "venue": "\(venue)", "session": "\(provenSession)", "packets": "\(packets.count)",
                "from": "\(session.map { "\($0)" } ?? "none") \(stream.highestKnown)"])
            if session != provenSession { startSession(provenSession) }
            for bytes in packets {
                bytes.withUnsafeBytes { raw in
                    // Each was a whole packet when it was kept.
                    if let packet = try? MoldPacket(raw) { take(packet, now: now, sink: sink) }
                }
            }
        }
    }

    /// A packet of the stream followed: its messages, in order, or what a heartbeat says exists.
    private func take(_ packet: MoldPacket, now: UInt64, sink: TickSink) {
        if packet.isHeartbeat || packet.isEndOfSession {
            stream.heartbeat(nextSequence: packet.sequenceNumber, now: now)
            if packet.isEndOfSession {
                sessionsEnded += 1
                logger.notice("MoldUDP64 end of session", metadata: ["venue": "\(venue)", "session": "\(packet.session)"])
            }
            return
        }
        do {
            try packet.forEachMessage { sequence, message in
                stream.receive(sequence: sequence, message: message, now: now) { number, bytes in
                    deliver(number, bytes, sink: sink)
                }
            }
        } catch {
            // The messages before the damage were taken; the rest is a gap that recovery fills.
            malformed += 1
            sink.logBadInput(venue, "\(error)")
        }
    }

    /// A new session is a new trading day: sequence numbers, orders and symbols start over.
    private func startSession(_ newSession: MoldSession) {
        if let session {
            logger.notice("MoldUDP64 session changed", metadata: ["venue": "\(venue)", "from": "\(session)",
                "to": "\(newSession)"])
        }
        session = newSession
        // What the old session lost stays counted: status shows the venue's losses, not this session's alone.
        earlierSessionsGivenUp += stream.counters.gapsGivenUp
        earlierSessionsLost += stream.counters.messagesLost
        stream = MoldStream(configuration: source.recovery)
        normalizer = Self.normalizer(venue: venue, source: source, timezone: timezone)
        retransmission?.reset()
    }

    /// One message, in order, exactly once.
    private func deliver(_ sequence: UInt64, _ message: UnsafeRawBufferPointer, sink: TickSink) {
        do {
            let decoded = try ItchDecoder.decode(message)
            let badSymbolsBefore = normalizer.counters.badSymbols
            normalizer.handle(decoded, venueSequence: sequence, into: &ticks)
            // The normalizer refused a stock directory's symbol and counted it; the log says which and why.
            if normalizer.counters.badSymbols != badSymbolsBefore, case let .stockDirectory(_, stock, _, _) = decoded {
                let problem = SymbolRules.problem(with: stock.description) ?? ""
                sink.logBadInput(venue,
                    "message \(sequence): stock directory symbol \(stock.description.debugDescription): \(problem)")
            }
            if !ticks.isEmpty && !deferPublishing { sink.publish(&ticks, receivedNs: receivedNs) }
        } catch {
            if case FeedParseError.unknownMessageType = error { unknownTypes += 1 } else { malformed += 1 }
            sink.logBadInput(venue, "message \(sequence): \(error)")
        }
    }

    // MARK: Recovery

    /// Asks for missing messages or gives a gap up; call every loop turn.
    func recover(sink: TickSink) {
        guard let session else { return }
        let now = MonotonicClock.nowNanoseconds()
        receivedNs = WallClock.nowNanoseconds()
        if stream.hasOpenGap { retransmission?.progress(now: now) }
        deferPublishing = true
        let actions = stream.poll(now: now) { number, bytes in deliver(number, bytes, sink: sink) }
        deferPublishing = false
        var gapStatuses: [Tick] = []
        for action in actions {
            switch action {
            case let .request(sequence, count):
                if let retransmission,
                    !retransmission.request(session: session, sequence: sequence, count: count, now: now)
                {
                    sink.logBadInput(venue, "retransmission server \(retransmission.address) unreachable")
                }
            case let .gaveUp(missing, reason):
                gapStatuses.append(gaveUp(missing, reason: reason, session: session))
            }
        }
        // Consumers learn of a loss before the messages that were held behind it.
        ticks.insert(contentsOf: gapStatuses, at: 0)
        if !ticks.isEmpty { sink.publish(&ticks, receivedNs: receivedNs) }
        // One BOOK at a time: `publish` lets go of each before the next is built in its place.
        normalizer.flushDueBooks(nowNs: now) { book in
            ticks.append(book)
            sink.publish(&ticks, receivedNs: receivedNs)
        }
    }

    /// The stream's recent gaps as `mktctl gaps` shows them.
    func gapEvents() -> [GapEvent] {
        stream.gapRecords.map { record in
            let healedBy =
                if let reason = record.givenUp {
                    "given up: \(retransmission == nil ? "no retransmission server configured" : reason.rawValue)"
                } else if record.closedNs == nil {
                    "open"
                } else {
                    record.requested ? "retransmission" : "reordering"
                }
            return GapEvent(source: venue, stream: session?.description ?? "", firstSequence: record.firstSequence,
                lastSequence: record.lastSequence, openedAtNs: GapEvent.wallTime(ofMonotonic: record.openedNs),
                durationNs: record.closedNs.map { $0 - record.openedNs },
                healedBy: healedBy, messagesLost: record.messagesLost)
        }
    }

    /// Records a hole given up and returns the GAP status that tells consumers.
    private func gaveUp(_ missing: ClosedRange<UInt64>, reason: MoldStream.GiveUpReason, session: MoldSession) -> Tick {
        let lost = LostGap(venue: venue, session: session.description, firstSequence: missing.lowerBound,
            lastSequence: missing.upperBound,
            reason: retransmission == nil ? "no retransmission server configured" : reason.rawValue,
            atNs: WallClock.nowNanoseconds())
        lostGaps.append(lost)
        if lostGaps.count > 1000 { lostGaps.removeFirst(lostGaps.count - 1000) }
        logger.error("MoldUDP64 gap given up: messages lost", metadata: ["venue": "\(venue)",
            "session": "\(lost.session)", "missing": "\(missing.lowerBound)...\(missing.upperBound)",
            "reason": "\(lost.reason)"])
        var status = Tick(symbol: Topic.system, type: .status, venue: venue)
        status.quality = .gap
        status.venueSequence = missing.lowerBound
        status.reason = "MoldUDP64 session \(lost.session) messages \(missing.lowerBound)-\(missing.upperBound) lost: \(lost.reason)"
        return status
    }

    /// Reads retransmitted packets and feeds their messages to the stream.
    func readRetransmissions(buffer: UnsafeMutableRawBufferPointer, sink: TickSink) {
        guard let retransmission else { return }
        receivedNs = WallClock.nowNanoseconds()
        retransmission.read(buffer: buffer) { packet in
            handlePacket(packet, sink: sink)
        }
    }

    /// How soon the loop must come back to `recover` (milliseconds), so that gap timers run on time and waiting
    /// BOOKs go out in their slot.
    var pollTimeoutMilliseconds: Int {
        if stream.hasOpenGap { return 5 }
        guard let wait = normalizer.nanosecondsUntilWaitingBooks(nowNs: MonotonicClock.nowNanoseconds()) else {
            return 100
        }
        return min(100, Int((wait + 999_999) / 1_000_000))
    }
}

/// A TCP client of a venue's MoldUDP64 retransmission server. Connects on first need without blocking the feed
/// thread (requests made meanwhile wait, bounded), keeps the connection, and after a failure connects again no sooner
/// than `retransmission_retry` later: a server back from a restart is found by the next request due anyway, well
/// inside `gap_giveup`.
final class RetransmissionClient {
    let address: SocketAddress
    private(set) var connection: FileDescriptor?
    private var connecting: FileDescriptor?
    private var waiting: [[UInt8]] = []
    private var frames = LengthPrefixedFrames()
    private var retryAtNs: UInt64 = 0
    private(set) var failures: UInt64 = 0
    private(set) var packetsReceived: UInt64 = 0

    private let reconnectIntervalNs: UInt64

    init(address: SocketAddress, reconnectIntervalNs: UInt64) {
        self.address = address
        self.reconnectIntervalNs = reconnectIntervalNs
    }

    var descriptor: Int32 { connection?.raw ?? -1 }

    func reset() {
        connection = nil
        connecting = nil
        waiting.removeAll()
        frames = LengthPrefixedFrames()
    }

    /// Sends one request, or keeps it until the connection is up; false when the server cannot be reached now (the
    /// stream asks again later or gives up).
    func request(session: MoldSession, sequence: UInt64, count: UInt16, now: UInt64) -> Bool {
        let request = MoldRequest.encode(session: session.description, sequence: sequence, count: count)
        if connection == nil {
            guard progress(now: now) else {
                if connecting != nil && waiting.count < 64 { waiting.append(request) }
                return connecting != nil
            }
        }
        return send(request)
    }

    /// Starts or finishes the connection; true once it is up.
    @discardableResult
    func progress(now: UInt64) -> Bool {
        if connection != nil { return true }
        do {
            if let attempt = connecting {
                guard try attempt.connectionEstablished() else { return false }
                connecting = nil
                connection = attempt
                frames = LengthPrefixedFrames()
                let queued = waiting
                waiting.removeAll()
                for request in queued where !send(request) { return false }
                return true
            }
            guard now >= retryAtNs else { return false }
            connecting = try FileDescriptor.startTCPConnect(to: address)
            return false
        } catch {
            failures += 1
            connecting = nil
            waiting.removeAll()
            retryAtNs = now + reconnectIntervalNs
            return false
        }
    }

    private func send(_ request: [UInt8]) -> Bool {
        guard let connection, connection.writeAll(request) else {
            failures += 1
            self.connection = nil
            return false
        }
        return true
    }

    /// Reads what arrived and calls `packet` with each whole MoldUDP64 packet.
    func read(buffer: UnsafeMutableRawBufferPointer, packet: (UnsafeRawBufferPointer) -> Void) {
        guard let connection else { return }
        while true {
            let count: Int?
            do {
                count = try connection.readAvailable(into: buffer)
            } catch {
                self.connection = nil
                return
            }
            guard let count else { break }
            if count == 0 {
                self.connection = nil
                return
            }
            frames.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        frames.drain { body in
            packetsReceived += 1
            packet(body)
        }
    }
}
