import Foundation
import Glibc
import Testing
import TestSupport

@testable import EdgeServer
import MarketData

/// What edged checks before the upgrade, over real sockets: connections per source address (429), connections not
/// yet upgraded (503), the browser's Origin (403), and `/metrics` kept off the clients' port.
@Suite(.serialized) struct EdgeAdmissionOverRealSockets {
    /// Connects from `source`, sends an upgrade request and reads until the server closes: its whole answer.
    static func answer(port: Int, source: String? = nil, headers: [String] = []) throws -> String {
        try LoopbackHTTP.exchange(upgradeRequest(port: port, headers: headers), port: port, source: source)
    }

    static func upgradeRequest(port: Int, headers: [String] = []) -> String {
        "GET /prices HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
    }

    static func counter(_ name: String, _ fixture: EdgeServerOverRealSockets.Fixture) throws -> UInt64 {
        try EdgeStatusProbe.status(fixture).counters[name] ?? 0
    }

    /// A client of edged's that pings and is answered.
    static func isServed(_ client: TestWebSocketClient) throws -> Bool {
        try client.send(text: #"{"action":"ping"}"#)
        return try client.receiveJSON()["type"] as? String == "pong"
    }

    @Test func anAddressOverItsConnectionsIsAnswered429UntilOneOfItsConnectionsEndsAndOtherAddressesAreServed()
        async throws
    {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.maxConnectionsPerAddress = 2 }
        let first = try TestWebSocketClient(port: fixture.port)
        let second = try TestWebSocketClient(port: fixture.port)
        let refused = try Self.answer(port: fixture.port)
        #expect(refused.hasPrefix("HTTP/1.1 429") && refused.contains("too many connections from your address"),
            "\(refused)")
        #expect(try Self.counter("refused_per_address", fixture) == 1)
        // Another address is not held to 127.0.0.1's count.
        let elsewhere = try TestWebSocketClient(port: fixture.port, source: "127.0.0.2")
        #expect(try Self.isServed(elsewhere) && Self.isServed(second))
        // One of 127.0.0.1's connections ends: it may connect again.
        first.closeAbruptly()
        var again: TestWebSocketClient?
        let deadline = Date().addingTimeInterval(3)
        while again == nil && Date() < deadline {
            again = try? TestWebSocketClient(port: fixture.port)
            if again == nil { usleep(50_000) }
        }
        let third = try #require(again, "room came back when a connection ended")
        #expect(try Self.isServed(third))
        await fixture.stop()
    }

    @Test func connectionsOverThePendingHandshakesAreAnswered503AndAnUpgradeMakesRoom() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            $0.maxPendingHandshakes = 2
            $0.handshakeTimeout = .seconds(30)
        }
        // Two connections that say nothing: both wait for their upgrade.
        let silent = try LoopbackHTTP.connect(port: fixture.port)
        defer { close(silent) }
        let upgrading = try LoopbackHTTP.connect(port: fixture.port)
        defer { close(upgrading) }
        usleep(100_000)
        let refused = try Self.answer(port: fixture.port)
        #expect(refused.hasPrefix("HTTP/1.1 503"), "\(refused)")
        #expect(try Self.counter("refused_pending_handshakes", fixture) == 1)
        #expect(try Self.counter("pending_handshakes", fixture) == 2)
        // One of them upgrades: no longer pending, so the next connection is let in.
        _ = Array(Self.upgradeRequest(port: fixture.port).utf8).withUnsafeBytes { send(upgrading, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var head = [UInt8](repeating: 0, count: 1_024)
        var item = pollfd(fd: upgrading, events: Int16(POLLIN), revents: 0)
        #expect(poll(&item, 1, 3_000) == 1)
        let count = read(upgrading, &head, head.count)
        #expect(String(decoding: head.prefix(max(count, 0)), as: UTF8.self).hasPrefix("HTTP/1.1 101"))
        // edged counts the handshake ended right after it wrote the 101, which may reach us first.
        let deadline = Date().addingTimeInterval(2)
        while try Self.counter("pending_handshakes", fixture) != 1 && Date() < deadline { usleep(10_000) }
        let next = try TestWebSocketClient(port: fixture.port)
        #expect(try Self.isServed(next))
        #expect(try Self.counter("pending_handshakes", fixture) == 1, "only the silent one")
        await fixture.stop()
    }

    @Test func anotherSitesPageIsRefused403WhileProgramsTheEdgesOwnPageAndListedOriginsConnect() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.allowedOrigins = ["https://app.broker.example"] }
        // A program names no Origin; the demo page edged serves names edged's own host.
        #expect(try Self.isServed(TestWebSocketClient(port: fixture.port)))
        #expect(try Self.isServed(TestWebSocketClient(port: fixture.port,
            headers: ["Origin: http://127.0.0.1:\(fixture.port)"])))
        #expect(try Self.isServed(TestWebSocketClient(port: fixture.port,
            headers: ["Origin: https://APP.broker.example"])))
        for origin in ["https://evil.example", "null", "http://127.0.0.1:\(fixture.port + 1)",
            "https://app.broker.example.evil.example"]
        {
            let answer = try Self.answer(port: fixture.port, headers: ["Origin: \(origin)"])
            #expect(answer.hasPrefix("HTTP/1.1 403") && answer.contains("allowed_origins"), "\(origin): \(answer)")
        }
        #expect(try Self.counter("refused_origins", fixture) == 4)
        await fixture.stop()

        let open = try await EdgeServerOverRealSockets.Fixture { $0.allowedOrigins = ["*"] }
        #expect(try Self.isServed(TestWebSocketClient(port: open.port, headers: ["Origin: https://evil.example"])))
        await open.stop()
    }

    @Test func metricsAreNotServedOnTheClientsPort() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture()
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/metrics").hasPrefix("HTTP/1.1 404"))
        #expect(try LoopbackHTTP.request(port: fixture.port, path: "/healthz").hasPrefix("HTTP/1.1 200"))
        await fixture.stop()
    }

    @Test func theAdmissionKeysAreReadAndABadOriginNamesTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edged-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/edged.toml"
        try "[edge]\n".write(toFile: file, atomically: true, encoding: .utf8)
        let defaults = try EdgeConfiguration.load(file: file)
        #expect(defaults.allowedOrigins.isEmpty && defaults.maxPendingHandshakes == 2_000)
        #expect(defaults.maxConnectionsPerAddress == 0)
        #expect(defaults.metricsListen?.host == "127.0.0.1" && defaults.metricsListen?.port == 9301)
        try """
            [edge]
            allowed_origins = ["https://app.broker.example", "http://localhost:3000"]
            metrics = ""
            [limits]
            pending_handshakes = 50
            connections_per_address = 100
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let set = try EdgeConfiguration.load(file: file)
        #expect(set.allowedOrigins == ["https://app.broker.example", "http://localhost:3000"])
        #expect(set.maxPendingHandshakes == 50 && set.maxConnectionsPerAddress == 100 && set.metricsListen == nil)
        for bad in ["https://app.broker.example/", "app.broker.example", "ftp://files.example", "https://"] {
            try "[edge]\nallowed_origins = [\"\(bad)\"]\n".write(toFile: file, atomically: true, encoding: .utf8)
            #expect { try EdgeConfiguration.load(file: file) } throws: { error in
                "\(error)".contains("edged.toml") && "\(error)".contains("[edge] allowed_origins")
                    && "\(error)".contains(bad)
            }
        }
    }
}

/// A client that sends and never reads (issue 26, item 5): edged stops reading it while its socket takes no more, and
/// closes one whose answers outgrow the room edged keeps for a client (4 x `queue_hard_bytes`), pongs included.
@Suite(.serialized) struct EdgeUnreadAnswersOverRealSockets {
    /// Sends `frame` over and over without reading or blocking, until the socket has taken `limit` bytes, the
    /// connection broke, it took nothing for a second (edged stopped reading: `heldBack`), or `seconds` passed.
    /// `rest` is what is left of a frame the socket took only in part: it must go before any other frame.
    static func flood(_ client: TestWebSocketClient, frame: [UInt8], limit: Int, seconds: Double)
        -> (sent: Int, heldBack: Bool, broken: Bool, rest: [UInt8])
    {
        var chunk: [UInt8] = []
        while chunk.count < 32_768 { chunk += frame }
        var sent = 0
        let deadline = Date().addingTimeInterval(seconds)
        var stuckSince: Date?
        while sent < limit && Date() < deadline {
            let taken = chunk.withUnsafeBytes {
                send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if taken > 0 {
                sent += taken
                stuckSince = nil
                if taken % frame.count != 0 {
                    // The stream stopped inside a frame: end it with the frame's rest, or hand that back.
                    let rest = Array(frame[(taken % frame.count)...])
                    let more = rest.withUnsafeBytes {
                        send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                    if more != rest.count { return (sent + max(more, 0), true, false, Array(rest[max(more, 0)...])) }
                    sent += more
                }
                continue
            }
            if errno != EAGAIN && errno != EWOULDBLOCK { return (sent, false, true, []) }
            if stuckSince == nil { stuckSince = Date() }
            if Date().timeIntervalSince(stuckSince!) >= 1 { return (sent, true, false, []) }
            usleep(5_000)
        }
        return (sent, false, false, [])
    }

    /// A masked client frame with an empty payload (the mask key alone).
    static func emptyFrame(opcode: UInt8) -> [UInt8] { [0x80 | opcode, 0x80, 1, 2, 3, 4] }

    /// A client that sends 6-byte binary frames and reads nothing: each earns a ~90-byte error 400, and 64 MiB of
    /// them would be ~1 GB of errors held for it. `queueHardBytes` x 4 is the room edged keeps for a client.
    static func floodWithBadMessages(queueHardBytes: Int) async throws
        -> (EdgeServerOverRealSockets.Fixture, sent: Int, status: DaemonStatus)
    {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            $0.queueHardBytes = queueHardBytes
            $0.maxMessagesPerSecond = 1_000_000
            $0.heartbeatInterval = .milliseconds(200)
        }
        let client = try TestWebSocketClient(port: fixture.port, receiveBuffer: 4_096)
        var small: Int32 = 65_536
        setsockopt(client.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let result = Self.flood(client, frame: Self.emptyFrame(opcode: 0x2), limit: 64 << 20, seconds: 10)
        try await Task.sleep(for: .milliseconds(600))  // heartbeats, which measure what each client has unread
        return (fixture, result.sent, try EdgeStatusProbe.status(fixture))
    }

    /// edged stops reading the client once its socket takes no more; what it holds for it then never passes its
    /// room by more than the last answer (and, if that answer passed it, the 407 and close frames).
    @Test func aClientSendingBadMessagesWithoutReadingIsNoLongerReadAndHeldToItsRoom() async throws {
        let (fixture, sent, status) = try await Self.floodWithBadMessages(queueHardBytes: 65_536)
        #expect(sent < 16 << 20, "edged stopped taking them: \(sent) bytes")
        let unread = status.counters["most_unread_client_bytes"] ?? 0
        #expect(unread > 65_536 && unread <= 262_144 + 512, "held \(unread) of 262 144")
        #expect(status.counters["bad_client_messages"] ?? 0 > 1_000, "each binary frame counted")
        await fixture.stop()
    }

    /// With 16 KiB of room (less than the 64 KiB NIO holds before reading stops), the errors outgrow it: 407, 4008.
    @Test func aClientWhoseUnreadAnswersOutgrowItsRoomIsClosedAsSlow() async throws {
        let (fixture, sent, status) = try await Self.floodWithBadMessages(queueHardBytes: 4_096)
        #expect(sent < 16 << 20, "\(sent) bytes")
        #expect(status.counters["slow_clients_closed"] == 1)
        await fixture.stop()
    }

    @Test func aClientPingingWithoutReadingIsNoLongerReadAndGetsThePongOfItsLatestPingWhenItReads() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.queueHardBytes = 65_536 }
        let client = try TestWebSocketClient(port: fixture.port, receiveBuffer: 4_096)
        var small: Int32 = 65_536
        setsockopt(client.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        // Pings with the largest payload a control frame may carry: each pong as big.
        let ping = [0x89, 0x80 | 125, 1, 2, 3, 4] + [UInt8](repeating: 0x41, count: 125)
        let result = Self.flood(client, frame: ping, limit: 256 << 20, seconds: 10)
        #expect(result.heldBack && !result.broken, "edged stopped reading the client, and kept it: \(result)")
        #expect(result.sent < 32 << 20, "\(result)")
        #expect(try EdgeAdmissionOverRealSockets.counter("slow_clients_closed", fixture) == 0)
        // Reading again, the client gets pongs, and edged reads its pings again: the rest of a ping cut short goes
        // through, then the client is served as before.
        var pongs = 0
        var rest = result.rest
        while let frame = try? client.receiveFrame(timeout: 1, answeringPings: false) {
            if frame.opcode == 0xA { pongs += 1 }
            if !rest.isEmpty {
                let more = rest.withUnsafeBytes {
                    send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if more > 0 { rest.removeFirst(more) }
            }
        }
        #expect(pongs > 0 && rest.isEmpty, "\(pongs) pongs, \(rest.count) bytes of a ping left")
        try client.send(text: #"{"action":"ping"}"#)
        var answered = false
        let deadline = Date().addingTimeInterval(5)
        while !answered && Date() < deadline, let frame = try? client.receiveFrame(timeout: 2) {
            answered = frame.opcode == 0x1 && String(decoding: frame.payload, as: UTF8.self).contains("pong")
        }
        #expect(answered)
        await fixture.stop()
    }
}
