import Histogram
import MarketData

extension HopFigures {
    /// One hop's figures from its HDR histogram of nanoseconds: what mktctl measures itself and what edged reports.
    public init(hop: String, histogram: Histogram<UInt64>, clockSkewed: UInt64) {
        self.init(
            hop: hop, count: histogram.totalCount, p50Ns: histogram.valueAtPercentile(50),
            p90Ns: histogram.valueAtPercentile(90), p99Ns: histogram.valueAtPercentile(99),
            p999Ns: histogram.valueAtPercentile(99.9), maxNs: histogram.totalCount == 0 ? 0 : histogram.max,
            clockSkewed: clockSkewed)
    }
}
