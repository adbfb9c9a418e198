import MarketData
import Prometheus
import Synchronization

/// A daemon's `status` as Prometheus metrics (text exposition format), so that what `mktctl status` shows is what a
/// Prometheus server scrapes: totals as counters (`tickplant_messages_in_total`), levels as gauges
/// (`tickplant_gaps_open`, `tickplant_clients`), and each of the daemon's named counters as a gauge
/// `tickplant_<daemon>_<name>` (they mix totals and levels; a gauge reads right for both). Every series carries the
/// labels `daemon` and `name` (the instance name from its etc/ file).
public final class StatusMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    /// The totals last exposed, since Prometheus counters only go up by increments.
    private let exposedTotals = Mutex<[String: UInt64]>([:])

    public init() {}

    /// The exposition of `status`: what `/metrics` answers.
    public func exposition(of status: DaemonStatus) -> [UInt8] {
        let labels = [("daemon", status.daemon), ("name", status.name)]
        total("messages_in", "Messages taken in.", status.messagesIn, labels)
        total("messages_out", "Messages sent on.", status.messagesOut, labels)
        total("drops", "Messages dropped (slow consumers, full queues).", status.drops, labels)
        total("gaps_healed", "Sequence gaps healed.", status.gapsHealed, labels)
        level("gaps_open", "", "Sequence gaps open now.", Double(status.gapsOpen), labels)
        level("rate_in", "per_second", "Messages taken in per second, lately.", status.rateIn, labels)
        level("rate_out", "per_second", "Messages sent on per second, lately.", status.rateOut, labels)
        level("uptime", "seconds", "Seconds since the daemon started.", status.uptimeSeconds, labels)
        if let clients = status.clients {
            level("clients", "", "Clients connected now.", Double(clients), labels)
        }
        for (key, value) in status.counters {
            level("\(Self.metricName(status.daemon))_\(Self.metricName(key))", "",
                "The \(status.daemon) status counter \(key).", Double(value), labels)
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        if let latency = status.latency, !latency.isEmpty {
            buffer.append(contentsOf: Self.histograms(latency, labels: labels).utf8)
        }
        return buffer
    }

    /// Each hop's buckets as one Prometheus histogram family, `tickplant_hop_latency_seconds`, labelled by hop. Written
    /// here rather than through the registry, whose histograms take one observation at a time: the daemon hands over
    /// counts it has kept since it started, which are exactly a histogram's cumulative buckets.
    static func histograms(_ hops: [LatencyBuckets], labels: [(String, String)]) -> String {
        var text = """
            # HELP tickplant_hop_latency_seconds Latency of one hop of the chain from the ticks' CLOCK_REALTIME \
            stamps (between hosts it includes the difference of their clocks).
            # TYPE tickplant_hop_latency_seconds histogram

            """
        for hop in hops {
            let hopLabels = labels + [("hop", metricName(hop.hop.replacingOccurrences(of: " -> ", with: "_to_")))]
            let common = hopLabels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
            var cumulative: UInt64 = 0
            for (index, bound) in LatencyBuckets.boundsNs.enumerated() {
                cumulative += hop.counts[index]
                text += "tickplant_hop_latency_seconds_bucket{\(common),le=\"\(seconds(bound))\"} \(cumulative)\n"
            }
            text += "tickplant_hop_latency_seconds_bucket{\(common),le=\"+Inf\"} \(hop.count)\n"
            text += "tickplant_hop_latency_seconds_sum{\(common)} \(seconds(hop.sumNs))\n"
            text += "tickplant_hop_latency_seconds_count{\(common)} \(hop.count)\n"
        }
        return text
    }

    /// Nanoseconds as seconds in plain decimal (`0.000001`), as the exposition format wants numbers.
    static func seconds(_ nanoseconds: UInt64) -> String {
        let fraction = String(nanoseconds % 1_000_000_000)
        let padded = String(repeating: "0", count: 9 - fraction.count) + fraction
        let trimmed = padded.reversed().drop { $0 == "0" }.reversed()
        return "\(nanoseconds / 1_000_000_000)" + (trimmed.isEmpty ? "" : "." + String(trimmed))
    }

    /// `tickplant_<name>_total`, a counter.
    private func total(_ name: String, _ help: String, _ value: UInt64, _ labels: [(String, String)]) {
        let key = name + labels.map { "|\($0.1)" }.joined()
        let increment = exposedTotals.withLock { exposed -> UInt64 in
            // A total that went down (the daemon behind the endpoint restarted): its new count on top.
            let previous = exposed[key] ?? 0
            exposed[key] = value
            return value >= previous ? value - previous : value
        }
        let descriptor = MetricNameDescriptor(
            namespace: "tickplant", metricName: name, unitName: "total", helpText: help)
        registry.makeCounter(descriptor: descriptor, labels: labels).increment(by: Int64(clamping: increment))
    }

    /// `tickplant_<name>[_<unit>]`, a gauge.
    private func level(_ name: String, _ unit: String, _ help: String, _ value: Double, _ labels: [(String, String)]) {
        let descriptor = MetricNameDescriptor(namespace: "tickplant", metricName: name, unitName: unit, helpText: help)
        registry.makeGauge(descriptor: descriptor, labels: labels).set(to: value)
    }

    /// A Prometheus metric name part: letters, digits and underscores (`feed1.missing` -> `feed1_missing`).
    static func metricName(_ text: String) -> String {
        String(text.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }
}
