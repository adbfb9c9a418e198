/// One MoldUDP64 session's downstream, put back in order: messages are delivered exactly once, in sequence; a message
/// that arrives ahead of a gap is held (bounded) while the gap is recovered by retransmission, and released once the
/// gap fills. A gap that cannot be filled within `giveUpNs` is given up: reported, counted, and skipped, never hidden.
///
/// Pure logic with the clock passed in, so every path is testable without sockets. Not Sendable: it belongs to the
/// feed thread.
public struct MoldStream {
    public struct Configuration: Sendable {
        /// Wait this long for a missing message (or after silence) before asking for it.
        public var gapTimeoutNs: UInt64 = 20_000_000
        /// Ask again this long after an unanswered request.
        public var retryIntervalNs: UInt64 = 250_000_000
        /// Give a gap up this long after it opened.
        public var giveUpNs: UInt64 = 3_000_000_000
        /// Most messages held behind a gap; past it the gap is given up at once (memory stays bounded).
        public var maxHeldMessages = 1_000_000
        /// Most messages asked for in one request (MoldUDP64 counts are 16 bits).
        public var maxRequestCount = 10_000

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

    struct OpenGap {
        var openedNs: UInt64
        var lastRequestNs: UInt64?
    }

    public let configuration: Configuration
    /// The next sequence number to deliver.
    public private(set) var expected: UInt64
    /// The highest sequence number known to exist (from data or heartbeats).
    public private(set) var highestKnown: UInt64
    private var held: [UInt64: [UInt8]] = [:]
    private var gap: OpenGap?
    public private(set) var counters = Counters()

    public init(configuration: Configuration = Configuration(), firstSequence: UInt64 = 1) {
        self.configuration = configuration
        expected = firstSequence
        highestKnown = firstSequence - 1
    }

    /// True while messages are missing.
    public var hasOpenGap: Bool { gap != nil }
    public var heldCount: Int { held.count }

    /// Takes one message; calls `deliver` for it and for every held message it releases, in order.
    public mutating func receive(
        sequence: UInt64, message: UnsafeRawBufferPointer, now: UInt64,
        deliver: (UInt64, UnsafeRawBufferPointer) -> Void
    ) {
        if sequence < expected || held[sequence] != nil {
            counters.duplicates += 1
            return
        }
        highestKnown = max(highestKnown, sequence)
        if sequence == expected {
            deliver(sequence, message)
            counters.delivered += 1
            expected += 1
            releaseHeld(now: now, deliver: deliver)
            return
        }
        held[sequence] = Array(message)
        counters.heldHighWater = max(counters.heldHighWater, held.count)
        if gap == nil {
            gap = OpenGap(openedNs: now)
            counters.gapsOpened += 1
        }
    }

    /// A heartbeat (or an end of session) says messages up to `nextSequence - 1` exist.
    public mutating func heartbeat(nextSequence: UInt64, now: UInt64) {
        guard nextSequence > 0, nextSequence - 1 > highestKnown else { return }
        highestKnown = nextSequence - 1
        if expected <= highestKnown && gap == nil {
            gap = OpenGap(openedNs: now)
            counters.gapsOpened += 1
        }
    }

    /// Decides what to do now: ask for missing messages, or give a gap up. Call it every loop turn.
    public mutating func poll(now: UInt64, deliver: (UInt64, UnsafeRawBufferPointer) -> Void) -> Action? {
        guard var open = gap else { return nil }
        if held.count > configuration.maxHeldMessages {
            return giveUp(reason: .heldLimit, now: now, deliver: deliver)
        }
        if now - open.openedNs >= configuration.giveUpNs {
            return giveUp(reason: .timeout, now: now, deliver: deliver)
        }
        let due: Bool
        if let last = open.lastRequestNs {
            due = now - last >= configuration.retryIntervalNs
        } else {
            due = now - open.openedNs >= configuration.gapTimeoutNs
        }
        guard due else { return nil }
        open.lastRequestNs = now
        gap = open
        counters.requests += 1
        let end = firstMissingRunEnd()
        let count = min(end - expected + 1, UInt64(configuration.maxRequestCount))
        return .request(sequence: expected, count: UInt16(count))
    }

    /// The last sequence of the run of missing messages that starts at `expected`.
    private func firstMissingRunEnd() -> UInt64 {
        let nextHeld = held.keys.min() ?? (highestKnown + 1)
        return nextHeld - 1
    }

    /// Delivers the held messages that are now in order. When nothing is missing any more the gap has healed; when
    /// another hole remains behind the released run, its own clock starts now.
    private mutating func releaseHeld(now: UInt64, deliver: (UInt64, UnsafeRawBufferPointer) -> Void) {
        var released = false
        while let message = held.removeValue(forKey: expected) {
            message.withUnsafeBytes { deliver(expected, $0) }
            counters.delivered += 1
            expected += 1
            released = true
        }
        guard gap != nil, released || expected > highestKnown else { return }
        if expected > highestKnown {
            gap = nil
            counters.gapsHealed += 1
        } else {
            gap = OpenGap(openedNs: now)
        }
    }

    /// Skips the missing run at `expected`, delivers what was held behind it, and reports what was lost.
    private mutating func giveUp(
        reason: GiveUpReason, now: UInt64, deliver: (UInt64, UnsafeRawBufferPointer) -> Void
    ) -> Action {
        let end = firstMissingRunEnd()
        let missing = expected...end
        counters.gapsGivenUp += 1
        counters.messagesLost += end - expected + 1
        expected = end + 1
        gap = nil  // closed by giving up, which is not a heal
        releaseHeld(now: now, deliver: deliver)
        if expected <= highestKnown {
            // Another hole lies behind what was released: it gets its own clock.
            gap = OpenGap(openedNs: now)
            counters.gapsOpened += 1
        }
        return .gaveUp(missing: missing, reason: reason)
    }
}
