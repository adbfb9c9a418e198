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
