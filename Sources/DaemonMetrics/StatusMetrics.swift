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
        return buffer
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
