import Foundation
import Logging
import MarketData
@testable import EdgeServer
@testable import FeedHandler
@testable import TickerPlant

/// One input from outside through one of the daemons' readers, as the daemon takes it. A finding is a crash, a trap
/// or a sanitizer's report; a target also traps where two readers of the same bytes disagree.
struct FuzzTarget: Sendable {
    let name: String
    let about: String
    let run: @Sendable (UnsafeRawBufferPointer) -> Void

    /// The target of this run: set once by main before libFuzzer starts, read by its callback on the same thread.
    nonisolated(unsafe) static var chosen: FuzzTarget?

    static let all: [FuzzTarget] = [
        FuzzTarget(name: "mold", about: "MoldUDP64 datagrams through a venue: session gate, stream, gaps given up, ITCH, book",
            run: FeedTargets.moldDatagrams),
        FuzzTarget(name: "itch", about: "ITCH 5.0 messages through the decoder, the normalizer and the venue book",
            run: FeedTargets.itchMessages),
        FuzzTarget(name: "json-a", about: "a line of a format-A JSON venue", run: { FeedTargets.jsonLine($0, .formatA) }),
        FuzzTarget(name: "json-b", about: "a line of a format-B JSON venue", run: { FeedTargets.jsonLine($0, .formatB) }),
        FuzzTarget(name: "tick", about: "a protobuf Tick: our reader beside protobuf-c's", run: WireTargets.tick),
        FuzzTarget(name: "client-message", about: "a WebSocket client's JSON message, checked as edged checks it",
            run: WireTargets.clientMessage),
        FuzzTarget(name: "control", about: "a request to a snapshot/replay ROUTER and to a control endpoint",
            run: WireTargets.controlRequest),
        FuzzTarget(name: "journal", about: "a journal segment read at plantd's start and by a replay's cursor",
            run: FileTargets.journal),
        FuzzTarget(name: "checkpoint", about: "a journal checkpoint read at plantd's start (and written again: the same state)",
            run: FileTargets.checkpoint),
        FuzzTarget(name: "config", about: "a daemon's TOML file (the first byte picks feedd, plantd or edged)",
            run: FileTargets.config),
    ]
}

/// Splits an input into the pieces it carries: each a 2-byte big-endian length, then that many bytes (the last one
/// takes what is left when the length runs past the end).
func pieces(of input: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
    var offset = 0
    while offset + 2 <= input.count {
        let length = Int(input[offset]) << 8 | Int(input[offset + 1])
        let start = offset + 2
        let end = min(start + length, input.count)
        body(UnsafeRawBufferPointer(rebasing: input[start..<end]))
        offset = end
    }
}

/// Writes pieces in the form `pieces(of:)` reads.
func joinPieces(_ pieces: [[UInt8]]) -> [UInt8] {
    pieces.flatMap { [UInt8(truncatingIfNeeded: $0.count >> 8), UInt8(truncatingIfNeeded: $0.count)] + $0 }
}

/// Takes what a feed publishes and drops it.
final class DiscardingSink: TickSink {
    var ticks = 0
    func publish(_ ticks: inout [Tick], receivedNs: UInt64) {
        self.ticks &+= ticks.count
        ticks.removeAll(keepingCapacity: true)
    }

    func logBadInput(_ source: String, _ problem: String) {}
}

enum FeedTargets {
    /// Logs nothing: every input would otherwise write lines, and the fuzzer would spend its time on them.
    static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Each piece a datagram on the venue's port, then a turn of recovery in which every gap is already due to be
    /// given up (so that give-ups, held messages released and GAP statuses are reached by every input).
    static func moldDatagrams(_ input: UnsafeRawBufferPointer) {
        var source = FeedConfiguration.ItchSource(listenHost: "127.0.0.1", listenPort: 0)
        source.gapTimeout = .zero
        source.gapGiveUp = .zero
        source.maxHeldMessages = 10_000
        source.bookOrders = 64
        source.rememberedMatches = 1_024
        source.bookDepth = 5
        source.sessionProofPackets = 2
        source.maxSequenceJump = 1_000
        guard let feed = try? ItchFeed(venue: "XNAS", source: source, timezone: "America/New_York",
            receiveBufferBytes: 65_536, logger: logger)
        else { fatalError("a UDP socket on 127.0.0.1 could not be had") }
        let sink = DiscardingSink()
        pieces(of: input) { datagram in
            feed.handlePacket(datagram, sink: sink)
            feed.recover(sink: sink)
        }
    }

    /// Each piece an ITCH message, decoded and applied to the venue's book; the books flushed at the end.
    static func itchMessages(_ input: UnsafeRawBufferPointer) {
        var normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 1_700_000_000_000_000_000, bookDepth: 5,
            bookIntervalNs: 1, bookOrders: 64, rememberedMatches: 1_024)
        var ticks: [Tick] = []
        var sequence: UInt64 = 0
        pieces(of: input) { bytes in
            sequence += 1
            guard let message = try? ItchDecoder.decode(bytes) else { return }
            normalizer.handle(message, venueSequence: sequence, into: &ticks)
            ticks.removeAll(keepingCapacity: true)
        }
        normalizer.flushBooks(into: &ticks)
    }

    static func jsonLine(_ input: UnsafeRawBufferPointer, _ format: JSONVenueFormat) {
        _ = try? JSONVenueParser(format: format, venue: "BATS").parse(line: input)
    }
}

enum WireTargets {
    /// Our reader of the hot path and protobuf-c's must agree on every input either accepts: a Tick one of them
    /// reads differently from the other would be a consumer seeing another price than plantd meant.
    static func tick(_ input: UnsafeRawBufferPointer) {
        let ours = try? TickDecoder.decode(input)
        _ = try? TickWire.symbolSequence(of: input)
        guard let ours else { return }
        guard let reference = try? TickDecoder.decodeWithProtobufC(input) else {
            fatalError("our reader took a Tick protobuf-c refuses: \(ours)")
        }
        if ours != reference { fatalError("the readers disagree:\n ours      \(ours)\n protobuf-c \(reference)") }
    }

    static func clientMessage(_ input: UnsafeRawBufferPointer) {
        guard let message = try? ClientMessage.decode(input) else { return }
        _ = try? message.subscription()
    }

    /// The bytes as a snapshot/replay request, a snapshot's end, and a control request (answered `status`).
    static func controlRequest(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        _ = ReplayRequest(decoding: bytes)
        _ = SnapshotEnd(decoding: bytes)
        _ = ControlCodec.respond(to: bytes) { request in
            request.cmd == "status" ? ["uptime": 1] : nil
        }
    }
}

enum FileTargets {
    /// A directory of this process's own under /dev/shm (memory, not disk), emptied before each input.
    static let scratch: String = {
        let path = "/dev/shm/tickfuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static func emptyScratch() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? [] {
            try? FileManager.default.removeItem(atPath: scratch + "/" + name)
        }
    }

    /// The input as a journal's only segment: recovered as plantd does at start (which may cut damage off), then
    /// read by a replay's cursor from its first record.
    static func journal(_ input: UnsafeRawBufferPointer) {
        emptyScratch()
        guard FileManager.default.createFile(atPath: scratch + "/20261207-000001.tpj", contents: Data(input)) else {
            fatalError("could not write under \(scratch)")
        }
        var cursor = JournalCursor(directory: scratch, from: 1)
        defer { cursor.close() }
        var progress = JournalCursor.Progress.more
        while progress == .more { progress = cursor.read(maxBytes: 1 << 16) { _ in true } }
        _ = try? JournalRecovery(directory: scratch, ringCapacity: 64)
    }

    /// A checkpoint's bytes as recovery decodes them (its checksum not checked, so the fields are reached); what
    /// decodes must encode to bytes that decode to the same state.
    static func checkpoint(_ input: UnsafeRawBufferPointer) {
        guard let state = try? JournalCheckpoint.decode(input, verifyingChecksum: false) else { return }
        let again = JournalCheckpoint.encode(state).withUnsafeBytes { try? JournalCheckpoint.decode($0) }
        guard again == state else { fatalError("a decoded checkpoint does not survive encoding") }
    }

    /// The input after its first byte as feedd's, plantd's or edged's file (by that byte), key files not opened.
    static func config(_ input: UnsafeRawBufferPointer) {
        guard let selector = input.first else { return }
        emptyScratch()
        let file = scratch + "/daemon.toml"
        guard FileManager.default.createFile(atPath: file, contents: Data(input.dropFirst())) else {
            fatalError("could not write under \(scratch)")
        }
        switch selector % 3 {
        case 0: _ = try? FeedConfiguration.load(file: file)
        case 1: _ = try? PlantConfiguration.load(file: file, readingFiles: false)
        default: _ = try? EdgeConfiguration.load(file: file, readingFiles: false)
        }
    }
}

/// libFuzzer's own main (in the archive `-sanitize=fuzzer` links) refers to this name, so it is defined; our main
/// runs instead and hands libFuzzer the same callback.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTarget.chosen?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
