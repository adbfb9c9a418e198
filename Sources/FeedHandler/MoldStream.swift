/// One MoldUDP64 session's downstream, put back in order: messages are delivered exactly once, in sequence; messages
/// that arrive behind a hole are held (bounded) while the hole is recovered by retransmission, and released once it
/// fills. A hole that cannot be filled within `giveUpNs` is given up: reported, counted and skipped, never hidden.
///
/// Holes are kept as a short sorted list of ranges, so finding what to ask for never scans the held messages. Pure
/// logic with the clock passed in, testable without sockets. Not Sendable: it belongs to the feed thread.
public struct MoldStream {
    public struct Configuration: Sendable {
        /// A missing message may be this late (reordering) before it is asked for.
        public var gapTimeoutNs: UInt64 = 20_000_000
        /// Ask again this long after an unanswered request.
        public var retryIntervalNs: UInt64 = 250_000_000
        /// Give a hole up this long after it was noticed.
        public var giveUpNs: UInt64 = 3_000_000_000
        /// Most messages held behind holes; past it the oldest hole is given up (memory stays bounded).
        public var maxHeldMessages = 1_000_000
        /// Most messages asked for in one request (MoldUDP64 counts are 16 bits).
        public var maxRequestCount = 10_000
        /// Most requests one `poll` sends.
        public var maxRequestsPerPoll = 32

        public init() {}
    }

    /// What the stream wants its owner to do.
    public enum Action: Equatable, Sendable {
        /// Ask the retransmission server for `count` messages from `sequence`.
        case request(sequence: UInt64, count: UInt16)
        /// These messages are lost for good: publish a GAP status and count them.
        case gaveUp(missing: ClosedRange<UInt64>, reason: GiveUpReason)
    }

    public enum GiveUpReason: String, Equatable, Sendable {
        case timeout = "retransmission did not fill the gap in time"
        case heldLimit = "too many messages held behind the gap"
    }

    public struct Counters: Equatable, Sendable {
        public var delivered: UInt64 = 0
        public var duplicates: UInt64 = 0
        public var gapsOpened: UInt64 = 0
        public var gapsHealed: UInt64 = 0
        public var gapsGivenUp: UInt64 = 0
        public var messagesLost: UInt64 = 0
        public var requests: UInt64 = 0
        public var heldHighWater: Int = 0
    }

    /// One gap as it was noticed, and how it ended: what `mktctl gaps` lists. A hole that splits (messages in its
    /// middle arrive first) stays one gap, closed when its last part closes.
    public struct GapRecord: Equatable, Sendable {
        public var id: UInt64
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        public var openedNs: UInt64
        /// When its last missing message arrived or it was given up (monotonic ns); nil while open.
        public var closedNs: UInt64?
        /// Whether a retransmission was asked for it: a gap that fills without one was only reordering.
        public var requested = false
        public var messagesLost: UInt64 = 0
        public var givenUp: GiveUpReason?
    }

    /// A run of missing sequence numbers.
    struct Hole {
        var first: UInt64
        var last: UInt64
        var noticedNs: UInt64
        /// The gap it belongs to (`GapRecord.id`).
        var gapID: UInt64 = 0
        var lastRequestNs: UInt64?
        /// The last sequence number the requests so far asked for.
        var requestedThrough: UInt64 = 0
    }

    public let configuration: Configuration
    /// The next sequence number to deliver.
    public private(set) var expected: UInt64
    /// The highest sequence number known to exist (from data or heartbeats).
    public private(set) var highestKnown: UInt64
    private var held = HeldMessages()
    /// Sorted, disjoint; the first one, when there is one, starts at `expected`.
    private var holes: [Hole] = []
    public private(set) var counters = Counters()
    /// The last `gapRecordsKept` gaps, oldest first.
    public private(set) var gapRecords: [GapRecord] = []
    public static let gapRecordsKept = 200
    private var nextGapID: UInt64 = 1

    public init(configuration: Configuration = Configuration(), firstSequence: UInt64 = 1) {
        self.configuration = configuration
        expected = firstSequence
        highestKnown = firstSequence - 1
    }

    /// True while messages are missing.
    public var hasOpenGap: Bool { !holes.isEmpty }
    public var heldCount: Int { held.count }
    public var openHoles: Int { holes.count }

    /// Takes one message; calls `deliver` for it and for every held message it releases, in order.
    public mutating func receive(
        sequence: UInt64, message: UnsafeRawBufferPointer, now: UInt64,
        deliver: (UInt64, UnsafeRawBufferPointer) -> Void
    ) {
        // Nothing is held while no message is missing: the common case looks nothing up (hashing a key costs more
        // than the rest of this function).
        if sequence < expected || (!held.isEmpty && held.contains(sequence)) {
            counters.duplicates += 1
            return
        }
        if sequence > highestKnown {
            if sequence > highestKnown + 1 { openHole(highestKnown + 1, sequence - 1, now: now) }
            highestKnown = sequence
        } else {
            fill(sequence, now: now)
        }
        if sequence == expected {
            deliver(sequence, message)
            counters.delivered += 1
            expected += 1
            if !held.isEmpty { releaseHeld(deliver: deliver) }
        } else {
            held.hold(sequence, message)
            counters.heldHighWater = max(counters.heldHighWater, held.count)
        }
    }

    /// A heartbeat (or an end of session) says messages up to `nextSequence - 1` exist.
    public mutating func heartbeat(nextSequence: UInt64, now: UInt64) {
        guard nextSequence > 0, nextSequence - 1 > highestKnown else { return }
        openHole(highestKnown + 1, nextSequence - 1, now: now)
        highestKnown = nextSequence - 1
    }

    /// Decides what to do now: ask for missing messages, or give a hole up. Call it every loop turn.
    public mutating func poll(now: UInt64, deliver: (UInt64, UnsafeRawBufferPointer) -> Void) -> [Action] {
        guard let oldest = holes.first else { return [] }
        if held.count > configuration.maxHeldMessages {
            return [giveUpFirstHole(reason: .heldLimit, now: now, deliver: deliver)]
        }
        if now - oldest.noticedNs >= configuration.giveUpNs {
            return [giveUpFirstHole(reason: .timeout, now: now, deliver: deliver)]
        }
        var actions: [Action] = []
        for index in holes.indices where actions.count < configuration.maxRequestsPerPoll {
            let hole = holes[index]
            let due =
                if let last = hole.lastRequestNs {
                    // A hole longer than one request: once the part asked for has arrived, ask for the next part.
                    hole.first > hole.requestedThrough || now - last >= configuration.retryIntervalNs
                } else {
                    now - hole.noticedNs >= configuration.gapTimeoutNs
                }
            guard due else { continue }
            let count = min(hole.last - hole.first + 1, UInt64(configuration.maxRequestCount))
            holes[index].lastRequestNs = now
            holes[index].requestedThrough = hole.first + count - 1
            updateRecord(hole.gapID) { $0.requested = true }
            counters.requests += 1
            actions.append(.request(sequence: hole.first, count: UInt16(count)))
        }
        return actions
    }

    // MARK: Holes

    private mutating func openHole(_ first: UInt64, _ last: UInt64, now: UInt64) {
        let id = nextGapID
        nextGapID += 1
        holes.append(Hole(first: first, last: last, noticedNs: now, gapID: id))
        gapRecords.append(GapRecord(id: id, firstSequence: first, lastSequence: last, openedNs: now))
        if gapRecords.count > Self.gapRecordsKept { gapRecords.removeFirst(gapRecords.count - Self.gapRecordsKept) }
        counters.gapsOpened += 1
    }

    private mutating func updateRecord(_ id: UInt64, _ change: (inout GapRecord) -> Void) {
        // Recent gaps are at the end.
        guard let index = gapRecords.lastIndex(where: { $0.id == id }) else { return }
        change(&gapRecords[index])
    }

    /// Closes a gap's record once no part of it is missing any more.
    private mutating func closeRecordIfWhole(_ id: UInt64, now: UInt64) {
        guard !holes.contains(where: { $0.gapID == id }) else { return }
        updateRecord(id) { $0.closedNs = now }
    }

    /// Takes `sequence` out of the hole that contains it, shrinking or splitting it.
    private mutating func fill(_ sequence: UInt64, now: UInt64) {
        guard let index = holes.firstIndex(where: { $0.first <= sequence && sequence <= $0.last }) else { return }
        var hole = holes[index]
        if hole.first == hole.last {
            holes.remove(at: index)
            counters.gapsHealed += 1
            closeRecordIfWhole(hole.gapID, now: now)
        } else if sequence == hole.first {
            hole.first += 1
            holes[index] = hole
        } else if sequence == hole.last {
            hole.last -= 1
            holes[index] = hole
        } else {
            var tail = hole
            hole.last = sequence - 1
            tail.first = sequence + 1
            holes[index] = hole
            holes.insert(tail, at: index + 1)
            counters.gapsOpened += 1  // each part heals on its own
        }
    }

    private mutating func releaseHeld(deliver: (UInt64, UnsafeRawBufferPointer) -> Void) {
        while true {
            let sequence = expected
            guard held.release(sequence, { deliver(sequence, $0) }) else { return }
            counters.delivered += 1
            expected += 1
        }
    }

    /// Skips the first hole, delivers what was held behind it, and reports what was lost.
    private mutating func giveUpFirstHole(
        reason: GiveUpReason, now: UInt64, deliver: (UInt64, UnsafeRawBufferPointer) -> Void
    ) -> Action {
        let hole = holes.removeFirst()
        counters.gapsGivenUp += 1
        counters.messagesLost += hole.last - hole.first + 1
        updateRecord(hole.gapID) { record in
            record.messagesLost += hole.last - hole.first + 1
            record.givenUp = reason
        }
        closeRecordIfWhole(hole.gapID, now: now)
        expected = hole.last + 1
        releaseHeld(deliver: deliver)
        return .gaveUp(missing: hole.first...hole.last, reason: reason)
    }
}
