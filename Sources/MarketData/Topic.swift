/// ZeroMQ topics `SYMBOL|T` (DESIGN section 5). `|` never occurs in a symbol, so the prefix `AAPL|` matches every tick
/// of AAPL and never one of AAPLX; topics that begin with `#` belong to the plant itself.
public enum Topic {
    public static let separator = UInt8(ascii: "|")
    /// Plant heartbeat: carries the stream's last stream_seq.
    public static let heartbeat = "#HB"
    /// Quarantined ticks: `#Q|SYMBOL`.
    public static let quarantinePrefix = "#Q|"
    /// Market-wide status.
    public static let system = "#SYS"

    public static func make(symbol: String, type: TickType) -> String {
        symbol + "|" + String(UnicodeScalar(type.topicLetter))
    }

    /// Writes `SYMBOL|T` into `buffer` without allocating once it has capacity.
    public static func write(symbol: String, type: TickType, into buffer: inout [UInt8]) {
        buffer.removeAll(keepingCapacity: true)
        buffer.append(contentsOf: symbol.utf8)
        buffer.append(separator)
        buffer.append(type.topicLetter)
    }

    /// The prefix that selects every tick of one symbol and nothing else.
    public static func allTypes(of symbol: String) -> String { symbol + "|" }

    /// True when a subscription to `prefix` receives `topic` (ZeroMQ's rule: a byte prefix).
    public static func matches(_ topic: some StringProtocol, prefix: some StringProtocol) -> Bool {
        topic.utf8.starts(with: prefix.utf8)
    }

    /// Splits a tick topic into symbol and type; nil for plant topics (`#...`) and malformed ones.
    public static func parse(_ topic: some StringProtocol) -> (symbol: Substring, type: TickType)? {
        let text = Substring(topic)
        guard let bar = text.utf8.lastIndex(of: separator), !text.hasPrefix("#") else { return nil }
        let symbol = text[..<bar]
        let rest = text.utf8[text.utf8.index(after: bar)...]
        guard !symbol.isEmpty, rest.count == 1, let type = TickType(topicLetter: rest.first!) else { return nil }
        return (symbol, type)
    }
}

/// The topic of the tick being sent, written in place in memory it owns. Sending an array's bytes borrows the array,
/// and in feedd's publish each borrow of the array it held retained and released the array's buffer, once per tick.
/// `bytes` borrows nothing; it is valid until the next write. Not shared: one publishing thread owns it.
public final class TopicScratch {
    private var storage: UnsafeMutableRawBufferPointer
    public private(set) var count = 0

    public init(capacity: Int = 64) {
        storage = .allocate(byteCount: max(capacity, 8), alignment: 1)
    }

    deinit { storage.deallocate() }

    /// The topic last written.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

    /// Writes `SYMBOL|T`.
    public func write(symbol: String, type: TickType) {
        let end = writeName(symbol, reserving: 2)
        storage[end] = Topic.separator
        storage[end + 1] = type.topicLetter
        count = end + 2
    }

    /// Writes a topic that is a name alone (`#SYS`).
    public func write(name: String) {
        count = writeName(name, reserving: 0)
    }

    /// Copies `name` to the start, with room for `extra` bytes after it; returns where it ends.
    private func writeName(_ name: String, reserving extra: Int) -> Int {
        let length = name.utf8.count
        if length + extra > storage.count {
            // Longer than any symbol: grown once, never shrunk.
            storage.deallocate()
            storage = .allocate(byteCount: max(length + extra, storage.count * 2), alignment: 1)
        }
        storage.copyBytes(from: name.utf8)
        return length
    }
}

/// What may be a symbol: 1 to 16 printable ASCII characters, not `|` (the topic separator), not starting with `#`.
public enum SymbolRules {
    public static let maximumLength = 16

    /// Nil when valid, otherwise why not.
    public static func problem(with symbol: some StringProtocol) -> String? {
        if symbol.isEmpty { return "a symbol cannot be empty" }
        if symbol.utf8.count > maximumLength { return "a symbol has at most \(maximumLength) characters" }
        if symbol.utf8.first == UInt8(ascii: "#") { return "a symbol cannot begin with \"#\"" }
        for byte in symbol.utf8 where byte <= 0x20 || byte >= 0x7f || byte == Topic.separator {
            return "a symbol is printable ASCII without spaces or \"|\""
        }
        return nil
    }
}
