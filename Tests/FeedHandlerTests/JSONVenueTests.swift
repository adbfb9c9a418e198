import Testing

@testable import FeedHandler
import MarketData

@Suite struct JSONVenueParsing {
    func parse(_ line: String, _ format: JSONVenueFormat) throws(JSONLineError) -> Tick {
        var text = line
        let parser = JSONVenueParser(format: format, venue: "TEST")
        return try text.withUTF8 { buffer in
            Result { () throws(JSONLineError) -> Tick in try parser.parse(line: UnsafeRawBufferPointer(buffer)) }
        }.get()
    }

    @Test func formatAWithANumberPrice() throws {
        let tick = try parse(#"{"sym":"AAPL","px":178.52,"ts":1701432000000}"#, .formatA)
        #expect(tick.symbol == "AAPL")
        #expect(tick.type == .trade)
        #expect(tick.price.fixedPoint == 178_520_000)
        #expect(tick.size == 0)
        #expect(tick.exchangeTimestampNs == 1_701_432_000_000_000_000)
    }

    @Test func formatBWithAStringPriceAndIsoTime() throws {
        let tick = try parse(#"{"symbol":"AAPL","lastPrice":"178.52","timestamp":"2025-12-01T10:00:00Z"}"#, .formatB)
        #expect(tick.price.fixedPoint == 178_520_000)
        #expect(tick.exchangeTimestampNs == 1_764_583_200_000_000_000)
    }

    @Test func isoTimesWithFractionsAndOffsets() throws {
        let utc = try parse(#"{"symbol":"A","lastPrice":1,"timestamp":"2025-12-01T10:00:00.123456789Z"}"#, .formatB)
        let offset = try parse(#"{"symbol":"A","lastPrice":1,"timestamp":"2025-12-01T05:00:00.123456789-05:00"}"#, .formatB)
        #expect(utc.exchangeTimestampNs == 1_764_583_200_123_456_789)
        #expect(offset.exchangeTimestampNs == utc.exchangeTimestampNs)
    }

    @Test func unknownMembersAndNestedValuesAreIgnored() throws {
        let tick = try parse(
            #"{"extra":{"a":[1,2,{"b":"}"}]},"sym":"MSFT","flag":true,"px":"410.1","n":null,"ts":1}"#, .formatA)
        #expect(tick.symbol == "MSFT")
        #expect(tick.price.fixedPoint == 410_100_000)
    }

    @Test(arguments: [
        "not json", "{", #"{"sym":"AAPL","px":178.52}"#, #"{"px":1,"ts":1}"#, #"{"sym":"AAPL","px":"abc","ts":1}"#,
        #"{"sym":"AAPL","px":-5,"ts":1}"#, #"{"sym":"AA|PL","px":1,"ts":1}"#, #"{"sym":"AAPL","px":1,"ts":"yesterday"}"#,
        #"{"sym":"AAPL","px":1,"ts":1} trailing"#, #"[1,2,3]"#,
    ])
    func malformedFormatALinesAreRefusedWithAReason(line: String) {
        #expect(throws: JSONLineError.self) { try parse(line, .formatA) }
    }

    @Test(arguments: [
        #"{"symbol":"AAPL","lastPrice":"178.52","timestamp":"2025-12-01T10:00:00"}"#,  // no zone
        #"{"symbol":"AAPL","lastPrice":"178.52","timestamp":"2025-13-01T10:00:00Z"}"#,
        #"{"symbol":"AAPL","lastPrice":"178.52","timestamp":1701432000000}"#,
    ])
    func malformedFormatBLinesAreRefusedWithAReason(line: String) {
        #expect(throws: JSONLineError.self) { try parse(line, .formatB) }
    }
}

/// Times from a venue that nanoseconds since the epoch cannot hold: refused with a reason, never a trap or a wrap.
@Suite struct JSONVenueTimesOutOfRange {
    func parse(_ line: String, _ format: JSONVenueFormat) throws(JSONLineError) -> Tick {
        try JSONVenueParsing().parse(line, format)
    }

    @Test func theLastTimeNanosecondsHoldIsTakenAndTheYearsAfterItAreRefused() throws {
        let last = try parse(#"{"symbol":"A","lastPrice":"1","timestamp":"2554-07-21T23:34:33.709551615Z"}"#, .formatB)
        #expect(last.exchangeTimestampNs == UInt64.max)
        for time in ["2554-07-21T23:34:33.709551616Z", "2554-07-21T23:34:34Z", "9999-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999-23:59"]
        {
            #expect(throws: JSONLineError.self, "\(time)") {
                try parse(#"{"symbol":"AAPL","lastPrice":"178.53","timestamp":"\#(time)"}"#, .formatB)
            }
        }
    }

    @Test func formatAMillisecondsThatWouldWrapAreRefusedNotWrapped() throws {
        let last = try parse(#"{"sym":"A","px":1,"ts":18446744073709}"#, .formatA)
        #expect(last.exchangeTimestampNs == 18_446_744_073_709_000_000)
        // 18446744073710 ms times 1 000 000 wrapped to 290 448 384 ns (1970) before: a wrong time, silently.
        for ts in ["18446744073710", "9999999999999999999"] {
            let error = #expect(throws: JSONLineError.self) { try parse(#"{"sym":"A","px":1,"ts":\#(ts)}"#, .formatA) }
            #expect(error?.reason.contains("beyond the last time") == true, "\(String(describing: error))")
        }
    }
}
