/// The fields every ITCH 5.0 message starts with after its type byte.
public struct ItchHeader: Equatable, Sendable {
    public var stockLocate: UInt16
    public var trackingNumber: UInt16
    /// Nanoseconds since midnight of the session date.
    public var timestamp: UInt64

    public init(stockLocate: UInt16, trackingNumber: UInt16 = 0, timestamp: UInt64) {
        self.stockLocate = stockLocate
        self.trackingNumber = trackingNumber
        self.timestamp = timestamp
    }
}

/// An 8-byte ITCH `Alpha` stock symbol, space padded, kept as one integer so reading it never allocates.
public struct StockName: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt64

    public init(raw: UInt64) { self.raw = raw }

    public init(_ symbol: String) {
        var writer = BigEndianWriter(capacity: 8)
        writer.alpha(symbol, width: 8)
        raw = writer.bytes.withUnsafeBytes { $0.u64(0) }
    }

    /// The symbol without its padding.
    public var description: String {
        var bytes: [UInt8] = []
        var value = raw
        for _ in 0..<8 {
            bytes.append(UInt8(value >> 56))
            value <<= 8
        }
        while bytes.last == UInt8(ascii: " ") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

public enum OrderSide: UInt8, Sendable {
    case buy = 66  // "B"
    case sell = 83  // "S"
}

/// One decoded ITCH 5.0 message (Nasdaq TotalView-ITCH 5.0 specification). Prices are raw `Price (4)` values.
public enum ItchMessage: Equatable, Sendable {
    /// S: start/end of messages, system hours, market hours.
    case systemEvent(ItchHeader, eventCode: UInt8)
    /// R: binds a stock locate code to a symbol for the day.
    case stockDirectory(ItchHeader, stock: StockName, marketCategory: UInt8, roundLotSize: UInt32)
    /// H: trading state 'H' halted, 'P' paused, 'Q' quotation only, 'T' trading; reason is 4 ASCII bytes.
    case tradingAction(ItchHeader, stock: StockName, state: UInt8, reason: UInt32)
    /// Y: Reg SHO short-sale price test.
    case regSHORestriction(ItchHeader, stock: StockName, action: UInt8)
    /// A (attribution nil) and F: a new displayed order.
    case addOrder(ItchHeader, reference: UInt64, side: OrderSide, shares: UInt32, stock: StockName, price: UInt32,
        attribution: UInt32?)
    /// E: part or all of an order executed at the order's own price.
    case orderExecuted(ItchHeader, reference: UInt64, shares: UInt32, matchNumber: UInt64)
    /// C: executed at a price different from the order's; not printable executions do not count for volume.
    case orderExecutedWithPrice(ItchHeader, reference: UInt64, shares: UInt32, matchNumber: UInt64, printable: Bool,
        price: UInt32)
    /// X: part of an order cancelled.
    case orderCancel(ItchHeader, reference: UInt64, shares: UInt32)
    /// D: the whole order removed.
    case orderDelete(ItchHeader, reference: UInt64)
    /// U: an order replaced by a new one (new reference, shares and price).
    case orderReplace(ItchHeader, originalReference: UInt64, newReference: UInt64, shares: UInt32, price: UInt32)
    /// P: an execution against a non-displayed order.
    case trade(ItchHeader, reference: UInt64, side: UInt8, shares: UInt32, stock: StockName, price: UInt32,
        matchNumber: UInt64)
    /// Q: the opening, closing or halt cross.
    case crossTrade(ItchHeader, shares: UInt64, stock: StockName, price: UInt32, matchNumber: UInt64, crossType: UInt8)
    /// B: an earlier execution was broken.
    case brokenTrade(ItchHeader, matchNumber: UInt64)
    /// h: operational halt ('H') or resumption ('T') on one market centre.
    case operationalHalt(ItchHeader, stock: StockName, marketCode: UInt8, action: UInt8)
    /// A type of the specification that this build reads but does not act on (L, V, W, K, J, I, N, O).
    case notActedOn(type: UInt8, ItchHeader)
}

/// Decodes ITCH 5.0 messages in place.
public enum ItchDecoder {
    /// Length of each message type in the specification, type byte included.
    public static func specifiedLength(of type: UInt8) -> Int? {
        switch type {
        case UInt8(ascii: "S"): 12
        case UInt8(ascii: "R"): 39
        case UInt8(ascii: "H"): 25
        case UInt8(ascii: "Y"): 20
        case UInt8(ascii: "L"): 26
        case UInt8(ascii: "V"): 35
        case UInt8(ascii: "W"): 12
        case UInt8(ascii: "K"): 28
        case UInt8(ascii: "J"): 35
        case UInt8(ascii: "h"): 21
        case UInt8(ascii: "A"): 36
        case UInt8(ascii: "F"): 40
        case UInt8(ascii: "E"): 31
        case UInt8(ascii: "C"): 36
        case UInt8(ascii: "X"): 23
        case UInt8(ascii: "D"): 19
        case UInt8(ascii: "U"): 35
        case UInt8(ascii: "P"): 44
        case UInt8(ascii: "Q"): 40
        case UInt8(ascii: "B"): 19
        case UInt8(ascii: "I"): 50
        case UInt8(ascii: "N"): 20
        case UInt8(ascii: "O"): 48
        default: nil
        }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(FeedParseError) -> ItchMessage {
        guard let type = bytes.first else { throw .emptyMessage }
        guard let length = specifiedLength(of: type) else { throw .unknownMessageType(type) }
        guard bytes.count >= length else {
            throw .truncatedMessage(type: type, length: bytes.count, needed: length)
        }
        let header = ItchHeader(stockLocate: bytes.u16(1), trackingNumber: bytes.u16(3), timestamp: bytes.u48(5))
        switch type {
        case UInt8(ascii: "S"):
            return .systemEvent(header, eventCode: bytes.u8(11))
        case UInt8(ascii: "R"):
            return .stockDirectory(
                header, stock: StockName(raw: bytes.u64(11)), marketCategory: bytes.u8(19), roundLotSize: bytes.u32(21))
        case UInt8(ascii: "H"):
            return .tradingAction(header, stock: StockName(raw: bytes.u64(11)), state: bytes.u8(19), reason: bytes.u32(21))
        case UInt8(ascii: "Y"):
            return .regSHORestriction(header, stock: StockName(raw: bytes.u64(11)), action: bytes.u8(19))
        case UInt8(ascii: "A"), UInt8(ascii: "F"):
            return .addOrder(
                header, reference: bytes.u64(11), side: bytes.u8(19) == UInt8(ascii: "B") ? .buy : .sell,
                shares: bytes.u32(20), stock: StockName(raw: bytes.u64(24)), price: bytes.u32(32),
                attribution: type == UInt8(ascii: "F") ? bytes.u32(36) : nil)
        case UInt8(ascii: "E"):
            return .orderExecuted(header, reference: bytes.u64(11), shares: bytes.u32(19), matchNumber: bytes.u64(23))
        case UInt8(ascii: "C"):
            return .orderExecutedWithPrice(
                header, reference: bytes.u64(11), shares: bytes.u32(19), matchNumber: bytes.u64(23),
                printable: bytes.u8(31) == UInt8(ascii: "Y"), price: bytes.u32(32))
        case UInt8(ascii: "X"):
            return .orderCancel(header, reference: bytes.u64(11), shares: bytes.u32(19))
        case UInt8(ascii: "D"):
            return .orderDelete(header, reference: bytes.u64(11))
        case UInt8(ascii: "U"):
            return .orderReplace(
                header, originalReference: bytes.u64(11), newReference: bytes.u64(19), shares: bytes.u32(27),
                price: bytes.u32(31))
        case UInt8(ascii: "P"):
            return .trade(
                header, reference: bytes.u64(11), side: bytes.u8(19), shares: bytes.u32(20),
                stock: StockName(raw: bytes.u64(24)), price: bytes.u32(32), matchNumber: bytes.u64(36))
        case UInt8(ascii: "Q"):
            return .crossTrade(
                header, shares: bytes.u64(11), stock: StockName(raw: bytes.u64(19)), price: bytes.u32(27),
                matchNumber: bytes.u64(31), crossType: bytes.u8(39))
        case UInt8(ascii: "B"):
            return .brokenTrade(header, matchNumber: bytes.u64(11))
        case UInt8(ascii: "h"):
            return .operationalHalt(header, stock: StockName(raw: bytes.u64(11)), marketCode: bytes.u8(19), action: bytes.u8(20))
        default:
            return .notActedOn(type: type, header)
        }
    }
}
