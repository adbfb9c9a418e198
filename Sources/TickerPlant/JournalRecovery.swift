import Foundation
import Glibc
import MarketData

/// What a plant rebuilds from its journal when it starts: where its stream stood, the last value of every topic,
/// the latest published ticks for replays, and where each feed stood.
public struct JournalRecovery {
    /// Damage found and what was done about it.
    public struct Damage: Sendable, Equatable, CustomStringConvertible {
        public var segment: String
        public var offset: Int
        public var reason: JournalRecord.Damage
        /// Bytes cut from the damaged segment (kept beside it as `<segment>.damaged`).
        public var bytesCut: Int
        /// Later segments set aside (renamed `<segment>.damaged`): their records follow the damage.
        public var segmentsSetAside: [String]

        /// A torn tail: the last segment ends in a record a crash cut short. Nothing that was published is lost.
        public var isTornTail: Bool { reason == .truncated && segmentsSetAside.isEmpty }

        public var description: String {
            var text = "\(segment) at byte \(offset): \(reason); \(bytesCut) bytes cut"
            if !segmentsSetAside.isEmpty { text += ", later segments set aside: \(segmentsSetAside.joined(separator: ", "))" }
            return text
        }
    }

    /// The last value of one topic.
    public struct LastValue {
        public var topic: [UInt8]
        public var payload: [UInt8]
        public var symbolSequence: UInt64
    }

    public private(set) var streamSequence: UInt64 = 0
    public private(set) var lastValues: [LastValue] = []
    public private(set) var feedCursors: [UInt32: UInt64] = [:]
    /// Per symbol, where its symbol_seq 1, 1025, 2049 ... are in the stream (symbol replays from the journal).
    public private(set) var symbolCheckpoints: [String: [SymbolCheckpoint]] = [:]
    public private(set) var ring: TickRing
    /// Per symbol, the stream_seq of its newest tick: where its chain in `ring` starts (symbol replays).
    public private(set) var newestStreamSequenceOf: [String: UInt64] = [:]
    public private(set) var records: UInt64 = 0
    public private(set) var segments: [String] = []
    public private(set) var damage: Damage?
    /// The number the next segment takes.
    public private(set) var nextSegmentIndex = 1

    /// Reads every segment of `directory` in order; repairs damage as `Damage` says. A missing directory is an
    /// empty journal.
    public init(directory: String, ringCapacity: Int) throws {
        ring = TickRing(capacity: ringCapacity, linked: true)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".tpj") }.sorted()
        segments = names
        if let last = names.last, let index = Int(last.dropLast(4).split(separator: "-").last ?? "") {
            nextSegmentIndex = index + 1
        }
        var lastByTopic: [UInt64: Int] = [:]
        for (position, name) in names.enumerated() {
            let path = directory + "/" + name
            guard let data = readWholeFile(path) else {
                throw JournalError(description: "cannot read journal segment \(path)")
            }
            let result = data.withUnsafeBytes { bytes in scan(bytes, lastByTopic: &lastByTopic) }
            if let (offset, reason) = result {
                try repair(directory: directory, names: names, position: position, offset: offset, reason: reason,
                    segment: data)
                break
            }
        }
    }

    /// Scans one segment; returns where and why it stopped early, nil when it read to the end.
    private mutating func scan(_ bytes: UnsafeRawBufferPointer, lastByTopic: inout [UInt64: Int])
        -> (Int, JournalRecord.Damage)?
    {
        guard bytes.count >= JournalFormat.segmentHeaderLength else { return (0, .truncated) }
        guard bytes.starts(with: JournalFormat.magic),
            bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian == JournalFormat.version
        else { return (0, .malformedBody) }
        var offset = JournalFormat.segmentHeaderLength
        while offset < bytes.count {
            switch JournalRecord.read(bytes, at: offset) {
            case let .failure(reason):
                return (offset, reason)
            case let .success((record, next)):
                take(record, lastByTopic: &lastByTopic)
                offset = next
            }
        }
        return nil
    }

    private mutating func take(_ record: JournalRecord, lastByTopic: inout [UInt64: Int]) {
        records += 1
        streamSequence = max(streamSequence, record.streamSequence)
        if record.feedID != 0 { feedCursors[record.feedID] = record.feedSequence }
        ring.store(sequence: record.streamSequence, topic: record.topic, payload: record.payload,
            tag: record.symbolSequence)
        // Plant topics (#SYS, #Q|...) are not last values of a symbol.
        guard record.topic.first != UInt8(ascii: "#") else { return }
        let symbol = String(decoding: record.topic.prefix { $0 != UInt8(ascii: "|") }, as: UTF8.self)
        ring.link(record.streamSequence, toPrevious: newestStreamSequenceOf[symbol] ?? 0)
        newestStreamSequenceOf[symbol] = record.streamSequence
        if record.symbolSequence % SymbolCheckpoint.every == 1 {
            symbolCheckpoints[symbol, default: []].append(
                SymbolCheckpoint(symbolSequence: record.symbolSequence, streamSequence: record.streamSequence))
        }
        // One last value per topic and venue (the cache keeps every venue's and the consolidated one).
        let venue = Self.venueField(record.payload)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in record.topic { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = (hash ^ 0x7C) &* 0x100_0000_01b3
        for byte in venue { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        if let index = lastByTopic[hash], lastValues[index].topic.elementsEqual(record.topic) {
            lastValues[index].payload.removeAll(keepingCapacity: true)
            lastValues[index].payload.append(contentsOf: record.payload)
            lastValues[index].symbolSequence = record.symbolSequence
        } else {
            lastByTopic[hash] = lastValues.count
            lastValues.append(LastValue(topic: Array(record.topic), payload: Array(record.payload),
                symbolSequence: record.symbolSequence))
        }
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
                guard let length = varint(), offset + Int(length) <= payload.count else {
                    return UnsafeRawBufferPointer(start: nil, count: 0)
                }
                if key >> 3 == 3 { return UnsafeRawBufferPointer(rebasing: payload[offset..<(offset + Int(length))]) }
                offset += Int(length)
            default: return UnsafeRawBufferPointer(start: nil, count: 0)
            }
        }
        return UnsafeRawBufferPointer(start: nil, count: 0)
    }

    /// Keeps what came before the damage: the damaged tail goes beside the segment as `.damaged`, the segment is cut
    /// there, and later segments are set aside (their records came after the damage and would contradict what the
    /// plant publishes next).
    private mutating func repair(
        directory: String, names: [String], position: Int, offset: Int, reason: JournalRecord.Damage,
        segment data: [UInt8]
    ) throws {
        let path = directory + "/" + names[position]
        if offset < data.count {
            _ = FileManager.default.createFile(atPath: path + ".damaged", contents: Data(data[offset...]))
        }
        if offset <= JournalFormat.segmentHeaderLength {
            try? FileManager.default.moveItem(atPath: path, toPath: path + ".damaged-segment")
        } else if truncate(path, off_t(offset)) != 0 {
            throw JournalError(description: "cannot cut the damaged journal segment \(path): \(String(cString: strerror(errno)))")
        }
        var setAside: [String] = []
        for later in names[(position + 1)...] {
            try? FileManager.default.moveItem(atPath: directory + "/" + later, toPath: directory + "/" + later + ".damaged")
            setAside.append(later)
        }
        segments = Array(names[...position])
        damage = Damage(segment: names[position], offset: offset, reason: reason, bytesCut: data.count - offset,
            segmentsSetAside: setAside)
    }
}

/// Where a symbol's symbol_seq went out in the stream: every `every`th of them is kept, so that a symbol replay from
/// the journal reads from near where it is asked instead of from the journal's start.
public struct SymbolCheckpoint: Equatable, Sendable {
    public static let every: UInt64 = 1024
    public var symbolSequence: UInt64
    public var streamSequence: UInt64
}
