import MarketData
import ZeroMQ

/// The gap-free join of docs/protocol.md, for mktctl: the same steps as the reference consumers in examples/, so that
/// what an operator tails is what a risk system gets. Subscribe the prefixes and then `#HB`; at the first heartbeat
/// ask plantd for a snapshot of each prefix, holding live ticks; start each symbol at its snapshot and take the held
/// ticks after it; a symbol_seq that jumps is replayed from the first missing tick; a new plant session or the end
/// of a heartbeat silence joins again.
///
/// `poll` hands back what a consumer would apply, in the order it applies it: each symbol's ticks in symbol_seq
/// order without a hole, marked by where they came from, and notices of what happened to the stream.
final class PlantJoin {
    enum Origin: String {
        case snapshot = "SNAPSHOT"
        case live = ""
        case replay = "REPLAYED"
        /// The plant's own topics asked for besides the prefixes (`#Q|SYMBOL`): passed on, not sequenced.
        case plant = "PLANT"
    }

    enum Event {
        case tick(Tick, topic: String, origin: Origin)
        case notice(String)
    }

    private enum Request {
        case snapshot(prefix: String)
        case replay(symbol: String, from: UInt64)
        case resnapshot(symbol: String)
    }

    private struct SymbolState {
        var last: UInt64 = 0
        var replaying = false
        var held: [(Tick, String)] = []
    }

    let context: ZMQContext
    let snapshotEndpoint: String
    let prefixes: [String]
    let heartbeatTimeoutNs: UInt64
    let requestTimeoutNs: UInt64
    let curve: CurveClientKeys?
    private let subscriber: ZMQSocket
    private var dealer: ZMQSocket
    private var symbols: [String: SymbolState] = [:]
    private var waiting: [Request] = []
    private var asked: (request: Request, atNs: UInt64)?
    private var answer: [(Tick, String)] = []
    private var joining = true
    private var buffer: [(Tick, String)] = []
    private var snapshotsDue = 0
    private var joinSnapshot: [String: [(Tick, String)]] = [:]
    private var session: UInt64?
    private var lastMessageNs = MonotonicClock.nowNanoseconds()
    private var linkStale = false
    private var events: [Event] = []
    private(set) var gaps = 0
    private(set) var gapsHealed = 0
    private(set) var resets = 0

    /// `prefixes` are whole-symbol topic prefixes (`AAPL|`, a shard `AA`, or `""`); `plantTopics` the plant's own
    /// topics to pass on as they come (`#Q|AAPL`).
    init(context: ZMQContext, publish: String, snapshot: String, prefixes: [String], plantTopics: [String] = [],
        curve: CurveClientKeys? = nil, heartbeatTimeoutSeconds: Double = 3, requestTimeoutSeconds: Double = 5) throws
    {
        self.curve = curve
        self.context = context
        snapshotEndpoint = snapshot
        self.prefixes = prefixes
        heartbeatTimeoutNs = UInt64(heartbeatTimeoutSeconds * 1e9)
        requestTimeoutNs = UInt64(requestTimeoutSeconds * 1e9)
        subscriber = try ZMQSocket(context, type: .subscribe)
        if let curve { try subscriber.setCurveClient(curve) }
        try subscriber.setReceiveHighWaterMark(10_000_000)
        // Subscriptions travel to plantd as messages: past a send high-water mark libzmq drops them without a word.
        try subscriber.setSendHighWaterMark(0)
        // Connected first: subscriptions made before the connect are sent in libzmq's own order (the heartbeat's,
        // "#HB", ahead of every symbol's), those made after it in the order they are made.
        try subscriber.connect(publish)
        for prefix in prefixes + plantTopics { try subscriber.subscribe(prefix) }
        // Last: plantd takes a SUB's subscriptions in order, so the first heartbeat proves the prefixes live.
        try subscriber.subscribe(Topic.heartbeat)
        dealer = try Self.newDealer(context, snapshot, curve: curve)
    }

    deinit {
        subscriber.close()
        dealer.close()
    }

    /// Whether a prefix can be joined gap-free: whole symbols only (`AAPL|T` sees a subset of the symbol_seq).
    static func joinable(_ prefix: String) -> Bool {
        guard !prefix.hasPrefix("#") else { return false }
        // Nothing after the bar: `AAPL|` is whole, `AAPL|T` one type.
        return prefix.firstIndex(of: "|").map { prefix.index(after: $0) == prefix.endIndex } ?? true
    }

    private static func newDealer(_ context: ZMQContext, _ endpoint: String, curve: CurveClientKeys?) throws
        -> ZMQSocket
    {
        let dealer = try ZMQSocket(context, type: .dealer)
        if let curve { try dealer.setCurveClient(curve) }
        try dealer.setReceiveHighWaterMark(0)
        try dealer.setLinger(milliseconds: 0)
        try dealer.connect(endpoint)
        return dealer
    }

    /// A new DEALER, so that an answer to a request of the old one (a plant that died, a timeout) is never taken for
    /// an answer to a new request. The old one stays if a new one cannot be made (its endpoint worked at the start).
    private func freshDealer() {
        guard let fresh = try? Self.newDealer(context, snapshotEndpoint, curve: curve) else { return }
        dealer.close()
        dealer = fresh
    }

    /// Waits up to `timeoutMilliseconds` and returns what happened since the last call.
    func poll(timeoutMilliseconds: Int) throws -> [Event] {
        let poller = ZMQPoller()
        let subscriberIndex = try poller.add(subscriber)
        let dealerIndex = try poller.add(dealer)
        _ = try poller.poll(timeoutMilliseconds: timeoutMilliseconds)
        if poller.isReadable(subscriberIndex) {
            for _ in 0..<10_000 {
                guard let frames = try subscriber.receiveFrames(dontWait: true) else { break }
                guard frames.count == 2 else { continue }
                onLive(topic: String(decoding: frames[0], as: UTF8.self), payload: frames[1])
            }
        }
        if poller.isReadable(dealerIndex) {
            let current = dealer
            while current === dealer, let frames = try dealer.receiveFrames(dontWait: true), frames.count == 2 {
                onAnswer(topic: String(decoding: frames[0], as: UTF8.self), payload: frames[1])
            }
        }
        let now = MonotonicClock.nowNanoseconds()
        if !linkStale && now - lastMessageNs > heartbeatTimeoutNs {
            linkStale = true
            let seconds = heartbeatTimeoutNs / 1_000_000_000
            events.append(.notice("nothing from plantd for \(seconds) s: STALE until it is back"))
        }
        if let asked, now - asked.atNs > requestTimeoutNs {
            // Unanswered (the plant died with it in flight): asked again on a fresh DEALER.
            self.asked = nil
            answer.removeAll()
            waiting.insert(asked.request, at: 0)
            freshDealer()
            sendNext()
        }
        defer { events.removeAll() }
        return events
    }

    // MARK: Requests

    private func ask(_ request: Request) {
        waiting.append(request)
        sendNext()
    }

    /// One request in flight: a replay from the journal is answered over several of plantd's turns.
    private func sendNext() {
        guard asked == nil, !waiting.isEmpty else { return }
        let request = waiting.removeFirst()
        asked = (request, MonotonicClock.nowNanoseconds())
        answer.removeAll()
        let encoded: [UInt8]
        switch request {
        case let .snapshot(prefix): encoded = ReplayRequest.snapshot(prefix: prefix).encoded()
        case let .resnapshot(symbol): encoded = ReplayRequest.snapshot(prefix: Topic.allTypes(of: symbol)).encoded()
        case let .replay(symbol, from):
            encoded = ReplayRequest.symbolReplay(symbol: symbol, fromSymbolSequence: from).encoded()
        }
        _ = try? dealer.send(encoded)
    }

    private func onAnswer(topic: String, payload: [UInt8]) {
        guard let asked else { return }
        guard topic == SnapshotEnd.topic else {
            if !topic.hasPrefix("#"), let tick = try? TickDecoder.decode(payload) { answer.append((tick, topic)) }
            return
        }
        let end = SnapshotEnd(decoding: payload)
        let ticks = answer
        self.asked = nil
        answer.removeAll()
        if let session, end?.plantSession != session {
            rejoin("the snapshot came from another plant session")
            return
        }
        switch asked.request {
        case let .snapshot(prefix):
            if let end, !end.error.isEmpty { events.append(.notice("snapshot of \"\(prefix)\" refused: \(end.error)")) }
            for (tick, topic) in ticks { joinSnapshot[tick.symbol, default: []].append((tick, topic)) }
            snapshotsDue -= 1
            if snapshotsDue == 0 { finishJoin() }
        case let .replay(symbol, from):
            for (tick, topic) in ticks where tick.symbol == symbol {
                let next = (symbols[symbol]?.last ?? 0) + 1
                if tick.symbolSequence == next { apply(tick, topic: topic, origin: .replay) }
            }
            if let end, end.complete, end.error.isEmpty, (symbols[symbol]?.last ?? 0) >= from {
                gapsHealed += 1
                events.append(.notice("\(symbol): gap from symbol_seq \(from) healed by replay"))
                release(symbol)
            } else {
                resets += 1
                let why = end.map { $0.error.isEmpty ? "not kept" : $0.error } ?? "no answer"
                events.append(
                    .notice("\(symbol): replay from \(from) refused (\(why)); starting again from a snapshot"))
                ask(.resnapshot(symbol: symbol))
            }
        case let .resnapshot(symbol):
            let mine = ticks.filter { $0.0.symbol == symbol }
            if !mine.isEmpty { takeSnapshot(symbol, mine) }
            release(symbol)
        }
        sendNext()
    }

    // MARK: Joining

    private func join() {
        joining = true
        joinSnapshot.removeAll()
        snapshotsDue = prefixes.count
        for prefix in prefixes { ask(.snapshot(prefix: prefix)) }
    }

    private func rejoin(_ why: String) {
        events.append(.notice("joining again: \(why)"))
        var held: [(Tick, String)] = []
        for name in symbols.keys.sorted() {
            // A replay dropped with the old requests: the join finds the hole again and counts it then.
            if symbols[name]!.replaying { gaps -= 1 }
            held += symbols[name]!.held
            symbols[name]!.held.removeAll()
            symbols[name]!.replaying = false
        }
        buffer = held + buffer
        waiting.removeAll()
        asked = nil
        answer.removeAll()
        freshDealer()
        join()
    }

    private func finishJoin() {
        for (name, ticks) in joinSnapshot.sorted(by: { $0.key < $1.key }) {
            let newest = ticks.map(\.0.symbolSequence).max() ?? 0
            let last = symbols[name]?.last ?? 0
            if last == 0 {
                takeSnapshot(name, ticks)
            } else if newest > last {
                gap(name, from: last + 1)
            } else if newest < last {
                resets += 1
                events.append(.notice("\(name): the plant's symbol_seq started again (\(newest) after \(last))"))
                takeSnapshot(name, ticks)
            }
        }
        joinSnapshot.removeAll()
        joining = false
        let buffered = buffer
        buffer.removeAll()
        for (tick, topic) in buffered { take(tick, topic: topic) }
    }

    private func takeSnapshot(_ symbol: String, _ ticks: [(Tick, String)]) {
        for (tick, topic) in ticks { events.append(.tick(tick, topic: topic, origin: .snapshot)) }
        symbols[symbol, default: SymbolState()].last = ticks.map(\.0.symbolSequence).max() ?? 0
    }

    // MARK: Live ticks and gaps

    private func onLive(topic: String, payload: [UInt8]) {
        // Anything that arrives shows the link alive: a consumer behind its stream reads heartbeats late.
        lastMessageNs = MonotonicClock.nowNanoseconds()
        guard let tick = try? TickDecoder.decode(payload) else { return }
        if topic == Topic.heartbeat { return onHeartbeat(tick) }
        if topic.hasPrefix("#") {
            events.append(.tick(tick, topic: topic, origin: .plant))
            return
        }
        if joining {
            buffer.append((tick, topic))
        } else {
            take(tick, topic: topic)
        }
    }

    private func take(_ tick: Tick, topic: String) {
        // In place: a copy of the state would copy its held ticks on every append while a replay is awaited.
        let (last, replaying) = symbols[tick.symbol].map { ($0.last, $0.replaying) } ?? (0, false)
        if replaying {
            symbols[tick.symbol]!.held.append((tick, topic))
        } else if tick.symbolSequence <= last {
            return
        } else if tick.symbolSequence == last + 1 {
            apply(tick, topic: topic, origin: .live)
        } else {
            symbols[tick.symbol, default: SymbolState()].held.append((tick, topic))
            gap(tick.symbol, from: last + 1)
        }
    }

    private func apply(_ tick: Tick, topic: String, origin: Origin) {
        symbols[tick.symbol, default: SymbolState()].last = tick.symbolSequence
        events.append(.tick(tick, topic: topic, origin: origin))
    }

    private func gap(_ symbol: String, from: UInt64) {
        gaps += 1
        symbols[symbol, default: SymbolState()].replaying = true
        events.append(.notice("\(symbol): gap at symbol_seq \(from); asking plantd to replay it"))
        ask(.replay(symbol: symbol, from: from))
    }

    private func release(_ symbol: String) {
        let held = symbols[symbol]?.held ?? []
        symbols[symbol]?.held.removeAll()
        symbols[symbol]?.replaying = false
        for (tick, topic) in held { take(tick, topic: topic) }
    }

    private func onHeartbeat(_ heartbeat: Tick) {
        let wasStale = linkStale
        linkStale = false
        guard let session else {
            session = heartbeat.plantSession
            return join()
        }
        if heartbeat.plantSession != session {
            self.session = heartbeat.plantSession
            rejoin("plantd restarted (a new session in its heartbeat)")
        } else if wasStale {
            rejoin("plantd's heartbeats are back")
        }
    }
}
