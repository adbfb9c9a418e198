import Foundation
import Logging
import MarketData
import ZeroMQ

/// One feedd as plantd sees it: its PUB (one SUB each, so each feed's stream_seq is checked on its own) and, when
/// configured, its replay ROUTER, from which the plant takes what it missed: after a restart (from where the
/// journal says the feed stood) and whenever the live stream shows a gap.
final class Upstream {
    let endpoint: String
    let feedID: UInt32
    let socket: ZMQSocket
    let pollIndex: Int
    let replayEndpoint: String?
    let replaySocket: ZMQSocket?
    let replayPollIndex: Int?
    var sequence = SequenceTracker()
    /// Reading the SUB waits while a replay fills what comes before its next message.
    var replaying = false
    var replayStartedNs: UInt64 = 0
    /// Ticks the replay being read brought so far: an answer cut at feedd's `max_answer_ticks` that brought some is
    /// followed by a request for the next part.
    var replayAnswerTicks: UInt64 = 0
    /// The live tick that showed a gap, processed once the replay before it is done.
    var stashed: Tick?
    /// The last stream_seq of this feed the journal holds (0: none), asked for from the next one on at start.
    var resumeAfter: UInt64 = 0
    /// Its place in the plant's feeds, which each symbol remembers (the feed that last brought it).
    var number = 0
    var replaysRequested: UInt64 = 0
    var ticksReplayed: UInt64 = 0
    var ticksLost: UInt64 = 0
    /// The last `gapsKept` gaps in this feed's stream_seq, oldest first: `mktctl gaps`.
    var gaps: [GapEvent] = []
    /// When the open one (the last of `gaps`) was noticed, monotonic.
    var openGapNs: UInt64 = 0
    static let gapsKept = 200

    /// ZMTP heartbeats on the links to feedd: a PING a second; three seconds without anything arriving and the
    /// connection is made again.
    static let heartbeatIntervalMs: Int32 = 1_000
    static let heartbeatTimeoutMs: Int32 = 3_000

    init(endpoint: String, replayEndpoint: String?, context: ZMQContext, poller: ZMQPoller,
        receiveHighWaterMark: Int32, curve: CurveClientKeys? = nil) throws
    {
        self.endpoint = endpoint
        self.replayEndpoint = replayEndpoint
        feedID = JournalFormat.feedID(endpoint)
        socket = try ZMQSocket(context, type: .subscribe)
        try socket.setReceiveHighWaterMark(receiveHighWaterMark)
        // A link that stops carrying anything (a firewall dropping the flow, a hung host) is noticed and made
        // again; the first live tick on the new connection shows the gap, which the replay fills.
        try socket.setHeartbeat(intervalMilliseconds: Self.heartbeatIntervalMs,
            timeoutMilliseconds: Self.heartbeatTimeoutMs)
        if let curve { try socket.setCurveClient(curve) }
        try socket.subscribe("")
        try socket.connect(endpoint)
        pollIndex = try poller.add(socket)
        if let replayEndpoint {
            let dealer = try ZMQSocket(context, type: .dealer)
            // A replay arrives as one burst; a small high-water mark would make the ROUTER drop part of it.
            try dealer.setReceiveHighWaterMark(0)
            try dealer.setHeartbeat(intervalMilliseconds: Self.heartbeatIntervalMs,
                timeoutMilliseconds: Self.heartbeatTimeoutMs)
            if let curve { try dealer.setCurveClient(curve) }
            try dealer.connect(replayEndpoint)
            replaySocket = dealer
            replayPollIndex = try poller.add(dealer)
        } else {
            replaySocket = nil
            replayPollIndex = nil
        }
    }

    func close() {
        socket.close()
        replaySocket?.close()
    }

    /// A gap noticed (or a catch-up begun: `through` 0 until it ends).
    func recordGap(from first: UInt64, through last: UInt64, healedBy: String, lost: UInt64) {
        openGapNs = MonotonicClock.nowNanoseconds()
        gaps.append(GapEvent(source: endpoint, stream: "stream_seq", firstSequence: first, lastSequence: last,
            openedAtNs: WallClock.nowNanoseconds(), durationNs: nil, healedBy: healedBy, messagesLost: lost))
        if gaps.count > Self.gapsKept { gaps.removeFirst(gaps.count - Self.gapsKept) }
    }

    /// The open gap ended: filled through `last`, or not.
    func closeGap(through last: UInt64, healedBy: String, lost: UInt64) {
        guard let index = gaps.indices.last, gaps[index].durationNs == nil else { return }
        if gaps[index].lastSequence == 0 { gaps[index].lastSequence = max(last, gaps[index].firstSequence) }
        gaps[index].durationNs = MonotonicClock.nowNanoseconds() - openGapNs
        gaps[index].healedBy = healedBy
        gaps[index].messagesLost = lost
    }
}

extension PlantLoop {
    /// How long a replay may go unanswered before the plant goes on without it (the gap is then counted as lost).
    static let replayTimeoutNs: UInt64 = 5_000_000_000

    /// At start: a feed the journal knows continues after its last journaled tick, from the feed's replay ROUTER.
    func startCatchUp(_ feed: Upstream) {
        guard feed.resumeAfter > 0 else { return }
        feed.sequence = SequenceTracker(expecting: feed.resumeAfter + 1)
        if feed.replaySocket != nil {
            requestReplay(feed, from: feed.resumeAfter + 1, count: 0)
            logger.info("catching up from feedd's replay", metadata: ["feed": "\(feed.endpoint)",
                "from_stream_seq": "\(feed.resumeAfter + 1)"])
        }
    }

    /// Asks the feed's replay ROUTER for `count` ticks (0: all it has) from `from`, and stops reading the live
    /// stream until they are in. `continuing`: the next part of a replay that feedd cut at its answer limit, within
    /// the gap already recorded.
    func requestReplay(_ feed: Upstream, from: UInt64, count: UInt64, continuing: Bool = false) {
        guard let dealer = feed.replaySocket else { return }
        _ = try? dealer.send(ReplayRequest.streamReplay(fromStreamSequence: from, maxCount: count).encoded(),
            dontWait: true)
        feed.replaying = true
        feed.replayStartedNs = MonotonicClock.nowNanoseconds()
        feed.replayAnswerTicks = 0
        guard !continuing else { return }
        feed.replaysRequested += 1
        feed.recordGap(from: from, through: count == 0 ? 0 : from + count - 1, healedBy: "open", lost: 0)
        poller.setWatching(feed.pollIndex, false)
        setQuality(.recovering, ofSymbolsFrom: feed, unless: .recovering,
            reason: "catching up from \(feed.endpoint)'s replay from stream_seq \(from)")
    }

    /// Takes what one feed has queued, in bounded batches so that other feeds and the control endpoint get turns.
    func drain(_ feed: Upstream) {
        defer { flushOutbound() }
        for _ in 0..<4096 where !feed.replaying {
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
            guard let knownID = decodePayload(feed, into: &incoming) else { continue }
            payloadMessage.withUnsafeBytes {
                process(&incoming, from: feed, live: true, passedOn: $0, symbolID: knownID >= 0 ? knownID : nil)
            }
            unflushedTicks += 1
            if unflushedTicks >= Self.flushEvery { flushOutbound() }
        }
    }

    /// Takes a replay's answer: its ticks in order, then the end that resumes the live stream.
    func drainReplay(_ feed: Upstream) {
        guard let dealer = feed.replaySocket else { return }
        defer { flushOutbound() }
        while let frames = try? dealer.receiveFrames(dontWait: true), frames.count >= 2 {
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                let end = SnapshotEnd(decoding: frames[1])
                // An answer cut at feedd's limit (`max_answer_ticks`) that brought some: the rest is asked for, up to
                // the live tick that waits (or all feedd has), before the live stream is read again.
                let expected = feed.sequence.expected
                if let end, !end.complete, feed.replayAnswerTicks > 0,
                    feed.stashed.map({ expected < $0.streamSequence }) ?? (expected <= end.streamSequence)
                {
                    requestReplay(feed, from: expected,
                        count: feed.stashed.map { $0.streamSequence - expected } ?? 0, continuing: true)
                    return
                }
                if end?.complete != true {
                    logger.warning("feedd could not replay all that was missed", metadata: ["feed": "\(feed.endpoint)",
                        "from_stream_seq": "\(feed.sequence.expected)", "error": "\(end?.error ?? "undecodable end")"])
                }
                finishReplay(feed, complete: end?.complete == true)
                return
            }
            received += 1
            var tick: Tick
            do {
                tick = try frames[1].withUnsafeBytes { bytes in
                    Result { () throws(TickDecodeError) -> Tick in try TickDecoder.decode(bytes) }
                }.get()
            } catch {
                malformed += 1
                continue
            }
            tick.plantReceiveNs = WallClock.nowNanoseconds()
            tickMonotonicNs = MonotonicClock.nowNanoseconds()
            // Past the stashed tick, the replay is ahead of where the live stream resumes: the rest comes live.
            if let stashed = feed.stashed, tick.streamSequence >= stashed.streamSequence { continue }
            feed.ticksReplayed += 1
            feed.replayAnswerTicks += 1
            frames[1].withUnsafeBytes { process(&tick, from: feed, live: false, passedOn: $0) }
            unflushedTicks += 1
            if unflushedTicks >= Self.flushEvery { flushOutbound() }
        }
    }

    /// Ends a replay: what it could not fill is lost (counted), the stashed live tick goes on, and the live stream
    /// is read again.
    func finishReplay(_ feed: Upstream, complete: Bool) {
        feed.replaying = false
        poller.setWatching(feed.pollIndex, true)
        // Caught up when the replay brought everything up to the live tick that waited (or, with none waiting, when
        // it said it was complete); otherwise processing that tick finds the rest lost and says GAP.
        let caughtUp = feed.stashed.map { feed.sequence.expected == $0.streamSequence } ?? complete
        let lost = feed.stashed.map { $0.streamSequence - min(feed.sequence.expected, $0.streamSequence) } ?? 0
        feed.closeGap(through: max(feed.sequence.expected, 1) - 1,
            healedBy: caughtUp ? "feedd replay" : lost > 0 ? "feedd replay, the rest lost" : "feedd replay, incomplete",
            lost: lost)
        if caughtUp {
            setQuality(.ok, ofSymbolsFrom: feed, only: .recovering, reason: "caught up")
        } else if feed.stashed == nil {
            setQuality(.gap, ofSymbolsFrom: feed, only: .recovering,
                reason: "\(feed.endpoint)'s replay did not bring all that was missed")
        }
        if var stashed = feed.stashed {
            feed.stashed = nil
            process(&stashed, from: feed, live: false)
        }
        flushOutbound()
    }

    /// A per-symbol quality change (DESIGN's STATUS: OK, STALE, GAP, RECOVERING) for every symbol `feed` brought,
    /// published as a STATUS that keeps the symbol's trading state, so that consumers know whether the prices they
    /// show can be trusted. `unless` skips symbols already in that quality; `only` takes only those in it.
    func setQuality(_ quality: DataQuality, ofSymbolsFrom feed: Upstream, unless skipped: DataQuality? = nil,
        only required: DataQuality? = nil, reason: String)
    {
        for id in symbolNames.indices where feedOfSymbol[id] == feed.number {
            if let skipped, qualityOf[id] == skipped { continue }
            if let required, qualityOf[id] != required { continue }
            setQuality(quality, symbolID: id, reason: reason)
        }
    }

    func setQuality(_ quality: DataQuality, symbolID id: Int, reason: String) {
        guard qualityOf[id] != quality else { return }
        qualityOf[id] = quality
        var status = Tick(symbol: symbolNames[id], type: .status, venue: Venue.consolidated)
        status.quality = quality
        status.state = filters.tradingState(symbolID: id)
        status.reason = reason
        status.plantReceiveNs = WallClock.nowNanoseconds()
        publish(&status, symbolID: id)
    }

    func checkReplayTimeout(_ feed: Upstream) {
        guard feed.replaying, MonotonicClock.nowNanoseconds() - feed.replayStartedNs > Self.replayTimeoutNs else {
            return
        }
        logger.error("feedd's replay did not answer; going on without it", metadata: ["feed": "\(feed.endpoint)",
            "replay": "\(feed.replayEndpoint ?? "")"])
        finishReplay(feed, complete: false)
    }

    /// Reads the live payload into `tick`; returns the symbol's number when the symbol table already knew it from
    /// the payload's leading bytes (-1 when not), nil when the payload is not a tick (counted, logged).
    func decodePayload(_ feed: Upstream, into tick: inout Tick) -> Int? {
        received += 1
        // One monotonic reading per tick serves the filters, the aggregator and plant_rx.
        tickMonotonicNs = MonotonicClock.nowNanoseconds()
        let receivedNs = wallClock.wallNanoseconds(atMonotonic: tickMonotonicNs)
        // The closure returns its error instead of throwing it: no reabstraction of a typed throw per tick.
        let decoded = payloadMessage.withUnsafeBytes { bytes -> Result<Int, TickDecodeError> in
            // The symbol's number from its bytes: no string made and hashed for a symbol seen before.
            var knownID = -1
            if let symbol = TickWire.leadingSymbol(bytes), let key = TickWire.packedSymbol(symbol),
                let id = shortSymbolIDs[key]
            {
                knownID = id
            }
            do throws(TickDecodeError) {
                try TickWire.decode(bytes, into: &tick, knownSymbol: knownID >= 0 ? symbolNames[knownID] : nil)
            } catch {
                return .failure(error)
            }
            return .success(knownID)
        }
        switch decoded {
        case let .success(knownID):
            tick.plantReceiveNs = receivedNs
            return knownID
        case let .failure(error):
            malformed += 1
            if let heldBack = badInputLog.admit() {
                logger.warning("skipped undecodable tick", metadata: ["feed": "\(feed.endpoint)",
                    "problem": "\(error)", "similar_messages_not_logged": "\(heldBack)"])
            }
            return nil
        }
    }

    /// One tick of a feed, in the feed's order: a duplicate is dropped; a live tick after a gap waits while the
    /// feed's replay fills the gap (when there is a replay endpoint); everything else goes through the filters.
    func process(
        _ tick: inout Tick, from feed: Upstream, live: Bool, passedOn: UnsafeRawBufferPointer? = nil,
        symbolID knownID: Int? = nil
    ) {
        let expected = feed.sequence.expected
        switch feed.sequence.observe(tick.streamSequence) {
        case let .gap(missing):
            if live && feed.replaySocket != nil {
                feed.sequence.rewind(to: expected, forgetting: missing)
                feed.stashed = tick
                requestReplay(feed, from: missing.lowerBound, count: missing.upperBound - missing.lowerBound + 1)
                return
            }
            feed.ticksLost += missing.upperBound - missing.lowerBound + 1
            if live {
                // No replay ROUTER to ask: lost as it was noticed.
                feed.recordGap(from: missing.lowerBound, through: missing.upperBound, healedBy: "lost (no replay)",
                    lost: missing.upperBound - missing.lowerBound + 1)
                feed.closeGap(through: missing.upperBound, healedBy: "lost (no replay)",
                    lost: missing.upperBound - missing.lowerBound + 1)
            }
            logger.warning("feed stream gap", metadata: ["feed": "\(feed.endpoint)",
                "missing": "\(missing.lowerBound)...\(missing.upperBound)"])
            setQuality(.gap, ofSymbolsFrom: feed,
                reason: "ticks \(missing.lowerBound)...\(missing.upperBound) of \(feed.endpoint) lost")
        case .duplicate:
            // Already published (a replay overlapping the live stream): counted by the tracker, not sent twice.
            return
        case .first, .inOrder, .reset:
            break
        }
        currentFeedID = feed.feedID
        currentFeedSequence = tick.streamSequence
        // A symbol seen before was checked when it was first seen: only a new one (or a `#` one) costs the check.
        let seenID = knownID ?? symbolIDs[tick.symbol]
        if seenID == nil, let problem = ingressProblem(with: tick.symbol) {
            refusedSymbols += 1
            if let heldBack = badInputLog.admit() {
                logger.warning("refused a tick at ingress", metadata: ["feed": "\(feed.endpoint)",
                    "symbol": "\(tick.symbol.debugDescription)", "problem": "\(problem)",
                    "similar_messages_not_logged": "\(heldBack)"])
            }
            return
        }
        let id = tick.symbol.utf8.first == UInt8(ascii: "#") ? nil : seenID ?? symbolID(tick.symbol)
        if let id {
            feedOfSymbol[id] = feed.number
            // A symbol that had a gap is whole again from its next tick on; one still recovering waits for the end.
            if qualityOf[id] == .gap { setQuality(.ok, symbolID: id, reason: "receiving again after a gap") }
        } else if tick.type == .status && tick.quality == .gap {
            // feedd gave a MoldUDP64 gap up: the venue's symbols have lost ticks.
            for index in symbolNames.indices where lastValues.has(symbolID: index, venue: tick.venue) {
                setQuality(.gap, symbolID: index, reason: tick.reason)
            }
        }
        if filters.admit(tick, symbolID: id, nowNs: tickMonotonicNs, into: &outcomes) {
            deliverPassed(&tick, passedOn: passedOn, symbolID: id)
        } else {
            deliverOutcomes(admitted: &tick, passedOn: passedOn, symbolID: id)
        }
    }

    /// Why a tick of a symbol the plant does not know yet is refused (DESIGN section 12), nil when it is taken: the
    /// symbol rules again (a feed of another make, or one that skipped them, must not break exact prefixes), `#`
    /// names other than a feed's `#SYS` (a feed must not speak as the plant: `#HB`, `#Q|`), and `max_symbols`.
    func ingressProblem(with symbol: String) -> String? {
        if symbol.utf8.first == UInt8(ascii: "#") {
            return symbol == Topic.system ? nil : "a feed may send only \(Topic.system) of the plant's own topics"
        }
        if let problem = SymbolRules.problem(with: symbol) { return problem }
        if symbolNames.count >= configuration.maxSymbols {
            return "the plant keeps at most \(configuration.maxSymbols) symbols ([plant] max_symbols)"
        }
        return nil
    }

    // MARK: Recovery

    /// Takes up where the journal ends: the stream and symbol sequences, the last values (and the filters' memory of
    /// them), the replay ring, and where each feed stood.
    func restore(from recovery: JournalRecovery) {
        let started = MonotonicClock.nowNanoseconds()
        streamSequence = recovery.streamSequence
        ring = recovery.ring
        startVolumeDay(nowNs: WallClock.nowNanoseconds())
        for value in recovery.lastValues {
            guard let tick = try? TickDecoder.decode(value.payload) else { continue }
            let id = symbolID(tick.symbol)
            value.payload.withUnsafeBytes { payload in
                lastValues.store(symbolID: id, type: tick.type, venue: tick.venue, symbolSequence: tick.symbolSequence,
                    payload: payload)
            }
            symbolSequenceOf[id] = max(symbolSequenceOf[id], tick.symbolSequence)
            // Each venue's last trade carries the symbol's day volume as it stood; today's go on from the largest.
            if tick.type == .trade && tick.venue != Venue.consolidated
                && (volumeDayStartsNs..<volumeDayEndsNs).contains(tick.plantTransmitNs)
            {
                dayVolumeOf[id] = max(dayVolumeOf[id], tick.volume)
            }
            filters.remember(tick, symbolID: id)
        }
        for (symbol, checkpoints) in recovery.symbolCheckpoints { symbolCheckpoints[symbolID(symbol)] = checkpoints }
        for (symbol, newest) in recovery.newestStreamSequenceOf { newestStreamSequenceOf[symbolID(symbol)] = newest }
        for feed in feeds { feed.resumeAfter = recovery.feedCursors[feed.feedID] ?? 0 }
        recoveryCounters = ["journal.recovered_records": recovery.records,
            "journal.recovered_records_read": recovery.recordsRead,
            "journal.recovered_segments": UInt64(recovery.segmentsRead.count),
            "journal.recovered_from_checkpoint": recovery.checkpoint == nil ? 0 : 1,
            "journal.damaged": recovery.damage == nil ? 0 : 1]
        var metadata: Logger.Metadata = ["records": "\(recovery.records)", "records_read": "\(recovery.recordsRead)",
            "segments_read": "\(recovery.segmentsRead.count)", "segments_kept": "\(recovery.segments.count)",
            "checkpoint": "\(recovery.checkpoint ?? "none")",
            "stream_seq": "\(streamSequence)", "symbols": "\(symbolNames.count)",
            "ms": "\((MonotonicClock.nowNanoseconds() - started) / 1_000_000)"]
        for refused in recovery.checkpointsRefused {
            logger.warning("journal checkpoint passed over: recovery reads further back", metadata: ["why": "\(refused)"])
        }
        if let damage = recovery.damage {
            metadata["damage"] = "\(damage)"
            if damage.isTornTail {
                logger.warning("journal recovered; its last record was cut short by a crash and removed", metadata: metadata)
            } else {
                logger.error("journal damaged: recovered up to the damage; the rest is set aside", metadata: metadata)
            }
        } else if recovery.records > 0 {
            logger.info("journal recovered", metadata: metadata)
        }
    }
}
