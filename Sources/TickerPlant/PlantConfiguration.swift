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
        try root.finish()
        return configuration
    }
}
