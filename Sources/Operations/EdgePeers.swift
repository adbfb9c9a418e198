import EdgeServer
import Foundation
import Glibc
import MarketData
import ZeroMQ

/// A server that fans one publisher's updates out to WebSocket clients, as `mktctl bench edge` drives it: edged, or
/// a peer doing the same job (uWebSockets through socketify, NATS's WebSocket listener), each a process of its own.
protocol FanOutServer: AnyObject {
    var name: String { get }
    var port: Int { get }
    var path: String { get }
    var protocolSpoken: WebSocketLoad.ProtocolSpoken { get }
    /// Waits until the server has what it needs to reach `symbols` subscribed symbols' clients.
    func waitForSubscriptions(_ symbols: Int) -> Bool
    func publish(symbol: Int, seq: Int, times: PublishTimes?)
    func residentBytes() -> Int
    func stop()
}

/// edged behind a stand-in plantd.
final class EdgedFanOut: FanOutServer {
    let plant: StandInPlant
    let edge: EdgeProcess
    let name: String
    var port: Int { edge.port }
    let path = "/prices"
    let protocolSpoken = WebSocketLoad.ProtocolSpoken.tickplant

    init(binary: String, context: ZMQContext, symbols: [String], eventLoops: Int, settings: [String: String]) throws {
        plant = try StandInPlant(context: context, symbols: symbols)
        edge = try EdgeProcess(binary: binary, upstream: plant.endpoint, eventLoops: eventLoops, settings: settings)
        name = "edged, \(eventLoops) loop" + (eventLoops == 1 ? "" : "s")
    }

    func waitForSubscriptions(_ symbols: Int) -> Bool { plant.waitForSubscriptions(symbols, timeout: 5) }
    func publish(symbol: Int, seq: Int, times: PublishTimes?) { plant.publish(symbol: symbol, seq: seq, times: times) }
    func residentBytes() -> Int { edge.residentBytes() }
    func stop() { edge.stop() }
}

/// A blocking TCP connection to 127.0.0.1 for a peer's publisher.
final class PublisherConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = WebSocketLoad.address("127.0.0.1", port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            Glibc.close(fd)
            throw BenchError("publisher: connect to port \(port) failed: errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    /// Reads until `marker` came (or 5 s passed); what came.
    func read(until marker: String) -> String {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline && !String(decoding: received, as: UTF8.self).contains(marker) {
            var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&item, 1, 100) > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received += chunk[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }
}

/// Each update as edged would send it, from the same Tick: the peers carry exactly these bytes.
struct UpdateText {
    private var trades: BenchTrades
    private var json: [UInt8] = []

    init(symbols: [String]) {
        trades = BenchTrades(symbols: symbols)
        json.reserveCapacity(512)
    }

    mutating func text(symbol: Int, seq: Int) -> [UInt8] {
        EdgeJSON.write(trades.trade(symbol: symbol, seq: seq), into: &json)
        return json
    }
}

/// uWebSockets (socketify's build of it) with its own pub/sub: Benchmarks/Peers/uws_fanout.py.
final class UWebSocketsFanOut: FanOutServer {
    let name = "uWebSockets (socketify)"
    let port: Int
    let path = "/prices"
    let protocolSpoken = WebSocketLoad.ProtocolSpoken.tickplant
    private let server: ServerProcess
    private let publisher: PublisherConnection
    private let symbols: [String]
    private var updates: UpdateText

    init(python: String, script: String, symbols: [String], directory: URL) throws {
        // The free port found may be taken before uWebSockets listens on it (the bench's own clients come and go
        // by the thousand): another one then, three times at most.
        var attempt = 1
        while true {
            let port = try EdgeProcess.freePort()
            do {
                server = try ServerProcess(
                    executable: python, arguments: [script, "\(port)"], listeningWhen: "listening",
                    failedWhen: "Failed to listen", log: directory.appendingPathComponent("uws.log"))
                self.port = port
                break
            } catch where attempt < 3 {
                attempt += 1
            }
        }
        publisher = try PublisherConnection(port: port)
        let request =
            "GET /publish HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        publisher.write(Array(request.utf8))
        guard publisher.read(until: "\r\n\r\n").hasPrefix("HTTP/1.1 101") else {
            server.stop()
            throw BenchError("uWebSockets refused the publisher's upgrade")
        }
        self.symbols = symbols
        updates = UpdateText(symbols: symbols)
    }

    func waitForSubscriptions(_ symbols: Int) -> Bool { true }

    func publish(symbol: Int, seq: Int, times: PublishTimes?) {
        let message = Array((symbols[symbol] + "\n").utf8) + updates.text(symbol: symbol, seq: seq)
        let frame = WebSocketLoad.maskedFrame(message, opcode: 0x1)
        times?.record(symbol: symbol, seq: seq, nowNs: MonotonicClock.nowNanoseconds())
        publisher.write(frame)
    }

    func residentBytes() -> Int { server.residentBytes() }
    func stop() { server.stop() }
}

/// nats-server (Debian's) with its WebSocket listener: clients speak NATS over WebSocket, the publisher plain NATS.
final class NATSFanOut: FanOutServer {
    let name = "NATS server (WebSocket)"
    let port: Int
    let path = "/"
    let protocolSpoken = WebSocketLoad.ProtocolSpoken.nats
    private let server: ServerProcess
    private let publisher: PublisherConnection
    private let symbols: [String]
    private var updates: UpdateText

    init(executable: String, symbols: [String], directory: URL) throws {
        port = try EdgeProcess.freePort()
        let clientPort = try EdgeProcess.freePort()
        let config = directory.appendingPathComponent("nats.conf")
        try """
        listen: "127.0.0.1:\(clientPort)"
        websocket {
          listen: "127.0.0.1:\(port)"
          no_tls: true
        }
        """.write(to: config, atomically: true, encoding: .utf8)
        server = try ServerProcess(
            executable: executable, arguments: ["-c", config.path],
            listeningWhen: "Server is ready", log: directory.appendingPathComponent("nats.log"))
        publisher = try PublisherConnection(port: clientPort)
        _ = publisher.read(until: "\r\n")  // INFO
        publisher.write(Array(#"CONNECT {"verbose":false,"pedantic":false}"#.utf8) + Array("\r\nPING\r\n".utf8))
        guard publisher.read(until: "PONG").contains("PONG") else {
            server.stop()
            throw BenchError("NATS did not answer the publisher")
        }
        self.symbols = symbols
        updates = UpdateText(symbols: symbols)
    }

    func waitForSubscriptions(_ symbols: Int) -> Bool { true }

    func publish(symbol: Int, seq: Int, times: PublishTimes?) {
        let text = updates.text(symbol: symbol, seq: seq)
        let message = Array("PUB \(symbols[symbol]) \(text.count)\r\n".utf8) + text + [13, 10]
        times?.record(symbol: symbol, seq: seq, nowNs: MonotonicClock.nowNanoseconds())
        publisher.write(message)
    }

    func residentBytes() -> Int { server.residentBytes() }
    func stop() { server.stop() }
}
