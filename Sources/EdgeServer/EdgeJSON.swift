import MarketData

/// The normalized JSON updates of DESIGN section 8, written byte by byte from fixed-point values (no floating point,
/// no Foundation): `{"type":"TRADE","symbol":"AAPL","price":178.52,"size":100,"timestamp":1701432000000,
/// "exchange":"NASDAQ","seq":812}`. `timestamp` is the exchange's time in ms since the epoch; `seq` is symbol_seq.
public enum EdgeJSON {
    public static func write(_ tick: Tick, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        append(#"{"type":""#, to: &out)
        append(tick.type.description, to: &out)
        append(#"","symbol":""#, to: &out)
        appendEscaped(tick.symbol, to: &out)
        out.append(UInt8(ascii: "\""))
        switch tick.type {
        case .trade:
            append(#","price":"#, to: &out)
            tick.price.append(to: &out)
            append(#","size":"#, to: &out)
            appendDecimal(tick.size, to: &out)
        case .quote:
            append(#","bid":"#, to: &out)
            tick.bidPrice.append(to: &out)
            append(#","bidSize":"#, to: &out)
            appendDecimal(tick.bidSize, to: &out)
            append(#","ask":"#, to: &out)
            tick.askPrice.append(to: &out)
            append(#","askSize":"#, to: &out)
            appendDecimal(tick.askSize, to: &out)
        case .book:
            append(#","bids":"#, to: &out)
            appendLevels(tick.bids, to: &out)
            append(#","asks":"#, to: &out)
            appendLevels(tick.asks, to: &out)
        case .status:
            append(#","state":""#, to: &out)
            append(tick.state.description, to: &out)
            append(#"","quality":""#, to: &out)
            append(tick.quality.description, to: &out)
            append(#"","reason":""#, to: &out)
            appendEscaped(tick.reason, to: &out)
            out.append(UInt8(ascii: "\""))
        case .bar:
            append(#","open":"#, to: &out)
            tick.open.append(to: &out)
            append(#","high":"#, to: &out)
            tick.high.append(to: &out)
            append(#","low":"#, to: &out)
            tick.low.append(to: &out)
            append(#","close":"#, to: &out)
            tick.close.append(to: &out)
            append(#","volume":"#, to: &out)
            appendDecimal(tick.volume, to: &out)
        }
        append(#","timestamp":"#, to: &out)
        appendDecimal(tick.exchangeTimestampNs / 1_000_000, to: &out)
        append(#","exchange":""#, to: &out)
        appendEscaped(Venue.displayName(mic: tick.venue), to: &out)
        append(#"","seq":"#, to: &out)
        appendDecimal(tick.symbolSequence, to: &out)
        out.append(UInt8(ascii: "}"))
    }

    private static func append(_ text: StaticString, to out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private static func append(_ text: String, to out: inout [UInt8]) { out.append(contentsOf: text.utf8) }

    private static func appendLevels(_ levels: [BookLevel], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (index, level) in levels.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "["))
            level.price.append(to: &out)
            out.append(UInt8(ascii: ","))
            appendDecimal(level.size, to: &out)
            out.append(UInt8(ascii: "]"))
        }
        out.append(UInt8(ascii: "]"))
    }

    /// JSON string escaping for the few characters that need it.
    /// `text` escaped for a JSON string (without the quotes).
    static func escaped(_ text: String) -> String {
        var out: [UInt8] = []
        appendEscaped(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func appendEscaped(_ text: String, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                    hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default:
                out.append(byte)
            }
        }
    }
}
