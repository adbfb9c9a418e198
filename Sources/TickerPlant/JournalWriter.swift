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

    public init() {}
}

public struct JournalError: Error, CustomStringConvertible {
    public let description: String
}

/// Appends record batches to the current segment on the publishing thread (one write per batch, into the page
/// cache), and forces them to the disk every `fsyncInterval` on a thread of its own, so the publishing thread never
/// waits for the disk.
public final class JournalWriter: Sendable {
    public let configuration: JournalConfiguration
    public let directory: String

    /// The descriptor of the open segment, shared with the fsync thread; -1 once closed.
    private let descriptor = Mutex<Int32>(-1)
    private struct State {
        var segmentPath = ""
        var segmentBytes = 0
        var nextMidnightNs: UInt64 = 0
        var nextIndex = 1
        var bytesWritten: UInt64 = 0
        var recordsWritten: UInt64 = 0
        var segmentsOpened: UInt64 = 0
        var writeErrors: UInt64 = 0
        var lastError = ""
    }

    private let state = Mutex(State())
    private let fsyncs = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    private let fsyncThreadDone = Atomic<Bool>(true)

    /// Opens a new segment in `directory` after the ones already there (`nextIndex` from recovery).
    public init(configuration: JournalConfiguration, directory: String, nextIndex: Int) throws {
        self.configuration = configuration
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(description: "cannot create journal directory \(directory): \(error.localizedDescription)")
        }
        state.withLock { $0.nextIndex = nextIndex }
        try openSegment()
        if let interval = configuration.fsyncInterval {
            fsyncThreadDone.store(false, ordering: .relaxed)
            let thread = Thread { [self] in
                while !stopping.load(ordering: .relaxed) {
                    usleep(UInt32(clamping: interval.nanoseconds / 1_000))
                    synchronize()
                }
                fsyncThreadDone.store(true, ordering: .releasing)
            }
            thread.name = "journal-fsync"
            thread.start()
        }
    }

    deinit { close() }

    /// `YYYYMMDD-NNNNNN.tpj`: the session date, then a number that only grows, so names sort in writing order.
    public static func segmentName(date: String, index: Int) -> String {
        date + "-" + String(repeating: "0", count: max(0, 6 - String(index).count)) + String(index) + ".tpj"
    }

    public var currentSegment: String { state.withLock { $0.segmentPath } }

    /// Appends records laid out by `OutboundBatch`: written whole before they are published. False when they could
    /// not be (a full disk): counted, and `lastError` says why.
    @discardableResult
    public func append(_ batch: OutboundBatch) -> Bool {
        guard !batch.isEmpty else { return true }
        let now = WallClock.nowNanoseconds()
        let mustRoll = state.withLock { $0.segmentBytes >= configuration.segmentBytes || now >= $0.nextMidnightNs }
        if mustRoll {
            do { try openSegment() } catch { noteError("\(error)") }
        }
        let fd = descriptor.withLock { $0 }
        assert(batch.checksummed, "a journal reads the checksums")
        let written = batch.withBytes { bytes in Self.writeAll(fd, bytes) }
        state.withLock {
            if written {
                $0.segmentBytes += batch.byteCount
                $0.bytesWritten += UInt64(batch.byteCount)
                $0.recordsWritten += UInt64(batch.count)
            }
        }
        if !written { noteError("write to \(currentSegment) failed: \(String(cString: strerror(errno)))") }
        return written
    }

    /// Forces what was written to the disk.
    public func synchronize() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            if fsync(fd) == 0 { fsyncs.wrappingAdd(1, ordering: .relaxed) }
        }
    }

    public func close() {
        stopping.store(true, ordering: .relaxed)
        while !fsyncThreadDone.load(ordering: .acquiring) { usleep(1_000) }
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            fsync(fd)
            Glibc.close(fd)
            fd = -1
        }
    }

    public var counters: [String: UInt64] {
        state.withLock { state in
            ["journal.bytes": state.bytesWritten, "journal.records": state.recordsWritten,
                "journal.segments_opened": state.segmentsOpened, "journal.write_errors": state.writeErrors,
                "journal.fsyncs": fsyncs.load(ordering: .relaxed)]
        }
    }

    public var lastError: String { state.withLock { $0.lastError } }

    private func noteError(_ message: String) {
        state.withLock {
            $0.writeErrors += 1
            $0.lastError = message
        }
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
        let index = state.withLock { state in
            defer { state.nextIndex += 1 }
            return state.nextIndex
        }
        let path = directory + "/" + Self.segmentName(date: date, index: index)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw JournalError(description: "cannot create journal segment \(path): \(String(cString: strerror(errno)))")
        }
        let header = JournalFormat.segmentHeader()
        guard header.withUnsafeBytes({ Self.writeAll(fd, $0) }) else {
            Glibc.close(fd)
            throw JournalError(description: "cannot write journal segment \(path): \(String(cString: strerror(errno)))")
        }
        descriptor.withLock { old in
            if old >= 0 {
                fsync(old)
                Glibc.close(old)
            }
            old = fd
        }
        state.withLock {
            $0.segmentPath = path
            $0.segmentBytes = header.count
            $0.nextMidnightNs = nextMidnight
            $0.segmentsOpened += 1
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard fd >= 0 else { return false }
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }
}
