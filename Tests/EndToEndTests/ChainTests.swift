import Foundation
import Testing

import MarketData
import ZeroMQ

/// The whole chain with the real executables: sim -> feedd -> plantd -> edged, and the clients the outside world uses.
@Suite(.serialized) struct EndToEnd {
    struct SentTrade: Decodable {
        var venue: String
        var symbol: String
        var price: String
        var size: UInt64
    }

    static func jsonLines(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    @Test func ticksFlowFromTheSimulatorToWebSocketAndZeroMQConsumersExactly() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()

        // The raw consumers: our own ZeroMQ wrapper, and plain pyzmq with protoc-generated code.
        let generated = chain.directory.appendingPathComponent("python")
        try FileManager.default.createDirectory(at: generated, withIntermediateDirectories: true)
        let protoc = try Chain.run("/usr/bin/protoc", ["--python_out=\(generated.path)", "-I",
            Chain.packageRoot.appendingPathComponent("Proto").path, "tick.proto"])
        #expect(protoc.status == 0, "protoc failed: \(protoc.output)")
        let clients = Chain.packageRoot.appendingPathComponent("Tests/Clients")
        try chain.start("zmq_consumer", executable: Chain.python,
            [clients.appendingPathComponent("zmq_consumer.py").path, generated.path, chain.endpoint("plant_pub"),
                "AAPL|", "12"])
        try chain.start("ws_client", executable: Chain.python,
            [clients.appendingPathComponent("ws_client.py").path,
                "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices", "12", "AAPL"])
        let context = try ZMQContext()
        let subscriber = try ZMQSocket(context, type: .subscribe)
        try subscriber.setReceiveHighWaterMark(1_000_000)
        try subscriber.subscribe("AAPL|")
        try subscriber.connect(chain.endpoint("plant_pub"))

        // Give every subscriber time to reach plantd (and edged time to subscribe upstream for its client).
        let ready = Date().addingTimeInterval(10)
        while Date() < ready && !(chain.log("zmq_consumer").contains("ready") && chain.log("ws_client").contains("subscribed")) {
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(chain.log("ws_client").contains(#"{"type":"subscribed","symbols":["AAPL"]}"#), "\(chain.log("ws_client"))")
        Thread.sleep(forTimeInterval: 0.5)

        let tradeLog = chain.directory.appendingPathComponent("trades.jsonl")
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path,
            "--duration", "4", "--trade-log", tradeLog.path, "--quiet"])
        #expect(try chain.waitForExit("mktctl", timeout: 30) == 0, "\(chain.log("mktctl"))")
        _ = try chain.waitForExit("ws_client", timeout: 20)
        _ = try chain.waitForExit("zmq_consumer", timeout: 20)

        let sent = try String(contentsOf: tradeLog, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(SentTrade.self, from: Data($0.utf8))
        }
        let sentAAPLPrices = Set(sent.filter { $0.symbol == "AAPL" }.map(\.price))
        #expect(sentAAPLPrices.count > 10, "the simulator sent too few AAPL trades to prove anything")
        #expect(sent.contains { $0.symbol == "AAPLX" }, "the simulator sent no AAPLX trade to keep out")

        // WebSocket: TRADE updates of AAPL only, each at a price the exchange sent, exact to the digit.
        let wsMessages = chain.log("ws_client").split(separator: "\n").map(String.init)
        let wsTrades = wsMessages.filter { $0.contains(#""type":"TRADE""#) }
        #expect(wsTrades.count > 10, "few WebSocket trades: \(wsMessages.prefix(5))")
        for message in wsTrades {
            #expect(message.contains(#""symbol":"AAPL","#), "\(message)")
            let price = message.firstMatch(of: /"price":([0-9.]+)/).map { String($0.1) } ?? "?"
            #expect(sentAAPLPrices.contains(price), "WebSocket price \(price) was never sent: \(message)")
        }
        let wsSequences = Self.jsonLines(chain.log("ws_client")).compactMap { $0["seq"] as? Int }
        #expect(wsSequences == wsSequences.sorted(), "WebSocket seq went backwards")

        // ZeroMQ with our wrapper: AAPL and never AAPLX, symbol_seq contiguous over every type.
        try subscriber.setReceiveTimeout(milliseconds: 500)
        var ticks: [Tick] = []
        while let frames = try subscriber.receiveFrames() {
            #expect(frames.count == 2)
            ticks.append(try TickDecoder.decode(frames[1]))
        }
        #expect(ticks.count > 20)
        #expect(ticks.allSatisfy { $0.symbol == "AAPL" }, "\(Set(ticks.map(\.symbol)))")
        let sequences = ticks.map(\.symbolSequence)
        let firstSequence = try #require(sequences.first)
        #expect(sequences == Array(firstSequence...(firstSequence + UInt64(sequences.count) - 1)),
            "AAPL symbol_seq has a gap or a duplicate")
        for trade in ticks where trade.type == .trade {
            #expect(sentAAPLPrices.contains(trade.price.description), "ZeroMQ price \(trade.price) was never sent")
        }
        #expect(Set(ticks.filter { $0.type == .trade }.map(\.venue)).isSuperset(of: ["XNAS", "ARCX", "BATS"]))

        // pyzmq + protoc code decodes the same stream: plain protobuf on the wire.
        let python = Self.jsonLines(chain.log("zmq_consumer")).filter { $0["ready"] == nil }
        #expect(python.count > 20, "\(chain.log("zmq_consumer").prefix(500))")
        #expect(python.allSatisfy { ($0["symbol"] as? String) == "AAPL" && ($0["topic"] as? String)?.hasPrefix("AAPL|") == true })
        let pythonSequences = python.compactMap { $0["symbol_seq"] as? Int }
        let firstPython = try #require(pythonSequences.first)
        #expect(pythonSequences == Array(firstPython..<(firstPython + pythonSequences.count)))
        for trade in python where trade["type"] as? String == "TRADE" {
            let price = Price(fixedPoint: Int64(trade["price"] as? Int ?? -1)).description
            #expect(sentAAPLPrices.contains(price), "Python consumer price \(price) was never sent")
        }
    }

    @Test func mktctlShowsTheChainAndTailsAndSaysWhenADaemonIsDown() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons()
        try chain.start("mktctl", ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path,
            "--duration", "20", "--quiet"])
        let mktctl = Chain.binDirectory.appendingPathComponent("mktctl").path
        let etc = chain.etc.path

        // tail joins as docs/protocol.md tells a consumer to: AAPL's last values first (SNAPSHOT), then its live
        // ticks from the next symbol_seq on, without a hole.
        let tail = try Chain.run(mktctl, ["tail", "AAPL", "--etc", etc, "--count", "40", "--idle-timeout", "10"])
        #expect(tail.status == 0, "\(tail.output)")
        let lines = tail.output.split(separator: "\n").filter { !$0.hasPrefix("tail: ") }
        #expect(lines.count == 40)
        let snapshot = lines.prefix { $0.hasPrefix("SNAPSHOT") }
        #expect(!snapshot.isEmpty && snapshot.allSatisfy { $0.contains(" AAPL ") }, "\(tail.output)")
        let live = lines.dropFirst(snapshot.count)
        #expect(live.allSatisfy { $0.hasPrefix("AAPL ") || $0.hasPrefix("REPLAYED     AAPL ") }, "\(tail.output)")
        func symbolSequence(_ line: Substring) -> UInt64 {
            line.split(separator: " ").first { $0.hasPrefix("sym#") }.flatMap { UInt64($0.dropFirst(4)) } ?? 0
        }
        let joinedAt = snapshot.map(symbolSequence).max() ?? 0
        let expected = Array((joinedAt + 1)..<(joinedAt + 1 + UInt64(live.count)))
        #expect(live.map(symbolSequence) == expected, "\(tail.output)")

        let json = try Chain.run(mktctl, ["tail", "AAPL|T", "--etc", etc, "--count", "3", "--json", "--idle-timeout", "10"])
        let trades = Self.jsonLines(json.output)
        #expect(trades.count == 3, "\(json.output)")
        #expect(trades.allSatisfy { $0["type"] as? String == "TRADE" && $0["symbol"] as? String == "AAPL" })

        let status = try Chain.run(mktctl, ["status", "--etc", etc])
        #expect(status.status == 0, "\(status.output)")
        for daemon in ["feedd", "plantd", "edged"] {
            #expect(status.output.split(separator: "\n").contains {
                $0.hasPrefix(daemon) && $0.contains(" up ")
            }, "\(daemon) not shown up: \(status.output)")
        }

        let gaps = try Chain.run(mktctl, ["gaps", "--etc", etc])
        #expect(gaps.status == 0, "\(gaps.output)")
        #expect(gaps.output.split(separator: "\n").contains { $0.hasPrefix("XNAS") && $0.contains("TICKPLANT1") },
            "\(gaps.output)")

        chain.stop("edged")
        let down = try Chain.run(mktctl, ["status", "--etc", etc, "--timeout", "300"])
        #expect(down.status != 0)
        #expect(down.output.split(separator: "\n").contains { $0.hasPrefix("edged") && $0.contains("DOWN") }, "\(down.output)")
        let statusJSON = try Chain.run(mktctl, ["status", "--etc", etc, "--timeout", "300", "--json"])
        let rows = Self.jsonLines(statusJSON.output)
        #expect(rows.count == 3)
        #expect(rows.filter { $0["up"] as? Bool == false }.map { $0["daemon"] as? String } == ["edged"])
    }

    @Test(arguments: [
        ("feedd", "[feed]\npublish = \"nowhere\"\n[[venues]]\nvenue = \"XNAS\"\nprotocol = \"itch-moldudp64\"\nlisten = \"127.0.0.1:7001\"\n",
            "[feed] publish"),
        ("feedd", "[[venues]]\nvenue = \"XNAS\"\nprotocol = \"carrier-pigeon\"\n", "[venues[1]] protocol"),
        ("plantd", "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\nsend_hwm = \"lots\"\n", "[plant] send_hwm"),
        ("plantd", "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\nheartbeat_intervall = \"1s\"\n", "[plant] heartbeat_intervall"),
        ("edged", "[edge]\nlisten = \"127.0.0.1\"\n", "[edge] listen"),
        ("edged", "[limits]\nsymbols_per_client = 0\n", "[limits] symbols_per_client"),
        // Beyond loopback without CURVE, and the file does not say insecure = true.
        ("feedd", "[feed]\npublish = \"tcp://0.0.0.0:7101\"\n[[venues]]\nvenue = \"XNAS\"\nprotocol = \"itch-moldudp64\"\nlisten = \"127.0.0.1:7001\"\n",
            "[feed] publish"),
        ("plantd", "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\ncontrol = \"tcp://*:7209\"\n", "[plant] control"),
        ("edged", "[edge]\ncontrol = \"tcp://0.0.0.0:7309\"\n", "[edge] control"),
    ])
    func aBadConfigExitsWithStatus2NamingFileAndKey(daemon: String, toml: String, key: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("\(daemon).toml").path
        try toml.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try Chain.run(Chain.binDirectory.appendingPathComponent(daemon).path, ["--config", file], timeout: 20)
        #expect(result.status == 2, "\(result.output)")
        #expect(result.output.contains("\(file): \(key): "), "\(result.output)")
    }

    @Test func aMissingConfigFileExitsWithStatus2() throws {
        for daemon in ["feedd", "plantd", "edged"] {
            let result = try Chain.run(Chain.binDirectory.appendingPathComponent(daemon).path,
                ["--config", "/nonexistent/\(daemon).toml"], timeout: 20)
            #expect(result.status == 2)
            #expect(result.output.contains("/nonexistent/\(daemon).toml: no such file"), "\(result.output)")
        }
        let sim = try Chain.run(Chain.binDirectory.appendingPathComponent("mktctl").path,
            ["sim", "--config", "/nonexistent/sim.toml"], timeout: 20)
        #expect(sim.status == 2)
        #expect(sim.output.contains("/nonexistent/sim.toml: no such file"))
    }
}
