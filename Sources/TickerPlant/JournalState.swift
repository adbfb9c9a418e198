import Foundation
import Glibc
import MarketData

/// What a journal says as of a point in it: where the stream and each feed stood, the last value of every topic, and
/// where each symbol's ticks are. Recovery builds it by reading records; a checkpoint (`JournalCheckpoint`) holds it
/// as of a segment's start, so that a restart reads only the segments after the newest checkpoint.
public struct JournalState: Sendable, Equatable {
    /// The last value of one topic.
    public struct LastValue: Sendable, Equatable {
        public var topic: [UInt8]
        public var payload: [UInt8]
        public var symbolSequence: UInt64
    }

    public internal(set) var streamSequence: UInt64 = 0
    /// Records taken into this state since the journal began (those before a checkpoint included).
    public internal(set) var records: UInt64 = 0
    public internal(set) var lastValues: [LastValue] = []
    public internal(set) var feedCursors: [UInt32: UInt64] = [:]
    /// Per symbol, where its symbol_seq 1, 1025, 2049 ... are in the stream (symbol replays from the journal).
    public internal(set) var symbolCheckpoints: [String: [SymbolCheckpoint]] = [:]
    /// Per symbol, the stream_seq of its newest tick: where its chain in the replay ring starts.
    public internal(set) var newestStreamSequenceOf: [String: UInt64] = [:]
    /// Where each (topic, venue)'s last value is in `lastValues`, by a hash of both.
    private var lastValueIndex: [UInt64: Int] = [:]

    public init() {}

    public static func == (left: JournalState, right: JournalState) -> Bool {
        left.streamSequence == right.streamSequence && left.records == right.records
            && left.lastValues == right.lastValues && left.feedCursors == right.feedCursors
            && left.symbolCheckpoints == right.symbolCheckpoints
            && left.newestStreamSequenceOf == right.newestStreamSequenceOf
    }

    /// Takes one record. Returns the symbol's newest stream_seq before it (0 for its first tick), for the replay
    /// ring's chain; nil for plant topics (`#SYS`, `#Q|...`), which are no symbol's.
    @discardableResult
    mutating func take(_ record: JournalRecord) -> UInt64? {
        records += 1
        streamSequence = max(streamSequence, record.streamSequence)
        if record.feedID != 0 { feedCursors[record.feedID] = record.feedSequence }
        guard record.topic.first != UInt8(ascii: "#") else { return nil }
        let symbol = String(decoding: record.topic.prefix { $0 != UInt8(ascii: "|") }, as: UTF8.self)
        let previous = newestStreamSequenceOf[symbol] ?? 0
        newestStreamSequenceOf[symbol] = record.streamSequence
        if record.symbolSequence % SymbolCheckpoint.every == 1 {
            symbolCheckpoints[symbol, default: []].append(
                SymbolCheckpoint(symbolSequence: record.symbolSequence, streamSequence: record.streamSequence))
        }
        // One last value per topic and venue (the cache keeps every venue's and the consolidated one).
        let key = Self.lastValueKey(topic: record.topic, payload: record.payload)
        if let index = lastValueIndex[key], lastValues[index].topic.elementsEqual(record.topic) {
            lastValues[index].payload.removeAll(keepingCapacity: true)
            lastValues[index].payload.append(contentsOf: record.payload)
            lastValues[index].symbolSequence = record.symbolSequence
        } else {
            lastValueIndex[key] = lastValues.count
            lastValues.append(LastValue(topic: Array(record.topic), payload: Array(record.payload),
                symbolSequence: record.symbolSequence))
        }
        return previous
    }

    /// A state read from a checkpoint: its last values indexed as `take` would have left them.
    init(streamSequence: UInt64, records: UInt64, lastValues: [LastValue], feedCursors: [UInt32: UInt64],
        symbolCheckpoints: [String: [SymbolCheckpoint]], newestStreamSequenceOf: [String: UInt64])
    {
        self.streamSequence = streamSequence
        self.records = records
        self.lastValues = lastValues
        self.feedCursors = feedCursors
        self.symbolCheckpoints = symbolCheckpoints
        self.newestStreamSequenceOf = newestStreamSequenceOf
        for (index, value) in lastValues.enumerated() {
            value.topic.withUnsafeBytes { topic in
                value.payload.withUnsafeBytes { payload in
                    lastValueIndex[Self.lastValueKey(topic: topic, payload: payload)] = index
                }
            }
        }
    }

    /// FNV-1a of the topic, a `|`, and the tick's venue.
    private static func lastValueKey(topic: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in topic { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ 0x7C) &* 0x100_0000_01b3
        for byte in venueField(payload) { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// The bytes of field 3 (venue) of an encoded Tick, found without decoding the rest; empty when absent.
    static func venueField(_ payload: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var offset = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while offset < payload.count && shift < 64 {
                let byte = payload[offset]
                offset += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while offset < payload.count {
            guard let key = varint() else { break }
            switch key & 7 {
            case 0: guard varint() != nil else { return UnsafeRawBufferPointer(start: nil, count: 0) }
            case 1: offset += 8
            case 5: offset += 4
            case 2:
                guard let length = varint(), length <= UInt64(payload.count - offset) else {
                    return UnsafeRawBufferPointer(start: nil, count: 0)
                }
                if key >> 3 == 3 { return UnsafeRawBufferPointer(rebasing: payload[offset..<(offset + Int(length))]) }
                offset += Int(length)
            default: return UnsafeRawBufferPointer(start: nil, count: 0)
            }
        }
        return UnsafeRawBufferPointer(start: nil, count: 0)
    }
}

/// Where a symbol's symbol_seq went out in the stream: every `every`th of them is kept, so that a symbol replay from
/// the journal reads from near where it is asked instead of from the journal's start.
public struct SymbolCheckpoint: Equatable, Sendable {
    public static let every: UInt64 = 1024
    public var symbolSequence: UInt64
    public var streamSequence: UInt64
}

/// Reads one segment from its descriptor a chunk at a time, handing each whole record to `body`; returns where and
/// why it stopped early, nil when it read to the end. `buffer` holds a chunk and room for one largest record.
func scanJournalSegment(
    _ descriptor: Int32, path: String, buffer: inout [UInt8], _ body: (JournalRecord) -> Void
) throws -> (offset: Int, reason: JournalRecord.Damage)? {
    var filled = 0
    // The segment's offset of buffer[0].
    var bufferStart = 0
    var atEnd = false
    var checkedHeader = false
    while true {
        while filled < buffer.count && !atEnd {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw JournalError(description: "cannot read journal segment \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { atEnd = true } else { filled += count }
        }
        var consumed = 0
        var stop: (offset: Int, reason: JournalRecord.Damage)?
        buffer.withUnsafeBytes { all in
            let bytes = UnsafeRawBufferPointer(rebasing: all[..<filled])
            if !checkedHeader {
                guard bytes.count >= JournalFormat.segmentHeaderLength else {
                    stop = (0, .truncated)
                    return
                }
                guard bytes.starts(with: JournalFormat.magic),
                    bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian == JournalFormat.version
                else {
                    stop = (0, .malformedBody)
                    return
                }
                consumed = JournalFormat.segmentHeaderLength
                checkedHeader = true
            }
            while consumed < bytes.count {
                switch JournalRecord.read(bytes, at: consumed) {
                case .failure(.truncated) where !atEnd:
                    return
                case let .failure(reason):
                    stop = (bufferStart + consumed, reason)
                    return
                case let .success((record, next)):
                    body(record)
                    consumed = next
                }
            }
        }
        if let stop { return stop }
        if atEnd { return nil }
        let left = filled - consumed
        buffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + consumed, byteCount: left) }
        bufferStart += consumed
        filled = left
    }
}

/// The buffer `scanJournalSegment` reads into: a chunk (recovery holds this much of the journal in memory, whatever
/// the segments' size) and room for one whole record cut at a chunk's end.
func journalScanBuffer() -> [UInt8] {
    [UInt8](repeating: 0,
        count: JournalRecovery.readChunkBytes + JournalFormat.recordHeaderLength + JournalFormat.maximumBodyLength)
}
