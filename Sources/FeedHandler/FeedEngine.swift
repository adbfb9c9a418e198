import Foundation
import Logging
import MarketData
import Synchronization
import ZeroMQ

/// feedd's per-tick work on one socket-owning thread: it waits (zmq_poll) on every venue's UDP or TCP socket and on
/// the control endpoint, normalizes what arrives into ticks and publishes them on the PUB socket as `SYMBOL|T` + Tick.
public final class FeedEngine: Sendable {
    public let configuration: FeedConfiguration
    public let thread: SocketThread
    private let context: ZMQContext
    let logger: Logger

    public init(configuration: FeedConfiguration, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
        thread = SocketThread(name: "feedd-\(configuration.name)")
    }

    /// Starts the loop; returns once sockets are bound (or throws what stopped them).
    public func start() throws {
        _ = try thread.startLoop { [self] _ in try FeedLoop(engine: self, context: context) }
    }

    /// The endpoints as bound (ephemeral ports resolved): keys "publish", "control".
    public var endpoints: [String: String] { thread.boundEndpoints }

    public func stop() { thread.stop() }
}

/// The state of the loop, owned by the engine's thread.
private final class FeedLoop: SocketLoop, TickSink {
    let configuration: FeedConfiguration
    let logger: Logger
    let publisher: ZMQSocket
    let control: ControlResponder
    let replay: ZMQSocket
    /// With `[curve]`: lets listed client keys (plantd's, mktctl's) in, refuses and counts the others.
    let zap: ZAPHandler?
    var zapIndex: Int?
    var curveRefusedLog = LogRateLimiter(interval: .seconds(10))
    // `publish` changes the ring and the latency buckets for every tick, and the runtime checked
    // each access for an overlapping one (as ItchFeed's per-message state). Not checked: only this loop's thread
    // touches them, and publishing calls nothing that reaches back into the loop.
    @exclusivity(unchecked) var ring: TickRing
    let poller = ZMQPoller()
    var boundEndpoints: [String: String] = [:]
    let started = MonotonicClock.nowNanoseconds()

    // Publishing
    let encoder = TickEncoder()
    let topic = TopicScratch()
    var streamSequence: UInt64 = 0
    var ticks: [Tick] = []
    var published: UInt64 = 0
    var dropped: UInt64 = 0
    var received: UInt64 = 0
    var rateIn = RateMeter()
    var rateOut = RateMeter()

    // Venues
    var itchFeeds: [(feed: ItchFeed, pollIndex: Int, retransmissionIndex: Int)] = []
    var jsonVenues: [JSONVenue] = []
    let wakeupIndex: Int
    let controlIndex: Int
    let replayIndex: Int
    var replaysServed: UInt64 = 0
    var badInputLog = LogRateLimiter()
    /// The venue's stamp to feedd's receipt (comparable when their clocks are synchronised), and receipt to publish.
    @exclusivity(unchecked) var exchangeToFeed = LatencyBuckets(hop: "exchange -> feedd")
    @exclusivity(unchecked) var inFeed = LatencyBuckets(hop: "in feedd")

    final class JSONVenue {
        let parser: JSONVenueParser
        let address: SocketAddress
        let pollIndex: Int
        var connection: FileDescriptor?
        /// A connection being made (non-blocking); it becomes `connection` once up.
        var connecting: FileDescriptor?
        var pending: [UInt8] = []
        var nextAttemptNs: UInt64 = 0
        var backoffNs: UInt64
        var lines: UInt64 = 0
        var malformed: UInt64 = 0
        var connects: UInt64 = 0

        init(parser: JSONVenueParser, address: SocketAddress, pollIndex: Int, backoffNs: UInt64) {
            self.parser = parser
            self.address = address
            self.pollIndex = pollIndex
            self.backoffNs = backoffNs
        }
    }

    init(engine: FeedEngine, context: ZMQContext) throws {
        configuration = engine.configuration
        logger = engine.logger
        zap = try ZAPHandler.forDaemon(context: context, clientKeys: configuration.curve?.clientKeys,
            control: configuration.controlCurve)
        // The secret key was checked when the configuration was loaded.
        let curveSecret = configuration.curve.flatMap { CurveKeyPair.binary($0.secretKey) }
        publisher = try ZMQSocket(context, type: .publish)
        if let curveSecret { try publisher.setCurveServer(secretKey: curveSecret) }
        // Past the high-water mark a subscriber loses its own messages (it sees a stream_seq gap and replays):
        // ZMQ_XPUB_NODROP would instead refuse the message to every subscriber while any one is full.
        try publisher.setSendHighWaterMark(configuration.sendHighWaterMark)
        try publisher.setMaximumMessageSize(maximumPeerMessageBytes)
        try publisher.bind(configuration.publishEndpoint)
        boundEndpoints["publish"] = try publisher.lastEndpoint
        control = try ControlResponder(context: context, endpoint: configuration.controlEndpoint,
            curve: configuration.controlCurve)
        boundEndpoints["control"] = try control.socket.lastEndpoint
        replay = try ZMQSocket(context, type: .router)
        if let curveSecret { try replay.setCurveServer(secretKey: curveSecret) }
        // An answer is sent whole in one turn: the high-water mark holds two of the largest (a message a tick, and
        // its end: libzmq counts a message of several frames once), because libzmq tells the sender what its peer
        // has read only every half mark, so that one whole answer always fits once the peer has read the ones
        // before; a peer that asks and never reads holds at most that much of feedd's memory.
        try replay.setSendHighWaterMark(Int32(clamping: 2 * (configuration.maxAnswerTicks + 1)))
        try replay.setMaximumMessageSize(maximumPeerMessageBytes)
        try replay.bind(configuration.replayEndpoint)
        boundEndpoints["replay"] = try replay.lastEndpoint
        ring = TickRing(capacity: configuration.replayTicks)
        wakeupIndex = poller.add(descriptor: engine.thread.wakeup.descriptor)
        controlIndex = try poller.add(control.socket)
        if let zap { zapIndex = try poller.add(zap.socket) }
        replayIndex = try poller.add(replay)
        for venue in configuration.venues {
            switch venue.source {
            case let .itch(source):
                let feed = try ItchFeed(venue: venue.venue, source: source, timezone: venue.timezone,
                    receiveBufferBytes: configuration.udpReceiveBufferBytes, logger: logger)
                if feed.receiver.receiveBufferBytes < configuration.udpReceiveBufferBytes {
                    logger.warning(
                        "kernel granted a smaller UDP receive buffer than asked; raise net.core.rmem_max",
                        metadata: ["venue": "\(venue.venue)", "asked": "\(configuration.udpReceiveBufferBytes)",
                            "granted": "\(feed.receiver.receiveBufferBytes)"])
                }
                boundEndpoints["udp:\(venue.venue)"] = "\(source.listenHost):\(feed.receiver.descriptor.localPort)"
                let index = poller.add(descriptor: feed.receiver.descriptor.raw)
                let retransmissionIndex = poller.add(descriptor: -1)
                poller.disable(retransmissionIndex)
                itchFeeds.append((feed, index, retransmissionIndex))
            case let .json(format, host, port):
                let index = poller.add(descriptor: -1)
                poller.disable(index)
                jsonVenues.append(JSONVenue(
                    parser: JSONVenueParser(format: format, venue: venue.venue),
                    address: try SocketAddress(host: host, port: port), pollIndex: index,
                    backoffNs: configuration.reconnectInitial.nanoseconds))
            }
        }
        logger.info("feedd publishing", metadata: ["publish": "\(boundEndpoints["publish"]!)",
            "control": "\(boundEndpoints["control"]!)", "venues": "\(configuration.venues.map(\.venue))"])
    }

    func run(_ thread: SocketThread) {
        let datagram = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 8)
        defer { datagram.deallocate() }
        let batch = DatagramBatch()
        while !thread.isStopping {
            connectDueVenues()
            var timeout = 100
            for (feed, _, _) in itchFeeds { timeout = min(timeout, feed.pollTimeoutMilliseconds) }
            if jsonVenues.contains(where: { $0.connecting != nil }) { timeout = min(timeout, 10) }
            do {
                try poller.poll(timeoutMilliseconds: timeout)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            if poller.isReadable(wakeupIndex) { thread.wakeup.drain() }
            for (feed, index, retransmissionIndex) in itchFeeds {
                if poller.isReadable(index) { feed.readDatagrams(batch: batch, sink: self) }
                if poller.isReadable(retransmissionIndex) { feed.readRetransmissions(buffer: datagram, sink: self) }
                feed.recover(sink: self)
                // The retransmission connection comes and goes; keep the poller watching the current one.
                let descriptor = feed.retransmission?.descriptor ?? -1
                if descriptor >= 0 { poller.replace(retransmissionIndex, descriptor: descriptor) } else {
                    poller.disable(retransmissionIndex)
                }
            }
            for venue in jsonVenues where venue.connection != nil && poller.isReadable(venue.pollIndex) {
                readLines(venue, buffer: datagram)
            }
            if poller.isReadable(controlIndex) {
                try? control.serveWaiting { body in ControlCodec.respond(to: body, answer: answer) }
            }
            if poller.isReadable(replayIndex) { serveReplays() }
            if let zap, let zapIndex, poller.isReadable(zapIndex), zap.serveWaiting() > 0,
                let heldBack = curveRefusedLog.admit()
            {
                logger.warning("a client with an unknown CURVE key was refused",
                    metadata: zap.lastRefusal.mapValues { .string($0) }.merging(["not_logged": "\(heldBack)"]) { $1 })
            }
            rateIn.sample(total: messagesIn)
            rateOut.sample(total: published)
        }
        publisher.close()
        control.socket.close()
        replay.close()
        zap?.close()
        logger.info("feedd stopped", metadata: ["published": "\(published)", "dropped": "\(dropped)"])
    }

    // MARK: JSON venues

    /// Moves every JSON venue's connection along without blocking: starts the ones that are due, finishes the ones
    /// the kernel has made.
    func connectDueVenues() {
        let now = MonotonicClock.nowNanoseconds()
        for venue in jsonVenues where venue.connection == nil {
            do {
                if let attempt = venue.connecting {
                    guard try attempt.connectionEstablished() else { continue }
                    venue.connecting = nil
                    venue.connection = attempt
                    venue.connects += 1
                    venue.pending.removeAll(keepingCapacity: true)
                    venue.backoffNs = configuration.reconnectInitial.nanoseconds
                    poller.replace(venue.pollIndex, descriptor: attempt.raw)
                    logger.info("connected to JSON venue", metadata: ["venue": "\(venue.parser.venue)",
                        "address": "\(venue.address)"])
                } else if now >= venue.nextAttemptNs {
                    venue.connecting = try FileDescriptor.startTCPConnect(to: venue.address)
                }
            } catch {
                venue.connecting = nil
                scheduleReconnect(venue, now: now, reason: "\(error)")
            }
        }
    }

    /// Exponential backoff with full jitter, so that many feedds do not reconnect in step.
    func scheduleReconnect(_ venue: JSONVenue, now: UInt64, reason: String) {
        let delay = UInt64.random(in: (venue.backoffNs / 2)...max(venue.backoffNs, 1))
        venue.nextAttemptNs = now + delay
        venue.backoffNs = min(venue.backoffNs * 2, configuration.reconnectMaximum.nanoseconds)
        if venue.connects > 0 || venue.backoffNs >= configuration.reconnectMaximum.nanoseconds {
            logger.debug("JSON venue unreachable, retrying", metadata: ["venue": "\(venue.parser.venue)",
                "reason": "\(reason)", "retry_ms": "\(delay / 1_000_000)"])
        }
    }

    func readLines(_ venue: JSONVenue, buffer: UnsafeMutableRawBufferPointer) {
        guard let connection = venue.connection else { return }
        while true {
            let count: Int?
            do {
                count = try connection.readAvailable(into: buffer)
            } catch {
                disconnect(venue, reason: "\(error)")
                return
            }
            guard let count else { break }
            if count == 0 {
                disconnect(venue, reason: "closed by the venue")
                return
            }
            let receivedNs = WallClock.nowNanoseconds()
            venue.pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            var lineStart = 0
            venue.pending.withUnsafeBytes { pending in
                while let newline = pending[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
                    var line = UnsafeRawBufferPointer(rebasing: pending[lineStart..<newline])
                    if line.last == UInt8(ascii: "\r") { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
                    lineStart = newline + 1
                    guard !line.isEmpty else { continue }
                    venue.lines += 1
                    received += 1
                    do {
                        var tick = try venue.parser.parse(line: line)
                        tick.venueSequence = venue.lines
                        ticks.append(tick)
                        publish(&ticks, receivedNs: receivedNs)
                    } catch {
                        venue.malformed += 1
                        logBadInput(venue.parser.venue, "line \(venue.lines): \(error)")
                    }
                }
            }
            venue.pending.removeFirst(lineStart)
            if venue.pending.count > 1 << 20 {
                venue.malformed += 1
                logBadInput(venue.parser.venue, "a line longer than 1 MiB; dropped")
                venue.pending.removeAll(keepingCapacity: true)
            }
        }
    }

    func disconnect(_ venue: JSONVenue, reason: String) {
        logger.warning("JSON venue disconnected", metadata: ["venue": "\(venue.parser.venue)", "reason": "\(reason)"])
        venue.connection = nil
        poller.disable(venue.pollIndex)
        scheduleReconnect(venue, now: MonotonicClock.nowNanoseconds(), reason: reason)
    }

    // MARK: Publishing

    func publish(_ ticks: inout [Tick], receivedNs: UInt64) {
        // Through the buffer, each tick is stamped and encoded in place: through the array's subscript every field
        // write checked the array's uniqueness, and the encoder got a copy (a BOOK's bid and ask arrays retained
        // and released).
        ticks.withUnsafeMutableBufferPointer { ticks in
            for index in ticks.indices { stampAndPublish(&ticks[index], receivedNs: receivedNs) }
        }
        ticks.removeAll(keepingCapacity: true)
    }

    private func stampAndPublish(_ tick: inout Tick, receivedNs: UInt64) {
        streamSequence += 1
        tick.streamSequence = streamSequence
        tick.feedReceiveNs = receivedNs
        tick.feedTransmitNs = WallClock.nowNanoseconds()
        if tick.measuresLatency {
            exchangeToFeed.record(from: tick.exchangeTimestampNs, to: receivedNs)
            inFeed.record(from: receivedNs, to: tick.feedTransmitNs)
        }
        if tick.symbol.utf8.first == UInt8(ascii: "#") {
            // The feed's own topics (#SYS) are published under their name alone.
            topic.write(name: tick.symbol)
        } else {
            topic.write(symbol: tick.symbol, type: tick.type)
        }
        let topicBytes = topic.bytes
        let payload = encoder.encode(tick)
        do throws(ZMQError) {
            var sent = try publisher.send(topicBytes, more: true, dontWait: true)
            if sent { sent = try publisher.send(payload, dontWait: true) }
            if sent { published += 1 } else { dropped += 1 }
        } catch {
            dropped += 1
            logBadInput("publish", "\(error)")
        }
        // Kept for replay whether or not a subscriber took it: a restarted plant asks for exactly these.
        ring.store(sequence: streamSequence, topic: topicBytes, payload: payload)
    }

    // MARK: Replay

    /// Answers stream replay requests from DEALER peers: [identity, request] in, then [identity, topic, tick] per tick
    /// and [identity, "#END", SnapshotEnd] (Proto/control.proto).
    ///
    /// Bounded (DESIGN section 12): no answer carries more than `[feed] max_answer_ticks` (a cut answer's end is
    /// incomplete and says where to ask again from), and a turn serves at most `replayRequestsPerTurn` requests or
    /// that many ticks, so a flood of requests waits in libzmq's queue instead of holding up the venues.
    func serveReplays() {
        let answerLimit = UInt64(configuration.maxAnswerTicks)
        var sentThisTurn: UInt64 = 0
        var requestsThisTurn = 0
        while requestsThisTurn < Self.replayRequestsPerTurn, sentThisTurn < answerLimit,
            let frames = try? replay.receiveFrames(dontWait: true)
        {
            guard frames.count >= 2 else { continue }
            requestsThisTurn += 1
            let identity = frames[0]
            let end: SnapshotEnd
            switch ReplayRequest(decoding: frames[frames.count - 1]) {
            case let .streamReplay(from, maxCount):
                let bound = StreamReplayBound(maxCount: maxCount, answerLimit: answerLimit)
                let result = ring.forEach(from: from, maxCount: bound.limit) { _, topic, tick in
                    _ = try? replay.send(identity, more: true, dontWait: true)
                    _ = try? replay.send(topic, more: true, dontWait: true)
                    _ = try? replay.send(tick, dontWait: true)
                }
                sentThisTurn += result.count
                let cutError = bound.cutError(given: result.count, next: max(from, ring.firstSequence) + result.count,
                    newest: ring.lastSequence, setting: "[feed] max_answer_ticks")
                let error = result.complete
                    ? cutError ?? "" : "ticks before stream_seq \(ring.firstSequence) are no longer kept"
                end = SnapshotEnd(streamSequence: streamSequence, tickCount: result.count,
                    complete: result.complete && cutError == nil, error: error)
                replaysServed += 1
            case .snapshot, .symbolReplay:
                end = SnapshotEnd(streamSequence: streamSequence, tickCount: 0, complete: false,
                    error: "feedd serves stream replays only; ask plantd for snapshots")
            case nil:
                end = SnapshotEnd(streamSequence: streamSequence, tickCount: 0, complete: false,
                    error: "not a ControlRequest (Proto/control.proto)")
            }
            _ = try? replay.send(identity, more: true, dontWait: true)
            _ = try? replay.send(SnapshotEnd.topic, more: true, dontWait: true)
            _ = try? replay.send(end.encoded(), dontWait: true)
        }
    }

    /// Replay requests read per turn: the rest wait in libzmq's queue (its receive high-water mark, per peer).
    static let replayRequestsPerTurn = 32

    func logBadInput(_ source: String, _ problem: String) {
        if let heldBack = badInputLog.admit() {
            logger.warning("skipped bad input", metadata: ["source": "\(source)", "problem": "\(problem)",
                "similar_messages_not_logged": "\(heldBack)"])
        }
    }

    // MARK: Control

    func answer(_ request: ControlRequest) -> (any Encodable)? {
        switch request.cmd {
        case "status": return status()
        case "reload":
            // Its venues' sockets, books and recovery live as long as the process: feedd.toml counts at start only.
            return ReloadReply(file: "",
                error: "feedd reads its configuration only at start: restart it to apply changes")
        case "gaps":
            return FeedGapsReply(venues: itchFeeds.map { GapSummary($0.feed) },
                lost: itchFeeds.flatMap(\.feed.lostGaps), recent: itchFeeds.flatMap { $0.feed.gapEvents() })
        default: return nil
        }
    }

    /// JSON lines and ITCH messages taken in.
    var messagesIn: UInt64 { received + itchFeeds.reduce(0) { $0 + $1.feed.normalizer.counters.messages } }

    func status() -> DaemonStatus {
        var counters: [String: UInt64] = ["stream_seq": streamSequence, "replays_served": replaysServed,
            "replay_first_stream_seq": ring.firstSequence]
        if let zap { counters.merge(zap.counters) { $1 } }
        var gapsOpen: UInt64 = 0
        var gapsHealed: UInt64 = 0
        var gapsGivenUp: UInt64 = 0
        var messagesLost: UInt64 = 0
        for (feed, _, _) in itchFeeds {
            let stream = feed.stream.counters
            counters["\(feed.venue).messages"] = feed.normalizer.counters.messages
            counters["\(feed.venue).malformed"] = feed.malformed
            counters["\(feed.venue).unknown_types"] = feed.unknownTypes
            counters["\(feed.venue).foreign_datagrams"] = feed.foreignDatagrams
            counters["\(feed.venue).unknown_orders"] = feed.normalizer.counters.unknownOrder
            counters["\(feed.venue).bad_symbols"] = feed.normalizer.counters.badSymbols
            counters["\(feed.venue).duplicates"] = stream.duplicates
            counters["\(feed.venue).gaps"] = stream.gapsOpened
            counters["\(feed.venue).gaps_healed"] = stream.gapsHealed
            counters["\(feed.venue).gaps_given_up"] = feed.gapsGivenUp
            counters["\(feed.venue).messages_lost"] = feed.messagesLost
            counters["\(feed.venue).packets_refused"] = feed.gate.refusedPackets
            counters["\(feed.venue).packets_held_aside"] = UInt64(feed.gate.heldCandidates)
            counters["\(feed.venue).stream_moves_proven"] = feed.gate.provenChanges
            counters["\(feed.venue).retransmission_requests"] = stream.requests
            counters["\(feed.venue).held"] = UInt64(feed.stream.heldCount)
            counters["\(feed.venue).held_high_water"] = UInt64(stream.heldHighWater)
            counters["\(feed.venue).sessions_ended"] = feed.sessionsEnded
            counters["\(feed.venue).unknown_broken_trades"] = feed.normalizer.counters.unknownBrokenTrades
            if let retransmission = feed.retransmission {
                counters["\(feed.venue).retransmission_failures"] = retransmission.failures
                counters["\(feed.venue).retransmitted_packets"] = retransmission.packetsReceived
            }
            if let drops = feed.receiver.kernelDrops { counters["\(feed.venue).kernel_drops"] = drops }
            gapsOpen += feed.stream.hasOpenGap ? 1 : 0
            gapsHealed += stream.gapsHealed
            gapsGivenUp += feed.gapsGivenUp
            messagesLost += feed.messagesLost
        }
        for venue in jsonVenues {
            counters["\(venue.parser.venue).lines"] = venue.lines
            counters["\(venue.parser.venue).malformed"] = venue.malformed
            counters["\(venue.parser.venue).connected"] = venue.connection == nil ? 0 : 1
        }
        return DaemonStatus(
            daemon: "feedd", name: configuration.name, pid: getpid(),
            uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
            messagesIn: messagesIn,
            messagesOut: published, rateIn: rateIn.perSecond, rateOut: rateOut.perSecond,
            drops: dropped, gapsOpen: gapsOpen, gapsHealed: gapsHealed, gapsGivenUp: gapsGivenUp,
            messagesLost: messagesLost, counters: counters, latency: [exchangeToFeed, inFeed])
    }
}

/// The reply to `gaps` on feedd: per ITCH venue its gap counters, every gap given up (messages lost), and the recent
/// gaps with how each ended (the last 200 of each venue's session).
public struct FeedGapsReply: Codable, Sendable, Equatable {
    public var venues: [GapSummary]
    public var lost: [LostGap]
    public var recent: [GapEvent]?
}

public struct GapSummary: Codable, Sendable, Equatable {
    public var venue: String
    public var session: String
    public var nextSequence: UInt64
    public var open: Bool
    public var opened: UInt64
    public var healed: UInt64
    public var givenUp: UInt64
    public var messagesLost: UInt64
    public var retransmissionRequests: UInt64

    init(_ feed: ItchFeed) {
        let counters = feed.stream.counters
        venue = feed.venue
        session = feed.session?.description ?? ""
        nextSequence = feed.stream.expected
        open = feed.stream.hasOpenGap
        opened = counters.gapsOpened
        healed = counters.gapsHealed
        givenUp = counters.gapsGivenUp
        messagesLost = counters.messagesLost
        retransmissionRequests = counters.requests
    }
}
