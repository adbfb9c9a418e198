import Foundation
import Synchronization
import Testing

import MarketData
import ZeroMQ

/// The Clone pattern against a real plantd under load: a consumer that joins late, subscribes, takes a snapshot and
/// applies only the updates newer than it must see every symbol's symbol_seq contiguous from the snapshot on.
@Suite(.serialized) struct SnapshotEndToEnd {
    /// At 200 000 ticks/s a debug plantd is the bottleneck, so `make test` runs the release one.
    static let releaseBinDirectory = ProcessInfo.processInfo.environment["TICKPLANT_RELEASE_BIN_DIR"]
    static let rate = releaseBinDirectory == nil ? 40_000 : 200_000

    /// Publishes what a feedd publishes, at `rate` ticks a second over 500 symbols, on its own thread.
    final class FeedPublisher: Sendable {
        let thread = SocketThread(name: "feed-publisher")
        let sent = Atomic<Int>(0)
        let achievedRate = Mutex<Double>(0)

        init(endpoint: String, context: ZMQContext, rate: Int, seconds: Double) {
            thread.start { [self] thread in
                guard let socket = try? ZMQSocket(context, type: .publish) else { return }
                defer { socket.close() }
                try? socket.setSendHighWaterMark(10_000_000)
                try? socket.bind(endpoint)
                Thread.sleep(forTimeInterval: 0.5)  // plantd's SUB connects
                let encoder = TickEncoder()
                let symbols = (1...500).map { "S\($0)" }
                var prices = [Int64](repeating: 100_000_000, count: symbols.count)
                let start = MonotonicClock.nowNanoseconds()
                let total = Int(Double(rate) * seconds)
                var topic: [UInt8] = []
                var index = 0
                while index < total && !thread.isStopping {
                    let due = Int(Double(MonotonicClock.nowNanoseconds() - start) / 1e9 * Double(rate))
                    if index >= due {
                        usleep(200)
                        continue
                    }
                    while index < min(due, total) {
                        let symbol = (index &* 7919) % symbols.count
                        prices[symbol] += index % 3 == 0 ? 10_000 : -5_000
                        var tick: Tick
                        if index % 2 == 0 {
                            tick = Tick.trade(symbol: symbols[symbol], venue: "XNAS",
                                price: Price(fixedPoint: prices[symbol]), size: 100)
                        } else {
                            tick = Tick(symbol: symbols[symbol], type: .quote, venue: "XNAS")
                            tick.bidPrice = Price(fixedPoint: prices[symbol] - 10_000)
                            tick.askPrice = Price(fixedPoint: prices[symbol] + 10_000)
                            tick.bidSize = 100
                            tick.askSize = 200
                        }
                        tick.streamSequence = UInt64(index + 1)
                        tick.exchangeTimestampNs = WallClock.nowNanoseconds()
                        Topic.write(symbol: tick.symbol, type: tick.type, into: &topic)
                        _ = try? topic.withUnsafeBytes { try socket.send($0, more: true) }
                        _ = try? socket.send(encoder.encode(tick))
                        index += 1
                    }
                    sent.store(index, ordering: .relaxed)
                }
                let seconds = Double(MonotonicClock.nowNanoseconds() - start) / 1e9
                achievedRate.withLock { $0 = Double(index) / seconds }
                Thread.sleep(forTimeInterval: 0.5)  // let the last messages leave before the socket closes
            }
        }
    }

    @Test func aConsumerJoiningUnderLoadSeesEverySymbolContiguousFromItsSnapshot() throws {
        let chain = try Chain()
        defer { chain.stop() }
        let binDirectory = Self.releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory
        try chain.start("plantd", executable: binDirectory.appendingPathComponent("plantd").path,
            ["--config", chain.etc.appendingPathComponent("plantd.toml").path])
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))
        let context = try ZMQContext()
        let publisher = FeedPublisher(endpoint: chain.endpoint("feed_pub"), context: context, rate: Self.rate,
            seconds: 4)
        defer {
            publisher.thread.stop()
            _ = publisher.thread.join()
        }
        // Join a second in, under full load.
        while publisher.sent.load(ordering: .relaxed) < Self.rate { Thread.sleep(forTimeInterval: 0.05) }

        // 1. Subscribe, and wait for the first update: from then on nothing published is missed.
        let prefix = "S1"  // S1, S10-S19, S100-S199: a shard, as a risk system takes one
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.setReceiveHighWaterMark(10_000_000)
        try subscriber.subscribe(prefix)
        try subscriber.setReceiveTimeout(milliseconds: 5_000)
        try subscriber.connect(chain.endpoint("plant_pub"))
        var updates: [Tick] = []
        let first = try #require(try subscriber.receiveFrames(), "no update within 5 s")
        updates.append(try TickDecoder.decode(first[1]))

        // 2. The snapshot of the shard, ending with the stream_seq it was taken at.
        let dealer = try ZMQSocket(context, type: .dealer)
        try dealer.setReceiveTimeout(milliseconds: 5_000)
        try dealer.connect(chain.endpoint("plant_snap"))
        _ = try dealer.send(ReplayRequest.snapshot(prefix: prefix).encoded())
        var snapshot: [Tick] = []
        var end: SnapshotEnd?
        while end == nil {
            let frames = try #require(try dealer.receiveFrames(), "the snapshot did not end within 5 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                end = SnapshotEnd(decoding: frames[1])
            } else {
                snapshot.append(try TickDecoder.decode(frames[1]))
            }
        }
        let snapshotEnd = try #require(end)
        #expect(snapshotEnd.complete && snapshotEnd.error.isEmpty)
        #expect(snapshotEnd.tickCount == UInt64(snapshot.count))
        #expect(Set(snapshot.map(\.symbol)).count == 111, "every symbol of the shard has traded by now")
        #expect(snapshot.allSatisfy { $0.symbol.hasPrefix(prefix) })

        // 3. The updates until the feed stops and plantd has sent everything.
        try subscriber.setReceiveTimeout(milliseconds: 1_500)
        while let frames = try subscriber.receiveFrames() { updates.append(try TickDecoder.decode(frames[1])) }
        let achieved = publisher.achievedRate.withLock { $0 }
        // The join must have happened under load. The publisher shares the machine with plantd and the consumer: on
        // a contended two-core host (a quarter of the CPU time stolen by the hypervisor) it reached 134 000/s, on a
        // slow one (a plain JavaScript loop three times slower than on the first machine) 99 000/s.
        #expect(achieved > Double(Self.rate) * 0.4, "the feed published \(Int(achieved))/s, not \(Self.rate)/s")

        // Apply: per symbol, the snapshot's latest symbol_seq, then only updates newer than the snapshot.
        var latest: [String: UInt64] = [:]
        for tick in snapshot { latest[tick.symbol] = max(latest[tick.symbol] ?? 0, tick.symbolSequence) }
        var applied = 0
        for tick in updates where tick.streamSequence > snapshotEnd.streamSequence {
            let expected = (latest[tick.symbol] ?? 0) + 1
            if tick.symbolSequence != expected {
                Issue.record("\(tick.symbol): symbol_seq \(tick.symbolSequence) after \(expected - 1)")
                return
            }
            latest[tick.symbol] = tick.symbolSequence
            applied += 1
        }
        #expect(applied > Self.rate / 10, "too few updates after the snapshot to prove anything: \(applied)")
        // Every update the snapshot already held was older, never newer.
        for tick in updates where tick.streamSequence <= snapshotEnd.streamSequence {
            #expect(tick.symbolSequence <= (snapshot.filter { $0.symbol == tick.symbol }.map(\.symbolSequence).max() ?? 0))
        }

        // 4. A consumer that saw a gap asks for one symbol from a symbol_seq: it gets every tick from there on.
        let symbol = "S17"
        let from = try #require(latest[symbol]) - 50
        _ = try dealer.send(ReplayRequest.symbolReplay(symbol: symbol, fromSymbolSequence: from).encoded())
        var replayed: [Tick] = []
        var replayEnd: SnapshotEnd?
        while replayEnd == nil {
            let frames = try #require(try dealer.receiveFrames())
            if frames[0] == Array(SnapshotEnd.topic.utf8) { replayEnd = SnapshotEnd(decoding: frames[1]) } else {
                replayed.append(try TickDecoder.decode(frames[1]))
            }
        }
        #expect(replayEnd?.complete == true)
        // Every tick from `from` on, contiguous; the plant may have published more of the symbol since the consumer
        // stopped reading (a bar the clock closed), so the replay can run past what the consumer saw.
        let replayedSequences = replayed.map(\.symbolSequence)
        #expect(replayedSequences.count >= Int(latest[symbol]! - from + 1))
        #expect(replayedSequences == Array(from..<(from + UInt64(replayedSequences.count))))
        #expect(replayed.allSatisfy { $0.symbol == symbol })
    }
}
