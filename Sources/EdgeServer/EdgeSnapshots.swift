import MarketData
import NIOCore

/// The last values edged has of each watched symbol, on the upstream thread: what a client that subscribes gets
/// first, flagged `"snapshot":true`, before any update of the symbol (DESIGN section 8).
///
/// A symbol's first watcher makes edged ask plantd's snapshot ROUTER for its last values (the Clone pattern): the
/// live updates that arrive meanwhile wait, and those the snapshot already holds (by `stream_seq`) are dropped. After
/// that the cache follows the live updates, so later watchers are answered at once, without asking plantd.
struct EdgeSnapshotCache {
    struct Value {
        var type: TickType
        var venue: String
        var streamSequence: UInt64
        var symbolSequence: UInt64
        var text: ByteBuffer
    }

    /// A client waiting for a symbol's snapshot: its loop and its session.
    struct Waiter {
        var registry: LoopRegistry
        var session: ObjectIdentifier
    }

    struct Symbol {
        var values: [Value] = []
        /// Asked of plantd and not answered yet: live updates wait in `held`, clients in `waiters`.
        var awaitingPlant = false
        var held: [(tick: Tick, text: ByteBuffer)] = []
        var waiters: [Waiter] = []
    }

    private(set) var symbols: [String: Symbol] = [:]

    /// Keeps `text` as the last value of the tick's (type, venue); false when the update is not to be passed on now
    /// (the symbol's snapshot is still awaited: it is held, and goes on after the snapshot if it is newer).
    mutating func take(_ tick: Tick, text: ByteBuffer) -> Bool {
        guard symbols[tick.symbol] != nil else { return true }
        if symbols[tick.symbol]!.awaitingPlant {
            symbols[tick.symbol]!.held.append((tick, text))
            return false
        }
        remember(tick, text)
        return true
    }

    /// Keeps a copy of `text` in the value's own buffer, reused from one update to the next: the update's frame
    /// goes back to `UpdateFramer`'s ring once its clients have written it, instead of being held here until the
    /// symbol's next update.
    private mutating func remember(_ tick: Tick, _ text: ByteBuffer) {
        let symbol = tick.symbol
        guard let index = symbols[symbol]!.values.firstIndex(where: { $0.type == tick.type && $0.venue == tick.venue })
        else {
            var copy = ByteBufferAllocator().buffer(capacity: text.readableBytes)
            copy.writeImmutableBuffer(text)
            symbols[symbol]!.values.append(Value(type: tick.type, venue: tick.venue,
                streamSequence: tick.streamSequence, symbolSequence: tick.symbolSequence, text: copy))
            return
        }
        symbols[symbol]!.values[index].streamSequence = tick.streamSequence
        symbols[symbol]!.values[index].symbolSequence = tick.symbolSequence
        // Taken out of the value while it is rewritten, so that the buffer is uniquely held and `clear` keeps it.
        var own = symbols[symbol]!.values[index].text
        symbols[symbol]!.values[index].text = Self.placeholder
        own.clear()
        own.writeImmutableBuffer(text)
        symbols[symbol]!.values[index].text = own
    }

    private static let placeholder = ByteBuffer()

    /// A client wants `symbol`'s snapshot. Returns true when plantd must be asked (the symbol's first watcher);
    /// otherwise the waiter is answered by `answerWaiters` from what the cache has.
    mutating func want(_ symbol: String, by waiter: Waiter, askingPlant: Bool) -> Bool {
        if symbols[symbol] == nil {
            symbols[symbol] = Symbol(awaitingPlant: askingPlant)
            symbols[symbol]!.waiters.append(waiter)
            return askingPlant
        }
        symbols[symbol]!.waiters.append(waiter)
        return false
    }

    /// plantd's snapshot of `symbol` came (or never will: `ticks` empty, `streamSequence` 0): its values fill the
    /// cache, and the live updates held meanwhile that are newer are returned. The caller answers the waiters with
    /// the snapshot first, then passes those on as updates through `take`, which keeps them as last values too.
    mutating func plantAnswered(_ symbol: String, ticks: [(Tick, ByteBuffer)], streamSequence: UInt64)
        -> [(tick: Tick, text: ByteBuffer)]
    {
        guard symbols[symbol] != nil else { return [] }
        for (tick, text) in ticks where tick.symbol == symbol { remember(tick, text) }
        let newer = symbols[symbol]!.held.filter { $0.tick.streamSequence > streamSequence || $0.tick.streamSequence == 0 }
        symbols[symbol]!.held.removeAll()
        symbols[symbol]!.awaitingPlant = false
        return newer
    }

    /// The waiters of `symbol` now answerable (its snapshot is in), with the snapshot's frames, oldest value first.
    mutating func answerWaiters(_ symbol: String, allocator: ByteBufferAllocator) -> ([Waiter], [EdgeUpdate]) {
        guard let entry = symbols[symbol], !entry.awaitingPlant, !entry.waiters.isEmpty else { return ([], []) }
        symbols[symbol]!.waiters.removeAll()
        let frames = entry.values.sorted { $0.streamSequence < $1.streamSequence }.map { value in
            EdgeUpdate(symbol: symbol, text: Self.flagged(value.text, allocator: allocator), droppable: false,
                type: value.type, symbolSequence: value.symbolSequence)
        }
        return (entry.waiters, frames)
    }

    /// True when the cache has no value of `symbol` (none came from plantd nor live).
    func hasNoValues(_ symbol: String) -> Bool { symbols[symbol]?.values.isEmpty ?? true }

    /// Takes the waiters of `symbol` and forgets it: plantd has nothing of it (error 408 for each; a later client
    /// makes edged ask plantd again).
    mutating func refuse(_ symbol: String) -> [Waiter] {
        defer { symbols[symbol] = nil }
        return symbols[symbol]?.waiters ?? []
    }

    /// Follows `symbol`'s live updates without a waiter or plantd's snapshot (benchmarks).
    mutating func keepLastValues(of symbol: String) {
        if symbols[symbol] == nil { symbols[symbol] = Symbol() }
    }

    /// Nobody watches `symbol` any more.
    mutating func forget(_ symbol: String) { symbols[symbol] = nil }

    /// An update's JSON with `"snapshot":true` first: `{"snapshot":true,"type":...`.
    static func flagged(_ text: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: text.readableBytes + 17)
        out.writeString(#"{"snapshot":true,"#)
        var rest = text
        rest.moveReaderIndex(forwardBy: 1)
        out.writeBuffer(&rest)
        return out
    }
}
