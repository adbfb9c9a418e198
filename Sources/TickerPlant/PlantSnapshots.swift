import MarketData
import ZeroMQ

extension PlantLoop {
    // MARK: Snapshot and replay

    /// Answers DEALER peers on the snapshot ROUTER: [identity, ControlRequest] in; [identity, topic, Tick] per tick
    /// and then [identity, "#END", SnapshotEnd] out. Served between ticks on the publishing thread, so a snapshot is
    /// atomic with respect to the stream: it holds exactly the ticks up to the stream_seq its end names.
    ///
    /// What a peer can make plantd do is bounded (DESIGN section 12, `AnswerLimits`): at most `requestsPerTurn`
    /// requests, or `ticksPerTurn` ticks (one answer whole), per turn (the rest wait in libzmq's queue, bounded by its
    /// receive high-water mark per peer); no answer carries more than `max_answer_ticks`; journal replays in flight
    /// are bounded per peer and in all.
    func serveSnapshots() {
        flushOutbound()
        var sentThisTurn: UInt64 = 0
        var requestsThisTurn = 0
        while requestsThisTurn < AnswerLimits.requestsPerTurn, sentThisTurn < AnswerLimits.ticksPerTurn,
            !answerBudget.isSpent, let frames = try? snapshots.receiveFrames(dontWait: true)
        {
            requestsThisTurn += 1
            answerBudget.spend(AnswerLimits.tokensPerRequest)
            guard frames.count >= 2 else { continue }
            let identity = frames[0]
            // A peer's answers go out one after another, each whole, in the order asked: while one is read from
            // the journal, the peer's later requests wait for it.
            if let waiting = requestsWaitingOn[identity] {
                guard waiting.count < AnswerLimits.waitingRequestsPerPeer else {
                    requestsDropped += 1
                    if let heldBack = answerRefusalLog.admit() {
                        logger.warning("a peer asked more without waiting for its answers; request dropped",
                            metadata: ["waiting": "\(waiting.count)", "similar_refusals_not_logged": "\(heldBack)"])
                    }
                    continue
                }
                requestsWaitingOn[identity]!.append(frames[frames.count - 1])
                continue
            }
            sentThisTurn += answer(frames[frames.count - 1], to: identity)
        }
    }

    /// Answers one request of `identity` now, or holds it to be sent over the next turns, or starts its answer from
    /// the journal (the peer's later requests then wait for it in `requestsWaitingOn`). Spends the answer budget on
    /// what it sent, and returns the ticks it took (sent or held): one turn takes at most one large answer.
    @discardableResult
    func answer(_ body: [UInt8], to identity: [UInt8]) -> UInt64 {
        // A peer that has not read what it was sent gets no more work: its request is refused at the cost of one
        // send, which goes only once it has room again (and then it is served as before).
        if unreadPeers[identity] != nil {
            answersToUnreadPeers += 1
            answerBudget.spend(1)
            if sendEnd(to: identity, count: 0, complete: false, error: "the answers sent before are still unread "
                + "(the queue for this peer is full): read them, then ask again")
            {
                unreadPeers[identity] = nil
            }
            return 0
        }
        let answerLimit = UInt64(configuration.maxAnswerTicks)
        var complete = true
        var error = ""
        // The answer is taken whole first (it is exactly the state as of now), then sent at once when small, or
        // held and sent a slice a turn when large.
        answerScratch.removeAll()
        func reply(_ topic: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) {
            answerScratch.append(topic: topic, payload: payload)
        }
        func reply(_ topic: [UInt8], _ payload: UnsafeRawBufferPointer) {
            topic.withUnsafeBytes { reply($0, payload) }
        }
        func refuse(_ why: String) {
            complete = false
            error = why
            answersRefused += 1
            if let heldBack = answerRefusalLog.admit() {
                logger.warning("a snapshot or replay refused", metadata: ["why": "\(why)",
                    "similar_refusals_not_logged": "\(heldBack)"])
            }
        }
        switch ReplayRequest(decoding: body) {
        case let .snapshot(prefix):
            let prefixBytes = Array(prefix.utf8)
            let statuses = Array(Topic.system.utf8).starts(with: prefixBytes)
                ? lastSystemStatus.sorted(by: { $0.key < $1.key }) : []
            let matching = cachedValues(under: prefix)
            guard statuses.count + matching.count <= configuration.maxAnswerTicks else {
                refuse("the snapshot of \"\(prefix)\" holds \(statuses.count + matching.count) values, more "
                    + "than an answer carries ([plant] max_answer_ticks \(answerLimit)): ask for narrower prefixes")
                break
            }
            for (_, status) in statuses { reply(Array(Topic.system.utf8), encoder.encode(status)) }
            for (symbol, entry) in matching {
                Topic.write(symbol: symbol, type: entry.type, into: &topic)
                lastValues.withPayload(of: entry) { reply(topic, $0) }
            }
        case let .symbolReplay(symbol, from):
            if let problem = SymbolRules.problem(with: symbol) {
                complete = false
                error = "symbol \"\(symbol)\": \(problem)"
                break
            }
            let prefix = Array((symbol + "|").utf8)
            let start = max(from, 1)
            // A symbol never published, or a symbol_seq beyond the next one: the asker's history is not this
            // plant's (a typo, or numbers from before a restart without a journal). Told, so that it starts
            // afresh from a snapshot instead of taking an empty answer for "nothing missed".
            guard let knownID = symbolIDs[symbol] else {
                complete = false
                error = "unknown symbol \"\(symbol)\": nothing of it was ever published here"
                break
            }
            let published = symbolSequenceOf[knownID]
            guard start <= published + 1 else {
                complete = false
                error = "symbol_seq \(start) of \(symbol) is ahead of the last one published, \(published)"
                break
            }
            // Nothing published after what the asker has (edged checks its quiet symbols this way after a gap in
            // its stream): complete and empty at once, without a walk of the ring.
            if start == published + 1 { break }
            // A symbol's ticks are numbered without a hole, so what the answer would carry is known before any
            // of it is read: more than an answer carries, and the asker takes a snapshot instead.
            guard published - start < answerLimit else {
                refuse("\(published - start + 1) updates of \(symbol) from symbol_seq \(start), more than an "
                    + "answer carries ([plant] max_answer_ticks \(answerLimit)): take a snapshot")
                break
            }
            // The ring reaches back to `start`, or nothing of the symbol was ever published from it: served now.
            // Otherwise the journal serves it from the symbol's checkpoint before `start`, over several turns.
            // The symbol's own ticks are walked, newest first, not every tick the ring keeps.
            let chain = ring.chain(from: newestStreamSequenceOf[knownID], fromTag: start)
            if published >= start && chain.oldestTag.map({ $0 > start }) ?? true,
                let directory = configuration.journal.directory
            {
                if let busy = journalReplayRefusal() {
                    refuse(busy)
                    break
                }
                let checkpoint = symbolCheckpoints[knownID].last { $0.symbolSequence <= start }?.streamSequence ?? 0
                journalReplays.append(JournalReplay(identity: identity, kind: .symbol(prefix: prefix, id: knownID),
                    from: start, cursor: JournalCursor(directory: directory, from: checkpoint)))
                requestsWaitingOn[identity] = []
                return 0
            }
            ring.forEach(chain.sequences) { _, topic, tick in
                if topic.starts(with: prefix) { reply(topic, tick) }
            }
            complete = chain.oldestTag.map { $0 <= start } ?? (published < start)
        case let .streamReplay(from, maxCount):
            // "All" (0) and anything past the limit are cut at it; the asker goes on from where the answer
            // ended, as its end says.
            let bound = StreamReplayBound(maxCount: maxCount, answerLimit: answerLimit)
            if from > 0 && from <= streamSequence && (ring.firstSequence == 0 || from < ring.firstSequence),
                let directory = configuration.journal.directory
            {
                if let busy = journalReplayRefusal() {
                    refuse(busy)
                    break
                }
                journalReplays.append(JournalReplay(identity: identity,
                    kind: .stream(bound), from: from,
                    cursor: JournalCursor(directory: directory, from: from)))
                requestsWaitingOn[identity] = []
                return 0
            }
            // More than a turn's worth from the ring goes out in slices, as a journal replay does, so that the live
            // stream never waits behind a whole answer (100 000 ticks held the loop 20-50 ms).
            let start = max(from, ring.firstSequence)
            if from > 0, ring.lastSequence >= start,
                min(ring.lastSequence - start + 1, bound.limit) > AnswerLimits.ticksSentAtOnce
            {
                let replay = JournalReplay(identity: identity, kind: .stream(bound), from: from, cursor: nil)
                replay.ringNext = start
                journalReplays.append(replay)
                requestsWaitingOn[identity] = []
                return 0
            }
            let result = ring.forEach(from: from, maxCount: bound.limit) { _, topic, tick in reply(topic, tick) }
            complete = result.complete
            if complete, let cutError = bound.cutError(given: result.count,
                next: max(from, ring.firstSequence) + result.count, newest: ring.lastSequence,
                setting: JournalReplay.answerLimitSetting)
            {
                complete = false
                error = cutError
            }
        case nil:
            complete = false
            error = "not a request this plantd knows (a ControlRequest of Proto/control.proto)"
        }
        if answerScratch.count > AnswerLimits.ticksSentAtOnce {
            guard heldAnswerBytes + answerScratch.bytes.count <= AnswerLimits.heldAnswerBytesInAll else {
                refuse("busy: \(heldAnswerBytes) bytes of answers are being sent (at most "
                    + "\(AnswerLimits.heldAnswerBytesInAll) at once): ask again later")
                sendEnd(to: identity, count: 0, complete: false, error: error)
                answerBudget.spend(1)
                return 0
            }
            let held = HeldAnswer(identity: identity, messages: answerScratch, streamSequence: streamSequence,
                complete: complete, error: error)
            answerScratch = AnswerMessages()
            heldAnswerBytes += held.heldBytes
            heldAnswers.append(held)
            requestsWaitingOn[identity] = []
            answerBudget.spend(1)
            return held.messages.count
        }
        var cut = false
        let taken = answerScratch.take(upTo: .max) { topic, payload in
            cut = !replyTick(to: identity, topic: topic, payload: payload)
            return !cut
        }
        let count = cut ? taken - 1 : taken
        if cut {
            answersCut += 1
            complete = false
            error = Self.cutReason
        }
        sendEnd(to: identity, count: count, complete: complete, error: error)
        answerBudget.spend(count + 1)
        return count
    }

    static let cutReason = "cut: the queue for this peer filled (it reads too slowly); ask again from the last tick read"

    /// `identity`'s answer from the journal has ended: its requests that waited are answered in order, until one
    /// is read from the journal again.
    func answerWaitingRequests(of identity: [UInt8]) {
        guard var waiting = requestsWaitingOn.removeValue(forKey: identity) else { return }
        while !waiting.isEmpty {
            answer(waiting.removeFirst(), to: identity)
            if requestsWaitingOn[identity] != nil {
                requestsWaitingOn[identity] = waiting
                return
            }
        }
    }

    /// The last values under `prefix`, symbols in name order and each symbol's in the order they were published.
    /// A prefix that names a whole symbol (`AAPL|`, `AAPL|T`: what edged and most consumers ask) is looked up, not
    /// found by a walk of every symbol.
    func cachedValues(under prefix: String) -> [(symbol: String, entry: LastValueCache.Entry)] {
        let prefixBytes = Array(prefix.utf8)
        var matching: [(symbol: String, entry: LastValueCache.Entry)] = []
        func take(_ id: Int) {
            for entry in lastValues.entriesOf[id] {
                Topic.write(symbol: symbolNames[id], type: entry.type, into: &topic)
                if topic.starts(with: prefixBytes) { matching.append((symbolNames[id], entry)) }
            }
        }
        if let bar = prefix.firstIndex(of: "|") {
            guard let id = symbolIDs[String(prefix[..<bar])], id < lastValues.entriesOf.count else { return [] }
            take(id)
        } else {
            for id in lastValues.entriesOf.indices { take(id) }
        }
        matching.sort { ($0.symbol, $0.entry.symbolSequence) < ($1.symbol, $1.entry.symbolSequence) }
        return matching
    }

    /// Why one more replay from the journal is not started (nil: it is): each holds a cursor and its buffer (about
    /// 2 MiB) until it ends.
    func journalReplayRefusal() -> String? {
        let reading = journalReplaysReading
        guard reading >= AnswerLimits.journalReplaysInAll else { return nil }
        return "busy: \(reading) replays are being read from the journal (at most "
            + "\(AnswerLimits.journalReplaysInAll) at once): ask again later"
    }

    /// Replays reading the journal now (the others are sending from the ring).
    var journalReplaysReading: Int { journalReplays.reduce(0) { $0 + ($1.cursor == nil ? 0 : 1) } }

    /// Sends an answer's end; false when the peer's queue is full or the peer is gone.
    @discardableResult
    func sendEnd(
        to identity: [UInt8], count: UInt64, complete: Bool, error: String, streamSequence asOf: UInt64? = nil
    ) -> Bool {
        let end = SnapshotEnd(streamSequence: asOf ?? streamSequence, tickCount: count, complete: complete, error: error,
            plantSession: session)
        snapshotsServed += 1
        return Array(SnapshotEnd.topic.utf8).withUnsafeBytes { topic in
            end.encoded().withUnsafeBytes { replyTick(to: identity, topic: topic, payload: $0) }
        }
    }

    /// Sends one [identity, topic, payload] message to a snapshot peer. False when the peer's queue is full (it has
    /// not read what it was sent: ZMQ_ROUTER_MANDATORY says so at the identity frame, before anything of the
    /// message is queued) or the peer is gone; the peer is then remembered as not reading.
    @discardableResult
    func replyTick(to identity: [UInt8], topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> Bool {
        guard (try? snapshots.send(identity, more: true, dontWait: true)) == true else {
            if unreadPeers.count >= AnswerLimits.unreadPeersKept { unreadPeers.removeAll() }
            unreadPeers[identity] = MonotonicClock.nowNanoseconds()
            return false
        }
        // The rest of a message whose first frame was taken is always taken.
        _ = try? snapshots.send(topic, more: true, dontWait: true)
        _ = try? snapshots.send(payload, dontWait: true)
        return true
    }

    // MARK: Replays from the journal

    /// Takes each replay a slice further, so that the live stream keeps flowing while a long answer goes out: up to
    /// `journalSliceBytes` of journal per turn in all while it reads the journal, then (a stream replay) up to
    /// `AnswerLimits.ticksPerTurn` ticks a turn in all from the ring, from where the journal ended or the ring lapped
    /// it, until the answer has its count or has reached the newest tick. A symbol replay takes the rest of its
    /// ticks from the ring at once (one symbol's, walked by their links).
    func advanceJournalReplays() {
        guard !journalReplays.isEmpty, !answerBudget.isSpent else { return }
        flushOutbound()
        let budget = max(Self.journalSliceBytes / journalReplays.count, 1 << 14)
        let ringBudget = max(AnswerLimits.ticksPerTurn / UInt64(journalReplays.count), 16)
        var finished: [Int] = []
        // What this turn's slices cost the answer budget: ticks sent, journal records read.
        var recordsRead: UInt64 = 0
        var sent: UInt64 = 0
        defer { answerBudget.spend(recordsRead + sent) }
        for (index, replay) in journalReplays.enumerated() {
            let countBefore = replay.count
            defer { sent += replay.count - countBefore }
            if endedAsCut(replay) {
                finished.append(index)
                continue
            }
            if replay.ringNext != nil {
                if advanceFromRing(replay, budget: ringBudget) { finished.append(index) }
                continue
            }
            // The cursor is read in place (a struct held by the replay).
            guard replay.cursor != nil else { continue }
            let ringStart = ring.firstSequence
            var resumeFrom: UInt64?
            let progress = replay.cursor!.read(maxBytes: budget) { record in
                recordsRead += 1
                if ringStart > 0 && record.streamSequence >= ringStart {
                    resumeFrom = record.streamSequence
                    return false
                }
                return replay.take(record) { replyTick(to: replay.identity, topic: $0, payload: $1) }
            }
            // A send of this slice found the peer's queue full: what followed was not delivered.
            if endedAsCut(replay) {
                finished.append(index)
                continue
            }
            switch progress {
            case .more:
                continue
            case let .damaged(why):
                logger.error("journal replay stopped at damage", metadata: ["damage": "\(why)"])
                sendEnd(to: replay.identity, count: replay.count, complete: false,
                    error: "the journal is damaged: \(why)")
            case .stopped where resumeFrom == nil:
                // A stream replay that has its count.
                let complete = replay.firstGiven == replay.from
                let cutError = replay.cutError(streamHead: streamSequence)
                sendEnd(to: replay.identity, count: replay.count, complete: complete && cutError == nil,
                    error: complete ? cutError ?? "" : replay.incompleteReason(joined: true))
            case .caughtUp, .stopped:
                // The ring goes on from the first tick the journal did not give.
                let from = resumeFrom ?? replay.cursor!.lastStreamSequence + 1
                let joined = ringStart == 0 || from >= ringStart || from > ring.lastSequence
                switch replay.kind {
                case .stream where joined:
                    // From the ring in slices, from the next turn on; the journal's cursor and buffer go now.
                    replay.cursor!.close()
                    replay.cursor = nil
                    replay.ringNext = from
                    continue
                case .stream:
                    break
                case let .symbol(prefix, id):
                    // The symbol's own ticks, by their links from its newest, not every tick the ring keeps.
                    let chain = ring.chain(from: newestStreamSequenceOf[id], fromTag: replay.from)
                    ring.forEach(chain.sequences) { sequence, topic, tick in
                        guard sequence >= from, topic.starts(with: prefix) else { return }
                        let symbolSequence = (try? TickWire.symbolSequence(of: tick)) ?? 0
                        replay.give(streamSequence: sequence, symbolSequence: symbolSequence, topic: topic,
                            payload: tick) { replyTick(to: replay.identity, topic: $0, payload: $1) }
                    }
                }
                if endedAsCut(replay) {
                    finished.append(index)
                    continue
                }
                let complete = joined && (replay.firstGiven.map { $0 == replay.from } ?? true)
                let cutError = replay.cutError(streamHead: ring.lastSequence)
                sendEnd(to: replay.identity, count: replay.count, complete: complete && cutError == nil,
                    error: complete ? cutError ?? "" : replay.incompleteReason(joined: joined))
            }
            finished.append(index)
        }
        var peersDone: [[UInt8]] = []
        for index in finished.reversed() {
            journalReplays[index].cursor?.close()
            peersDone.append(journalReplays.remove(at: index).identity)
        }
        for identity in peersDone.reversed() { answerWaitingRequests(of: identity) }
    }

    /// Ends `replay` as cut when its peer's queue was found full (it stopped reading): true when it did. Its journal
    /// is then not read, nor its ring walked, for nobody.
    func endedAsCut(_ replay: JournalReplay) -> Bool {
        guard unreadPeers[replay.identity] != nil else { return false }
        answersCut += 1
        sendEnd(to: replay.identity, count: replay.count, complete: false, error: Self.cutReason)
        return true
    }

    /// Sends a stream replay's next slice from the ring (at most `budget` ticks); true once it has ended. Ticks the
    /// ring has dropped meanwhile (it lapped the replay) are read from the journal again, or, without one, the
    /// answer ends incomplete saying where to ask again.
    func advanceFromRing(_ replay: JournalReplay, budget: UInt64) -> Bool {
        guard case let .stream(bound) = replay.kind, let next = replay.ringNext else { return true }
        if ring.firstSequence > 0 && next < ring.firstSequence {
            if let directory = configuration.journal.directory, journalReplayRefusal() == nil {
                replay.ringNext = nil
                replay.cursor = JournalCursor(directory: directory, from: next)
                return false
            }
            sendEnd(to: replay.identity, count: replay.count, complete: false,
                error: "the ring moved past stream_seq \(next) while the answer was sent: ask again from \(next)")
            return true
        }
        let slice = min(budget, bound.limit - replay.count)
        let given = ring.forEach(from: next, maxCount: slice) { sequence, topic, tick in
            replay.give(streamSequence: sequence, symbolSequence: nil, topic: topic, payload: tick) {
                replyTick(to: replay.identity, topic: $0, payload: $1)
            }
        }.count
        replay.ringNext = next + given
        if endedAsCut(replay) { return true }
        guard replay.count >= bound.limit || next + given > ring.lastSequence else { return false }
        let complete = replay.firstGiven.map { $0 == replay.from } ?? true
        let cutError = replay.cutError(streamHead: ring.lastSequence)
        sendEnd(to: replay.identity, count: replay.count, complete: complete && cutError == nil,
            error: complete ? cutError ?? ""
                : "the plant holds ticks from stream_seq \(replay.firstGiven ?? 0) on, not from \(replay.from)")
        return true
    }
}

/// A symbol or stream replay sent over several turns: read from the journal, then (a stream replay) from the ring.
final class JournalReplay {
    enum Kind {
        case stream(StreamReplayBound)
        /// `id`: the symbol's index in the plant's per-symbol arrays.
        case symbol(prefix: [UInt8], id: Int)
    }

    let identity: [UInt8]
    let kind: Kind
    /// The stream_seq (stream replays) or symbol_seq (symbol replays) the answer must begin with.
    let from: UInt64
    /// Reading the journal: nil once it sends from the ring (`ringNext`), or when it never needed the journal.
    var cursor: JournalCursor?
    /// Sending from the ring (a stream replay): the stream_seq of the next tick to give.
    var ringNext: UInt64?
    var count: UInt64 = 0
    /// The stream_seq or symbol_seq of the first tick given: the answer is complete only if it is `from`.
    var firstGiven: UInt64?
    /// The stream_seq of the last tick given (0: none yet).
    var lastStreamSequenceGiven: UInt64 = 0

    init(identity: [UInt8], kind: Kind, from: UInt64, cursor: JournalCursor?) {
        self.identity = identity
        self.kind = kind
        self.from = from
        self.cursor = cursor
    }

    /// Why a stream replay cut at the answer limit is not the whole of what was asked (nil: it is, or it was not
    /// cut): more was published after its last tick than the limit let it carry.
    func cutError(streamHead: UInt64) -> String? {
        guard case let .stream(bound) = kind else { return nil }
        return bound.cutError(given: count, next: lastStreamSequenceGiven + 1, newest: streamHead,
            setting: Self.answerLimitSetting)
    }

    static let answerLimitSetting = "[plant] max_answer_ticks"

    func incompleteReason(joined: Bool) -> String {
        if !joined { return "the journal and the ring do not join up (the ring moved on while the journal was read)" }
        return "the journal begins at \(firstGiven ?? 0), not at \(from)"
    }

    /// Gives a journal record to `send` when the replay wants it; false once a stream replay has its count.
    func take(_ record: JournalRecord, send: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) -> Bool {
        switch kind {
        case let .stream(bound):
            give(streamSequence: record.streamSequence, symbolSequence: nil, topic: record.topic,
                payload: record.payload, send: send)
            return count < bound.limit
        case let .symbol(prefix, _):
            guard record.topic.starts(with: prefix), record.symbolSequence >= from else { return true }
            give(streamSequence: record.streamSequence, symbolSequence: record.symbolSequence, topic: record.topic,
                payload: record.payload, send: send)
            return true
        }
    }

    func give(
        streamSequence: UInt64, symbolSequence: UInt64?, topic: UnsafeRawBufferPointer,
        payload: UnsafeRawBufferPointer, send: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void
    ) {
        if firstGiven == nil { firstGiven = symbolSequence ?? streamSequence }
        lastStreamSequenceGiven = streamSequence
        send(topic, payload)
        count += 1
    }
}
