import MarketData

/// The two JSON formats our venues send, one object per line (DESIGN section 3):
/// format A `{"sym":"AAPL","px":178.52,"ts":1701432000000}` (ms since epoch) and
/// format B `{"symbol":"AAPL","lastPrice":"178.52","timestamp":"2025-12-01T10:00:00Z"}` (ISO 8601).
/// Prices may be JSON numbers or strings; both are read as exact decimals. Unknown members are ignored. Neither format
/// carries a size, so their TRADE ticks have size 0 ("not reported").
public enum JSONVenueFormat: String, Sendable, CaseIterable {
    case formatA = "json-a"
    case formatB = "json-b"
}

/// Why a line was skipped. Counted and logged at a rate limit by the caller; the connection stays.
public struct JSONLineError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

public struct JSONVenueParser {
    public let format: JSONVenueFormat
    public let venue: String

    public init(format: JSONVenueFormat, venue: String) {
        self.format = format
        self.venue = venue
    }

    /// Parses one line into a TRADE tick.
    public func parse(line: UnsafeRawBufferPointer) throws(JSONLineError) -> Tick {
        let symbolKey: StaticString = format == .formatA ? "sym" : "symbol"
        let priceKey: StaticString = format == .formatA ? "px" : "lastPrice"
        let timeKey: StaticString = format == .formatA ? "ts" : "timestamp"
        var symbolValue: FlatJSON.Value?
        var priceValue: FlatJSON.Value?
        var timeValue: FlatJSON.Value?
        do {
            try FlatJSON.forEachMember(in: line) { key, value in
                if key.equals(symbolKey) {
                    symbolValue = value
                } else if key.equals(priceKey) {
                    priceValue = value
                } else if key.equals(timeKey) {
                    timeValue = value
                }
            }
        } catch {
            throw JSONLineError(reason: error.description)
        }
        guard let symbolValue else { throw JSONLineError(reason: "missing \"\(symbolKey)\"") }
        guard symbolValue.kind == .string, !symbolValue.hasEscapes else {
            throw JSONLineError(reason: "\"\(symbolKey)\" must be a plain string")
        }
        let symbol = String(decoding: symbolValue.bytes, as: UTF8.self)
        if let problem = SymbolRules.problem(with: symbol) {
            throw JSONLineError(reason: "\"\(symbolKey)\": \(problem)")
        }
        guard let priceValue else { throw JSONLineError(reason: "missing \"\(priceKey)\"") }
        guard priceValue.kind == .number || (priceValue.kind == .string && !priceValue.hasEscapes) else {
            throw JSONLineError(reason: "\"\(priceKey)\" must be a number or a numeric string")
        }
        let price: Price
        switch Price.parse(priceValue.bytes) {
        case let .success(parsed): price = parsed
        case let .failure(reason):
            let text = String(decoding: priceValue.bytes, as: UTF8.self)
            throw JSONLineError(reason: "\"\(priceKey)\": " + PriceParseError(reason: reason, text: text).description)
        }
        guard let timeValue else { throw JSONLineError(reason: "missing \"\(timeKey)\"") }
        let timestampNs: UInt64
        switch format {
        case .formatA:
            guard timeValue.kind == .number, let milliseconds = UInt64(decimalBytes: timeValue.bytes) else {
                throw JSONLineError(reason: "\"ts\" must be whole milliseconds since the epoch")
            }
            let (nanoseconds, overflowed) = milliseconds.multipliedReportingOverflow(by: 1_000_000)
            guard !overflowed else {
                throw JSONLineError(reason: "\"ts\" \(milliseconds): beyond the last time nanoseconds can hold (2554)")
            }
            timestampNs = nanoseconds
        case .formatB:
            guard timeValue.kind == .string, let nanoseconds = ISO8601Timestamp.parseNanoseconds(timeValue.bytes) else {
                throw JSONLineError(reason: "\"timestamp\" must be an ISO 8601 time with a zone between 1970 and 2554, "
                    + "such as 2025-12-01T10:00:00Z")
            }
            timestampNs = nanoseconds
        }
        return Tick.trade(symbol: symbol, venue: venue, price: price, size: 0, exchangeTimestampNs: timestampNs)
    }
}

extension UInt64 {
    /// Parses plain ASCII digits (no sign, no fraction) without allocating.
    init?(decimalBytes bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        self = value
    }
}
