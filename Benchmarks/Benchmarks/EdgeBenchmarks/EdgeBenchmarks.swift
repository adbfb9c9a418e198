import Benchmark
import BenchmarkMarkets
import EdgeServer

/// edged's per-update work without sockets: the upstream thread's (a tick from plantd made the update its clients
/// get) and one event loop's fan-out (`FanOutHarness`: edged's writing handlers on in-memory channels: a batch from
/// plantd delivered to 1 000 clients watching its symbol, each client's share written as one buffer of whole frames
/// and flushed once, then taken off the channels). Mallocs are counted and must stay 0: nothing is allocated per
/// tick, per update or per client once the buffers exist.
let benchmarks: @Sendable () -> Void = {
    // The upstream thread's part, per tick: read plantd's bytes, write the JSON and its frame once for every client,
    // keep it as the symbol's last value. One iteration is one tick.
    Benchmark("Edge_tick_to_update", configuration: Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        var live = LiveTicks()
        live.keepLastValues(of: SyntheticTicks.symbols)
        var held: [EdgeUpdate] = []
        held.reserveCapacity(64)
        // One pass over the market first: every symbol's last values and the ring's buffers exist from then on.
        for bytes in SyntheticTicks.market { _ = bytes.withUnsafeBytes { live.take($0) } }
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            // Updates live about as long as a batch does (then the clients have written them).
            if held.count == 64 { held.removeAll(keepingCapacity: true) }
            if let update = SyntheticTicks.market[index].withUnsafeBytes({ live.take($0) }) { held.append(update) }
            index = index + 1 == SyntheticTicks.market.count ? 0 : index + 1
        }
        benchmark.stopMeasurement()
    }

    // A slow client's queue (`ClientQueue`, edged's default marks) watching the whole market (500 symbols) or a
    // screen's worth of it (20), its socket taking one update for every four that arrive: past the soft mark each new
    // update replaces its symbol's queued one or queues. Every slow client pays this once per update it watches; one
    // iteration is one update.
    for watched in [500, 20] {
        Benchmark("Edge_slow_client_queue_\(watched)_symbols", configuration: Benchmark.Configuration(
            metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
            thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
        ) { benchmark in
            let updates = SyntheticTicks.symbols.prefix(watched).map { symbol in
                let update = FanOutHarness.update(symbol: symbol, json: #"{"type":"TRADE","symbol":"\#(symbol)","#
                    + #""price":178.52,"size":100,"timestamp":1701432000000,"exchange":"NASDAQ","seq":1}"#)
                return ClientQueue.Entry(symbol: update.symbol, text: update.text, droppable: true)
            }
            // The symbols in the market's order (each as often as the others, spread over it).
            let arrivals = (1...50_000).map { (($0 &* 7919) % updates.count) }
            var queue = ClientQueue(limits: .init())
            var index = 0
            func arrive() {
                queue.append(updates[arrivals[index]])
                if index & 3 == 0 { blackHole(queue.popFirst()) }
                index = index + 1 == arrivals.count ? 0 : index + 1
            }
            // Until the queue is at its steady depth (and its storage at its largest).
            for _ in 0..<arrivals.count { arrive() }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { arrive() }
            benchmark.stopMeasurement()
            precondition(queue.count >= min(watched, ClientQueue.Limits().softMessages) && queue.dropped > 0,
                "the queue is not conflating")
        }
    }

    let perBatch = Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal], maxDuration: .seconds(3),
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])

    for burst in [1, 10] {
        Benchmark("Edge_fan_out_1000_clients_burst_\(burst)", configuration: perBatch) { benchmark in
            let harness = try FanOutHarness(clients: 1_000, symbol: "AAPL")
            let batch = (1...burst).map { index in
                FanOutHarness.update(symbol: "AAPL", json: #"{"type":"TRADE","symbol":"AAPL","price":178.\#(index),"#
                    + #""size":100,"timestamp":1701432000000,"exchange":"NASDAQ","seq":\#(index)}"#)
            }
            // The first batch gives every client its own batch buffer; from then on they are reused.
            harness.deliver(batch)
            try harness.drain()
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                harness.deliver(batch)
                blackHole(try harness.drain())
            }
            // The harness's 1 000 channels are torn down outside the measurement.
            benchmark.stopMeasurement()
        }
    }
}
