import Foundation
import Glibc
import MarketData
import ZeroMQ

/// An edged process started for a measurement or a test, from a configuration written for it: its upstream is the
/// caller's stand-in plantd, it has no snapshot ROUTER, and it is stopped (SIGTERM, then SIGKILL) by `stop()`.
public final class EdgeProcess {
    public let port: Int
    public let eventLoops: Int
    public var process: Process { server.process }
    private let server: ServerProcess
    /// Its control endpoint (`status`, `subs`).
    public let controlEndpoint: String
    private let directory: URL

    /// `settings` are more lines of edged.toml, by table: `["limits": "connections = 30000"]`.
    public init(binary: String, upstream: String, eventLoops: Int = 1, settings: [String: String] = [:]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-edge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try Self.freePort()
        self.eventLoops = eventLoops
        controlEndpoint = "ipc://\(directory.path)/control"
        var tables = ["edge": "", "limits": "", "clients": ""].merging(settings) { $0 + "\n" + $1 }
        tables["edge"] = """
            listen = "127.0.0.1:\(port)"
            upstream = "\(upstream)"
            control = "\(controlEndpoint)"
            metrics = ""
            event_loops = \(eventLoops)
            drain_timeout = "1s"
            """ + (tables["edge"]!.isEmpty ? "" : "\n" + tables["edge"]!)
        let config = tables.sorted { $0.key < $1.key }.map { "[\($0.key)]\n\($0.value)\n" }.joined(separator: "\n")
            // Without a snapshot ROUTER: the updates the publisher sends are all there is.
            .replacingOccurrences(of: "[edge]\n", with: "[edge]\nsnapshot = \"\"\n")
        let file = directory.appendingPathComponent("edged.toml")
        try config.write(to: file, atomically: true, encoding: .utf8)
        do {
            server = try ServerProcess(executable: binary, arguments: ["--config", file.path],
                listeningWhen: "edged listening", log: directory.appendingPathComponent("edged.log"))
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// A counter of its `status` (0 when it does not answer).
    public func counter(_ name: String, context: ZMQContext) -> UInt64 {
        guard let control = try? ZMQSocket(context, type: .request) else { return 0 }
        defer { control.close() }
        try? control.setReceiveTimeout(milliseconds: 2_000)
        guard (try? control.connect(controlEndpoint)) != nil, (try? control.send(#"{"cmd":"status"}"#)) != nil,
            let reply = try? control.receiveFrames()?.first,
            let status = try? JSONDecoder().decode(DaemonStatus.self, from: Data(reply))
        else { return 0 }
        if name == "drops" { return status.drops }
        if name == "clients" { return UInt64(status.clients ?? 0) }
        return status.counters[name] ?? 0
    }

    /// Resident memory of the process now (VmRSS), in bytes.
    public func residentBytes() -> Int { server.residentBytes() }

    public var log: String { server.log }

    public func stop() {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var address = WebSocketLoad.address("127.0.0.1", port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw BenchError("no free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A server process for a measurement or a test (edged, or a peer): started with its output in `log`, waited for
/// until that says it listens, stopped with SIGTERM (then SIGKILL).
final class ServerProcess {
    let process = Process()
    private let logFile: URL

    /// `failedWhen`: what the log says when the server cannot listen but runs on (stopped at once).
    init(executable: String, arguments: [String], listeningWhen marker: String, failedWhen failure: String? = nil,
        log: URL) throws
    {
        logFile = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if text.contains(marker) { return }
            if let failure, text.contains(failure) {
                stop()
                throw BenchError("\(executable) could not listen: \(text.suffix(500))")
            }
            guard process.isRunning else { throw BenchError("\(executable) exited: \(text.suffix(500))") }
            usleep(20_000)
        }
        stop()
        throw BenchError("\(executable) did not start within 20 s")
    }

    /// Resident memory of the process now (VmRSS), in bytes.
    func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// plantd's publisher as edged sees it, stood in for: an XPUB sending TRADE ticks with the symbol_seq the caller
/// gives, each stamped in `PublishTimes` just before it is sent. Used from one thread at a time.
public final class StandInPlant {
    public let endpoint: String
    private let socket: ZMQSocket
    private let encoder = TickEncoder()
    private var topic: [UInt8] = []
    private let symbols: [String]
    private var trades: BenchTrades

    public init(context: ZMQContext, symbols: [String]) throws {
        socket = try ZMQSocket(context, type: .extendedPublish)
        try socket.setSendHighWaterMark(10_000_000)
        try socket.setReceiveTimeout(milliseconds: 100)
        try socket.bind("tcp://127.0.0.1:*")
        endpoint = try socket.lastEndpoint
        self.symbols = symbols
        trades = BenchTrades(symbols: symbols)
    }

    deinit { socket.close() }

    /// Waits until edged has subscribed to `count` symbols (its clients' first subscribes reached it).
    public func waitForSubscriptions(_ count: Int, timeout: Double) -> Bool {
        var seen = Set<[UInt8]>()
        let deadline = Date().addingTimeInterval(timeout)
        while seen.count < count && Date() < deadline {
            guard let frames = try? socket.receiveFrames(), let frame = frames.first, frame.first == 1 else { continue }
            seen.insert(Array(frame.dropFirst()))
        }
        return seen.count >= count
    }

    /// Sends symbol `index`'s update number `seq`.
    public func publish(symbol index: Int, seq: Int, times: PublishTimes?) {
        let tick = trades.trade(symbol: index, seq: seq)
        Topic.write(symbol: symbols[index], type: .trade, into: &topic)
        times?.record(symbol: index, seq: seq, nowNs: MonotonicClock.nowNanoseconds())
        _ = topic.withUnsafeBytes { try? socket.send($0, more: true) }
        _ = try? socket.send(encoder.encode(tick))
    }
}

/// The TRADE ticks every bench publisher sends, edged's stand-in plantd and the peers alike: symbol `i`'s update
/// number `seq` carries that symbol_seq, a price that moves with it, and the time it is made.
struct BenchTrades {
    private var ticks: [Tick]

    init(symbols: [String]) {
        ticks = symbols.map { Tick.trade(symbol: $0, venue: "XNAS", price: Price(fixedPoint: 1_000_000), size: 100) }
    }

    mutating func trade(symbol index: Int, seq: Int) -> Tick {
        ticks[index].symbolSequence = UInt64(seq)
        ticks[index].price = Price(fixedPoint: 1_000_000 + Int64(seq % 1_000) * 100)
        ticks[index].exchangeTimestampNs = WallClock.nowNanoseconds()
        return ticks[index]
    }
}

/// Latency percentiles of a set of samples (nanoseconds).
public struct LatencySummary: Codable, Sendable {
    public var count: Int
    public var p50Us: Double
    public var p99Us: Double
    public var p999Us: Double
    public var maxUs: Double

    public init(_ samples: [UInt32]) {
        let sorted = samples.sorted()
        func at(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]) / 1_000
        }
        count = sorted.count
        p50Us = at(0.50)
        p99Us = at(0.99)
        p999Us = at(0.999)
        maxUs = Double(sorted.last ?? 0) / 1_000
    }
}

/// Updates of a stand-in plantd's symbols in bursts of one per symbol (as a market moves), the bursts evenly spaced
/// at `perSecond` updates a second, at most `maxUpdates` in all; each update's send time goes to `times`.
struct BurstPublisher {
    let plant: StandInPlant
    let symbols: Int
    let maxUpdates: Int
    let times: PublishTimes?
    private let intervalNs: Double
    private(set) var sent = 0

    init(plant: StandInPlant, symbols: Int, perSecond: Int, maxUpdates: Int, times: PublishTimes?) {
        self.plant = plant
        self.symbols = symbols
        self.maxUpdates = maxUpdates
        self.times = times
        intervalNs = Double(symbols) * 1e9 / Double(perSecond)
    }

    /// Bursts until `done` says so (asked before each, with the updates sent so far) or `maxUpdates` are out.
    mutating func publish(until done: (_ sent: Int) -> Bool) {
        let start = MonotonicClock.nowNanoseconds()
        var bursts = 0
        while !done(sent) && sent < maxUpdates {
            let due = start + UInt64(Double(bursts) * intervalNs)
            while MonotonicClock.nowNanoseconds() < due { usleep(200) }
            for _ in 0..<symbols {
                plant.publish(symbol: sent % symbols, seq: sent / symbols + 1, times: times)
                sent += 1
            }
            bursts += 1
        }
    }
}
