import MarketData

/// What one peer of the snapshot ROUTER can make plantd do at once, beside `[plant] max_answer_ticks` (DESIGN
/// section 12: work a peer can ask for is bounded per peer and in all).
enum AnswerLimits {
    /// What reading a request costs the answer budget, in ticks sent: its frames' receive, its decoding and the
    /// lookups (a peer that sends requests without waiting for the answers makes plantd read them, answered or not).
    static let tokensPerRequest: UInt64 = 8
    /// Requests read per turn: a flood waits in libzmq's queue (its receive high-water mark, per peer), not in the
    /// live stream's way.
    static let requestsPerTurn = 32
    /// Answer ticks sent per turn, by all answers together (the answer budget's burst): what bounds the live
    /// stream's wait behind answers (a few hundred microseconds).
    static let ticksPerTurn: UInt64 = 256
    /// An answer of more ticks than this is taken whole when asked (copied) and sent over the following turns, a
    /// slice a turn (`HeldAnswer`); a smaller one goes out at once.
    static let ticksSentAtOnce: UInt64 = 128
    /// Bytes of answers held to be sent over several turns, by all peers together: past it a large answer is
    /// refused ("busy: ask again later"). One peer holds at most one.
    static let heldAnswerBytesInAll = 64 << 20
    /// Replays read from the journal at once, by all peers: each holds a cursor and its buffer (about 2 MiB). A
    /// peer has at most one, since its answers go out one after another.
    static let journalReplaysInAll = 32
    /// Requests of a peer kept while its answer is read from the journal: past it, dropped and counted (a peer
    /// that asks more without waiting for its answers cannot make plantd hold them without end).
    static let waitingRequestsPerPeer = 1_024
    /// Peers remembered as not reading (their queue full): past it the marks are forgotten (each then costs one
    /// more answer's work before it is marked again).
    static let unreadPeersKept = 4_096
}

/// The answer work plantd does per second for all snapshot and replay peers together (`[plant]
/// answer_ticks_per_second`): a token bucket of ticks, one token per tick sent or journal record read, one per
/// answer's end and `tokensPerRequest` per request read. A small answer goes out whole, so the bucket may fall into
/// debt by one, which later turns repay before anything more is answered; a large one is held and sent a slice a
/// turn (`HeldAnswer`). However many peers ask, answers cost the live stream at most this share of the loop; the
/// requests left wait in libzmq's queue (bounded per peer by its receive high-water mark), read in turn from each
/// peer (the ROUTER's fair queueing).
struct AnswerBudget {
    let ticksPerSecond: Double
    /// Most tokens saved up while nothing is asked: one turn's worth.
    let burst: Double
    private(set) var available: Double
    private var refilledAtNs: UInt64

    init(ticksPerSecond: Int, burst: UInt64 = AnswerLimits.ticksPerTurn, nowNs: UInt64) {
        self.ticksPerSecond = Double(ticksPerSecond)
        self.burst = Double(burst)
        available = Double(burst)
        refilledAtNs = nowNs
    }

    var isSpent: Bool { available <= 0 }

    mutating func refill(nowNs: UInt64) {
        guard nowNs > refilledAtNs else { return }
        available = min(burst, available + Double(nowNs - refilledAtNs) * ticksPerSecond / 1e9)
        refilledAtNs = nowNs
    }

    mutating func spend(_ ticks: UInt64) { available -= Double(ticks) }

    /// Nanoseconds until something may be answered again (0: now).
    var nanosecondsUntilAvailable: UInt64 {
        available > 0 ? 0 : UInt64((-available + 1) * 1e9 / ticksPerSecond)
    }
}
