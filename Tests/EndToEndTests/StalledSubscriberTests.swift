import Foundation
import Synchronization
import Testing

import MarketData
import ZeroMQ

/// DESIGN section 5: a subscriber that stops reading loses only its own messages; it never stalls the publisher for
/// the others. A real plantd, a feed at a steady rate, a subscriber of everything that never reads, and one that
/// reads beside it.
@Suite(.serialized) struct StalledSubscriberEndToEnd {
    /// At 100 000 ticks/s for 60 s a debug plantd is the bottleneck, so `make test` runs the release one; the debug
    /// one gets a lighter load for as long.
    static let rate = CrashEndToEnd.releaseBinDirectory == nil ? 20_000 : 100_000
    static let seconds = 60

    /// Reads plantd's whole stream on its own thread and checks, tick by tick, that stream_seq goes 1, 2, 3 ...
    final class Reader: Sendable {
        struct Totals {
            var ticks = 0
            var lastStreamSequence: UInt64 = 0
            /// The first place the stream did not follow on: "after N came M".
            var firstBreak: String?
            /// Ticks that came each whole second since the first.
            var perSecond: [Int] = []
            var firstTickNs: UInt64 = 0
            var lastTickNs = MonotonicClock.nowNanoseconds()
        }

        let thread = SocketThread(name: "reader")
        let totals = Mutex(Totals())
        private let ready = Atomic<Bool>(false)

        init(endpoint: String, context: ZMQContext) throws {
            thread.start { [self] thread in
                guard let socket = try? ZMQSocket(context, type: .subscribe) else { return }
                defer { socket.close() }
                try? socket.setReceiveHighWaterMark(0)
                try? socket.setSendHighWaterMark(0)
                try? socket.connect(endpoint)
                try? socket.subscribe("")
                try? socket.setReceiveTimeout(milliseconds: 50)
                ready.store(true, ordering: .releasing)
                while !thread.isStopping {
                    // The heartbeat repeats the stream's last stream_seq; every other message has its own.
                    guard let frames = try? socket.receiveFrames(), frames.count == 2, frames[0] != Array("#HB".utf8),
                        let sequence = frames[1].withUnsafeBytes({ try? TickWire.streamSequence(of: $0) })
                    else { continue }
                    let now = MonotonicClock.nowNanoseconds()
                    totals.withLock { totals in
                        if totals.firstBreak == nil && sequence != totals.lastStreamSequence + 1 {
                            totals.firstBreak = "after \(totals.lastStreamSequence) came \(sequence)"
                        }
                        if totals.firstTickNs == 0 { totals.firstTickNs = now }
                        let second = Int((now - totals.firstTickNs) / 1_000_000_000)
                        while totals.perSecond.count <= second { totals.perSecond.append(0) }
                        totals.perSecond[second] += 1
                        totals.ticks += 1
                        totals.lastStreamSequence = sequence
                        totals.lastTickNs = now
                    }
                }
            }
            while !ready.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.01) }
        }

        /// Waits until no tick has come for `quiet` seconds, then stops.
        func finish(quiet: Double = 2, timeout: Double = 120) -> Totals {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let lastTick = totals.withLock { $0.lastTickNs }
                if Double(MonotonicClock.nowNanoseconds() - lastTick) / 1e9 >= quiet { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            thread.stop()
            _ = thread.join()
            return totals.withLock { $0 }
        }
    }

    @Test func aSubscriberThatNeverReadsDoesNotStopTheStreamForOneThatReads() throws {
        let chain = try Chain()
        defer { chain.stop() }
        let context = try ZMQContext()
        let total = Self.rate * Self.seconds
        let feed = CrashEndToEnd.Feed(publish: chain.endpoint("feed_pub"), replay: chain.endpoint("feed_replay"),
            context: context, rate: Self.rate, total: total)
        defer {
            feed.thread.stop()
            _ = feed.thread.join()
        }
        // plantd queues at most 100 000 messages for a subscriber: the stalled one is past it within seconds.
        let configuration = chain.etc.appendingPathComponent("plantd-stalled.toml")
        try String(contentsOf: chain.etc.appendingPathComponent("plantd.toml"), encoding: .utf8)
            .replacingOccurrences(of: "[plant]\n", with: "[plant]\nsend_hwm = 100000\n")
            .write(to: configuration, atomically: true, encoding: .utf8)
        try chain.start("plantd", executable: CrashEndToEnd.binDirectory.appendingPathComponent("plantd").path,
            ["--config", configuration.path])
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))

        // Subscribed to everything, and never a read: its own buffers and plantd's queue for it fill within seconds.
        let stalled = try ZMQSocket(context, type: .subscribe)
        defer { stalled.close() }
        try stalled.setReceiveHighWaterMark(1_000)
        try stalled.connect(chain.endpoint("plant_pub"))
        try stalled.subscribe("")
        let reader = try Reader(endpoint: chain.endpoint("plant_pub"), context: context)
        Thread.sleep(forTimeInterval: 0.5)  // both subscriptions reach plantd before the first tick
        feed.go.store(true, ordering: .relaxed)
        while feed.sent.load(ordering: .relaxed) < total { Thread.sleep(forTimeInterval: 0.2) }
        let totals = reader.finish()

        let status = try #require(chain.status(chain.endpoint("plant_ctl")), "plantd stopped answering")
        let published = try #require(status.counters["stream_seq"])
        print("stalled subscriber beside a reader: \(totals.ticks) ticks read of \(published) published at "
            + "\(Self.rate)/s; per second \(totals.perSecond)")
        #expect(totals.firstBreak == nil, "the reader's stream broke: \(totals.firstBreak ?? "")")
        #expect(totals.lastStreamSequence == published)
        #expect(UInt64(totals.ticks) == published)
        // Every tick the feed sent was published (and the derived bars beside them).
        #expect(published >= UInt64(total))
    }
}
