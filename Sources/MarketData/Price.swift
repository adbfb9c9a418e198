/// A price as fixed point with 6 decimals: 178.52 is stored as 178_520_000. No binary floating point ever touches a
/// price between the exchange and the client's JSON, so every hop shows exactly what the venue sent.
public struct Price: Hashable, Comparable, Sendable {
    /// Units per whole currency unit (6 decimals).
    public static let scale: Int64 = 1_000_000
    public static let decimals = 6
    public static let zero = Price(fixedPoint: 0)

    /// The price times 10^6.
    public var fixedPoint: Int64

    public init(fixedPoint: Int64) { self.fixedPoint = fixedPoint }

    /// ITCH 5.0 `Price (4)`: an unsigned integer with 4 implied decimals.
    public init(itchPrice4 raw: UInt32) { fixedPoint = Int64(raw) * 100 }

    /// ITCH 5.0 `Price (8)` (MWCB levels): 8 implied decimals; the last two digits are below our resolution.
    public init(itchPrice8 raw: UInt64) { fixedPoint = Int64(clamping: raw / 100) }

    /// The nearest ITCH `Price (4)` value (the simulator's encoder; prices it makes have at most 4 decimals).
    public var itchPrice4: UInt32 { UInt32(clamping: fixedPoint / 100) }

    public static func < (lhs: Price, rhs: Price) -> Bool { lhs.fixedPoint < rhs.fixedPoint }

    public var isPositive: Bool { fixedPoint > 0 }
}

// MARK: - Parsing

/// Why a text is not a price.
public struct PriceParseError: Error, Equatable, CustomStringConvertible {
    public enum Reason: Error, Equatable, Sendable {
        case empty
        case unexpectedCharacter(Character, offset: Int)
        case noDigits
        case negative
        case outOfRange
    }

    public let reason: Reason
    public let text: String

    public init(reason: Reason, text: String) {
        self.reason = reason
        self.text = text
    }

    public var description: String {
        switch reason {
        case .empty: "expected a price, got an empty text"
        case let .unexpectedCharacter(character, offset):
            "expected a decimal price, got \"\(text)\" (unexpected \"\(character)\" at offset \(offset))"
        case .noDigits: "expected a decimal price, got \"\(text)\" (no digits)"
        case .negative: "expected a price that is not negative, got \"\(text)\""
        case .outOfRange: "expected a price below 9223372036854.775807, got \"\(text)\""
        }
    }
}

extension Price {
    /// Parses a decimal price exactly: "178.52", "178.5200", "0.0001", "1.7852e2" (JSON's exponent form).
    /// Digits beyond the 6th decimal are rounded half to even, so no systematic bias creeps into averages.
    /// A minus sign is refused unless `allowNegative` (spreads and some derivatives are the only negative prices).
    public init(parsing text: some StringProtocol, allowNegative: Bool = false) throws(PriceParseError) {
        var utf8 = String(text)
        let parsed = utf8.withUTF8 { Price.parse(UnsafeRawBufferPointer($0), allowNegative: allowNegative) }
        switch parsed {
        case let .success(price): self = price
        case let .failure(reason): throw PriceParseError(reason: reason, text: String(text))
        }
    }

    /// Parses the ASCII bytes of a decimal price without allocating (the JSON venues' hot path).
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, allowNegative: Bool = false
    ) -> Result<Price, PriceParseError.Reason> {
        let count = bytes.count
        guard count > 0 else { return .failure(.empty) }
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        func unexpected(_ offset: Int) -> Result<Price, PriceParseError.Reason> {
            .failure(.unexpectedCharacter(Character(Unicode.Scalar(bytes[offset])), offset: offset))
        }

        // Pass 1: validate, and find how many digits stand before the point and where the exponent starts.
        var index = 0
        var negative = false
        if bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+") {
            negative = bytes[0] == UInt8(ascii: "-")
            index = 1
        }
        let mantissaStart = index
        var digitCount = 0
        var integerDigits = -1
        while index < count {
            let byte = bytes[index]
            if isDigit(byte) {
                digitCount += 1
            } else if byte == UInt8(ascii: "."), integerDigits < 0 {
                integerDigits = digitCount
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                break
            } else {
                return unexpected(index)
            }
            index += 1
        }
        let mantissaEnd = index
        guard digitCount > 0 else { return .failure(.noDigits) }
        if integerDigits < 0 { integerDigits = digitCount }
        var exponent = 0
        if index < count {
            index += 1
            var exponentNegative = false
            if index < count && (bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+")) {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard index < count else { return unexpected(count - 1) }
            while index < count {
                guard isDigit(bytes[index]) else { return unexpected(index) }
                // Past 10^5 the result is zero or out of range either way; stop growing the number.
                if exponent < 100_000 { exponent = exponent * 10 + Int(bytes[index] - UInt8(ascii: "0")) }
                index += 1
            }
            if exponentNegative { exponent = -exponent }
        }

        // Pass 2: the first `keep` digits form the result; the next one and any non-zero after it decide rounding.
        let keep = integerDigits + exponent + Price.decimals
        var scaled: UInt64 = 0
        var position = 0
        var roundingDigit: UInt8 = 0
        var stickyNonZero = false
        var anyNonZero = false
        for offset in mantissaStart..<mantissaEnd {
            let byte = bytes[offset]
            guard isDigit(byte) else { continue }
            let digit = byte - UInt8(ascii: "0")
            if digit != 0 { anyNonZero = true }
            if position < keep {
                let (times10, overflow1) = scaled.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
                guard !overflow1, !overflow2 else { return .failure(.outOfRange) }
                scaled = sum
            } else if position == keep {
                roundingDigit = digit
            } else if digit != 0 {
                stickyNonZero = true
            }
            position += 1
        }
        if keep > digitCount {
            for _ in 0..<(keep - digitCount) {
                let (times10, overflow) = scaled.multipliedReportingOverflow(by: 10)
                guard !overflow else { return .failure(.outOfRange) }
                scaled = times10
            }
        }
        // Round half to even.
        if roundingDigit > 5 || (roundingDigit == 5 && (stickyNonZero || scaled % 2 == 1)) {
            scaled += 1
        }
        guard scaled <= UInt64(Int64.max) else { return .failure(.outOfRange) }
        if negative && anyNonZero && !allowNegative { return .failure(.negative) }
        let signed = Int64(scaled)
        return .success(Price(fixedPoint: negative ? -signed : signed))
    }
}

// MARK: - Formatting

extension Price: CustomStringConvertible {
    /// The shortest exact decimal: 178520000 is "178.52", 178000000 is "178", -500000 is "-0.5".
    /// The same text is a valid JSON number.
    public var description: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        append(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the decimal text to `bytes` (no allocation once `bytes` has capacity): the edge's JSON path.
    public func append(to bytes: inout [UInt8]) {
        var magnitude = fixedPoint.magnitude
        if fixedPoint < 0 { bytes.append(UInt8(ascii: "-")) }
        let whole = magnitude / UInt64(Price.scale)
        magnitude %= UInt64(Price.scale)
        appendDecimal(whole, to: &bytes)
        guard magnitude != 0 else { return }
        bytes.append(UInt8(ascii: "."))
        var fraction = magnitude
        var width = Price.decimals
        while fraction % 10 == 0 {
            fraction /= 10
            width -= 1
        }
        // Leading zeros of the fraction ("0.05" keeps its 0).
        var divisor: UInt64 = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(fraction / divisor % 10))
            divisor /= 10
        }
    }
}

/// Appends the decimal digits of `value` without allocating.
@inlinable
public func appendDecimal(_ value: UInt64, to bytes: inout [UInt8]) {
    if value < 10 {
        bytes.append(UInt8(ascii: "0") + UInt8(value))
        return
    }
    var divisor: UInt64 = 1
    while value / divisor >= 10 { divisor *= 10 }
    while divisor > 0 {
        bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
        divisor /= 10
    }
}
