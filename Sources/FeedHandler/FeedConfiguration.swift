import Foundation
import MarketData

/// feedd's configuration (etc/feedd.toml), validated once at start.
public struct FeedConfiguration: Sendable {
    public enum VenueProtocol: Sendable, Equatable {
        /// ITCH 5.0 in MoldUDP64 over UDP, listening on `listen`.
        case itch(listen: String, port: Int, retransmission: String?, multicastInterface: String?)
        /// Newline-delimited JSON over TCP; feedd connects to the venue.
        case json(JSONVenueFormat, host: String, port: Int)
    }

    public struct VenueConfiguration: Sendable {
        /// ISO 10383 MIC stamped on every tick of this venue.
        public var venue: String
        public var source: VenueProtocol
        /// IANA zone of the session date that ITCH timestamps count from.
        public var timezone: String
    }

    public var name = "feedd"
    public var publishEndpoint = "tcp://127.0.0.1:7101"
    public var replayEndpoint = "tcp://127.0.0.1:7102"
    public var controlEndpoint = "tcp://127.0.0.1:7109"
    public var sendHighWaterMark: Int32 = 1_000_000
    public var udpReceiveBufferBytes = 8 << 20
    public var reconnectInitial: Duration = .milliseconds(100)
    public var reconnectMaximum: Duration = .seconds(5)
    public var venues: [VenueConfiguration] = []

    public init() {}

    /// Reads and validates `file`; every problem names file, key and reason.
    public static func load(file: String) throws(ConfigError) -> FeedConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = FeedConfiguration()
        let feed = try root.table("feed")
        configuration.name = try feed.string("name", default: "feedd")
        configuration.publishEndpoint = try feed.endpoint("publish", default: configuration.publishEndpoint)
        configuration.replayEndpoint = try feed.endpoint("replay", default: configuration.replayEndpoint)
        configuration.controlEndpoint = try feed.endpoint("control", default: configuration.controlEndpoint)
        configuration.sendHighWaterMark = Int32(try feed.int("send_hwm", default: 1_000_000, in: 1...100_000_000))
        configuration.udpReceiveBufferBytes = try feed.int("udp_receive_buffer", default: 8 << 20, in: 65_536...(1 << 30))
        configuration.reconnectInitial = try feed.duration("reconnect_initial", default: .milliseconds(100))
        configuration.reconnectMaximum = try feed.duration("reconnect_max", default: .seconds(5))
        let venueTables = try root.tables("venues")
        guard !venueTables.isEmpty else {
            throw ConfigError(file: file, key: "venues", reason: "expected at least one [[venues]] table")
        }
        for table in venueTables {
            let venue = try table.string("venue")
            guard venue.count >= 2, venue.count <= 8, venue.allSatisfy({ $0.isASCII && ($0.isUppercase || $0.isNumber) }) else {
                throw table.error("venue", "expected a venue code such as \"XNAS\" (2-8 capital letters or digits), got \"\(venue)\"")
            }
            let timezone = try table.string("timezone", default: "America/New_York")
            guard TimeZone(identifier: timezone) != nil else {
                throw table.error("timezone", "expected an IANA zone such as \"America/New_York\", got \"\(timezone)\"")
            }
            let kind = try table.choice("protocol", ["itch-moldudp64"] + JSONVenueFormat.allCases.map(\.rawValue))
            let source: VenueProtocol
            if kind == "itch-moldudp64" {
                let listen = try table.hostPort("listen")
                try requireNumericHost(listen.host, table: table, key: "listen")
                let retransmission = try table.optionalString("retransmission")
                if let retransmission, ConfigReader.parseHostPort(retransmission) == nil {
                    throw table.error("retransmission", "expected host:port such as \"127.0.0.1:7002\", got \"\(retransmission)\"")
                }
                source = .itch(listen: listen.host, port: listen.port, retransmission: retransmission,
                    multicastInterface: try table.optionalString("multicast_interface"))
            } else {
                let connect = try table.hostPort("connect")
                try requireNumericHost(connect.host, table: table, key: "connect")
                source = .json(JSONVenueFormat(rawValue: kind)!, host: connect.host, port: connect.port)
            }
            configuration.venues.append(VenueConfiguration(venue: venue, source: source, timezone: timezone))
        }
        try root.finish()
        return configuration
    }

    private static func requireNumericHost(_ host: String, table: ConfigReader, key: String) throws(ConfigError) {
        do {
            _ = try SocketAddress(host: host, port: 0)
        } catch {
            throw table.error(key, "expected a numeric IPv4 or IPv6 address, got \"\(host)\"")
        }
    }
}

/// Nanoseconds since the epoch of the last midnight in `timezone`: ITCH timestamps count from it.
public func sessionMidnightNanoseconds(timezone: String, now: Date = Date()) -> UInt64 {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: timezone) ?? TimeZone(secondsFromGMT: 0)!
    let midnight = calendar.startOfDay(for: now)
    return UInt64(max(0, midnight.timeIntervalSince1970)) * 1_000_000_000
}
