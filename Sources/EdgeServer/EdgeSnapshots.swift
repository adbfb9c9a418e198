import MarketData
import NIOCore

/// The last values edged has of each watched symbol, on the upstream thread: what a client that subscribes gets
/// first, flagged `"snapshot":true`, before any update of the symbol (DESIGN section 8).
///
/// A symbol's first watcher makes edged ask plantd's snapshot ROUTER for its last values (the Clone pattern): the
/// live updates that arrive meanwhile wait, and those the snapshot already holds (by `stream_seq`) are dropped. After
/// that the cache follows the live updates, so later watchers are answered at once, without asking plantd.
///
/// Each watched symbol's updates must follow on by `symbol_seq`. One that does not means edged's own stream lost
/// some (plantd restarted and published before edged's SUB was back, or the SUB went over its high-water mark); and
/// after a plant restart (a new session on `#HB`) a quiet symbol's lost updates would show no such sign. Either way
/// the symbol is due for a repair (`repairsDue`): plantd replays what is missing while the live updates wait, and
/// every client gets the missing updates in order. When plantd cannot (it numbers afresh after a restart without its
/// journal, or more went by than a replay may carry), the symbol's last values are taken afresh and every watcher
/// gets them as a snapshot (a refresh), as a resume that cannot be replayed does.
///
/// A gap in one symbol's updates also means the SUB lost messages of any topic at that moment: a quiet symbol whose
/// last update went with them would show no sign of it until it trades again. So a gap makes every other symbol due
/// for a check (a sweep, at most one a second): a replay from its next symbol_seq, which plantd answers empty and at
/// once when nothing was lost.
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
        /// The symbol_seq of the latest update passed on (0: none yet): the next one must follow on from it.
        var through: UInt64 = 0
        /// plantd is asked to replay what edged's stream lost of the symbol: live updates wait in `held`.
        var repairing = false
        /// The snapshot awaited is a refresh: every watcher gets it, not only the waiters. Still true once plantd
        /// answered (`awaitingPlant` false) when the answer held nothing of the symbol: the new plantd had not
        /// published it yet, and its first update makes edged ask for the snapshot again.
        var refreshing = false
        /// The repair is a sweep's check (no gap seen in this symbol's own updates): one that finds nothing missing
        /// is not counted as a gap.
        var checking = false
    }

    private(set) var symbols: [String: Symbol] = [:]
    /// Symbols whose lost updates plantd is to be asked for, in the order found (taken by the upstream loop).
    var repairsDue: [String] = []
    /// Symbols whose refresh is to be asked of plantd again (taken by the upstream loop): the first answer held
    /// nothing of them, and now an update of theirs came.
    var refreshesDue: [String] = []
    /// False without plantd's snapshot ROUTER: a gap cannot be repaired, and updates go on as they come.
    var canRepair = true
    /// Gaps found in edged's own stream: a symbol's update not following on, a plant restart, or a sweep's check
    /// that found updates missing.
    private(set) var gapsFound: UInt64 = 0
    /// Sweeps made (every other symbol checked after a gap), and their checks that found updates missing.
    private(set) var sweeps: UInt64 = 0
    private(set) var sweepFinds: UInt64 = 0
    /// A gap was found since the last sweep: the next is due once `sweepIntervalNs` has passed since that one.
    private(set) var sweepDue = false
    private var lastSweepNs: UInt64 = 0
    static let sweepIntervalNs: UInt64 = 1_000_000_000

    /// Keeps `text` as the last value of the tick's (type, venue); false when the update is not to be passed on now
    /// (the symbol's snapshot is still awaited: it is held, and goes on after the snapshot if it is newer).
    ///
    /// The symbol is hashed once per tick: its entry is then reached by the dictionary's index (`symbols.values[slot]`
    /// changes it in place), which no insertion or removal moves while this runs.
    mutating func take(_ tick: Tick, text: ByteBuffer) -> Bool {
        guard let slot = symbols.index(forKey: tick.symbol) else { return true }
        if symbols.values[slot].awaitingPlant || symbols.values[slot].repairing || symbols.values[slot].refreshing {
            if !symbols.values[slot].awaitingPlant && !symbols.values[slot].repairing {
                // A refresh answered before the new plantd published the symbol: this is its first update since,
                // held while plantd's snapshot, which now holds it, is asked again and reaches every watcher.
                symbols.values[slot].awaitingPlant = true
                refreshesDue.append(tick.symbol)
            }
            symbols.values[slot].held.append((tick, text))
            return false
        }
        let through = symbols.values[slot].through
        if tick.symbolSequence != 0 && through != 0 && tick.symbolSequence != through &+ 1 {
            // Ahead: updates lost on the way here. Behind: plantd numbers afresh (restarted without its journal),
            // since within one plant session no symbol_seq comes twice on the live stream.
            gapsFound &+= 1
            if canRepair {
                symbols.values[slot].held.append((tick, text))
                symbols.values[slot].repairing = true
                repairsDue.append(tick.symbol)
                sweepDue = true
                return false
            }
        }
        remember(tick, text, at: slot)
        return true
    }

    /// plantd restarted (a new session on `#HB`): whatever it published before edged's SUB reached it is lost, so
    /// every symbol with values is checked by a replay from its next symbol_seq (an empty one for a quiet symbol).
    mutating func plantRestarted() {
        guard canRepair else { return }
        for (symbol, entry) in symbols where entry.through != 0 && !entry.awaitingPlant && !entry.repairing {
            gapsFound &+= 1
            symbols[symbol]!.repairing = true
            repairsDue.append(symbol)
        }
    }

    /// Checks every symbol with values (but those already asked of plantd) when a sweep is due and the last one is
    /// at least `sweepIntervalNs` old: each gets a repair that is only a check. Returns whether it swept.
    @discardableResult
    mutating func sweepIfDue(nowNs: UInt64) -> Bool {
        guard sweepDue, canRepair, nowNs &- lastSweepNs >= Self.sweepIntervalNs || lastSweepNs == 0 else {
            return false
        }
        sweepDue = false
        lastSweepNs = nowNs
        sweeps &+= 1
        for (symbol, entry) in symbols where entry.through != 0 && !entry.awaitingPlant && !entry.repairing {
            symbols[symbol]!.repairing = true
            symbols[symbol]!.checking = true
            repairsDue.append(symbol)
        }
        return true
    }

    /// The symbol_seq a repair of `symbol` asks plantd to replay from; nil when it needs none any more.
    func repairFrom(_ symbol: String) -> UInt64? {
        guard let entry = symbols[symbol], entry.repairing else { return nil }
        return entry.through &+ 1
    }

    /// plantd replayed `symbol` from `repairFrom` on, completely: the replayed updates, then those that waited, are
    /// returned in order to be passed on, each once. `done` is false when they still do not follow on (more was
    /// lost while plantd was asked): the rest wait, and the symbol is due for another repair.
    /// `foundNothing` is true for a sweep's check that found no update missing (not a gap).
    mutating func repaired(_ symbol: String, replayed: [(tick: Tick, text: ByteBuffer)])
        -> (updates: [(tick: Tick, text: ByteBuffer)], done: Bool, foundNothing: Bool)
    {
        guard symbols[symbol]?.repairing == true else { return ([], true, false) }
        let waited = symbols[symbol]!.held
        symbols[symbol]!.held.removeAll()
        var foundNothing = false
        if symbols[symbol]!.checking {
            symbols[symbol]!.checking = false
            let through = symbols[symbol]!.through
            foundNothing = !replayed.contains { $0.tick.symbol == symbol && $0.tick.symbolSequence > through }
            if !foundNothing {
                gapsFound &+= 1
                sweepFinds &+= 1
            }
        }
        var updates: [(tick: Tick, text: ByteBuffer)] = []
        for (index, update) in (replayed + waited).enumerated() where update.tick.symbol == symbol {
            let sequence = update.tick.symbolSequence
            let through = symbols[symbol]!.through
            if sequence != 0 && sequence <= through { continue }
            if sequence > through &+ 1 && index >= replayed.count {
                symbols[symbol]!.held = Array(waited[(index - replayed.count)...])
                repairsDue.append(symbol)
                sweepDue = true
                return (updates, false, foundNothing)
            }
            remember(update.tick, update.text)
            updates.append(update)
        }
        symbols[symbol]!.repairing = false
        return (updates, true, foundNothing)
    }

    /// plantd cannot replay what `symbol` lost: its last values are to be taken afresh from a snapshot (the caller
    /// asks for it), which every watcher gets; the updates that waited stay held for it.
    mutating func refresh(_ symbol: String) {
        guard symbols[symbol] != nil else { return }
        symbols[symbol]!.values.removeAll()
        symbols[symbol]!.through = 0
        symbols[symbol]!.repairing = false
        symbols[symbol]!.checking = false
        symbols[symbol]!.awaitingPlant = true
        symbols[symbol]!.refreshing = true
    }

    /// plantd did not answer a repair in time: the updates that waited go on as they are, the gap left open.
    mutating func abandonRepair(_ symbol: String) -> [(tick: Tick, text: ByteBuffer)] {
        guard symbols[symbol]?.repairing == true else { return [] }
        let waited = symbols[symbol]!.held
        symbols[symbol]!.held.removeAll()
        symbols[symbol]!.repairing = false
        symbols[symbol]!.checking = false
        for update in waited { remember(update.tick, update.text) }
        return waited
    }

    /// The refreshed last values of `symbol`, flagged `"snapshot":true`, for every watcher (nil when the snapshot
    /// plantd answered was not a refresh).
    mutating func takeRefresh(_ symbol: String, allocator: ByteBufferAllocator) -> [EdgeUpdate]? {
        guard let entry = symbols[symbol], entry.refreshing, !entry.awaitingPlant, !entry.values.isEmpty else {
            return nil
        }
        symbols[symbol]!.refreshing = false
        return frames(of: entry, symbol, allocator: allocator)
    }

    /// Keeps a copy of `text` in the value's own buffer, reused from one update to the next: the update's frame
    /// goes back to `UpdateFramer`'s ring once its clients have written it, instead of being held here until the
    /// symbol's next update.
    private mutating func remember(_ tick: Tick, _ text: ByteBuffer) {
        guard let slot = symbols.index(forKey: tick.symbol) else { return }
        remember(tick, text, at: slot)
    }

    /// `remember` for the symbol's entry at `slot` of `symbols` (found by the caller, not hashed again).
    private mutating func remember(_ tick: Tick, _ text: ByteBuffer, at slot: [String: Symbol].Index) {
        if tick.symbolSequence != 0 { symbols.values[slot].through = tick.symbolSequence }
        guard let index = symbols.values[slot].values.firstIndex(where: {
            $0.type == tick.type && $0.venue == tick.venue
        }) else {
            var copy = ByteBufferAllocator().buffer(capacity: text.readableBytes)
            copy.writeImmutableBuffer(text)
            symbols.values[slot].values.append(Value(type: tick.type, venue: tick.venue,
                streamSequence: tick.streamSequence, symbolSequence: tick.symbolSequence, text: copy))
            return
        }
        symbols.values[slot].values[index].streamSequence = tick.streamSequence
        symbols.values[slot].values[index].symbolSequence = tick.symbolSequence
        // Taken out of the value while it is rewritten, so that the buffer is uniquely held and `clear` keeps it.
        var own = symbols.values[slot].values[index].text
        symbols.values[slot].values[index].text = Self.placeholder
        own.clear()
        own.writeImmutableBuffer(text)
        symbols.values[slot].values[index].text = own
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
        var through = symbols[symbol]!.through
        for (tick, text) in ticks where tick.symbol == symbol {
            remember(tick, text)
            through = max(through, tick.symbolSequence)
        }
        // The snapshot's values come by (type, venue), not in symbol_seq order: it holds everything up to its newest.
        symbols[symbol]!.through = through
        let newer = symbols[symbol]!.held.filter { $0.tick.streamSequence > streamSequence || $0.tick.streamSequence == 0 }
        symbols[symbol]!.held.removeAll()
        symbols[symbol]!.awaitingPlant = false
        if symbols[symbol]!.refreshing && !ticks.contains(where: { $0.0.symbol == symbol }) {
            // A refresh whose snapshot holds nothing of the symbol: plantd restarted without its journal and had not
            // published it yet when asked. The updates that waited are where the symbol starts over, so they become
            // its values and reach every watcher as the refresh, flagged as a snapshot; passed on as updates they
            // would have followed the old numbers with a lower one. With none either, the refresh waits for the
            // symbol's first update (`take`).
            for (tick, text) in newer { remember(tick, text) }
            return []
        }
        return newer
    }

    /// The waiters of `symbol` now answerable (its snapshot is in), with the snapshot's frames, oldest value first.
    mutating func answerWaiters(_ symbol: String, allocator: ByteBufferAllocator) -> ([Waiter], [EdgeUpdate]) {
        guard let entry = symbols[symbol], !entry.awaitingPlant, !entry.waiters.isEmpty else { return ([], []) }
        symbols[symbol]!.waiters.removeAll()
        return (entry.waiters, frames(of: entry, symbol, allocator: allocator))
    }

    /// A symbol's last values as snapshot frames, oldest first.
    private func frames(of entry: Symbol, _ symbol: String, allocator: ByteBufferAllocator) -> [EdgeUpdate] {
        entry.values.sorted { $0.streamSequence < $1.streamSequence }.map { value in
            EdgeUpdate(symbol: symbol, text: Self.flagged(value.text, allocator: allocator), droppable: false,
                type: value.type, symbolSequence: value.symbolSequence)
        }
    }

    /// The symbol_seq of the latest update of `symbol` passed on, when the cache follows it without anything asked
    /// of plantd (nil otherwise): how much a client resuming from a symbol_seq missed.
    func settledThrough(_ symbol: String) -> UInt64? {
        guard let entry = symbols[symbol], entry.through != 0, !entry.awaitingPlant, !entry.repairing,
            !entry.refreshing
        else { return nil }
        return entry.through
    }

    /// True when the cache has no value of `symbol` (none came from plantd nor live).
    func hasNoValues(_ symbol: String) -> Bool { symbols[symbol]?.values.isEmpty ?? true }

    /// True while `symbol`'s refresh is asked of plantd or waits for the symbol's first update.
    func isRefreshing(_ symbol: String) -> Bool { symbols[symbol]?.refreshing ?? false }

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
