import Foundation
import NIOCore
import Testing

@testable import EdgeServer
import MarketData
import ZeroMQ

/// A slow client's queue on its own: conflation above the soft mark, the oldest dropped at the hard mark, STATUS
/// never dropped.
@Suite struct ClientQueueTests {
    static func entry(_ symbol: String, _ text: String, droppable: Bool = true) -> ClientQueue.Entry {
        .init(symbol: symbol, text: ByteBuffer(string: text), droppable: droppable)
    }

    static func texts(_ queue: inout ClientQueue) -> [String] {
        var out: [String] = []
        while let entry = queue.popFirst() { out.append(String(buffer: entry.text)) }
        return out
    }

    @Test func aboveTheSoftMarkTheNewestValueOfASymbolReplacesTheQueuedOne() {
        var queue = ClientQueue(limits: .init(softMessages: 2, hardMessages: 10, hardBytes: 1 << 20))
        for text in ["A1", "B1", "A2", "C1", "A3", "B2"] { queue.append(Self.entry(String(text.prefix(1)), text)) }
        // Under the soft mark A1 and B1 queue; from there each new value takes its symbol's place in the line.
        #expect(Self.texts(&queue) == ["A3", "B2", "C1"])
        #expect(queue.dropped == 3 && queue.bytes == 0)
    }

    /// A newer value never overtakes a STATUS (or a snapshot, or a held update) of its symbol: the client drops an
    /// update whose seq it has passed, so a resumption overtaken by the next trade would never show, and the halt
    /// badge would stay. Behind a STATUS the new value queues; the value queued before it is left as it is.
    @Test func conflationNeverMovesAValueAheadOfItsSymbolsStatus() {
        var queue = ClientQueue(limits: .init(softMessages: 2, hardMessages: 10, hardBytes: 1 << 20))
        queue.append(Self.entry("A", "A1"))
        queue.append(Self.entry("B", "B1"))
        queue.append(Self.entry("A", "A-resumed", droppable: false))
        queue.append(Self.entry("A", "A2"))
        queue.append(Self.entry("A", "A3"))  // A2 is the newest of A and droppable: A3 takes its place
        queue.append(Self.entry("B", "B2"))
        #expect(Self.texts(&queue) == ["A1", "B2", "A-resumed", "A3"])
        #expect(queue.dropped == 2)
    }

    @Test func atTheHardMarkTheOldestGoButNeverAStatus() {
        var queue = ClientQueue(limits: .init(softMessages: 100, hardMessages: 3, hardBytes: 1 << 20))
        queue.append(Self.entry("A", "halt", droppable: false))
        for text in ["A1", "B1", "C1", "D1"] { queue.append(Self.entry(String(text.prefix(1)), text)) }
        #expect(Self.texts(&queue) == ["halt", "C1", "D1"])
        #expect(queue.dropped == 2)
        // A byte limit holds too.
        var small = ClientQueue(limits: .init(softMessages: 100, hardMessages: 100, hardBytes: 10))
        for text in ["AAAA1", "BBBB1", "CCCC1"] { small.append(Self.entry(String(text.prefix(1)), text)) }
        #expect(small.bytes <= 10 && Self.texts(&small) == ["BBBB1", "CCCC1"])
    }

    /// Updates held behind a replay (a resumed client reading what it missed) are neither conflated nor dropped, and
    /// do not fill the marks: the updates that are not held are conflated and dropped as before, and the queue is
    /// over its hard mark only by them.
    @Test func heldUpdatesAreKeptWholeAndOutsideTheMarks() {
        var queue = ClientQueue(limits: .init(softMessages: 1, hardMessages: 2, hardBytes: 1 << 20))
        for text in ["A1", "A2", "A3", "B1", "A4"] {
            var entry = Self.entry(String(text.prefix(1)), text)
            entry.held = text.hasPrefix("A")
            queue.append(entry)
        }
        #expect(!queue.isOverHardMark && queue.dropped == 0, "four held and one other: under the marks")
        queue.append(Self.entry("B", "B2"))  // B1 is queued, past the soft mark of the others: B2 takes its place
        queue.append(Self.entry("C", "C1"))
        queue.append(Self.entry("D", "D1"))  // three others over a hard mark of two: the oldest of them goes
        #expect(queue.dropped == 2 && queue.isOverHardMark, "at the hard mark by the two others alone")
        #expect(Self.texts(&queue) == ["A1", "A2", "A3", "A4", "C1", "D1"])
        #expect(queue.bytes == 0 && !queue.isOverHardMark)
    }
}

/// The queue against the plainest queue that does what DESIGN section 8 says (`ReferenceClientQueue`: the symbol's
/// newest entry found by walking back from the end, the oldest update removed from the middle), over random appends
/// and reads of updates, STATUS, held updates and large texts, with marks small enough to be crossed all the time:
/// every read must give the same entry, and the counts and bytes must agree after every step.
@Suite struct ClientQueueModelTests {
    /// The queue as edged had it before it kept an index of each symbol's newest entry.
    struct ReferenceClientQueue {
        let limits: ClientQueue.Limits
        var entries: [ClientQueue.Entry] = []
        var dropped: UInt64 = 0

        var count: Int { entries.count }
        var heldCount: Int { entries.filter(\.held).count }
        var bytes: Int { entries.reduce(0) { $0 + $1.text.readableBytes } }
        var heldBytes: Int { entries.filter(\.held).reduce(0) { $0 + $1.text.readableBytes } }
        var isOverHardMark: Bool {
            count - heldCount >= limits.hardMessages || bytes - heldBytes >= limits.hardBytes
        }

        mutating func append(_ entry: ClientQueue.Entry) {
            var entry = entry
            if entry.held {
                entry.droppable = false
                entries.append(entry)
                return
            }
            if entry.droppable && count - heldCount >= limits.softMessages,
                let queued = entries.lastIndex(where: { $0.symbol == entry.symbol }), entries[queued].droppable
            {
                entries[queued] = entry
                dropped += 1
            } else {
                entries.append(entry)
            }
            while count - heldCount > limits.hardMessages || bytes - heldBytes > limits.hardBytes,
                let oldest = entries.firstIndex(where: \.droppable)
            {
                entries.remove(at: oldest)
                dropped += 1
            }
        }

        mutating func popFirst() -> ClientQueue.Entry? { entries.isEmpty ? nil : entries.removeFirst() }
    }

    @Test(arguments: [1, 2, 3, 4, 5, 6])
    func theQueueDoesWhatTheReferenceQueueDoes(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let limits = ClientQueue.Limits(softMessages: 1 + Int(random.next() % 8),
            hardMessages: 4 + Int(random.next() % 24), hardBytes: 64 + Int(random.next() % 256))
        var queue = ClientQueue(limits: limits)
        var reference = ReferenceClientQueue(limits: limits)
        let symbols = (0..<(2 + Int(random.next() % 12))).map { "S\($0)" }
        var made = 0
        var dropping = 0
        var mostLeftInPlace = 0
        for step in 0..<12_000 {
            // Phases of reading often, reading rarely and not reading at all, so that the queue fills and drains.
            let readOneIn: UInt64 = [2, 3, 9, 1_000][(step / 500) % 4]
            if random.next() % readOneIn == 0 {
                let read = queue.popFirst()
                let expected = reference.popFirst()
                let text = read.map { String(buffer: $0.text) }
                #expect(text == expected.map { String(buffer: $0.text) }, "step \(step)")
            } else {
                made += 1
                let kind = random.next() % 100
                let length = kind < 3 ? 40 + Int(random.next() % 60) : 4 + Int(random.next() % 12)
                var text = "\(made)-"
                text += String(repeating: "x", count: max(0, length - text.count))
                var entry = ClientQueue.Entry(symbol: symbols[Int(random.next() % UInt64(symbols.count))],
                    text: ByteBuffer(string: text), droppable: kind >= 8)
                entry.held = kind >= 8 && kind < 12
                let droppedBefore = queue.dropped
                queue.append(entry)
                reference.append(entry)
                if queue.dropped > droppedBefore { dropping += 1 }
                mostLeftInPlace = max(mostLeftInPlace, queue.removedCount)
            }
            guard queue.count == reference.count, queue.bytes == reference.bytes, queue.dropped == reference.dropped,
                queue.isOverHardMark == reference.isOverHardMark, queue.isEmpty == reference.entries.isEmpty
            else {
                let ours = "\(queue.count) entries, \(queue.bytes) bytes, \(queue.dropped) dropped"
                let theirs = "\(reference.count), \(reference.bytes), \(reference.dropped)"
                Issue.record("step \(step): \(ours); the reference \(theirs)")
                return
            }
        }
        #expect(dropping > 300, "\(dropping) appends conflated or dropped")
        #expect(mostLeftInPlace > 0, "no update was dropped behind a STATUS")
    }
}

/// Slow clients over real sockets: one stops reading while another reads at full speed. The fast one misses
/// nothing; the slow one's queue stays bounded, and after `slow_grace` over its hard mark it gets 407 and close 4008.
@Suite(.serialized) struct EdgeBackpressureOverRealSockets {
    @Test func aSlowClientIsCutOffAndTheFastOneMissesNothing() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            // One symbol conflates to one queued update per symbol above the soft mark, so with one symbol a queue
            // reaches a hard mark only as high as the soft one.
            $0.queueSoft = 64
            $0.queueHard = 64
            $0.slowGrace = .milliseconds(300)
            $0.slowLinger = .seconds(10)  // the slow client reads its last frames after the burst
            $0.socketSendBuffer = 8_192
            $0.heartbeatInterval = .milliseconds(200)  // the queues' depth is taken at each heartbeat
        }
        let fast = try TestWebSocketClient(port: fixture.port)
        let slow = try TestWebSocketClient(port: fixture.port, receiveBuffer: 4_096)
        for client in [fast, slow] {
            try client.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
            _ = try client.receiveText()
        }
        _ = try fixture.nextUpstreamChange()
        try await Task.sleep(for: .milliseconds(200))
        // The fast client reads on a thread of its own (not one of the test's tasks: its reads block) while updates
        // pour in; the slow one reads nothing.
        let total = 10_000
        let reader = FastReader(fast, expecting: total)
        reader.start()
        // 5 000 updates a second: a reading client keeps up; one that reads nothing is over its hard mark in half a
        // second and stays there.
        var deepest: UInt64 = 0
        for index in 0..<total {
            try fixture.publishTrade("AAPL", price: 178_000_000 + Int64(index % 100) * 10_000)
            if index % 100 == 99 { try await Task.sleep(for: .milliseconds(20)) }
            // The slow client's queue shows in status (taken at each heartbeat): the operator sees who is behind.
            if index % 1_000 == 999 {
                deepest = max(deepest, try EdgeStatusProbe.status(fixture).counters["deepest_client_queue"] ?? 0)
            }
        }
        #expect(deepest > 0 && deepest <= 64, "the slow client's queue never showed: \(deepest)")
        while !reader.finished { try await Task.sleep(for: .milliseconds(50)) }
        let sequences = reader.sequences
        #expect(sequences.count == total, "the fast client got \(sequences.count) of \(total)")
        #expect(sequences == Array(1...total), "in order, none missing")

        // The slow client, reading again, finds the end of its line: 407, then close 4008.
        var sawSlowError = false
        var closeCode: Int?
        let deadline = Date().addingTimeInterval(15)
        while closeCode == nil && Date() < deadline, let frame = try? slow.receiveFrame(timeout: 2) {
            if frame.opcode == 0x8 {
                closeCode = frame.payload.count >= 2 ? Int(frame.payload[0]) << 8 | Int(frame.payload[1]) : 0
            } else if String(decoding: frame.payload, as: UTF8.self).contains(#""code":407"#) {
                sawSlowError = true
            }
        }
        #expect(sawSlowError)
        #expect(closeCode == 4008)
        let status = try EdgeStatusProbe.status(fixture)
        #expect(status.counters["slow_clients_closed"] == 1)
        #expect(status.drops > 0)
        await fixture.stop()
    }
}

/// A slow client's conflated queue keeps each symbol's messages in seq order: a halt and its resumption reach it,
/// in their place, however many trades came around them (the JavaScript client drops an update whose seq it has
/// passed: a resumption overtaken by a conflated trade left the demo page's halt badge up for good).
@Suite(.serialized) struct EdgeConflationOrderOverRealSockets {
    @Test func aSlowClientGetsTheHaltAndTheResumptionInSeqOrder() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            $0.queueSoft = 8
            $0.queueHard = 10_000
            $0.socketSendBuffer = 8_192
        }
        let client = try TestWebSocketClient(port: fixture.port, receiveBuffer: 4_096)
        try client.send(text: #"{"action":"subscribe","symbols":["AAPL","MSFT"]}"#)
        _ = try client.receiveText()
        for _ in 0..<2 { _ = try fixture.nextUpstreamChange() }
        try await Task.sleep(for: .milliseconds(200))
        // The client reads nothing: its socket fills, then its queue passes the soft mark and conflates.
        func trades(_ count: Int) throws {
            for index in 0..<count {
                try fixture.publishTrade(index % 2 == 0 ? "AAPL" : "MSFT", price: 178_000_000 + Int64(index) * 10_000)
            }
        }
        func status(_ state: TradingState) throws {
            var tick = Tick(symbol: "AAPL", type: .status, venue: "XNAS")
            tick.state = state
            tick.quality = .ok
            tick.exchangeTimestampNs = 1_701_432_000_000_000_000
            try fixture.publish(tick)
        }
        try trades(20_000)
        // The halt must come while the queue conflates (edged counts the replaced updates as drops): on the old
        // queue a trade after it then took the place of one ahead of it.
        let deadline = Date().addingTimeInterval(10)
        while try EdgeStatusProbe.status(fixture).drops == 0 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try EdgeStatusProbe.status(fixture).drops > 0, "the client's queue never conflated")
        try status(.halted)
        try trades(1_000)
        try status(.trading)
        try trades(1_000)
        try await Task.sleep(for: .milliseconds(300))
        let full = try EdgeStatusProbe.status(fixture).counters["socket_full_writes"] ?? 0
        #expect(full > 0, "the trades never filled the client's socket")

        var lastSeq: [String: Int] = [:]
        var outOfOrder: [String] = []
        var aaplStates: [String] = []
        var received = 0
        while let message = try? client.receiveJSON(timeout: 2) {
            guard let symbol = message["symbol"] as? String, let seq = message["seq"] as? Int else { continue }
            received += 1
            if let last = lastSeq[symbol], seq <= last { outOfOrder.append("\(symbol) \(seq) after \(last)") }
            lastSeq[symbol] = seq
            if symbol == "AAPL", message["type"] as? String == "STATUS", let state = message["state"] as? String {
                aaplStates.append(state)
            }
        }
        #expect(received < 22_002, "nothing was conflated: the test did not test it")
        #expect(outOfOrder.isEmpty, "\(outOfOrder.prefix(5))")
        #expect(aaplStates == ["HALTED", "TRADING"])
        await fixture.stop()
    }
}

/// Updates are sent straight to a client's socket; what it does not take goes through NIO's buffer behind them.
@Suite(.serialized) struct EdgeDirectWritesOverRealSockets {
    /// A client that stops reading while a burst far larger than its socket's buffers comes, then reads again, gets
    /// every update whole and in order: the part of a frame the socket did not take went on through NIO, and the
    /// updates after it waited behind it.
    @Test func aClientWhoseSocketFillsGetsEveryUpdateWholeAndInOrder() async throws {
        let fixture = try await EdgeServerOverRealSockets.Fixture {
            // Nothing conflated or dropped: the queue holds the whole burst.
            $0.queueSoft = 10_000
            $0.queueHard = 10_000
            $0.socketSendBuffer = 8_192
        }
        let client = try TestWebSocketClient(port: fixture.port, receiveBuffer: 4_096)
        try client.send(text: #"{"action":"subscribe","symbol":"AAPL"}"#)
        _ = try client.receiveText()
        _ = try fixture.nextUpstreamChange()
        try await Task.sleep(for: .milliseconds(200))
        let total = 3_000
        for index in 0..<total {
            try fixture.publishTrade("AAPL", price: 178_000_000 + Int64(index % 100) * 10_000)
        }
        try await Task.sleep(for: .milliseconds(500))
        let full = try EdgeStatusProbe.status(fixture).counters["socket_full_writes"] ?? 0
        #expect(full > 0, "the burst never filled the client's socket")
        var sequences: [Int] = []
        while sequences.count < total, let message = try? client.receiveJSON(timeout: 5) {
            if let seq = message["seq"] as? Int { sequences.append(seq) }
        }
        #expect(sequences == Array(1...total), "got \(sequences.count) of \(total), in order: \(sequences == sequences.sorted())")
        await fixture.stop()
    }
}

/// Reads one client's updates on a thread of its own until it has `expecting` of them or 20 s pass.
/// `@unchecked Sendable`: the client is used by the reading thread alone once `start` is called; the results are
/// read through the lock after `finished` says the thread is done.
final class FastReader: @unchecked Sendable {
    private let client: TestWebSocketClient
    private let expecting: Int
    private let lock = NSLock()
    private var received: [Int] = []
    private var done = false

    init(_ client: TestWebSocketClient, expecting: Int) {
        self.client = client
        self.expecting = expecting
    }

    func start() {
        Thread.detachNewThread { [self] in
            var sequences: [Int] = []
            let deadline = Date().addingTimeInterval(20)
            while sequences.count < expecting && Date() < deadline {
                do {
                    let message = try client.receiveJSON(timeout: 2)
                    if let seq = message["seq"] as? Int { sequences.append(seq) }
                } catch {
                    break
                }
            }
            lock.withLock {
                received = sequences
                done = true
            }
        }
    }

    var finished: Bool { lock.withLock { done } }
    var sequences: [Int] { lock.withLock { received } }
}

enum EdgeStatusProbe {
    /// edged's `status` from its control endpoint.
    static func status(_ fixture: EdgeServerOverRealSockets.Fixture) throws -> DaemonStatus {
        try status(of: fixture.server, context: fixture.context)
    }

    static func status(of server: EdgeServer, context: ZMQContext) throws -> DaemonStatus {
        let control = try ZMQSocket(context, type: .request)
        defer { control.close() }
        try control.setReceiveTimeout(milliseconds: 2_000)
        try control.connect(try #require(server.controlEndpoint))
        try control.send(#"{"cmd":"status"}"#)
        return try JSONDecoder().decode(DaemonStatus.self, from: Data(try #require(try control.receiveFrames())[0]))
    }
}
