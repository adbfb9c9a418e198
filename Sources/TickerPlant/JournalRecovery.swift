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

    public typealias LastValue = JournalState.LastValue

    /// The stream, the last values, the feeds' positions and the symbols' checkpoints as the journal ends.
    public private(set) var state = JournalState()
    public var streamSequence: UInt64 { state.streamSequence }
    public var lastValues: [LastValue] { state.lastValues }
    public var feedCursors: [UInt32: UInt64] { state.feedCursors }
    public var symbolCheckpoints: [String: [SymbolCheckpoint]] { state.symbolCheckpoints }
    public var newestStreamSequenceOf: [String: UInt64] { state.newestStreamSequenceOf }
    /// Records the state holds, those before the checkpoint included.
    public var records: UInt64 { state.records }
    public private(set) var ring: TickRing
    /// The segments kept, and of them the ones read (those from the checkpoint's on).
    public private(set) var segments: [String] = []
    public private(set) var segmentsRead: [String] = []
    /// Records read from segments at this start.
    public private(set) var recordsRead: UInt64 = 0
    /// The checkpoint recovery started from (`NAME.tpc`: the state before segment `NAME.tpj`); nil when it read every
    /// segment.
    public private(set) var checkpoint: String?
    /// Checkpoints passed over, and why (unreadable, or not matching the segments).
    public private(set) var checkpointsRefused: [String] = []
    public private(set) var damage: Damage?
    /// The number the next segment takes.
    public private(set) var nextSegmentIndex = 1

    /// Bytes read from a segment at a time: recovery holds this much of the journal (and one largest record) in
    /// memory, whatever the segments' size.
    static let readChunkBytes = 4 << 20

    /// Starts from the newest checkpoint that reads whole and fits the segments (or from nothing), then reads the
    /// segments from its on, a chunk at a time; repairs damage as `Damage` says. A missing directory is an empty
    /// journal. `usingCheckpoints` false reads every segment (what a plant did before checkpoints; the bench's
    /// baseline).
    public init(directory: String, ringCapacity: Int, usingCheckpoints: Bool = true) throws {
        ring = TickRing(capacity: ringCapacity, linked: true)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".tpj") }.sorted()
        segments = names
        if let last = names.last, let index = Int(last.dropLast(4).split(separator: "-").last ?? "") {
            nextSegmentIndex = index + 1
        }
        var firstRead = 0
        for name in usingCheckpoints ? JournalCheckpoint.names(in: directory).reversed() : [] {
            let segment = JournalCheckpoint.segment(ofCheckpoint: name)
            guard let position = names.firstIndex(of: segment) else { continue }
            do {
                let state = try JournalCheckpoint.read(directory + "/" + name)
                // The checkpoint is the state before its segment: the segment's first record comes after it.
                if let first = JournalCursor.firstStreamSequence(directory + "/" + segment),
                    first <= state.streamSequence
                {
                    throw JournalError(description: "its stream_seq \(state.streamSequence) is not before \(segment)'s "
                        + "first record (\(first))")
                }
                self.state = state
                checkpoint = name
                firstRead = position
                break
            } catch {
                checkpointsRefused.append("\(name): \(error)")
            }
        }
        var buffer = journalScanBuffer()
        for (position, name) in names.enumerated() where position >= firstRead {
            let path = directory + "/" + name
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw JournalError(description: "cannot read journal segment \(path): \(String(cString: strerror(errno)))")
            }
            defer { Glibc.close(descriptor) }
            segmentsRead.append(name)
            guard let stop = try scanJournalSegment(descriptor, path: path, buffer: &buffer, { take($0) }) else {
                continue
            }
            try repair(directory: directory, names: names, position: position, offset: stop.offset,
                reason: stop.reason, descriptor: descriptor)
            break
        }
    }

    private mutating func take(_ record: JournalRecord) {
        recordsRead += 1
        ring.store(sequence: record.streamSequence, topic: record.topic, payload: record.payload,
            tag: record.symbolSequence)
        if let previous = state.take(record) { ring.link(record.streamSequence, toPrevious: previous) }
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
