import Foundation
import Synchronization
import Testing

import MarketData
import ZeroMQ

/// The simulator's chaos against feedd's gap recovery, with the real executables.
@Suite(.serialized) struct ChaosEndToEnd {
    /// The executables under test. At 100 000 messages/s a debug feedd is the bottleneck rather than the recovery,
    /// so `make test` builds release and names it in TICKPLANT_RELEASE_BIN_DIR; without it the debug executables run
    /// a lighter load.
    static let releaseBinDirectory = ProcessInfo.processInfo.environment["TICKPLANT_RELEASE_BIN_DIR"]
    static let binDirectory = releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory
    /// 1 000 000 messages at 100 000/s is 10 s (TICKPLANT_CHAOS_MESSAGES overrides the count).
    static let messages = ProcessInfo.processInfo.environment["TICKPLANT_CHAOS_MESSAGES"]
        ?? (releaseBinDirectory == nil ? "300000" : "1000000")
    static let rate = releaseBinDirectory == nil ? "30000" : "100000"

    /// Counts and fingerprints every tick a SUB receives, on its own thread so it keeps up with the feed.
    final class Collector: Sendable {
        struct Totals {
            var count = 0
            var checksum: UInt64 = 0xcbf2_9ce4_8422_2325
            var lastTickNs = MonotonicClock.nowNanoseconds()
        }

        let thread = SocketThread(name: "collector")
        let totals = Mutex(Totals())
        private let ready = Mutex<Result<Void, any Error>?>(nil)

        /// `marketOnly`: only what follows from the market is counted, not what the plant announces as time passes
        /// or links fail: ticks on `#` topics (heartbeats, venue statuses) and status ticks (a symbol's quality).
        init(endpoint: String, context: ZMQContext, marketOnly: Bool = false) throws {
            thread.start { [self] thread in
                do {
                    let socket = try ZMQSocket(context, type: .subscribe)
                    try socket.setReceiveHighWaterMark(10_000_000)
                    try socket.subscribe("")
                    try socket.connect(endpoint)
                    try socket.setReceiveTimeout(milliseconds: 50)
                    ready.withLock { $0 = .success(()) }
                    while !thread.isStopping {
                        // BOOK ticks are conflated by time, so they differ between runs by design; every other tick
                        // follows from the market alone.
                        guard let frames = try socket.receiveFrames(), frames.count == 2,
                            !marketOnly || frames[0].first != UInt8(ascii: "#"),
                            let tick = try? TickDecoder.decode(frames[1]), tick.type != .book,
                            !marketOnly || tick.type != .status
                        else { continue }
                        self.totals.withLock { totals in
                            totals.count += 1
                            totals.checksum = Self.fold(totals.checksum, tick)
                            totals.lastTickNs = MonotonicClock.nowNanoseconds()
                        }
                    }
                    socket.close()
                } catch {
                    ready.withLock { $0 = .failure(error) }
                }
            }
            while ready.withLock({ $0 }) == nil { Thread.sleep(forTimeInterval: 0.01) }
            try ready.withLock { $0! }.get()
        }

        /// FNV-1a over what the market decided (not the clocks): symbol, type, venue sequence, prices and sizes.
        static func fold(_ hash: UInt64, _ tick: Tick) -> UInt64 {
            var hash = hash
            func mix(_ value: UInt64) {
                for shift in stride(from: 0, to: 64, by: 8) {
                    hash = (hash ^ ((value >> UInt64(shift)) & 0xFF)) &* 0x100_0000_01B3
                }
            }
            for byte in tick.symbol.utf8 { mix(UInt64(byte)) }
            mix(UInt64(tick.type.rawValue))
            mix(tick.venueSequence)
            mix(UInt64(bitPattern: tick.price.fixedPoint))
            mix(tick.size)
            mix(tick.tradeID)
            mix(UInt64(bitPattern: tick.bidPrice.fixedPoint))
            mix(tick.bidSize)
            mix(UInt64(bitPattern: tick.askPrice.fixedPoint))
            mix(tick.askSize)
            mix(UInt64(tick.state.rawValue))
            return hash
        }

        /// Waits until no tick has come for `quiet` seconds, then stops.
        func finish(quiet: Double = 1.5, timeout: Double = 120) -> Totals {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let lastTick = totals.withLock { $0.lastTickNs }  // read before the clock: the collector moves it on
                let idle = Double(MonotonicClock.nowNanoseconds() - lastTick) / 1e9
                if idle >= quiet { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            thread.stop()
            _ = thread.join()
            return totals.withLock { $0 }
        }
    }

    struct Run {
        var totals: Collector.Totals
        var feedStatus: DaemonStatus
        var simLog: String
        var feedLog: String
    }

    /// One feedd, one collector on its PUB, one simulator run; everything stopped afterwards.
    static func run(_ chain: Chain, chaos: String?) throws -> Run {
        try chain.start("feedd", executable: binDirectory.appendingPathComponent("feedd").path,
            ["--config", chain.etc.appendingPathComponent("feedd.toml").path])
        try chain.waitUntilAnswering("feedd", endpoint: chain.endpoint("feed_ctl"))
        defer { chain.stop("feedd") }
        let context = try ZMQContext()
        let collector = try Collector(endpoint: chain.endpoint("feed_pub"), context: context)
        Thread.sleep(forTimeInterval: 0.3)
        var arguments = ["sim", "--config", chain.etc.appendingPathComponent("sim-itch.toml").path, "--count", messages,
            "--rate", rate]
        if let chaos { arguments += ["--chaos", chaos] }
        try chain.start("mktctl", executable: binDirectory.appendingPathComponent("mktctl").path, arguments)
        let simStatus = try chain.waitForExit("mktctl", timeout: 300)
        let simLog = chain.log("mktctl")
        #expect(simStatus == 0, "\(simLog)")
        let totals = collector.finish()
        let status = try #require(chain.status(chain.endpoint("feed_ctl")), "feedd stopped answering")
        return Run(totals: totals, feedStatus: status, simLog: simLog, feedLog: chain.log("feedd"))
    }

    @Test func lossDuplicatesAndReorderingDeliverExactlyTheTicksOfACleanRun() throws {
        let chain = try Chain()
        defer { chain.stop() }
        let clean = try Self.run(chain, chaos: nil)
        let chaotic = try Self.run(chain, chaos: "loss=1%,dup=0.5%,reorder=0.5%")

        #expect(clean.totals.count > 100_000, "the clean run carried too little to prove anything")
        #expect(chaotic.totals.count == clean.totals.count)
        #expect(chaotic.totals.checksum == clean.totals.checksum)
        #expect(clean.feedStatus.counters["XNAS.messages_lost"] == 0,
            "\(clean.feedLog.split(separator: "\n").filter { $0.contains("given up") }.prefix(3))")
        // The clean run may still see a few kernel drops when the machine is busy; those are recovered the same way.
        #expect(chaotic.feedStatus.counters["XNAS.messages_lost"] == 0)
        #expect(chaotic.feedStatus.counters["XNAS.gaps_given_up"] == 0,
            "\(chaotic.feedLog.split(separator: "\n").filter { $0.contains("given up") }.prefix(3))")
        #expect((chaotic.feedStatus.counters["XNAS.gaps_healed"] ?? 0) > 0)
        #expect((chaotic.feedStatus.counters["XNAS.duplicates"] ?? 0) > 0)
        #expect(chaotic.feedStatus.drops == 0)
        let lost = chaotic.simLog.firstMatch(of: /chaos: (\d+) packets lost, (\d+) duplicated, (\d+) reordered/)
        #expect((lost.flatMap { Int($0.1) } ?? 0) > 0, "the simulator lost no packet: \(chaotic.simLog)")
        #expect((lost.flatMap { Int($0.3) } ?? 0) > 0, "the simulator reordered no packet: \(chaotic.simLog)")
    }
}
