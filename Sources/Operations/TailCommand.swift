import ArgumentParser
import Foundation
import MarketData
import ZeroMQ

/// `mktctl tail PREFIX...`: decoded ticks from plantd (or a feedd, or any PUB endpoint), one per line. From plantd it
/// joins as docs/protocol.md tells a consumer to (PlantJoin): each symbol's last values first, marked SNAPSHOT, then
/// its live ticks with no hole in symbol_seq, a gap replayed (REPLAYED) and a plant restart ridden through.
public struct TailCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tail", abstract: "Print ticks whose topic starts with a prefix (all when none given).",
        discussion: """
            From plantd, tail joins as a raw consumer does (docs/protocol.md): each symbol's last values first \
            (SNAPSHOT), then its live ticks in symbol_seq order; a gap is replayed from plantd (REPLAYED) and \
            what happened is said on standard error. --no-join shows only live ticks, as a bare SUB gets them; so \
            does a prefix of one type (AAPL|T), which sees only part of a symbol's symbol_seq.
            """)

    @OptionGroup public var options: ChainOptions

    @OptionGroup public var curve: CurveClientOptions

    @Argument(help: "Topic prefixes such as AAPL (every AAPL tick, never AAPLX's) or AAPL|T (its trades).")
    public var prefixes: [String] = []

    @Option(name: .long, help: "plantd, feedd, or a ZeroMQ endpoint such as tcp://127.0.0.1:7201.")
    public var from: String = "plantd"

    @Option(name: .long, help: "plantd's snapshot ROUTER, to join a --from ENDPOINT (from plantd: its etc/ file's).")
    public var snapshot: String?

    @Flag(name: .long, help: "Live ticks only, as a bare SUB gets them: no snapshot, no gap repair.")
    public var noJoin = false

    @Flag(name: .long, help: "Use the prefixes literally: AA is every symbol that begins with AA.")
    public var raw = false

    @Option(name: .long, help: "Stop after this many ticks.")
    public var count: Int?

    @Option(name: .long, help: "Stop after this many seconds without a tick (exit status 1 if none came).")
    public var idleTimeout: Double?

    @Flag(name: .long, help: "Also the ticks plantd's filters quarantined (#Q|SYMBOL), marked QUARANTINED.")
    public var quarantine = false

    @Flag(name: .long, help: "Add each tick's hops: in feedd, feedd to plantd, in plantd, to here, end to end.")
    public var latency = false

    public init() {}

    public func validate() throws {
        if let count, count <= 0 { throw ValidationError("--count: expected a positive number, got \(count)") }
    }

    public func run() async throws {
        let context = try ZMQContext()
        // The quarantine's topics are #Q|SYMBOL: one for each symbol asked for, or all of them.
        let quarantinedSymbols = Set(prefixes.map { String($0.prefix { $0 != "|" }) })
        let quarantined = !quarantine ? [] : prefixes.isEmpty ? [Topic.quarantinePrefix]
            : quarantinedSymbols.sorted().map { Topic.quarantinePrefix + $0 }
        let topics = TickSource.topics(prefixes, raw: raw)
        let curveKeys = try curve.keys(from: from, options: options)
        if !noJoin && (from == "plantd" || snapshot != nil) {
            if topics.allSatisfy(PlantJoin.joinable) {
                let snapshotEndpoint: String
                if let snapshot {
                    snapshotEndpoint = snapshot
                } else {
                    guard let found = try options.loadEndpoints().plantSnapshot else {
                        throw ValidationError("no plantd.toml in \(options.etc)/ (use --etc, or --from and --snapshot)")
                    }
                    snapshotEndpoint = found
                }
                let publish = try TickSource.endpoint(from: from, options: options)
                let join = try PlantJoin(context: context, publish: publish, snapshot: snapshotEndpoint,
                    prefixes: topics, plantTopics: quarantined, curve: curveKeys)
                return try printJoined(join, quarantinedSymbols: quarantinedSymbols)
            }
            // A prefix of one type (AAPL|T) sees only part of its symbol's symbol_seq: it cannot be joined
            // gap-free, so it is shown live, as a bare SUB gets it (docs/protocol.md, section 5).
        }
        let socket = try TickSource.subscribe(from: from, options: options, prefixes: prefixes + quarantined, raw: raw,
            context: context, curve: curveKeys).socket
        let poller = ZMQPoller()
        try poller.add(socket)
        let topicMessage = ZMQMessage()
        let payload = ZMQMessage()
        var printed = 0
        var lastTick = MonotonicClock.nowNanoseconds()
        let output = FileHandle.standardOutput
        while count.map({ printed < $0 }) ?? true {
            try poller.poll(timeoutMilliseconds: 200)
            guard try socket.receive(into: topicMessage, dontWait: true) else {
                if let idleTimeout, Double(MonotonicClock.nowNanoseconds() - lastTick) / 1e9 > idleTimeout {
                    throw ExitCode(printed > 0 ? 0 : 1)
                }
                continue
            }
            guard topicMessage.hasMore else { continue }
            _ = try socket.receive(into: payload)
            let receivedNs = WallClock.nowNanoseconds()
            guard let tick = payload.withUnsafeBytes({ try? TickDecoder.decode($0) }) else { continue }
            // plantd's own ticks (#HB heartbeats) only when asked for by name.
            if tick.symbol.hasPrefix("#") && !prefixes.contains(where: { $0.hasPrefix("#") }) { continue }
            lastTick = MonotonicClock.nowNanoseconds()
            var line = options.json ? TickText.json(tick) : TickText.line(tick)
            if quarantine && topicMessage.withUnsafeBytes({ $0.starts(with: Topic.quarantinePrefix.utf8) }) {
                // `#Q|AAPL` is a prefix of AAPLX's quarantine topic too: only the symbols asked for.
                if !raw && !prefixes.isEmpty && !quarantinedSymbols.contains(tick.symbol) { continue }
                if !options.json { line = "QUARANTINED  " + line }
            }
            if latency && !options.json { line += "  " + TickText.hops(tick, receivedNs: receivedNs) }
            output.write(Data((line + "\n").utf8))
            printed += 1
        }
    }

    /// What the join hands over, printed as it comes: ticks on standard output (marked by origin), what happened to
    /// the stream on standard error.
    private func printJoined(_ join: PlantJoin, quarantinedSymbols: Set<String>) throws {
        var printed = 0
        var lastTick = MonotonicClock.nowNanoseconds()
        let output = FileHandle.standardOutput
        while count.map({ printed < $0 }) ?? true {
            let events = try join.poll(timeoutMilliseconds: 200)
            let receivedNs = WallClock.nowNanoseconds()
            if events.isEmpty, let idleTimeout, Double(MonotonicClock.nowNanoseconds() - lastTick) / 1e9 > idleTimeout {
                throw ExitCode(printed > 0 ? 0 : 1)
            }
            // One write per batch: a shard of a busy market is thousands of lines a second.
            var text = ""
            defer { if !text.isEmpty { output.write(Data(text.utf8)) } }
            for event in events {
                guard count.map({ printed < $0 }) ?? true else { break }
                switch event {
                case let .notice(text):
                    FileHandle.standardError.write(Data("tail: \(text)\n".utf8))
                case let .tick(tick, topic, origin):
                    // `#Q|AAPL` is a prefix of AAPLX's quarantine topic too: only the symbols asked for.
                    if origin == .plant && !raw && !prefixes.isEmpty && !quarantinedSymbols.contains(tick.symbol) {
                        continue
                    }
                    lastTick = MonotonicClock.nowNanoseconds()
                    let quarantined = origin == .plant && topic.hasPrefix(Topic.quarantinePrefix)
                    let mark = quarantined ? "QUARANTINED" : origin.rawValue
                    var line: String
                    if options.json {
                        line = TickText.json(tick)
                        if !mark.isEmpty { line = String(line.dropLast()) + #","origin":"\#(mark.lowercased())"}"# }
                    } else {
                        line = (mark.isEmpty ? "" : mark.padding(toLength: 11, withPad: " ", startingAt: 0) + "  ")
                            + TickText.line(tick)
                        if latency { line += "  " + TickText.hops(tick, receivedNs: receivedNs) }
                    }
                    text += line + "\n"
                    printed += 1
                }
            }
        }
    }
}

/// How mktctl prints a tick.
public enum TickText {
    /// The tick's hops from its stamps, for `tail --latency`: `feedd 7.0 us | ->plantd 121 us | plantd 3.0 us |
    /// ->here 111 us | e2e 724 us` (a hop whose stamps are missing is left out).
    public static func hops(_ tick: Tick, receivedNs: UInt64) -> String {
        func span(_ from: UInt64, _ to: UInt64) -> String? {
            guard from != 0, to != 0 else { return nil }
            return to >= from ? LatencyCommand.duration(to - from) : "-" + LatencyCommand.duration(from - to)
        }
        let last: UInt64 = [tick.plantTransmitNs, tick.feedTransmitNs].first { $0 != 0 } ?? 0
        return [
            span(tick.feedReceiveNs, tick.feedTransmitNs).map { "feedd \($0)" },
            span(tick.feedTransmitNs, tick.plantReceiveNs).map { "->plantd \($0)" },
            span(tick.plantReceiveNs, tick.plantTransmitNs).map { "plantd \($0)" },
            span(last, receivedNs).map { "->here \($0)" },
            span(tick.exchangeTimestampNs, receivedNs).map { "e2e \($0)" },
        ].compactMap { $0 }.joined(separator: " | ")
    }

    /// `AAPL     TRADE   XNAS  178.52 x 100          sym#812  stream#9001`
    public static func line(_ tick: Tick) -> String {
        let body: String =
            switch tick.type {
            case .trade: "\(tick.price) x \(tick.size)"
            case .quote: "\(tick.bidPrice) x \(tick.bidSize) / \(tick.askPrice) x \(tick.askSize)"
            case .book: "\(tick.bids.count) bids, \(tick.asks.count) asks"
            case .status: "\(tick.state) \(tick.quality) \(tick.reason)"
            case .bar: "O \(tick.open) H \(tick.high) L \(tick.low) C \(tick.close) V \(tick.volume)"
            }
        return [tick.symbol.padding(toLength: 8, withPad: " ", startingAt: 0),
            tick.type.description.padding(toLength: 7, withPad: " ", startingAt: 0),
            tick.venue.padding(toLength: 5, withPad: " ", startingAt: 0),
            body.padding(toLength: 40, withPad: " ", startingAt: 0),
            "sym#\(tick.symbolSequence)", "stream#\(tick.streamSequence)"].joined(separator: " ")
    }

    /// The tick as one JSON object with exact decimal prices.
    public static func json(_ tick: Tick) -> String {
        var fields: [String] = [
            #""symbol":"\#(tick.symbol)""#, #""type":"\#(tick.type)""#, #""venue":"\#(tick.venue)""#,
            #""symbol_seq":\#(tick.symbolSequence)"#, #""stream_seq":\#(tick.streamSequence)"#,
            #""venue_seq":\#(tick.venueSequence)"#, #""exchange_ts_ns":\#(tick.exchangeTimestampNs)"#,
            #""feed_rx_ns":\#(tick.feedReceiveNs)"#, #""feed_tx_ns":\#(tick.feedTransmitNs)"#,
            #""plant_rx_ns":\#(tick.plantReceiveNs)"#, #""plant_tx_ns":\#(tick.plantTransmitNs)"#,
        ]
        switch tick.type {
        case .trade:
            fields += [#""price":\#(tick.price)"#, #""size":\#(tick.size)"#, #""trade_id":\#(tick.tradeID)"#]
        case .quote:
            fields += [#""bid":\#(tick.bidPrice)"#, #""bid_size":\#(tick.bidSize)"#, #""ask":\#(tick.askPrice)"#,
                #""ask_size":\#(tick.askSize)"#]
        case .status:
            fields += [#""state":"\#(tick.state)""#, #""quality":"\#(tick.quality)""#, #""reason":"\#(tick.reason)""#]
        case .book, .bar:
            break
        }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// Where `tail` and `latency` read ticks: plantd's or a feedd's PUB (found from the etc/ files), or any endpoint.
enum TickSource {
    /// A SUB to `from` (plantd, feedd or an endpoint) subscribed to `prefixes` (everything when none): a symbol alone
    /// means every tick of it ("AAPL" subscribes "AAPL|", so AAPLX stays out) unless `raw`.
    static func subscribe(
        from: String, options: ChainOptions, prefixes: [String], raw: Bool, context: ZMQContext,
        curve: CurveClientKeys? = nil
    ) throws -> (socket: ZMQSocket, endpoint: String) {
        let endpoint = try endpoint(from: from, options: options)
        let socket = try ZMQSocket(context, type: .subscribe)
        if let curve { try socket.setCurveClient(curve) }
        try socket.setReceiveHighWaterMark(1_000_000)
        try socket.setSendHighWaterMark(0)  // its subscriptions: libzmq drops those past the mark without a word
        try socket.connect(endpoint)
        for topic in topics(prefixes, raw: raw) { try socket.subscribe(topic) }
        return (socket, endpoint)
    }

    /// plantd's or a feedd's PUB from the etc/ files, or `from` itself.
    static func endpoint(from: String, options: ChainOptions) throws -> String {
        guard from == "plantd" || from == "feedd" else { return from }
        let endpoints = try options.loadEndpoints()
        guard let found = from == "plantd" ? endpoints.plantPublish : endpoints.feedPublish else {
            throw ValidationError("no \(from).toml in \(options.etc)/ (use --etc or --from ENDPOINT)")
        }
        return found
    }

    /// The topics for `prefixes` (everything when none): a symbol alone means every tick of it ("AAPL" is "AAPL|",
    /// so AAPLX stays out) unless `raw`.
    static func topics(_ prefixes: [String], raw: Bool) -> [String] {
        prefixes.isEmpty
            ? [""] : prefixes.map { raw || $0.contains("|") || $0.hasPrefix("#") ? $0 : Topic.allTypes(of: $0) }
    }
}
