import Foundation
import Glibc
import Synchronization

/// A journal's state as of a segment's start, on disk beside it as `NAME.tpc` for segment `NAME.tpj`: a restart
/// reads the newest checkpoint and the segments from its on, not every segment kept.
///
/// The file is the 4 bytes `TPC1`, a little-endian u32 format version, then, all little-endian:
///
///     u64 stream_seq, u64 records
///     u32 feeds, each: u32 feed id, u64 feed stream_seq
///     u32 last values, each: u16 topic length, u32 payload length, u64 symbol_seq, the topic, the payload
///     u32 symbols, each: u16 name length, the name, u64 newest stream_seq,
///                        u32 checkpoints, each: u64 symbol_seq, u64 stream_seq
///     u32 CRC-32C of every byte before it
///
/// It is written whole under another name and renamed, so a reader sees a whole checkpoint or none.
public enum JournalCheckpoint {
    public static let magic: [UInt8] = Array("TPC1".utf8)
    public static let version: UInt32 = 1
    /// The largest checkpoint a reader takes: far beyond a whole market's (200 000 symbols' last values are tens of
    /// MB), and a bound on what a damaged length can make it allocate.
    static let maximumFileBytes = 4 << 30

    /// The checkpoint files of `directory`, oldest first.
    public static func names(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".tpc") }.sorted()
    }

    public static func name(ofSegment segment: String) -> String { String(segment.dropLast(4)) + ".tpc" }
    public static func segment(ofCheckpoint checkpoint: String) -> String { String(checkpoint.dropLast(4)) + ".tpj" }

    public static func encode(_ state: JournalState) -> [UInt8] {
        var bytes = magic
        bytes.reserveCapacity(64 + state.lastValues.count * 96 + state.newestStreamSequenceOf.count * 32)
        JournalFormat.appendLittleEndian(version, to: &bytes)
        JournalFormat.appendLittleEndian(state.streamSequence, to: &bytes)
        JournalFormat.appendLittleEndian(state.records, to: &bytes)
        JournalFormat.appendLittleEndian(UInt32(state.feedCursors.count), to: &bytes)
        for (feed, sequence) in state.feedCursors.sorted(by: { $0.key < $1.key }) {
            JournalFormat.appendLittleEndian(feed, to: &bytes)
            JournalFormat.appendLittleEndian(sequence, to: &bytes)
        }
        JournalFormat.appendLittleEndian(UInt32(state.lastValues.count), to: &bytes)
        for value in state.lastValues {
            JournalFormat.appendLittleEndian(UInt16(value.topic.count), to: &bytes)
            JournalFormat.appendLittleEndian(UInt32(value.payload.count), to: &bytes)
            JournalFormat.appendLittleEndian(value.symbolSequence, to: &bytes)
            bytes.append(contentsOf: value.topic)
            bytes.append(contentsOf: value.payload)
        }
        JournalFormat.appendLittleEndian(UInt32(state.newestStreamSequenceOf.count), to: &bytes)
        for (symbol, newest) in state.newestStreamSequenceOf.sorted(by: { $0.key < $1.key }) {
            let name = Array(symbol.utf8)
            JournalFormat.appendLittleEndian(UInt16(name.count), to: &bytes)
            bytes.append(contentsOf: name)
            JournalFormat.appendLittleEndian(newest, to: &bytes)
            let checkpoints = state.symbolCheckpoints[symbol] ?? []
            JournalFormat.appendLittleEndian(UInt32(checkpoints.count), to: &bytes)
            for checkpoint in checkpoints {
                JournalFormat.appendLittleEndian(checkpoint.symbolSequence, to: &bytes)
                JournalFormat.appendLittleEndian(checkpoint.streamSequence, to: &bytes)
            }
        }
        let checksum = bytes.withUnsafeBytes { JournalFormat.checksum($0) }
        JournalFormat.appendLittleEndian(checksum, to: &bytes)
        return bytes
    }

    /// Reads a checkpoint's bytes; every count and length in them is checked against what is there.
    /// `verifyingChecksum` false reads past a wrong checksum (the fuzzer's way past it to the fields).
    public static func decode(_ bytes: UnsafeRawBufferPointer, verifyingChecksum: Bool = true) throws -> JournalState {
        guard bytes.count >= magic.count + 4 + 4, bytes.starts(with: magic) else {
            throw JournalError(description: "not a checkpoint (no TPC1 header)")
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - 4)])
        let stored = bytes.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self).littleEndian
        guard !verifyingChecksum || JournalFormat.checksum(body) == stored else {
            throw JournalError(description: "checksum mismatch")
        }
        var reader = Reader(bytes: body, offset: magic.count)
        let fileVersion: UInt32 = try reader.integer()
        guard fileVersion == version else { throw JournalError(description: "format version \(fileVersion) unknown") }
        let streamSequence: UInt64 = try reader.integer()
        let records: UInt64 = try reader.integer()
        // Each record has a stream_seq of its own, from 1.
        guard records <= streamSequence else {
            throw JournalError(description: "\(records) records cannot have come before stream_seq \(streamSequence)")
        }
        var feedCursors: [UInt32: UInt64] = [:]
        for _ in 0..<(try reader.integer() as UInt32) {
            let feed: UInt32 = try reader.integer()
            feedCursors[feed] = try reader.integer()
        }
        var lastValues: [JournalState.LastValue] = []
        for _ in 0..<(try reader.integer() as UInt32) {
            let topicLength: UInt16 = try reader.integer()
            let payloadLength: UInt32 = try reader.integer()
            guard payloadLength <= JournalFormat.maximumBodyLength else {
                throw JournalError(description: "a last value of \(payloadLength) bytes is impossible")
            }
            let symbolSequence: UInt64 = try reader.integer()
            let topic = try reader.bytes(Int(topicLength))
            let payload = try reader.bytes(Int(payloadLength))
            lastValues.append(JournalState.LastValue(topic: topic, payload: payload, symbolSequence: symbolSequence))
        }
        var newestStreamSequenceOf: [String: UInt64] = [:]
        var symbolCheckpoints: [String: [SymbolCheckpoint]] = [:]
        for _ in 0..<(try reader.integer() as UInt32) {
            let nameLength: UInt16 = try reader.integer()
            let symbol = String(decoding: try reader.bytes(Int(nameLength)), as: UTF8.self)
            newestStreamSequenceOf[symbol] = try reader.integer()
            let count: UInt32 = try reader.integer()
            guard count > 0 else { continue }
            var checkpoints: [SymbolCheckpoint] = []
            for _ in 0..<count {
                let symbolSequence: UInt64 = try reader.integer()
                checkpoints.append(SymbolCheckpoint(symbolSequence: symbolSequence, streamSequence: try reader.integer()))
            }
            symbolCheckpoints[symbol] = checkpoints
        }
        guard reader.offset == body.count else {
            throw JournalError(description: "\(body.count - reader.offset) bytes follow the last symbol")
        }
        return JournalState(streamSequence: streamSequence, records: records, lastValues: lastValues,
            feedCursors: feedCursors, symbolCheckpoints: symbolCheckpoints,
            newestStreamSequenceOf: newestStreamSequenceOf)
    }

    /// Reads the checkpoint file at `path`.
    public static func read(_ path: String) throws -> JournalState {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw JournalError(description: "cannot open: \(String(cString: strerror(errno)))") }
        defer { Glibc.close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw JournalError(description: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard status.st_size <= maximumFileBytes else {
            throw JournalError(description: "\(status.st_size) bytes is larger than any checkpoint")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                throw JournalError(description: "cannot read: \(count == 0 ? "it shrank" : String(cString: strerror(errno)))")
            }
            filled += count
        }
        return try bytes.withUnsafeBytes { try decode($0) }
    }

    /// Writes `state` as the checkpoint of `segment` in `directory`: under a temporary name, forced to disk when
    /// `forcing` (with the directory after the rename), then renamed into place. Files are 0640, as the segments.
    public static func write(_ state: JournalState, directory: String, segment: String, forcing: Bool) throws {
        let path = directory + "/" + name(ofSegment: segment)
        let temporary = path + ".tmp"
        let bytes = encode(state)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw JournalError(description: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var (_, failure) = bytes.withUnsafeBytes { JournalWriter.writeAll(descriptor, $0) }
        if failure == 0 && forcing && fsync(descriptor) != 0 { failure = errno }
        Glibc.close(descriptor)
        guard failure == 0 else {
            unlink(temporary)
            throw JournalError(description: "cannot write \(temporary): \(String(cString: strerror(failure)))")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw JournalError(description: "cannot rename \(temporary) to \(path): \(reason)")
        }
        if forcing {
            let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if directoryDescriptor >= 0 {
                fsync(directoryDescriptor)
                Glibc.close(directoryDescriptor)
            }
        }
    }

    /// Reads little-endian integers and byte runs, each checked against the bytes left.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset: Int

        mutating func integer<Value: FixedWidthInteger>() throws -> Value {
            guard bytes.count - offset >= MemoryLayout<Value>.size else { throw Self.shortError }
            defer { offset += MemoryLayout<Value>.size }
            return Value(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Value.self))
        }

        mutating func bytes(_ count: Int) throws -> [UInt8] {
            guard bytes.count - offset >= count else { throw Self.shortError }
            defer { offset += count }
            return Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
        }

        static let shortError = JournalError(description: "it ends inside a field")
    }
}

/// Writes the journal's checkpoints on a thread of its own, so the publishing thread never waits for them. Begun with
/// the state at the start of the first segment (recovery's), it writes that segment's checkpoint at once; each time the
/// writer finishes a segment, it reads that segment's checkpoint back, applies the finished segment's records, and
/// writes the next segment's. The two newest checkpoints are kept (the older one for when the newer cannot be
/// read). A checkpoint that cannot be made is counted and reported; recovery then starts from an older one, or from
/// the first segment, and reads more.
final class JournalCheckpointer: Sendable {
    private enum Job: Sendable {
        case write(JournalState, segment: String)
        case advance(finished: String, next: String)
    }

    private struct Queue: Sendable {
        var jobs: [Job] = []
        var stopping = false
        /// The thread runs from `begin` until `stop`.
        var running = false
    }

    private struct Figures: Sendable {
        var written: UInt64 = 0
        var errors: UInt64 = 0
        /// Failures not yet handed to the plant's log.
        var unreported: [String] = []
    }

    let directory: String
    let forcing: Bool
    private let queue = Mutex(Queue())
    private let figures = Mutex(Figures())
    private let signal = NSCondition()

    init(directory: String, forcing: Bool) {
        self.directory = directory
        self.forcing = forcing
    }

    /// Starts the thread with the checkpoint of `segment`, the first one written, from `state`.
    func begin(from state: JournalState, segment: String) {
        queue.withLock { queue in
            queue.jobs.append(.write(state, segment: segment))
            queue.running = true
        }
        let thread = Thread { [self] in run() }
        thread.name = "journal-checkpoint"
        thread.start()
    }

    /// The writer has finished `finished` and begun `next`.
    func segmentFinished(_ finished: String, next: String) {
        queue.withLock { $0.jobs.append(.advance(finished: finished, next: next)) }
        signal.lock()
        signal.broadcast()
        signal.unlock()
    }

    /// Stops once the jobs given are done (a few at most: one per segment finished), so that the next start reads
    /// only the segment being written now.
    func stop() {
        queue.withLock { $0.stopping = true }
        signal.lock()
        signal.broadcast()
        while queue.withLock({ $0.running }) { signal.wait() }
        signal.unlock()
    }

    var counters: [String: UInt64] {
        figures.withLock { ["journal.checkpoints_written": $0.written, "journal.checkpoint_errors": $0.errors] }
    }

    func takeNewErrors() -> [String] {
        figures.withLock { state in
            defer { state.unreported = [] }
            return state.unreported
        }
    }

    private func run() {
        while true {
            signal.lock()
            while queue.withLock({ $0.jobs.isEmpty && !$0.stopping }) { signal.wait() }
            signal.unlock()
            let job: Job? = queue.withLock { state in state.jobs.isEmpty ? nil : state.jobs.removeFirst() }
            guard let job else { break }
            do {
                switch job {
                case let .write(state, segment):
                    try JournalCheckpoint.write(state, directory: directory, segment: segment, forcing: forcing)
                case let .advance(finished, next):
                    try advance(finished: finished, next: next)
                }
                removeOldCheckpoints()
                figures.withLock { $0.written += 1 }
            } catch {
                figures.withLock { state in
                    state.errors += 1
                    if state.unreported.count < 16 { state.unreported.append("journal checkpoint: \(error)") }
                }
            }
        }
        signal.lock()
        queue.withLock { $0.running = false }
        signal.broadcast()
        signal.unlock()
    }

    /// The checkpoint of `next`: `finished`'s, with `finished`'s records applied.
    private func advance(finished: String, next: String) throws {
        let from = JournalCheckpoint.name(ofSegment: finished)
        var state: JournalState
        do {
            state = try JournalCheckpoint.read(directory + "/" + from)
        } catch {
            throw JournalError(description: "no checkpoint for \(next): \(from) cannot be read (\(error))")
        }
        let path = directory + "/" + finished
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw JournalError(description: "no checkpoint for \(next): cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(descriptor) }
        var buffer = journalScanBuffer()
        if let stop = try scanJournalSegment(descriptor, path: path, buffer: &buffer, { state.take($0) }) {
            throw JournalError(description: "no checkpoint for \(next): \(finished) at byte \(stop.offset): \(stop.reason)")
        }
        // The checkpoint must never be on disk ahead of the records it stands for.
        if forcing && fsync(descriptor) != 0 {
            throw JournalError(description: "no checkpoint for \(next): fsync of \(path) failed: \(String(cString: strerror(errno)))")
        }
        try JournalCheckpoint.write(state, directory: directory, segment: next, forcing: forcing)
    }

    /// Keeps the two newest checkpoints; removes older ones and any temporary file a crash left.
    private func removeOldCheckpoints() {
        for name in JournalCheckpoint.names(in: directory).dropLast(2) { unlink(directory + "/" + name) }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasSuffix(".tpc.tmp") { unlink(directory + "/" + name) }
    }
}
