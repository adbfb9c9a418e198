import Benchmark
import FeedHandler
import Glibc
import MarketData

/// feedd's per-message path, without sockets: ITCH decode -> book -> normalize -> protobuf encode. One iteration is
/// one ITCH message from a steady market (every order added is later executed or deleted, so the book stays the same
/// size); mallocs are counted per iteration and must stay 0.
/// The market is built once: a benchmark's closure runs once per sample, and building it there would be measured.
let steadyMarket = SyntheticItchMarket.messages(symbols: 200, orders: 20_000)

/// feedd's per-message path as the benchmarks drive it: decode, book, normalize, and encode the ticks that come out.
struct FeedPath {
    var normalizer: ItchNormalizer
    let encoder = TickEncoder()
    var ticks: [Tick] = []

    init(bookDepth: Int) {
        normalizer = ItchNormalizer(venue: "XNAS", sessionMidnightNs: 0, bookDepth: bookDepth)
        ticks.reserveCapacity(8)
    }

    mutating func process(_ message: [UInt8], _ index: Int) {
        message.withUnsafeBytes { bytes in
            guard let decoded = try? ItchDecoder.decode(bytes) else { return }
            normalizer.handle(decoded, venueSequence: UInt64(index), into: &ticks)
        }
        for tick in ticks { blackHole(encoder.encode(tick).count) }
        ticks.removeAll(keepingCapacity: true)
    }
}

/// Calls `body` once per iteration with the steady market's next message and its index, going round the market
/// after its stock directory (which the warm-up has read).
func cycleSteadyMarket(_ iterations: Range<Int>, _ body: ([UInt8], Int) -> Void) {
    let first = SyntheticItchMarket.directorySize(symbols: 200)
    var index = first
    for _ in iterations {
        body(steadyMarket[index], index)
        index = index + 1 == steadyMarket.count ? first : index + 1
    }
}

let benchmarks: @Sendable () -> Void = {
    // `make bench-check` holds every benchmark to the files in Thresholds/: 0 mallocs in the 90th percentile of
    // samples, each a thousand or a million iterations, so one allocation per message or call fails the check. Time
    // and throughput are reported, never checked: this machine is shared and they move with its load.
    let checked: [BenchmarkMetric: BenchmarkThresholds] = [.mallocCountTotal: .init(absolute: [.p90: 0])]
    // A million messages per sample, so that the per-sample warm-up below costs under a percent of what is measured.
    let perMessage = Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .mega, maxDuration: .seconds(5), thresholds: checked)
    let perCall = Benchmark.Configuration(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .kilo, maxDuration: .seconds(3), thresholds: checked)

    Benchmark("ITCH_decode_book_normalize_encode", configuration: perMessage) { benchmark in
        var path = FeedPath(bookDepth: 0)
        // Warm up: the book, the symbol table and the buffers reach their steady size first.
        for (index, message) in steadyMarket.enumerated() { path.process(message, index) }
        benchmark.startMeasurement()
        cycleSteadyMarket(benchmark.scaledIterations) { message, index in path.process(message, index) }
    }

    // The same path with BOOK ticks (five levels a side) as feedd makes them, built and encoded, its clock moved on
    // by one BOOK slot (a millisecond of the 100 ms book_interval) every message: with 200 symbols, two to a slot,
    // 0.42 BOOKs a message, far more than feedd sends.
    Benchmark("ITCH_with_BOOKs_a_slot_every_message", configuration: perMessage) { benchmark in
        var path = FeedPath(bookDepth: 5)
        let encoder = path.encoder  // not through `path` while its normalizer hands out a BOOK
        var books = 0
        var nowNs: UInt64 = 0
        func process(_ message: [UInt8], _ index: Int) {
            path.process(message, index)
            nowNs += 1_000_000
            path.normalizer.flushDueBooks(nowNs: nowNs) { book in
                books += 1
                blackHole(encoder.encode(book).count)
            }
        }
        for (index, message) in steadyMarket.enumerated() { process(message, index) }
        books = 0
        benchmark.startMeasurement()
        cycleSteadyMarket(benchmark.scaledIterations, process)
        benchmark.stopMeasurement()
        let processed = benchmark.scaledIterations.count
        precondition(books * 4 > processed, "fewer BOOKs than one every four messages: \(books) for \(processed)")
    }

    // Every MoldUDP64 message goes through its session's stream before it is decoded: in order, nothing held.
    Benchmark("Mold_stream_in_order", configuration: perMessage) { benchmark in
        let messages = steadyMarket
        var stream = MoldStream()
        var sequence: UInt64 = 1
        var deliveredBytes = 0
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            messages[index].withUnsafeBytes { bytes in
                stream.receive(sequence: sequence, message: bytes, now: 0) { _, message in
                    deliveredBytes &+= message.count
                }
            }
            sequence += 1
            index = index + 1 == messages.count ? 0 : index + 1
        }
        blackHole(deliveredBytes)
    }

    // A feed losing datagrams: in every run of 64 sequence numbers the first arrives last (as a retransmission
    // would), so 63 of 64 messages are held behind a hole and then released. This is the path feedd takes while it
    // catches up, when time matters most.
    Benchmark("Mold_stream_behind_gaps", configuration: perMessage) { benchmark in
        let messages = steadyMarket
        var stream = MoldStream()
        var deliveredBytes = 0
        let run: UInt64 = 64
        func receive(_ sequence: UInt64) {
            messages[Int(sequence % UInt64(messages.count))].withUnsafeBytes { bytes in
                stream.receive(sequence: sequence, message: bytes, now: 0) { _, message in
                    deliveredBytes &+= message.count
                }
            }
        }
        /// The message received at position `position` of the arrival order.
        func arriving(_ position: UInt64) -> UInt64 {
            let first = position - position % run + 1
            return position % run == run - 1 ? first : first + position % run + 1
        }
        // Warm up: the stream's stores reach their working size first.
        var position: UInt64 = 0
        while position < run * 1_000 {
            receive(arriving(position))
            position += 1
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            receive(arriving(position))
            position += 1
        }
        benchmark.stopMeasurement()
        precondition(stream.counters.duplicates == 0 && stream.expected + run > position, "the pattern is off")
        blackHole(deliveredBytes)
    }

    // A venue's book at a million resting orders, made for them (`book_orders`), as half a million more arrive: the
    // first of them outgrows the order table. What matters is the longest any one add holds feedd's thread
    // (reported as "longest add"), not the total: while it waits, datagrams queue in the socket and ticks go out late.
    // The baseline in the same run is the same fill into a book made for all of them, which never grows: its longest
    // add is what the machine's page faults and preemptions cost. One sample is one fill; the million orders before
    // it are added unmeasured. One allocation when the table grows (the new slots' owner), none without.
    let million = 1 << 20
    let longestAdd = BenchmarkMetric.custom("longest add (ns)", polarity: .prefersSmaller, useScalingFactor: false)
    for (name, madeFor, growths) in [
        ("Order_book_filling_past_a_million_orders", million, 1),
        ("Order_book_filling_past_a_million_orders_made_for_all", 2 * million, 0),
    ] {
        Benchmark(
            name,
            configuration: .init(
                metrics: [.wallClock, .mallocCountTotal, longestAdd], scalingFactor: .one, maxDuration: .seconds(20),
                maxIterations: 8, thresholds: [.mallocCountTotal: .init(absolute: [.p90: growths])])
        ) { benchmark in
            var book = VenueBook(orders: madeFor)
            func add(_ reference: Int) {
                book.add(reference: UInt64(reference), locate: 1, side: reference & 1 == 0 ? .buy : .sell,
                    price: 1_000 + UInt32(reference % 50), shares: 100)
            }
            for reference in 1...million { add(reference) }
            var longestNs = 0
            var before = timespec()
            var after = timespec()
            benchmark.startMeasurement()
            for reference in million + 1...million + million / 2 {
                clock_gettime(CLOCK_MONOTONIC, &before)
                add(reference)
                clock_gettime(CLOCK_MONOTONIC, &after)
                let tookNs = (after.tv_sec - before.tv_sec) * 1_000_000_000 + after.tv_nsec - before.tv_nsec
                longestNs = max(longestNs, tookNs)
            }
            benchmark.stopMeasurement()
            precondition(book.orderCount == million + million / 2, "orders went missing")
            precondition((book.orderCapacity > madeFor) == (growths > 0), "the table grew \(book.orderCapacity)")
            benchmark.measurement(longestAdd, longestNs)
        }
    }

    Benchmark("ITCH_decode", configuration: perMessage) { benchmark in
        let messages = steadyMarket
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            messages[index].withUnsafeBytes { blackHole(try? ItchDecoder.decode($0)) }
            index = index + 1 == messages.count ? 0 : index + 1
        }
    }

    Benchmark("Price_parse", configuration: perCall) { benchmark in
        let texts: [[UInt8]] = ["178.52", "0.0001", "12345.678901", "99.5"].map { Array($0.utf8) }
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            texts[index].withUnsafeBytes { blackHole(Price.parse($0)) }
            index = (index + 1) & 3
        }
    }

    // The same four prices written back as text, as edged writes them into its JSON (`Price.append(to:)`: the
    // shortest exact decimal), into a buffer kept between calls.
    Benchmark("Price_format", configuration: perCall) { benchmark in
        let prices = [178_520_000, 100, 12_345_678_901, 99_500_000].map { Price(fixedPoint: $0) }
        var text: [UInt8] = []
        text.reserveCapacity(32)
        benchmark.startMeasurement()
        var index = 0
        for _ in benchmark.scaledIterations {
            text.removeAll(keepingCapacity: true)
            prices[index].append(to: &text)
            blackHole(text.count)
            index = (index + 1) & 3
        }
    }

    // A TRADE as feedd publishes it (stamps set), by the project's wire writer and, as the baseline in the same run,
    // by protobuf-c's packer: the same bytes.
    for (name, withProtobufC) in [("Tick_encode", false), ("Tick_encode_protobuf_c", true)] {
        Benchmark(name, configuration: perCall) { benchmark in
            let encoder = TickEncoder()
            var tick = Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 178_520_000), size: 100,
                exchangeTimestampNs: 1_701_432_000_000_000_000)
            tick.feedReceiveNs = 1_701_432_000_000_050_000
            tick.feedTransmitNs = 1_701_432_000_000_060_000
            tick.venueSequence = 1
            tick.streamSequence = 1
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                tick.streamSequence &+= 1
                tick.venueSequence &+= 1
                blackHole(withProtobufC ? encoder.encodeWithProtobufC(tick).count : encoder.encode(tick).count)
            }
        }
    }
}
