import Foundation
import Logging
import MarketData
import Synchronization
import ZeroMQ

/// plantd's per-tick work on one socket-owning thread: it takes every feedd's ticks, gives each symbol its
/// `symbol_seq`, keeps the last value of every (symbol, type), and republishes on an XPUB that tells it who watches
/// what. Heartbeats `#HB` carry the last stream_seq so an idle subscriber can tell a quiet market from a dead link.
public final class PlantEngine: Sendable {
    public let configuration: PlantConfiguration
    public let thread: SocketThread
    private let context: ZMQContext
    let logger: Logger

    public init(configuration: PlantConfiguration, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
        thread = SocketThread(name: "plantd-\(configuration.name)")
    }

    public func start() throws {
        _ = try thread.startLoop { [self] _ in try PlantLoop(engine: self, context: context) }
    }

    /// Bound endpoints with ephemeral ports resolved: "publish", "control".
    public var endpoints: [String: String] { thread.boundEndpoints }

    public func stop() { thread.stop() }
}

/// Key of the last-value cache.
struct CacheKey: Hashable {
    var symbol: String
    var type: TickType
}

private final class PlantLoop: SocketLoop {
    let configuration: PlantConfiguration
    let logger: Logger
    let publisher: ZMQSocket
    let control: ControlResponder
    /// The snapshot/replay ROUTER (the Clone pattern's state request).
    let snapshots: ZMQSocket
    let snapshotIndex: Int
    var snapshotsServed: UInt64 = 0
    /// The latest published ticks as they went out, tagged with their symbol_seq: symbol and stream replays.
    var ring: TickRing
    /// The latest market-wide status (#SYS), part of a snapshot that asks for it.
    var lastSystemStatus: Tick?
    var feeds: [Upstream] = []
    let poller = ZMQPoller()
    let wakeupIndex: Int
    let publisherIndex: Int
    let controlIndex: Int
    var boundEndpoints: [String: String] = [:]
    let started = MonotonicClock.nowNanoseconds()

    let encoder = TickEncoder()
    let topicMessage = ZMQMessage()
    let payloadMessage = ZMQMessage()
    var topic: [UInt8] = []
    var streamSequence: UInt64 = 0
    var symbolSequences: [String: UInt64] = [:]
    /// The last tick of every (symbol, type), served to snapshots.
    var lastValues: [CacheKey: Tick] = [:]
    /// Prefixes subscribed downstream and how many subscribers hold each.
    var subscriptions: [String: Int] = [:]
    var received: UInt64 = 0
    var published: UInt64 = 0
    var dropped: UInt64 = 0
    var malformed: UInt64 = 0
    var rateIn = RateMeter()
    var rateOut = RateMeter()
    var nextHeartbeat = MonotonicClock.nowNanoseconds()
    var badInputLog = LogRateLimiter()
    var filters: TickFilters
    /// What the filters made of the latest tick; reused, so filtering allocates nothing per tick.
    var outcomes: [FilterOutcome] = []
    /// The latest rejections of each symbol, newest last (`mktctl why`).
    var rejections: [String: [Rejection]] = [:]
    var quarantined: UInt64 = 0
    static let rejectionsKept = 20

    /// One SUB per feedd, so that each feed's stream_seq can be checked on its own.
    final class Upstream {
        let endpoint: String
        let socket: ZMQSocket
        let pollIndex: Int
        var sequence = SequenceTracker()

        init(endpoint: String, socket: ZMQSocket, pollIndex: Int) {
            self.endpoint = endpoint
            self.socket = socket
            self.pollIndex = pollIndex
        }
    }

    init(engine: PlantEngine, context: ZMQContext) throws {
        configuration = engine.configuration
        logger = engine.logger
        filters = TickFilters(configuration: engine.configuration.filters)
        outcomes.reserveCapacity(8)
        publisher = try ZMQSocket(context, type: .extendedPublish)
        try publisher.setSendHighWaterMark(configuration.sendHighWaterMark)
        try publisher.setVerboseSubscriptions(true)
        try publisher.setNoDrop(true)
        try publisher.bind(configuration.publishEndpoint)
        boundEndpoints["publish"] = try publisher.lastEndpoint
        control = try ControlResponder(context: context, endpoint: configuration.controlEndpoint)
        boundEndpoints["control"] = try control.socket.lastEndpoint
        snapshots = try ZMQSocket(context, type: .router)
        // A snapshot is sent whole in one turn: the high-water mark must hold the largest one.
        try snapshots.setSendHighWaterMark(10_000_000)
        try snapshots.bind(configuration.snapshotEndpoint)
        boundEndpoints["snapshot"] = try snapshots.lastEndpoint
        ring = TickRing(capacity: configuration.replayTicks)
        wakeupIndex = poller.add(descriptor: engine.thread.wakeup.descriptor)
        publisherIndex = try poller.add(publisher)
        controlIndex = try poller.add(control.socket)
        snapshotIndex = try poller.add(snapshots)
        for endpoint in configuration.feeds {
            let socket = try ZMQSocket(context, type: .subscribe)
            try socket.setReceiveHighWaterMark(configuration.receiveHighWaterMark)
            try socket.subscribe("")
            try socket.connect(endpoint)
            feeds.append(Upstream(endpoint: endpoint, socket: socket, pollIndex: try poller.add(socket)))
        }
        logger.info("plantd publishing", metadata: ["publish": "\(boundEndpoints["publish"]!)",
            "snapshot": "\(boundEndpoints["snapshot"]!)", "control": "\(boundEndpoints["control"]!)",
            "feeds": "\(configuration.feeds)"])
    }

    func run(_ thread: SocketThread) {
        while !thread.isStopping {
            let now = MonotonicClock.nowNanoseconds()
            if now >= nextHeartbeat {
                publishHeartbeat()
                nextHeartbeat = now + configuration.heartbeatInterval.nanoseconds
            }
            let wait = Int((nextHeartbeat - min(now, nextHeartbeat)) / 1_000_000) + 1
            do {
                try poller.poll(timeoutMilliseconds: wait)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            if poller.isReadable(wakeupIndex) { thread.wakeup.drain() }
            for feed in feeds where poller.isReadable(feed.pollIndex) { drain(feed) }
            if poller.isReadable(publisherIndex) { readSubscriptions() }
            if poller.isReadable(controlIndex) {
                try? control.serveWaiting { body in ControlCodec.respond(to: body, answer: answer) }
            }
            if poller.isReadable(snapshotIndex) { serveSnapshots() }
            filters.expireHeld(nowNs: MonotonicClock.nowNanoseconds(), into: &outcomes)
            deliverOutcomes()
            rateIn.sample(total: received)
            rateOut.sample(total: published)
        }
        publisher.close()
        control.socket.close()
        snapshots.close()
        for feed in feeds { feed.socket.close() }
        logger.info("plantd stopped", metadata: ["published": "\(published)"])
    }

    /// Takes what one feed has queued, in bounded batches so that other feeds and the control endpoint get turns.
    func drain(_ feed: Upstream) {
        for _ in 0..<4096 {
            do {
                guard try feed.socket.receive(into: topicMessage, dontWait: true) else { return }
                guard topicMessage.hasMore else {
                    malformed += 1
                    continue
                }
                _ = try feed.socket.receive(into: payloadMessage)
                while payloadMessage.hasMore { _ = try feed.socket.receive(into: payloadMessage) }
            } catch {
                if !error.isContextTerminated { logger.error("receive failed: \(error)") }
                return
            }
            received += 1
            let receivedNs = WallClock.nowNanoseconds()
            var tick: Tick
            do {
                tick = try payloadMessage.withUnsafeBytes { bytes in
                    Result { () throws(TickDecodeError) -> Tick in try TickDecoder.decode(bytes) }
                }.get()
            } catch {
                malformed += 1
                if let heldBack = badInputLog.admit() {
                    logger.warning("skipped undecodable tick", metadata: ["feed": "\(feed.endpoint)",
                        "problem": "\(error)", "similar_messages_not_logged": "\(heldBack)"])
                }
                continue
            }
            switch feed.sequence.observe(tick.streamSequence) {
            case let .gap(missing):
                logger.warning("feed stream gap", metadata: ["feed": "\(feed.endpoint)",
                    "missing": "\(missing.lowerBound)...\(missing.upperBound)"])
            case .duplicate:
                // Already published (a feed replayed what we had): counted by the tracker, not sent twice.
                continue
            case .first, .inOrder, .reset:
                break
            }
            tick.plantReceiveNs = receivedNs
            filters.admit(tick, nowNs: MonotonicClock.nowNanoseconds(), into: &outcomes)
            deliverOutcomes()
        }
    }

    /// Publishes what the filters let through and quarantines what they rejected, in the order they decided.
    func deliverOutcomes() {
        guard !outcomes.isEmpty else { return }
        for outcome in outcomes {
            switch outcome {
            case .publish(var tick):
                publish(&tick)
            case let .quarantine(tick, rule, reason, enforced):
                quarantine(tick, rule: rule, reason: reason, enforced: enforced)
            }
        }
        outcomes.removeAll(keepingCapacity: true)
    }

    func publish(_ tick: inout Tick) {
        if tick.symbol.utf8.first == UInt8(ascii: "#") {
            // A feed's own status (#SYS: a MoldUDP64 gap given up, a market-wide halt) passes on under its name,
            // outside symbol_seq.
            streamSequence += 1
            tick.streamSequence = streamSequence
            tick.plantTransmitNs = WallClock.nowNanoseconds()
            topic.removeAll(keepingCapacity: true)
            topic.append(contentsOf: tick.symbol.utf8)
            send(topic: topic, payload: encoder.encode(tick))
            if tick.symbol == Topic.system && tick.type == .status { lastSystemStatus = tick }
            if tick.type == .status && tick.state == .halted { announceMarketHalt(tick) }
            return
        }
        let symbolSequence = symbolSequences[tick.symbol, default: 0] + 1
        symbolSequences[tick.symbol] = symbolSequence
        streamSequence += 1
        tick.symbolSequence = symbolSequence
        tick.streamSequence = streamSequence
        tick.plantTransmitNs = WallClock.nowNanoseconds()
        lastValues[CacheKey(symbol: tick.symbol, type: tick.type)] = tick
        Topic.write(symbol: tick.symbol, type: tick.type, into: &topic)
        send(topic: topic, payload: encoder.encode(tick), tag: symbolSequence)
    }

    /// A market-wide halt reaches every symbol's subscribers: a HALTED STATUS for each symbol seen so far (a
    /// consumer of `AAPL|` does not watch `#SYS`). Each symbol's own trading action ends it.
    func announceMarketHalt(_ halt: Tick) {
        for symbol in symbolSequences.keys.sorted() {
            var status = Tick(symbol: symbol, type: .status, venue: halt.venue)
            status.state = .halted
            status.quality = .ok
            status.reason = halt.reason
            status.exchangeTimestampNs = halt.exchangeTimestampNs
            status.plantReceiveNs = halt.plantReceiveNs
            publish(&status)
        }
    }

    /// A rejected tick (or a shadow rule's copy) goes to `#Q|SYMBOL` with the rule and reason, never lost silently.
    func quarantine(_ rejected: Tick, rule: FilterRule, reason: String, enforced: Bool) {
        var tick = rejected
        tick.reason = "\(rule.rawValue)\(enforced ? "" : " (shadow)"): \(reason)"
        streamSequence += 1
        tick.streamSequence = streamSequence
        tick.plantTransmitNs = WallClock.nowNanoseconds()
        topic.removeAll(keepingCapacity: true)
        topic.append(contentsOf: Topic.quarantinePrefix.utf8)
        topic.append(contentsOf: tick.symbol.utf8)
        send(topic: topic, payload: encoder.encode(tick), counts: false)
        quarantined += 1
        var kept = rejections[tick.symbol, default: []]
        if kept.count == Self.rejectionsKept { kept.removeFirst() }
        kept.append(Rejection(atNs: tick.plantTransmitNs, rule: rule, enforced: enforced, reason: reason,
            type: rejected.type.description, venue: rejected.venue, price: rejected.price.description,
            size: rejected.size, streamSequence: tick.streamSequence))
        rejections[tick.symbol] = kept
    }

    func publishHeartbeat() {
        var heartbeat = Tick(symbol: Topic.heartbeat, type: .status, venue: Venue.consolidated)
        heartbeat.streamSequence = streamSequence
        heartbeat.quality = .ok
        heartbeat.plantTransmitNs = WallClock.nowNanoseconds()
        topic.removeAll(keepingCapacity: true)
        topic.append(contentsOf: Topic.heartbeat.utf8)
        let payload = encoder.encode(heartbeat)
        send(topic: topic, payload: payload, counts: false, heartbeat: true)
    }

    /// Sends one message on the XPUB. Every message but the heartbeat has a stream_seq and is kept in the ring,
    /// tagged with its symbol_seq (0 for plant topics).
    func send(topic: [UInt8], payload: UnsafeRawBufferPointer, counts: Bool = true, tag: UInt64 = 0,
        heartbeat: Bool = false)
    {
        if !heartbeat {
            topic.withUnsafeBytes { ring.store(sequence: streamSequence, topic: $0, payload: payload, tag: tag) }
        }
        do {
            let sent = try topic.withUnsafeBytes { topicBytes in
                Result { () throws(ZMQError) -> Bool in
                    guard try publisher.send(topicBytes, more: true, dontWait: true) else { return false }
                    return try publisher.send(payload, dontWait: true)
                }
            }.get()
            if sent {
                if counts { published += 1 }
            } else {
                dropped += 1
            }
        } catch {
            dropped += 1
        }
    }

    // MARK: Snapshot and replay

    /// Answers DEALER peers on the snapshot ROUTER: [identity, ControlRequest] in; [identity, topic, Tick] per tick
    /// and then [identity, "#END", SnapshotEnd] out. Served between ticks on the publishing thread, so a snapshot is
    /// atomic with respect to the stream: it holds exactly the ticks up to the stream_seq its end names.
    func serveSnapshots() {
        while let frames = try? snapshots.receiveFrames(dontWait: true), frames.count >= 2 {
            let identity = frames[0]
            var count: UInt64 = 0
            var complete = true
            var error = ""
            func reply(_ topic: [UInt8], _ payload: UnsafeRawBufferPointer) {
                _ = try? snapshots.send(identity, more: true, dontWait: true)
                _ = try? topic.withUnsafeBytes { try snapshots.send($0, more: true, dontWait: true) }
                _ = try? snapshots.send(payload, dontWait: true)
                count += 1
            }
            switch ReplayRequest(decoding: frames[frames.count - 1]) {
            case let .snapshot(prefix):
                let prefixBytes = Array(prefix.utf8)
                if let status = lastSystemStatus, Array(Topic.system.utf8).starts(with: prefixBytes) {
                    reply(Array(Topic.system.utf8), encoder.encode(status))
                }
                let keys = lastValues.keys.filter { key in
                    Array(Topic.make(symbol: key.symbol, type: key.type).utf8).starts(with: prefixBytes)
                }
                for key in keys.sorted(by: { ($0.symbol, lastValues[$0]!.symbolSequence)
                    < ($1.symbol, lastValues[$1]!.symbolSequence) })
                {
                    Topic.write(symbol: key.symbol, type: key.type, into: &topic)
                    reply(topic, encoder.encode(lastValues[key]!))
                }
            case let .symbolReplay(symbol, from):
                if let problem = SymbolRules.problem(with: symbol) {
                    complete = false
                    error = "symbol \"\(symbol)\": \(problem)"
                    break
                }
                let result = ring.forEach(topicPrefix: Array((symbol + "|").utf8), fromTag: from) { _, topic, tick in
                    tick.withUnsafeBytes { reply(topic, $0) }
                }
                // Complete when the ring reaches back to `from`, or nothing of the symbol was ever published from it.
                let start = max(from, 1)
                complete = result.oldestTag.map { $0 <= start } ?? ((symbolSequences[symbol] ?? 0) < start)
            case let .streamReplay(from, maxCount):
                let result = ring.forEach(from: from, maxCount: maxCount == 0 ? UInt64.max : maxCount) { _, topic, tick in
                    tick.withUnsafeBytes { reply(topic, $0) }
                }
                complete = result.complete
            case nil:
                complete = false
                error = "not a request this plantd knows (a ControlRequest of Proto/control.proto)"
            }
            let end = SnapshotEnd(streamSequence: streamSequence, tickCount: count, complete: complete, error: error)
            _ = try? snapshots.send(identity, more: true, dontWait: true)
            _ = try? snapshots.send(SnapshotEnd.topic, more: true, dontWait: true)
            _ = try? snapshots.send(end.encoded(), dontWait: true)
            snapshotsServed += 1
        }
    }

    /// XPUB hands over each subscribe (first byte 1) and unsubscribe (0) with its prefix.
    func readSubscriptions() {
        while let frames = try? publisher.receiveFrames(dontWait: true), let frame = frames.first, !frame.isEmpty {
            let prefix = String(decoding: frame.dropFirst(), as: UTF8.self)
            if frame[0] == 1 {
                subscriptions[prefix, default: 0] += 1
            } else if frame[0] == 0 {
                let remaining = subscriptions[prefix, default: 1] - 1
                subscriptions[prefix] = remaining > 0 ? remaining : nil
            }
        }
    }

    func answer(_ request: ControlRequest) -> (any Encodable)? {
        switch request.cmd {
        case "status":
            var counters: [String: UInt64] = [
                "stream_seq": streamSequence, "symbols": UInt64(symbolSequences.count), "malformed": malformed,
                "subscriptions": UInt64(subscriptions.values.reduce(0, +)),
            ]
            counters["quarantined"] = quarantined
            counters["snapshots_served"] = snapshotsServed
            counters["replay_first_stream_seq"] = ring.firstSequence
            let filterCounters = filters.counters
            for rule in FilterRule.allCases {
                counters["filter.\(rule.rawValue).rejected"] = filterCounters.rejected[rule, default: 0]
                counters["filter.\(rule.rawValue).shadowed"] = filterCounters.shadowed[rule, default: 0]
            }
            counters["filter.price.held"] = filterCounters.held
            counters["filter.price.jumps_confirmed"] = filterCounters.jumpsConfirmed
            var gaps: UInt64 = 0
            for (index, feed) in feeds.enumerated() {
                counters["feed\(index + 1).gaps"] = feed.sequence.gaps
                counters["feed\(index + 1).missing"] = feed.sequence.missingMessages
                counters["feed\(index + 1).duplicates"] = feed.sequence.duplicates
                gaps += feed.sequence.gaps
            }
            return DaemonStatus(
                daemon: "plantd", name: configuration.name, pid: getpid(),
                uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
                messagesIn: received, messagesOut: published, rateIn: rateIn.perSecond, rateOut: rateOut.perSecond,
                drops: dropped, gapsOpen: gaps, counters: counters)
        case "subs":
            return SubscriptionsReply(prefixes: subscriptions)
        case "why":
            guard let symbol = request.symbol, !symbol.isEmpty else { return ControlErrorReply(error: "why: give a symbol") }
            return WhyReply(symbol: symbol, rejections: (rejections[symbol] ?? []).reversed(),
                modes: Dictionary(uniqueKeysWithValues: FilterRule.allCases.map {
                    ($0.rawValue, configuration.filters.mode($0).rawValue)
                }))
        default:
            return nil
        }
    }
}

/// One tick a rule rejected (or, in shadow mode, would have).
public struct Rejection: Codable, Sendable, Equatable {
    public var atNs: UInt64
    public var rule: FilterRule
    /// False for a shadow rule: the tick went on, a copy went to quarantine.
    public var enforced: Bool
    public var reason: String
    public var type: String
    public var venue: String
    public var price: String
    public var size: UInt64
    /// The quarantine message's stream_seq on plantd's PUB.
    public var streamSequence: UInt64
}

/// The reply to `why` on plantd: the symbol's latest rejections, newest first, and how each rule runs.
public struct WhyReply: Codable, Sendable, Equatable {
    public var symbol: String
    public var rejections: [Rejection]
    public var modes: [String: String]
}

/// The reply to `subs` on plantd: each prefix subscribed downstream and how many subscribers hold it.
public struct SubscriptionsReply: Codable, Sendable, Equatable {
    public var prefixes: [String: Int]
}
