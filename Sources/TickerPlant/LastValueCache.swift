import MarketData

/// The plant's last-value cache: for each symbol (by its number in plantd's symbol table), the last message published
/// of every (type, venue), the consolidated ones (venue CONS) among them, kept as the payload bytes that went out.
///
/// Keeping bytes instead of `Tick` values means storing a tick is one copy into a slot that is already there: no
/// reference counting of its strings and arrays per tick, nothing to encode again for a snapshot. A slot that a
/// bigger message outgrows (a deeper BOOK) moves to the end of the arena with room to spare.
public struct LastValueCache {
    public struct Entry {
        public var type: TickType
        public var venue: String
        public var symbolSequence: UInt64
        fileprivate var offset: Int
        fileprivate var length: Int
        fileprivate var capacity: Int
    }

    public private(set) var entriesOf: [[Entry]] = []
    private var arena: [UInt8] = []

    /// Makes room for the next symbol number.
    public init() {}

    public mutating func addSymbol() { entriesOf.append([]) }

    /// Keeps `payload` as the last value of the symbol's (type, venue).
    public mutating func store(
        symbolID id: Int, type: TickType, venue: String, symbolSequence: UInt64, payload: UnsafeRawBufferPointer
    ) {
        let slot: Int
        if let existing = entriesOf[id].firstIndex(where: { $0.type == type && $0.venue == venue }) {
            slot = existing
        } else {
            slot = entriesOf[id].count
            entriesOf[id].append(Entry(type: type, venue: venue, symbolSequence: 0, offset: 0, length: 0, capacity: 0))
        }
        if entriesOf[id][slot].capacity < payload.count {
            // A new place at the end with room to spare, so that a growing message moves rarely.
            let capacity = max(payload.count + payload.count / 2, 64)
            entriesOf[id][slot].offset = arena.count
            entriesOf[id][slot].capacity = capacity
            arena.append(contentsOf: repeatElement(0, count: capacity))
        }
        let offset = entriesOf[id][slot].offset
        entriesOf[id][slot].length = payload.count
        entriesOf[id][slot].symbolSequence = symbolSequence
        guard let source = payload.baseAddress else { return }
        arena.withUnsafeMutableBytes { ($0.baseAddress! + offset).copyMemory(from: source, byteCount: payload.count) }
    }

    /// Whether the symbol has a last value from `venue`.
    public func has(symbolID id: Int, venue: String) -> Bool {
        entriesOf[id].contains { $0.venue == venue }
    }

    /// Calls `body` with an entry's payload bytes (valid during the call).
    public func withPayload<Result>(of entry: Entry, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        arena.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[entry.offset ..< entry.offset + entry.length])) }
    }
}
