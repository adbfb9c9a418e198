import Foundation
import Glibc
import Testing
import TestSupport

import MarketData
import ZeroMQ

/// The reference consumers of examples/ (Python on pyzmq, C on libzmq and protobuf-c), as a risk system runs them,
/// against the real chain: sim -> feedd -> plantd at full load. Each joins while the market runs, loses a range of
/// ticks on purpose and heals it, rides through a kill -9 of plantd and its restart from the journal, and ends with
/// every symbol's sequence contiguous from its join and its last values equal to the plant's own snapshot.
@Suite(.serialized) struct ReferenceConsumersEndToEnd {
    /// A debug feedd and plantd do not carry 100 000 ticks/s, so `make test` runs the release ones.
    static let releaseBinDirectory = ProcessInfo.processInfo.environment["TICKPLANT_RELEASE_BIN_DIR"]
    static let binDirectory = releaseBinDirectory.map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory
    /// ITCH messages a second from the sim: about 100 000 ticks a second out of plantd (an add order that does not
    /// change the top of the book publishes nothing; one that does, a QUOTE and a conflated BOOK).
    static let rate = releaseBinDirectory == nil ? 20_000 : 160_000
    static let examples = Chain.packageRoot.appendingPathComponent("examples")

    /// What a consumer printed last: its counters and each symbol's state.
    struct Final {
        var counters: [String: Int]
        var received: Int
        var symbols: [String: [String: Any]]

        init(log: String, name: String) throws {
            let line = try #require(log.split(separator: "\n").last { $0.hasPrefix("{\"final\"") },
                "\(name) printed no final summary: \(log.suffix(2_000))")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["final"] as? [String: Any]
            counters = try #require(object?["counters"] as? [String: Int])
            received = try #require(object?["received"] as? Int)
            symbols = try #require(object?["symbols"] as? [String: [String: Any]])
        }

        func counter(_ name: String) -> Int { counters[name] ?? 0 }
    }

    /// A consumer watching thousands of prefixes (a risk system on a whole exchange). Subscriptions travel to plantd
    /// as messages: libzmq drops those past the SUB's send high-water mark (1 000 by default) without a word, and
    /// sends those made before the SUB connects in its own order, the heartbeat's "#HB" ahead of every symbol's. The
    /// join's proof (the first heartbeat means every prefix before it is live) needs them all, in the order made. A
    /// ZeroMQ XPUB stands in for plantd and reads them: the C and Python references and `mktctl tail` (PlantJoin).
    @Test func withThousandsOfPrefixesEveryJoinerSubscribesToAllOfThemAndToTheHeartbeatLast() throws {
        try Self.buildExamples()
        let chain = try Chain()
        defer { chain.stop() }
        let context = try ZMQContext()
        let symbols = (0..<3_000).map { "S\($0)" }
        let joiners: [(name: String, executable: String, arguments: [String])] = [
            ("consumer-c", Self.examples.appendingPathComponent("consumer-c/consumer").path, symbols.map { $0 + "|" }),
            ("consumer-python", Chain.python,
                [Self.examples.appendingPathComponent("consumer-python/consumer.py").path] + symbols.map { $0 + "|" }),
            ("mktctl-tail", Self.binDirectory.appendingPathComponent("mktctl").path, ["tail"] + symbols),
        ]
        for joiner in joiners {
            let plant = try ZMQSocket(context, type: .extendedPublish)
            try plant.setVerboseSubscriptions(true)
            try plant.setReceiveTimeout(milliseconds: 500)
            try plant.bind("tcp://127.0.0.1:*")
            // Nothing answers there: a joiner asks for snapshots only after a heartbeat, and none is sent.
            let snapshot = "tcp://127.0.0.1:\(try Chain.freePort(udp: false))"
            let endpoints = joiner.name == "mktctl-tail"
                ? ["--from", try plant.lastEndpoint, "--snapshot", snapshot, "--idle-timeout", "20"]
                : ["--endpoint", try plant.lastEndpoint, "--snapshot", snapshot, "--seconds", "20"]
            let process = try chain.start(joiner.name, executable: joiner.executable, joiner.arguments + endpoints)
            let subscribed = try PublisherSubscriptions.read(from: plant, count: symbols.count + 1, within: 15)
            // Killed outright: a SIGTERM this early was seen to wait out the joiner's 20 s, and nothing of it is
            // checked after this.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            plant.close()
            let everyOne = Set(subscribed) == Set(symbols.map { $0 + "|" } + [Topic.heartbeat])
            #expect(everyOne, "\(joiner.name): \(subscribed.count) of \(symbols.count + 1) subscriptions arrived")
            let heartbeatAt = subscribed.firstIndex(of: Topic.heartbeat) ?? -1
            #expect(subscribed.last == Topic.heartbeat, "\(joiner.name): #HB came at \(heartbeatAt)")
        }
    }

    /// `make examples`: the C consumer built, the Python one's protoc code generated.
    static func buildExamples() throws {
        let result = try Chain.run("/usr/bin/make", ["-s", "-C", Chain.packageRoot.path, "examples"], timeout: 300)
        guard result.status == 0 else { throw ChainError("make examples failed: \(result.output)") }
    }

    /// plantd's snapshot of everything: each symbol's last tick of each type (the one with the highest symbol_seq).
    static func plantSnapshot(_ chain: Chain, context: ZMQContext) throws -> [String: [TickType: Tick]] {
        let dealer = try ZMQSocket(context, type: .dealer)
        defer { dealer.close() }
        try dealer.setReceiveTimeout(milliseconds: 10_000)
        try dealer.connect(chain.endpoint("plant_snap"))
        _ = try dealer.send(ReplayRequest.snapshot(prefix: "").encoded())
        var last: [String: [TickType: Tick]] = [:]
        while true {
            let frames = try #require(try dealer.receiveFrames(), "plantd's snapshot did not end within 10 s")
            if frames[0] == Array(SnapshotEnd.topic.utf8) { break }
            guard frames[0].first != UInt8(ascii: "#") else { continue }
            let tick = try TickDecoder.decode(frames[1])
            if (last[tick.symbol]?[tick.type]?.symbolSequence ?? 0) < tick.symbolSequence {
                last[tick.symbol, default: [:]][tick.type] = tick
            }
        }
        return last
    }

    /// Holds one consumer's end to the plant's: the same symbols, each at the plant's last symbol_seq with the same
    /// last tick of each type, every sequence contiguous from the join, every gap healed, no reset.
    static func expectEqualToThePlant(
        _ final: Final, name: String, prefixes: [String], plant: [String: [TickType: Tick]], dropped: Int
    ) {
        #expect(final.counter("dropped_on_purpose") == dropped, "\(name): \(final.counters)")
        #expect(final.counter("gaps") > 0, "\(name): the ticks dropped on purpose showed no gap: \(final.counters)")
        #expect(final.counter("gaps_healed") == final.counter("gaps"), "\(name): \(final.counters)")
        #expect(final.counter("resets") == 0, "\(name): \(final.counters)")
        #expect(final.counter("plant_restarts") == 1, "\(name): \(final.counters)")
        #expect(final.counter("rejoins") >= 1, "\(name): \(final.counters)")
        let expected = plant.keys.filter { symbol in prefixes.contains { symbol.hasPrefix($0) } }
        #expect(Set(final.symbols.keys) == Set(expected), "\(name): symbols differ from the plant's")
        var mismatches: [String] = []
        for symbol in expected.sorted() {
            guard let mine = final.symbols[symbol], let theirs = plant[symbol] else { continue }
            let lastSeq = mine["last_seq"] as? Int ?? -1
            let joinedSeq = mine["joined_seq"] as? Int ?? -1
            let applied = mine["applied"] as? Int ?? -1
            let newest = theirs.values.map(\.symbolSequence).max() ?? 0
            if lastSeq != Int(newest) { mismatches.append("\(symbol): last_seq \(lastSeq), the plant's \(newest)") }
            if applied != lastSeq - joinedSeq {
                mismatches.append("\(symbol): \(applied) applied from \(joinedSeq) to \(lastSeq): not contiguous")
            }
            if mine["quality"] as? String != "OK" { mismatches.append("\(symbol): quality \(mine["quality"] ?? "")") }
            let values = mine["last"] as? [String: [String: Int]] ?? [:]
            for (type, tick) in theirs {
                let value = values[type.description] ?? [:]
                var same = value["symbol_seq"] == Int(tick.symbolSequence)
                switch type {
                case .trade: same = same && value["price"] == Int(tick.price.fixedPoint)
                case .quote:
                    same = same && value["bid_price"] == Int(tick.bidPrice.fixedPoint)
                        && value["ask_price"] == Int(tick.askPrice.fixedPoint)
                default: break
                }
                if !same { mismatches.append("\(symbol) \(type): \(value), the plant's seq \(tick.symbolSequence)") }
            }
        }
        #expect(mismatches.isEmpty, "\(name): \(mismatches.count) differences, first: \(mismatches.prefix(5))")
    }

    /// mktctl tail's lines: per symbol its snapshot, then every symbol_seq after it once, in order, up to the
    /// plant's last; the plant's restart said on standard error.
    static func expectTailContiguous(_ log: String, prefix: String, plant: [String: [TickType: Tick]]) {
        var snapshotTop: [String: Int] = [:]
        var last: [String: Int] = [:]
        var holes: [String] = []
        for line in log.split(separator: "\n") where line.hasPrefix("{") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let symbol = object["symbol"] as? String, let sequence = object["symbol_seq"] as? Int
            else { continue }
            if object["origin"] as? String == "snapshot" {
                snapshotTop[symbol] = max(snapshotTop[symbol] ?? 0, sequence)
                last[symbol] = snapshotTop[symbol]
                continue
            }
            let previous = last[symbol] ?? 0
            if sequence != previous + 1 { holes.append("\(symbol): \(sequence) after \(previous)") }
            last[symbol] = sequence
        }
        #expect(log.contains("tail: joining again: plantd restarted"), "\(log.suffix(1_000))")
        #expect(holes.isEmpty, "tail: \(holes.count) holes, first: \(holes.prefix(5))")
        let expected = plant.filter { $0.key.hasPrefix(prefix) }
            .mapValues { Int($0.values.map(\.symbolSequence).max() ?? 0) }
        #expect(last == expected, "tail's last symbol_seq differ from the plant's")
    }

    @Test func bothConsumersJoinUnderLoadHealAGapRideThroughAPlantRestartAndEndEqualToThePlant() throws {
        try Self.buildExamples()
        let chain = try Chain()
        defer { chain.stop() }
        let plantConfig = chain.etc.appendingPathComponent("plantd-consumers.toml").path
        let plantd = Self.binDirectory.appendingPathComponent("plantd").path
        try chain.start("plantd", executable: plantd, ["--config", plantConfig])
        try chain.startDaemons(["feedd"], from: Self.binDirectory)
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))
        let marketSeconds = 12.0
        try chain.start("sim", executable: Self.binDirectory.appendingPathComponent("mktctl").path,
            ["sim", "--config", chain.etc.appendingPathComponent("sim-itch.toml").path, "--rate", "\(Self.rate)",
                "--duration", "\(Int(marketSeconds))", "--quiet"])
        let marketStarted = Date()

        // Join a second and a half in, under full load. Python takes two shards, C the whole market.
        Thread.sleep(forTimeInterval: 1.5)
        let endpoints = ["--endpoint", chain.endpoint("plant_pub"), "--snapshot", chain.endpoint("plant_snap")]
        let common = endpoints + ["--json", "--until-idle", "4", "--seconds", "150", "--heartbeat-timeout", "3"]
        let pythonPrefixes = ["A", "M"]
        let pythonDrop = (from: 3_000, count: 300)
        let cDrop = (from: 40_000, count: 2_000)
        try chain.start("consumer-python", executable: Chain.python,
            [Self.examples.appendingPathComponent("consumer-python/consumer.py").path] + common
                + ["--drop", "\(pythonDrop.from):\(pythonDrop.count)"] + pythonPrefixes)
        try chain.start("consumer-c", executable: Self.examples.appendingPathComponent("consumer-c/consumer").path,
            common + ["--drop", "\(cDrop.from):\(cDrop.count)"])
        // And what an operator sees: mktctl tail joins the same way.
        let tailPrefix = "M"
        try chain.start("tail", executable: Self.binDirectory.appendingPathComponent("mktctl").path,
            ["tail", "--from", chain.endpoint("plant_pub"), "--snapshot", chain.endpoint("plant_snap"), "--raw",
                "--json", "--idle-timeout", "4", tailPrefix])
        let joinDeadline = Date().addingTimeInterval(10)
        func joined(_ name: String) -> Bool { chain.log(name).contains("  live  ") }
        while Date() < joinDeadline && !(joined("consumer-python") && joined("consumer-c")) {
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(joined("consumer-python") && joined("consumer-c"), "not joined within 10 s")
        let loadAtJoin = chain.status(chain.endpoint("plant_ctl"))?.rateOut ?? 0

        // kill -9 of plantd halfway through the market, and its restart from the journal.
        Thread.sleep(forTimeInterval: max(0, 5 - Date().timeIntervalSince(marketStarted)))
        let killed = try #require(chain.processes["plantd"])
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        try chain.start("plantd-restarted", executable: plantd, ["--config", plantConfig])
        try chain.waitUntilAnswering("plantd-restarted", endpoint: chain.endpoint("plant_ctl"))

        #expect(try chain.waitForExit("sim", timeout: 60) == 0, "\(chain.log("sim"))")
        #expect(try chain.waitForExit("consumer-c", timeout: 150) == 0, "\(chain.log("consumer-c").suffix(2_000))")
        #expect(try chain.waitForExit("consumer-python", timeout: 150) == 0,
            "\(chain.log("consumer-python").suffix(2_000))")
        #expect(try chain.waitForExit("tail", timeout: 150) == 0, "\(chain.log("tail").suffix(2_000))")
        let context = try ZMQContext()
        let plant = try Self.plantSnapshot(chain, context: context)
        #expect(plant.count > 200, "the market's symbols: \(plant.count)")

        let c = try Final(log: chain.log("consumer-c"), name: "consumer-c")
        let python = try Final(log: chain.log("consumer-python"), name: "consumer-python")
        #expect(c.received > Self.rate * 3, "the C consumer took too little to prove anything: \(c.received)")
        Self.expectEqualToThePlant(c, name: "consumer-c", prefixes: [""], plant: plant, dropped: cDrop.count)
        Self.expectEqualToThePlant(python, name: "consumer-python", prefixes: pythonPrefixes, plant: plant,
            dropped: pythonDrop.count)
        Self.expectTailContiguous(chain.log("tail"), prefix: tailPrefix, plant: plant)
        print("reference consumers: joined under \(Int(loadAtJoin)) ticks/s out of plantd; C took \(c.received) "
            + "ticks, healed \(c.counter("gaps_healed")) gaps; Python took \(python.received), healed "
            + "\(python.counter("gaps_healed")); both rode through plantd's restart")
    }

    /// `[curve]` on plantd: the reference consumer with a listed key gets the stream and its snapshots, one with an
    /// unknown key or none gets nothing (the refusals counted), and edged and mktctl tail reach it with their keys.
    @Test func withCurveOnlyListedKeysReachThePlantAndEdgedAndTailUseTheirs() throws {
        try Self.buildExamples()
        let chain = try Chain()
        defer { chain.stop() }
        let mktctl = Self.binDirectory.appendingPathComponent("mktctl").path
        let keys = chain.directory.appendingPathComponent("keys")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        func key(_ name: String) -> String { keys.appendingPathComponent(name).path }
        for name in ["plantd", "edged", "risk", "stranger"] {
            let made = try Chain.run(mktctl, ["keygen", "--out", key(name)])
            #expect(made.status == 0, "\(made.output)")
        }
        // plantd and edged of this chain, with [curve]; feedd and the sim as ever.
        let etc = chain.directory.appendingPathComponent("etc-curve")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        func plain(_ name: String) throws -> String {
            try String(contentsOf: chain.etc.appendingPathComponent(name), encoding: .utf8)
        }
        try (plain("plantd.toml") + """

            [curve]
            secret_key_file = "\(key("plantd.key_secret"))"
            client_key_files = ["\(key("edged.key"))", "\(key("risk.key"))"]
            """).write(to: etc.appendingPathComponent("plantd.toml"), atomically: true, encoding: .utf8)
        try (plain("edged.toml") + """

            [curve]
            server_key_file = "\(key("plantd.key"))"
            secret_key_file = "\(key("edged.key_secret"))"
            """).write(to: etc.appendingPathComponent("edged.toml"), atomically: true, encoding: .utf8)
        for daemon in ["plantd", "edged"] {
            let checked = try Chain.run(mktctl, ["check-config", etc.appendingPathComponent("\(daemon).toml").path])
            #expect(checked.status == 0, "\(checked.output)")
            try chain.start(daemon, executable: Self.binDirectory.appendingPathComponent(daemon).path,
                ["--config", etc.appendingPathComponent("\(daemon).toml").path])
        }
        try chain.startDaemons(["feedd"], from: Self.binDirectory)
        try chain.waitUntilAnswering("plantd", endpoint: chain.endpoint("plant_ctl"))
        try chain.waitUntilAnswering("edged", endpoint: chain.endpoint("edge_ctl"))
        try chain.start("sim", executable: mktctl,
            ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--duration", "10", "--quiet"])

        let endpoints = [
            "--endpoint", chain.endpoint("plant_pub"), "--snapshot", chain.endpoint("plant_snap"), "--json",
        ]
        let consumerC = Self.examples.appendingPathComponent("consumer-c/consumer").path
        try chain.start("listed", executable: consumerC, endpoints + ["--seconds", "4", "--curve-server-key",
            key("plantd.key"), "--curve-secret-key", key("risk.key_secret"), "AAPL|"])
        try chain.start("keyless", executable: consumerC, endpoints + ["--seconds", "3", "AAPL|"])
        try chain.start("stranger", executable: Chain.python,
            [Self.examples.appendingPathComponent("consumer-python/consumer.py").path] + endpoints + ["--seconds", "3",
                "--curve-server-key", key("plantd.key"), "--curve-secret-key", key("stranger.key_secret"), "AAPL|"])
        try chain.start("ws_client", executable: Chain.python,
            [Chain.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path,
                "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices", "4", "AAPL"])

        let tail = try Chain.run(mktctl, ["tail", "AAPL", "--etc", etc.path, "--count", "5", "--idle-timeout", "10",
            "--curve-server-key", key("plantd.key"), "--curve-secret-key", key("risk.key_secret")])
        #expect(tail.status == 0, "\(tail.output)")
        #expect(tail.output.split(separator: "\n").filter { $0.contains(" AAPL ") || $0.hasPrefix("AAPL ") }.count == 5,
            "\(tail.output)")
        let keyless = try Chain.run(mktctl, ["tail", "AAPL", "--etc", etc.path, "--count", "1", "--idle-timeout", "3"])
        #expect(keyless.status != 0 && keyless.output.contains("plantd.toml has [curve]"), "\(keyless.output)")

        for name in ["listed", "keyless", "stranger", "ws_client"] { _ = try chain.waitForExit(name, timeout: 30) }
        let listed = try Final(log: chain.log("listed"), name: "listed")
        #expect(listed.received > 0 && listed.symbols["AAPL"]?["quality"] as? String == "OK", "\(chain.log("listed"))")
        #expect((listed.symbols["AAPL"]?["joined_seq"] as? Int ?? 0) > 0, "no snapshot through CURVE")
        #expect(try Final(log: chain.log("keyless"), name: "keyless").received == 0)
        let stranger = try Final(log: chain.log("stranger"), name: "stranger")
        #expect(stranger.received == 0 && stranger.symbols.isEmpty, "\(chain.log("stranger"))")
        #expect(chain.log("ws_client").contains(#""symbol":"AAPL""#),
            "edged got nothing through CURVE: \(chain.log("ws_client"))")
        let status = try #require(chain.status(chain.endpoint("plant_ctl")))
        #expect((status.counters["curve_clients_refused"] ?? 0) >= 2, "\(status.counters)")
        #expect(chain.log("plantd").contains("unknown CURVE key"), "\(chain.log("plantd"))")
    }
}
