import MarketData

/// An answer's messages, copied one after another into one buffer ([topic length: UInt16][payload length: UInt32]
/// [topic][payload] each): what an answer holds while it goes out over several turns.
struct AnswerMessages {
    private(set) var bytes: [UInt8] = []
    private(set) var count: UInt64 = 0
    private var readOffset = 0

    var isDrained: Bool { readOffset >= bytes.count }

    mutating func append(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) {
        withUnsafeBytes(of: UInt16(truncatingIfNeeded: topic.count).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: payload.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: topic)
        bytes.append(contentsOf: payload)
        count += 1
    }

    /// Empties it, keeping its storage (the scratch every answer is built in).
    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        count = 0
        readOffset = 0
    }

    /// Gives the next messages to `send`, at most `limit`, stopping early when `send` returns false (that message
    /// counts as taken). Returns how many were given.
    @discardableResult
    mutating func take(upTo limit: UInt64, _ send: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) -> UInt64 {
        var given: UInt64 = 0
        bytes.withUnsafeBytes { buffer in
            while given < limit, readOffset + 6 <= buffer.count {
                let topicLength = Int(buffer.loadUnaligned(fromByteOffset: readOffset, as: UInt16.self).littleEndian)
                let payloadLength = Int(buffer.loadUnaligned(fromByteOffset: readOffset + 2, as: UInt32.self)
                    .littleEndian)
                let topicStart = readOffset + 6
                let payloadStart = topicStart + topicLength
                readOffset = payloadStart + payloadLength
                given += 1
                let topic = UnsafeRawBufferPointer(rebasing: buffer[topicStart..<payloadStart])
                let payload = UnsafeRawBufferPointer(rebasing: buffer[payloadStart..<readOffset])
                if !send(topic, payload) { break }
            }
        }
        return given
    }
}

/// A snapshot or a symbol's replay from the ring too large to send at once: taken whole at the moment it was asked
/// (so it is exactly the state as of `streamSequence`, which its end names) and sent over the following turns, a
/// slice a turn, so that the live stream never waits behind more than a slice. The peer's later requests wait for it.
final class HeldAnswer {
    let identity: [UInt8]
    var messages: AnswerMessages
    /// What its end says: the stream_seq it was taken at, and whether it is whole.
    let streamSequence: UInt64
    let complete: Bool
    let error: String
    var sent: UInt64 = 0

    init(identity: [UInt8], messages: AnswerMessages, streamSequence: UInt64, complete: Bool, error: String) {
        self.identity = identity
        self.messages = messages
        self.streamSequence = streamSequence
        self.complete = complete
        self.error = error
    }

    var heldBytes: Int { messages.bytes.count }
}

extension PlantLoop {
    /// Sends the held answers' next ticks, as many as the answer budget allows this turn, to the oldest first (a
    /// peer's ticks go out together, so that its connection takes them in few writes); an answer whose peer stopped
    /// reading is cut, one fully sent gets its end, and then its peer's waiting requests are answered.
    func advanceHeldAnswers() {
        guard !heldAnswers.isEmpty, !answerBudget.isSpent else { return }
        flushOutbound()
        var allowance = max(UInt64(answerBudget.available), 16)
        var finished: [Int] = []
        var given: UInt64 = 0
        for index in heldAnswers.indices {
            guard allowance > 0 else { break }
            let held = heldAnswers[index]
            var cut = unreadPeers[held.identity] != nil
            if !cut {
                let taken = held.messages.take(upTo: allowance) { topic, payload in
                    guard replyTick(to: held.identity, topic: topic, payload: payload) else {
                        cut = true
                        return false
                    }
                    return true
                }
                given += taken
                allowance -= taken
                held.sent += cut ? taken - 1 : taken
            }
            if cut {
                answersCut += 1
                sendEnd(to: held.identity, count: held.sent, complete: false, error: Self.cutReason,
                    streamSequence: held.streamSequence)
            } else if held.messages.isDrained {
                sendEnd(to: held.identity, count: held.sent, complete: held.complete, error: held.error,
                    streamSequence: held.streamSequence)
            } else {
                continue
            }
            finished.append(index)
        }
        answerBudget.spend(given + UInt64(finished.count))
        var peersDone: [[UInt8]] = []
        for index in finished.reversed() {
            let held = heldAnswers.remove(at: index)
            heldAnswerBytes -= held.heldBytes
            peersDone.append(held.identity)
        }
        for identity in peersDone.reversed() { answerWaitingRequests(of: identity) }
    }
}
