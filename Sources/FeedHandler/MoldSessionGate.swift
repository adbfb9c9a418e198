import MarketData

/// Decides whether a MoldUDP64 packet may move a venue's stream (DESIGN section 12): one datagram from anyone who
/// can reach the feed port must not reset the venue's book (another session name) or blackhole it (a sequence
/// number far ahead, whose "gap" would be given up and every real packet after it dropped as old).
///
/// A packet of the session followed, no further ahead than `maxSequenceJump` past the highest sequence known, passes.
/// Any other is a candidate: it is kept aside (copied, bounded) and the stream does not see it. Candidates that
/// follow on from each other, each starting where the one before ended, prove a new session or a real jump once
/// `proofPackets` of them have come; then they are handed back, oldest first, to be taken as the new stream's
/// start. A candidate that does not follow on replaces those kept, which are refused and counted. A venue that
/// really restarts or really jumps sends consecutive packets, so it is followed after a few of them, nothing lost.
///
/// Pure logic, no clock and no socket: the feed thread owns it.
struct MoldSessionGate {
    struct Configuration: Sendable, Equatable {
        /// How far past the highest sequence known a packet of the session may start and still be taken at once.
        var maxSequenceJump: UInt64 = 100_000
        /// Consecutive packets a new session (or a jump) must send before it is followed. 1: the first one is.
        var proofPackets = 3
    }

    enum Verdict: Equatable {
        /// The packet belongs to the stream followed: take it.
        case pass
        /// Kept aside as a candidate; nothing to do now.
        case held
        /// These packets (the one just given last) proved themselves: start the session they name (a new session
        /// when it differs from the one followed) and take them in order.
        case proven(session: MoldSession, packets: [[UInt8]])
    }

    let configuration: Configuration
    /// Candidates refused: packets kept aside that no consecutive packet followed.
    private(set) var refusedPackets: UInt64 = 0
    /// Sessions and jumps that proved themselves and were followed.
    private(set) var provenChanges: UInt64 = 0
    private var candidateSession: MoldSession?
    /// Where the next candidate must start to follow on.
    private var candidateNext: UInt64 = 0
    private var candidates: [[UInt8]] = []

    init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Judges `packet` against the session followed (nil before the first) and the highest sequence the stream
    /// knows exists (0 when none). The first session of a run is taken at once when it starts within
    /// `maxSequenceJump` of 1, as a venue's day does.
    mutating func judge(_ packet: MoldPacket, following session: MoldSession?, highestKnown: UInt64) -> Verdict {
        let packetSession = packet.session
        if packetSession == session || session == nil,
            packet.sequenceNumber <= highestKnown.saturatingAdd(1).saturatingAdd(configuration.maxSequenceJump)
        {
            return .pass
        }
        if candidateSession == packetSession, packet.sequenceNumber == candidateNext, !candidates.isEmpty {
            candidates.append(Array(packet.bytes))
        } else {
            refusedPackets += UInt64(candidates.count)
            candidates = [Array(packet.bytes)]
            candidateSession = packetSession
        }
        candidateNext = packet.nextSequence
        guard candidates.count >= configuration.proofPackets else { return .held }
        let proven = candidates
        candidates = []
        candidateSession = nil
        provenChanges += 1
        return .proven(session: packetSession, packets: proven)
    }

    /// Packets kept aside now, waiting for the ones that would prove them.
    var heldCandidates: Int { candidates.count }
}
