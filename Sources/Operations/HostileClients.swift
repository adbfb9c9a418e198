import CEventPoll
import ArgumentParser
import Foundation
import Glibc
import MarketData
import Synchronization

/// Clients that break, each in one way, the rules a WebSocket client of edged is held to (docs/security.md), on one
/// thread of their own (epoll, non-blocking sockets): for `mktctl bench edge --hostile`, which runs them beside
/// well-behaved clients and checks that edged stays up, that the others miss nothing and wait no longer, and that
/// edged's memory stays within what its limits allow. Each behaviour connects from an address of its own
/// (127.0.1.N, 127.0.2.N for the unfinished handshakes), so that `connections_per_address` counts each group alone.
///
/// Until `reckon()` the rule-breakers do what their behaviour says; then every one of them reads what edged sent it
/// (its HTTP answer, error codes, its close code), and `endings()` says how each group ended.
public final class HostileClients: @unchecked Sendable {
    // `@unchecked Sendable`: the connections are touched only by the clients' own thread; other threads talk to it
    // through `requests` and read `answers` (both Mutexes).

    /// In the order they connect: those that break the protocol once first, then the busy ones, and the unfinished
    /// handshakes last (`start` them on their own, once the others are set up).
    public enum Behaviour: String, CaseIterable, Codable, Sendable, ExpressibleByArgument {
        /// A text frame that is not UTF-8.
        case invalidUTF8 = "invalid-utf8"
        /// A frame header announcing 2^62 bytes.
        case giantFrame = "giant-frame"
        /// `maxRate` and `fromSeq` at and beyond their ranges, one message each, then a valid subscription.
        case extremes
        /// Upgrades from one address, all of them, then says nothing and answers no ping.
        case idleFromOneAddress = "idle-from-one-address"
        /// Subscribes to every symbol, then never reads.
        case neverReads = "never-reads"
        /// Subscribes to every symbol, then reads one byte a second.
        case oneByteASecond = "one-byte-a-second"
        /// Subscribes ten symbols with `fromSeq` 1 and unsubscribes them again, 100 messages a second (twice the
        /// default rate).
        case churn
        /// Pings as fast as its socket takes them, never reading the pongs.
        case pingFlood = "ping-flood"
        /// Sends 6-byte binary frames as fast as its socket takes them, never reading the errors.
        case binaryFlood = "binary-flood"
        /// Sends text that is not JSON as fast as its socket takes it, never reading the errors.
        case badJSONFlood = "bad-json-flood"
        /// An HTTP upgrade request never finished.
        case unfinishedHandshake = "unfinished-handshake"
    }

    /// How the clients of one behaviour ended.
    public struct Ending: Codable, Sendable, Equatable {
        public var clients = 0
        /// Upgraded (HTTP 101).
        public var upgraded = 0
        /// Answered with another HTTP status, by status.
        public var httpStatuses: [String: Int] = [:]
        /// Closed by edged with a WebSocket close, by its code.
        public var closeCodes: [String: Int] = [:]
        /// Error messages edged sent, by code (each client's codes counted once per code).
        public var clientsToldError: [String: Int] = [:]
        /// Error messages in all, by code.
        public var errors: [String: Int] = [:]
        /// The connection ended without an HTTP answer or a WebSocket close (edged closed it, or reset it).
        public var endedWithoutAnswer = 0
        /// Still open when the reckoning ended.
        public var stillOpen = 0
        /// Could not connect at all (this side's failure, not edged's answer).
        public var failed = 0
    }

    public struct Counts: Sendable {
        public var perBehaviour: [Behaviour: Int]
        public init(_ perBehaviour: [Behaviour: Int]) { self.perBehaviour = perBehaviour }

        /// 200 rule-breakers in all besides the unfinished handshakes and the idle ones, whose numbers are the
        /// limits' business: `pendingHandshakes` + `overPending` and `perAddress` + `overAddress`.
        /// These counts for `behaviours`, none of the others.
        public func only(_ behaviours: [Behaviour]) -> Counts {
            Counts(perBehaviour.filter { behaviours.contains($0.key) })
        }

        public static func standard(pendingHandshakes: Int, overPending: Int, perAddress: Int, overAddress: Int)
            -> Counts
        {
            Counts([
                .neverReads: 30, .oneByteASecond: 30, .pingFlood: 20, .binaryFlood: 20, .badJSONFlood: 20,
                .invalidUTF8: 20, .giantFrame: 20, .churn: 30, .extremes: 10,
                .idleFromOneAddress: perAddress + overAddress, .unfinishedHandshake: pendingHandshakes + overPending,
            ])
        }
    }

    /// The messages of `extremes` that edged must refuse with error 400, then the one it must take.
    public static let extremeMessages: [String] = [
        #"{"action":"subscribe","symbol":"S0","maxRate":1e-300}"#,
        #"{"action":"subscribe","symbol":"S0","maxRate":1e308}"#,
        #"{"action":"subscribe","symbol":"S0","maxRate":-1}"#,
        #"{"action":"subscribe","symbol":"S0","maxRate":0}"#,
        #"{"action":"subscribe","symbol":"S0","maxRate":"NaN"}"#,
        #"{"action":"subscribe","symbol":"S0","fromSeq":0}"#,
        #"{"action":"subscribe","symbol":"S0","fromSeq":-1}"#,
        #"{"action":"subscribe","symbol":"S0","fromSeq":18446744073709551616}"#,
        #"{"action":"subscribe","symbol":"S0","fromSeq":1e30}"#,
        #"{"action":"subscribe","symbol":"S0","fromSeq":1.5}"#,
    ]
    /// Valid: a `fromSeq` beyond anything published is a fresh snapshot, a `maxRate` at the top of its range.
    public static let extremeValidMessage =
        #"{"action":"subscribe","symbol":"S1","fromSeq":18446744073709551615,"maxRate":1000}"#

    private enum Phase { case waiting, connecting, upgrading, open, closed }

    private struct Connection {
        let behaviour: Behaviour
        let source: String
        var fd: Int32 = -1
        var phase = Phase.waiting
        var buffer: [UInt8] = []
        /// What the socket has not taken yet: frames go out whole, however the socket takes them.
        var outgoing: [UInt8] = []
        var reading = true
        var nextActionNs: UInt64 = 0
        var churnStep = 0
        var httpStatus: Int?
        var closeCode: Int?
        var errorCodes: [Int] = []
        var ended = false
        var failed = false
        /// When a returning rule-breaker connects again (0: not ended).
        var returnAtNs: UInt64 = 0
    }

    private enum Request {
        case start([Behaviour])
        case reckon
        case endings(DispatchSemaphore)
        case stop
    }

    private let port: Int
    private let symbols: [String]
    private var connections: [Connection] = []
    private var reckoning = false
    /// Rule-breakers come back a second after edged ends their connection (until the reckoning), for a run that
    /// lasts; `endings` then counts connections, those that ended and came back included.
    private let returning: Bool
    private var returnedEndings: [Behaviour: Ending] = [:]
    private let epoll: Int32
    private let requests = Mutex<[Request]>([])
    private let answers = Mutex<[Behaviour: Ending]>([:])
    private let openCount = Mutex((connecting: 0, open: 0))
    private let finished = DispatchSemaphore(value: 0)

    /// Makes the clients (none connects until `start`), on a thread of their own. The subscribing behaviours watch
    /// every one of `symbols`.
    public init(port: Int, symbols: [String], counts: Counts, returning: Bool = false) {
        self.port = port
        self.symbols = symbols
        self.returning = returning
        for (groupIndex, behaviour) in Behaviour.allCases.enumerated() {
            for index in 0..<(counts.perBehaviour[behaviour] ?? 0) {
                // Unfinished handshakes come from 50 per address, each other group from one of its own.
                let source =
                    behaviour == .unfinishedHandshake
                    ? "127.0.2.\(1 + index / 50)" : "127.0.1.\(1 + groupIndex)"
                connections.append(Connection(behaviour: behaviour, source: source))
            }
        }
        epoll = tickplant_poll_create()
        Thread { [self] in run() }.start()
    }

    deinit { Glibc.close(epoll) }

    /// Connects the clients of `behaviours` (50 being set up at a time, so that a group's order at edged is its
    /// order here).
    public func start(_ behaviours: [Behaviour]) { requests.withLock { $0.append(.start(behaviours)) } }

    /// Clients still to connect, connecting or upgrading now (besides unfinished handshakes, which stay so), and
    /// clients upgraded and open; counted every 50 ms.
    public var settingUp: (connecting: Int, open: Int) { openCount.withLock { $0 } }

    /// Every client stops what its behaviour does and reads what edged sent it.
    public func reckon() { requests.withLock { $0.append(.reckon) } }

    public func endings() -> [Behaviour: Ending] {
        let done = DispatchSemaphore(value: 0)
        requests.withLock { $0.append(.endings(done)) }
        done.wait()
        return answers.withLock { $0 }
    }

    public func stop() {
        requests.withLock { $0.append(.stop) }
        finished.wait()
    }

    // MARK: The clients' thread

    private func run() {
        // The lowest priority: on a real network the rule-breakers' CPU is their own; here they share the machine
        // with edged and the well-behaved clients they are measured beside.
        _ = tickplant_thread_set_nice(19)
        var tokens = [UInt64](repeating: 0, count: 512)
        var events = [UInt32](repeating: 0, count: 512)
        var scratch = [UInt8](repeating: 0, count: 65_536)
        // Clients to connect, in order: taken from `queueHead` on (a front removal per connect would cost the whole
        // queue each time: 19 000 from one address in `make soak`).
        var queue: [Int] = []
        var queueHead = 0
        var running = true
        var lastCount = UInt64(0)
        while running {
            if queueHead < queue.count {
                var connecting = connections.indices.filter {
                    (connections[$0].phase == .connecting || connections[$0].phase == .upgrading)
                        && connections[$0].behaviour != .unfinishedHandshake
                }.count
                while queueHead < queue.count && connecting < 50 {
                    if connect(queue[queueHead]) { connecting += 1 }
                    queueHead += 1
                }
                // The part taken is dropped once it is half the queue: each client moved at most once per halving.
                if queueHead * 2 >= queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
            }
            let ready = tickplant_poll_wait(epoll, &tokens, &events, Int32(tokens.count), 5)
            let nowNs = MonotonicClock.nowNanoseconds()
            for slot in 0..<Int(max(ready, 0)) {
                handle(Int(tokens[slot]), events: events[slot], nowNs: nowNs, scratch: &scratch)
            }
            if !reckoning { act(nowNs: nowNs) } else { for index in connections.indices { flush(index) } }
            if returning && !reckoning { bringBack(nowNs: nowNs, into: &queue) }
            for request in requests.withLock({ pending -> [Request] in
                defer { pending.removeAll() }; return pending
            }) {
                switch request {
                case let .start(behaviours):
                    for index in connections.indices where behaviours.contains(connections[index].behaviour) {
                        queue.append(index)
                    }
                case .reckon:
                    reckoning = true
                    for index in connections.indices where connections[index].phase == .open {
                        connections[index].reading = true
                        watch(index, events: UInt32(TICKPLANT_POLL_IN), modify: true)
                    }
                case let .endings(done):
                    answers.withLock { $0 = summarize() }
                    done.signal()
                case .stop:
                    running = false
                }
            }
            if nowNs - lastCount > 50_000_000 || queueHead < queue.count {
                lastCount = nowNs
                let settingUp =
                    (queue.count - queueHead)
                    + connections.filter {
                        ($0.phase == .connecting || $0.phase == .upgrading) && $0.behaviour != .unfinishedHandshake
                    }.count
                let open = connections.filter { $0.phase == .open }.count
                openCount.withLock { $0 = (settingUp, open) }
            }
        }
        for connection in connections where connection.fd >= 0 { Glibc.close(connection.fd) }
        finished.signal()
    }

    private func summarize() -> [Behaviour: Ending] {
        var endings = returnedEndings
        for connection in connections { Self.tally(connection, into: &endings) }
        return endings
    }

    private static func tally(_ connection: Connection, into endings: inout [Behaviour: Ending]) {
        var ending = endings[connection.behaviour] ?? Ending()
        ending.clients += 1
        if connection.failed {
            ending.failed += 1
        } else if let status = connection.httpStatus, status != 101 {
            ending.httpStatuses[String(status), default: 0] += 1
        } else if let code = connection.closeCode {
            ending.closeCodes[String(code), default: 0] += 1
        } else if connection.ended {
            ending.endedWithoutAnswer += 1
        } else {
            ending.stillOpen += 1
        }
        if connection.httpStatus == 101 { ending.upgraded += 1 }
        for code in Set(connection.errorCodes) { ending.clientsToldError[String(code), default: 0] += 1 }
        for code in connection.errorCodes { ending.errors[String(code), default: 0] += 1 }
        endings[connection.behaviour] = ending
    }

    /// Rule-breakers whose connection edged ended a second ago connect again, their ending counted.
    private func bringBack(nowNs: UInt64, into queue: inout [Int]) {
        for index in connections.indices
        where connections[index].phase == .closed && connections[index].returnAtNs != 0
            && nowNs >= connections[index].returnAtNs
        {
            Self.tally(connections[index], into: &returnedEndings)
            connections[index] = Connection(behaviour: connections[index].behaviour, source: connections[index].source)
            queue.append(index)
        }
    }

    private func watch(_ index: Int, events: UInt32, modify: Bool) {
        _ = tickplant_poll_watch(epoll, connections[index].fd, events, UInt64(index), modify ? 1 : 0)
    }

    private func connect(_ index: Int) -> Bool {
        // Small buffers, so that a client that does not read backs up within a few of edged's writes.
        guard
            case let .success(fd) = WebSocketLoad.startConnect(
                port: port, from: connections[index].source, receiveBuffer: 4_096)
        else { return fail(index) }
        connections[index].fd = fd
        connections[index].phase = .connecting
        watch(index, events: UInt32(TICKPLANT_POLL_OUT), modify: false)
        return true
    }

    @discardableResult
    private func fail(_ index: Int) -> Bool {
        connections[index].failed = true
        close(index)
        return false
    }

    private func close(_ index: Int) {
        if connections[index].fd >= 0 {
            Glibc.close(connections[index].fd)
            connections[index].fd = -1
        }
        connections[index].phase = .closed
        if returning { connections[index].returnAtNs = MonotonicClock.nowNanoseconds() + 1_000_000_000 }
    }

    /// Queues `bytes` behind what is still waiting and sends what the socket takes now; true when nothing waits.
    @discardableResult
    private func send(_ index: Int, _ bytes: [UInt8]) -> Bool {
        connections[index].outgoing += bytes
        return flush(index)
    }

    /// Sends what the socket takes of the waiting bytes; true when nothing waits any more.
    @discardableResult
    private func flush(_ index: Int) -> Bool {
        guard connections[index].fd >= 0, !connections[index].outgoing.isEmpty else {
            return connections[index].outgoing.isEmpty
        }
        let sent = connections[index].outgoing.withUnsafeBytes {
            Glibc.send(connections[index].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
        }
        if sent > 0 { connections[index].outgoing.removeFirst(sent) }
        return connections[index].outgoing.isEmpty
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
                fail(index)
                return
            }
            let head =
                "GET /prices HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            let rest = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            // An unfinished handshake sends the request's first lines only, and waits.
            send(index, Array((connections[index].behaviour == .unfinishedHandshake ? head : head + rest).utf8))
            connections[index].phase = .upgrading
            watch(index, events: UInt32(TICKPLANT_POLL_IN), modify: true)
        case .upgrading, .open:
            guard
                events & (UInt32(TICKPLANT_POLL_IN) | UInt32(TICKPLANT_POLL_HANGUP) | UInt32(TICKPLANT_POLL_ERROR)) != 0
            else { return }
            let oneByte =
                connections[index].behaviour == .oneByteASecond && !reckoning && connections[index].phase == .open
            let wanted = oneByte ? 1 : scratch.count
            let count = scratch.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, wanted) }
            if count == 0 || (count < 0 && errno != EAGAIN) {
                connections[index].ended = true
                return close(index)
            }
            guard count > 0 else { return }
            connections[index].buffer.append(contentsOf: scratch[0..<count])
            if connections[index].phase == .upgrading { takeHTTPAnswer(index, nowNs: nowNs) }
            if connections[index].phase == .open { takeFrames(index) }
            // One byte a second: read again at the next second, not when more comes.
            if oneByte {
                connections[index].reading = false
                watch(index, events: 0, modify: true)
            }
        case .waiting, .closed:
            break
        }
    }

    private func takeHTTPAnswer(_ index: Int, nowNs: UInt64) {
        let buffer = connections[index].buffer
        guard let end = WebSocketLoad.find(Array("\r\n\r\n".utf8), in: buffer) else { return }
        let status = buffer.count >= 12 ? Int(String(decoding: buffer[9..<12], as: UTF8.self)) ?? 0 : 0
        connections[index].httpStatus = status
        guard status == 101 else { return }  // The rest is the answer's body, then edged's close.
        connections[index].buffer.removeFirst(end + 4)
        connections[index].phase = .open
        connections[index].nextActionNs = nowNs
        opened(index)
    }

    /// What a client does once upgraded.
    private func opened(_ index: Int) {
        let subscribeAll =
            #"{"action":"subscribe","symbols":["# + symbols.map { "\"\($0)\"" }.joined(separator: ",") + "]}"
        switch connections[index].behaviour {
        case .neverReads, .oneByteASecond:
            send(index, WebSocketLoad.maskedText(subscribeAll))
            connections[index].reading = false
            watch(index, events: 0, modify: true)
        case .pingFlood, .binaryFlood, .badJSONFlood:
            connections[index].reading = false
            watch(index, events: 0, modify: true)
        case .invalidUTF8:
            send(index, WebSocketLoad.maskedFrame([0x7B, 0x22, 0xC3, 0x28, 0x22, 0x7D], opcode: 0x1))
        case .giantFrame:
            // Masked, 64-bit length 2^62, then a few bytes of it.
            send(index, [0x81, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x5A, 0x17, 0xC3, 0x2E, 0x21, 0x35, 0xA7, 0x4F])
        case .extremes:
            for message in Self.extremeMessages + [Self.extremeValidMessage] {
                send(index, WebSocketLoad.maskedText(message))
            }
        case .idleFromOneAddress, .churn, .unfinishedHandshake:
            break
        }
    }

    private static let ping = WebSocketLoad.maskedFrame(Array(repeating: 0x70, count: 125), opcode: 0x9)
    private static let binary = WebSocketLoad.maskedFrame([1, 2, 3, 4, 5, 6], opcode: 0x2)
    private static let badJSON = WebSocketLoad.maskedText(#"{"action":"subscribe","symbol":"#)

    /// The timed part of each behaviour, for every open client whose time has come.
    private func act(nowNs: UInt64) {
        for index in connections.indices where connections[index].phase == .open {
            guard nowNs >= connections[index].nextActionNs else { continue }
            switch connections[index].behaviour {
            case .pingFlood, .binaryFlood, .badJSONFlood:
                // As fast as the socket takes them: up to 20 frames a turn, the next turn in a millisecond.
                let frame =
                    connections[index].behaviour == .pingFlood
                    ? Self.ping : connections[index].behaviour == .binaryFlood ? Self.binary : Self.badJSON
                var frames = 0
                while frames < 20 && flush(index) {
                    connections[index].outgoing = frame
                    frames += 1
                }
                // Once its socket takes no more, it tries again every 50 ms: this thread shares the machine with
                // the well-behaved clients it is measured beside.
                connections[index].nextActionNs = nowNs + (frames == 0 ? 50_000_000 : 1_000_000)
            case .oneByteASecond:
                connections[index].reading = true
                watch(index, events: UInt32(TICKPLANT_POLL_IN), modify: true)
                connections[index].nextActionNs = nowNs + 1_000_000_000
            case .churn:
                let first = (connections[index].churnStep / 2 * 10) % max(symbols.count, 1)
                let names = (0..<10).map { "\"\(symbols[(first + $0) % symbols.count])\"" }
                let message =
                    connections[index].churnStep % 2 == 0
                    ? #"{"action":"subscribe","symbols":[\#(names.joined(separator: ","))],"fromSeq":{"#
                        + names.map { $0 + ":1" }.joined(separator: ",") + "}}"
                    : #"{"action":"unsubscribe","symbols":[\#(names.joined(separator: ","))]}"#
                send(index, WebSocketLoad.maskedText(message))
                connections[index].churnStep += 1
                connections[index].nextActionNs = nowNs + 10_000_000
            case .neverReads, .invalidUTF8, .giantFrame, .unfinishedHandshake, .idleFromOneAddress, .extremes:
                connections[index].nextActionNs = UInt64.max
            }
        }
    }

    /// Takes every whole frame in the client's buffer: error codes, the close code, pongs for the clients that
    /// answer pings (churn and extremes: they are busy, not idle).
    private func takeFrames(_ index: Int) {
        var buffer: [UInt8] = []
        swap(&buffer, &connections[index].buffer)
        var consumed = 0
        var pings: [[UInt8]] = []
        while let (opcode, range) = buffer.withUnsafeBufferPointer({ WebSocketLoad.serverFrame(in: $0, at: consumed) }) {
            let payload = buffer[range]
            consumed = range.upperBound
            switch opcode {
            case 0x1:
                if payload.starts(with: Array(#"{"type":"error""#.utf8)),
                    let code = payload.withContiguousStorageIfAvailable({
                        WebSocketLoad.number(after: Array(#""code":"#.utf8), in: $0)
                    }) ?? nil
                {
                    connections[index].errorCodes.append(code)
                }
            case 0x8:
                let bytes = Array(payload)
                connections[index].closeCode = bytes.count >= 2 ? Int(bytes[0]) << 8 | Int(bytes[1]) : 1005
            case 0x9:
                pings.append(Array(payload))
            default:
                break
            }
        }
        buffer.removeFirst(consumed)
        swap(&buffer, &connections[index].buffer)
        let behaviour = connections[index].behaviour
        if behaviour == .churn || behaviour == .extremes {
            for payload in pings { send(index, WebSocketLoad.maskedFrame(payload, opcode: 0xA)) }
        }
        if connections[index].closeCode != nil { close(index) }
    }
}
