import Foundation
import Glibc
import Testing

@testable import EdgeServer
import MarketData

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

    @Test func aConnectionThatNeverAsksAnythingIsClosedAfterTheHandshakeTimeout() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.handshakeTimeout = .milliseconds(300) }
        let fd = try TestWebSocketClient.connect(port: fixture.port)
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
        let health = try TestWebSocketClient.httpGet(port: fixture.port, path: "/healthz")
        #expect(health.hasPrefix("HTTP/1.1 503") && health.contains("draining"), "\(health)")
        #expect(throws: TestWebSocketClient.Failure.self) { try TestWebSocketClient(port: fixture.port) }
        // The polite client answers the close: the server ends its connection.
        try polite.send(opcode: 0x8, [0x03, 0xE9])
        #expect(throws: (any Error).self) { _ = try polite.receiveFrame(timeout: 2) }
        await stopping.value
        let took = Date().timeIntervalSince(started)
        #expect(took >= 1.3 && took < 4, "waited for the silent client until the drain timeout: \(took) s")
    }
}
