/// Builds ITCH 5.0 messages byte for byte as the specification lays them out: the simulator's exchange side.
public enum ItchEncoder {
    private static func header(_ type: Character, _ header: ItchHeader, capacity: Int) -> BigEndianWriter {
        var writer = BigEndianWriter(capacity: capacity)
        writer.u8(type.asciiValue!)
        writer.u16(header.stockLocate)
        writer.u16(header.trackingNumber)
        writer.u48(header.timestamp)
        return writer
    }

    public static func systemEvent(_ h: ItchHeader, code: Character) -> [UInt8] {
        var w = header("S", h, capacity: 12)
        w.u8(code.asciiValue!)
        return w.bytes
    }

    public static func stockDirectory(_ h: ItchHeader, symbol: String, roundLotSize: UInt32 = 100) -> [UInt8] {
        var w = header("R", h, capacity: 39)
        w.alpha(symbol, width: 8)
        w.u8(UInt8(ascii: "Q"))  // market category: NASDAQ Global Select
        w.u8(UInt8(ascii: "N"))  // financial status: normal
        w.u32(roundLotSize)
        w.u8(UInt8(ascii: "N"))  // round lots only
        w.u8(UInt8(ascii: "C"))  // issue classification: common stock
        w.alpha("Z", width: 2)  // issue sub-type
        w.u8(UInt8(ascii: "P"))  // authenticity: production
        w.u8(UInt8(ascii: "N"))  // short sale threshold
        w.u8(UInt8(ascii: "N"))  // IPO flag
        w.u8(UInt8(ascii: "1"))  // LULD reference price tier
        w.u8(UInt8(ascii: "N"))  // ETP flag
        w.u32(0)  // ETP leverage factor
        w.u8(UInt8(ascii: "N"))  // inverse indicator
        return w.bytes
    }

    public static func tradingAction(_ h: ItchHeader, symbol: String, state: Character, reason: String) -> [UInt8] {
        var w = header("H", h, capacity: 25)
        w.alpha(symbol, width: 8)
        w.u8(state.asciiValue!)
        w.u8(UInt8(ascii: " "))  // reserved
        w.alpha(reason, width: 4)
        return w.bytes
    }

    public static func addOrder(
        _ h: ItchHeader, reference: UInt64, side: OrderSide, shares: UInt32, symbol: String, price: UInt32,
        attribution: String? = nil
    ) -> [UInt8] {
        var w = header(attribution == nil ? "A" : "F", h, capacity: 40)
        w.u64(reference)
        w.u8(side.rawValue)
        w.u32(shares)
        w.alpha(symbol, width: 8)
        w.u32(price)
        if let attribution { w.alpha(attribution, width: 4) }
        return w.bytes
    }

    public static func orderExecuted(_ h: ItchHeader, reference: UInt64, shares: UInt32, matchNumber: UInt64) -> [UInt8] {
        var w = header("E", h, capacity: 31)
        w.u64(reference)
        w.u32(shares)
        w.u64(matchNumber)
        return w.bytes
    }

    public static func orderExecutedWithPrice(
        _ h: ItchHeader, reference: UInt64, shares: UInt32, matchNumber: UInt64, printable: Bool, price: UInt32
    ) -> [UInt8] {
        var w = header("C", h, capacity: 36)
        w.u64(reference)
        w.u32(shares)
        w.u64(matchNumber)
        w.u8(printable ? UInt8(ascii: "Y") : UInt8(ascii: "N"))
        w.u32(price)
        return w.bytes
    }

    public static func orderCancel(_ h: ItchHeader, reference: UInt64, shares: UInt32) -> [UInt8] {
        var w = header("X", h, capacity: 23)
        w.u64(reference)
        w.u32(shares)
        return w.bytes
    }

    public static func orderDelete(_ h: ItchHeader, reference: UInt64) -> [UInt8] {
        var w = header("D", h, capacity: 19)
        w.u64(reference)
        return w.bytes
    }

    public static func orderReplace(
        _ h: ItchHeader, originalReference: UInt64, newReference: UInt64, shares: UInt32, price: UInt32
    ) -> [UInt8] {
        var w = header("U", h, capacity: 35)
        w.u64(originalReference)
        w.u64(newReference)
        w.u32(shares)
        w.u32(price)
        return w.bytes
    }

    public static func trade(
        _ h: ItchHeader, reference: UInt64 = 0, side: Character = "B", shares: UInt32, symbol: String, price: UInt32,
        matchNumber: UInt64
    ) -> [UInt8] {
        var w = header("P", h, capacity: 44)
        w.u64(reference)
        w.u8(side.asciiValue!)
        w.u32(shares)
        w.alpha(symbol, width: 8)
        w.u32(price)
        w.u64(matchNumber)
        return w.bytes
    }
}
