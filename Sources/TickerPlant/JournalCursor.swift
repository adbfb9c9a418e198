import Foundation
import Glibc

/// Reads a journal that is still being written, forward from a stream_seq, a bounded number of bytes at a time: what
/// a replay reaching back before the in-memory ring is served from, in slices between turns of the live stream.
///
/// The cursor starts in the last segment whose first record is at or before the asked stream_seq and skips what
/// comes before it. At the end of what is on disk it says `.caughtUp` (a record still being written is not damage);
/// a later call goes on from there, into the next segment once the writer has rolled to it.
public struct JournalCursor {
    public enum Progress: Equatable, Sendable {
        /// The byte budget ran out: call again.
        case more
        /// Every complete record on disk has been read.
        case caughtUp
        /// `body` asked to stop.
        case stopped
        /// A record failed its checksum or made no sense: nothing after it can be trusted.
        case damaged(String)
    }

    let directory: String
    let from: UInt64
    private var segments: [String] = []
    private var segmentIndex = 0
    private var descriptor: Int32 = -1
    /// Bytes read from the segment: `buffer[taken..<filled]` are not yet handed over (a record cut at the end of a
    /// read waits there for its rest). Allocated once, large enough for the largest record a journal may hold.
    private var buffer = [UInt8](repeating: 0, count: JournalFormat.maximumBodyLength + 2 * JournalFormat.recordHeaderLength + (1 << 20))
    private var taken = 0
    private var filled = 0
    private var fileOffset = 0
    private var checkedHeader = false

    /// The stream_seq of the last record read (0 before the first).
    public private(set) var lastStreamSequence: UInt64 = 0

    public init(directory: String, from streamSequence: UInt64) {
        self.directory = directory
        from = streamSequence
        segments = Self.segmentNames(directory)
        // The last segment starting at or before `from`: the ones before it hold only older records.
        var start = 0
        for (index, name) in segments.enumerated() {
            guard let first = Self.firstStreamSequence(directory + "/" + name) else { continue }
            if first <= streamSequence { start = index } else { break }
        }
        segmentIndex = start
    }

    static func segmentNames(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".tpj") }.sorted()
    }

    /// The stream_seq of a segment's first record, nil when it has none yet.
    static func firstStreamSequence(_ path: String) -> UInt64? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var head = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderLength + JournalFormat.recordHeaderLength + 8)
        let count = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count == head.count else { return nil }
        return head.withUnsafeBytes {
            $0.loadUnaligned(fromByteOffset: JournalFormat.segmentHeaderLength + JournalFormat.recordHeaderLength,
                as: UInt64.self).littleEndian
        }
    }

    public mutating func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }

    /// Reads at most about `maxBytes` of the journal, calling `body` with each record at or after `from` in order
    /// (false from `body` stops the cursor there).
    public mutating func read(maxBytes: Int, _ body: (JournalRecord) -> Bool) -> Progress {
        var budget = maxBytes
        while budget > 0 {
            if descriptor < 0 {
                guard segmentIndex < segments.count else {
                    // Perhaps the writer has rolled to a segment that did not exist when the cursor started.
                    let now = Self.segmentNames(directory)
                    if now.count > segments.count, let current = segments.last, let at = now.firstIndex(of: current) {
                        segments = now
                        segmentIndex = at + 1
                        continue
                    }
                    return .caughtUp
                }
                descriptor = Glibc.open(directory + "/" + segments[segmentIndex], O_RDONLY | O_CLOEXEC)
                guard descriptor >= 0 else { return .damaged("cannot open \(segments[segmentIndex])") }
                fileOffset = 0
                taken = 0
                filled = 0
                checkedHeader = false
            }
            if taken > 0 {
                // What is left of a record moves to the front, so the next read lands after it.
                let left = filled - taken
                buffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + taken, byteCount: left) }
                taken = 0
                filled = left
            }
            let chunk = min(budget, buffer.count - filled, 1 << 20)
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + filled, chunk, fileOffset) }
            if got > 0 {
                filled += got
                fileOffset += got
                budget -= got
            }
            if let outcome = takeRecords(body) { return outcome }
            if got <= 0 {
                // The end of this segment as it is now: a later one means it is finished.
                if segmentIndex + 1 < segments.count || Self.segmentNames(directory).count > segments.count {
                    guard taken == filled else { return .damaged("\(segments[segmentIndex]) ends inside a record") }
                    close()
                    if segmentIndex + 1 >= segments.count { segments = Self.segmentNames(directory) }
                    segmentIndex += 1
                    continue
                }
                return .caughtUp
            }
        }
        return .more
    }

    /// Hands over every complete record read and keeps what is left of an incomplete one.
    private mutating func takeRecords(_ body: (JournalRecord) -> Bool) -> Progress? {
        var consumed = 0
        var outcome: Progress?
        let (start, end) = (taken, filled)
        buffer.withUnsafeBytes { all in
            let bytes = UnsafeRawBufferPointer(rebasing: all[start..<end])
            if !checkedHeader {
                guard bytes.count >= JournalFormat.segmentHeaderLength else { return }
                guard bytes.starts(with: JournalFormat.magic) else {
                    outcome = .damaged("\(segments[segmentIndex]) is not a journal segment")
                    return
                }
                consumed = JournalFormat.segmentHeaderLength
                checkedHeader = true
            }
            while consumed < bytes.count {
                switch JournalRecord.read(bytes, at: consumed) {
                case .failure(.truncated):
                    return
                case let .failure(damage):
                    outcome = .damaged("\(segments[segmentIndex]) at \(fileOffset - (bytes.count - consumed)): \(damage)")
                    return
                case let .success((record, next)):
                    consumed = next
                    guard record.streamSequence >= from else { continue }
                    lastStreamSequence = record.streamSequence
                    if !body(record) {
                        outcome = .stopped
                        return
                    }
                }
            }
        }
        taken += consumed
        return outcome
    }
}
