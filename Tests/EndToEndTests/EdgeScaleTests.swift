import Foundation
import Testing

import MarketData
import Operations
import ZeroMQ

/// edged (its own process) under many WebSocket clients: a stand-in plantd publishes, `WebSocketLoad` plays the
/// clients (on one thread of this process), checking every client's `seq` and timing every delivery.
@Suite(.serialized) struct EdgeScaleEndToEnd {
    /// The release edged when `make test` built it (a debug one is several times slower), else the debug one.
    static let edged = (SnapshotEndToEnd.releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory)
        .appendingPathComponent("edged").path
    static let release = SnapshotEndToEnd.releaseBinDirectory != nil

    /// Publishes `count` updates round-robin over `symbols` at `perSecond`, starting after `after` of each symbol.
    static func publish(
        _ plant: StandInPlant, symbols: Int, count: Int, perSecond: Double, after: Int = 0, times: PublishTimes?
    ) {
        let start = MonotonicClock.nowNanoseconds()
        for index in 0..<count {
            let due = start + UInt64(Double(index) / perSecond * 1e9)
            while MonotonicClock.nowNanoseconds() < due { usleep(200) }
            plant.publish(symbol: index % symbols, seq: after + index / symbols + 1, times: times)
        }
    }

    @Test func aThousandClientsOnOneSymbolEachGetEveryUpdateInOrder() throws {
        let context = try ZMQContext()
        let plant = try StandInPlant(context: context, symbols: ["AAPL"])
        let edge = try EdgeProcess(binary: Self.edged, upstream: plant.endpoint)
        defer { edge.stop() }
        let load = WebSocketLoad(count: 1_000, options: .init(port: edge.port, symbols: ["AAPL"]))
        defer { load.stop() }
        #expect(load.waitUntilSubscribed(timeout: 60), "subscribed: \(load.totals.subscribed)")
        #expect(load.totals.failed == 0)
        #expect(plant.waitForSubscriptions(1, timeout: 5), "edged subscribed upstream")
        usleep(200_000)

        // 200 updates a second to 1 000 clients: 200 000 deliveries a second, well within edged (no backpressure).
        let total = Self.release ? 1_000 : 300
        Self.publish(plant, symbols: 1, count: total, perSecond: 200, times: nil)
        let deadline = Date().addingTimeInterval(30)
        while load.totals.updates < 1_000 * total && Date() < deadline { usleep(10_000) }
        let summaries = load.summaries()
        let complete = summaries.filter {
            $0.updates == total && $0.firstSeq == 1 && $0.lastSeq == total && $0.gaps == 0 && $0.duplicates == 0
                && $0.errorCodes.isEmpty
        }
        #expect(complete.count == 1_000, "clients with every update once and in order: \(complete.count)")
        #expect(edge.counter("drops", context: context) == 0)
    }

    /// 10% of 1 000 clients stop reading while the rest read: `mktctl bench edge --slow-percent 10` (the release
    /// build when there is one: a debug client thread would be the bottleneck), its figures read from its JSON.
    /// Every client watches the same 50 symbols, so that a stalled one's queue, conflating one update per symbol above
    /// its soft mark, still passes its hard mark.
    @Test func slowClientsAreCutOffAndTheFastOnesMissNothing() throws {
        let mktctl = (SnapshotEndToEnd.releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory)
            .appendingPathComponent("mktctl").path
        let result = try Chain.run(
            mktctl,
            [
                "bench", "edge", "--slow-percent", "10", "--slow-rate", Self.release ? "100" : "50",
                "--json",
            ], timeout: 180)
        #expect(result.status == 0, "\(result.output)")
        let json = result.output.drop { $0 != "{" }
        let run = try JSONDecoder().decode(EdgeBenchCommand.SlowRun.self, from: Data(json.utf8))
        #expect(run.fastComplete == 900, "fast clients with every update in order")
        #expect(run.updates > 500)
        #expect(run.slowTold407 == 100 && run.slowClosed4008 == 100, "\(run.slowEndings)")
        // A stalled client holds at most its queue (32 updates) and NIO's 64 KiB above the kernel's buffer.
        #expect(run.edgedRSSPeakBytes - run.edgedRSSBeforeBytes < run.memoryBoundBytes)
        // The fast ones' latency is the time one burst takes to reach all 900: on this shared two-core machine two
        // windows of the same load differ by up to x1.7 (docs/performance.md has the runs), so the bound here is 2:
        // what it catches is a stall that holds the others up, not the 20% the issue aims at.
        // (A debug build is overloaded at this rate: its latency says nothing.)
        #expect(run.fastBefore.count > 0 && run.fastWhileStalled.count > 0)
        #expect(
            !Self.release || run.fastWhileStalled.p99Us < run.fastBefore.p99Us * 2,
            "fast p99 \(run.fastBefore.p99Us) us before, \(run.fastWhileStalled.p99Us) us while 10% stalled")
    }

    /// 20 000 connections on one edged, as near as this machine allows: a process may hold 20 000 open files here,
    /// and edged needs about 30 of its own (listener, epoll, eventfds, ZeroMQ), so 19 948 clients, from four client
    /// processes, each from an address of its own (127.0.0.2-5). All subscribed, all receiving.
    @Test func twentyThousandConnectionsOnOneProcessAllSubscribedAllReceiving() throws {
        let context = try ZMQContext()
        let symbols = (0..<100).map { "SYM\($0)" }
        let plant = try StandInPlant(context: context, symbols: symbols)
        let edge = try EdgeProcess(
            binary: Self.edged, upstream: plant.endpoint, settings: ["limits": "connections = 20000"])
        defer { edge.stop() }
        let mktctl = (SnapshotEndToEnd.releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory)
            .appendingPathComponent("mktctl").path
        let perProcess = 4_987
        let updates = 5
        var workers: [(Process, URL)] = []
        defer {
            for (worker, output) in workers {
                if worker.isRunning { worker.terminate() }
                try? FileManager.default.removeItem(at: output)
            }
        }
        for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent(
                "edge-clients-\(UUID().uuidString)")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            let worker = Process()
            worker.executableURL = URL(fileURLWithPath: mktctl)
            worker.arguments = [
                "bench", "edge-clients", "--port", "\(edge.port)", "--clients", "\(perProcess)",
                "--source", source, "--symbols", "100", "--updates", "\(updates)", "--timeout", "150",
            ]
            let handle = try FileHandle(forWritingTo: output)
            worker.standardOutput = handle
            worker.standardError = handle
            try worker.run()
            workers.append((worker, output))
        }
        func output(_ index: Int) -> String { (try? String(contentsOf: workers[index].1, encoding: .utf8)) ?? "" }
        let connected = Date().addingTimeInterval(150)
        while Date() < connected && !(0..<4).allSatisfy({ output($0).contains("subscribed") }) { usleep(200_000) }
        for index in 0..<4 {
            #expect(output(index).contains("subscribed \(perProcess) failed 0"), "\(output(index).prefix(300))")
        }
        #expect(edge.counter("clients", context: context) == UInt64(4 * perProcess))
        #expect(plant.waitForSubscriptions(100, timeout: 10))
        usleep(300_000)
        Self.publish(plant, symbols: 100, count: 100 * updates, perSecond: 100, times: nil)
        let done = Date().addingTimeInterval(60)
        while Date() < done && workers.contains(where: { $0.0.isRunning }) { usleep(100_000) }
        for index in 0..<4 {
            let text = output(index)
            let json = text.drop { $0 != "{" }
            let summary = try? JSONDecoder().decode(EdgeClientsCommand.Summary.self, from: Data(json.utf8))
            #expect(summary?.complete == perProcess, "worker \(index): \(text.suffix(400))")
        }
        print("20 000 connections: edged RSS \(edge.residentBytes() / 1_000_000) MB with \(4 * perProcess) clients")
    }

    /// Memory per idle subscribed connection: edged's RSS with none, then with 10 000 clients on 100 symbols that
    /// receive nothing, at most 16 KB each (the edge issue's bound; kernel socket buffers are not in RSS).
    @Test func anIdleSubscribedConnectionCostsEdgedAtMost16KB() throws {
        let context = try ZMQContext()
        let symbols = (0..<100).map { "IDLE\($0)" }
        let plant = try StandInPlant(context: context, symbols: symbols)
        let edge = try EdgeProcess(binary: Self.edged, upstream: plant.endpoint)
        defer { edge.stop() }
        usleep(500_000)
        let before = edge.residentBytes()
        let load = WebSocketLoad(count: 10_000, options: .init(port: edge.port, symbols: symbols))
        defer { load.stop() }
        #expect(load.waitUntilSubscribed(timeout: 120) && load.totals.failed == 0, "\(load.totals)")
        #expect(edge.counter("clients", context: context) == 10_000)
        usleep(1_000_000)
        let perConnection = Double(edge.residentBytes() - before) / 10_000
        print(String(format: "idle connections: %.1f KB each in edged", perConnection / 1024))
        #expect(before > 0 && perConnection > 0 && perConnection <= 16 * 1024, "\(perConnection) bytes per connection")
    }

    /// About 200 clients that break every rule a client can break (never reading, one byte a second, ping, binary
    /// and bad-JSON floods, invalid UTF-8, a 2^62-byte frame, subscribe churn past the rate, `maxRate` and `fromSeq`
    /// extremes), 2 000 connections from one address and 250 handshakes never finished, beside 300 well-behaved
    /// clients: `mktctl bench edge --hostile` (release when built). edged stays up, each rule-breaker gets the answer
    /// docs/security.md gives it (the run lists what it expected where it differs), the well-behaved ones get every
    /// update in order and their p99 while the rule-breakers stay (after their arrival, which is reported without
    /// a bound) stays within twice the quiet one, and edged's memory grows by less than its limits allow the
    /// rule-breakers.
    @Test func rulebreakersGetTheirAnswersWhileEdgedStaysUpWithinItsMemoryAndTheOthersMissNothing() throws {
        let mktctl = (SnapshotEndToEnd.releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory)
            .appendingPathComponent("mktctl").path
        let result = try Chain.run(
            mktctl,
            [
                "bench", "edge", "--hostile", "--clients", Self.release ? "300" : "50", "--seconds", "15",
                "--slow-rate", Self.release ? "250" : "50", "--json",
            ], timeout: 300)
        let json = result.output.drop { $0 != "{" }
        let run = try JSONDecoder().decode(EdgeBenchCommand.HostileRun.self, from: Data(json.utf8))
        #expect(run.edgedAlive)
        #expect(run.unexpected.isEmpty, "\(run.unexpected)")
        #expect(run.fastComplete == run.clients, "well-behaved clients with every update in order")
        #expect(run.updates > 1_000)
        #expect(
            run.edgedRSSPeakBytes - run.edgedRSSBeforeBytes < run.memoryBoundBytes,
            "edged grew \(run.edgedRSSPeakBytes - run.edgedRSSBeforeBytes) bytes, bound \(run.memoryBoundBytes)")
        // As in the slow-clients test: two windows of the same load differ by up to x1.7 here, so 2 is the bound; a
        // debug edged is overloaded by the floods and its latency says nothing.
        #expect(run.fastQuiet.count > 0 && run.fastBesideHostile.count > 0)
        #expect(
            !Self.release || run.p99Ratio < 2,
            "p99 \(run.fastQuiet.p99Us) us quiet, \(run.fastBesideHostile.p99Us) us beside the rule-breakers")
        #expect(result.status == (run.passed ? 0 : 1))
    }
}
