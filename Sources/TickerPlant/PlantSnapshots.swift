import MarketData
import ZeroMQ

extension PlantLoop {
    // MARK: Snapshot and replay

    /// Answers DEALER peers on the snapshot ROUTER: [identity, ControlRequest] in; [identity, topic, Tick] per tick
    /// and then [identity, "#END", SnapshotEnd] out. Served between ticks on the publishing thread, so a snapshot is
    /// atomic with respect to the stream: it holds exactly the ticks up to the stream_seq its end names.
    func serveSnapshots() {
        flushOutbound()
        while let frames = try? snapshots.receiveFrames(dontWait: true), frames.count >= 2 {
            let identity = frames[0]
            var count: UInt64 = 0
            var complete = true
            var error = ""
            func reply(_ topic: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) {
                _ = try? snapshots.send(identity, more: true, dontWait: true)
                _ = try? snapshots.send(topic, more: true, dontWait: true)
                _ = try? snapshots.send(payload, dontWait: true)
                count += 1
            }
            func reply(_ topic: [UInt8], _ payload: UnsafeRawBufferPointer) {
                topic.withUnsafeBytes { reply($0, payload) }
            }
            switch ReplayRequest(decoding: frames[frames.count - 1]) {
            case let .snapshot(prefix):
                let prefixBytes = Array(prefix.utf8)
                if Array(Topic.system.utf8).starts(with: prefixBytes) {
                    for (_, status) in lastSystemStatus.sorted(by: { $0.key < $1.key }) {
                        reply(Array(Topic.system.utf8), encoder.encode(status))
                    }
                }
                // Each symbol's last values in the order they were published, symbols in name order.
                var matching: [(symbol: String, entry: LastValueCache.Entry)] = []
                for (id, entries) in lastValues.entriesOf.enumerated() {
                    for entry in entries {
                        Topic.write(symbol: symbolNames[id], type: entry.type, into: &topic)
                        if topic.starts(with: prefixBytes) { matching.append((symbolNames[id], entry)) }
                    }
                }
                matching.sort { ($0.symbol, $0.entry.symbolSequence) < ($1.symbol, $1.entry.symbolSequence) }
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
                // The ring reaches back to `start`, or nothing of the symbol was ever published from it: served now.
                // Otherwise the journal serves it from the symbol's checkpoint before `start`, over several turns.
                // The symbol's own ticks are walked, newest first, not every tick the ring keeps.
                let chain = ring.chain(from: newestStreamSequenceOf[knownID], fromTag: start)
                if published >= start && chain.oldestTag.map({ $0 > start }) ?? true,
                    let directory = configuration.journal.directory
                {
                    let checkpoint = symbolCheckpoints[knownID].last { $0.symbolSequence <= start }?.streamSequence ?? 0
                    journalReplays.append(JournalReplay(identity: identity, kind: .symbol(prefix: prefix, id: knownID),
                        from: start, cursor: JournalCursor(directory: directory, from: checkpoint)))
                    continue
                }
                ring.forEach(chain.sequences) { _, topic, tick in
                    if topic.starts(with: prefix) { reply(topic, tick) }
                }
                complete = chain.oldestTag.map { $0 <= start } ?? (published < start)
            case let .streamReplay(from, maxCount):
                if from > 0 && from <= streamSequence && (ring.firstSequence == 0 || from < ring.firstSequence),
                    let directory = configuration.journal.directory
                {
                    journalReplays.append(JournalReplay(identity: identity,
                        kind: .stream(maxCount: maxCount == 0 ? .max : maxCount), from: from,
                        cursor: JournalCursor(directory: directory, from: from)))
                    continue
                }
                let result = ring.forEach(from: from, maxCount: maxCount == 0 ? UInt64.max : maxCount) { _, topic, tick in
                    reply(topic, tick)
                }
                complete = result.complete
            case nil:
                complete = false
                error = "not a request this plantd knows (a ControlRequest of Proto/control.proto)"
            }
            sendEnd(to: identity, count: count, complete: complete, error: error)
        }
    }

    func sendEnd(to identity: [UInt8], count: UInt64, complete: Bool, error: String) {
        let end = SnapshotEnd(streamSequence: streamSequence, tickCount: count, complete: complete, error: error,
            plantSession: session)
        _ = try? snapshots.send(identity, more: true, dontWait: true)
        _ = try? snapshots.send(SnapshotEnd.topic, more: true, dontWait: true)
        _ = try? snapshots.send(end.encoded(), dontWait: true)
        snapshotsServed += 1
    }

    func replyTick(to identity: [UInt8], topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        _ = try? snapshots.send(identity, more: true, dontWait: true)
        _ = try? snapshots.send(topic, more: true, dontWait: true)
        _ = try? snapshots.send(payload, dontWait: true)
    }

    // MARK: Replays from the journal

    /// Takes each replay that reaches back before the ring a slice further: up to `journalSliceBytes` of journal
    /// per turn in all, so that the live stream keeps flowing while an old replay is read from disk. Where the ring
    /// takes over (its oldest tick, or the end of what the journal holds), the rest comes from the ring in the same
    /// turn and the replay ends.
    func advanceJournalReplays() {
        guard !journalReplays.isEmpty else { return }
        flushOutbound()
        let budget = max(Self.journalSliceBytes / journalReplays.count, 1 << 16)
        var finished: [Int] = []
        for (index, replay) in journalReplays.enumerated() {
            let ringStart = ring.firstSequence
            var resumeFrom: UInt64?
            let progress = replay.cursor.read(maxBytes: budget) { record in
                if ringStart > 0 && record.streamSequence >= ringStart {
                    resumeFrom = record.streamSequence
                    return false
                }
                return replay.take(record) { replyTick(to: replay.identity, topic: $0, payload: $1) }
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
                sendEnd(to: replay.identity, count: replay.count, complete: replay.firstGiven == replay.from, error: "")
            case .caughtUp, .stopped:
                // The ring goes on from the first tick the journal did not give.
                let from = resumeFrom ?? replay.cursor.lastStreamSequence + 1
                let joined = ringStart == 0 || from >= ringStart || from > ring.lastSequence
                switch replay.kind {
                case let .stream(maxCount):
                    _ = ring.forEach(from: from, maxCount: maxCount - replay.count) { sequence, topic, tick in
                        replay.give(streamSequence: sequence, symbolSequence: nil, topic: topic, payload: tick) {
                            replyTick(to: replay.identity, topic: $0, payload: $1)
                        }
                    }
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
                let complete = joined && (replay.firstGiven.map { $0 == replay.from } ?? true)
                sendEnd(to: replay.identity, count: replay.count, complete: complete,
                    error: complete ? "" : replay.incompleteReason(joined: joined))
            }
            finished.append(index)
        }
        for index in finished.reversed() {
            journalReplays[index].cursor.close()
            journalReplays.remove(at: index)
        }
    }
}

/// A symbol or stream replay being read from the journal.
final class JournalReplay {
    enum Kind {
        case stream(maxCount: UInt64)
        /// `id`: the symbol's index in the plant's per-symbol arrays.
        case symbol(prefix: [UInt8], id: Int)
    }

    let identity: [UInt8]
    let kind: Kind
    /// The stream_seq (stream replays) or symbol_seq (symbol replays) the answer must begin with.
    let from: UInt64
    var cursor: JournalCursor
    var count: UInt64 = 0
    /// The stream_seq or symbol_seq of the first tick given: the answer is complete only if it is `from`.
    var firstGiven: UInt64?

    init(identity: [UInt8], kind: Kind, from: UInt64, cursor: JournalCursor) {
        self.identity = identity
        self.kind = kind
        self.from = from
        self.cursor = cursor
    }

    func incompleteReason(joined: Bool) -> String {
        if !joined { return "the journal and the ring do not join up (the ring moved on while the journal was read)" }
        return "the journal begins at \(firstGiven ?? 0), not at \(from)"
    }

    /// Gives a journal record to `send` when the replay wants it; false once a stream replay has its count.
    func take(_ record: JournalRecord, send: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) -> Bool {
        switch kind {
        case let .stream(maxCount):
            give(streamSequence: record.streamSequence, symbolSequence: nil, topic: record.topic,
                payload: record.payload, send: send)
            return count < maxCount
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
        send(topic, payload)
        count += 1
    }
}
