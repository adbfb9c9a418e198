/// One hop's latencies since the daemon started, counted in fixed buckets (1 us to 5 s): what `/metrics` exposes as
/// a Prometheus histogram. Recording finds the bucket by binary search and allocates nothing, so the per-tick paths
/// of feedd, plantd and edged can afford it; `mktctl latency` keeps its own finer HDR histograms per window.
public struct LatencyBuckets: Codable, Sendable, Equatable {
    /// Upper bounds of the buckets, nanoseconds; one more bucket counts what is above the last (+Inf).
    public static let boundsNs: [UInt64] = [
        1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
        1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 200_000_000, 500_000_000,
        1_000_000_000, 2_000_000_000, 5_000_000_000,
    ]

    /// Which hop: "exchange -> feedd", "in feedd", "feedd -> plantd", "in plantd", "plantd -> edged".
    public var hop: String
    /// Per bucket (not cumulative), `boundsNs.count + 1` of them.
    public private(set) var counts: [UInt64]
    public private(set) var sumNs: UInt64 = 0
    public private(set) var count: UInt64 = 0
    /// Readings whose later stamp came before the earlier one (clocks of two hosts apart): not counted.
    public private(set) var clockSkewed: UInt64 = 0

    public init(hop: String) {
        self.hop = hop
        counts = [UInt64](repeating: 0, count: Self.boundsNs.count + 1)
    }

    /// The time from stamp `from` to stamp `to` (CLOCK_REALTIME ns); a missing stamp (0) is not a reading.
    @inline(__always)
    public mutating func record(from: UInt64, to: UInt64) {
        guard from != 0, to != 0 else { return }
        guard to >= from else {
            clockSkewed &+= 1
            return
        }
        record(to - from)
    }

    public mutating func record(_ nanoseconds: UInt64) {
        var low = 0
        var high = Self.boundsNs.count
        while low < high {
            let middle = (low + high) / 2
            if Self.boundsNs[middle] < nanoseconds { low = middle + 1 } else { high = middle }
        }
        counts[low] &+= 1
        sumNs &+= nanoseconds
        count &+= 1
    }
}
