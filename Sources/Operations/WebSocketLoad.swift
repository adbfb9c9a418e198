import CEventPoll
import Foundation
import Glibc
import MarketData
import Synchronization

/// When each update left the publisher, by symbol and seq, so that a client can tell how long it took to reach it
/// (both in this process, on the same clock). Written by the publishing thread, read by the clients' threads.
///
/// `@unchecked Sendable`: the table is allocated in `init` and freed in `deinit` only; every slot is an atomic,
/// stored before its update is sent and loaded after it came back through edged.
public final class PublishTimes: @unchecked Sendable {
    public let symbols: Int
    public let seqsPerSymbol: Int
    private let slots: UnsafeMutablePointer<Atomic<UInt64>>

    public init(symbols: Int, seqsPerSymbol: Int) {
        self.symbols = symbols
        self.seqsPerSymbol = seqsPerSymbol
        slots = .allocate(capacity: symbols * seqsPerSymbol)
        for index in 0..<(symbols * seqsPerSymbol) { (slots + index).initialize(to: Atomic(0)) }
    }

    deinit {
        slots.deinitialize(count: symbols * seqsPerSymbol)
        slots.deallocate()
    }

    public func record(symbol: Int, seq: Int, nowNs: UInt64) {
        guard symbol < symbols, seq > 0, seq < seqsPerSymbol else { return }
        slots[symbol * seqsPerSymbol + seq].store(nowNs, ordering: .releasing)
    }

    /// 0 when unknown.
    public func time(symbol: Int, seq: Int) -> UInt64 {
        guard symbol < symbols, seq > 0, seq < seqsPerSymbol else { return 0 }
        return slots[symbol * seqsPerSymbol + seq].load(ordering: .acquiring)
    }
}

/// Many WebSocket clients of edged on one thread (epoll, non-blocking sockets): each connects (from a source
/// address of its own when given, to spread connections over 127.0.0.x), upgrades, subscribes to one symbol, and
/// then reads: it checks that its updates' `seq` follow on one from another, counts them, and measures how long
/// each took from the publisher (`PublishTimes`). Some clients can stop reading, to play slow ones. For tests and
/// `mktctl bench edge`; the clients of one instance share its thread.
public final class WebSocketLoad: @unchecked Sendable {
    // `@unchecked Sendable`: the connections and counters are touched only by the load's own thread; other threads
    // talk to it through `requests` (a Mutex) and read `shared` (a Mutex).

    public struct Options: Sendable {
        public var port: Int
        public var path = "/prices"
        /// Source addresses the clients connect from, in turn (nil: the kernel's choice).
        public var sources: [String]? = nil
        /// Symbol names; client i subscribes to `symbolsPerClient` of them from symbols[i % count] on, wrapping.
        public var symbols: [String]
        public var symbolsPerClient = 1
        /// A small kernel receive buffer for every client: one that stops reading backs up sooner.
        public var receiveBuffer: Int32? = nil
        /// Connections being set up at once (the server's accept backlog is finite).
        public var connectingAtOnce = 200
        /// What the clients speak over WebSocket: edged's JSON protocol (also what the uWebSockets peer of the bench
        /// speaks), or NATS's text protocol (its WebSocket listener), whose messages carry the same JSON.
        public var protocolSpoken = ProtocolSpoken.tickplant

        public init(port: Int, symbols: [String]) {
            self.port = port
            self.symbols = symbols
        }
    }

    public enum ProtocolSpoken: String, Sendable, Codable {
        case tickplant, nats
    }

    /// What one client saw.
    public struct ClientSummary: Sendable {
        /// Its first symbol (its only one with `symbolsPerClient` 1).
        public var symbolIndex: Int
        public var subscribed = false
        public var updates = 0
        public var snapshots = 0
        /// Of its first symbol.
        public var firstSeq = 0
        public var lastSeq = 0
        /// The last seq of each of its symbols, in the order it subscribed to them.
        public var lastSeqs: [Int] = []
        /// Updates whose seq did not follow on from the previous one: a jump, or one not newer.
        public var gaps = 0
        public var duplicates = 0
        public var errorCodes: [Int] = []
        public var closeCode: Int?
        public var failed: String?
        /// The `dropped` of its last heartbeat.
        public var droppedByServer = 0
    }

    public struct Totals: Sendable {
        public var clients = 0
        public var subscribed = 0
        public var updates = 0
        public var closed = 0
        public var failed = 0
    }

    private enum Phase { case waiting, connecting, upgrading, open, closed }

    private struct Connection {
        var fd: Int32 = -1
        var phase = Phase.waiting
        var buffer: [UInt8] = []
        var reading = true
        /// NATS: the protocol's byte stream, which its frames cut anywhere.
        var stream: [UInt8] = []
        var summary: ClientSummary
    }

    private enum Request {
        case pause(Range<Int>)
        case resume(Range<Int>)
        case summaries(DispatchSemaphore)
        case latencies(DispatchSemaphore)
        case stop
    }

    private let options: Options
    /// Symbol names by the FNV-1a hash of their bytes: found from a message without making a string.
    private var symbolIndexByHash: [UInt64: Int] = [:]
    private static let symbolKey = Array(#""symbol":""#.utf8)
    private let publishTimes: PublishTimes?
    private var connections: [Connection]
    private let epoll: Int32
    private var latencies: [UInt32] = []
    private let requests = Mutex<[Request]>([])
    private let answers = Mutex<(summaries: [ClientSummary], latencies: [UInt32])>(([], []))
    private let shared = Mutex(Totals())
    private let finished = DispatchSemaphore(value: 0)

    /// Starts `count` clients on a thread of their own.
    public init(count: Int, options: Options, publishTimes: PublishTimes? = nil) {
        self.options = options
        self.publishTimes = publishTimes
        let perClient = max(1, min(options.symbolsPerClient, options.symbols.count))
        connections = (0..<count).map { index in
            var summary = ClientSummary(symbolIndex: index % max(options.symbols.count, 1))
            summary.lastSeqs = Array(repeating: 0, count: perClient)
            return Connection(summary: summary)
        }
        var positions: [UInt64: Int] = [:]
        for (index, symbol) in options.symbols.enumerated() {
            positions[Array(symbol.utf8).withUnsafeBufferPointer { Self.hash($0[...]) }] = index
        }
        symbolIndexByHash = positions
        epoll = tickplant_poll_create()
        latencies.reserveCapacity(1 << 20)
        Thread { [self] in run() }.start()
    }

    deinit { Glibc.close(epoll) }

    public var totals: Totals { shared.withLock { $0 } }

    /// Waits until every client has subscribed (or failed), at most `timeout` seconds; false on time-out.
    public func waitUntilSubscribed(timeout: Double, progress: ((Totals) -> Void)? = nil) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let now = totals
            progress?(now)
            if now.subscribed + now.failed >= connections.count { return true }
            usleep(20_000)
        }
        return false
    }

    /// Clients in `range` stop reading (their kernel buffers fill, then edged's queue for them).
    public func pause(_ range: Range<Int>) { requests.withLock { $0.append(.pause(range)) } }

    /// Clients in `range` read again.
    public func resume(_ range: Range<Int>) { requests.withLock { $0.append(.resume(range)) } }

    public func summaries() -> [ClientSummary] {
        let done = DispatchSemaphore(value: 0)
        requests.withLock { $0.append(.summaries(done)) }
        done.wait()
        return answers.withLock { $0.summaries }
    }

    /// The latencies measured so far (nanoseconds, one per update received), and a fresh start.
    public func takeLatencies() -> [UInt32] {
        let done = DispatchSemaphore(value: 0)
        requests.withLock { $0.append(.latencies(done)) }
        done.wait()
        return answers.withLock { $0.latencies }
    }

    /// Closes every client and ends the thread.
    public func stop() {
        requests.withLock { $0.append(.stop) }
        finished.wait()
    }

    // MARK: The load's thread

    private func run() {
        var tokens = [UInt64](repeating: 0, count: 512)
        var events = [UInt32](repeating: 0, count: 512)
        var scratch = [UInt8](repeating: 0, count: 65_536)
        var next = 0
        var connecting = 0
        var running = true
        while running {
            while next < connections.count && connecting < options.connectingAtOnce {
                if connect(next) { connecting += 1 }
                next += 1
            }
            let ready = tickplant_poll_wait(epoll, &tokens, &events, Int32(tokens.count), 5)
            let nowNs = MonotonicClock.nowNanoseconds()
            for slot in 0..<Int(max(ready, 0)) {
                let index = Int(tokens[slot])
                let wasSettingUp = connections[index].phase == .connecting || connections[index].phase == .upgrading
                handle(index, events: events[slot], nowNs: nowNs, scratch: &scratch)
                let settingUp = connections[index].phase == .connecting || connections[index].phase == .upgrading
                if wasSettingUp && !settingUp { connecting -= 1 }
            }
            for request in requests.withLock({ pending -> [Request] in
                defer { pending.removeAll() }; return pending
            }) {
                switch request {
                case let .pause(range):
                    for index in range where index < connections.count {
                        connections[index].reading = false
                        if connections[index].phase == .open { watch(index, events: 0, modify: true) }
                    }
                case let .resume(range):
                    for index in range where index < connections.count {
                        connections[index].reading = true
                        if connections[index].phase == .open {
                            watch(index, events: UInt32(TICKPLANT_POLL_IN), modify: true)
                        }
                    }
                case let .summaries(done):
                    answers.withLock { $0.summaries = connections.map(\.summary) }
                    done.signal()
                case let .latencies(done):
                    answers.withLock { $0.latencies = latencies }
                    latencies.removeAll(keepingCapacity: true)
                    done.signal()
                case .stop:
                    running = false
                }
            }
            publishTotals()
        }
        for index in connections.indices where connections[index].fd >= 0 { Glibc.close(connections[index].fd) }
        finished.signal()
    }

    private func publishTotals() {
        var totals = Totals(clients: connections.count)
        for connection in connections {
            if connection.summary.subscribed { totals.subscribed += 1 }
            totals.updates += connection.summary.updates
            if connection.phase == .closed { totals.closed += 1 }
            if connection.summary.failed != nil { totals.failed += 1 }
        }
        shared.withLock { $0 = totals }
    }

    private func watch(_ index: Int, events: UInt32, modify: Bool) {
        _ = tickplant_poll_watch(epoll, connections[index].fd, events, UInt64(index), modify ? 1 : 0)
    }

    /// Starts a non-blocking connect; false when it failed at once.
    private func connect(_ index: Int) -> Bool {
        var source: String?
        if let sources = options.sources, !sources.isEmpty { source = sources[index % sources.count] }
        switch Self.startConnect(port: options.port, from: source, receiveBuffer: options.receiveBuffer) {
        case let .failure(why):
            return fail(index, why.message)
        case let .success(fd):
            connections[index].fd = fd
            connections[index].phase = .connecting
            watch(index, events: UInt32(TICKPLANT_POLL_OUT), modify: false)
            return true
        }
    }

    struct ConnectFailure: Error {
        let message: String
    }

    /// A non-blocking TCP socket (TCP_NODELAY) connecting to 127.0.0.1:`port` from `source` (the kernel's choice
    /// when nil), with a kernel receive buffer of `receiveBuffer` bytes when given: its descriptor once the connect
    /// is under way, or why not.
    static func startConnect(port: Int, from source: String?, receiveBuffer: Int32?) -> Result<Int32, ConnectFailure> {
        let fd = socket(
            AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(ConnectFailure(message: "socket: errno \(errno)")) }
        func failure(_ why: String) -> Result<Int32, ConnectFailure> {
            let message = "\(why): errno \(errno)"
            Glibc.close(fd)
            return .failure(ConnectFailure(message: message))
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var address = Self.address(source, port: 0)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { return failure("bind to \(source)") }
        }
        var target = Self.address("127.0.0.1", port: port)
        let result = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 || errno == EINPROGRESS else { return failure("connect") }
        return .success(fd)
    }

    static func address(_ host: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }

    @discardableResult
    private func fail(_ index: Int, _ why: String) -> Bool {
        connections[index].summary.failed = why
        close(index)
        return false
    }

    private func close(_ index: Int) {
        if connections[index].fd >= 0 {
            Glibc.close(connections[index].fd)
            connections[index].fd = -1
        }
        connections[index].phase = .closed
    }

    private func handle(_ index: Int, events: UInt32, nowNs: UInt64, scratch: inout [UInt8]) {
        let fd = connections[index].fd
        guard fd >= 0 else { return }
        switch connections[index].phase {
        case .connecting:
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else {
                fail(index, "connect: errno \(error)")
                return
            }
            let request =
                "GET \(options.path) HTTP/1.1\r\nHost: 127.0.0.1:\(options.port)\r\nUpgrade: websocket\r\n"
                + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                + "Sec-WebSocket-Version: 13\r\n\r\n"
            guard send(index, Array(request.utf8)) else { return }
            connections[index].phase = .upgrading
            watch(index, events: UInt32(TICKPLANT_POLL_IN), modify: true)
        case .upgrading, .open:
            guard
                events & (UInt32(TICKPLANT_POLL_IN) | UInt32(TICKPLANT_POLL_HANGUP) | UInt32(TICKPLANT_POLL_ERROR)) != 0
            else { return }
            // A bounded read per turn, so that one busy client does not starve the others.
            let count = scratch.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 || (count < 0 && errno != EAGAIN) {
                if connections[index].summary.closeCode == nil && connections[index].phase != .closed {
                    connections[index].summary.failed = connections[index].summary.failed ?? "connection ended"
                }
                return close(index)
            }
            guard count > 0 else { return }
            connections[index].buffer.append(contentsOf: scratch[0..<count])
            if connections[index].phase == .upgrading { takeUpgradeResponse(index) }
            if connections[index].phase == .open { takeFrames(index, nowNs: nowNs) }
        case .waiting, .closed:
            break
        }
    }

    private func send(_ index: Int, _ bytes: [UInt8]) -> Bool {
        let sent = bytes.withUnsafeBytes {
            Glibc.send(connections[index].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        guard sent == bytes.count else { return fail(index, "send: \(sent) of \(bytes.count) bytes, errno \(errno)") }
        return true
    }

    private func takeUpgradeResponse(_ index: Int) {
        let buffer = connections[index].buffer
        guard let end = Self.find(Array("\r\n\r\n".utf8), in: buffer) else { return }
        guard buffer.starts(with: Array("HTTP/1.1 101".utf8)) else {
            fail(index, "upgrade refused: " + String(decoding: buffer.prefix(40), as: UTF8.self))
            return
        }
        connections[index].buffer.removeFirst(end + 4)
        connections[index].phase = .open
        let first = connections[index].summary.symbolIndex
        let symbols = (0..<connections[index].summary.lastSeqs.count).map {
            options.symbols[(first + $0) % options.symbols.count]
        }
        switch options.protocolSpoken {
        case .tickplant:
            let names = symbols.map { "\"" + $0 + "\"" }.joined(separator: ",")
            _ = send(index, Self.maskedText(#"{"action":"subscribe","symbols":[\#(names)]}"#))
        case .nats:
            // Its PONG says the subscriptions are in place.
            let subscribes = symbols.enumerated().map { "SUB \($0.element) \($0.offset + 1)\r\n" }.joined()
            _ = send(
                index,
                Self.maskedText(
                    #"CONNECT {"verbose":false,"pedantic":false}"# + "\r\n" + subscribes + "PING\r\n",
                    opcode: 0x2))
        }
        if !connections[index].reading { watch(index, events: 0, modify: true) }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return start }
        }
        return nil
    }

    static func maskedText(_ text: String, opcode: UInt8 = 0x1) -> [UInt8] {
        maskedFrame(Array(text.utf8), opcode: opcode)
    }

    /// One client frame (masked, as RFC 6455 wants from a client).
    static func maskedFrame(_ payload: [UInt8], opcode: UInt8) -> [UInt8] {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else if payload.count < 65_536 {
            frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8(truncatingIfNeeded: payload.count >> ($0 * 8)) }
        }
        let mask: [UInt8] = [0x5A, 0x17, 0xC3, 0x2E]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return frame
    }

    /// Takes every whole frame in the client's buffer.
    private func takeFrames(_ index: Int, nowNs: UInt64) {
        // The buffer is taken out while its frames are read, so that reading them may update the connection.
        var buffer: [UInt8] = []
        swap(&buffer, &connections[index].buffer)
        var consumed = 0
        var pongs: [[UInt8]] = []
        buffer.withUnsafeBufferPointer { bytes in
            while let (opcode, range) = Self.serverFrame(in: bytes, at: consumed) {
                let payload = UnsafeBufferPointer(rebasing: bytes[range])
                consumed = range.upperBound
                switch opcode {
                case 0x1 where options.protocolSpoken == .tickplant: takeMessage(index, payload, nowNs: nowNs)
                case 0x0, 0x1, 0x2: connections[index].stream.append(contentsOf: payload)
                case 0x8:
                    connections[index].summary.closeCode =
                        payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 1005
                case 0x9: pongs.append(Array(payload))
                default: break
                }
            }
        }
        buffer.removeFirst(consumed)
        swap(&buffer, &connections[index].buffer)
        if options.protocolSpoken == .nats { takeNATS(index, nowNs: nowNs) }
        for payload in pongs { _ = send(index, Self.maskedText(String(decoding: payload, as: UTF8.self), opcode: 0xA)) }
        if connections[index].summary.closeCode != nil { close(index) }
    }

    /// The server frame (unmasked) at `start` of `bytes`: its opcode and where its payload lies, the next frame
    /// starting where the payload ends; nil until all of it has come.
    static func serverFrame(in bytes: UnsafeBufferPointer<UInt8>, at start: Int) -> (UInt8, Range<Int>)? {
        guard bytes.count - start >= 2 else { return nil }
        var length = Int(bytes[start + 1] & 0x7F)
        var header = 2
        if length == 126 {
            guard bytes.count - start >= 4 else { return nil }
            length = Int(bytes[start + 2]) << 8 | Int(bytes[start + 3])
            header = 4
        } else if length == 127 {
            guard bytes.count - start >= 10 else { return nil }
            length = (2..<10).reduce(0) { $0 << 8 | Int(bytes[start + $1]) }
            header = 10
        }
        guard length >= 0, length <= bytes.count - start - header else { return nil }
        return (bytes[start] & 0x0F, (start + header)..<(start + header + length))
    }

    /// NATS's protocol: `MSG subject sid bytes\r\n` and the payload (the update's JSON), `PING` (answered), `PONG`
    /// (the subscriptions are in place), `INFO`, `+OK`, `-ERR`.
    private func takeNATS(_ index: Int, nowNs: UInt64) {
        var stream: [UInt8] = []
        swap(&stream, &connections[index].stream)
        var consumed = 0
        var pings = 0
        stream.withUnsafeBufferPointer { bytes in
            while let lineEnd = Self.lineEnd(in: bytes, from: consumed) {
                let line = UnsafeBufferPointer(rebasing: bytes[consumed..<lineEnd])
                if line.starts(with: Self.msgVerb) {
                    // The byte count is the line's last field.
                    var count = 0
                    var position = line.count - 1
                    var scale = 1
                    while position > 0, line[position] >= 48, line[position] <= 57 {
                        count += Int(line[position] - 48) * scale
                        scale *= 10
                        position -= 1
                    }
                    guard bytes.count >= lineEnd + 2 + count + 2 else { break }
                    takeMessage(
                        index, UnsafeBufferPointer(rebasing: bytes[(lineEnd + 2)..<(lineEnd + 2 + count)]), nowNs: nowNs
                    )
                    consumed = lineEnd + 2 + count + 2
                    continue
                }
                if line.starts(with: Self.pingVerb) { pings += 1 }
                if line.starts(with: Self.pongVerb) { connections[index].summary.subscribed = true }
                if line.starts(with: Self.errVerb) { connections[index].summary.errorCodes.append(-1) }
                consumed = lineEnd + 2
            }
        }
        stream.removeFirst(consumed)
        swap(&stream, &connections[index].stream)
        for _ in 0..<pings { _ = send(index, Self.maskedText("PONG\r\n", opcode: 0x2)) }
    }

    private static let msgVerb = Array("MSG ".utf8)
    private static let pingVerb = Array("PING".utf8)
    private static let pongVerb = Array("PONG".utf8)
    private static let errVerb = Array("-ERR".utf8)

    /// Where the line starting at `start` ends (its "\r\n"), nil when it has not all come.
    static func lineEnd(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        var position = start
        while position + 1 < bytes.count {
            if bytes[position] == 13 && bytes[position + 1] == 10 { return position }
            position += 1
        }
        return nil
    }

    private static let seqKey = Array(#""seq":"#.utf8)
    private static let typeKey = Array(#"{"type":""#.utf8)
    private static let snapshotKey = Array(#"{"snapshot":true"#.utf8)

    private func takeMessage(_ index: Int, _ text: UnsafeBufferPointer<UInt8>, nowNs: UInt64) {
        // Updates end with "seq":N}; the other messages begin with their type, in lower case (updates' are upper).
        if text.starts(with: Self.typeKey), text.count > Self.typeKey.count,
            text[Self.typeKey.count] >= UInt8(ascii: "a")
        {
            let type = text.dropFirst(Self.typeKey.count).prefix { $0 != UInt8(ascii: "\"") }
            switch String(decoding: type, as: UTF8.self) {
            case "subscribed":
                connections[index].summary.subscribed = true
                return
            case "error":
                connections[index].summary.errorCodes.append(Self.number(after: Array(#""code":"#.utf8), in: text) ?? 0)
                return
            case "heartbeat":
                connections[index].summary.droppedByServer =
                    Self.number(after: Array(#""dropped":"#.utf8), in: text) ?? 0
                return
            case "pong", "unsubscribed", "authenticated":
                return
            default:
                break
            }
        }
        guard let seq = Self.number(after: Self.seqKey, in: text, fromEnd: true) else { return }
        // Which of its symbols: the first, when it has one only.
        var position = 0
        var symbol = connections[index].summary.symbolIndex
        let symbolCount = connections[index].summary.lastSeqs.count
        if symbolCount > 1 {
            guard let name = Self.string(after: Self.symbolKey, in: text),
                let global = symbolIndexByHash[Self.hash(name)]
            else { return }
            position = (global - symbol + options.symbols.count) % options.symbols.count
            symbol = global
            guard position < symbolCount else { return }
        }
        // In place: the summary's arrays are not copied per message.
        record(
            seq, of: symbol, at: position, snapshot: text.starts(with: Self.snapshotKey), nowNs: nowNs,
            into: &connections[index].summary)
    }

    private func record(
        _ seq: Int, of symbol: Int, at position: Int, snapshot: Bool, nowNs: UInt64, into summary: inout ClientSummary
    ) {
        let last = summary.lastSeqs[position]
        summary.lastSeqs[position] = max(last, seq)
        if position == 0 { summary.lastSeq = summary.lastSeqs[0] }
        if snapshot {
            summary.snapshots += 1
            return
        }
        if last == 0 && position == 0 && summary.firstSeq == 0 {
            summary.firstSeq = seq
        } else if last > 0 && seq <= last {
            summary.duplicates += 1
        } else if last > 0 && seq != last + 1 {
            summary.gaps += 1
        }
        summary.updates += 1
        if let publishTimes {
            let sent = publishTimes.time(symbol: symbol, seq: seq)
            if sent > 0 && nowNs > sent && latencies.count < 20_000_000 {
                latencies.append(UInt32(min(nowNs - sent, UInt64(UInt32.max))))
            }
        }
    }

    /// The bytes of the JSON string after `key` (up to its closing quote).
    static func string(after key: [UInt8], in text: UnsafeBufferPointer<UInt8>) -> Slice<UnsafeBufferPointer<UInt8>>? {
        guard text.count > key.count else { return nil }
        for start in 0...(text.count - key.count) where text[start] == key[0] {
            guard text[start..<(start + key.count)].elementsEqual(key) else { continue }
            let rest = text[(start + key.count)...]
            guard let end = rest.firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return text[(start + key.count)..<end]
        }
        return nil
    }

    static func hash(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> UInt64 {
        bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// The decimal number after `key` (searched from the end for `fromEnd`).
    static func number(after key: [UInt8], in text: UnsafeBufferPointer<UInt8>, fromEnd: Bool = false) -> Int? {
        guard text.count > key.count else { return nil }
        let last = text.count - key.count
        var start = fromEnd ? last : 0
        while fromEnd ? start >= 0 : start <= last {
            defer { start += fromEnd ? -1 : 1 }
            guard text[start] == key[0], text[start..<(start + key.count)].elementsEqual(key) else { continue }
            var value = 0
            var position = start + key.count
            var digits = 0
            while position < text.count, text[position] >= 48, text[position] <= 57 {
                value = value * 10 + Int(text[position] - 48)
                position += 1
                digits += 1
            }
            return digits > 0 ? value : nil
        }
        return nil
    }
}
