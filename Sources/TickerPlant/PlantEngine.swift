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
    /// The file the configuration came from, read again on `reload` (nil: started from a value, nothing to reload).
    let configurationFile: String?

    public init(
        configuration: PlantConfiguration, context: ZMQContext, logger: Logger, configurationFile: String? = nil
    ) {
        self.configuration = configuration
        self.context = context
        self.logger = logger
        self.configurationFile = configurationFile
        thread = SocketThread(name: "plantd-\(configuration.name)")
    }

    public func start() throws {
        _ = try thread.startLoop { [self] _ in try PlantLoop(engine: self, context: context) }
    }

    /// Bound endpoints with ephemeral ports resolved: "publish", "control".
    public var endpoints: [String: String] { thread.boundEndpoints }

    public func stop() { thread.stop() }
}


final class PlantLoop: SocketLoop {
    /// Its `[filters]` change on `reload`; the rest is as the plant started.
    var configuration: PlantConfiguration
    let configurationFile: String?
    let logger: Logger
    let publisher: ZMQSocket
    let control: ControlResponder
    /// The snapshot/replay ROUTER (the Clone pattern's state request).
    let snapshots: ZMQSocket
    let snapshotIndex: Int
    /// With `[curve]`: lets listed client keys in, refuses and counts the others.
    let zap: ZAPHandler?
    var zapIndex: Int?
    var curveRefusedLog = LogRateLimiter(interval: .seconds(10))
    var snapshotsServed: UInt64 = 0
    /// Snapshots and replays refused for what they would cost (`AnswerLimits`, `[plant] max_answer_ticks`).
    var answersRefused: UInt64 = 0
    /// Answers cut because the peer's queue filled, and requests of peers whose queue was full refused unanswered.
    var answersCut: UInt64 = 0
    var answersToUnreadPeers: UInt64 = 0
    /// Snapshot peers whose queue was found full, and when: they get no more work until they read.
    var unreadPeers: [[UInt8]: UInt64] = [:]
    /// Requests of peers whose answer is being read from the journal, in the order asked (`AnswerLimits`), and
    /// those dropped because a peer had too many waiting.
    var requestsWaitingOn: [[UInt8]: [[UInt8]]] = [:]
    var requestsDropped: UInt64 = 0
    var answerRefusalLog = LogRateLimiter(interval: .seconds(10))
    /// The answer work of all peers together per second (`[plant] answer_ticks_per_second`).
    var answerBudget: AnswerBudget
    /// The latest published ticks as they went out, tagged with their symbol_seq: symbol and stream replays.
    var ring: TickRing
    /// Replays reaching back before the ring, read from the journal a slice per turn.
    var journalReplays: [JournalReplay] = []
    /// Large snapshots and symbol replays, taken whole when asked and sent a slice per turn, and their bytes.
    var heldAnswers: [HeldAnswer] = []
    var heldAnswerBytes = 0
    /// Where each answer is built (its storage kept from one to the next).
    var answerScratch = AnswerMessages()
    /// About a tenth of a millisecond of reading and sending per turn: the live stream waits no longer than that for
    /// a replay.
    static let journalSliceBytes = 1 << 17
    /// Where in the stream each symbol's symbol_seq 1, 1025, 2049 ... went out (with a journal): a symbol replay
    /// from the journal starts reading at the checkpoint before the symbol_seq it is asked for.
    var symbolCheckpoints: [[SymbolCheckpoint]] = []
    /// The latest market-wide status (#SYS) of each venue, part of a snapshot that asks for it.
    var lastSystemStatus: [String: Tick] = [:]
    var feeds: [Upstream] = []
    let poller = ZMQPoller()
    let wakeupIndex: Int
    let publisherIndex: Int
    let controlIndex: Int
    var boundEndpoints: [String: String] = [:]
    let started = MonotonicClock.nowNanoseconds()
    /// This process's session, in every heartbeat and snapshot end: a consumer that sees it change knows the plant
    /// restarted and joins again (its SUB may have missed what was published before it reconnected).
    let session = WallClock.nowNanoseconds()

    let encoder = TickEncoder()
    let topicMessage = ZMQMessage()
    let payloadMessage = ZMQMessage()
    var topic: [UInt8] = []
    var streamSequence: UInt64 = 0
    /// The monotonic time the tick being processed was taken in (read once per tick).
    var tickMonotonicNs: UInt64 = MonotonicClock.nowNanoseconds()
    /// The tick's plant_rx comes from that same reading (clock reads add up at a million ticks a second).
    var wallClock = WallClockFromMonotonic()
    /// The symbol table: one lookup per tick gives a symbol's number, which indexes its symbol_seq, its last values
    /// and the filters' and aggregator's state.
    var symbolIDs: [String: Int] = [:]
    /// The same for symbols of up to 8 bytes, keyed by their packed bytes (`TickWire.packedSymbol`): found from the
    /// payload without making a string.
    var shortSymbolIDs = IntegerKeyTable<Int>(minimumCapacity: 16_384)
    /// The live tick being read: reused, so its venue string and book arrays are too.
    var incoming = Tick(symbol: "", type: .trade, venue: "")
    var symbolNames: [String] = []
    var symbolSequenceOf: [UInt64] = []
    /// The stream_seq of each symbol's newest tick: its ticks in the replay ring are linked from there back.
    var newestStreamSequenceOf: [UInt64] = []
    /// The last-value cache: each symbol's last message of every (type, venue), the consolidated ones (venue CONS)
    /// among them, served to snapshots.
    var lastValues = LastValueCache()
    /// Each symbol's consolidated volume today (every venue's published trades), carried in `volume` of each TRADE;
    /// the day is the session date of `[journal] timezone`, and ends at its midnight.
    var dayVolumeOf: [UInt64] = []
    var volumeDayStartsNs: UInt64 = 0
    var volumeDayEndsNs: UInt64 = 0
    /// Each symbol's data quality as last published, and the feed that last brought it.
    var qualityOf: [DataQuality] = []
    var feedOfSymbol: [Int] = []
    /// Prefixes subscribed downstream and how many subscribers hold each.
    var subscriptions: [String: Int] = [:]
    var received: UInt64 = 0
    var published: UInt64 = 0
    var dropped: UInt64 = 0
    var malformed: UInt64 = 0
    /// Ticks refused at ingress for their symbol (`ingressProblem`).
    var refusedSymbols: UInt64 = 0
    var rateIn = RateMeter()
    var rateOut = RateMeter()
    var nextHeartbeat = MonotonicClock.nowNanoseconds()
    var badInputLog = LogRateLimiter()
    /// feedd's publish stamp to plantd's receipt, and receipt to publish, of every venue tick.
    var feedToPlant = LatencyBuckets(hop: "feedd -> plantd")
    var inPlant = LatencyBuckets(hop: "in plantd")
    var journalErrorLog = LogRateLimiter()
    var filters: TickFilters
    /// What the filters made of the latest tick; reused, so filtering allocates nothing per tick.
    var outcomes: [FilterOutcome] = []
    var aggregator: Aggregator
    /// The venues' BOOKs, at most one per (symbol, venue) every `[aggregation] book_interval`.
    var books: BookConflation
    /// What the aggregator derived (NBBO, bars, staleness), published after the tick that led to it.
    var derived: [Tick] = []
    /// The latest rejections of each symbol, newest last (`mktctl why`).
    var rejections: [String: [Rejection]] = [:]
    var quarantined: UInt64 = 0
    static let rejectionsKept = 20

    /// The messages of the current turn, journaled and then published together (`flushOutbound`).
    var outbound: OutboundBatch
    let journal: JournalWriter?
    var recoveryCounters: [String: UInt64] = [:]
    /// The feed, and its stream_seq, of the tick being processed: journaled with what it produces, so that a
    /// restarted plant knows where each feed stood. 0 for what the plant makes on its own.
    var currentFeedID: UInt32 = 0
    var currentFeedSequence: UInt64 = 0
    /// Ticks processed since the last flush: a long drain flushes every `flushEvery` so downstream never waits long.
    var unflushedTicks = 0
    static let flushEvery = 256

    init(engine: PlantEngine, context: ZMQContext) throws {
        configuration = engine.configuration
        configurationFile = engine.configurationFile
        logger = engine.logger
        filters = TickFilters(configuration: engine.configuration.filters)
        aggregator = Aggregator(configuration: engine.configuration.aggregation)
        books = BookConflation(intervalNs: engine.configuration.aggregation.bookIntervalNs)
        outcomes.reserveCapacity(8)
        outbound = OutboundBatch(checksummed: engine.configuration.journal.directory != nil)
        zap = try ZAPHandler.forDaemon(context: context, clientKeys: configuration.curve?.clientKeys,
            control: configuration.controlCurve)
        // The secret key was checked when the configuration was loaded.
        let curveSecret = configuration.curve.flatMap { CurveKeyPair.binary($0.secretKey) }
        publisher = try ZMQSocket(context, type: .extendedPublish)
        if let curveSecret { try publisher.setCurveServer(secretKey: curveSecret) }
        try publisher.setSendHighWaterMark(configuration.sendHighWaterMark)
        try publisher.setVerboseSubscriptions(true)
        try publisher.setMaximumMessageSize(maximumPeerMessageBytes)
        // No ZMQ_XPUB_NODROP: with it one subscriber that stopped reading made every send fail, and the stream
        // stopped for every consumer, edged included. Without it, a subscriber past the high-water mark loses its
        // own messages (libzmq counts them nowhere) and heals the gap by replay as any consumer does.
        try publisher.bind(configuration.publishEndpoint)
        boundEndpoints["publish"] = try publisher.lastEndpoint
        control = try ControlResponder(context: context, endpoint: configuration.controlEndpoint,
            curve: configuration.controlCurve)
        boundEndpoints["control"] = try control.socket.lastEndpoint
        snapshots = try ZMQSocket(context, type: .router)
        if let curveSecret { try snapshots.setCurveServer(secretKey: curveSecret) }
        // An answer is sent whole in one turn: the high-water mark holds two of the largest (a message a tick, and its
        // end: libzmq counts a message of several frames once), because libzmq tells the sender what its peer has
        // read only every half mark, so that one whole answer always fits once the peer has read the ones before.
        // A peer that asks and never reads holds at most that much of plantd's memory: past it,
        // ZMQ_ROUTER_MANDATORY makes the send say so, the answer is cut (`answers_cut`), and the peer gets no more
        // work until it reads (`answers_to_unread_peers`).
        try snapshots.setSendHighWaterMark(Int32(clamping: 2 * (configuration.maxAnswerTicks + 1)))
        try snapshots.setRouterMandatory(true)
        try snapshots.setMaximumMessageSize(maximumPeerMessageBytes)
        try snapshots.bind(configuration.snapshotEndpoint)
        boundEndpoints["snapshot"] = try snapshots.lastEndpoint
        ring = TickRing(capacity: configuration.replayTicks, linked: true)
        answerBudget = AnswerBudget(ticksPerSecond: configuration.answerTicksPerSecond,
            nowNs: MonotonicClock.nowNanoseconds())
        wakeupIndex = poller.add(descriptor: engine.thread.wakeup.descriptor)
        publisherIndex = try poller.add(publisher)
        controlIndex = try poller.add(control.socket)
        snapshotIndex = try poller.add(snapshots)
        if let zap { zapIndex = try poller.add(zap.socket) }
        for (index, endpoint) in configuration.feeds.enumerated() {
            let replay = index < configuration.replays.count ? configuration.replays[index] : nil
            // plantd is the feed's CURVE client with its own key pair (checked when the configuration was loaded).
            let feedKeys = configuration.feedServerKeys
            let curve = index < feedKeys.count
                ? configuration.curve.flatMap { CurveClientKeys(serverKey: feedKeys[index], secretKey: $0.secretKey) }
                : nil
            let feed = try Upstream(endpoint: endpoint, replayEndpoint: replay, context: context, poller: poller,
                receiveHighWaterMark: configuration.receiveHighWaterMark, curve: curve)
            feed.number = index
            feeds.append(feed)
        }
        if let directory = configuration.journal.directory {
            let recovery = try JournalRecovery(directory: directory, ringCapacity: configuration.replayTicks)
            journal = try JournalWriter(configuration: configuration.journal, directory: directory,
                nextIndex: recovery.nextSegmentIndex, checkpointsFrom: recovery.state)
            restore(from: recovery)
        } else {
            journal = nil
        }
        for feed in feeds { startCatchUp(feed) }
        logger.info("plantd publishing", metadata: ["publish": "\(boundEndpoints["publish"]!)",
            "snapshot": "\(boundEndpoints["snapshot"]!)", "control": "\(boundEndpoints["control"]!)",
            "feeds": "\(configuration.feeds)"])
    }

    func run(_ thread: SocketThread) {
        while !thread.isStopping {
            let now = MonotonicClock.nowNanoseconds()
            wallClock.refresh()
            if now >= nextHeartbeat {
                flushOutbound()
                publishHeartbeat()
                logJournalSyncErrors()
                nextHeartbeat = now + configuration.heartbeatInterval.nanoseconds
            }
            // The poll wakes for the next heartbeat or the next conflated BOOK due, whichever is first, and does not
            // wait at all while a replay is being read from the journal.
            let untilHeartbeat = nextHeartbeat - min(now, nextHeartbeat)
            let untilBook = books.nextDueInNs(nowNs: now) ?? untilHeartbeat
            // Answers wait while the answer budget is spent: the snapshot ROUTER is not watched (its requests wait
            // in libzmq's queue) and the poll wakes when there is budget again.
            answerBudget.refill(nowNs: now)
            let untilAnswers = answerBudget.nanosecondsUntilAvailable
            poller.setWatching(snapshotIndex, untilAnswers == 0)
            let wait = (journalReplays.isEmpty && heldAnswers.isEmpty) || untilAnswers > 0
                ? Int(min(untilHeartbeat, untilBook, untilAnswers > 0 ? untilAnswers : .max) / 1_000_000) + 1 : 0
            do {
                try poller.poll(timeoutMilliseconds: wait)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            // The budget as of now: what the poll's wait earned is spent from the full burst, never on top of it.
            answerBudget.refill(nowNs: MonotonicClock.nowNanoseconds())
            if poller.isReadable(wakeupIndex) { thread.wakeup.drain() }
            for feed in feeds {
                if poller.isReadable(feed.pollIndex) { drain(feed) }
                if let index = feed.replayPollIndex, poller.isReadable(index) { drainReplay(feed) }
                checkReplayTimeout(feed)
            }
            if poller.isReadable(publisherIndex) { readSubscriptions() }
            if poller.isReadable(controlIndex) {
                try? control.serveWaiting { body in ControlCodec.respond(to: body, answer: answer) }
            }
            // Also when the ROUTER was not watched (the budget was spent before the poll) and there is budget now:
            // requests are read first, so a held answer does not keep the others waiting until it ends.
            if poller.isReadable(snapshotIndex) || (untilAnswers > 0 && !answerBudget.isSpent) { serveSnapshots() }
            if let zap, let zapIndex, poller.isReadable(zapIndex), zap.serveWaiting() > 0,
                let heldBack = curveRefusedLog.admit()
            {
                logger.warning("a client with an unknown CURVE key was refused",
                    metadata: zap.lastRefusal.mapValues { .string($0) }.merging(["not_logged": "\(heldBack)"]) { $1 })
            }
            advanceHeldAnswers()
            advanceJournalReplays()
            currentFeedID = 0
            currentFeedSequence = 0
            tickMonotonicNs = MonotonicClock.nowNanoseconds()
            filters.expireHeld(nowNs: tickMonotonicNs, into: &outcomes)
            deliverOutcomes()
            publishDueBooks()
            aggregator.advance(wallNs: WallClock.nowNanoseconds(), nowNs: tickMonotonicNs, into: &derived)
            publishDerived()
            flushOutbound()
            rateIn.sample(total: received)
            rateOut.sample(total: published)
        }
        flushOutbound()
        for index in journalReplays.indices { journalReplays[index].cursor?.close() }
        journal?.close()
        publisher.close()
        control.socket.close()
        snapshots.close()
        zap?.close()
        for feed in feeds { feed.close() }
        logger.info("plantd stopped", metadata: ["published": "\(published)"])
    }

    /// Publishes what the filters let through and quarantines what they rejected, in the order they decided, each
    /// followed by what the aggregator derived from it.
    /// `admitted` is the tick just admitted (what `.passed` stands for) and `passedOn` its incoming encoding, which is
    /// what goes out, with the plant's fields spliced in, when the tick passed as it came.
    func deliverOutcomes(admitted: inout Tick, passedOn: UnsafeRawBufferPointer? = nil, symbolID: Int? = nil) {
        guard !outcomes.isEmpty else { return }
        for outcome in outcomes {
            switch outcome {
            case .passed:
                deliverPassed(&admitted, passedOn: passedOn, symbolID: symbolID)
            case .publish(var tick):
                publish(&tick, symbolID: symbolID)
                publishDerived()
            case let .quarantine(tick, rule, reason, enforced):
                quarantine(tick, rule: rule, reason: reason, enforced: enforced)
            }
        }
        outcomes.removeAll(keepingCapacity: true)
    }

    /// Publishes a tick the filters let through as it came (with what the aggregator derives from it); a BOOK waits
    /// for its conflation interval.
    func deliverPassed(_ admitted: inout Tick, passedOn: UnsafeRawBufferPointer?, symbolID: Int?) {
        if admitted.type == .book, let symbolID, !books.admit(admitted, symbolID: symbolID, nowNs: tickMonotonicNs) {
            return  // conflated: it, or a later book of its venue, goes out when the interval is up
        }
        // A `#` tick (a feed's #SYS status) comes without a symbol number: `process` gives it none.
        publish(&admitted, passedOn: passedOn, symbolID: symbolID)
        publishDerived()
    }

    /// Delivers outcomes that follow from no admitted tick (held jumps expiring).
    func deliverOutcomes() {
        var none = Tick(symbol: "", type: .trade, venue: "")
        deliverOutcomes(admitted: &none)
    }

    /// Publishes the conflated BOOKs whose interval is up (as the plant's own: their feed's position is journaled by
    /// the ticks that came after them).
    func publishDueBooks() {
        // `books` is being swept for the whole call: nothing the closure calls may touch it (a run-time trap).
        books.due(nowNs: tickMonotonicNs) { id, book in
            publish(&book, symbolID: id)
            publishDerived()
        }
    }

    /// Publishes the NBBO, bars and staleness the aggregator derived. A quality STATUS keeps the symbol's trading
    /// state, so a consumer reading either field of a STATUS is right.
    func publishDerived() {
        guard !derived.isEmpty else { return }
        for var tick in derived {
            tick.plantReceiveNs = WallClock.nowNanoseconds()
            if tick.type == .status && tick.state == .unspecified && !tick.symbol.hasPrefix("#") {
                tick.state = filters.tradingState(symbolID: symbolIDs[tick.symbol])
            }
            publish(&tick)
        }
        derived.removeAll(keepingCapacity: true)
    }

    /// Publishes a tick under its topic with the plant's sequences and stamps. `passedOn` is the tick's incoming
    /// encoding when the tick is exactly what came in: then the plant's four fields are spliced into those bytes
    /// instead of encoding the whole tick again.
    func publish(_ tick: inout Tick, passedOn: UnsafeRawBufferPointer? = nil, symbolID knownID: Int? = nil) {
        // A tick with a symbol number is a symbol's; only one without may be a `#` one.
        if knownID == nil && tick.symbol.utf8.first == UInt8(ascii: "#") {
            // A feed's own status (#SYS: a MoldUDP64 gap given up, a market-wide halt) passes on under its name,
            // outside symbol_seq.
            streamSequence += 1
            tick.streamSequence = streamSequence
            tick.plantTransmitNs = WallClock.nowNanoseconds()
            topic.removeAll(keepingCapacity: true)
            topic.append(contentsOf: tick.symbol.utf8)
            send(topic: topic, payload: encoder.encode(tick))
            if tick.symbol == Topic.system && tick.type == .status { lastSystemStatus[tick.venue] = tick }
            if tick.type == .status && tick.state == .halted { announceMarketHalt(tick) }
            return
        }
        let id = knownID ?? symbolID(tick.symbol)
        let symbolSequence = symbolSequenceOf[id] + 1
        symbolSequenceOf[id] = symbolSequence
        streamSequence += 1
        ring.link(streamSequence, toPrevious: newestStreamSequenceOf[id])
        newestStreamSequenceOf[id] = streamSequence
        tick.symbolSequence = symbolSequence
        tick.streamSequence = streamSequence
        tick.plantTransmitNs = WallClock.nowNanoseconds()
        if symbolSequence % SymbolCheckpoint.every == 1 && journal != nil {
            symbolCheckpoints[id].append(SymbolCheckpoint(symbolSequence: symbolSequence, streamSequence: streamSequence))
        }
        if tick.type == .trade && tick.venue != Venue.consolidated {
            tick.volume = addToDayVolume(tick.size, symbolID: id, nowNs: tick.plantTransmitNs)
        }
        if tick.feedTransmitNs != 0 && tick.measuresLatency {
            feedToPlant.record(from: tick.feedTransmitNs, to: tick.plantReceiveNs)
            inPlant.record(from: tick.plantReceiveNs, to: tick.plantTransmitNs)
        }
        if tick.venue != Venue.consolidated {
            aggregator.observe(tick, symbolID: id, nowNs: tickMonotonicNs, into: &derived)
        }
        Topic.write(symbol: tick.symbol, type: tick.type, into: &topic)
        if passedOn == nil || !spliceIntoOutbound(passedOn!, tick: tick, symbolSequence: symbolSequence) {
            send(topic: topic, payload: encoder.encode(tick), symbolSequence: symbolSequence)
        }
        outbound.withLastPayload { payload in
            lastValues.store(symbolID: id, type: tick.type, venue: tick.venue, symbolSequence: symbolSequence,
                payload: payload)
        }
    }

    /// Lays a passed-on tick's incoming bytes, with the plant's fields (stamps, sequences, day volume) replaced, straight into the turn's
    /// outbound batch under `topic`; false when its bytes could not be read (then the caller encodes it whole).
    func spliceIntoOutbound(_ passedOn: UnsafeRawBufferPointer, tick: Tick, symbolSequence: UInt64) -> Bool {
        let (receivedNs, transmittedNs, streamSequence) = (tick.plantReceiveNs, tick.plantTransmitNs, streamSequence)
        let volume = tick.volume
        let (feedID, feedSequence) = (currentFeedID, currentFeedSequence)
        return topic.withUnsafeBytes { topicBytes in
            outbound.append(streamSequence: streamSequence, symbolSequence: symbolSequence, feedID: feedID,
                feedSequence: feedSequence, topic: topicBytes,
                payloadAtMost: TickWire.maximumSplicedLength(passedOn.count)) { destination in
                try? TickWire.replacePlantFields(of: passedOn, plantReceiveNs: receivedNs,
                    plantTransmitNs: transmittedNs, streamSequence: streamSequence, symbolSequence: symbolSequence,
                    volume: volume, into: destination)
            }
        }
    }

    /// Adds a published trade's size to its symbol's day volume and returns the new total; a new session day starts
    /// every symbol from 0.
    func addToDayVolume(_ size: UInt64, symbolID id: Int, nowNs: UInt64) -> UInt64 {
        if nowNs >= volumeDayEndsNs { startVolumeDay(nowNs: nowNs) }
        dayVolumeOf[id] &+= size
        return dayVolumeOf[id]
    }

    /// Starts the session day holding `nowNs`: every day volume back to 0, and when the day ends.
    func startVolumeDay(nowNs: UInt64) {
        for index in dayVolumeOf.indices { dayVolumeOf[index] = 0 }
        let timezone = configuration.journal.timezone
        let midnight = sessionMidnightNanoseconds(timezone: timezone, now: Date(timeIntervalSince1970: Double(nowNs) / 1e9))
        volumeDayStartsNs = midnight
        // A day later, give or take a daylight-saving hour: ask the calendar for the midnight after.
        volumeDayEndsNs = sessionMidnightNanoseconds(timezone: timezone,
            now: Date(timeIntervalSince1970: Double(midnight) / 1e9 + 26 * 3600))
    }

    /// The number of a symbol in the symbol table, given one when it is new.
    func symbolID(_ symbol: String) -> Int {
        if let id = symbolIDs[symbol] { return id }
        let id = symbolNames.count
        symbolIDs[symbol] = id
        var utf8 = Array(symbol.utf8)
        if let key = utf8.withUnsafeBytes({ TickWire.packedSymbol($0) }) { shortSymbolIDs[key] = id }
        utf8.removeAll()
        symbolNames.append(symbol)
        symbolSequenceOf.append(0)
        newestStreamSequenceOf.append(0)
        lastValues.addSymbol()
        dayVolumeOf.append(0)
        symbolCheckpoints.append([])
        qualityOf.append(.ok)
        feedOfSymbol.append(-1)
        return id
    }

    /// A market-wide halt reaches every symbol's subscribers: a HALTED STATUS for each symbol seen so far (a
    /// consumer of `AAPL|` does not watch `#SYS`). Each symbol's own trading action ends it.
    func announceMarketHalt(_ halt: Tick) {
        for symbol in symbolNames.sorted() {
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
        send(topic: topic, payload: encoder.encode(tick))
        quarantined += 1
        var kept = rejections[tick.symbol, default: []]
        if kept.count == Self.rejectionsKept { kept.removeFirst() }
        kept.append(Rejection(atNs: tick.plantTransmitNs, rule: rule, enforced: enforced, reason: reason,
            type: rejected.type.description, venue: rejected.venue, price: rejected.price.description,
            size: rejected.size, streamSequence: tick.streamSequence))
        rejections[tick.symbol] = kept
    }

    /// The journal's fsync and checkpoint failures since the last heartbeat, logged at the journal's rate limit: the records were
    /// published, but a crash of the machine may lose them.
    func logJournalSyncErrors() {
        guard let journal else { return }
        for failure in journal.takeNewSyncErrors() {
            guard let heldBack = journalErrorLog.admit() else { continue }
            logger.error("journal not forced to disk", metadata: ["error": "\(failure)",
                "similar_messages_not_logged": "\(heldBack)"])
        }
        for failure in journal.takeNewCheckpointErrors() {
            guard let heldBack = journalErrorLog.admit() else { continue }
            logger.warning("journal checkpoint not made: a restart reads from an older one", metadata: [
                "error": "\(failure)", "similar_messages_not_logged": "\(heldBack)"])
        }
    }

    func publishHeartbeat() {
        var heartbeat = Tick(symbol: Topic.heartbeat, type: .status, venue: Venue.consolidated)
        heartbeat.streamSequence = streamSequence
        heartbeat.quality = .ok
        heartbeat.plantTransmitNs = WallClock.nowNanoseconds()
        heartbeat.plantSession = session
        topic.removeAll(keepingCapacity: true)
        topic.append(contentsOf: Topic.heartbeat.utf8)
        let payload = encoder.encode(heartbeat)
        _ = topic.withUnsafeBytes { publishNow(topic: $0, payload: payload) }
    }

    /// Queues one message for the XPUB: journaled and published by `flushOutbound`, with its stream_seq, its
    /// symbol_seq (0 for plant topics) and the feed it came from.
    func send(topic: [UInt8], payload: UnsafeRawBufferPointer, symbolSequence: UInt64 = 0) {
        topic.withUnsafeBytes { topicBytes in
            outbound.append(streamSequence: streamSequence, symbolSequence: symbolSequence, feedID: currentFeedID,
                feedSequence: currentFeedSequence, topic: topicBytes, payload: payload)
        }
    }

    /// Writes the turn's messages to the journal, then publishes them and keeps them for replays: a message is on
    /// disk (in the kernel's hands) before any consumer can see it, so a crash never leaves consumers ahead of the
    /// journal.
    func flushOutbound() {
        unflushedTicks = 0
        guard !outbound.isEmpty else { return }
        if let journal, !journal.append(outbound), let heldBack = journalErrorLog.admit() {
            // The ticks still go out: consumers are served, and a restart recovers less (counted in status).
            logger.error("journal write failed", metadata: ["error": "\(journal.lastError)",
                "similar_messages_not_logged": "\(heldBack)"])
        }
        outbound.forEach { record in
            ring.store(sequence: record.streamSequence, topic: record.topic, payload: record.payload,
                tag: record.symbolSequence)
            if publishNow(topic: record.topic, payload: record.payload) {
                let quarantined = record.topic.first == UInt8(ascii: "#")
                    && record.topic.starts(with: Topic.quarantinePrefix.utf8)
                if !quarantined { published += 1 }
            } else {
                dropped += 1
            }
        }
        outbound.removeAll()
    }

    /// Sends one message on the XPUB now; false when it could not go (the high-water mark, counted as a drop).
    func publishNow(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        do {
            guard try publisher.send(topic, more: true, dontWait: true) else { return false }
            return try publisher.send(payload, dontWait: true)
        } catch {
            return false
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
                "stream_seq": streamSequence, "symbols": UInt64(symbolNames.count), "malformed": malformed,
                "refused_symbols": refusedSymbols,
                "subscriptions": UInt64(subscriptions.values.reduce(0, +)),
            ]
            counters["quarantined"] = quarantined
            counters["books_conflated"] = books.conflated
            if let zap { counters.merge(zap.counters) { $1 } }
            // How many symbols stand at each quality now: `mktctl status` shows the worst.
            for quality in [DataQuality.ok, .stale, .gap, .recovering] {
                counters["symbols.\(quality.description.lowercased())"] = 0
            }
            for quality in qualityOf where quality != .unspecified {
                counters["symbols.\(quality.description.lowercased())", default: 0] += 1
            }
            counters["snapshots_served"] = snapshotsServed
            counters["answers_refused"] = answersRefused
            counters["answers_cut"] = answersCut
            counters["answers_to_unread_peers"] = answersToUnreadPeers
            counters["journal_replays_in_flight"] = UInt64(journalReplaysReading)
            counters["answers_held"] = UInt64(heldAnswers.count)
            counters["answers_held_bytes"] = UInt64(heldAnswerBytes)
            counters["requests_dropped"] = requestsDropped
            counters["replay_first_stream_seq"] = ring.firstSequence
            counters.merge(journal?.counters ?? [:]) { $1 }
            counters.merge(recoveryCounters) { $1 }
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
                counters["feed\(index + 1).replays"] = feed.replaysRequested
                counters["feed\(index + 1).replayed"] = feed.ticksReplayed
                counters["feed\(index + 1).lost"] = feed.ticksLost
                gaps += feed.sequence.gaps
            }
            return DaemonStatus(
                daemon: "plantd", name: configuration.name, pid: getpid(),
                uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
                messagesIn: received, messagesOut: published, rateIn: rateIn.perSecond, rateOut: rateOut.perSecond,
                drops: dropped, gapsOpen: gaps, counters: counters, latency: [feedToPlant, inPlant])
        case "gaps":
            return PlantGapsReply(gaps: feeds.flatMap(\.gaps))
        case "reload":
            return reload()
        case "subs":
            var published: [String: UInt64] = [:]
            for (id, symbol) in symbolNames.enumerated() where !symbol.hasPrefix("#") {
                published[symbol] = symbolSequenceOf[id]
            }
            return SubscriptionsReply(prefixes: subscriptions, published: published)
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
    /// Each symbol's ticks published so far (its last symbol_seq): two replies a second apart give its rate.
    public var published: [String: UInt64]?

    public init(prefixes: [String: Int], published: [String: UInt64]? = nil) {
        self.prefixes = prefixes
        self.published = published
    }
}

extension PlantLoop {
    /// Reads the configuration file again: `[filters]` takes effect now (each symbol's state kept); anything else
    /// that changed is named as needing a restart. A file with an error changes nothing.
    func reload() -> ReloadReply {
        guard let file = configurationFile else {
            return ReloadReply(file: "", error: "started without a configuration file: nothing to read again")
        }
        let new: PlantConfiguration
        do {
            new = try PlantConfiguration.load(file: file)
        } catch {
            logger.error("reload refused: the configuration has an error; nothing changed",
                metadata: ["error": "\(error.description)"])
            return ReloadReply(file: file, error: error.description)
        }
        var applied: [String] = []
        if new.filters != configuration.filters {
            filters.reconfigure(new.filters)
            configuration.filters = new.filters
            applied.append("[filters]")
        }
        let restart = PlantConfiguration.keysNeedingRestart(from: configuration, to: new)
        logger.notice("configuration reloaded", metadata: ["file": "\(file)", "applied": "\(applied)",
            "needs_restart": "\(restart)"])
        return ReloadReply(file: file, applied: applied, needsRestart: restart)
    }
}
