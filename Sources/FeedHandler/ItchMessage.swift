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

public enum OrderSide: UInt8, Sendable, BitwiseCopyable {
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
    /// L: a market participant's position in a stock.
    case marketParticipantPosition(ItchHeader, mpid: UInt32, stock: StockName, primaryMarketMaker: Bool, mode: UInt8,
        state: UInt8)
    /// V: the market-wide circuit breaker levels for the day (Price(8)).
    case mwcbDeclineLevel(ItchHeader, level1: UInt64, level2: UInt64, level3: UInt64)
    /// W: a market-wide circuit breaker level was breached ('1', '2' or '3').
    case mwcbStatus(ItchHeader, breachedLevel: UInt8)
    /// K: when an IPO's quotation period ends.
    case ipoQuotingPeriod(ItchHeader, stock: StockName, releaseTime: UInt32, qualifier: UInt8, price: UInt32)
    /// J: the price collar of a LULD auction.
    case luldAuctionCollar(ItchHeader, stock: StockName, referencePrice: UInt32, upperPrice: UInt32,
        lowerPrice: UInt32, extension: UInt32)
    /// I: net order imbalance before a cross.
    case netOrderImbalance(ItchHeader, pairedShares: UInt64, imbalanceShares: UInt64, direction: UInt8,
        stock: StockName, farPrice: UInt32, nearPrice: UInt32, referencePrice: UInt32, crossType: UInt8,
        priceVariation: UInt8)
    /// N: retail price improvement interest.
    case retailInterest(ItchHeader, stock: StockName, flag: UInt8)
    /// O: price discovery of a direct listing with a capital raise.
    case directListingPriceDiscovery(ItchHeader, stock: StockName, openEligible: Bool, minimumPrice: UInt32,
        maximumPrice: UInt32, nearExecutionPrice: UInt32, nearExecutionTime: UInt64, lowerCollar: UInt32,
        upperCollar: UInt32)
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
        case UInt8(ascii: "L"):
            return .marketParticipantPosition(header, mpid: bytes.u32(11), stock: StockName(raw: bytes.u64(15)),
                primaryMarketMaker: bytes.u8(23) == UInt8(ascii: "Y"), mode: bytes.u8(24), state: bytes.u8(25))
        case UInt8(ascii: "V"):
            return .mwcbDeclineLevel(header, level1: bytes.u64(11), level2: bytes.u64(19), level3: bytes.u64(27))
        case UInt8(ascii: "W"):
            return .mwcbStatus(header, breachedLevel: bytes.u8(11))
        case UInt8(ascii: "K"):
            return .ipoQuotingPeriod(header, stock: StockName(raw: bytes.u64(11)), releaseTime: bytes.u32(19),
                qualifier: bytes.u8(23), price: bytes.u32(24))
        case UInt8(ascii: "J"):
            return .luldAuctionCollar(header, stock: StockName(raw: bytes.u64(11)), referencePrice: bytes.u32(19),
                upperPrice: bytes.u32(23), lowerPrice: bytes.u32(27), extension: bytes.u32(31))
        case UInt8(ascii: "I"):
            return .netOrderImbalance(header, pairedShares: bytes.u64(11), imbalanceShares: bytes.u64(19),
                direction: bytes.u8(27), stock: StockName(raw: bytes.u64(28)), farPrice: bytes.u32(36),
                nearPrice: bytes.u32(40), referencePrice: bytes.u32(44), crossType: bytes.u8(48),
                priceVariation: bytes.u8(49))
        case UInt8(ascii: "N"):
            return .retailInterest(header, stock: StockName(raw: bytes.u64(11)), flag: bytes.u8(19))
        default:  // "O", the last type specifiedLength knows
            return .directListingPriceDiscovery(header, stock: StockName(raw: bytes.u64(11)),
                openEligible: bytes.u8(19) == UInt8(ascii: "Y"), minimumPrice: bytes.u32(20),
                maximumPrice: bytes.u32(24), nearExecutionPrice: bytes.u32(28), nearExecutionTime: bytes.u64(32),
                lowerCollar: bytes.u32(40), upperCollar: bytes.u32(44))
        }
    }
}
