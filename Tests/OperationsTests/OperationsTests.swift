import Foundation
import Testing

import EdgeServer
import FeedHandler
import MarketData
import TickerPlant
@testable import Operations

@Suite struct TickPrinting {
    @Test func aTradeLineShowsSymbolTypeVenuePriceSizeAndSequences() {
        var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 178_520_000), size: 100)
        tick.symbolSequence = 812
        tick.streamSequence = 9001
        let line = TickText.line(tick)
        #expect(line.hasPrefix("AAPL     TRADE   XNAS  178.52 x 100 "))
        #expect(line.hasSuffix("sym#812 stream#9001"))
    }

    @Test func jsonOutputKeepsPricesExact() throws {
        var tick = Tick(symbol: "MSFT", type: .quote, venue: "ARCX")
        tick.bidPrice = Price(fixedPoint: 410_100_000)
        tick.askPrice = Price(fixedPoint: 410_120_001)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(TickText.json(tick).utf8)) as? [String: Any])
        #expect(object["type"] as? String == "QUOTE")
        #expect(TickText.json(tick).contains(#""ask":410.120001"#))
    }
}

@Suite struct StatusTable {
    @Test func downDaemonsShowDownAndUpOnesTheirFigures() {
        let status = DaemonStatus(daemon: "plantd", name: "p1", pid: 1, uptimeSeconds: 75, messagesIn: 10,
            messagesOut: 9, rateIn: 5, rateOut: 4, drops: 1, gapsOpen: 2, gapsHealed: 13, clients: nil)
        let table = StatusRow.table([
            StatusRow(daemon: "plantd", endpoint: "tcp://x:1", up: true, status: status),
            StatusRow(daemon: "edged", endpoint: "tcp://x:2", up: false, status: nil),
        ])
        let lines = table.split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("DAEMON") && lines[0].contains("VERSION") && lines[0].contains("QUALITY"))
        #expect(lines[1].contains("plantd") && lines[1].contains("1m15s") && lines[1].contains(" up "))
        #expect(lines[1].contains(TickplantVersion.current))
        #expect(lines[0].contains("GAPS  HEALED") && lines[1].contains(" 2     13 "), "\(table)")
        #expect(lines[0].contains("HEALED  LOST") && lines[1].contains(" 13      - "),
            "plantd recovers no gaps: \(table)")
        #expect(lines[2].hasPrefix("edged") && lines[2].contains("DOWN"))
        #expect(!table.contains("\u{1B}["), "no colour unless asked")
    }

    @Test func feeddsGivenUpGapsShowAsLostMessages() {
        var status = DaemonStatus(daemon: "feedd", name: "f1", pid: 1, uptimeSeconds: 5, messagesIn: 1, messagesOut: 1,
            rateIn: 0, rateOut: 0, drops: 0, gapsGivenUp: 0, messagesLost: 0)
        #expect(StatusRow.lost(status) == "0")
        status.gapsGivenUp = 1
        status.messagesLost = 4_611_686_018_427_254_246
        #expect(StatusRow.lost(status) == "4611686018427254246 in 1 gap")
        status.gapsGivenUp = 2
        #expect(StatusRow.table([StatusRow(daemon: "feedd", endpoint: "e", up: true, status: status)])
            .contains("4611686018427254246 in 2 gaps"))
    }

    @Test func theWorstSymbolQualityShowsAndColourMarksWhatIsWrong() {
        var status = DaemonStatus(daemon: "plantd", name: "p1", pid: 1, uptimeSeconds: 5, messagesIn: 1,
            messagesOut: 1, rateIn: 0, rateOut: 0, drops: 0,
            counters: ["symbols.ok": 290, "symbols.stale": 7, "symbols.gap": 0, "symbols.recovering": 3])
        #expect(StatusRow.worstQuality(status) == "RECOVERING 3")
        status.counters["symbols.recovering"] = 0
        #expect(StatusRow.worstQuality(status) == "STALE 7")
        status.counters["symbols.stale"] = 0
        #expect(StatusRow.worstQuality(status) == "OK")
        status.counters["journal.failing"] = 1
        #expect(StatusRow.worstQuality(status) == "JOURNAL FAILING", "a failing journal comes before any symbol")
        status.counters["journal.failing"] = 0
        status.counters["symbols.stale"] = 7
        let feed = DaemonStatus(daemon: "feedd", name: "f", pid: 2, uptimeSeconds: 5, messagesIn: 1, messagesOut: 1,
            rateIn: 0, rateOut: 0, drops: 0)
        #expect(StatusRow.worstQuality(feed) == nil, "feedd keeps no qualities")
        let coloured = StatusRow.table([
            StatusRow(daemon: "plantd", endpoint: "tcp://x:1", up: true, status: status),
            StatusRow(daemon: "edged", endpoint: "tcp://x:2", up: false, status: nil),
        ], colour: true)
        #expect(coloured.contains(TerminalColour.yellow + "STALE" + TerminalColour.reset))
        #expect(coloured.contains(TerminalColour.red + "DOWN" + TerminalColour.reset))
        #expect(coloured.contains(TerminalColour.green + "up" + TerminalColour.reset))
    }

    @Test func bindEndpointsBecomeConnectable() {
        #expect(ChainEndpoints.connectable("tcp://*:7201") == "tcp://127.0.0.1:7201")
        #expect(ChainEndpoints.connectable("tcp://0.0.0.0:7201") == "tcp://127.0.0.1:7201")
        #expect(ChainEndpoints.connectable("tcp://10.1.2.3:7201") == "tcp://10.1.2.3:7201")
    }

    @Test func theShippedEtcFilesAreValidAndAgreeOnPorts() throws {
        let etc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("etc").path
        let endpoints = try ChainEndpoints.load(etc: etc)
        #expect(endpoints.feedPublish == "tcp://127.0.0.1:7101")
        #expect(endpoints.plantPublish == "tcp://127.0.0.1:7201")
        #expect(endpoints.edgeControl == "tcp://127.0.0.1:7309")
        let sim = try SimConfiguration.load(file: "\(etc)/sim.toml")
        let feed = try FeedConfiguration.load(file: "\(etc)/feedd.toml")
        guard case let .itch(itch) = try #require(feed.venues.first).source else {
            Issue.record("the first venue of etc/feedd.toml is not ITCH")
            return
        }
        #expect(sim.itchDestination.port == itch.listenPort)
        #expect(itch.retransmission?.port == sim.retransmissionListen.port)
        #expect(itch.bookOrders == 16_384)
        #expect(feed.venues.contains { $0.source == .json(.formatA, host: "127.0.0.1", port: sim.jsonAListen.port) })
        #expect(feed.venues.contains { $0.source == .json(.formatB, host: "127.0.0.1", port: sim.jsonBListen.port) })
        // edged reads plantd's stream and asks plantd's snapshot ROUTER.
        let plant = try PlantConfiguration.load(file: "\(etc)/plantd.toml")
        let edge = try EdgeConfiguration.load(file: "\(etc)/edged.toml")
        #expect(edge.upstream == plant.publishEndpoint && edge.snapshotEndpoint == plant.snapshotEndpoint)
        #expect(edge.auth == nil, "the demo runs without tokens")
    }
}

@Suite struct Simulator {
    @Test func theUniverseStartsWithWellKnownTickersIncludingAAPLAndAAPLX() {
        var random = SplitMix64(seed: 1)
        let symbols = SymbolUniverse.symbols(count: 300, random: &random)
        #expect(symbols.count == 300)
        #expect(Set(symbols).count == 300)
        #expect(symbols.prefix(3) == ["AAPL", "MSFT", "AAPLX"])
        #expect(symbols.allSatisfy { SymbolRules.problem(with: $0) == nil })
    }

    @Test func theSameSeedMakesTheSameMarket() {
        var first = SplitMix64(seed: 42)
        var second = SplitMix64(seed: 42)
        #expect(SymbolUniverse.symbols(count: 100, random: &first) == SymbolUniverse.symbols(count: 100, random: &second))
        #expect((0..<10).map { _ in first.next() } == (0..<10).map { _ in second.next() })
    }

    @Test func civilDatesInvertTheDayCount() {
        for days in [0, 10_957, 19_327, 20_423, 47_482] {
            let (year, month, day) = SymbolUniverse.civilDate(daysSinceEpoch: days)
            #expect(ISO8601Timestamp.daysSinceEpoch(year: year, month: month, day: day) == days)
        }
    }

    /// Runs the simulator for `steps` market events with ITCH only and returns the trades a normalizer makes of
    /// what arrived, the lines of the trade log, and the simulator's counters.
    static func runSimulator(steps: UInt64, chaos: ChaosOptions = ChaosOptions()) throws
        -> (trades: [Tick], logged: [Substring], counters: MarketSimulator.Counters, normalizer: ItchNormalizer)
    {
        let receiver = try UDPReceiver(address: try SocketAddress(host: "127.0.0.1", port: 0), receiveBufferBytes: 1 << 22)
        var configuration = SimConfiguration()
        configuration.symbolCount = 20
        configuration.rate = 1_000_000
        configuration.jsonShare = 0
        configuration.chaos = chaos
        configuration.itchDestination = ("127.0.0.1", receiver.descriptor.localPort)
        configuration.jsonAListen = ("127.0.0.1", 0)
        configuration.jsonBListen = ("127.0.0.1", 0)
        configuration.retransmissionListen = ("127.0.0.1", 0)
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sim-trades-\(UUID()).jsonl").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let simulator = try MarketSimulator(configuration: configuration, tradeLogPath: log)
        simulator.run(maxMessages: steps, shouldStop: { false }, progress: { _, _ in })

        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0)
        var ticks: [Tick] = []
        var sequence = SequenceTracker()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 8)
        defer { buffer.deallocate() }
        while let count = receiver.receive(into: buffer) {
            let packet = try MoldPacket(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            try packet.forEachMessage { number, bytes in
                #expect(sequence.observe(number) != .duplicate)
                if let message = try? ItchDecoder.decode(bytes) {
                    normalizer.handle(message, venueSequence: number, into: &ticks)
                }
            }
        }
        #expect(sequence.gaps == 0)
        let logged = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        return (ticks.filter { $0.type == .trade }, logged, simulator.counters, normalizer)
    }

    @Test func theSimulatorSendsDecodableItchAndLogsTheTradesItMakes() throws {
        let (trades, logged, counters, normalizer) = try Self.runSimulator(steps: 2000)
        #expect(normalizer.counters.unknownOrder == 0)
        #expect(normalizer.counters.unknownLocate == 0)
        #expect(!trades.isEmpty)
        #expect(trades.count == logged.count)
        #expect(trades.count == Int(counters.trades))
        #expect(logged.first?.contains(#""price":"\#(trades[0].price)""#) == true)
    }

    @Test func badPriceAndVolumeChaosAddsMarkedTradesAndLeavesTheMarketAlone() throws {
        let clean = try Self.runSimulator(steps: 3000)
        let chaos = try Self.runSimulator(steps: 3000, chaos: try ChaosOptions.parse("badprice=5%,negvolume=5%"))
        let madeUp = chaos.trades.filter { $0.tradeID >= MarketSimulator.chaosMatchNumbers }
        #expect(madeUp.count == Int(chaos.counters.badPrices + chaos.counters.badVolumes))
        #expect(chaos.counters.badPrices > 50 && chaos.counters.badVolumes > 50)  // 5% of 3000 events each
        // Every made-up trade is bad in the way its option says: a zero or tenfold price, or zero shares.
        let market = Dictionary(clean.trades.map { ($0.symbol, $0.price) }, uniquingKeysWith: { first, _ in first })
        for trade in madeUp {
            if trade.size == 0 { continue }
            let reference = try #require(market[trade.symbol] ?? clean.trades.first?.price)
            #expect(trade.price == .zero || trade.price.fixedPoint > 5 * reference.fixedPoint)
        }
        #expect(madeUp.filter { $0.size == 0 }.count == Int(chaos.counters.badVolumes))
        // The log marks them; the rest of the market is the clean run's, trade for trade.
        #expect(chaos.logged.filter { $0.contains(#""chaos":"badprice""#) }.count == Int(chaos.counters.badPrices))
        #expect(chaos.logged.filter { $0.contains(#""chaos":"negvolume""#) }.count == Int(chaos.counters.badVolumes))
        let real = chaos.trades.filter { $0.tradeID < MarketSimulator.chaosMatchNumbers }
        #expect(real.map(\.symbol) == clean.trades.map(\.symbol))
        #expect(real.map(\.price) == clean.trades.map(\.price))
        #expect(real.map(\.size) == clean.trades.map(\.size))
    }
}

@Suite struct ChaosSpecification {
    @Test func theChaosTextParsesIntoProbabilitiesAndHalts() throws {
        let chaos = try ChaosOptions.parse("loss=1%,dup=0.1%,reorder=0.5%,corrupt=0.01%,halt=AAPL@30s")
        #expect(chaos.loss == 0.01)
        #expect(chaos.duplicate == 0.001)
        #expect(chaos.reorder == 0.005)
        #expect(chaos.corrupt == 0.0001)
        #expect(chaos.halts.map(\.symbol) == ["AAPL"])
        #expect(chaos.halts.map(\.afterSeconds) == [30])
        #expect(chaos.halts.map(\.forSeconds) == [10])
        #expect(try ChaosOptions.parse("halt=MSFT@2s+3.5s").halts.map(\.forSeconds) == [3.5])
        #expect(try ChaosOptions.parse("").isEmpty)
        let bad = try ChaosOptions.parse("badprice=0.01%,negvolume=0.02%")
        #expect(bad.badPrice == 0.0001 && bad.negativeVolume == 0.0002 && !bad.isEmpty)
    }

    @Test(arguments: ["loss=1", "loss=150%", "dup", "flood=1%", "halt=AAPL", "halt=AA|PL@3s", "badprice=-1%", "negvolume", "halt=AAPL@1s+", "halt=AAPL@1s+0s"])
    func aWrongChaosItemIsRefusedWithItsReason(text: String) {
        #expect(throws: ChaosParseError.self) { try ChaosOptions.parse(text) }
    }
}

@Suite struct ItchFiles {
    static func simulator(port: Int, seed: UInt64 = 5) throws -> MarketSimulator {
        var configuration = SimConfiguration()
        configuration.symbolCount = 20
        configuration.rate = 1_000_000
        configuration.jsonShare = 0
        configuration.seed = seed
        configuration.itchDestination = ("127.0.0.1", port)
        configuration.retransmissionListen = ("127.0.0.1", 0)
        configuration.jsonAListen = ("127.0.0.1", 0)
        configuration.jsonBListen = ("127.0.0.1", 0)
        return try MarketSimulator(configuration: configuration)
    }

    /// Every ITCH message that arrived on `receiver`, in sequence order.
    static func received(_ receiver: UDPReceiver) throws -> [[UInt8]] {
        var messages: [UInt64: [UInt8]] = [:]
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 8)
        defer { buffer.deallocate() }
        while let count = receiver.receive(into: buffer) {
            let packet = try MoldPacket(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            try packet.forEachMessage { sequence, bytes in messages[sequence] = Array(bytes) }
        }
        return messages.keys.sorted().map { messages[$0]! }
    }

    @Test func aRecordedDayReplaysPlainAndGzippedAsTheSameMessages() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("itch-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("day.itch").path

        let live = try UDPReceiver(address: try SocketAddress(host: "127.0.0.1", port: 0), receiveBufferBytes: 1 << 22)
        let recording = try Self.simulator(port: live.descriptor.localPort)
        recording.itchRecorder = try ItchFileWriter(path: file)
        recording.run(maxMessages: 3000, shouldStop: { false }, progress: { _, _ in })
        let sent = try Self.received(live)
        #expect(sent.count > 3000)  // adds, executions, deletes and the stock directory
        #expect(sent.first?.first == UInt8(ascii: "S"))

        let plain = try ItchFileReader(path: file)
        var fromFile: [[UInt8]] = []
        while let message = plain.next() { fromFile.append(message) }
        #expect(fromFile == sent)

        let gzip = try ExternalTool.run("/bin/gzip", ["-k", file])
        #expect(gzip == 0)
        let compressed = try ItchFileReader(path: file + ".gz")
        var fromGzip: [[UInt8]] = []
        while let message = compressed.next() { fromGzip.append(message) }
        #expect(fromGzip == sent)

        // Replayed by the simulator, the file goes out as the same MoldUDP64 messages.
        let replayReceiver = try UDPReceiver(address: try SocketAddress(host: "127.0.0.1", port: 0),
            receiveBufferBytes: 1 << 22)
        let replay = try Self.simulator(port: replayReceiver.descriptor.localPort, seed: 99)
        replay.itchSource = try ItchFileReader(path: file + ".gz")
        replay.run(shouldStop: { false }, progress: { _, _ in })
        #expect(replay.sourceExhausted)
        #expect(try Self.received(replayReceiver) == sent)
    }
}

enum ExternalTool {
    /// Runs a tool to completion; its exit status.
    static func run(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// `mktctl token`: a new secret file, then a token minted with it that edged's verifier takes.
@Suite struct TokenCommandTests {
    @Test func aNewSecretThenATokenThatVerifies() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edged-\(UUID()).secret").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TokenCommand.parse(["--new-secret", path]).run()
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: (any Error).self) { try TokenCommand.parse(["--new-secret", path]).run() }
        let jwt = try TokenCommand.mint(secretFile: path, subject: "alice", symbols: "AAPL, MS", ttl: "2h")
        let now = WallClock.nowNanoseconds() / 1_000_000_000
        let token = try TokenSigner.load(secretFile: path).verify(jwt, nowSeconds: now, skewSeconds: 0).get()
        #expect(token.subject == "alice" && token.symbolPrefixes == ["AAPL", "MS"])
        #expect(token.expiresAt >= now + 7_199 && token.expiresAt <= now + 7_201)
        #expect(throws: (any Error).self) { try TokenCommand.mint(secretFile: path, subject: "a", symbols: "", ttl: "2x") }
        #expect(TokenCommand.parseTTL("7d") == 604_800 && TokenCommand.parseTTL("0s") == nil)
        // 2^64 seconds and more: refused, not a trap.
        #expect(TokenCommand.parseTTL("18446744073709551615d") == nil)
        let aimed = try TokenCommand.mint(secretFile: path, subject: "b", symbols: "", ttl: "1h", audience: "edge-eu",
            issuer: "broker")
        let required = TokenRequirements(audience: "edge-eu", issuer: "broker", maxLifetimeSeconds: 3_600)
        let claims = try TokenSigner.load(secretFile: path).verify(aimed, nowSeconds: now, skewSeconds: 0,
            requirements: required).get()
        #expect(claims.audience == ["edge-eu"] && claims.issuer == "broker")
    }
}
