import MarketData

/// edged's configuration (etc/edged.toml), validated once at start.
public struct EdgeConfiguration: Sendable {
    public var name = "edged"
    public var host = "127.0.0.1"
    public var port = 8080
    /// plantd's XPUB endpoint.
    public var upstream = "tcp://127.0.0.1:7201"
    public var controlEndpoint = "tcp://127.0.0.1:7309"
    public var eventLoops = 1
    public var maxSymbolsPerClient = 500
    public var maxFrameBytes = 16_384
    public var heartbeatInterval: Duration = .seconds(5)
    public var receiveHighWaterMark: Int32 = 1_000_000

    public init() {}

    public static func load(file: String) throws(ConfigError) -> EdgeConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = EdgeConfiguration()
        let edge = try root.table("edge")
        configuration.name = try edge.string("name", default: "edged")
        let listen = try edge.hostPort("listen", default: "127.0.0.1:8080")
        configuration.host = listen.host
        configuration.port = listen.port
        configuration.upstream = try edge.endpoint("upstream", default: configuration.upstream)
        configuration.controlEndpoint = try edge.endpoint("control", default: configuration.controlEndpoint)
        configuration.eventLoops = try edge.int("event_loops", default: 1, in: 1...64)
        configuration.receiveHighWaterMark = Int32(try edge.int("receive_hwm", default: 1_000_000, in: 1...100_000_000))
        let limits = try root.table("limits")
        configuration.maxSymbolsPerClient = try limits.int("symbols_per_client", default: 500, in: 1...100_000)
        configuration.maxFrameBytes = try limits.int("max_frame_bytes", default: 16_384, in: 128...(1 << 24))
        let clients = try root.table("clients")
        configuration.heartbeatInterval = try clients.duration("heartbeat_interval", default: .seconds(5))
        guard configuration.heartbeatInterval >= .milliseconds(100) else {
            throw clients.error("heartbeat_interval", "expected at least 100ms")
        }
        try root.finish()
        return configuration
    }
}
