import MarketData
import Testing

/// The replay ring against the plainest model of it: a list of the last `capacity` ticks stored.
@Suite struct TickRingTests {
    struct Stored: Equatable {
        var sequence: UInt64
        var topic: [UInt8]
        var payload: [UInt8]
        var tag: UInt64
    }

    func everything(in ring: TickRing) -> [Stored] {
        var out: [Stored] = []
        _ = ring.forEach(from: 0, maxCount: .max) { sequence, topic, payload in
            out.append(Stored(sequence: sequence, topic: Array(topic), payload: Array(payload), tag: 0))
        }
        return out
    }

    /// Ticks of very different sizes (as BOOKs beside TRADEs), many times round the ring: it keeps exactly the last
    /// `capacity`, byte for byte, however often its arena wraps or grows. Runs of tiny ticks alternate with runs of
    /// big ones, so that the newest tick often lands right against the oldest one kept. Arenas made for 1-byte ticks
    /// grow all the time; those made for the usual size grow when the big runs come.
    @Test(arguments: [1, TickRing.expectedTickBytes])
    func keepsTheLastCapacityTicksByteForByte(expectedTickBytes: Int) {
        var random = SplitMix64(seed: 42)
        for capacity in [1, 2, 7, 100, 1_000] {
            var ring = TickRing(capacity: capacity, expectedTickBytes: expectedTickBytes)
            var model: [Stored] = []
            for sequence in UInt64(1)...5_000 {
                let big = (sequence / 300) % 2 == 1
                let size = Int(random.next() % (big ? 400 : 12))
                let topic = Array("S\(random.next() % 9)|T".utf8)
                let payload = (0..<size).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                topic.withUnsafeBytes { topicBytes in
                    payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topicBytes, payload: $0, tag: sequence * 3) }
                }
                model.append(Stored(sequence: sequence, topic: topic, payload: payload, tag: 0))
                if model.count > capacity { model.removeFirst() }
                if sequence % 7 == 0 || sequence == 5_000 {
                    let kept = everything(in: ring)
                    let firstWrong = zip(kept, model).first { $0 != $1 }.map { "\($0.0.sequence)" }
                    #expect(kept.count == model.count && firstWrong == nil,
                        "capacity \(capacity) after \(sequence): \(kept.count) kept, first wrong: \(firstWrong ?? "-")")
                    #expect(ring.firstSequence == model.first!.sequence && ring.lastSequence == sequence)
                }
            }
            // A stream replay from a tick no longer kept says so; one from a kept tick starts there.
            let early = ring.forEach(from: ring.firstSequence - 1, maxCount: 3) { _, _, _ in }
            #expect(!early.complete || capacity >= 5_000)
            var firstGiven: UInt64 = 0
            let kept = ring.forEach(from: ring.lastSequence, maxCount: 3) { sequence, _, _ in firstGiven = sequence }
            #expect(kept.complete && kept.count == 1 && firstGiven == 5_000)
        }
    }

    /// The arena is made for `capacity` ticks of the expected size at once: ticks of that size never make it grow
    /// (growing copies every tick kept, which held the publishing thread for milliseconds).
    @Test func ticksOfTheExpectedSizeNeverMakeTheArenaGrow() {
        var ring = TickRing(capacity: 1_000, expectedTickBytes: 100)
        let made = ring.arenaBytes
        #expect(made >= 100_000)
        let topic = Array("AAPL|T".utf8)
        let payload = [UInt8](repeating: 7, count: 100 - topic.count)
        for sequence in UInt64(1)...5_000 {
            topic.withUnsafeBytes { topicBytes in
                payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topicBytes, payload: $0) }
            }
        }
        #expect(ring.arenaBytes == made && ring.firstSequence == 4_001)
        // Bigger ticks than expected: it grows, and keeps them all.
        let big = [UInt8](repeating: 9, count: 400)
        for sequence in UInt64(5_001)...6_000 {
            topic.withUnsafeBytes { topicBytes in
                big.withUnsafeBytes { ring.store(sequence: sequence, topic: topicBytes, payload: $0) }
            }
        }
        #expect(ring.arenaBytes > made && everything(in: ring).allSatisfy { $0.payload == big })
        #expect(ring.firstSequence == 5_001 && ring.lastSequence == 6_000)
    }

    /// A symbol replay: ticks of one topic prefix with their tags from a given tag on, and the oldest tag kept.
    @Test func servesOneTopicFromATag() {
        var ring = TickRing(capacity: 10)
        for sequence in UInt64(1)...30 {
            let topic = Array((sequence % 2 == 0 ? "AAPL|T" : "MSFT|Q").utf8)
            let payload = [UInt8(sequence)]
            topic.withUnsafeBytes { topicBytes in
                payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topicBytes, payload: $0, tag: sequence / 2) }
            }
        }
        var payloads: [UInt8] = []
        let result = ring.forEach(topicPrefix: Array("AAPL|".utf8), fromTag: 13) { _, _, payload in
            payloads.append(payload[0])
        }
        // Kept: 21...30; AAPL's are the even ones, tags 11...15; from tag 13 on: 26, 28, 30.
        #expect(payloads == [26, 28, 30] && result.count == 3 && result.oldestTag == 11)
    }

    /// A symbol's ticks linked newest to oldest (as plantd links them) give the same replay as a walk of every tick
    /// kept, many laps round the ring: from any tag, the ticks of the symbol with that tag or later, oldest first, and
    /// whether the ring reaches back to that tag. A link into a lap gone is never followed.
    @Test func aLinkedSymbolReplaysWhatAWalkOfEveryTickFinds() {
        var random = SplitMix64(seed: 7)
        for capacity in [1, 5, 64, 1_000] {
            var ring = TickRing(capacity: capacity, expectedTickBytes: 16, linked: true)
            let symbols = ["AAPL", "MSFT", "IBM", "AAPLX"]
            var newest = [UInt64](repeating: 0, count: symbols.count)
            var symbolSequence = [UInt64](repeating: 0, count: symbols.count)
            for sequence in UInt64(1)...6_000 {
                // Zipf-like: the first symbols trade most; now and then a plant topic, in no chain.
                let pick = Int(random.next() % 10)
                let symbol = pick < 5 ? 0 : pick < 8 ? 1 : pick < 9 ? 2 : 3
                let plant = random.next() % 50 == 0
                let topic = Array((plant ? "#SYS" : symbols[symbol] + "|T").utf8)
                var tag: UInt64 = 0
                if !plant {
                    symbolSequence[symbol] += 1
                    tag = symbolSequence[symbol]
                    ring.link(sequence, toPrevious: newest[symbol])
                    newest[symbol] = sequence
                }
                let payload = [UInt8(truncatingIfNeeded: sequence)]
                topic.withUnsafeBytes { topicBytes in
                    payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topicBytes, payload: $0, tag: tag) }
                }
                guard sequence % 97 == 0 else { continue }
                for (index, name) in symbols.enumerated() {
                    let prefix = Array((name + "|").utf8)
                    for fromTag in [1, symbolSequence[index] / 2, symbolSequence[index], symbolSequence[index] + 1] {
                        var scanned: [UInt64] = []
                        let scan = ring.forEach(topicPrefix: prefix, fromTag: fromTag) { sequence, _, _ in
                            scanned.append(sequence)
                        }
                        let chain = ring.chain(from: newest[index], fromTag: fromTag)
                        #expect(chain.sequences == scanned, "\(name) from tag \(fromTag), capacity \(capacity)")
                        // Reaching back: the scan's oldest tag kept is at most fromTag exactly when the chain's is.
                        let scanReaches = scan.oldestTag.map { $0 <= fromTag } ?? false
                        let chainReaches = chain.oldestTag.map { $0 <= fromTag } ?? false
                        #expect(scanReaches == chainReaches, "\(name) from tag \(fromTag), capacity \(capacity)")
                        var given: [UInt64] = []
                        ring.forEach(chain.sequences) { sequence, topic, _ in
                            #expect(topic.starts(with: prefix))
                            given.append(sequence)
                        }
                        #expect(given == chain.sequences)
                    }
                }
            }
        }
        // A ring made without links has no chains.
        #expect(TickRing(capacity: 4).chain(from: 1, fromTag: 1).sequences.isEmpty)
    }

    /// A stream_seq that does not follow the previous one starts the ring afresh (what came before cannot be served
    /// as one stream with it).
    @Test func aJumpInTheSequenceStartsAfresh() {
        var ring = TickRing(capacity: 10)
        let payload: [UInt8] = [1, 2, 3]
        for sequence: UInt64 in [1, 2, 3, 10, 11] {
            Array("A|T".utf8).withUnsafeBytes { topic in
                payload.withUnsafeBytes { ring.store(sequence: sequence, topic: topic, payload: $0) }
            }
        }
        #expect(ring.firstSequence == 10 && ring.lastSequence == 11)
        #expect(everything(in: ring).map(\.sequence) == [10, 11])
    }
}
