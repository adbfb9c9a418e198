import CChecksum

/// The plant's journal on disk: segment files of length-prefixed, checksummed records, one per published message
/// (every tick with a stream_seq; heartbeats are not journaled).
///
/// A segment starts with the 8 bytes `TPJ1` and a little-endian u32 format version. Each record is
///
///     u32 body length, u32 CRC-32C of the body, then the body:
///     u64 stream_seq, u64 symbol_seq (0 for plant topics), u32 feed id, u64 feed stream_seq,
///     u16 topic length, the topic, the encoded Tick (the rest of the body)
///
/// all little-endian. The feed id (FNV-1a of the feed's endpoint; 0 for ticks the plant made itself) and the feed's
/// stream_seq say where each feed stood, so that a restarted plant asks each feedd for exactly what it missed. The
/// body is exactly what the plant publishes, so a batch of records is written as it is and then sent from the same
/// bytes.
public enum JournalFormat {
    public static let magic: [UInt8] = Array("TPJ1".utf8)
    public static let version: UInt32 = 1
    public static let segmentHeaderLength = 8
    public static let recordHeaderLength = 8
    /// The body's fixed part before the topic.
    public static let fixedBodyLength = 30
    /// The largest body a reader accepts; a length beyond it is damage, not a record.
    public static let maximumBodyLength = 1 << 20

    public static func segmentHeader() -> [UInt8] {
        var bytes = magic
        appendLittleEndian(version, to: &bytes)
        return bytes
    }

    /// The feed id of an endpoint: FNV-1a, never 0 (0 is the plant itself).
    public static func feedID(_ endpoint: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in endpoint.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash == 0 ? 1 : hash
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        tickplant_crc32c(0, bytes.baseAddress, bytes.count)
    }

    static func appendLittleEndian<Value: FixedWidthInteger>(_ value: Value, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// One record read back from a journal. The buffers point into the reader's memory and live as long as it does.
public struct JournalRecord {
    public var streamSequence: UInt64
    public var symbolSequence: UInt64
    public var feedID: UInt32
    public var feedSequence: UInt64
    public var topic: UnsafeRawBufferPointer
    public var payload: UnsafeRawBufferPointer

    /// Why bytes at an offset are not a record.
    public enum Damage: Error, Equatable, Sendable, CustomStringConvertible {
        /// The file ends inside the record: a write cut short (a crash while appending).
        case truncated
        /// The length cannot be a record's.
        case badLength(UInt32)
        /// The checksum does not match the body.
        case badChecksum
        /// The body's own lengths do not add up.
        case malformedBody

        public var description: String {
            switch self {
            case .truncated: "the file ends inside a record"
            case let .badLength(length): "record length \(length) is impossible"
            case .badChecksum: "checksum mismatch"
            case .malformedBody: "record fields do not add up"
            }
        }
    }

    /// Reads the record at `offset` of `bytes`; returns it and the offset after it, or what is wrong there.
    /// `verifyingChecksum` false skips the checksum for bytes this process just wrote.
    public static func read(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, verifyingChecksum: Bool = true
    ) -> Result<(JournalRecord, Int), Damage> {
        guard bytes.count - offset >= JournalFormat.recordHeaderLength else { return .failure(.truncated) }
        let length = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        guard length >= JournalFormat.fixedBodyLength, length <= JournalFormat.maximumBodyLength else {
            return .failure(.badLength(length))
        }
        let bodyStart = offset + JournalFormat.recordHeaderLength
        guard bytes.count - bodyStart >= Int(length) else { return .failure(.truncated) }
        let body = UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<(bodyStart + Int(length))])
        let expected = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian
        guard !verifyingChecksum || JournalFormat.checksum(body) == expected else { return .failure(.badChecksum) }
        let topicLength = Int(body.loadUnaligned(fromByteOffset: 28, as: UInt16.self).littleEndian)
        guard JournalFormat.fixedBodyLength + topicLength <= body.count else { return .failure(.malformedBody) }
        let topicEnd = JournalFormat.fixedBodyLength + topicLength
        let record = JournalRecord(
            streamSequence: body.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian,
            symbolSequence: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian,
            feedID: body.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian,
            feedSequence: body.loadUnaligned(fromByteOffset: 20, as: UInt64.self).littleEndian,
            topic: UnsafeRawBufferPointer(rebasing: body[JournalFormat.fixedBodyLength..<topicEnd]),
            payload: UnsafeRawBufferPointer(rebasing: body[topicEnd...]))
        return .success((record, bodyStart + Int(length)))
    }
}

/// The messages of one publishing turn, laid out as journal records: written to the journal in one call, then sent
/// from the same bytes. Reused turn after turn, so that it allocates nothing once it has grown.
public struct OutboundBatch {
    /// Grown, never shrunk: the turn's records are its first `byteCount` bytes. A record is written straight into
    /// the room after them (nothing zeroed or trimmed per record: both showed in plantd's profile).
    private var storage: [UInt8] = []
    public private(set) var byteCount = 0
    /// Where each record starts.
    private var starts: [Int] = []
    /// Whether records carry their checksum: only a journal reads it, so a plantd without one skips computing it.
    public let checksummed: Bool

    public init(checksummed: Bool = true) {
        self.checksummed = checksummed
        storage = [UInt8](repeating: 0, count: 1 << 16)
        starts.reserveCapacity(1024)
    }

    public var count: Int { starts.count }
    public var isEmpty: Bool { starts.isEmpty }

    /// Calls `body` with the turn's records as they go to the journal (valid during the call).
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<byteCount])) }
    }

    public mutating func append(
        streamSequence: UInt64, symbolSequence: UInt64, feedID: UInt32, feedSequence: UInt64,
        topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer
    ) {
        append(streamSequence: streamSequence, symbolSequence: symbolSequence, feedID: feedID,
            feedSequence: feedSequence, topic: topic, payloadAtMost: payload.count) { destination in
            if let source = payload.baseAddress { destination.baseAddress!.copyMemory(from: source, byteCount: payload.count) }
            return payload.count
        }
    }

    /// Appends a record whose payload `writePayload` lays straight into the batch (at most `maximumPayload` bytes;
    /// it returns how many it wrote, or nil when it could not, and then nothing is appended). Returns whether the
    /// record was appended. The record is written in place: no intermediate buffer, one growth check.
    @discardableResult
    public mutating func append(
        streamSequence: UInt64, symbolSequence: UInt64, feedID: UInt32, feedSequence: UInt64,
        topic: UnsafeRawBufferPointer, payloadAtMost maximumPayload: Int,
        _ writePayload: (UnsafeMutableRawBufferPointer) -> Int?
    ) -> Bool {
        let start = byteCount
        let bodyStart = start + JournalFormat.recordHeaderLength
        let payloadStart = bodyStart + JournalFormat.fixedBodyLength + topic.count
        let end = payloadStart + maximumPayload
        if end > storage.count {
            storage.append(contentsOf: repeatElement(0, count: max(end, storage.count * 2) - storage.count))
        }
        let checksummed = self.checksummed
        let payloadLength: Int? = storage.withUnsafeMutableBytes { all in
            guard let written = writePayload(UnsafeMutableRawBufferPointer(rebasing: all[payloadStart..<end])) else {
                return nil
            }
            let base = all.baseAddress!
            let bodyLength = JournalFormat.fixedBodyLength + topic.count + written
            base.storeBytes(of: UInt32(bodyLength).littleEndian, toByteOffset: start, as: UInt32.self)
            base.storeBytes(of: streamSequence.littleEndian, toByteOffset: bodyStart, as: UInt64.self)
            base.storeBytes(of: symbolSequence.littleEndian, toByteOffset: bodyStart + 8, as: UInt64.self)
            base.storeBytes(of: feedID.littleEndian, toByteOffset: bodyStart + 16, as: UInt32.self)
            base.storeBytes(of: feedSequence.littleEndian, toByteOffset: bodyStart + 20, as: UInt64.self)
            base.storeBytes(of: UInt16(topic.count).littleEndian, toByteOffset: bodyStart + 28, as: UInt16.self)
            if let source = topic.baseAddress {
                (base + bodyStart + JournalFormat.fixedBodyLength).copyMemory(from: source, byteCount: topic.count)
            }
            let checksum = checksummed
                ? JournalFormat.checksum(UnsafeRawBufferPointer(start: base + bodyStart, count: bodyLength)) : 0
            base.storeBytes(of: checksum.littleEndian, toByteOffset: start + 4, as: UInt32.self)
            return written
        }
        guard let payloadLength else { return false }
        byteCount = payloadStart + payloadLength
        starts.append(start)
        lastPayload = payloadStart ..< payloadStart + payloadLength
        return true
    }

    /// Where the payload of the record appended last lies in `storage`.
    private var lastPayload = 0 ..< 0

    /// Calls `body` with the payload of the record appended last (valid during the call).
    public func withLastPayload<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[lastPayload])) }
    }

    /// Calls `body` with each record in order.
    public func forEach(_ body: (JournalRecord) -> Void) {
        withBytes { all in
            for start in starts {
                guard case let .success((record, _)) = JournalRecord.read(all, at: start, verifyingChecksum: false)
                else { continue }
                body(record)
            }
        }
    }

    public mutating func removeAll() {
        byteCount = 0
        starts.removeAll(keepingCapacity: true)
        lastPayload = 0 ..< 0
    }
}
