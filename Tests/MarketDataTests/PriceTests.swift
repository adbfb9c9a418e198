import Testing

@testable import MarketData

@Suite struct PriceParsing {
    @Test(arguments: [
        ("178.52", Int64(178_520_000)), ("178.5200", 178_520_000), ("178", 178_000_000), ("0.0001", 100),
        ("0.000001", 1), ("+3.5", 3_500_000), ("1.7852e2", 178_520_000), ("17852E-2", 178_520_000),
        ("0", 0), ("000012.50", 12_500_000), ("9223372036854.775807", Int64.max),
    ])
    func decimalTextParsesExactly(text: String, fixedPoint: Int64) throws {
        #expect(try Price(parsing: text).fixedPoint == fixedPoint)
    }

    @Test func numberAndStringFormsGiveTheSameValue() throws {
        // Format A sends 178.52 as a JSON number, format B as "178.52": both are the same text to the parser.
        #expect(try Price(parsing: "178.52") == Price(fixedPoint: 178_520_000))
    }

    @Test(arguments: [
        ("0.0000005", Int64(0)),  // half: to even (0)
        ("0.0000015", 2),  // half: to even (2)
        ("0.0000025", 2),  // half: to even (2)
        ("0.00000051", 1),  // above half
        ("0.00000049999", 0),  // below half
        ("1.23456789", 1_234_568),
        ("2.0000005000000001", 2_000_001),  // a far non-zero digit breaks the tie
    ])
    func digitsBeyondSixDecimalsRoundHalfToEven(text: String, fixedPoint: Int64) throws {
        #expect(try Price(parsing: text).fixedPoint == fixedPoint)
    }

    @Test func negativePricesAreRefusedUnlessAllowed() throws {
        #expect(throws: PriceParseError(reason: .negative, text: "-1.5")) { try Price(parsing: "-1.5") }
        #expect(try Price(parsing: "-1.5", allowNegative: true).fixedPoint == -1_500_000)
        #expect(try Price(parsing: "-0").fixedPoint == 0)
    }

    @Test(arguments: ["", "abc", "1.2.3", "1e", "1e+", "--1", "1,5", " 1", "$5", ".", "e5", "1.5x", "NaN"])
    func garbageIsRefusedWithAReason(text: String) {
        #expect(throws: PriceParseError.self) { try Price(parsing: text) }
    }

    @Test func errorMessagesSayWhatWasExpectedAndFound() {
        do {
            _ = try Price(parsing: "12a")
            Issue.record("12a parsed")
        } catch {
            #expect(error.description == #"expected a decimal price, got "12a" (unexpected "a" at offset 2)"#)
        }
    }

    @Test(arguments: ["9223372036855", "1e20", "99999999999999999999999"])
    func valuesBeyondTheFixedPointRangeAreRefused(text: String) {
        #expect(throws: PriceParseError(reason: .outOfRange, text: text)) { try Price(parsing: text) }
    }

    @Test func itchPricesConvert() {
        #expect(Price(itchPrice4: 1_785_200).fixedPoint == 178_520_000)
        #expect(Price(itchPrice4: 1_785_200).itchPrice4 == 1_785_200)
        #expect(Price(itchPrice8: 17_852_000_000).fixedPoint == 178_520_000)
    }
}

@Suite struct PriceFormatting {
    @Test(arguments: [
        (Int64(178_520_000), "178.52"), (178_000_000, "178"), (50_000, "0.05"), (1, "0.000001"), (0, "0"),
        (-500_000, "-0.5"), (100_000_001, "100.000001"), (Int64.max, "9223372036854.775807"),
    ])
    func formatsTheShortestExactDecimal(fixedPoint: Int64, text: String) {
        #expect(Price(fixedPoint: fixedPoint).description == text)
    }

    @Test func formatThenParseIsTheIdentity() throws {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let price = Price(fixedPoint: Int64.random(in: 0...10_000_000_000_000, using: &random))
            #expect(try Price(parsing: price.description) == price)
        }
    }
}
