import Foundation
import Glibc
import Testing
import TestSupport

@testable import EdgeServer
import MarketData
import ZeroMQ

/// `[limits]` over real sockets: connections per process (406), messages per second (429), the handshake timeout.
@Suite(.serialized) struct EdgeLimitsOverRealSockets {
    @Test func theConnectionAfterTheLimitGets406AndACloseAndRoomComesBack() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.maxConnections = 2 }
        let first = try TestWebSocketClient(port: fixture.port)
        let second = try TestWebSocketClient(port: fixture.port)
        let third = try TestWebSocketClient(port: fixture.port)
        #expect(try third.receiveJSON()["code"] as? Int == 406)
        #expect(try EdgeAuthOverRealSockets.closeCode(third) == 1008)
        // The two within the limit are served.
        try second.send(text: #"{"action":"ping"}"#)
        #expect(try second.receiveJSON()["type"] as? String == "pong")
        // One leaves: a new client is served again.
        try first.send(opcode: 0x8, [0x03, 0xE8])
        _ = try? EdgeAuthOverRealSockets.closeCode(first)
        try await Task.sleep(for: .milliseconds(200))
        let fourth = try TestWebSocketClient(port: fixture.port)
        try fourth.send(text: #"{"action":"ping"}"#)
        #expect(try fourth.receiveJSON()["type"] as? String == "pong")
        await fixture.stop()
    }

    @Test func messagesBeyondTheRateGet429AndTheConnectionStays() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.maxMessagesPerSecond = 5 }
        let client = try TestWebSocketClient(port: fixture.port)
        for _ in 0..<8 { try client.send(text: #"{"action":"ping"}"#) }
        var answers: [String] = []
        for _ in 0..<8 {
            let reply = try client.receiveJSON()
            answers.append((reply["type"] as? String == "pong") ? "pong" : "\(reply["code"] as? Int ?? 0)")
        }
        #expect(answers.filter { $0 == "pong" }.count == 5)
        #expect(answers.filter { $0 == "429" }.count == 3)
        // The allowance refills: a second later the client is heard again.
        try await Task.sleep(for: .milliseconds(1_100))
        try client.send(text: #"{"action":"ping"}"#)
        #expect(try client.receiveJSON()["type"] as? String == "pong")
        await fixture.stop()
    }

    /// A client that sends a whole second's allowance over its rate in a row, binary frames included, is flooding:
    /// its last message gets 429 and the connection close 1008, instead of edged answering it message by message.
    @Test func aSecondsAllowanceOverTheRateInARowGetsAClose1008() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.maxMessagesPerSecond = 5 }
        let client = try TestWebSocketClient(port: fixture.port)
        for _ in 0..<5 { try client.send(text: #"{"action":"ping"}"#) }
        for _ in 0..<5 { try client.send(opcode: 0x2, [1, 2, 3]) }
        var answers: [String] = []
        for _ in 0..<20 {
            let frame = try client.receiveFrame()
            if frame.opcode == 0x8 {
                answers.append("close \(Int(frame.payload[0]) << 8 | Int(frame.payload[1]))")
                break
            }
            let reply = try JSONSerialization.jsonObject(with: Data(frame.payload)) as? [String: Any] ?? [:]
            if reply["type"] as? String == "heartbeat" { continue }
            answers.append((reply["type"] as? String == "pong") ? "pong" : "\(reply["code"] as? Int ?? 0)")
        }
        #expect(answers == Array(repeating: "pong", count: 5) + Array(repeating: "429", count: 5) + ["close 1008"])
        let status = try EdgeStatusProbe.status(fixture)
        #expect(status.counters["flooding_clients_closed"] == 1)
        #expect(status.counters["rate_limited_messages"] == 5)
        await fixture.stop()
    }

    @Test func aConnectionThatNeverAsksAnythingIsClosedAfterTheHandshakeTimeout() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.handshakeTimeout = .milliseconds(300) }
        let fd = try LoopbackHTTP.connect(port: fixture.port)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let started = Date()
        var byte: UInt8 = 0
        let got = recv(fd, &byte, 1, 0)
        #expect(got == 0, "the server closed the connection")
        #expect(Date().timeIntervalSince(started) < 2)
        // A client that upgrades in time is not touched by it.
        let client = try TestWebSocketClient(port: fixture.port)
        try await Task.sleep(for: .milliseconds(500))
        try client.send(text: #"{"action":"ping"}"#)
        #expect(try client.receiveJSON()["type"] as? String == "pong")
        await fixture.stop()
    }
}

/// The drain (SIGTERM): every client is told 1001; no new client is taken and /healthz says draining meanwhile; the
/// server waits for clients to answer, at most `drain_timeout`.
@Suite(.serialized) struct EdgeDrainOverRealSockets {
    @Test func clientsAreToldAndTheServerWaitsForThemAtMostTheDrainTimeout() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.drainTimeout = .milliseconds(1_500) }
        let polite = try TestWebSocketClient(port: fixture.port)
        let silent = try TestWebSocketClient(port: fixture.port)
        try polite.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        _ = try polite.receiveJSON()
        let started = Date()
        let server = fixture.server
        let stopping = Task { await server.stop() }
        #expect(try EdgeAuthOverRealSockets.closeCode(polite) == 1001)
        #expect(try EdgeAuthOverRealSockets.closeCode(silent) == 1001)
        // While the silent client keeps the drain going: a load balancer sees draining, a new client is refused.
        let health = try LoopbackHTTP.request(port: fixture.port, path: "/healthz")
        #expect(health.hasPrefix("HTTP/1.1 503") && health.contains("draining"), "\(health)")
        #expect { try TestWebSocketClient(port: fixture.port) } throws: { ($0 as? TestWebSocketClient.Refused)?.status == 503 }
        // The polite client answers the close: the server ends its connection.
        try polite.send(opcode: 0x8, [0x03, 0xE9])
        #expect(throws: (any Error).self) { _ = try polite.receiveFrame(timeout: 2) }
        await stopping.value
        let took = Date().timeIntervalSince(started)
        #expect(took >= 1.3 && took < 4, "waited for the silent client until the drain timeout: \(took) s")
    }
}

/// Snapshots before updates: a symbol's first client makes edged ask plantd's snapshot ROUTER (stood in for here),
/// live updates that arrive meanwhile wait and those the snapshot holds are dropped; a later client is answered from
/// edged's own cache.
@Suite(.serialized) struct EdgeSnapshotsOverRealSockets {
    @Test func aClientGetsTheSymbolsLastValuesFirstThenUpdatesWithNoDuplicate() async throws {
        let context = try ZMQContext()
        let plantSnapshots = try ZMQSocket(context, type: .router)
        try plantSnapshots.setReceiveTimeout(milliseconds: 3_000)
        try plantSnapshots.bind("tcp://127.0.0.1:*")
        let endpoint = try plantSnapshots.lastEndpoint
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.snapshotEndpoint = endpoint }
        let encoder = TickEncoder()
        func tick(_ type: TickType, _ price: Int64, stream: UInt64) -> Tick {
            var tick = type == .trade
                ? Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: price * 10_000), size: 100)
                : Tick(symbol: "AAPL", type: .quote, venue: "XNAS")
            if type == .quote {
                tick.bidPrice = Price(fixedPoint: (price - 1) * 10_000)
                tick.askPrice = Price(fixedPoint: (price + 1) * 10_000)
            }
            tick.streamSequence = stream
            tick.symbolSequence = stream
            return tick
        }
        func publishLive(_ tick: Tick) throws {
            try fixture.upstream.send(Topic.make(symbol: "AAPL", type: tick.type), more: true)
            try fixture.upstream.send(encoder.encodeToArray(tick))
        }

        let first = try TestWebSocketClient(port: fixture.port)
        try first.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        #expect(try first.receiveText() == #"{"type":"subscribed","symbols":["AAPL"]}"#)
        #expect(try fixture.nextUpstreamChange() == "+AAPL|")
        let request = try #require(try plantSnapshots.receiveFrames(), "edged asked plantd for AAPL's snapshot")
        guard case let .snapshot(prefix) = ReplayRequest(decoding: request[request.count - 1]) else {
            Issue.record("not a snapshot request")
            return
        }
        #expect(prefix == "AAPL|")
        try await Task.sleep(for: .milliseconds(200))  // the live subscription is in place
        // Live while the snapshot is awaited: 11 is in the snapshot (dropped), 12 is newer (goes on after it).
        try publishLive(tick(.trade, 17_852, stream: 11))
        try publishLive(tick(.trade, 17_853, stream: 12))
        try await Task.sleep(for: .milliseconds(200))
        for snapshotTick in [tick(.quote, 17_850, stream: 10), tick(.trade, 17_852, stream: 11)] {
            _ = try plantSnapshots.send(request[0], more: true)
            _ = try plantSnapshots.send(Topic.make(symbol: "AAPL", type: snapshotTick.type), more: true)
            _ = try plantSnapshots.send(encoder.encodeToArray(snapshotTick))
        }
        _ = try plantSnapshots.send(request[0], more: true)
        _ = try plantSnapshots.send(SnapshotEnd.topic, more: true)
        _ = try plantSnapshots.send(SnapshotEnd(streamSequence: 11, tickCount: 2, complete: true).encoded())

        var seen: [String] = []
        for _ in 0..<3 {
            let message = try first.receiveJSON()
            seen.append("\(message["type"] as? String ?? "?") \(message["seq"] as? Int ?? 0)"
                + (message["snapshot"] as? Bool == true ? " snapshot" : ""))
        }
        #expect(seen == ["QUOTE 10 snapshot", "TRADE 11 snapshot", "TRADE 12"])

        // A second client: answered from edged's cache (plantd is not asked again), with the latest values.
        let second = try TestWebSocketClient(port: fixture.port)
        try second.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        _ = try second.receiveText()
        var secondSeen: [String] = []
        for _ in 0..<2 {
            let message = try second.receiveJSON()
            secondSeen.append("\(message["type"] as? String ?? "?") \(message["seq"] as? Int ?? 0)"
                + (message["snapshot"] as? Bool == true ? " snapshot" : ""))
        }
        #expect(secondSeen == ["QUOTE 10 snapshot", "TRADE 12 snapshot"])
        // A client in ltp mode gets only the last trade of the snapshot.
        let third = try TestWebSocketClient(port: fixture.port)
        try third.send(text: #"{"action":"subscribe","symbol":"AAPL","mode":"ltp"}"#)
        _ = try third.receiveText()
        let ltpSnapshot = try third.receiveJSON()
        #expect(ltpSnapshot["type"] as? String == "TRADE" && ltpSnapshot["seq"] as? Int == 12)
        try plantSnapshots.setReceiveTimeout(milliseconds: 300)
        #expect(try plantSnapshots.receiveFrames() == nil, "plantd was not asked again")
        // Both get the next update once.
        try publishLive(tick(.trade, 17_854, stream: 13))
        #expect(try first.receiveJSON()["seq"] as? Int == 13)
        #expect(try second.receiveJSON()["seq"] as? Int == 13)
        #expect(try third.receiveJSON()["seq"] as? Int == 13, "and no snapshot QUOTE before it")
        await fixture.stop()
        plantSnapshots.close()
    }
}

/// `mode` on a subscribe: ltp gets trades (and statuses), quote adds quotes, full (the default) gets everything.
@Suite(.serialized) struct EdgeModesOverRealSockets {
    @Test func eachClientGetsTheTypesItsModeAsksFor() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        let ltp = try TestWebSocketClient(port: fixture.port)
        let quote = try TestWebSocketClient(port: fixture.port)
        let full = try TestWebSocketClient(port: fixture.port)
        try ltp.send(text: #"{"action":"subscribe","symbol":"AAPL","mode":"ltp"}"#)
        try quote.send(text: #"{"action":"subscribe","symbol":"AAPL","mode":"quote"}"#)
        try full.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        for client in [ltp, quote, full] { _ = try client.receiveText() }
        _ = try fixture.nextUpstreamChange()
        try await Task.sleep(for: .milliseconds(200))
        var quoteTick = Tick(symbol: "AAPL", type: .quote, venue: "XNAS")
        quoteTick.bidPrice = Price(fixedPoint: 178_500_000)
        quoteTick.askPrice = Price(fixedPoint: 178_520_000)
        var book = Tick(symbol: "AAPL", type: .book, venue: "XNAS")
        book.bids = [BookLevel(price: Price(fixedPoint: 178_500_000), size: 100)]
        var status = Tick(symbol: "AAPL", type: .status, venue: "XNAS")
        status.state = .halted
        for tick in [quoteTick, book, Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 178_510_000),
            size: 10), status]
        {
            try fixture.publish(tick)
        }
        func types(_ client: TestWebSocketClient, _ count: Int) throws -> [String] {
            try (0..<count).map { _ in try client.receiveJSON()["type"] as? String ?? "?" }
        }
        #expect(try types(ltp, 2) == ["TRADE", "STATUS"])
        #expect(try types(quote, 3) == ["QUOTE", "TRADE", "STATUS"])
        #expect(try types(full, 4) == ["QUOTE", "BOOK", "TRADE", "STATUS"])
        try ltp.send(text: #"{"action":"subscribe","symbol":"MSFT","mode":"depth"}"#)
        #expect(try ltp.receiveJSON()["code"] as? Int == 400)
        await fixture.stop()
    }
}

/// `maxRate` on a subscribe: at most that many updates per second of the symbol, always ending on the latest.
@Suite(.serialized) struct EdgeMaxRateOverRealSockets {
    @Test func aClientWithMaxRateTwoGetsAtMostTwoASecondAndTheLatestPrice() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        let limited = try TestWebSocketClient(port: fixture.port)
        let everything = try TestWebSocketClient(port: fixture.port)
        try limited.send(text: #"{"action":"subscribe","symbol":"AAPL","maxRate":2}"#)
        try everything.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        for client in [limited, everything] { _ = try client.receiveText() }
        _ = try fixture.nextUpstreamChange()
        try await Task.sleep(for: .milliseconds(200))
        // 40 trades over 1.2 s, the price rising each time; then a halt, which no rate holds back.
        for index in 1...40 {
            try fixture.publishTrade("AAPL", price: 178_000_000 + Int64(index) * 10_000)
            try await Task.sleep(for: .milliseconds(30))
        }
        var halt = Tick(symbol: "AAPL", type: .status, venue: "XNAS")
        halt.state = .halted
        try fixture.publish(halt)
        try await Task.sleep(for: .milliseconds(700))
        var prices: [String] = []
        var sawHalt = false
        while let message = try? limited.receiveJSON(timeout: 0.3) {
            if message["type"] as? String == "TRADE" {
                prices.append("\(message["price"] ?? "?")")
                #expect(!sawHalt, "the trade held for its turn goes out before the halt, not after")
            }
            if message["type"] as? String == "STATUS" { sawHalt = true }
        }
        // 1.2 s at 2 a second: the first at once, then one each half second (3 or 4), and the last held one.
        #expect(prices.count >= 3 && prices.count <= 5, "\(prices)")
        #expect(prices.last == "178.4", "the latest price arrives in the end: \(prices)")
        #expect(sawHalt)
        var all = 0
        while (try? everything.receiveJSON(timeout: 0.3)) != nil { all += 1 }
        #expect(all == 41, "a client without maxRate gets every update")
        await fixture.stop()
    }
}

/// The idle timeout: edged pings a client it has not heard from; one that answers stays, one that never does is
/// closed with 1008.
@Suite(.serialized) struct EdgeIdleOverRealSockets {
    @Test func aClientThatNeverAnswersIsClosedAndOneThatPongsStays() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            $0.heartbeatInterval = .milliseconds(100)
            $0.idleTimeout = .milliseconds(600)
        }
        let silent = try TestWebSocketClient(port: fixture.port)
        let alive = try TestWebSocketClient(port: fixture.port)
        var pinged = false
        var silentClose: Int?
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline {
            // The live client answers every ping, as browsers do.
            if let frame = try? alive.receiveFrame(timeout: 0.05, answeringPings: false), frame.opcode == 0x9 {
                pinged = true
                try alive.send(opcode: 0xA, frame.payload)
            }
            if silentClose == nil, let frame = try? silent.receiveFrame(timeout: 0.05, answeringPings: false),
                frame.opcode == 0x8
            {
                silentClose = frame.payload.count >= 2 ? Int(frame.payload[0]) << 8 | Int(frame.payload[1]) : 0
            }
        }
        #expect(pinged, "edged pinged a quiet client")
        #expect(silentClose == 1008, "the client that never answered was closed")
        try alive.send(text: #"{"action":"ping"}"#)
        var answered = false
        while let message = try? alive.receiveFrame(timeout: 1) {
            if message.opcode == 0x1, String(decoding: message.payload, as: UTF8.self).contains("pong") {
                answered = true
                break
            }
        }
        #expect(answered, "the client that answered its pings is still served")
        await fixture.stop()
    }
}

/// `[curve]` of edged.toml: plantd's public key and edged's own secret, both files, both or neither.
@Suite struct EdgeCurveConfiguration {
    @Test func theKeysAreReadFromTheirFilesAndABadPairIsAConfigErrorNamingTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-edge-curve-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let plant = try CurveKeyPair.generate()
        let edge = try CurveKeyPair.generate()
        let serverFile = directory.appendingPathComponent("plantd.key").path
        let secretFile = directory.appendingPathComponent("edged.key_secret").path
        try (plant.publicKey + "\n").write(toFile: serverFile, atomically: true, encoding: .utf8)
        try SecretFiles.create(secretFile, contents: edge.secretKey + "\n")
        let openSecretFile = directory.appendingPathComponent("open.key_secret").path
        try (edge.secretKey + "\n").write(toFile: openSecretFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o604], ofItemAtPath: openSecretFile)
        let file = directory.appendingPathComponent("edged.toml").path
        try "[curve]\nserver_key_file = \"\(serverFile)\"\nsecret_key_file = \"\(secretFile)\"\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let keys = try #require(try EdgeConfiguration.load(file: file).curve)
        #expect(keys.serverKey == plant.publicKey && keys.publicKey == edge.publicKey && keys.secretKey == edge.secretKey)

        for (curve, key, says) in [
            ("server_key_file = \"\(serverFile)\"", "[curve] secret_key_file", "expected beside server_key_file"),
            ("secret_key_file = \"\(secretFile)\"", "[curve] server_key_file", "expected beside secret_key_file"),
            ("server_key_file = \"\(directory.path)/none\"\nsecret_key_file = \"\(secretFile)\"",
                "[curve] server_key_file", "cannot read"),
            ("server_key_file = \"\(file)\"\nsecret_key_file = \"\(secretFile)\"", "[curve] server_key_file",
                "expected a CURVE key"),
            ("server_key_file = \"\(serverFile)\"\nsecret_key_file = \"\(openSecretFile)\"", "[curve] secret_key_file",
                "open.key_secret is open to others (mode 0604)"),
        ] {
            try "[curve]\n\(curve)\n".write(toFile: file, atomically: true, encoding: .utf8)
            #expect {
                _ = try EdgeConfiguration.load(file: file)
            } throws: { error in
                "\(error)".contains("\(file): \(key): ") && "\(error)".contains(says)
            }
        }
    }
}
