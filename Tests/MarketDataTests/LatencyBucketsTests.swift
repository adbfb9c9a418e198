import Testing

@testable import MarketData

@Suite struct LatencyBucketsTests {
    @Test func eachReadingLandsInTheFirstBucketWhoseBoundHoldsItAndSkewIsCountedApart() {
        var hop = LatencyBuckets(hop: "in plantd")
        hop.record(1_000)  // exactly 1 us: the first bucket (bounds are inclusive, as Prometheus' le)
        hop.record(1_001)  // just above: the 2 us bucket
        hop.record(0)
        hop.record(6_000_000_000)  // above the last bound: +Inf
        hop.record(from: 10, to: 7)  // a later stamp before an earlier one: clocks apart
        hop.record(from: 0, to: 7)  // a missing stamp: no reading
        #expect(hop.counts[0] == 2 && hop.counts[1] == 1 && hop.counts[LatencyBuckets.boundsNs.count] == 1)
        #expect(hop.counts.reduce(0, +) == 4 && hop.count == 4)
        #expect(hop.sumNs == 6_000_002_001)
        #expect(hop.clockSkewed == 1)
        #expect(LatencyBuckets.boundsNs == LatencyBuckets.boundsNs.sorted())
    }
}
