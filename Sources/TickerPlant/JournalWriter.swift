import Foundation
import Glibc
import MarketData
import Synchronization

/// How the journal is kept (`[journal]` in etc/plantd.toml).
public struct JournalConfiguration: Sendable, Equatable {
    /// Where the segment files go; nil keeps no journal.
    public var directory: String?
    /// A segment is closed and the next begun past this size.
    public var segmentBytes = 256 << 20
    /// How often written records are forced to the disk (fsync); nil leaves it to the kernel. A crash of the
    /// process loses nothing either way (records are written before they are published); fsync is for the machine's
    /// crash.
    public var fsyncInterval: Duration? = .milliseconds(10)
    /// Segments also roll at midnight of the session date in this zone, so a day's ticks live in their own files.
    public var timezone = "America/New_York"
    /// Segments of the newest this many session dates are kept (the one being written always): older ones are
    /// removed as a new segment begins. 0 keeps every segment.
    public var keepDays = 0

    public init() {}
}

public struct JournalError: Error, CustomStringConvertible {
    public let description: String
}

/// Appends record batches to the current segment on the publishing thread (one write per batch, into the page
/// cache); a thread of its own forces them to the disk every `fsyncInterval`, closes finished segments and removes
/// the ones past `keepDays`, so the publishing thread never waits for the disk.
///
/// Under faults: a write that fails (a full disk) or is cut short is taken back to the last whole record before
/// anything else is appended, so the segment never holds a torn record with records after it (which recovery would
/// call damage and cut); the batch is counted in `write_errors` and not journaled. An fsync that fails is counted in
/// `fsync_errors`; either sets `journal.failing` until the next success, which `mktctl status` shows.
public final class JournalWriter: Sendable {
    public let configuration: JournalConfiguration
    public let directory: String

    /// The publishing thread's side: the open segment and what was written.
    private struct Writing {
        var descriptor: Int32 = -1
        var segmentPath = ""
        /// The segment's length up to its last whole record: where a failed write is taken back to.
        var segmentBytes = 0
        /// A failed write could not be taken back: nothing is appended until it is.
        var mustTrim = false
        var nextMidnightNs: UInt64 = 0
        var nextIndex = 1
        var bytesWritten: UInt64 = 0
        var recordsWritten: UInt64 = 0
        var segmentsOpened: UInt64 = 0
        var writeErrors: UInt64 = 0
        var lastWriteFailed = false
        var lastError = ""
    }

    /// What the publishing thread hands the sync thread; held only to swap values, never across a system call.
    private struct Handover {
        /// The segment being written: forced to disk each interval. Only the sync thread closes descriptors once it
        /// runs, so this one stays open while it is fsynced even if the publisher rolls meanwhile.
        var current: Int32 = -1
        /// Finished segments: fsynced (with fsync on) and closed.
        var finished: [Int32] = []
        /// A segment was created since the last pass: the directory entry is forced to disk too.
        var directoryChanged = false
        /// A segment was created since the last pass: old ones past `keepDays` may go.
        var mayPrune = false
        var stopping = false
    }

    /// The sync thread's side.
    private struct Syncing {
        var fsyncs: UInt64 = 0
        var fsyncErrors: UInt64 = 0
        var lastFailed = false
        var lastError = ""
        var segmentsRemoved: UInt64 = 0
        var running = false
        /// fsync errors not yet handed to the plant's log (`takeNewSyncErrors`).
        var unreported: [String] = []
    }

    private let writing = Mutex(Writing())
    private let handover = Mutex(Handover())
    private let syncing = Mutex(Syncing())
    /// Wakes the sync thread early (close) and tells `close` it has stopped.
    private let signal = NSCondition()
    /// Writes a checkpoint at each segment's start (begun in `init` once the first segment is open).
    private let checkpointer: JournalCheckpointer?

    /// Opens a new segment in `directory` after the ones already there (`nextIndex` from recovery). With
    /// `checkpointsFrom` (the state the journal ends in, recovery's), a checkpoint is written at the start of this
    /// segment and of each one after it, so that a restart reads only the newest segments.
    public init(configuration: JournalConfiguration, directory: String, nextIndex: Int,
        checkpointsFrom initial: JournalState? = nil) throws
    {
        self.configuration = configuration
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o750])
        } catch {
            throw JournalError(description: "cannot create journal directory \(directory): \(error.localizedDescription)")
        }
        writing.withLock { $0.nextIndex = nextIndex }
        checkpointer = initial == nil ? nil
            : JournalCheckpointer(directory: directory, forcing: configuration.fsyncInterval != nil)
        try openSegment()
        if let initial {
            checkpointer?.begin(from: initial, segment: String(currentSegment.split(separator: "/").last ?? ""))
        }
        syncing.withLock { $0.running = true }
        let thread = Thread { [self] in runSyncThread() }
        thread.name = "journal-sync"
        thread.start()
    }

    deinit { close() }

    /// `YYYYMMDD-NNNNNN.tpj`: the session date, then a number that only grows, so names sort in writing order.
    public static func segmentName(date: String, index: Int) -> String {
        date + "-" + String(repeating: "0", count: max(0, 6 - String(index).count)) + String(index) + ".tpj"
    }

    public var currentSegment: String { writing.withLock { $0.segmentPath } }

    /// Appends records laid out by `OutboundBatch`: written whole before they are published. False when they could
    /// not be (a full disk): counted, the segment left ending at its last whole record, and `lastError` says why.
    @discardableResult
    public func append(_ batch: OutboundBatch) -> Bool {
        guard !batch.isEmpty else { return true }
        assert(batch.checksummed, "a journal reads the checksums")
        // A failed write not yet taken back is taken back first: nothing follows a torn record, in this segment or
        // (by a roll) in the next.
        let now = WallClock.nowNanoseconds()
        let (whole, mustRoll) = writing.withLock { state in
            if state.mustTrim {
                guard ftruncate(state.descriptor, off_t(state.segmentBytes)) == 0 else {
                    state.writeErrors += 1
                    state.lastWriteFailed = true
                    state.lastError = "cannot take \(state.segmentPath) back to its last whole record: "
                        + String(cString: strerror(errno))
                    return (false, false)
                }
                state.mustTrim = false
            }
            return (true, state.segmentBytes >= configuration.segmentBytes || now >= state.nextMidnightNs)
        }
        guard whole else { return false }
        if mustRoll {
            // A segment that cannot be begun (a full disk) leaves the current one in use: tried again next time.
            do { try openSegment() } catch { noteWriteError("\(error)") }
        }
        return writing.withLock { state in
            let (written, error) = batch.withBytes { bytes in Self.writeAll(state.descriptor, bytes) }
            if written == batch.byteCount {
                state.segmentBytes += written
                state.bytesWritten += UInt64(written)
                state.recordsWritten += UInt64(batch.count)
                state.lastWriteFailed = false
                return true
            }
            // Part of the batch may be in the file: cut it off, so the next batch follows a whole record.
            if written > 0 && ftruncate(state.descriptor, off_t(state.segmentBytes)) != 0 { state.mustTrim = true }
            state.writeErrors += 1
            state.lastWriteFailed = true
            state.lastError = "write to \(state.segmentPath) failed after \(written) of \(batch.byteCount) bytes: "
                + String(cString: strerror(error))
            return false
        }
    }

    /// Stops the sync thread, then forces the segment to disk and closes it.
    public func close() {
        checkpointer?.stop()
        handover.withLock { $0.stopping = true }
        signal.lock()
        signal.broadcast()
        while syncing.withLock({ $0.running }) { signal.wait() }
        signal.unlock()
        let (current, finished) = handover.withLock { state in
            defer {
                state.current = -1
                state.finished = []
            }
            return (state.current, state.finished)
        }
        for descriptor in finished + [current] where descriptor >= 0 {
            if configuration.fsyncInterval != nil { forceToDisk(descriptor, what: "a journal segment") }
            Glibc.close(descriptor)
        }
        writing.withLock { $0.descriptor = -1 }
    }

    public var counters: [String: UInt64] {
        let (failedWrite, written) = writing.withLock { state in
            (state.lastWriteFailed, ["journal.bytes": state.bytesWritten, "journal.records": state.recordsWritten,
                "journal.segments_opened": state.segmentsOpened, "journal.write_errors": state.writeErrors])
        }
        let all = syncing.withLock { state in
            written.merging(["journal.fsyncs": state.fsyncs, "journal.fsync_errors": state.fsyncErrors,
                "journal.segments_removed": state.segmentsRemoved,
                "journal.failing": failedWrite || state.lastFailed ? 1 : 0]) { $1 }
        }
        guard let checkpoints = checkpointer?.counters else { return all }
        return all.merging(checkpoints) { $1 }
    }

    /// Why the latest write failed.
    public var lastError: String { writing.withLock { $0.lastError } }

    /// fsync failures since the last call, for the plant to log (the sync thread has no logger).
    public func takeNewSyncErrors() -> [String] {
        syncing.withLock { state in
            defer { state.unreported = [] }
            return state.unreported
        }
    }

    /// Checkpoints not made since the last call, and why, for the plant to log.
    public func takeNewCheckpointErrors() -> [String] { checkpointer?.takeNewErrors() ?? [] }

    /// fsync, counted; a failure kept for the log. Internal so that a test can hand it a descriptor fsync refuses.
    func forceToDisk(_ descriptor: Int32, what: String) {
        let failure: String? = fsync(descriptor) == 0 ? nil : "fsync of \(what) failed: \(String(cString: strerror(errno)))"
        syncing.withLock { state in
            if let failure {
                state.fsyncErrors += 1
                state.lastFailed = true
                state.lastError = failure
                if state.unreported.count < 16 { state.unreported.append(failure) }
            } else {
                state.fsyncs += 1
                state.lastFailed = false
            }
        }
    }

    private func noteWriteError(_ message: String) {
        writing.withLock {
            $0.writeErrors += 1
            $0.lastWriteFailed = true
            $0.lastError = message
        }
    }

    private func runSyncThread() {
        // Without fsync the thread still closes finished segments and keeps the retention, a few times a second.
        let interval = configuration.fsyncInterval ?? .milliseconds(200)
        let intervalSeconds = Double(interval.nanoseconds) / 1e9
        while true {
            signal.lock()
            let stopping = handover.withLock { $0.stopping }
            if !stopping { _ = signal.wait(until: Date(timeIntervalSinceNow: intervalSeconds)) }
            signal.unlock()
            let work = handover.withLock { state in
                defer {
                    state.finished = []
                    state.directoryChanged = false
                    state.mayPrune = false
                }
                return state
            }
            let forcing = configuration.fsyncInterval != nil
            for descriptor in work.finished {
                if forcing { forceToDisk(descriptor, what: "a finished journal segment") }
                Glibc.close(descriptor)
            }
            if forcing && work.directoryChanged { synchronizeDirectory() }
            if forcing && work.current >= 0 && !work.stopping { forceToDisk(work.current, what: "the journal segment") }
            if work.mayPrune { removeSegmentsPastRetention() }
            if work.stopping { break }
        }
        signal.lock()
        syncing.withLock { $0.running = false }
        signal.broadcast()
        signal.unlock()
    }

    /// A new segment's name is on disk only once its directory is synchronized.
    private func synchronizeDirectory() {
        let descriptor = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            syncing.withLock { state in
                state.fsyncErrors += 1
                state.lastFailed = true
                state.lastError = "cannot open the journal directory \(directory): \(String(cString: strerror(errno)))"
                if state.unreported.count < 16 { state.unreported.append(state.lastError) }
            }
            return
        }
        forceToDisk(descriptor, what: "the journal directory \(directory)")
        Glibc.close(descriptor)
    }

    /// Removes the segments of all but the newest `keepDays` session dates; never the one being written.
    private func removeSegmentsPastRetention() {
        guard configuration.keepDays > 0 else { return }
        let current = String(currentSegment.split(separator: "/").last ?? "")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".tpj") }
        let dates = Set(names.map { $0.prefix { $0 != "-" } }).sorted()
        let kept = Set(dates.suffix(configuration.keepDays))
        var removed: UInt64 = 0
        for name in names where name != current && !kept.contains(name.prefix { $0 != "-" }) {
            if unlink(directory + "/" + name) == 0 { removed += 1 }
        }
        syncing.withLock { $0.segmentsRemoved += removed }
    }

    private func openSegment() throws {
        let now = Date()
        let midnight = sessionMidnightNanoseconds(timezone: configuration.timezone, now: now)
        // The next midnight: a day later, give or take a daylight-saving hour, so ask the calendar again.
        let nextMidnight = sessionMidnightNanoseconds(timezone: configuration.timezone,
            now: Date(timeIntervalSince1970: Double(midnight) / 1e9 + 26 * 3600))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: configuration.timezone) ?? TimeZone(secondsFromGMT: 0)!
        let day = calendar.dateComponents([.year, .month, .day], from: now)
        let date = String(format: "%04d%02d%02d", day.year ?? 0, day.month ?? 0, day.day ?? 0)
        let index = writing.withLock { state in
            defer { state.nextIndex += 1 }
            return state.nextIndex
        }
        let path = directory + "/" + Self.segmentName(date: date, index: index)
        // Readable by the plant's group (operators replaying it), no one else: ticks may be licensed data.
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw JournalError(description: "cannot create journal segment \(path): \(String(cString: strerror(errno)))")
        }
        let header = JournalFormat.segmentHeader()
        let (written, error) = header.withUnsafeBytes { Self.writeAll(fd, $0) }
        guard written == header.count else {
            // A segment without its whole header would read as damage: it goes.
            Glibc.close(fd)
            unlink(path)
            throw JournalError(description: "cannot write journal segment \(path): \(String(cString: strerror(error)))")
        }
        let (old, oldPath) = writing.withLock { state in
            defer {
                state.descriptor = fd
                state.segmentPath = path
                state.segmentBytes = header.count
                state.mustTrim = false
                state.nextMidnightNs = nextMidnight
                state.segmentsOpened += 1
            }
            return (state.descriptor, state.segmentPath)
        }
        handover.withLock { state in
            if old >= 0 { state.finished.append(old) }
            state.current = fd
            state.directoryChanged = true
            state.mayPrune = true
        }
        signal.lock()
        signal.broadcast()
        signal.unlock()
        if old >= 0, let checkpointer {
            checkpointer.segmentFinished(String(oldPath.split(separator: "/").last ?? ""),
                next: String(path.split(separator: "/").last ?? ""))
        }
    }

    /// Writes all of `bytes`, or as much as the file took: the count written and, when short, the errno.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> (Int, Int32) {
        guard fd >= 0 else { return (0, EBADF) }
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return (offset, errno)
            }
            if written == 0 { return (offset, ENOSPC) }
            offset += written
        }
        return (offset, 0)
    }
}
