import Foundation
import MarketData
import NIOCore
import NIOWebSocket
import Synchronization

/// A symbol whose missed updates plantd is replaying to the client: the live updates that come meanwhile wait here
/// (at most `SessionLimits.resumeMaxUpdates`) and go on after the replay where it ends.
struct PendingResume {
    var buffered: [EdgeUpdate] = []
    /// More came than the buffer holds: the replay will not join, so the client gets a snapshot instead.
    var overflowed = false
}

/// Where a client's snapshot or replay of a symbol ended: the first live update after it must be the next
/// symbol_seq. Older ones are already in what it got (dropped); a newer one means the live subscription took effect
/// upstream after plantd answered, and the missing ones are replayed.
struct StreamJoin {
    var through: UInt64
    /// After this the check is let go: only the first moments after an answer can bring duplicates.
    var untilNs: UInt64
}
/// A symbol a client asked at most `maxRate` updates per second of: the latest update waits for its turn.
struct RateHeld {
    /// The rates a client may ask for. The lower bound keeps the interval a whole number of nanoseconds a UInt64
    /// holds (a rate of 1e-300 once made it infinite, and converting that trapped: every client of the edge was
    /// gone); one update every 1000 s is slower than any screen wants.
    static let allowedRates: ClosedRange<Double> = 0.001...1_000
    var intervalNs: UInt64
    var lastSentNs: UInt64 = 0
    /// The newest update not sent yet (each later one replaces it: conflation).
    var waiting: ByteBuffer?

    /// `updatesPerSecond` must lie in `allowedRates` (checked where the client's message is read).
    init(updatesPerSecond: Double) {
        intervalNs = UInt64(1e9 / updatesPerSecond)
    }
}

/// What a client wants of a symbol (`"mode"` of a subscribe): `ltp` the last trade (TRADE, and STATUS so it knows
/// whether to trust it), `quote` that and the best bid and offer (QUOTE), `full` everything (BOOK and BAR too, the
/// default).
enum SubscriptionMode: String {
    case ltp, quote, full

    func wants(_ type: TickType) -> Bool {
        switch self {
        case .full: true
        case .quote: type == .trade || type == .quote || type == .status
        case .ltp: type == .trade || type == .status
        }
    }
}

/// Error codes sent as `{"type":"error","code":N,"message":"..."}`.
enum EdgeErrorCode: Int {
    case badMessage = 400
    case notAuthenticated = 401
    case badToken = 402
    case notEntitled = 403
    case authTimeout = 404
    case symbolLimit = 405
    case connectionLimit = 406
    case slowClient = 407
    case unknownSymbol = 408
    case tooManyRequests = 429
}

extension WebSocketErrorCode {
    /// DESIGN section 8: a client that stayed over its queue's hard mark for `slow_grace`.
    static let slowClient = WebSocketErrorCode(codeNumber: 4008)
}

/// The limits a session enforces (`[limits]`; the frame size is `WebSocketProtocolLayer`'s).
struct SessionLimits {
    var maxSymbols = 500
    var maxConnections = 20_000
    var maxMessagesPerSecond = 50
    var queue = ClientQueue.Limits()
    /// Over the queue's hard mark this long: error 407 and close 4008.
    var slowGraceNs: UInt64 = 5_000_000_000
    /// After 407, how long a slow client has to read its last frames before its connection is closed anyway.
    var slowLinger: TimeAmount = .seconds(2)
    /// A client heard from (any frame, a pong included) less recently than this is pinged at half of it and closed
    /// (1008) at all of it: a peer gone without a word does not hold its queue and descriptor for ever. 0: never.
    var idleTimeoutNs: UInt64 = 60_000_000_000
    /// A resume replays at most this many missed updates of a symbol (more: a snapshot instead); as many live ones
    /// wait for the replay.
    var resumeMaxUpdates = 1_000
}

/// One WebSocket client on its event loop: reads its requests, keeps its subscriptions, writes its updates. Below
/// it, `WebSocketProtocolLayer` has made frames into whole, valid messages and answered pings and closes.
final class WebSocketSession: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketMessage
    typealias OutboundOut = WebSocketFrame

    private let hub: EdgeHub
    private let registry: LoopRegistry
    private let limits: SessionLimits
    private var maxSymbols: Int { limits.maxSymbols }
    /// A token bucket for the client's messages: `maxMessagesPerSecond` a second, as many at once.
    private var messageAllowance: Double
    /// In `channelRead`: answers written now are flushed at `channelReadComplete`.
    private var readingMessages = false
    /// Messages refused for the rate since the last one admitted.
    private var refusedInARow = 0
    private var answersUnflushed = false
    private var allowanceAtNs: UInt64 = MonotonicClock.nowNanoseconds()
    private var context: ChannelHandlerContext?
    private var symbols: Set<String> = []
    /// Where this session is in each watched symbol's `WatcherList` (kept by the registry).
    var watchSlots: [String: Int] = [:]
    /// Symbols subscribed with a mode other than full (the others want everything).
    private var narrowModes: [String: SubscriptionMode] = [:]
    var hasNarrowModes: Bool { !narrowModes.isEmpty }
    func wants(_ type: TickType, of symbol: String) -> Bool { narrowModes[symbol]?.wants(type) ?? true }
    /// When the client last sent anything (a frame of any kind).
    private var lastHeardNs = MonotonicClock.nowNanoseconds()
    /// When the latency probe in flight was sent (0: none).
    private var probeSentNs: UInt64 = 0
    /// Symbols with a `maxRate`, and whether any of them has an update waiting for its turn.
    private var rates: [String: RateHeld] = [:]
    private(set) var hasRateHeld = false
    /// Symbols subscribed whose snapshot or replay has not come yet: their updates are skipped until it does
    /// (a snapshot holds them), or wait in `resuming` (a replay ends before them).
    private var awaiting: Set<String> = []
    private var resuming: [String: PendingResume] = [:]
    /// Symbols whose snapshot or replay came and whose live stream has not been seen to join it yet.
    private var joins: [String: StreamJoin] = [:]
    /// Symbols whose replay or snapshot was written, with how many more of their live updates may wait whole behind
    /// it. A replay of everything a client missed (or the snapshots of many symbols) is more than its socket takes at
    /// once, so the live updates that come while the client reads it wait in its queue; a client that keeps up must
    /// not have them conflated there (the gap its resume was for). They are held as the updates that came while the
    /// replay was awaited were, up to `resumeMaxUpdates` a symbol, for `slow_grace` after the last replay or snapshot
    /// written (a client that has not caught up by then is a slow one); the queue's marks then apply again. Only
    /// the socket's side knows when the client has read the replay (megabytes may wait in the kernel's buffers after
    /// the queue is empty), hence a time.
    private var catchingUp: [String: Int] = [:]
    private var catchUpEndsNs: UInt64 = 0
    /// What a client may have held whole at most, in `queue_hard_bytes`: a client that stops reading as it resumes
    /// holds that much (4 MB by default) until it is closed, not `resume_max_updates` for every symbol it watches.
    static let heldBytesPerHardMark = 4
    /// Whether `screenOut` must see this session's updates (false almost always: the fast path skips it).
    var screensUpdates: Bool { !awaiting.isEmpty || !joins.isEmpty }
    private var pendingFlush = false
    /// The channel's writability as NIO last told it (`channelWritabilityChanged`): asked once per change instead of
    /// once per update (NIO's getter was a twentieth of the loop's time in a burst).
    private var writable = true
    /// This turn's updates for the client as whole frames, written at the turn's end (`flushIfPending`): the first
    /// update's shared frame alone, or the session's own buffer once a second one comes (`batchIsOwn`).
    private var batch: ByteBuffer?
    private var batchIsOwn = false
    /// The own buffer of an earlier turn, kept when small: NIO lets go of it once it is written, and the next turn
    /// of several updates fills it again without allocating.
    private var spareBatch: ByteBuffer?
    /// Where whole frames go to the socket without NIO's frame encoder (nil: through it, frame by frame).
    private let rawWriter: RawBytesWriter?
    private var closing = false
    /// What waits while the client's socket takes no more: bounded, conflating, dropping the oldest.
    private var queue: ClientQueue
    /// When the queue reached its hard mark and has stayed there (nil when under it).
    private var overHardMarkSinceNs: UInt64?
    var dropped: UInt64 { queue.dropped }
    /// Token authentication, nil when it is off; then `entitlement` says what the client's token allows.
    private let auth: AuthConfiguration?
    private var urlToken: String?
    private var entitlement: EdgeToken?
    private var authDeadline: Scheduled<Void>?
    /// Fires when the client's token expires (`armExpiry`).
    private var expiryTimer: Scheduled<Void>?

    init(
        hub: EdgeHub, registry: LoopRegistry, limits: SessionLimits, auth: AuthConfiguration? = nil,
        urlToken: String? = nil, rawWriter: RawBytesWriter? = nil
    ) {
        self.rawWriter = rawWriter
        self.hub = hub
        self.registry = registry
        self.limits = limits
        queue = ClientQueue(limits: limits.queue)
        messageAllowance = Double(limits.maxMessagesPerSecond)
        self.auth = auth
        self.urlToken = urlToken
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        registry.add(self)
        let connected = hub.connectedClients.wrappingAdd(1, ordering: .relaxed).newValue
        if connected > limits.maxConnections {
            hub.refusedConnections.wrappingAdd(1, ordering: .relaxed)
            sendError(.connectionLimit, "this edge serves at most \(limits.maxConnections) connections; try another")
            return close(code: .policyViolation)
        }
        guard let auth else { return }
        if let token = urlToken {
            urlToken = nil
            authenticate(token)
        } else {
            // The token must come in the first messages, within the timeout.
            let timeout = TimeAmount.nanoseconds(Int64(auth.timeout.nanoseconds))
            authDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
                guard let self, self.entitlement == nil else { return }
                self.sendError(.authTimeout, "no valid token within \(auth.timeout)")
                self.close(code: .policyViolation)
            }
        }
    }

    /// Takes a token: a valid one entitles the client (a later one replaces it, to renew before expiry); a bad one
    /// gets 402 and close 1008.
    private func authenticate(_ token: String) {
        guard let auth else { return }
        switch auth.signer.verify(token, nowSeconds: WallClock.nowNanoseconds() / 1_000_000_000,
            skewSeconds: auth.clockSkewSeconds, requirements: auth.requirements)
        {
        case let .success(granted):
            entitlement = granted
            authDeadline?.cancel()
            authDeadline = nil
            armExpiry(auth)
            sendText(#"{"type":"authenticated","subject":"\#(EdgeJSON.escaped(granted.subject))","expires":\#(granted.expiresAt)}"#)
        case let .failure(problem):
            hub.refusedTokens.wrappingAdd(1, ordering: .relaxed)
            sendError(.badToken, problem.description)
            close(code: .policyViolation)
        }
    }

    /// Ends the session when its token expires, whether or not the client speaks then (a client that never sends
    /// another message must not keep its data past its token). Armed at most an hour ahead and again when it fires,
    /// so that a far expiry is never a duration that overflows.
    private func armExpiry(_ auth: AuthConfiguration) {
        expiryTimer?.cancel()
        guard let context, let entitlement else { return }
        let nowSeconds = WallClock.nowNanoseconds() / 1_000_000_000
        let endsAt = entitlement.expiresAt.saturatingAdd(auth.clockSkewSeconds)
        let wait = endsAt > nowSeconds ? min(endsAt - nowSeconds, 3_600) : 0
        expiryTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(Int64(wait) + 1)) { [weak self] in
            guard let self, self.entitlement != nil, !self.endIfTokenExpired(auth) else { return }
            self.armExpiry(auth)
        }
    }

    /// Tells the client its token expired (402) and closes (1008) when it has, beyond the clock skew; true then.
    private func endIfTokenExpired(_ auth: AuthConfiguration) -> Bool {
        guard let entitlement,
            WallClock.nowNanoseconds() / 1_000_000_000 > entitlement.expiresAt.saturatingAdd(auth.clockSkewSeconds)
        else { return false }
        hub.refusedTokens.wrappingAdd(1, ordering: .relaxed)
        sendError(.badToken, TokenProblem.expired(atSeconds: entitlement.expiresAt).description)
        close(code: .policyViolation)
        return true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        for symbol in symbols {
            registry.unwatch(symbol, by: self)
            hub.release(symbol)
        }
        symbols.removeAll()
        registry.remove(self)
        hub.connectedClients.wrappingSubtract(1, ordering: .relaxed)
        authDeadline?.cancel()
        authDeadline = nil
        expiryTimer?.cancel()
        expiryTimer = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readingMessages = true
        defer { readingMessages = false }
        lastHeardNs = MonotonicClock.nowNanoseconds()
        switch unwrapInboundIn(data) {
        case let .text(message):
            handle(message)
        case .binary:
            hub.clientMessages.wrappingAdd(1, ordering: .relaxed)
            guard admitOrRefuse() else { return }
            hub.badClientMessages.wrappingAdd(1, ordering: .relaxed)
            sendError(.badMessage, "binary frames are not part of the protocol; send JSON text")
        case .heard:
            break
        case let .pong(payload):
            // The answer to a latency probe carries the probe's send time (monotonic ns, 8 bytes).
            if let sentNs = payload.getInteger(at: payload.readerIndex, as: UInt64.self), payload.readableBytes == 8,
                sentNs == probeSentNs
            {
                hub.recordClientRoundTrip(lastHeardNs &- sentNs)
                probeSentNs = 0
            }
        }
    }

    /// The answers to what one read from the socket carried go out in one flush: a client sending many messages
    /// at once (a flood of bad ones, each answered 400 or 429) costs edged one write, not one per answer.
    func channelReadComplete(context: ChannelHandlerContext) {
        if answersUnflushed {
            answersUnflushed = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    private func handle(_ text: ByteBuffer) {
        hub.clientMessages.wrappingAdd(1, ordering: .relaxed)
        guard admitOrRefuse() else { return }
        let message: ClientMessage
        do {
            message = try ClientMessage.decode(text.readableBytesView)
        } catch {
            hub.badClientMessages.wrappingAdd(1, ordering: .relaxed)
            return sendError(.badMessage, error.message)
        }
        if message.action == "auth" {
            guard auth != nil else { return sendText(#"{"type":"authenticated","subject":"","expires":0}"#) }
            guard let token = message.token, !token.isEmpty else {
                hub.badClientMessages.wrappingAdd(1, ordering: .relaxed)
                return sendError(.badMessage, "auth needs \"token\"")
            }
            return authenticate(token)
        }
        if let auth {
            guard entitlement != nil else {
                return sendError(.notAuthenticated, "authenticate first: {\"action\":\"auth\",\"token\":\"...\"}")
            }
            if endIfTokenExpired(auth) { return }
        }
        switch message.action {
        case "subscribe", "unsubscribe":
            let request: SubscriptionRequest
            do {
                request = try message.subscription()
            } catch {
                hub.badClientMessages.wrappingAdd(1, ordering: .relaxed)
                return sendError(.badMessage, error.message)
            }
            let requested = request.symbols
            if message.action == "subscribe" {
                let mode = request.mode
                let resumeFrom = request.resumeFrom
                if let entitlement, let refused = requested.first(where: { !entitlement.allows($0) }) {
                    return sendError(.notEntitled, "\"\(refused)\": not among the symbols your token allows")
                }
                let added = requested.filter { !symbols.contains($0) }
                guard symbols.count + Set(added).count <= maxSymbols else {
                    return sendError(.symbolLimit, "at most \(maxSymbols) symbols per connection")
                }
                sendControl(type: "subscribed", symbols: requested)
                // A symbol subscribed again takes the new mode.
                for symbol in Set(requested) {
                    narrowModes[symbol] = mode == .full ? nil : mode
                    rates[symbol] = request.maxRate.map { RateHeld(updatesPerSecond: $0) }
                }
                for symbol in Set(added) {
                    symbols.insert(symbol)
                    awaiting.insert(symbol)
                    registry.watch(symbol, by: self)
                    hub.retain(symbol)
                    if let from = resumeFrom[symbol], hub.canReplay {
                        resuming[symbol] = PendingResume()
                        hub.wantResume(symbol, from: from, registry: registry, session: ObjectIdentifier(self))
                    } else {
                        hub.wantSnapshot(symbol, registry: registry, session: ObjectIdentifier(self))
                    }
                }
            } else {
                for symbol in Set(requested) where symbols.remove(symbol) != nil {
                    awaiting.remove(symbol)
                    resuming[symbol] = nil
                    joins[symbol] = nil
                    catchingUp[symbol] = nil
                    narrowModes[symbol] = nil
                    rates[symbol] = nil
                    registry.unwatch(symbol, by: self)
                    hub.release(symbol)
                }
                sendControl(type: "unsubscribed", symbols: requested)
            }
        case "ping":
            sendText(#"{"type":"pong","ts":\#(WallClock.nowNanoseconds() / 1_000_000)}"#)
        default:
            hub.badClientMessages.wrappingAdd(1, ordering: .relaxed)
            sendError(.badMessage, "unknown action \"\(message.action)\"")
        }
    }

    /// Takes one message from the client's allowance, refilled at `maxMessagesPerSecond`; false when it is spent.
    /// Whether a message (text or binary) is within the client's rate; if not, it gets 429, and a client that has
    /// sent a whole second's allowance more in a row without one admitted is flooding: it is closed (1008) instead
    /// of being answered message by message (each answer costs edged more than the message cost the client).
    private func admitOrRefuse() -> Bool {
        if admitMessage() {
            refusedInARow = 0
            return true
        }
        hub.rateLimitedMessages.wrappingAdd(1, ordering: .relaxed)
        refusedInARow += 1
        guard refusedInARow < limits.maxMessagesPerSecond else {
            hub.floodingClientsClosed.wrappingAdd(1, ordering: .relaxed)
            sendError(.tooManyRequests, "\(refusedInARow) messages over the rate in a row; closing")
            close(code: .policyViolation)
            return false
        }
        sendError(.tooManyRequests, "at most \(limits.maxMessagesPerSecond) messages per second; this one was ignored")
        return false
    }

    private func admitMessage() -> Bool {
        let now = MonotonicClock.nowNanoseconds()
        let rate = Double(limits.maxMessagesPerSecond)
        messageAllowance = min(rate, messageAllowance + Double(now &- allowanceAtNs) / 1e9 * rate)
        allowanceAtNs = now
        guard messageAllowance >= 1 else { return false }
        messageAllowance -= 1
        return true
    }

    // MARK: Writing

    /// A subscribed symbol's last values, each flagged `"snapshot":true`; its updates flow from now on.
    func receiveSnapshot(_ frames: [EdgeUpdate], of symbol: String) {
        guard awaiting.remove(symbol) != nil, !closing else { return }
        resuming[symbol] = nil
        writeSnapshot(frames, of: symbol)
    }

    /// `symbol`'s values taken afresh (edged's stream lost updates plantd could not replay), flagged `"snapshot":true`
    /// as any snapshot: the client starts the symbol over from them. One still waiting for its own snapshot or
    /// replay of the symbol gets that instead.
    func receiveRefresh(_ frames: [EdgeUpdate], of symbol: String) {
        guard !awaiting.contains(symbol), !closing else { return }
        // An update waiting for its maxRate turn is older than the refresh.
        rates[symbol]?.waiting = nil
        writeSnapshot(frames, of: symbol)
    }

    /// Writes the snapshot frames of the types the client wants and flushes; the live updates must follow on from
    /// the newest of them.
    private func writeSnapshot(_ frames: [EdgeUpdate], of symbol: String) {
        guard let context else { return }
        var through: UInt64 = 0
        for frame in frames {
            through = max(through, frame.symbolSequence)
            guard wants(frame.type, of: symbol) else { continue }
            writeFrame(WebSocketFrame(fin: true, opcode: .text, data: frame.text))
        }
        context.flush()
        joins[symbol] = nil
        expectJoin(symbol, through: through)
        holdWholeBehind(symbol)
    }

    /// What plantd replayed of `symbol` from `from` on (complete: every update the client missed), then the live
    /// updates that waited and are newer; the live stream flows from there.
    func receiveResume(_ updates: [EdgeUpdate], of symbol: String, from: UInt64) {
        guard awaiting.contains(symbol), let pending = resuming.removeValue(forKey: symbol), let context, !closing
        else { return }
        // So much went by meanwhile that the replay no longer joins the live updates, or the replay would not fit
        // in the room edged keeps for the client beside what it has not read yet: a snapshot instead.
        if pending.overflowed
            || bytesInNIO + queue.bytes + updates.reduce(0, { $0 + $1.text.readableBytes }) > roomBytes
        {
            hub.replaysSnapshotted.wrappingAdd(1, ordering: .relaxed)
            return hub.wantSnapshot(symbol, registry: registry, session: ObjectIdentifier(self))
        }
        var through = from &- 1
        for (index, update) in [updates, pending.buffered].joined().enumerated() where update.symbolSequence > through {
            if index >= updates.count && update.symbolSequence > through &+ 1 {
                // The live updates that waited do not join the replay (the live subscription took effect upstream
                // after plantd answered): the missing ones are asked for, and these wait again.
                context.flush()
                hub.joinGapsRepaired.wrappingAdd(1, ordering: .relaxed)
                resuming[symbol] = PendingResume(buffered: Array(pending.buffered[(index - updates.count)...]))
                return hub.wantResume(symbol, from: through &+ 1, registry: registry, session: ObjectIdentifier(self))
            }
            through = update.symbolSequence
            guard wants(update.type, of: symbol) else { continue }
            writeFrame(WebSocketFrame(fin: true, opcode: .text, data: update.text))
        }
        awaiting.remove(symbol)
        context.flush()
        expectJoin(symbol, through: through)
        holdWholeBehind(symbol)
    }

    /// The symbol's snapshot or replay was just written: for `slow_grace`, while the client reads it, the symbol's
    /// live updates wait whole behind it (`catchingUp`).
    private func holdWholeBehind(_ symbol: String) {
        catchingUp[symbol] = limits.resumeMaxUpdates
        catchUpEndsNs = MonotonicClock.nowNanoseconds() &+ limits.slowGraceNs
    }

    /// plantd has nothing of `symbol`: error 408. The subscription stays (before the open, after a restart without a
    /// journal, or for a listing new today, nothing may have traded yet): its updates come if it starts trading, and
    /// a client that mistyped it unsubscribes.
    func warnUnknown(_ symbol: String) {
        guard awaiting.remove(symbol) != nil else { return }
        hub.unknownSymbols.wrappingAdd(1, ordering: .relaxed)
        resuming[symbol] = nil
        sendError(.unknownSymbol,
            "\"\(symbol)\": unknown symbol, plantd has published nothing of it; "
                + "still subscribed, its updates come if it trades")
    }

    private func expectJoin(_ symbol: String, through: UInt64) {
        guard through > 0 else { return }
        joins[symbol] = StreamJoin(through: through, untilNs: MonotonicClock.nowNanoseconds() &+ 5_000_000_000)
    }

    /// True when an update is not for the client now: its symbol's snapshot or replay is awaited (a replay's live
    /// updates wait), or it is older than where the client's snapshot or replay ended. A live update that leaves a
    /// gap after that end starts a replay of the missing ones.
    func screenOut(_ update: EdgeUpdate) -> Bool {
        let symbol = update.symbol
        if awaiting.contains(symbol) {
            guard resuming[symbol] != nil else { return true }
            if resuming[symbol]!.buffered.count < limits.resumeMaxUpdates {
                resuming[symbol]!.buffered.append(update)
            } else {
                resuming[symbol]!.overflowed = true
                resuming[symbol]!.buffered.removeAll()
            }
            return true
        }
        guard let join = joins[symbol] else { return false }
        let sequence = update.symbolSequence
        guard sequence > 0 else { return false }
        if sequence <= join.through && MonotonicClock.nowNanoseconds() < join.untilNs { return true }
        joins[symbol] = nil
        guard sequence > join.through &+ 1, hub.canReplay else { return false }
        hub.joinGapsRepaired.wrappingAdd(1, ordering: .relaxed)
        awaiting.insert(symbol)
        resuming[symbol] = PendingResume(buffered: [update])
        hub.wantResume(symbol, from: join.through &+ 1, registry: registry, session: ObjectIdentifier(self))
        return true
    }

    /// Writes an update without flushing, or queues it while the client's socket takes no more (NIO's write buffer
    /// above its high-water mark); returns true when the caller must flush this session later.
    ///
    /// `framed` is the update's whole WebSocket frame, made once for every client: written straight to the socket's
    /// side of NIO's frame encoder (`RawBytesWriter`), every update of a turn in one buffer per client.
    func write(_ text: ByteBuffer, framed: ByteBuffer? = nil, symbol: String, droppable: Bool, rateTurn: Bool = false)
        -> Bool
    {
        guard context != nil, !closing else { return false }
        // A STATUS is never held: the update waiting for its turn goes first, so the client sees them in order.
        var mustFlush = false
        if !droppable, !rates.isEmpty, let waiting = rates[symbol]?.waiting {
            rates[symbol]?.waiting = nil
            rates[symbol]?.lastSentNs = MonotonicClock.nowNanoseconds()
            mustFlush = write(waiting, symbol: symbol, droppable: true, rateTurn: true)
        }
        // A symbol with a maxRate: an update within its interval waits (replacing one that waited); STATUS never.
        if droppable, !rateTurn, !rates.isEmpty, var rate = rates[symbol] {
            let now = MonotonicClock.nowNanoseconds()
            if now &- rate.lastSentNs < rate.intervalNs {
                rate.waiting = text
                rates[symbol] = rate
                hasRateHeld = true
                return false
            }
            rate.lastSentNs = now
            rate.waiting = nil
            rates[symbol] = rate
        }
        guard queue.isEmpty && writable else {
            let before = queue.dropped
            var held = false
            if !catchingUp.isEmpty && MonotonicClock.nowNanoseconds() >= catchUpEndsNs { catchingUp.removeAll() }
            if droppable, let allowance = catchingUp[symbol], allowance > 0,
                queue.heldBytes < Self.heldBytesPerHardMark * queue.limits.hardBytes
            {
                catchingUp[symbol] = allowance - 1
                held = true
            }
            queue.append(.init(symbol: symbol, text: text, droppable: droppable && !held, held: held))
            if queue.dropped > before { hub.droppedUpdates.wrappingAdd(queue.dropped - before, ordering: .relaxed) }
            noteQueueMark()
            closeIfTooSlow()
            return false
        }
        if let framed, rawWriter != nil {
            appendToBatch(framed)
        } else {
            writeFrame(WebSocketFrame(fin: true, opcode: .text, data: text))
        }
        if pendingFlush { return mustFlush }
        pendingFlush = true
        return true
    }

    /// Sends the updates whose maxRate turn has come (the loop's timer calls it); false once none waits.
    func releaseRateHeld(nowNs: UInt64) -> Bool {
        guard hasRateHeld else { return false }
        var stillWaiting = false
        var wrote = false
        for (symbol, rate) in rates {
            guard let text = rate.waiting else { continue }
            guard nowNs &- rate.lastSentNs >= rate.intervalNs else {
                stillWaiting = true
                continue
            }
            rates[symbol]?.waiting = nil
            rates[symbol]?.lastSentNs = nowNs
            if write(text, symbol: symbol, droppable: true, rateTurn: true) { wrote = true }
        }
        if wrote { flushIfPending() }
        hasRateHeld = stillWaiting
        return stillWaiting
    }

    /// The socket takes more again: what waited goes out, oldest first, as far as it takes it.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writable = context.channel.isWritable
        guard writable, !closing, !queue.isEmpty else { return }
        while context.channel.isWritable, let entry = queue.popFirst() {
            writeFrame(WebSocketFrame(fin: true, opcode: .text, data: entry.text))
        }
        context.flush()
        noteQueueMark()
    }

    private func noteQueueMark() {
        if queue.isOverHardMark {
            if overHardMarkSinceNs == nil { overHardMarkSinceNs = MonotonicClock.nowNanoseconds() }
        } else {
            overHardMarkSinceNs = nil
        }
    }

    /// A client over its queue's hard mark for `slow_grace` gets 407 and close 4008; what it had queued is let go
    /// at once, and the connection is closed after `slowLinger` whether or not it reads its last frames.
    func closeIfTooSlow() {
        guard let since = overHardMarkSinceNs, !closing,
            MonotonicClock.nowNanoseconds() &- since >= limits.slowGraceNs
        else { return }
        closeAsSlow("too slow: \(queue.dropped) updates dropped; reconnect and resume")
    }

    /// What edged may hold for a client in all: its queue and what waits in NIO's buffer (answers, pongs,
    /// snapshots, replays, updates the socket did not take). Answers cannot be dropped as updates can, so a client
    /// whose unread bytes pass this is closed as a slow one at once.
    var roomBytes: Int { Self.heldBytesPerHardMark * queue.limits.hardBytes }

    /// Bytes NIO holds for the client, not yet taken by its socket.
    private var bytesInNIO: Int { (try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0 }

    /// What the client has not read yet that edged holds: its queue and NIO's buffer.
    var unreadBytes: Int { bytesInNIO + queue.bytes }

    /// Called after a frame went into NIO's buffer while the socket takes no more: a client past its room (it asks
    /// and does not read the answers) is closed.
    private func closeIfOutOfRoom() {
        guard !closing, !closingForRoom else { return }
        let held = unreadBytes
        guard held > roomBytes else { return }
        closeAsSlow("too slow: \(held) bytes unread, more than the \(roomBytes) this edge holds for a client")
    }

    /// Set while `closeAsSlow` writes its error, whose own check must not start another close.
    private var closingForRoom = false

    /// 407 and close 4008: what was queued is let go at once, and the connection is closed after `slowLinger`
    /// whether or not the client reads its last frames.
    private func closeAsSlow(_ message: String) {
        guard let context, !closing, !closingForRoom else { return }
        closingForRoom = true
        hub.slowClientsClosed.wrappingAdd(1, ordering: .relaxed)
        while queue.popFirst() != nil {}
        overHardMarkSinceNs = nil
        sendError(.slowClient, message)
        startClosing(code: .slowClient)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: limits.slowLinger) { channel.close(promise: nil) }
    }

    func flushIfPending() {
        guard pendingFlush, let context else { return }
        pendingFlush = false
        spillBatch()
        // Nothing above the raw writer holds writes back, so a flush from there (one hop to the socket, through TLS
        // when there is TLS) sends everything written this turn.
        if let rawWriter { rawWriter.flush() } else { context.flush() }
    }

    /// Adds an update's frame to this turn's batch. The first update of a turn is the shared frame itself; a second
    /// one moves both into the session's own buffer.
    private func appendToBatch(_ framed: ByteBuffer) {
        guard let first = batch else {
            batch = framed
            return
        }
        if batchIsOwn {
            batch!.writeImmutableBuffer(framed)
            return
        }
        var own = spareBatch ?? ByteBufferAllocator().buffer(capacity: Self.spareBatchBytes)
        spareBatch = nil
        batch = nil
        own.clear()
        own.writeImmutableBuffer(first)
        own.writeImmutableBuffer(framed)
        batch = own
        batchIsOwn = true
    }

    /// The largest own batch buffer kept between turns: a few bursts' worth of updates, so that thousands of clients
    /// do not each hold a large one. A turn with more allocates (once for many frames).
    private static let spareBatchBytes = 4_096

    /// Writes (without flushing) the updates batched this turn: one buffer of whole frames, below NIO's encoder.
    private func spillBatch() {
        guard let pending = batch else { return }
        batch = nil
        rawWriter?.writeRaw(pending)
        if batchIsOwn && pending.capacity <= Self.spareBatchBytes { spareBatch = pending }
        batchIsOwn = false
    }

    /// Every frame but the batched updates goes through here, behind the updates batched before it. One written
    /// while the socket takes no more counts against the client's room (`closeIfOutOfRoom`).
    private func writeFrame(_ frame: WebSocketFrame, flush: Bool = false) {
        guard let context else { return }
        spillBatch()
        if flush && readingMessages {
            context.write(wrapOutboundOut(frame), promise: nil)
            answersUnflushed = true
        } else if flush {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        } else {
            context.write(wrapOutboundOut(frame), promise: nil)
        }
        if !writable { closeIfOutOfRoom() }
    }

    /// Updates waiting in this client's queue, and their bytes.
    var queueDepth: (messages: Int, bytes: Int) { (queue.count, queue.bytes) }

    func sendHeartbeat(nowMs: UInt64) {
        sendText(#"{"type":"heartbeat","ts":\#(nowMs),"dropped":\#(dropped)}"#)
        probeLatency()
    }

    /// A ping stamped with its send time, one in flight at a time: half its round trip is the time edged -> client
    /// (`mktctl latency`, `/metrics`). Every client must answer pings (RFC 6455), browsers included.
    private func probeLatency() {
        guard let context, !closing else { return }
        let now = MonotonicClock.nowNanoseconds()
        // One unanswered for a minute is given up (a pong lost with a connection that recovered, say).
        guard probeSentNs == 0 || now &- probeSentNs > 60_000_000_000 else { return }
        probeSentNs = now
        var stamp = context.channel.allocator.buffer(capacity: 8)
        stamp.writeInteger(now)
        writeFrame(WebSocketFrame(fin: true, opcode: .ping, data: stamp), flush: true)
    }

    /// Pings a client not heard from for half the idle timeout; closes one not heard from for all of it (1008), and
    /// drops the connection `slowLinger` later if it does not answer that either.
    func checkIdle(nowNs: UInt64) {
        guard limits.idleTimeoutNs > 0, let context, !closing else { return }
        let silent = nowNs &- lastHeardNs
        if silent >= limits.idleTimeoutNs {
            hub.idleClientsClosed.wrappingAdd(1, ordering: .relaxed)
            startClosing(code: .policyViolation)
            let channel = context.channel
            context.eventLoop.scheduleTask(in: limits.slowLinger) { channel.close(promise: nil) }
        } else if silent >= limits.idleTimeoutNs / 2 {
            let ping = WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0))
            writeFrame(ping, flush: true)
        }
    }

    private func sendControl(type: String, symbols: [String]) {
        var out: [UInt8] = Array(#"{"type":""#.utf8) + Array(type.utf8) + Array(#"","symbols":["#.utf8)
        for (index, symbol) in symbols.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            EdgeJSON.appendEscaped(symbol, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: Array("]}".utf8))
        sendText(String(decoding: out, as: UTF8.self))
    }

    private func sendError(_ code: EdgeErrorCode, _ message: String) {
        var escaped: [UInt8] = []
        EdgeJSON.appendEscaped(message, to: &escaped)
        sendText(#"{"type":"error","code":\#(code.rawValue),"message":"\#(String(decoding: escaped, as: UTF8.self))"}"#)
    }

    private func sendText(_ text: String) {
        guard let context, !closing else { return }
        let buffer = context.channel.allocator.buffer(string: text)
        writeFrame(WebSocketFrame(fin: true, opcode: .text, data: buffer), flush: true)
    }

    /// Starts the closing handshake and leaves the connection open for the client's answer (RFC 6455 section 7):
    /// the server's drain, bounded by its `drain_timeout`.
    func startClosing(code: WebSocketErrorCode) {
        guard let context, !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        writeFrame(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), flush: true)
    }

    /// Sends a close frame and closes the connection once it is written (a client that broke the rules or a limit).
    private func close(code: WebSocketErrorCode) {
        guard let context, !closing else { return }
        closing = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
        let channel = context.channel
        spillBatch()
        context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
    }
}
