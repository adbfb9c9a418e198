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
    private let logger: Logger
    private let boundEndpoints = Mutex<[String: String]>([:])

    public init(configuration: FeedConfiguration, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
        thread = SocketThread(name: "feedd-\(configuration.name)")
    }

    /// Starts the loop; returns once sockets are bound (or throws what stopped them).
    public func start() throws {
        let endpoints = try thread.startLoop { [self] _ in try FeedLoop(engine: self, context: context) }
        boundEndpoints.withLock { $0 = endpoints }
    }

    /// The endpoints as bound (ephemeral ports resolved): keys "publish", "control".
    public var endpoints: [String: String] { boundEndpoints.withLock { $0 } }

    public func stop() { thread.stop() }

    fileprivate var log: Logger { logger }
}

/// The state of the loop, owned by the engine's thread.
private final class FeedLoop: SocketLoop {
    let configuration: FeedConfiguration
    let logger: Logger
    let publisher: ZMQSocket
    let control: ControlResponder
    let poller = ZMQPoller()
    var boundEndpoints: [String: String] = [:]
    let started = MonotonicClock.nowNanoseconds()

    // Publishing
    let encoder = TickEncoder()
    var topic: [UInt8] = []
    var streamSequence: UInt64 = 0
    var ticks: [Tick] = []
    var published: UInt64 = 0
    var dropped: UInt64 = 0
    var received: UInt64 = 0
    var rateIn = RateMeter()
    var rateOut = RateMeter()

    // Venues
    var itchVenues: [ItchVenue] = []
    var jsonVenues: [JSONVenue] = []
    let wakeupIndex: Int
    let controlIndex: Int
    var badInputLog = LogRateLimiter()

    final class ItchVenue {
        let venue: String
        let receiver: UDPReceiver
        let pollIndex: Int
        var normalizer: ItchNormalizer
        var session: MoldSession?
        var sequence = SequenceTracker()
        var malformed: UInt64 = 0
        var unknownTypes: UInt64 = 0

        init(venue: String, receiver: UDPReceiver, pollIndex: Int, normalizer: ItchNormalizer) {
            self.venue = venue
            self.receiver = receiver
            self.pollIndex = pollIndex
            self.normalizer = normalizer
        }
    }

    final class JSONVenue {
        let parser: JSONVenueParser
        let address: SocketAddress
        let pollIndex: Int
        var connection: FileDescriptor?
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
        logger = engine.log
        publisher = try ZMQSocket(context, type: .publish)
        try publisher.setSendHighWaterMark(configuration.sendHighWaterMark)
        try publisher.setNoDrop(true)
        try publisher.bind(configuration.publishEndpoint)
        boundEndpoints["publish"] = try publisher.lastEndpoint
        control = try ControlResponder(context: context, endpoint: configuration.controlEndpoint)
        boundEndpoints["control"] = try control.socket.lastEndpoint
        wakeupIndex = poller.add(descriptor: engine.thread.wakeup.descriptor)
        controlIndex = try poller.add(control.socket)
        for venue in configuration.venues {
            switch venue.source {
            case let .itch(host, port, _, interface):
                let receiver = try UDPReceiver(
                    address: try SocketAddress(host: host, port: port),
                    receiveBufferBytes: configuration.udpReceiveBufferBytes, multicastInterface: interface)
                if receiver.receiveBufferBytes < configuration.udpReceiveBufferBytes {
                    logger.warning(
                        "kernel granted a smaller UDP receive buffer than asked; raise net.core.rmem_max",
                        metadata: ["venue": "\(venue.venue)", "asked": "\(configuration.udpReceiveBufferBytes)",
                            "granted": "\(receiver.receiveBufferBytes)"])
                }
                boundEndpoints["udp:\(venue.venue)"] = "\(host):\(receiver.descriptor.localPort)"
                let index = poller.add(descriptor: receiver.descriptor.raw)
                itchVenues.append(ItchVenue(
                    venue: venue.venue, receiver: receiver, pollIndex: index,
                    normalizer: ItchNormalizer(venue: venue.venue,
                        sessionMidnightNs: sessionMidnightNanoseconds(timezone: venue.timezone))))
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
        while !thread.isStopping {
            connectDueVenues()
            do {
                try poller.poll(timeoutMilliseconds: 100)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            if poller.isReadable(wakeupIndex) { thread.wakeup.drain() }
            for venue in itchVenues where poller.isReadable(venue.pollIndex) {
                readDatagrams(venue, buffer: datagram)
            }
            for venue in jsonVenues where venue.connection != nil && poller.isReadable(venue.pollIndex) {
                readLines(venue, buffer: datagram)
            }
            if poller.isReadable(controlIndex) {
                try? control.serveWaiting { body in ControlCodec.respond(to: body, answer: answer) }
            }
            rateIn.sample(total: received)
            rateOut.sample(total: published)
        }
        publisher.close()
        control.socket.close()
        logger.info("feedd stopped", metadata: ["published": "\(published)", "dropped": "\(dropped)"])
    }

    // MARK: ITCH over MoldUDP64

    func readDatagrams(_ venue: ItchVenue, buffer: UnsafeMutableRawBufferPointer) {
        while let count = venue.receiver.receive(into: buffer) {
            let receivedNs = WallClock.nowNanoseconds()
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            do {
                let packet = try MoldPacket(bytes)
                if venue.session != packet.session {
                    if venue.session != nil {
                        logger.notice("MoldUDP64 session changed", metadata: ["venue": "\(venue.venue)",
                            "from": "\(venue.session!)", "to": "\(packet.session)"])
                    }
                    venue.session = packet.session
                    venue.sequence = SequenceTracker()
                }
                try packet.forEachMessage { sequence, message in
                    switch venue.sequence.observe(sequence) {
                    case .duplicate:
                        return
                    case let .gap(missing):
                        logger.warning("MoldUDP64 gap", metadata: ["venue": "\(venue.venue)",
                            "missing": "\(missing.lowerBound)...\(missing.upperBound)"])
                    case .first, .inOrder, .reset:
                        break
                    }
                    received += 1
                    do {
                        let decoded = try ItchDecoder.decode(message)
                        ticks.removeAll(keepingCapacity: true)
                        venue.normalizer.handle(decoded, venueSequence: sequence, into: &ticks)
                        publishTicks(receivedNs: receivedNs)
                    } catch {
                        if case FeedParseError.unknownMessageType = error { venue.unknownTypes += 1 } else { venue.malformed += 1 }
                        logBadInput(venue.venue, "\(error)")
                    }
                }
            } catch {
                venue.malformed += 1
                logBadInput(venue.venue, "\(error)")
            }
        }
    }

    // MARK: JSON venues

    func connectDueVenues() {
        let now = MonotonicClock.nowNanoseconds()
        for venue in jsonVenues where venue.connection == nil && now >= venue.nextAttemptNs {
            do {
                let connection = try FileDescriptor.connectTCP(to: venue.address)
                venue.connection = connection
                venue.connects += 1
                venue.pending.removeAll(keepingCapacity: true)
                venue.backoffNs = configuration.reconnectInitial.nanoseconds
                poller.replace(venue.pollIndex, descriptor: connection.raw)
                logger.info("connected to JSON venue", metadata: ["venue": "\(venue.parser.venue)",
                    "address": "\(venue.address)"])
            } catch {
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
                        ticks.removeAll(keepingCapacity: true)
                        ticks.append(tick)
                        publishTicks(receivedNs: receivedNs)
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

    func publishTicks(receivedNs: UInt64) {
        for index in ticks.indices {
            streamSequence += 1
            ticks[index].streamSequence = streamSequence
            ticks[index].feedReceiveNs = receivedNs
            ticks[index].feedTransmitNs = WallClock.nowNanoseconds()
            Topic.write(symbol: ticks[index].symbol, type: ticks[index].type, into: &topic)
            let payload = encoder.encode(ticks[index])
            do {
                let sent = try topic.withUnsafeBytes { topicBytes in
                    Result { () throws(ZMQError) -> Bool in
                        guard try publisher.send(topicBytes, more: true, dontWait: true) else { return false }
                        return try publisher.send(payload, dontWait: true)
                    }
                }.get()
                if sent { published += 1 } else { dropped += 1 }
            } catch {
                dropped += 1
                logBadInput("publish", "\(error)")
            }
        }
    }

    func logBadInput(_ source: String, _ problem: String) {
        if let heldBack = badInputLog.admit() {
            logger.warning("skipped bad input", metadata: ["source": "\(source)", "problem": "\(problem)",
                "similar_messages_not_logged": "\(heldBack)"])
        }
    }

    // MARK: Control

    func answer(_ request: ControlRequest) -> (any Encodable)? {
        guard request.cmd == "status" else { return nil }
        var counters: [String: UInt64] = ["stream_seq": streamSequence]
        var gaps: UInt64 = 0
        for venue in itchVenues {
            counters["\(venue.venue).messages"] = venue.normalizer.counters.messages
            counters["\(venue.venue).malformed"] = venue.malformed
            counters["\(venue.venue).unknown_types"] = venue.unknownTypes
            counters["\(venue.venue).unknown_orders"] = venue.normalizer.counters.unknownOrder
            counters["\(venue.venue).gaps"] = venue.sequence.gaps
            counters["\(venue.venue).duplicates"] = venue.sequence.duplicates
            gaps += venue.sequence.gaps
        }
        for venue in jsonVenues {
            counters["\(venue.parser.venue).lines"] = venue.lines
            counters["\(venue.parser.venue).malformed"] = venue.malformed
            counters["\(venue.parser.venue).connected"] = venue.connection == nil ? 0 : 1
        }
        return DaemonStatus(
            daemon: "feedd", name: configuration.name, pid: getpid(),
            uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
            messagesIn: received, messagesOut: published, rateIn: rateIn.perSecond, rateOut: rateOut.perSecond,
            drops: dropped, gapsOpen: gaps, gapsHealed: 0, counters: counters)
    }
}
