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

    /// Bytes read from a segment at a time: recovery holds this much of the journal (and one largest record) in
    /// memory, whatever the segments' size.
    static let readChunkBytes = 4 << 20

    /// Reads every segment of `directory` in order, a chunk at a time; repairs damage as `Damage` says. A missing
    /// directory is an empty journal.
    public init(directory: String, ringCapacity: Int) throws {
        ring = TickRing(capacity: ringCapacity, linked: true)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".tpj") }.sorted()
        segments = names
        if let last = names.last, let index = Int(last.dropLast(4).split(separator: "-").last ?? "") {
            nextSegmentIndex = index + 1
        }
        var lastByTopic: [UInt64: Int] = [:]
        // A record cut at a chunk's end moves to the front, and the next read completes it: room for one whole.
        var buffer = [UInt8](repeating: 0,
            count: Self.readChunkBytes + JournalFormat.recordHeaderLength + JournalFormat.maximumBodyLength)
        for (position, name) in names.enumerated() {
            let path = directory + "/" + name
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw JournalError(description: "cannot read journal segment \(path): \(String(cString: strerror(errno)))")
            }
            defer { Glibc.close(descriptor) }
            guard let stop = try scan(descriptor, path: path, buffer: &buffer, lastByTopic: &lastByTopic) else {
                continue
            }
            try repair(directory: directory, names: names, position: position, offset: stop.offset,
                reason: stop.reason, descriptor: descriptor)
            break
        }
    }

    /// Scans one segment from its descriptor; returns where and why it stopped early, nil when it read to the end.
    private mutating func scan(
        _ descriptor: Int32, path: String, buffer: inout [UInt8], lastByTopic: inout [UInt64: Int]
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
                        take(record, lastByTopic: &lastByTopic)
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
        descriptor: Int32
    ) throws {
        let path = directory + "/" + names[position]
        let size = Int(lseek(descriptor, 0, SEEK_END))
        if offset < size { Self.copy(descriptor, from: offset, to: path + ".damaged") }
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
        damage = Damage(segment: names[position], offset: offset, reason: reason, bytesCut: max(size - offset, 0),
            segmentsSetAside: setAside)
    }

    /// Copies a file's bytes from `offset` to its end into a new file `destination` (kept for a person to look at;
    /// best effort: recovery goes on without it).
    private static func copy(_ descriptor: Int32, from offset: Int, to destination: String) {
        let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard output >= 0 else { return }
        defer { Glibc.close(output) }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var position = offset
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(position)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            let written = chunk.withUnsafeBytes { write(output, $0.baseAddress, count) }
            guard written == count else { return }
            position += count
        }
    }
}

/// Where a symbol's symbol_seq went out in the stream: every `every`th of them is kept, so that a symbol replay from
/// the journal reads from near where it is asked instead of from the journal's start.
public struct SymbolCheckpoint: Equatable, Sendable {
    public static let every: UInt64 = 1024
    public var symbolSequence: UInt64
    public var streamSequence: UInt64
}
