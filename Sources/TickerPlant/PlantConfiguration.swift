import Foundation
import MarketData
import ZeroMQ

/// plantd's configuration (etc/plantd.toml), validated once at start.
public struct PlantConfiguration: Sendable {
    public var name = "plantd"
    /// Every feedd's PUB endpoint.
    public var feeds: [String] = ["tcp://127.0.0.1:7101"]
    /// Each feed's replay ROUTER, in the order of `feeds` (fewer: the rest have none): what the plant missed is asked
    /// for there, after a restart and after a gap.
    public var replays: [String] = []
    public var journal = JournalConfiguration()
    public var aggregation = AggregationConfiguration()
    public var publishEndpoint = "tcp://127.0.0.1:7201"
    public var snapshotEndpoint = "tcp://127.0.0.1:7202"
    public var controlEndpoint = "tcp://127.0.0.1:7209"
    /// Where `/metrics` (Prometheus) and `/healthz` are served over HTTP; nil (`metrics = ""`): nowhere.
    public var metricsListen: (host: String, port: Int)? = ("127.0.0.1", 9201)
    /// Messages queued per subscriber (100 000: about 35 MB for one that stopped reading, and some seconds of a
    /// full market's burst room for one that pauses).
    public var sendHighWaterMark: Int32 = 100_000
    public var receiveHighWaterMark: Int32 = 1_000_000
    public var heartbeatInterval: Duration = .seconds(1)
    /// Published ticks kept in memory for symbol and stream replays.
    public var replayTicks = 1_000_000
    /// Most symbols the plant keeps (every one costs its per-symbol state for the plant's life): a tick of a new
    /// symbol past it is refused and counted, so a feed that names millions cannot grow the plant without bound.
    public var maxSymbols = 200_000
    /// Most ticks one snapshot or replay answer carries (DESIGN section 12: what a peer can ask for is bounded): a
    /// symbol replay or snapshot that would need more is refused with a reason, a stream replay is cut there.
    public var maxAnswerTicks = 100_000
    /// Answer ticks sent (and journal records read for answers) per second, for all snapshot and replay peers
    /// together: what answers can take from the live stream's loop, however many peers ask (`AnswerBudget`).
    public var answerTicksPerSecond = 100_000
    public var filters = FilterConfiguration()
    /// nil: the stream and the snapshot ROUTER are plain (fine on one host; between hosts, use CURVE).
    public var curve: CurveServerConfiguration?
    /// CURVE on the control endpoint (`[curve] operator_key_files`): only the operators' keys connect; nil: plain.
    public var controlCurve: ControlCurve?
    /// Each feedd's CURVE public key, in the order of `feeds` (`[curve] feed_key_files`); empty: feeds are plain.
    public var feedServerKeys: [String] = []

    public init() {}

    public static func load(file: String) throws(ConfigError) -> PlantConfiguration {
        try load(file: file, readingFiles: true)
    }

    /// `readingFiles` false checks every key but opens none of the key files they name (mktctl reads plantd.toml for
    /// its endpoints and need not be able to read plantd's secret): `curve` then says only that CURVE is on, with
    /// empty keys.
    public static func load(file: String, readingFiles: Bool) throws(ConfigError) -> PlantConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = PlantConfiguration()
        let plant = try root.table("plant")
        configuration.name = try plant.string("name", default: "plantd")
        configuration.feeds = try plant.endpoints("feeds")
        if plant.has("replays") {
            configuration.replays = try plant.endpoints("replays")
            if configuration.replays.count > configuration.feeds.count {
                throw plant.error("replays", "expected at most one replay endpoint per feed (\(configuration.feeds.count)), got \(configuration.replays.count)")
            }
        }
        configuration.publishEndpoint = try plant.endpoint("publish", default: configuration.publishEndpoint)
        configuration.snapshotEndpoint = try plant.endpoint("snapshot", default: configuration.snapshotEndpoint)
        configuration.controlEndpoint = try plant.endpoint("control", default: configuration.controlEndpoint)
        if try plant.string("metrics", default: "127.0.0.1:9201").isEmpty {
            configuration.metricsListen = nil
        } else {
            configuration.metricsListen = try plant.hostPort("metrics", default: "127.0.0.1:9201")
        }
        configuration.sendHighWaterMark = Int32(try plant.int("send_hwm",
            default: Int(configuration.sendHighWaterMark), in: 1...100_000_000))
        configuration.receiveHighWaterMark = Int32(try plant.int("receive_hwm", default: 1_000_000, in: 1...100_000_000))
        configuration.heartbeatInterval = try plant.duration("heartbeat_interval", default: .seconds(1))
        configuration.replayTicks = try plant.int("replay_ticks", default: 1_000_000, in: 1...100_000_000)
        configuration.maxSymbols = try plant.int("max_symbols", default: configuration.maxSymbols, in: 1...10_000_000)
        configuration.maxAnswerTicks = try plant.int("max_answer_ticks", default: configuration.maxAnswerTicks,
            in: 1...10_000_000)
        configuration.answerTicksPerSecond = try plant.int("answer_ticks_per_second",
            default: configuration.answerTicksPerSecond, in: 1_000...100_000_000)
        configuration.filters = try loadFilters(try root.table("filters"))
        configuration.journal = try loadJournal(try root.table("journal"))
        configuration.aggregation = try loadAggregation(try root.table("aggregation"))
        let curve = try root.table("curve")
        configuration.curve = try loadCurve(curve, readingFiles: readingFiles)
        configuration.feedServerKeys = try loadFeedKeys(curve, feeds: configuration.feeds.count,
            curveOn: configuration.curve != nil, readingFiles: readingFiles)
        configuration.controlCurve = ControlCurve(try curve.controlCurveKeys(readingFiles: readingFiles,
            secretProblem: CurveKeyPair.problem(withSecretKey:), keyProblem: CurveKeyPair.problem(withKey:),
            publicKeyOf: CurveKeyPair.publicKey(ofSecret:)))
        let insecure = try plant.bool("insecure", default: false)
        for (key, endpoint) in [("publish", configuration.publishEndpoint), ("snapshot", configuration.snapshotEndpoint)] {
            try plant.requireGuardedBind(key, endpoint: endpoint, guardedByCurve: configuration.curve != nil,
                insecure: insecure, remedy: "bind 127.0.0.1, or turn on [curve] so that only known keys connect")
        }
        try plant.requireGuardedBind("control", endpoint: configuration.controlEndpoint,
            guardedByCurve: configuration.controlCurve != nil, insecure: insecure,
            remedy: "bind 127.0.0.1, or an ipc:// path (only the operators' group may connect), or list the "
                + "operators' keys in [curve] operator_key_files")
        try root.finish()
        return configuration
    }

    /// The keys that differ between two configurations and take a restart (everything but `[filters]`).
    public static func keysNeedingRestart(from old: PlantConfiguration, to new: PlantConfiguration) -> [String] {
        var keys: [String] = []
        func compare<Value: Equatable>(_ key: String, _ value: (PlantConfiguration) -> Value) {
            if value(old) != value(new) { keys.append(key) }
        }
        compare("[plant] name") { $0.name }
        compare("[plant] feeds") { $0.feeds }
        compare("[plant] replays") { $0.replays }
        compare("[plant] publish") { $0.publishEndpoint }
        compare("[plant] snapshot") { $0.snapshotEndpoint }
        compare("[plant] control") { $0.controlEndpoint }
        compare("[plant] metrics") { $0.metricsListen.map { "\($0.host):\($0.port)" } }
        compare("[plant] send_hwm") { $0.sendHighWaterMark }
        compare("[plant] receive_hwm") { $0.receiveHighWaterMark }
        compare("[plant] heartbeat_interval") { $0.heartbeatInterval }
        compare("[plant] replay_ticks") { $0.replayTicks }
        compare("[plant] max_symbols") { $0.maxSymbols }
        compare("[plant] max_answer_ticks") { $0.maxAnswerTicks }
        compare("[plant] answer_ticks_per_second") { $0.answerTicksPerSecond }
        compare("[journal]") { $0.journal }
        compare("[aggregation]") { $0.aggregation }
        compare("[curve]") { $0.curve }
        compare("[curve] feed_key_files") { $0.feedServerKeys }
        compare("[curve] operator_key_files") { $0.controlCurve }
        return keys
    }

    static func loadCurve(_ table: ConfigReader, readingFiles: Bool) throws(ConfigError) -> CurveServerConfiguration? {
        try table.curveServerKeys(readingFiles: readingFiles, secretProblem: CurveKeyPair.problem(withSecretKey:),
            keyProblem: CurveKeyPair.problem(withKey:))
            .map { CurveServerConfiguration(secretKey: $0.secretKey, clientKeys: $0.clientKeys) }
    }

    /// `[curve] feed_key_files`: each feedd's public key, in the order of `[plant] feeds`; plantd connects to them
    /// as a CURVE client with its own key pair (`secret_key_file`).
    static func loadFeedKeys(
        _ table: ConfigReader, feeds: Int, curveOn: Bool, readingFiles: Bool
    ) throws(ConfigError) -> [String] {
        guard table.has("feed_key_files") else { return [] }
        guard curveOn else {
            throw table.error("feed_key_files", "expected beside secret_key_file and client_key_files: plantd "
                + "speaks CURVE to its feeds with its own key pair")
        }
        let keys = readingFiles ? try table.keyFiles("feed_key_files", problem: CurveKeyPair.problem(withKey:))
            : try table.strings("feed_key_files", default: [])
        guard keys.count == feeds else {
            throw table.error("feed_key_files", "expected one key file per feed in [plant] feeds (\(feeds)), got \(keys.count)")
        }
        return keys
    }

    static func loadFilters(_ table: ConfigReader) throws(ConfigError) -> FilterConfiguration {
        var filters = FilterConfiguration()
        filters.maxJumpPercent = try table.double("max_jump_pct", default: filters.maxJumpPercent, in: 0...100)
        filters.jumpConfirmTrades = try table.int("jump_confirm_trades", default: filters.jumpConfirmTrades, in: 1...100)
        filters.jumpHoldNs = try table.duration("jump_hold", default: .seconds(2)).nanoseconds
        filters.timeToleranceNs = try table.duration("time_tolerance", default: .seconds(2)).nanoseconds
        filters.maxAheadNs =
            try table.duration("max_ahead", default: .nanoseconds(Int64(filters.maxAheadNs))).nanoseconds
        filters.testSymbols = Set(try table.strings("test_symbols", default: filters.testSymbols.sorted(),
            problem: { SymbolRules.problem(with: $0) }))
        filters.unsizedVenues = Set(try table.strings("unsized_venues", default: []))
        let ruleNames = FilterRule.allCases.map(\.rawValue)
        let notARule: (String) -> String? = { name in
            ruleNames.contains(name) ? nil : "expected rule names among \(ruleNames.joined(separator: ", "))"
        }
        let shadow = try table.strings("shadow", default: [], problem: notARule)
        let off = try table.strings("off", default: [], problem: notARule)
        if let both = shadow.first(where: off.contains) {
            throw table.error("off", "\"\(both)\" is also in shadow; a rule runs one way")
        }
        for name in shadow { filters.modes[FilterRule(rawValue: name)!] = .shadow }
        for name in off { filters.modes[FilterRule(rawValue: name)!] = .off }
        return filters
    }

    static func loadJournal(_ table: ConfigReader) throws(ConfigError) -> JournalConfiguration {
        var journal = JournalConfiguration()
        journal.directory = try table.optionalString("directory")
        if journal.directory?.isEmpty == true { throw table.error("directory", "expected a directory, got \"\"") }
        journal.segmentBytes = try table.int("segment_bytes", default: journal.segmentBytes, in: 65_536...(1 << 40))
        let fsync = try table.string("fsync", default: "10ms")
        if fsync == "off" {
            journal.fsyncInterval = nil
        } else {
            let interval = try table.duration("fsync", default: .milliseconds(10))
            guard interval > .zero else { throw table.error("fsync", "expected a duration above 0 or \"off\", got \"\(fsync)\"") }
            journal.fsyncInterval = interval
        }
        journal.timezone = try table.string("timezone", default: journal.timezone)
        if TimeZone(identifier: journal.timezone) == nil {
            throw table.error("timezone", "expected an IANA time zone such as \"America/New_York\", got \"\(journal.timezone)\"")
        }
        journal.keepDays = try table.int("keep_days", default: journal.keepDays, in: 0...36_500)
        return journal
    }

    static func loadAggregation(_ table: ConfigReader) throws(ConfigError) -> AggregationConfiguration {
        var aggregation = AggregationConfiguration()
        aggregation.nbbo = try table.bool("nbbo", default: true)
        let stale = try table.duration("stale_after", default: .seconds(5))
        guard stale > .zero else { throw table.error("stale_after", "expected a duration above 0") }
        aggregation.staleAfterNs = stale.nanoseconds
        var intervals: [UInt32] = []
        for text in try table.strings("bars", default: ["1s", "1m"]) {
            guard let duration = ConfigReader.parseDuration(text), duration >= .seconds(1),
                duration.nanoseconds % 1_000_000_000 == 0, duration <= .seconds(86_400)
            else {
                throw table.error("bars", "expected whole seconds from 1s to 24h such as \"1s\" or \"1m\", got \"\(text)\"")
            }
            intervals.append(UInt32(duration.nanoseconds / 1_000_000_000))
        }
        aggregation.barIntervals = intervals
        aggregation.bookIntervalNs = try table.duration("book_interval", default: .milliseconds(100)).nanoseconds
        return aggregation
    }
}
