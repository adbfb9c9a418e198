import DaemonMetrics
import DequeModule
import Foundation
import Histogram
import Logging
import MarketData
import NIOCore
import Synchronization
import ZeroMQ

/// edged's ZeroMQ side, on its own thread: a SUB to plantd subscribed only to the symbols clients watch, turning each
/// tick into its JSON text once and handing batches to the event loops. Also serves edged's control endpoint.
final class UpstreamSubscriber: Sendable {
    let configuration: EdgeConfiguration
    let hub: EdgeHub
    let context: ZMQContext
    let logger: Logger

    init(configuration: EdgeConfiguration, hub: EdgeHub, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.hub = hub
        self.context = context
        self.logger = logger
    }

    var controlEndpoint: String? { hub.upstreamThread.boundEndpoints["control"] }

    func start() throws {
        _ = try hub.upstreamThread.startLoop { [self] _ in try UpstreamLoop(subscriber: self) }
    }
}

/// A request to plantd's snapshot ROUTER awaiting its answer.
struct AskedOfPlant {
    enum Purpose {
        /// The symbol's last values, for the cache (and its waiting clients, or every watcher in a refresh).
        case snapshot
        /// A symbol replay for one client (`fromSeq`, or a gap in its join).
        case resume(waiter: EdgeSnapshotCache.Waiter, from: UInt64)
        /// A symbol replay of what edged's own stream lost, for every watcher.
        case repair(from: UInt64)
    }

    var symbol: String
    /// When it was sent to plantd (0 while it waits to be sent).
    var askedAtNs: UInt64 = 0
    var purpose: Purpose = .snapshot

    var isReplay: Bool {
        if case .snapshot = purpose { return false }
        return true
    }
}

/// What edged asks of plantd's snapshot ROUTER at once (DESIGN section 12: work a peer can ask for is bounded). The
/// rest wait in edged: plantd serves a bounded number of requests a turn and answers one peer's in order (a replay
/// read from its journal holds up the ones after it), and answers must not wait behind thousands past
/// `snapshot_timeout`.
let plantRequestsInFlightLimit = 32
/// Replays of one client asked of plantd at once: its others wait in edged, and clients take turns, so that one
/// client resuming hundreds of symbols (or churning its subscriptions) holds up nobody else's.
let replaysPerClientLimit = 8

/// The upstream thread's sockets and loop.
private final class UpstreamLoop: SocketLoop {
    let subscriber: UpstreamSubscriber
    let socket: ZMQSocket
    let control: ControlResponder
    /// Checks the control endpoint's CURVE handshakes against the operators' keys (`[curve] operator_key_files`).
    let zap: ZAPHandler?
    var curveRefusedLog = LogRateLimiter(interval: .seconds(10))
    let boundEndpoints: [String: String]
    /// The DEALER to plantd's snapshot ROUTER (nil without one), and what was asked of it, oldest first: its
    /// answers come back in that order.
    var snapshotSocket: ZMQSocket?
    var asked: [AskedOfPlant] = []
    /// Snapshots and repairs (edged's own requests, at most one per symbol) not yet sent, past
    /// `plantRequestsInFlightLimit` in `asked`: sent first as answers come in.
    var waitingToAsk: Deque<(request: AskedOfPlant, message: ReplayRequest)> = []
    /// Each client's replays not yet sent, in its order; the clients with one waiting and room for it
    /// (`replaysPerClientLimit`) take turns in `clientsInTurn`.
    var replaysWaiting: [ObjectIdentifier: Deque<(request: AskedOfPlant, message: ReplayRequest)>] = [:]
    var replaysInFlight: [ObjectIdentifier: Int] = [:]
    var clientsInTurn: Deque<ObjectIdentifier> = []
    var clientsInTurnSet: Set<ObjectIdentifier> = []
    var answerTicks: [(Tick, ByteBuffer)] = []
    /// Ticks of the answer being read beyond what a replay may give (`resume_max_updates`): counted, not kept.
    var answerTicksBeyondLimit = 0
    /// Live ticks made updates, and the last values they leave (the snapshot cache).
    var live = LiveTicks()
    var snapshotPollIndex: Int?
    /// plantd -> edged: from plantd's send stamp to when edged read the tick, since the last `latency` request
    /// (nanoseconds, to three significant digits).
    var plantToEdge = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var plantToEdgeSkewed: UInt64 = 0
    /// The same since edged started, in fixed buckets: `/metrics`.
    var plantToEdgeBuckets = LatencyBuckets(hop: "plantd -> edged")
    /// Gaps in edged's own stream healed by plantd's replay, and those it could not replay (a refresh instead, or
    /// plantd did not answer in time and the gap stayed open).
    var upstreamGapsReplayed: UInt64 = 0
    var upstreamGapsSnapshotted: UInt64 = 0
    var upstreamGapsLeftOpen: UInt64 = 0
    var gapsLogged: UInt64 = 0
    var gapsLoggedAtNs: UInt64 = 0

    init(subscriber: UpstreamSubscriber) throws {
        self.subscriber = subscriber
        socket = try ZMQSocket(subscriber.context, type: .subscribe)
        if let curve = subscriber.configuration.curve { try socket.setCurveClient(curve) }
        try socket.setReceiveHighWaterMark(subscriber.configuration.receiveHighWaterMark)
        // A SUB sends each subscription to plantd as a message, and libzmq drops those past its send high-water mark
        // (1 000 by default) without a word: thousands made at once, or all of them sent again when it reconnects to a
        // restarted plantd. A symbol dropped so would never update again. The SUB sends nothing else, so no limit.
        try socket.setSendHighWaterMark(0)
        try socket.connect(subscriber.configuration.upstream)
        // plantd's heartbeats carry its session: a new one is a plant restart, which may have lost updates.
        try socket.subscribe(Topic.heartbeat)
        if let endpoint = subscriber.configuration.snapshotEndpoint {
            snapshotSocket = try Self.snapshotDealer(
                subscriber.context, endpoint, curve: subscriber.configuration.curve)
        }
        live.cache.canRepair = snapshotSocket != nil
        zap = try ZAPHandler.forDaemon(context: subscriber.context, clientKeys: nil,
            control: subscriber.configuration.controlCurve)
        control = try ControlResponder(context: subscriber.context, endpoint: subscriber.configuration.controlEndpoint,
            curve: subscriber.configuration.controlCurve)
        boundEndpoints = ["control": try control.socket.lastEndpoint]
    }

    static func snapshotDealer(_ context: ZMQContext, _ endpoint: String, curve: CurveClientKeys?) throws -> ZMQSocket {
        let dealer = try ZMQSocket(context, type: .dealer)
        if let curve { try dealer.setCurveClient(curve) }
        try dealer.setReceiveHighWaterMark(0)
        try dealer.connect(endpoint)
        return dealer
    }

    /// A client subscribed to `symbol` and waits for its snapshot: from the cache, or from plantd for the symbol's
    /// first watcher.
    func wantSnapshot(_ symbol: String, _ waiter: EdgeSnapshotCache.Waiter, allocator: ByteBufferAllocator) {
        let askPlant = snapshotSocket != nil
        if live.cache.want(symbol, by: waiter, askingPlant: askPlant) {
            ask(AskedOfPlant(symbol: symbol), .snapshot(prefix: Topic.allTypes(of: symbol)))
        }
        answerWaiters(symbol, allocator: allocator)
    }

    /// Sends `message` to plantd now if fewer than `plantRequestsInFlightLimit` requests await their answers, or
    /// keeps it until one is answered: edged's own requests in order, clients' replays by turns.
    func ask(_ request: AskedOfPlant, _ message: ReplayRequest) {
        if case let .resume(waiter, _) = request.purpose {
            replaysWaiting[waiter.session, default: []].append((request, message))
            giveTurn(waiter.session)
        } else {
            waitingToAsk.append((request, message))
        }
        sendWaitingRequests()
    }

    /// `client` takes its turn when it has a replay waiting and fewer than `replaysPerClientLimit` asked.
    private func giveTurn(_ client: ObjectIdentifier) {
        guard replaysWaiting[client]?.isEmpty == false, replaysInFlight[client, default: 0] < replaysPerClientLimit,
            clientsInTurnSet.insert(client).inserted
        else { return }
        clientsInTurn.append(client)
    }

    func sendWaitingRequests() {
        guard let dealer = snapshotSocket else { return }
        while asked.count < plantRequestsInFlightLimit {
            var next: (request: AskedOfPlant, message: ReplayRequest)
            if let own = waitingToAsk.popFirst() {
                next = own
            } else if let client = clientsInTurn.popFirst() {
                clientsInTurnSet.remove(client)
                guard let replay = replaysWaiting[client]?.popFirst() else { continue }
                if replaysWaiting[client]?.isEmpty == true { replaysWaiting[client] = nil }
                // Nobody watches the symbol any more (the client left or unsubscribed while it waited): not asked.
                guard subscriber.hub.isWatched(replay.request.symbol) else {
                    giveTurn(client)
                    continue
                }
                replaysInFlight[client, default: 0] += 1
                giveTurn(client)
                next = replay
            } else {
                return
            }
            next.request.askedAtNs = MonotonicClock.nowNanoseconds()
            asked.append(next.request)
            _ = try? dealer.send(next.message.encoded())
        }
    }

    /// A client's replay is answered (or given up): it may ask another.
    func replayAnswered(_ request: AskedOfPlant) {
        guard case let .resume(waiter, _) = request.purpose, let count = replaysInFlight[waiter.session] else { return }
        replaysInFlight[waiter.session] = count > 1 ? count - 1 : nil
        giveTurn(waiter.session)
    }

    /// A client wants `symbol` from symbol_seq `from` on: plantd replays it (its answer goes to that client only).
    func wantResume(
        _ symbol: String, from: UInt64, _ waiter: EdgeSnapshotCache.Waiter, allocator: ByteBufferAllocator
    ) {
        guard snapshotSocket != nil else { return wantSnapshot(symbol, waiter, allocator: allocator) }
        // What edged's cache already tells: more missed than a replay may carry; or the client has a replay waiting
        // for every symbol it may watch (its subscriptions churn faster than plantd answers). Either way a
        // snapshot, without asking plantd to replay anything.
        let missed = live.cache.settledThrough(symbol).map { $0 >= from ? $0 - from + 1 : 0 }
        if missed.map({ $0 > UInt64(subscriber.configuration.resumeMaxUpdates) }) == true
            || replaysWaiting[waiter.session]?.count ?? 0 >= subscriber.configuration.maxSymbolsPerClient
        {
            subscriber.hub.replaysSnapshotted.wrappingAdd(1, ordering: .relaxed)
            return wantSnapshot(symbol, waiter, allocator: allocator)
        }
        ask(AskedOfPlant(symbol: symbol, purpose: .resume(waiter: waiter, from: from)),
            .symbolReplay(symbol: symbol, fromSymbolSequence: from))
    }

    func answerWaiters(_ symbol: String, allocator: ByteBufferAllocator) {
        let (waiters, frames) = live.cache.answerWaiters(symbol, allocator: allocator)
        for waiter in waiters {
            subscriber.hub.dispatchSnapshot(frames, of: symbol, to: waiter.registry, session: waiter.session)
        }
    }

    /// Takes plantd's answers: each request's ticks, then its end. A snapshot's symbol's waiting clients get the
    /// snapshot, then the live updates held meanwhile that are newer (into `batch`); a replay goes to its client.
    func readSnapshotAnswers(json: inout [UInt8], allocator: ByteBufferAllocator, batch: inout [EdgeUpdate]) {
        guard let dealer = snapshotSocket else { return }
        let replayLimit = subscriber.configuration.resumeMaxUpdates
        while let frames = try? dealer.receiveFrames(dontWait: true), frames.count >= 2 {
            if frames[0] == Array(SnapshotEnd.topic.utf8) {
                guard !asked.isEmpty else { continue }
                let request = asked.removeFirst()
                replayAnswered(request)
                defer { sendWaitingRequests() }
                let end = SnapshotEnd(decoding: frames[1])
                switch request.purpose {
                case let .resume(waiter, from):
                    finishResume(request.symbol, waiter, from: from, end: end, allocator: allocator)
                case let .repair(from):
                    finishRepair(request.symbol, from: from, end: end, allocator: allocator, batch: &batch)
                case .snapshot:
                    finishSnapshot(request.symbol, ticks: answerTicks, streamSequence: end?.streamSequence ?? 0,
                        answeredByPlant: end != nil, allocator: allocator, batch: &batch)
                }
                answerTicks.removeAll()
                answerTicksBeyondLimit = 0
                continue
            }
            if asked.first?.isReplay == true && answerTicks.count >= replayLimit {
                answerTicksBeyondLimit += 1
                continue
            }
            guard let tick = try? TickDecoder.decode(frames[1]), !tick.symbol.hasPrefix("#") else { continue }
            EdgeJSON.write(tick, into: &json)
            var buffer = allocator.buffer(capacity: json.count)
            buffer.writeBytes(json)
            answerTicks.append((tick, buffer))
        }
    }

    /// plantd's replay for one client: the whole of what it asked (and no more than `resume_max_updates`) goes to
    /// it; otherwise it gets a snapshot, flagged as such.
    func finishResume(
        _ symbol: String, _ waiter: EdgeSnapshotCache.Waiter, from: UInt64, end: SnapshotEnd?,
        allocator: ByteBufferAllocator
    ) {
        let hub = subscriber.hub
        guard let end, end.complete, answerTicksBeyondLimit == 0 else {
            hub.replaysSnapshotted.wrappingAdd(1, ordering: .relaxed)
            let limit = subscriber.configuration.resumeMaxUpdates
            subscriber.logger.debug("a replay answered with a snapshot", metadata: [
                "symbol": "\(symbol)", "from": "\(from)",
                "why": "\(end.map { $0.error.isEmpty ? "more than \(limit) missed" : $0.error } ?? "unreadable end")",
            ])
            return wantSnapshot(symbol, waiter, allocator: allocator)
        }
        hub.replaysServed.wrappingAdd(1, ordering: .relaxed)
        let updates = answerTicks.filter { $0.0.symbol == symbol }.map { tick, text in
            EdgeUpdate(symbol: symbol, text: text, droppable: tick.type != .status, type: tick.type,
                symbolSequence: tick.symbolSequence)
        }
        hub.dispatchResume(updates, of: symbol, from: from, to: waiter.registry, session: waiter.session)
    }

    /// plantd's replay of what edged's stream lost of `symbol`: every watcher gets the missing updates in order, then
    /// those that waited. When plantd cannot replay them (or more than `resume_max_updates` were lost), the symbol's
    /// values are taken afresh and every watcher gets them as a snapshot.
    func finishRepair(
        _ symbol: String, from: UInt64, end: SnapshotEnd?, allocator: ByteBufferAllocator, batch: inout [EdgeUpdate]
    ) {
        guard let end, end.complete, answerTicksBeyondLimit == 0 else {
            upstreamGapsSnapshotted &+= 1
            let limit = subscriber.configuration.resumeMaxUpdates
            subscriber.logger.debug("a gap in edged's stream answered with a fresh snapshot", metadata: [
                "symbol": "\(symbol)", "from": "\(from)",
                "why": "\(end.map { $0.error.isEmpty ? "more than \(limit) missed" : $0.error } ?? "unreadable end")",
            ])
            live.cache.refresh(symbol)
            ask(AskedOfPlant(symbol: symbol), .snapshot(prefix: Topic.allTypes(of: symbol)))
            return
        }
        let (updates, done, foundNothing) = live.cache.repaired(
            symbol, replayed: answerTicks.map { (tick: $0.0, text: $0.1) })
        if done && !foundNothing { upstreamGapsReplayed &+= 1 }
        for (tick, text) in updates {
            batch.append(EdgeUpdate(symbol: symbol, text: text, droppable: tick.type != .status, type: tick.type,
                symbolSequence: tick.symbolSequence))
        }
        // Everyone who watched it left while plantd was asked: nothing more comes for it (its SUB is gone).
        if done && !subscriber.hub.isWatched(symbol) { live.cache.forget(symbol) }
    }

    /// Asks plantd for what edged's stream lost, as the window of requests in flight has room: a plant restart
    /// makes every watched symbol due, and they wait here rather than all at once in plantd.
    func askRepairs() {
        guard !live.cache.repairsDue.isEmpty, snapshotSocket != nil else { return }
        var taken = 0
        for symbol in live.cache.repairsDue {
            guard asked.count + waitingToAsk.count < plantRequestsInFlightLimit else { break }
            taken += 1
            guard let from = live.cache.repairFrom(symbol) else { continue }
            ask(AskedOfPlant(symbol: symbol, purpose: .repair(from: from)),
                .symbolReplay(symbol: symbol, fromSymbolSequence: from))
        }
        live.cache.repairsDue.removeFirst(taken)
    }

    /// Asks plantd again for the snapshot of each symbol whose refresh came before the new plantd published it.
    func askRefreshes() {
        guard !live.cache.refreshesDue.isEmpty else { return }
        for symbol in live.cache.refreshesDue {
            ask(AskedOfPlant(symbol: symbol), .snapshot(prefix: Topic.allTypes(of: symbol)))
        }
        live.cache.refreshesDue.removeAll()
    }

    /// At most one warning per 10 s about gaps in edged's own stream, with how many since the last.
    func logGaps() {
        let found = live.cache.gapsFound
        let now = MonotonicClock.nowNanoseconds()
        guard found != gapsLogged, now &- gapsLoggedAtNs >= 10_000_000_000 else { return }
        let message: Logger.Message = "edged's stream from plantd lost updates; repairing them by plantd's replay"
        subscriber.logger.warning(message, metadata: [
            "gaps": "\(found &- gapsLogged)", "replayed": "\(upstreamGapsReplayed)",
            "snapshotted": "\(upstreamGapsSnapshotted)", "left_open": "\(upstreamGapsLeftOpen)",
        ])
        gapsLogged = found
        gapsLoggedAtNs = now
    }

    func finishSnapshot(
        _ symbol: String, ticks: [(Tick, ByteBuffer)], streamSequence: UInt64, answeredByPlant: Bool,
        allocator: ByteBufferAllocator, batch: inout [EdgeUpdate]
    ) {
        let newer = live.cache.plantAnswered(symbol, ticks: ticks, streamSequence: streamSequence)
        if let frames = live.cache.takeRefresh(symbol, allocator: allocator) {
            // A refresh: every client watching the symbol gets its values afresh (and those waiting, below).
            subscriber.hub.dispatchRefresh(frames, of: symbol)
        } else if answeredByPlant && newer.isEmpty && live.cache.hasNoValues(symbol)
            && !live.cache.isRefreshing(symbol)
        {
            // plantd has never published anything of it, and nothing came since: 408 for each waiting client. The
            // cache forgets it, so that a later client asks plantd again. (A refresh answered so waits instead for
            // the symbol's first update: edged had it before plantd restarted.)
            for waiter in live.cache.refuse(symbol) {
                subscriber.hub.dispatchUnknown(symbol, to: waiter.registry, session: waiter.session)
            }
            return
        }
        answerWaiters(symbol, allocator: allocator)
        // Everyone who wanted it left while plantd was asked: nothing more comes for it (its SUB is gone).
        if !subscriber.hub.isWatched(symbol) { live.cache.forget(symbol) }
        for (tick, text) in newer where live.cache.take(tick, text: text) {
            batch.append(EdgeUpdate(symbol: tick.symbol, text: text, droppable: tick.type != .status, type: tick.type,
                symbolSequence: tick.symbolSequence))
        }
    }

    /// Requests plantd has not answered in time: their clients are served without them (a snapshot of what the
    /// cache has), and the DEALER starts afresh so that a late answer is not taken for another request's.
    func expireSnapshots(allocator: ByteBufferAllocator, batch: inout [EdgeUpdate], poller: ZMQPoller) {
        guard let oldest = asked.first, let endpoint = subscriber.configuration.snapshotEndpoint,
            MonotonicClock.nowNanoseconds() &- oldest.askedAtNs > subscriber.configuration.snapshotTimeout.nanoseconds
        else { return }
        subscriber.logger.warning("plantd's snapshot ROUTER did not answer; serving clients without it",
            metadata: ["snapshot": "\(endpoint)", "requests": "\(asked.count)"])
        let expired = asked
        asked.removeAll()
        for request in expired { replayAnswered(request) }
        answerTicks.removeAll()
        answerTicksBeyondLimit = 0
        for request in expired {
            switch request.purpose {
            case let .resume(waiter, _):
                subscriber.hub.replaysSnapshotted.wrappingAdd(1, ordering: .relaxed)
                _ = live.cache.want(request.symbol, by: waiter, askingPlant: false)
                answerWaiters(request.symbol, allocator: allocator)
            case .repair:
                upstreamGapsLeftOpen &+= 1
                for (tick, text) in live.cache.abandonRepair(request.symbol) {
                    batch.append(EdgeUpdate(symbol: tick.symbol, text: text, droppable: tick.type != .status,
                        type: tick.type, symbolSequence: tick.symbolSequence))
                }
            case .snapshot:
                finishSnapshot(request.symbol, ticks: [], streamSequence: 0, answeredByPlant: false,
                    allocator: allocator, batch: &batch)
            }
        }
        // The poller must not see the closed socket: it watches the new one, or nothing.
        if let index = snapshotPollIndex { poller.disable(index) }
        snapshotSocket?.close()
        snapshotSocket = try? Self.snapshotDealer(subscriber.context, endpoint, curve: subscriber.configuration.curve)
        if let index = snapshotPollIndex, let dealer = snapshotSocket { try? poller.replace(index, with: dealer) }
        sendWaitingRequests()
    }

    func run(_ thread: SocketThread) {
        let hub = subscriber.hub
        let configuration = subscriber.configuration
        let logger = subscriber.logger
        let poller = ZMQPoller()
        let wakeupIndex = poller.add(descriptor: thread.wakeup.descriptor)
        guard let socketIndex = try? poller.add(socket), let controlIndex = try? poller.add(control.socket) else {
            return
        }
        if let dealer = snapshotSocket { snapshotPollIndex = try? poller.add(dealer) }
        let zapIndex = zap.flatMap { try? poller.add($0.socket) }
        let topicMessage = ZMQMessage()
        let payloadMessage = ZMQMessage()
        var json: [UInt8] = []
        json.reserveCapacity(512)
        let allocator = ByteBufferAllocator()
        var batch: [EdgeUpdate] = []
        var received: UInt64 = 0
        var malformed: UInt64 = 0
        var rateIn = RateMeter()
        let started = MonotonicClock.nowNanoseconds()
        while !thread.isStopping {
            do {
                try poller.poll(timeoutMilliseconds: asked.isEmpty ? 1000 : 100)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            if poller.isReadable(wakeupIndex) {
                thread.wakeup.drain()
                for command in hub.takeCommands() {
                    switch command {
                    case let .subscribe(symbol): try? socket.subscribe(Topic.allTypes(of: symbol))
                    case let .unsubscribe(symbol):
                        try? socket.unsubscribe(Topic.allTypes(of: symbol))
                        // Not forgotten while plantd's answer is awaited: it must still be matched to its request.
                        if !asked.contains(where: { $0.symbol == symbol })
                            && !waitingToAsk.contains(where: { $0.request.symbol == symbol })
                        {
                            live.cache.forget(symbol)
                        }
                    case let .snapshot(symbol, registry, session):
                        wantSnapshot(symbol, .init(registry: registry, session: session), allocator: allocator)
                    case let .resume(symbol, from, registry, session):
                        wantResume(
                            symbol, from: from, .init(registry: registry, session: session), allocator: allocator)
                    }
                }
            }
            if poller.isReadable(socketIndex) {
                let restartsBefore = live.plantRestarts
                defer {
                    if live.plantRestarts != restartsBefore {
                        logger.warning("plantd restarted (a new session on its heartbeat): asking it what was lost",
                            metadata: ["symbols_watched": "\(hub.watched.count)"])
                    }
                }
                // A bounded batch per cycle, so commands and control requests are never starved.
                for _ in 0..<4096 {
                    guard (try? socket.receive(into: topicMessage, dontWait: true)) == true else { break }
                    guard topicMessage.hasMore, (try? socket.receive(into: payloadMessage)) == true else {
                        malformed += 1
                        continue
                    }
                    received += 1
                    if let update = payloadMessage.withUnsafeBytes({ live.take($0) }) { batch.append(update) }
                    let sentNs = live.lastPlantTransmitNs
                    if sentNs != 0 {
                        // Read per tick: ticks keep arriving while a cycle's batch is read.
                        let receivedNs = WallClock.nowNanoseconds()
                        if receivedNs >= sentNs {
                            _ = plantToEdge.record(min(receivedNs - sentNs, 60_000_000_000))
                        } else {
                            plantToEdgeSkewed += 1
                        }
                        plantToEdgeBuckets.record(from: sentNs, to: receivedNs)
                    }
                }
            }
            if let index = snapshotPollIndex, poller.isReadable(index) {
                readSnapshotAnswers(json: &json, allocator: allocator, batch: &batch)
            }
            expireSnapshots(allocator: allocator, batch: &batch, poller: poller)
            live.cache.sweepIfDue(nowNs: MonotonicClock.nowNanoseconds())
            askRepairs()
            askRefreshes()
            logGaps()
            if !batch.isEmpty {
                hub.dispatch(batch)
                batch.removeAll(keepingCapacity: true)
            }
            if let zap, let zapIndex, poller.isReadable(zapIndex), zap.serveWaiting() > 0,
                let heldBack = curveRefusedLog.admit()
            {
                logger.warning("a client with an unknown CURVE key was refused",
                    metadata: zap.lastRefusal.mapValues { .string($0) }.merging(["not_logged": "\(heldBack)"]) { $1 })
            }
            if poller.isReadable(controlIndex) {
                rateIn.sample(total: received &- live.heartbeats)
                try? control.serveWaiting { body in
                    ControlCodec.respond(to: body) { request in
                        switch request.cmd {
                        case "status":
                            let depths = hub.registries.map { $0.queueDepth.withLock { $0 } }
                            return DaemonStatus(
                                daemon: "edged", name: configuration.name, pid: getpid(),
                                uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
                                messagesIn: received &- live.heartbeats, messagesOut: 0, rateIn: rateIn.perSecond, rateOut: 0,
                                drops: hub.droppedUpdates.load(ordering: .relaxed),
                                clients: hub.connectedClients.load(ordering: .relaxed),
                                counters: [
                                    "symbols_watched": UInt64(hub.watched.count), "malformed": malformed,
                                    "client_messages": hub.clientMessages.load(ordering: .relaxed),
                                    "bad_client_messages": hub.badClientMessages.load(ordering: .relaxed),
                                    "refused_tokens": hub.refusedTokens.load(ordering: .relaxed),
                                    "refused_connections": hub.refusedConnections.load(ordering: .relaxed),
                                    "refused_pending_handshakes":
                                        hub.admission.handshakesRefused.load(ordering: .relaxed),
                                    "refused_per_address": hub.admission.addressRefused.load(ordering: .relaxed),
                                    "refused_origins": hub.admission.originsRefused.load(ordering: .relaxed),
                                    "pending_handshakes": UInt64(hub.admission.pendingHandshakes),
                                    "rate_limited_messages": hub.rateLimitedMessages.load(ordering: .relaxed),
                                    "slow_clients_closed": hub.slowClientsClosed.load(ordering: .relaxed),
                                    "idle_clients_closed": hub.idleClientsClosed.load(ordering: .relaxed),
                                    "flooding_clients_closed": hub.floodingClientsClosed.load(ordering: .relaxed),
                                    "socket_full_writes": hub.socketFullWrites.load(ordering: .relaxed),
                                    "replays_served": hub.replaysServed.load(ordering: .relaxed),
                                    "replays_snapshotted": hub.replaysSnapshotted.load(ordering: .relaxed),
                                    "join_gaps_repaired": hub.joinGapsRepaired.load(ordering: .relaxed),
                                    "unknown_symbols": hub.unknownSymbols.load(ordering: .relaxed),
                                    "upstream_gaps": live.cache.gapsFound,
                                    "upstream_gaps_replayed": upstreamGapsReplayed,
                                    "upstream_gaps_snapshotted": upstreamGapsSnapshotted,
                                    "upstream_gaps_left_open": upstreamGapsLeftOpen,
                                    "upstream_sweeps": live.cache.sweeps,
                                    "upstream_sweep_finds": live.cache.sweepFinds,
                                    "plant_restarts": live.plantRestarts,
                                    "tls_handshakes": hub.tlsFailures.handshakes.load(ordering: .relaxed),
                                    "tls_failures": hub.tlsFailures.count.load(ordering: .relaxed),
                                    // The clients' queues at the last heartbeat: all of them, and the deepest one.
                                    "queued_updates": UInt64(depths.reduce(0) { $0 + $1.messages }),
                                    "queued_bytes": UInt64(depths.reduce(0) { $0 + $1.bytes }),
                                    "deepest_client_queue": UInt64(depths.map(\.deepest).max() ?? 0),
                                    "most_unread_client_bytes": UInt64(depths.map(\.mostUnread).max() ?? 0),
                                ].merging(zap?.counters ?? [:]) { $1 }, latency: [plantToEdgeBuckets, hub.clientLatency.withLock { $0.total }])
                        case "latency":
                            let figures = HopFigures(
                                hop: "plantd -> edged", histogram: plantToEdge, clockSkewed: plantToEdgeSkewed)
                            plantToEdge.reset()
                            plantToEdgeSkewed = 0
                            let toClients = hub.clientLatency.withLock { latency in
                                defer { latency.window.reset() }
                                return HopFigures(hop: "edged -> client", histogram: latency.window, clockSkewed: 0)
                            }
                            return LatencyReply(hops: [figures, toClients])
                        case "subs":
                            return EdgeSubscriptionsReply(symbols: hub.watched)
                        case "reload":
                            // The certificate and key are read again (a renewed certificate). Listeners, limits, the
                            // tokens' secret and files are taken at start; a restart drains clients to another edge
                            // (docs/operations.md).
                            guard let tls = configuration.tls else {
                                return ReloadReply(file: "", error: "edged reads its configuration only at start "
                                    + "(a reload renews only its [tls] certificate): drain and restart it to apply changes")
                            }
                            do throws(TLSError) {
                                try tls.reload()
                                logger.info("TLS certificate reloaded", metadata: ["certificate": "\(tls.certificatePath)"])
                                return ReloadReply(file: tls.certificatePath, applied: ["[tls] certificate", "[tls] key"])
                            } catch {
                                logger.error("TLS certificate not reloaded; the one in use stays",
                                    metadata: ["key": "[tls] \(error.key)", "why": "\(error.description)"])
                                return ReloadReply(file: tls.certificatePath,
                                    error: "[tls] \(error.key): \(error.description); the certificate in use stays")
                            }
                        default:
                            return nil
                        }
                    }
                }
            }
        }
        socket.close()
        snapshotSocket?.close()
        control.socket.close()
        zap?.close()
    }
}

/// The reply to `subs` on edged: each watched symbol and how many clients watch it.
public struct EdgeSubscriptionsReply: Codable, Sendable, Equatable {
    public var symbols: [String: Int]
}
