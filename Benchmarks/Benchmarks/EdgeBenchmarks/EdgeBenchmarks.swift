import Benchmark
import EdgeServer

/// edged's fan-out on one event loop without sockets (`FanOutHarness`: edged's writing handlers on in-memory
/// channels): one iteration is one batch from plantd delivered to 1 000 clients watching its symbol, each client's
/// share written as one buffer of whole frames and flushed once, then taken off the channels. Mallocs are counted and
/// must stay 0: nothing is allocated per update or per client once the clients' batch buffers exist.
let benchmarks: @Sendable () -> Void = {
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
