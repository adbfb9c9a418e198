import MarketData
import Testing

@testable import FeedHandler

@Suite struct MoldStreamRecovery {
    var configuration: MoldStream.Configuration = {
        var configuration = MoldStream.Configuration()
        configuration.gapTimeoutNs = 10
        configuration.retryIntervalNs = 100
        configuration.giveUpNs = 1000
        configuration.maxHeldMessages = 5
        return configuration
    }()

    /// Feeds sequence numbers (each message's one byte is its sequence) and collects what is delivered.
    struct Harness {
        var stream: MoldStream
        var delivered: [UInt64] = []

        mutating func receive(_ sequences: [UInt64], at now: UInt64) {
            for sequence in sequences {
                let byte = [UInt8(truncatingIfNeeded: sequence)]
                var output: [UInt64] = []
                byte.withUnsafeBytes { message in
                    stream.receive(sequence: sequence, message: message, now: now) { number, bytes in
                        #expect(bytes.first == UInt8(truncatingIfNeeded: number))
                        output.append(number)
                    }
                }
                delivered += output
            }
        }

        mutating func poll(at now: UInt64) -> [MoldStream.Action] {
            var output: [UInt64] = []
            let action = stream.poll(now: now) { number, _ in output.append(number) }
            delivered += output
            return action
        }
    }

    @Test func inOrderMessagesAreDeliveredAtOnce() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 2, 3], at: 0)
        #expect(harness.delivered == [1, 2, 3])
        #expect(harness.poll(at: 5000) == [])
        #expect(!harness.stream.hasOpenGap)
    }

    @Test func aGapIsRequestedHeldBehindAndReleasedInOrderOnceFilled() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 2, 5, 6], at: 0)
        #expect(harness.delivered == [1, 2])
        #expect(harness.stream.heldCount == 2)
        #expect(harness.poll(at: 5) == [])  // within gap_timeout: reordering may still fill it
        #expect(harness.poll(at: 10) == [.request(sequence: 3, count: 2)])
        #expect(harness.poll(at: 50) == [])  // asked already; retry only after retry_interval
        harness.receive([4], at: 60)  // reordered retransmission
        harness.receive([3], at: 60)
        #expect(harness.delivered == [1, 2, 3, 4, 5, 6])
        harness.receive([5, 3], at: 70)
        #expect(harness.delivered == [1, 2, 3, 4, 5, 6])
        #expect(harness.stream.counters.duplicates == 2)
        #expect(harness.stream.counters.gapsHealed == 1)
        #expect(!harness.stream.hasOpenGap)
    }

    @Test func anUnansweredRequestIsRepeated() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 3], at: 0)
        #expect(harness.poll(at: 10) == [.request(sequence: 2, count: 1)])
        #expect(harness.poll(at: 109) == [])
        #expect(harness.poll(at: 110) == [.request(sequence: 2, count: 1)])
        #expect(harness.stream.counters.requests == 2)
    }

    @Test func aHeartbeatAheadOfTheLastMessageOpensAGap() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 2, 3], at: 0)
        harness.stream.heartbeat(nextSequence: 6, now: 100)
        #expect(harness.poll(at: 110) == [.request(sequence: 4, count: 2)])
        harness.receive([4, 5], at: 120)
        #expect(harness.delivered == [1, 2, 3, 4, 5])
        #expect(!harness.stream.hasOpenGap)
    }

    @Test func aGapNeverFilledIsGivenUpReportedAndSkipped() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 2, 5, 6], at: 0)
        #expect(harness.poll(at: 999) != [])
        #expect(harness.poll(at: 1000) == [.gaveUp(missing: 3...4, reason: .timeout)])
        #expect(harness.delivered == [1, 2, 5, 6])
        #expect(harness.stream.counters.messagesLost == 2)
        #expect(harness.stream.counters.gapsGivenUp == 1)
        #expect(harness.stream.counters.gapsHealed == 0)
        harness.receive([7, 3], at: 1001)  // late 3 is a duplicate now; 7 flows
        #expect(harness.delivered == [1, 2, 5, 6, 7])
    }

    @Test func twoHolesAreAskedForTogetherAndHealSeparately() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 3, 5], at: 0)
        // Both holes are due: both are asked for in the same turn, not one after the other.
        #expect(harness.poll(at: 10) == [.request(sequence: 2, count: 1), .request(sequence: 4, count: 1)])
        harness.receive([2], at: 20)
        #expect(harness.delivered == [1, 2, 3])
        #expect(harness.stream.hasOpenGap)
        #expect(harness.poll(at: 30) == [])
        harness.receive([4], at: 40)
        #expect(harness.delivered == [1, 2, 3, 4, 5])
        #expect(!harness.stream.hasOpenGap)
        #expect(harness.stream.counters.gapsHealed == 2)
    }

    @Test func aHoleFilledInPartIsSplitAndTheRestAskedForAgainAtOnce() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1, 10], at: 0)
        #expect(harness.poll(at: 10) == [.request(sequence: 2, count: 8)])
        harness.receive([5], at: 20)  // a reordered packet lands in the middle of the hole
        #expect(harness.stream.openHoles == 2)
        harness.receive([2, 3, 4], at: 21)
        #expect(harness.delivered == [1, 2, 3, 4, 5])
        #expect(harness.poll(at: 22) == [])  // 6-9 were asked for at 10; the retry waits for retry_interval
        #expect(harness.poll(at: 110) == [.request(sequence: 6, count: 4)])
    }

    @Test func aHoleLargerThanOneRequestIsAskedForPieceByPieceWithoutWaiting() {
        var small = configuration
        small.maxRequestCount = 3
        var harness = Harness(stream: MoldStream(configuration: small))
        harness.receive([8], at: 0)
        #expect(harness.poll(at: 10) == [.request(sequence: 1, count: 3)])
        harness.receive([1, 2, 3], at: 11)
        #expect(harness.poll(at: 12) == [.request(sequence: 4, count: 3)])
        harness.receive([4, 5, 6], at: 13)
        #expect(harness.poll(at: 14) == [.request(sequence: 7, count: 1)])
        harness.receive([7], at: 15)
        #expect(harness.delivered == Array(1...8))
    }

    @Test func tooManyHeldMessagesGiveTheGapUpSoMemoryStaysBounded() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([1] + Array(3...9), at: 0)
        #expect(harness.stream.heldCount == 7)
        #expect(harness.poll(at: 1) == [.gaveUp(missing: 2...2, reason: .heldLimit)])
        #expect(harness.delivered == Array(1...9).filter { $0 != 2 })
        #expect(harness.stream.heldCount == 0)
    }

    @Test func aLateJoinerStartsAtOneAndAsksForEverythingBefore() {
        var harness = Harness(stream: MoldStream(configuration: configuration))
        harness.receive([500], at: 0)
        #expect(harness.poll(at: 10) == [.request(sequence: 1, count: 499)])
    }

    @Test func framesSplitAcrossReadsAreReassembledAndOversizedOnesStopTheStream() {
        var frames = LengthPrefixedFrames(maximumFrame: 4)
        var seen: [[UInt8]] = []
        for chunk: [UInt8] in [[0, 2, 7], [8, 0, 1], [9]] {
            chunk.withUnsafeBytes { frames.append($0) }
            frames.drain { seen.append(Array($0)) }
        }
        #expect(seen == [[7, 8], [9]])
        #expect(!frames.violated)
        let oversized: [UInt8] = [0, 3, 1, 2, 3, 0, 200, 1, 0, 1, 5]
        oversized.withUnsafeBytes { frames.append($0) }
        frames.drain { seen.append(Array($0)) }
        #expect(seen == [[7, 8], [9], [1, 2, 3]])  // the frame before the bad one still counts, nothing after it
        #expect(frames.violated)
    }
}

/// The arena and index behind `MoldStream`'s held messages, against a dictionary of arrays (what it replaced).
@Suite struct HeldMessagesArena {
    /// A message of 1-60 bytes that says which sequence number it is.
    static func message(_ sequence: UInt64) -> [UInt8] {
        (0..<Int(sequence % 60) + 1).map { UInt8(truncatingIfNeeded: sequence &+ UInt64($0) &* 31) }
    }

    /// Holes that never all heal at once (the arena never starts over): released bytes must be reclaimed by
    /// compaction, with every held message intact, or the arena grows with everything ever held.
    @Test func heldMessagesComeBackByteForByteAndTheArenaStaysBounded() {
        var random = SplitMix64(seed: 11)
        var held = HeldMessages(expectedCount: 4)
        var model: [UInt64: [UInt8]] = [:]
        var modelBytes = 0
        var mostBytesHeld = 0
        var bytesEverHeld = 0
        for _ in 0..<100_000 {
            let sequence = UInt64.random(in: 1...3_000, using: &random)
            if UInt8.random(in: 0..<8, using: &random) < 5, model[sequence] == nil {
                let bytes = Self.message(sequence)
                bytes.withUnsafeBytes { held.hold(sequence, $0) }
                model[sequence] = bytes
                modelBytes += bytes.count
                bytesEverHeld += bytes.count
                mostBytesHeld = max(mostBytesHeld, modelBytes)
            } else {
                var released: [UInt8]?
                let found = held.release(sequence) { released = Array($0) }
                let expected = model.removeValue(forKey: sequence)
                modelBytes -= expected?.count ?? 0
                #expect(found == (expected != nil))
                #expect(released == expected)
            }
            #expect(held.count == model.count)
        }
        #expect(!model.isEmpty)
        // Growth by doubling and compaction at half released allow up to about four times the most ever held.
        #expect(held.arenaCapacity <= 8 * mostBytesHeld)
        #expect(bytesEverHeld > 16 * mostBytesHeld)  // so an arena that never reclaims would fail the line above
        for (sequence, bytes) in model {
            var released: [UInt8]?
            #expect(held.release(sequence) { released = Array($0) })
            #expect(released == bytes)
        }
        #expect(held.isEmpty && !held.contains(1))
    }

    @Test func anArenaRefilledOnceEverythingIsReleasedKeepsItsSize() {
        var held = HeldMessages()
        for sequence in UInt64(1)...100 { Self.message(sequence).withUnsafeBytes { held.hold(sequence, $0) } }
        let capacity = held.arenaCapacity
        for round in UInt64(1)...50 {
            for sequence in UInt64(1)...100 { #expect(held.release(sequence) { _ in }) }
            #expect(held.isEmpty)
            for sequence in UInt64(1)...100 {
                Self.message(sequence &* round).withUnsafeBytes { held.hold(sequence, $0) }
            }
        }
        #expect(held.arenaCapacity == capacity)
        var released: [UInt8]?
        #expect(held.release(7) { released = Array($0) })
        #expect(released == Self.message(7 * 50))
    }
}
