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
                let result = ring.forEach(topicPrefix: Array((symbol + "|").utf8), fromTag: from) { _, topic, tick in
                    reply(topic, tick)
                }
                // Complete when the ring reaches back to `from`, or nothing of the symbol was ever published from it.
                let start = max(from, 1)
                complete = result.oldestTag.map { $0 <= start } ?? ((symbolIDs[symbol].map { symbolSequenceOf[$0] } ?? 0) < start)
            case let .streamReplay(from, maxCount):
                let result = ring.forEach(from: from, maxCount: maxCount == 0 ? UInt64.max : maxCount) { _, topic, tick in
                    reply(topic, tick)
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
}
