import Testing

@testable import FeedHandler

/// The gate in front of a venue's stream: what one datagram may and may not do, over real packet bytes.
@Suite struct MoldSessionGateJudging {
    /// A packet of `count` messages (heartbeat when 0).
    static func packet(_ session: String, _ sequence: UInt64, count: Int = 1) -> [UInt8] {
        count == 0
            ? MoldPacket.heartbeat(session: session, nextSequence: sequence)
            : SpecBytes.moldPacket(session: session, sequence: sequence,
                messages: Array(repeating: SpecBytes.systemEvent, count: count))
    }

    static func judge(_ gate: inout MoldSessionGate, _ bytes: [UInt8], following session: String?,
        highestKnown: UInt64) -> MoldSessionGate.Verdict
    {
        bytes.withUnsafeBytes { buffer in
            gate.judge(try! MoldPacket(buffer), following: session.map(MoldSession.init), highestKnown: highestKnown)
        }
    }

    static func gate(jump: UInt64 = 1_000, proof: Int = 3) -> MoldSessionGate {
        MoldSessionGate(configuration: .init(maxSequenceJump: jump, proofPackets: proof))
    }

    @Test func packetsOfTheSessionWithinTheJumpPassAndTheFirstSessionNearItsStartIsTaken() {
        var gate = Self.gate()
        #expect(Self.judge(&gate, Self.packet("S1", 1), following: nil, highestKnown: 0) == .pass)
        #expect(Self.judge(&gate, Self.packet("S1", 1_001), following: "S1", highestKnown: 0) == .pass)
        #expect(Self.judge(&gate, Self.packet("S1", 1_002), following: "S1", highestKnown: 0) == .held)
        #expect(Self.judge(&gate, Self.packet("S1", 5), following: "S1", highestKnown: 500) == .pass)
        // Old ones pass: the stream drops them as duplicates.
        #expect(Self.judge(&gate, Self.packet("S1", 1), following: "S1", highestKnown: 500) == .pass)
    }

    @Test func oneDatagramFarAheadOrOfAnotherSessionIsHeldAndRefusedWhenNothingFollowsIt() {
        var gate = Self.gate()
        #expect(Self.judge(&gate, Self.packet("S1", 1 << 62), following: "S1", highestKnown: 10) == .held)
        #expect(Self.judge(&gate, Self.packet("EVIL", 11), following: "S1", highestKnown: 10) == .held)
        #expect(gate.refusedPackets == 1)
        // The real stream goes on meanwhile.
        #expect(Self.judge(&gate, Self.packet("S1", 11), following: "S1", highestKnown: 10) == .pass)
        #expect(Self.judge(&gate, Self.packet("EVIL", 500), following: "S1", highestKnown: 11) == .held)
        #expect(gate.refusedPackets == 2)
        #expect(gate.heldCandidates == 1)
        #expect(gate.provenChanges == 0)
    }

    @Test func consecutivePacketsOfANewSessionProveItAndAreHandedBackInOrder() {
        var gate = Self.gate()
        let packets = [Self.packet("S2", 1, count: 2), Self.packet("S2", 3, count: 0), Self.packet("S2", 3, count: 4)]
        #expect(Self.judge(&gate, packets[0], following: "S1", highestKnown: 900) == .held)
        #expect(Self.judge(&gate, packets[1], following: "S1", highestKnown: 900) == .held)
        #expect(Self.judge(&gate, packets[2], following: "S1", highestKnown: 900)
            == .proven(session: MoldSession("S2"), packets: packets))
        #expect(gate.provenChanges == 1 && gate.refusedPackets == 0 && gate.heldCandidates == 0)
    }

    @Test func aRealJumpOfTheSessionIsFollowedAfterItsProofAndAStrayPacketRestartsTheCount() {
        var gate = Self.gate(proof: 2)
        let far = UInt64(5_000_000)
        #expect(Self.judge(&gate, Self.packet("S1", far), following: "S1", highestKnown: 10) == .held)
        // Not where the candidate ends (far + 1): a new candidate, the old one refused.
        #expect(Self.judge(&gate, Self.packet("S1", far + 5), following: "S1", highestKnown: 10) == .held)
        #expect(gate.refusedPackets == 1)
        let next = Self.packet("S1", far + 6, count: 3)
        #expect(Self.judge(&gate, next, following: "S1", highestKnown: 10)
            == .proven(session: MoldSession("S1"), packets: [Self.packet("S1", far + 5), next]))
    }

    @Test func theFirstSessionStartingFarIntoItsDayProvesItselfToo() {
        var gate = Self.gate(proof: 2)
        let first = Self.packet("S1", 300_000_000)
        #expect(Self.judge(&gate, first, following: nil, highestKnown: 0) == .held)
        let second = Self.packet("S1", 300_000_001)
        #expect(Self.judge(&gate, second, following: nil, highestKnown: 0)
            == .proven(session: MoldSession("S1"), packets: [first, second]))
    }

    @Test func aProofOfOnePacketFollowsEveryPacketAtOnce() {
        var gate = Self.gate(proof: 1)
        let packet = Self.packet("S2", 1 << 40)
        #expect(Self.judge(&gate, packet, following: "S1", highestKnown: 10)
            == .proven(session: MoldSession("S2"), packets: [packet]))
    }
}
