import MarketData

/// plantd's configuration (etc/plantd.toml), validated once at start.
public struct PlantConfiguration: Sendable {
    public var name = "plantd"
    /// Every feedd's PUB endpoint.
    public var feeds: [String] = ["tcp://127.0.0.1:7101"]
    public var publishEndpoint = "tcp://127.0.0.1:7201"
    public var snapshotEndpoint = "tcp://127.0.0.1:7202"
    public var controlEndpoint = "tcp://127.0.0.1:7209"
    public var sendHighWaterMark: Int32 = 1_000_000
    public var receiveHighWaterMark: Int32 = 1_000_000
    public var heartbeatInterval: Duration = .seconds(1)
    /// Published ticks kept in memory for symbol and stream replays.
    public var replayTicks = 1_000_000
    public var filters = FilterConfiguration()

    public init() {}

    public static func load(file: String) throws(ConfigError) -> PlantConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = PlantConfiguration()
        let plant = try root.table("plant")
        configuration.name = try plant.string("name", default: "plantd")
        configuration.feeds = try plant.endpoints("feeds")
        configuration.publishEndpoint = try plant.endpoint("publish", default: configuration.publishEndpoint)
        configuration.snapshotEndpoint = try plant.endpoint("snapshot", default: configuration.snapshotEndpoint)
        configuration.controlEndpoint = try plant.endpoint("control", default: configuration.controlEndpoint)
        configuration.sendHighWaterMark = Int32(try plant.int("send_hwm", default: 1_000_000, in: 1...100_000_000))
        configuration.receiveHighWaterMark = Int32(try plant.int("receive_hwm", default: 1_000_000, in: 1...100_000_000))
        configuration.heartbeatInterval = try plant.duration("heartbeat_interval", default: .seconds(1))
        configuration.replayTicks = try plant.int("replay_ticks", default: 1_000_000, in: 1...100_000_000)
        configuration.filters = try loadFilters(try root.table("filters"))
        try root.finish()
        return configuration
    }

    static func loadFilters(_ table: ConfigReader) throws(ConfigError) -> FilterConfiguration {
        var filters = FilterConfiguration()
        filters.maxJumpPercent = try table.double("max_jump_pct", default: filters.maxJumpPercent, in: 0...100)
        filters.jumpConfirmTrades = try table.int("jump_confirm_trades", default: filters.jumpConfirmTrades, in: 1...100)
        filters.jumpHoldNs = try table.duration("jump_hold", default: .seconds(2)).nanoseconds
        filters.timeToleranceNs = try table.duration("time_tolerance", default: .seconds(2)).nanoseconds
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
}
