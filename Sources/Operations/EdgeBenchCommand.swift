import ArgumentParser
import Foundation
import MarketData
import ZeroMQ

/// `mktctl bench edge`: edged (a process of its own, the release build beside mktctl) fanning one symbol's updates out
/// to many WebSocket clients, fed by a stand-in plantd; the clients run in this process, on one thread.
public struct EdgeBenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "WebSocket fan-out through edged: deliveries per second, latency, memory per connection.")

    @Option(name: .long, help: "Clients, all on one symbol.")
    public var clients = 1_000

    @Option(
        name: .long, parsing: .upToNextOption,
        help: "Updates per burst; each burst is sent when every client has the last one.")
    public var bursts: [Int] = [1, 10, 100]

    @Option(name: .long, parsing: .upToNextOption, help: "edged's event loops, one run each.")
    public var eventLoops: [Int] = [1, 2]

    @Option(name: .long, help: "Seconds per run.")
    public var seconds = 3.0

    @Option(name: .long, help: "Rounds of the fan-out runs, taken in turn; the table shows each one's median.")
    public var rounds = 1

    @Option(name: .long, help: "Deliveries per second for the latency run (0: none).")
    public var latencyRate = 100_000

    @Option(name: .long, help: "Updates per burst in the latency run (a burst every burst/rate seconds).")
    public var latencyBurst = 10

    @Option(name: .long, help: "Idle subscribed connections for the memory run (0: none).")
    public var idleClients = 10_000

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Instead of the fan-out runs: this percentage of the clients stops reading while the rest read "
                + "(each client on 50 symbols)."))
    public var slowPercent = 0

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Updates per second in the slow-clients and hostile runs, in bursts of one per symbol (each goes to "
                + "every client)."))
    public var slowRate = 250

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Instead of the fan-out runs: the clients read 50 symbols while about 200 others break every rule a "
                + "client can break, and more connect from one address and leave handshakes unfinished."))
    public var hostile = false

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "In the hostile run: each rule-breaker connects again a second after edged ends its connection, for a "
                + "run that lasts (make soak); their endings' kinds are checked, not their numbers."))
    public var returning = false

    @Option(name: .long, help: "In the hostile run: connections from one address (edged admits 100 of them).")
    public var fromOneAddress = 2_000

    @Option(name: .long, help: """
        In the hostile run: seconds of the quiet window before the rule-breakers come (default: --seconds; make soak \
        takes 120 before its 30 minutes beside them).
        """)
    public var quietSeconds: Double?

    @Option(
        name: .long, parsing: .upToNextOption,
        help: ArgumentHelp(
            "In the hostile run: only these rule-breakers (default: all).",
            valueName: HostileClients.Behaviour.allCases.map(\.rawValue).joined(separator: "|")))
    public var only: [HostileClients.Behaviour] = []

    @Flag(
        name: .long,
        help: ArgumentHelp(
            "Also run the fan-out through uWebSockets (socketify, with --python) and nats-server's WebSocket "
                + "listener, one process each, where installed."))
    public var peers = false

    @Option(name: .long, help: "The Python that has socketify (default: TICKPLANT_PYTHON, else the project's .venv).")
    public var python: String?

    @Option(name: .long, help: "The edged executable (default: the one beside mktctl).")
    public var edged: String?

    @Flag(name: .long, help: "Print the results as JSON instead of a table.")
    public var json = false

    public init() {}

    public struct Run: Codable, Sendable {
        public var round = 1
        public var server = "edged"
        public var eventLoops: Int
        public var burst: Int
        public var clients: Int
        public var deliveriesPerSecond: Double
        public var latency: LatencySummary
        public var complete: Bool
    }

    public struct Results: Codable, Sendable {
        public var fanOut: [Run] = []
        public var latencyRun: Run?
        public var rssIdleBytes = 0
        public var rssWithClientsBytes = 0
        public var idleClients = 0
        public var bytesPerIdleConnection: Double = 0
    }

    public func run() throws {
        guard clients > 0, seconds > 0, (quietSeconds ?? 1) > 0, !bursts.isEmpty, bursts.allSatisfy({ $0 > 0 }),
            eventLoops.allSatisfy({ $0 > 0 })
        else { throw ValidationError("--clients, --seconds, --bursts and --event-loops: expected positive numbers") }
        let binary =
            edged
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("edged").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ValidationError("no edged at \(binary) (build it, or give --edged PATH)")
        }
        var results = Results()
        let context = try ZMQContext()
        if hostile {
            guard slowRate > 0, fromOneAddress >= Self.hostileLimits.perAddress else {
                throw ValidationError(
                    "--slow-rate: above 0; --from-one-address: at least \(Self.hostileLimits.perAddress)")
            }
            let run = try hostileClients(binary, context)
            BenchOutput.clearProgress()
            if json { try BenchOutput.printJSON(run) } else { print(run.table) }
            if !run.passed { throw ExitCode(1) }
            return
        }
        if slowPercent > 0 {
            guard slowPercent < 100, slowRate > 0 else {
                throw ValidationError("--slow-percent: 1 to 99; --slow-rate: above 0")
            }
            let run = try slowClients(binary, context)
            BenchOutput.clearProgress()
            if json { try BenchOutput.printJSON(run) } else { print(run.table) }
            if !run.passed { throw ExitCode(1) }
            return
        }
        // The checkout the executables were built in (for the peers' script and the project's Python).
        var root = URL(fileURLWithPath: binary).deletingLastPathComponent()
        while root.path != "/"
            && !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path)
        {
            root = root.deletingLastPathComponent()
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-edge-bench-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        var servers: [(String, () throws -> any FanOutServer)] = eventLoops.map { loops in
            (
                "edged \(loops)",
                {
                    try EdgedFanOut(
                        binary: binary, context: context, symbols: ["BENCH"], eventLoops: loops,
                        settings: ["limits": "connections = \(clients + 100)"])
                }
            )
        }
        if peers {
            let python =
                python ?? ProcessInfo.processInfo.environment["TICKPLANT_PYTHON"]
                ?? root.appendingPathComponent(".venv/bin/python").path
            let script = root.appendingPathComponent("Benchmarks/Peers/uws_fanout.py").path
            if FileManager.default.isExecutableFile(atPath: python), FileManager.default.fileExists(atPath: script) {
                servers.append(
                    (
                        "uws",
                        { try UWebSocketsFanOut(python: python, script: script, symbols: ["BENCH"], directory: work) }
                    ))
            } else {
                FileHandle.standardError.write(
                    Data("bench edge: no \(python) or \(script): uWebSockets left out\n".utf8))
            }
            if let nats = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].first(
                where: FileManager.default.isExecutableFile)
            {
                servers.append(("nats", { try NATSFanOut(executable: nats, symbols: ["BENCH"], directory: work) }))
            } else {
                FileHandle.standardError.write(Data("bench edge: no nats-server: NATS left out\n".utf8))
            }
        }
        // Each burst size through every server in turn, so that the machine's moods fall on all of them alike.
        for round in 1...max(rounds, 1) {
            for burst in bursts {
                for (_, makeServer) in servers {
                    let server = try makeServer()
                    defer { server.stop() }
                    var run = try fanOut(server, burst: burst)
                    run.round = round
                    results.fanOut.append(run)
                }
            }
        }
        if latencyRate > 0 { results.latencyRun = try steadyRate(binary, context) }
        if idleClients > 0 { try measureMemory(binary, context, into: &results) }
        BenchOutput.clearProgress()
        if json {
            try BenchOutput.printJSON(results)
        } else {
            print(Self.table(results))
        }
        if results.fanOut.contains(where: { !$0.complete }) || results.latencyRun?.complete == false {
            throw ExitCode(1)
        }
    }

    /// Closed loop: a burst of updates of the one symbol, then wait until every client has the burst's last.
    func fanOut(_ server: any FanOutServer, burst: Int) throws -> Run {
        let expectedSeqs = Int(seconds * 2_000_000 / Double(clients)) + burst * 4 + 10
        let times = PublishTimes(symbols: 1, seqsPerSymbol: expectedSeqs + 1)
        var options = WebSocketLoad.Options(port: server.port, symbols: ["BENCH"])
        options.path = server.path
        options.protocolSpoken = server.protocolSpoken
        let load = WebSocketLoad(count: clients, options: options, publishTimes: times)
        defer { load.stop() }
        let label = "\(server.name), burst \(burst)"
        try connect(load, label: label) { server.waitForSubscriptions(1) }
        var seq = 0
        var complete = true
        let start = MonotonicClock.nowNanoseconds()
        let end = start + UInt64(seconds * 1e9)
        var lastProgress = start
        while MonotonicClock.nowNanoseconds() < end && seq + burst < expectedSeqs {
            for _ in 0..<burst {
                seq += 1
                server.publish(symbol: 0, seq: seq, times: times)
            }
            // Every client has all of it: clients x seq updates in all.
            let deadline = MonotonicClock.nowNanoseconds() + 5_000_000_000
            while load.totals.updates < clients * seq {
                if MonotonicClock.nowNanoseconds() > deadline {
                    complete = false
                    break
                }
                usleep(50)
            }
            if !complete { break }
            let now = MonotonicClock.nowNanoseconds()
            if now - lastProgress > 250_000_000 {
                lastProgress = now
                BenchOutput.progress(
                    "\(label): \(seq) updates to \(clients) clients, "
                        + "\(Int(Double(clients * seq) / (Double(now - start) / 1e9))) deliveries/s")
            }
        }
        let elapsed = Double(MonotonicClock.nowNanoseconds() - start) / 1e9
        let summaries = load.summaries()
        complete = complete && summaries.allSatisfy { $0.gaps == 0 && $0.duplicates == 0 && $0.updates == seq }
        let loops = (server as? EdgedFanOut)?.edge.eventLoops ?? 1
        return Run(
            server: server.name, eventLoops: loops, burst: burst, clients: clients,
            deliveriesPerSecond: Double(clients * seq) / elapsed, latency: LatencySummary(load.takeLatencies()),
            complete: complete)
    }

    /// Open loop: updates at `latencyRate / clients` a second, evenly spaced, for `seconds`; latency per delivery.
    func steadyRate(_ binary: String, _ context: ZMQContext) throws -> Run {
        let plant = try StandInPlant(context: context, symbols: ["BENCH"])
        let edge = try EdgeProcess(
            binary: binary, upstream: plant.endpoint,
            settings: ["limits": "connections = \(clients + 100)"])
        defer { edge.stop() }
        let updatesPerSecond = max(1.0, Double(latencyRate) / Double(clients))
        let burst = max(1, latencyBurst)
        let total = Int(updatesPerSecond * seconds) / burst * burst
        let times = PublishTimes(symbols: 1, seqsPerSymbol: total + 2)
        let load = WebSocketLoad(
            count: clients, options: .init(port: edge.port, symbols: ["BENCH"]), publishTimes: times)
        defer { load.stop() }
        try connect(load, label: "latency at \(latencyRate) deliveries/s") { plant.waitForSubscriptions(1, timeout: 5) }
        let start = MonotonicClock.nowNanoseconds()
        for seq in 1...max(total, 1) {
            // Bursts evenly spaced: the first update of each waits for its time, the rest follow at once.
            let due = start + UInt64(Double((seq - 1) / burst * burst) / updatesPerSecond * 1e9)
            while MonotonicClock.nowNanoseconds() < due { usleep(100) }
            plant.publish(symbol: 0, seq: seq, times: times)
            if seq % Int(max(updatesPerSecond / 4, 1)) == 0 {
                BenchOutput.progress("latency at \(latencyRate) deliveries/s: \(seq) of \(total) updates")
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while load.totals.updates < clients * total && Date() < deadline { usleep(1_000) }
        let elapsed = Double(MonotonicClock.nowNanoseconds() - start) / 1e9
        let summaries = load.summaries()
        let complete = summaries.allSatisfy { $0.gaps == 0 && $0.duplicates == 0 && $0.updates == total }
        return Run(
            eventLoops: 1, burst: burst, clients: clients, deliveriesPerSecond: Double(load.totals.updates) / elapsed,
            latency: LatencySummary(load.takeLatencies()), complete: complete)
    }

    /// RSS of edged with no client, then with `idleClients` subscribed clients that receive nothing.
    func measureMemory(_ binary: String, _ context: ZMQContext, into results: inout Results) throws {
        let symbols = (0..<100).map { "IDLE\($0)" }
        let plant = try StandInPlant(context: context, symbols: symbols)
        let edge = try EdgeProcess(
            binary: binary, upstream: plant.endpoint,
            settings: ["limits": "connections = \(idleClients + 100)"])
        defer { edge.stop() }
        usleep(500_000)
        results.rssIdleBytes = edge.residentBytes()
        let load = WebSocketLoad(count: idleClients, options: .init(port: edge.port, symbols: symbols))
        defer { load.stop() }
        try connect(load, label: "memory, idle", timeout: 120)
        usleep(1_000_000)
        results.rssWithClientsBytes = edge.residentBytes()
        results.idleClients = idleClients
        results.bytesPerIdleConnection =
            Double(results.rssWithClientsBytes - results.rssIdleBytes) / Double(idleClients)
    }

    public struct SlowRun: Codable, Sendable {
        public var clients: Int
        public var slowClients: Int
        public var updatesPerSecond: Int
        public var updates: Int
        /// Fast clients that got every update, in order.
        public var fastComplete: Int
        public var slowTold407: Int
        public var slowClosed4008: Int
        public var fastBefore: LatencySummary
        public var fastWhileStalled: LatencySummary
        public var edgedRSSBeforeBytes: Int
        public var edgedRSSPeakBytes: Int
        /// The growth edged must stay under while the slow clients are stalled.
        public var memoryBoundBytes: Int
        public var secondsToCutOff: Double
        /// How the slow ones ended, when not as expected: their close codes and failures, counted.
        public var slowEndings: [String: Int] = [:]

        public var p99Ratio: Double { fastWhileStalled.p99Us / max(fastBefore.p99Us, 1) }
        public var passed: Bool {
            fastComplete == clients - slowClients && slowTold407 == slowClients && slowClosed4008 == slowClients
                && edgedRSSPeakBytes - edgedRSSBeforeBytes < memoryBoundBytes
        }

        var table: String {
            String(
                format: """
                    slow clients: %d of %d stop reading, %d updates/s to each (50 symbols per client), %d updates
                    fast clients with every update in order: %d of %d
                    slow clients told 407: %d, closed 4008: %d (%.1f s after they stopped)
                    fast p50/p99: %.0f/%.0f us before, %.0f/%.0f us while the slow ones stall (p99 x%.2f)
                    edged RSS: %.1f MB before, %.1f MB at most while stalled (bound: +%.0f MB)
                    """, slowClients, clients, updatesPerSecond, updates, fastComplete, clients - slowClients,
                slowTold407,
                slowClosed4008, secondsToCutOff, fastBefore.p50Us, fastBefore.p99Us, fastWhileStalled.p50Us,
                fastWhileStalled.p99Us, p99Ratio, Double(edgedRSSBeforeBytes) / 1e6, Double(edgedRSSPeakBytes) / 1e6,
                Double(memoryBoundBytes) / 1e6)
                + (slowTold407 == slowClients && slowClosed4008 == slowClients
                    ? ""
                    : "\nslow clients ended: "
                        + slowEndings.map { "\($0.value) \($0.key)" }.sorted().joined(separator: "; "))
        }
    }

    /// `--slow-percent`: every client on the same 50 symbols; after `seconds` the slow share stops reading, and the
    /// updates go on until edged has cut every slow one off (407, close 4008). The slow ones then read again to
    /// see what they were told.
    func slowClients(_ binary: String, _ context: ZMQContext) throws -> SlowRun {
        let symbols = (0..<50).map { "S\($0)" }
        let plant = try StandInPlant(context: context, symbols: symbols)
        // Small buffers and marks, so that a stalled client reaches its hard mark within seconds; each stalled one
        // then holds at most its queue (32 updates) and NIO's 64 KiB, so 1 MB each is a generous bound.
        let edge = try EdgeProcess(
            binary: binary, upstream: plant.endpoint,
            settings: [
                "limits": "connections = \(clients + 100)",
                "clients": """
                heartbeat_interval = "500ms"
                queue_soft = 8
                queue_hard = 32
                send_buffer_bytes = 4096
                slow_grace = "1s"
                slow_linger = "10s"
                """,
            ])
        defer { edge.stop() }
        let slowCount = clients * slowPercent / 100
        let maxUpdates = slowRate * Int(seconds + 60)
        let times = PublishTimes(symbols: 50, seqsPerSymbol: maxUpdates / 50 + 10)
        var options = WebSocketLoad.Options(port: edge.port, symbols: symbols)
        options.symbolsPerClient = 50
        let fast = WebSocketLoad(count: clients - slowCount, options: options, publishTimes: times)
        defer { fast.stop() }
        options.receiveBuffer = 4_096
        let slow = WebSocketLoad(count: slowCount, options: options)
        defer { slow.stop() }
        try connect(fast, label: "slow clients: fast ones")
        try connect(slow, label: "slow clients: slow ones") { plant.waitForSubscriptions(50, timeout: 5) }

        var publisher = BurstPublisher(plant: plant, symbols: 50, perSecond: slowRate, maxUpdates: maxUpdates, times: times)
        var sent = 0
        func publish(until done: () -> Bool) {
            publisher.publish { published in
                sent = published
                return done()
            }
            sent = publisher.sent
        }
        let phaseEnd = MonotonicClock.nowNanoseconds() + UInt64(seconds * 1e9)
        BenchOutput.progress("slow clients: everyone reads for \(seconds) s")
        publish { MonotonicClock.nowNanoseconds() >= phaseEnd }
        usleep(300_000)
        let before = LatencySummary(fast.takeLatencies())
        let rssBefore = edge.residentBytes()
        var rssPeak = rssBefore
        slow.pause(0..<slowCount)
        let stalledAt = MonotonicClock.nowNanoseconds()
        var lastCheck = stalledAt
        var cutOff = UInt64(0)
        var cutOffAt = stalledAt
        publish {
            let now = MonotonicClock.nowNanoseconds()
            guard now - lastCheck > 200_000_000 else { return false }
            lastCheck = now
            rssPeak = max(rssPeak, edge.residentBytes())
            cutOff = edge.counter("slow_clients_closed", context: context)
            BenchOutput.progress("slow clients: \(cutOff) of \(slowCount) cut off, \(sent) updates")
            if cutOff >= UInt64(slowCount) && cutOffAt == stalledAt { cutOffAt = now }
            // A second more after the last one, for the fast ones' latency with the others gone.
            return cutOff >= UInt64(slowCount) && now - cutOffAt > 1_000_000_000 || now - stalledAt > 60_000_000_000
        }
        usleep(300_000)
        let during = LatencySummary(fast.takeLatencies())
        slow.resume(0..<slowCount)
        let deadline = Date().addingTimeInterval(10)
        while slow.totals.closed < slowCount && Date() < deadline { usleep(50_000) }
        let fastSummaries = fast.summaries()
        let slowSummaries = slow.summaries()
        let perSymbol = sent / 50
        return SlowRun(
            clients: clients, slowClients: slowCount, updatesPerSecond: slowRate, updates: sent,
            fastComplete: fastSummaries.filter {
                $0.updates == sent && $0.gaps == 0 && $0.duplicates == 0 && $0.lastSeqs.allSatisfy { $0 >= perSymbol }
            }.count,
            slowTold407: slowSummaries.filter { $0.errorCodes.contains(407) }.count,
            slowClosed4008: slowSummaries.filter { $0.closeCode == 4008 }.count,
            fastBefore: before, fastWhileStalled: during, edgedRSSBeforeBytes: rssBefore, edgedRSSPeakBytes: rssPeak,
            memoryBoundBytes: slowCount * 1_000_000, secondsToCutOff: Double(cutOffAt - stalledAt) / 1e9,
            slowEndings: Dictionary(
                grouping: slowSummaries,
                by: {
                    "close \($0.closeCode.map(String.init) ?? "none"), errors \($0.errorCodes), \($0.failed ?? "open")"
                }
            ).mapValues(\.count))
    }

    /// Waits (showing progress) until every client of `load` has subscribed, at most `timeout` seconds, then until
    /// `upstreamReady` says the server can reach them (edged subscribed upstream).
    func connect(
        _ load: WebSocketLoad, label: String, timeout: Double = 60, upstreamReady: () -> Bool = { true }
    ) throws {
        guard
            load.waitUntilSubscribed(
                timeout: timeout,
                progress: { totals in
                    BenchOutput.progress("\(label): \(totals.subscribed) of \(totals.clients) clients subscribed")
                }), load.totals.failed == 0
        else {
            throw BenchError("\(label): \(load.totals.failed) clients failed, \(load.totals.subscribed) subscribed")
        }
        guard upstreamReady() else { throw BenchError("\(label): never subscribed upstream") }
        usleep(100_000)
    }

    static func table(_ results: Results) -> String {
        var lines = [
            "edged fan-out to \(results.fanOut.first?.clients ?? 0) WebSocket clients on one symbol "
                + "(closed loop: a burst, then every client has it)",
            "server                     burst  deliveries/s  (range)             p50 us   p99 us  edged/this  complete",
        ]
        // Medians over the rounds, per server and burst, in the order first run.
        var keys: [String] = []
        var groups: [String: [Run]] = [:]
        for run in results.fanOut {
            let key = "\(run.burst) \(run.server)"
            if groups[key] == nil { keys.append(key) }
            groups[key, default: []].append(run)
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        for key in keys {
            let runs = groups[key]!
            let rate = median(runs.map(\.deliveriesPerSecond))
            // Against edged's first configuration (one loop, as run first) at the same burst.
            let edgedRate =
                keys.lazy.map { groups[$0]! }
                .first { $0[0].burst == runs[0].burst && $0[0].server.hasPrefix("edged") }
                .map { median($0.map(\.deliveriesPerSecond)) } ?? rate
            let range =
                runs.count > 1
                ? String(
                    format: "%.0f-%.0f", runs.map(\.deliveriesPerSecond).min()!, runs.map(\.deliveriesPerSecond).max()!)
                : ""
            lines.append(
                runs[0].server.padding(toLength: 25, withPad: " ", startingAt: 0)
                    + String(format: "  %5d  %12.0f  ", runs[0].burst, rate)
                    + range.padding(toLength: 18, withPad: " ", startingAt: 0)
                    + String(
                        format: "  %7.0f  %7.0f  %10.2f  ", median(runs.map(\.latency.p50Us)),
                        median(runs.map(\.latency.p99Us)), edgedRate / rate)
                    + (runs.allSatisfy(\.complete) ? "yes" : "NO"))
        }
        if let run = results.latencyRun {
            lines.append(
                String(
                    format: "steady %.0f deliveries/s in bursts of %d: "
                        + "p50 %.0f us, p99 %.0f us, p99.9 %.0f us, max %.0f us",
                    run.deliveriesPerSecond, run.burst, run.latency.p50Us, run.latency.p99Us, run.latency.p999Us,
                    run.latency.maxUs)
                    + (run.complete ? "" : " (INCOMPLETE)"))
        }
        if results.idleClients > 0 {
            lines.append(
                String(
                    format: "memory: RSS %.1f MB idle, %.1f MB with %d idle subscribed clients: %.1f KB per connection",
                    Double(results.rssIdleBytes) / 1e6, Double(results.rssWithClientsBytes) / 1e6, results.idleClients,
                    results.bytesPerIdleConnection / 1024))
        }
        return lines.joined(separator: "\n")
    }
}

/// `mktctl bench edge-clients`: WebSocket clients of an edged in a process of their own (one process holds at most
/// so many open files), for the 20 000-connection test and runs like it. Connects, subscribes (client i to
/// SYMBOL<i % symbols>), says `subscribed N` on standard output, then waits until every client has `--updates`
/// updates and prints its summary as JSON; exit status 1 when some client did not.
public struct EdgeClientsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "edge-clients", abstract: "WebSocket clients of an edged, in a process of their own.",
        shouldDisplay: false)

    @Option(name: .long, help: "edged's port on 127.0.0.1.")
    public var port: Int

    @Option(name: .long, help: "Clients.")
    public var clients = 5_000

    @Option(name: .long, help: "The address the clients connect from (127.0.0.2, ...).")
    public var source: String?

    @Option(name: .long, help: "Symbols SYM0 ... SYM<n-1>; client i watches SYM<i % n>.")
    public var symbols = 100

    @Option(name: .long, help: "Updates each client must get.")
    public var updates = 10

    @Option(name: .long, help: "Seconds to wait for all of it.")
    public var timeout = 120.0

    public init() {}

    public struct Summary: Codable, Sendable {
        public var clients: Int
        public var subscribed: Int
        public var failed: Int
        /// Clients with every update, in order.
        public var complete: Int
        public var failures: [String: Int]
    }

    public func run() throws {
        var options = WebSocketLoad.Options(port: port, symbols: (0..<symbols).map { "SYM\($0)" })
        options.sources = source.map { [$0] }
        let load = WebSocketLoad(count: clients, options: options)
        defer { load.stop() }
        let deadline = Date().addingTimeInterval(timeout)
        _ = load.waitUntilSubscribed(timeout: timeout)
        // Unbuffered: the process that started this one waits for the line.
        FileHandle.standardOutput.write(
            Data("subscribed \(load.totals.subscribed) failed \(load.totals.failed)\n".utf8))
        while load.totals.updates < clients * updates && Date() < deadline { usleep(50_000) }
        let summaries = load.summaries()
        let summary = Summary(
            clients: clients, subscribed: summaries.filter(\.subscribed).count,
            failed: summaries.filter { $0.failed != nil }.count,
            complete: summaries.filter { $0.updates == updates && $0.gaps == 0 && $0.duplicates == 0 }.count,
            failures: Dictionary(grouping: summaries.compactMap(\.failed), by: { $0 }).mapValues(\.count))
        try BenchOutput.printJSON(summary)
        if summary.complete < clients { throw ExitCode(1) }
    }
}
