/// A MoldUDP64 downstream packet (Nasdaq MoldUDP64 v1.0): a 20-byte header, then `messageCount` messages each
/// preceded by a 2-byte length. Read in place; nothing is copied.
public struct MoldPacket {
    public static let headerLength = 20
    /// Message count of a heartbeat: the session is alive, `sequenceNumber` is the next one to come.
    public static let heartbeatCount: UInt16 = 0
    /// Message count that ends the session.
    public static let endOfSessionCount: UInt16 = 0xFFFF

    public let bytes: UnsafeRawBufferPointer

    /// The largest sequence number a packet may carry (its messages' included): 2^63 - 1, which a venue sending ten
    /// million messages a second reaches in 29 000 years. Anything above is not a real venue's, and refusing it keeps
    /// every sum of a sequence and a count below 2^64.
    public static let maximumSequence = UInt64(Int64.max)

    /// Checks the header; the messages are checked as they are read.
    public init(_ bytes: UnsafeRawBufferPointer) throws(FeedParseError) {
        guard bytes.count >= MoldPacket.headerLength else {
            throw .truncatedPacket(length: bytes.count, needed: MoldPacket.headerLength)
        }
        self.bytes = bytes
        guard sequenceNumber <= MoldPacket.maximumSequence - UInt64(messageCount) else {
            throw .sequenceOutOfRange(sequenceNumber)
        }
    }

    /// The sequence number that follows this packet's messages (a heartbeat's or an end of session's own).
    public var nextSequence: UInt64 {
        isHeartbeat || isEndOfSession ? sequenceNumber : sequenceNumber + UInt64(messageCount)
    }

    /// The 10 session bytes (ASCII, space padded) as one comparable value.
    public var session: MoldSession { MoldSession(bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<10])) }
    public var sequenceNumber: UInt64 { bytes.u64(10) }
    public var messageCount: UInt16 { bytes.u16(18) }
    public var isHeartbeat: Bool { messageCount == MoldPacket.heartbeatCount }
    public var isEndOfSession: Bool { messageCount == MoldPacket.endOfSessionCount }

    /// Calls `body` with each message's sequence number and bytes. Stops at the first message that overruns the
    /// packet and throws, after handing over the ones before it.
    public func forEachMessage(_ body: (UInt64, UnsafeRawBufferPointer) -> Void) throws(FeedParseError) {
        guard !isHeartbeat, !isEndOfSession else { return }
        var offset = MoldPacket.headerLength
        var sequence = sequenceNumber
        for _ in 0..<messageCount {
            guard offset + 2 <= bytes.count else {
                throw .truncatedPacket(length: bytes.count, needed: offset + 2)
            }
            let length = Int(bytes.u16(offset))
            offset += 2
            guard offset + length <= bytes.count else {
                throw .truncatedPacket(length: bytes.count, needed: offset + length)
            }
            body(sequence, UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]))
            offset += length
            sequence += 1
        }
    }

    /// Builds a packet (the simulator, the retransmission server and the tests).
    public static func encode(session: String, sequenceNumber: UInt64, messages: [[UInt8]]) -> [UInt8] {
        var writer = BigEndianWriter(capacity: 20 + messages.reduce(0) { $0 + 2 + $1.count })
        writer.alpha(session, width: 10)
        writer.u64(sequenceNumber)
        writer.u16(UInt16(messages.count))
        for message in messages {
            writer.u16(UInt16(message.count))
            writer.append(message)
        }
        return writer.bytes
    }

    public static func heartbeat(session: String, nextSequence: UInt64) -> [UInt8] {
        var writer = BigEndianWriter(capacity: 20)
        writer.alpha(session, width: 10)
        writer.u64(nextSequence)
        writer.u16(heartbeatCount)
        return writer.bytes
    }
}

/// A MoldUDP64 session name: 10 ASCII bytes kept as two integers so comparing sessions never allocates.
public struct MoldSession: Hashable, Sendable, CustomStringConvertible {
    let high: UInt64
    let low: UInt16

    init(bytes: UnsafeRawBufferPointer) {
        high = bytes.u64(0)
        low = bytes.u16(8)
    }

    public init(_ text: String) {
        var writer = BigEndianWriter(capacity: 10)
        writer.alpha(text, width: 10)
        let bytes = writer.bytes
        self = bytes.withUnsafeBytes { MoldSession(bytes: $0) }
    }

    public var description: String {
        var writer = BigEndianWriter(capacity: 10)
        writer.u64(high)
        writer.u16(low)
        return String(decoding: writer.bytes, as: UTF8.self).trimmingTrailingSpaces()
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var text = Substring(self)
        while text.last == " " { text = text.dropLast() }
        return String(text)
    }
}

/// Why a packet or message from a venue was skipped. Each is counted; none stops the feed.
public enum FeedParseError: Error, Equatable, CustomStringConvertible {
    case truncatedPacket(length: Int, needed: Int)
    case truncatedMessage(type: UInt8, length: Int, needed: Int)
    case unknownMessageType(UInt8)
    case emptyMessage
    case sequenceOutOfRange(UInt64)

    public var description: String {
        switch self {
        case let .truncatedPacket(length, needed):
            "truncated MoldUDP64 packet: \(length) bytes, needed \(needed)"
        case let .truncatedMessage(type, length, needed):
            "truncated ITCH message '\(Character(Unicode.Scalar(type)))': \(length) bytes, needed \(needed)"
        case let .unknownMessageType(type): "unknown ITCH message type 0x\(String(type, radix: 16))"
        case .emptyMessage: "empty ITCH message"
        case let .sequenceOutOfRange(sequence):
            "MoldUDP64 sequence number \(sequence) beyond \(MoldPacket.maximumSequence), the largest taken"
        }
    }
}
