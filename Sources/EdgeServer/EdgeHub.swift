import Histogram
import Logging
import MarketData
import NIOCore
import Synchronization
import ZeroMQ

/// One update ready for clients: the symbol it belongs to and its JSON text, encoded once and shared by every client
/// that watches the symbol (ByteBuffer slices share storage).
public struct EdgeUpdate: Sendable {
    public var symbol: String
    public var text: ByteBuffer
    /// False for STATUS: a slow client's queue may drop or conflate other updates, never these.
    public var droppable: Bool = true
    /// What the update is, for each client's `mode`.
    public var type: TickType = .trade
    /// The tick's symbol_seq: where a client's snapshot or replay ends and the live stream takes over.
    public var symbolSequence: UInt64 = 0
    /// The whole WebSocket frame of `text` (nil: framed by NIO's encoder for each client).
    var framed: ByteBuffer?

    public init(
        symbol: String, text: ByteBuffer, droppable: Bool = true, type: TickType = .trade, symbolSequence: UInt64 = 0
    ) {
        self.symbol = symbol
        self.text = text
        self.droppable = droppable
        self.type = type
        self.symbolSequence = symbolSequence
    }
}

/// What the upstream thread must change on its SUB socket.
enum UpstreamCommand: Sendable {
    case subscribe(String)
    case unsubscribe(String)
    /// A client of `registry`'s loop subscribed to the symbol and waits for its snapshot.
    case snapshot(String, registry: LoopRegistry, session: ObjectIdentifier)
    /// A client of `registry`'s loop wants the symbol's updates from a symbol_seq on (`fromSeq`, or the repair of a
    /// gap between what it was given and the live stream).
    case resume(String, from: UInt64, registry: LoopRegistry, session: ObjectIdentifier)
}

/// Ties the event loops to the upstream ZeroMQ thread: reference-counts the symbols clients watch (so plantd sends
/// only those), and hands each loop the updates of a poll cycle in one batch.
public final class EdgeHub: Sendable {
    let registries: [LoopRegistry]
    private let registryByLoop: [ObjectIdentifier: LoopRegistry]
    private let watchCounts = Mutex<[String: Int]>([:])
    private let commands = Mutex<[UpstreamCommand]>([])
    let upstreamThread: SocketThread
    /// plantd's snapshot ROUTER is configured: updates a client missed can be replayed from it.
    let canReplay: Bool
    let connectedClients = Atomic<Int>(0)
    /// Set on SIGTERM: no new WebSocket clients, `/healthz` answers 503 "draining".
    let draining = Atomic<Bool>(false)
    let clientMessages = Atomic<UInt64>(0)
    let badClientMessages = Atomic<UInt64>(0)
    /// Tokens refused: malformed, a bad signature, expired (error 402).
    let refusedTokens = Atomic<UInt64>(0)
    /// Connections refused over `[limits] connections` (406), messages refused over the rate (429).
    let refusedConnections = Atomic<UInt64>(0)
    let rateLimitedMessages = Atomic<UInt64>(0)
    /// Clients closed with 4008 for staying over their queue's hard mark.
    let slowClientsClosed = Atomic<UInt64>(0)
    /// Clients closed (1008) for sending nothing, not even a pong, for `idle_timeout`.
    let idleClientsClosed = Atomic<UInt64>(0)
    /// Clients closed (1008) for sending a second's allowance of messages over their rate in a row.
    let floodingClientsClosed = Atomic<UInt64>(0)
    /// Updates dropped or conflated in slow clients' queues.
    let droppedUpdates = Atomic<UInt64>(0)
    /// Updates a client's socket did not take whole when sent straight to it: the rest went through NIO's buffer.
    let socketFullWrites = Atomic<UInt64>(0)
    /// Replays to a client (a `fromSeq` resume or a join gap's repair) answered with exactly the missed updates, and
    /// those answered with a snapshot instead (plantd no longer had them, or more than `resume_max_updates`).
    let replaysServed = Atomic<UInt64>(0)
    let replaysSnapshotted = Atomic<UInt64>(0)
    /// Gaps between a client's snapshot or replay and the live stream, repaired by a replay.
    let joinGapsRepaired = Atomic<UInt64>(0)
    /// Subscriptions told 408: plantd has nothing of the symbol (yet).
    let unknownSymbols = Atomic<UInt64>(0)
    /// edged -> client: half of each WebSocket ping's round trip (the client's pong), per `latency` window and since
    /// the start. Pongs come every heartbeat per client at most, so a lock costs nothing that matters.
    let clientLatency = Mutex<(window: Histogram<UInt64>, total: LatencyBuckets)>(
        (Histogram(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three),
            LatencyBuckets(hop: "edged -> client")))

    /// A client answered a ping sent `roundTripNs` ago.
    func recordClientRoundTrip(_ roundTripNs: UInt64) {
        let oneWay = roundTripNs / 2
        clientLatency.withLock {
            _ = $0.window.record(min(oneWay, 60_000_000_000))
            $0.total.record(oneWay)
        }
    }

    /// TLS handshakes done and connections closed for a TLS failure (wss).
    let tlsFailures: TLSFailures
    /// The checks before the upgrade (pending handshakes, connections per address, Origin) and their refusals.
    let admission: ConnectionAdmission

    init(
        eventLoops: [any EventLoop], upstreamThread: SocketThread, canReplay: Bool, tlsFailures: TLSFailures,
        admission: ConnectionAdmission
    ) {
        registries = eventLoops.map { LoopRegistry(eventLoop: $0) }
        var byLoop: [ObjectIdentifier: LoopRegistry] = [:]
        for registry in registries { byLoop[ObjectIdentifier(registry.eventLoop)] = registry }
        registryByLoop = byLoop
        self.upstreamThread = upstreamThread
        self.canReplay = canReplay
        self.tlsFailures = tlsFailures
        self.admission = admission
    }

    func registry(for eventLoop: any EventLoop) -> LoopRegistry {
        registryByLoop[ObjectIdentifier(eventLoop)]!
    }

    /// A client started watching `symbol`; the first one subscribes upstream.
    func retain(_ symbol: String) {
        let first = watchCounts.withLock { counts -> Bool in
            counts[symbol, default: 0] += 1
            return counts[symbol] == 1
        }
        if first { send(.subscribe(symbol)) }
    }

    /// A client stopped watching `symbol`; the last one unsubscribes upstream.
    func release(_ symbol: String) {
        let last = watchCounts.withLock { counts -> Bool in
            guard let count = counts[symbol] else { return false }
            counts[symbol] = count > 1 ? count - 1 : nil
            return count == 1
        }
        if last { send(.unsubscribe(symbol)) }
    }

    /// A session subscribed to `symbol` and waits for its last values (`snapshot` frames) before any update.
    func wantSnapshot(_ symbol: String, registry: LoopRegistry, session: ObjectIdentifier) {
        send(.snapshot(symbol, registry: registry, session: session))
    }

    /// A session wants `symbol`'s updates from symbol_seq `from` on, replayed by plantd, before any live one.
    func wantResume(_ symbol: String, from: UInt64, registry: LoopRegistry, session: ObjectIdentifier) {
        send(.resume(symbol, from: from, registry: registry, session: session))
    }

    /// Hands a session its snapshot of `symbol` on its loop (its frames flagged `"snapshot":true`).
    func dispatchSnapshot(
        _ frames: [EdgeUpdate], of symbol: String, to registry: LoopRegistry, session: ObjectIdentifier
    ) {
        registry.post(.snapshot(frames, symbol: symbol, session: session))
    }

    /// Hands a session the updates of `symbol` it asked from `from` on (a complete replay) on its loop.
    func dispatchResume(
        _ updates: [EdgeUpdate], of symbol: String, from: UInt64, to registry: LoopRegistry, session: ObjectIdentifier
    ) {
        registry.post(.resume(updates, symbol: symbol, from: from, session: session))
    }

    /// Hands every client watching `symbol` its values afresh, as a snapshot: edged's stream lost updates of it that
    /// plantd could not replay.
    func dispatchRefresh(_ frames: [EdgeUpdate], of symbol: String) {
        for registry in registries { registry.post(.refresh(frames, symbol: symbol)) }
    }

    /// Tells a session plantd has nothing of `symbol` (error 408).
    func dispatchUnknown(_ symbol: String, to registry: LoopRegistry, session: ObjectIdentifier) {
        registry.post(.unknown(symbol: symbol, session: session))
    }

    func isWatched(_ symbol: String) -> Bool { watchCounts.withLock { $0[symbol] != nil } }

    /// Symbols watched now and by how many clients.
    var watched: [String: Int] { watchCounts.withLock { $0 } }

    private func send(_ command: UpstreamCommand) {
        commands.withLock { $0.append(command) }
        upstreamThread.wakeup.signal()
    }

    func takeCommands() -> [UpstreamCommand] {
        commands.withLock { pending in
            defer { pending.removeAll() }
            return pending
        }
    }

    /// Hands one poll cycle's updates to every loop: one `execute` per loop per batch (DESIGN section 11).
    func dispatch(_ batch: [EdgeUpdate]) {
        guard !batch.isEmpty else { return }
        for registry in registries {
            registry.post(.updates(batch))
        }
    }
}

/// What the upstream thread hands an event loop, in the order it happened there.
enum LoopWork {
    case updates([EdgeUpdate])
    case snapshot([EdgeUpdate], symbol: String, session: ObjectIdentifier)
    case resume([EdgeUpdate], symbol: String, from: UInt64, session: ObjectIdentifier)
    case unknown(symbol: String, session: ObjectIdentifier)
    case refresh([EdgeUpdate], symbol: String)
}

/// The sessions of one loop that watch a symbol, unretained so that the walk of every update does not count
/// references: `LoopRegistry.sessions` holds each of them from `add` to `remove`, and a session leaves every list
/// (`unwatch`, in `handlerRemoved`) before `remove`. NIO removes a closed channel's handlers in a later turn of the
/// loop, never inside a write or flush, so no session goes away during a walk. Each session knows its slot
/// (`watchSlots`) so it leaves in O(1).
final class WatcherList {
    var members: ContiguousArray<Unmanaged<WebSocketSession>> = []
}

/// The clients of one event loop and the symbols they watch.
///
/// `@unchecked Sendable`: every method but `post` runs on `eventLoop` (asserted), so the mutable state is confined
/// to that loop's thread; `post` touches only `inbox`, a Mutex.
final class LoopRegistry: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Work posted by the upstream thread and not taken yet, and whether a task to take it is scheduled: while the
    /// loop is busy, batches pile up here and go out together, each client's share in one write.
    private let inbox = Mutex<(work: [LoopWork], scheduled: Bool)>(([], false))
    /// What `takeInbox` took, swapped with the inbox's array (so neither is ever reallocated), and the updates of
    /// consecutive batches joined: both on the loop only, emptied keeping their capacity.
    private var taken: [LoopWork] = []
    private var joined: [EdgeUpdate] = []
    /// The task `post` schedules, made once: a closure per post would be an allocation per batch. Set at the end of
    /// `init`, before any other thread can see the registry, and never changed.
    private var takeInboxTask: (@Sendable () -> Void)!
    private var watchers: [String: WatcherList] = [:]
    private var sessions: [ObjectIdentifier: WebSocketSession] = [:]
    /// The sessions written to in this turn, flushed at its end. Unretained: each is held by its channel's pipeline,
    /// which lets go of it only in a later task of the loop, after the turn.
    private var touched: [Unmanaged<WebSocketSession>] = []
    /// Sessions with an update waiting for its maxRate turn.
    private var rateHeld: [ObjectIdentifier: WebSocketSession] = [:]

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        // Unowned: the hub keeps its registries for as long as its event loops run.
        takeInboxTask = { [unowned self] in self.takeInbox() }
    }

    func add(_ session: WebSocketSession) {
        eventLoop.preconditionInEventLoop()
        sessions[ObjectIdentifier(session)] = session
    }

    func remove(_ session: WebSocketSession) {
        eventLoop.preconditionInEventLoop()
        sessions[ObjectIdentifier(session)] = nil
        rateHeld[ObjectIdentifier(session)] = nil
    }

    func watch(_ symbol: String, by session: WebSocketSession) {
        eventLoop.preconditionInEventLoop()
        precondition(sessions[ObjectIdentifier(session)] != nil, "a session watches only between add and remove")
        let list: WatcherList
        if let existing = watchers[symbol] {
            list = existing
        } else {
            list = WatcherList()
            watchers[symbol] = list
        }
        guard session.watchSlots[symbol] == nil else { return }
        session.watchSlots[symbol] = list.members.count
        list.members.append(.passUnretained(session))
    }

    func unwatch(_ symbol: String, by session: WebSocketSession) {
        eventLoop.preconditionInEventLoop()
        guard let list = watchers[symbol], let slot = session.watchSlots.removeValue(forKey: symbol) else { return }
        // The last watcher takes the leaving one's slot.
        let last = list.members.removeLast()
        if slot < list.members.count {
            list.members[slot] = last
            last._withUnsafeGuaranteedRef { $0.watchSlots[symbol] = slot }
        }
        if list.members.isEmpty { watchers[symbol] = nil }
    }

    /// Writes each update to its watchers and flushes every touched client once. A watcher still waiting for the
    /// symbol's snapshot skips it: the snapshot, taken after this update, holds it.
    func deliver(_ batch: [EdgeUpdate]) {
        eventLoop.preconditionInEventLoop()
        for update in batch {
            guard let list = watchers[update.symbol] else { continue }
            for member in list.members {
                member._withUnsafeGuaranteedRef { session in
                    if session.screensUpdates && session.screenOut(update) { return }
                    if session.hasNarrowModes && !session.wants(update.type, of: update.symbol) { return }
                    if session.write(
                        update.text, framed: update.framed, symbol: update.symbol, droppable: update.droppable)
                    {
                        touched.append(.passUnretained(session))
                    }
                    if session.hasRateHeld { rateHeld[ObjectIdentifier(session)] = session }
                }
            }
        }
        for session in touched { session._withUnsafeGuaranteedRef { $0.flushIfPending() } }
        touched.removeAll(keepingCapacity: true)
    }

    /// Sends the updates whose maxRate turn has come (a timer of the loop, every few milliseconds).
    func releaseRateHeld(nowNs: UInt64) {
        guard !rateHeld.isEmpty else { return }
        for (id, session) in rateHeld where !session.releaseRateHeld(nowNs: nowNs) { rateHeld[id] = nil }
    }

    /// Hands work to the loop (any thread): one task takes everything posted until it runs, in order.
    func post(_ work: LoopWork) {
        let schedule = inbox.withLock { inbox -> Bool in
            inbox.work.append(work)
            guard !inbox.scheduled else { return false }
            inbox.scheduled = true
            return true
        }
        if schedule { eventLoop.execute(takeInboxTask) }
    }

    /// Runs the posted work in order; updates of consecutive batches are delivered as one (one flush per client).
    private func takeInbox() {
        inbox.withLock { inbox in
            swap(&inbox.work, &taken)
            inbox.scheduled = false
        }
        defer { taken.removeAll(keepingCapacity: true) }
        if taken.count == 1, case let .updates(batch) = taken[0] { return deliver(batch) }
        for item in taken {
            if case let .updates(batch) = item {
                joined.append(contentsOf: batch)
                continue
            }
            deliverJoined()
            switch item {
            case .updates: break
            case let .snapshot(frames, symbol, session): deliverSnapshot(frames, of: symbol, to: session)
            case let .resume(updates, symbol, from, session):
                deliverResume(updates, of: symbol, from: from, to: session)
            case let .unknown(symbol, session): deliverUnknown(symbol, to: session)
            case let .refresh(frames, symbol): deliverRefresh(frames, of: symbol)
            }
        }
        deliverJoined()
    }

    private func deliverJoined() {
        guard !joined.isEmpty else { return }
        deliver(joined)
        joined.removeAll(keepingCapacity: true)
    }

    func deliverSnapshot(_ frames: [EdgeUpdate], of symbol: String, to session: ObjectIdentifier) {
        eventLoop.preconditionInEventLoop()
        sessions[session]?.receiveSnapshot(frames, of: symbol)
    }

    func deliverResume(_ updates: [EdgeUpdate], of symbol: String, from: UInt64, to session: ObjectIdentifier) {
        eventLoop.preconditionInEventLoop()
        sessions[session]?.receiveResume(updates, of: symbol, from: from)
    }

    func deliverRefresh(_ frames: [EdgeUpdate], of symbol: String) {
        eventLoop.preconditionInEventLoop()
        guard let list = watchers[symbol] else { return }
        for member in Array(list.members) {
            member._withUnsafeGuaranteedRef { $0.receiveRefresh(frames, of: symbol) }
        }
    }

    func deliverUnknown(_ symbol: String, to session: ObjectIdentifier) {
        eventLoop.preconditionInEventLoop()
        sessions[session]?.warnUnknown(symbol)
    }

    /// Tells every client of this loop the server is going away (close 1001); each closes when its client answers.
    func drain() {
        eventLoop.preconditionInEventLoop()
        for session in Array(sessions.values) { session.startClosing(code: .goingAway) }
    }

    /// Sends every client of this loop its heartbeat, and notes how deep its clients' queues stand (`status`).
    func heartbeat(now: UInt64) {
        var depth = QueueDepth()
        for session in Array(sessions.values) {
            session.sendHeartbeat(nowMs: now / 1_000_000)
            session.closeIfTooSlow()
            session.checkIdle(nowNs: MonotonicClock.nowNanoseconds())
            let (messages, bytes) = session.queueDepth
            depth.messages += messages
            depth.bytes += bytes
            depth.deepest = max(depth.deepest, messages)
            depth.mostUnread = max(depth.mostUnread, session.unreadBytes)
        }
        queueDepth.withLock { $0 = depth }
    }

    /// What this loop's clients had queued at the last heartbeat.
    struct QueueDepth {
        var messages = 0
        var bytes = 0
        var deepest = 0
        /// The most one client had not read: its queue and what NIO held for it (answers, pongs, snapshots).
        var mostUnread = 0
    }

    let queueDepth = Mutex(QueueDepth())

    var sessionCount: Int { sessions.count }
}
