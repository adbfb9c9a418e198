import Benchmark
import EdgeServer
import MarketData

/// A market of 500 symbols as plantd publishes it (three quotes to two trades), for the upstream thread's part.
let edgeMarket: [[UInt8]] = {
    let encoder = TickEncoder()
    return (1...50_000).map { index in
        let symbol = "S\((index &* 7919) % 500)"
        let price = Int64(100_000_000 + (index % 50) * 10_000)
        var tick: Tick
        if index % 5 < 2 {
            tick = Tick.trade(symbol: symbol, venue: "XNAS", price: Price(fixedPoint: price), size: 100)
        } else {
            tick = Tick(symbol: symbol, type: .quote, venue: "XNAS")
            tick.bidPrice = Price(fixedPoint: price - 10_000)
            tick.askPrice = Price(fixedPoint: price + 10_000)
            tick.bidSize = 300
            tick.askSize = 200
        }
        tick.streamSequence = UInt64(index)
        tick.symbolSequence = UInt64(index / 500 + 1)
        tick.exchangeTimestampNs = 1_764_000_000_000_000_000 + UInt64(index) * 1_000
        return encoder.encodeToArray(tick)
    }
}()

/// edged's fan-out on one event loop without sockets (`FanOutHarness`: edged's writing handlers on in-memory
/// channels): one iteration is one batch from plantd delivered to 1 000 clients watching its symbol, each client's
/// share written as one buffer of whole frames and flushed once, then taken off the channels. Mallocs are counted and
/// must stay 0: nothing is allocated per update or per client once the clients' batch buffers exist.
let benchmarks: @Sendable () -> Void = {
    // The upstream thread's part, per tick: read plantd's bytes, write the JSON and its frame once for every client,
    // keep it as the symbol's last value. One iteration is one tick.
    Benchmark("Edge_tick_to_update", configuration: Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3),
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
        var live = LiveTicks()
        live.keepLastValues(of: (0..<500).map { "S\($0)" })
        var held: [EdgeUpdate] = []
        held.reserveCapacity(64)
        // One pass over the market first: every symbol's last values and the ring's buffers exist from then on.
        for bytes in edgeMarket { _ = bytes.withUnsafeBytes { live.take($0) } }
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            // Updates live about as long as a batch does (then the clients have written them).
            if held.count == 64 { held.removeAll(keepingCapacity: true) }
            if let update = edgeMarket[index].withUnsafeBytes({ live.take($0) }) { held.append(update) }
            index = index + 1 == edgeMarket.count ? 0 : index + 1
        }
        benchmark.stopMeasurement()
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
