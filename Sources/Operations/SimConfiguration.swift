import FeedHandler
import Foundation
import MarketData

/// `mktctl sim`'s configuration (etc/sim.toml): the market it makes and where it sends it.
public struct SimConfiguration: Sendable {
    public var symbolCount = 300
    /// Messages per second across all three protocols.
    public var rate = 2000
    public var seed: UInt64 = 42
    public var timezone = "America/New_York"
    public var itchVenue = "XNAS"
    public var itchSession = "TICKPLANT1"
    /// Where MoldUDP64 packets go (feedd's `listen`).
    public var itchDestination = (host: "127.0.0.1", port: 7001)
    /// The MoldUDP64 retransmission server's address (TCP).
    public var retransmissionListen = (host: "127.0.0.1", port: 7002)
    /// Messages kept for retransmission.
    public var history = 5_000_000
    public var chaos = ChaosOptions()
    public var jsonAListen = (host: "127.0.0.1", port: 7011)
    public var jsonBListen = (host: "127.0.0.1", port: 7012)
    /// Share of messages for each JSON venue (the rest is ITCH).
    public var jsonShare = 0.2

    public init() {}

    public static func load(file: String) throws(ConfigError) -> SimConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = SimConfiguration()
        let sim = try root.table("sim")
        configuration.symbolCount = try sim.int("symbols", default: 300, in: 2...10_000)
        configuration.rate = try sim.int("rate", default: 2000, in: 1...10_000_000)
        configuration.seed = UInt64(try sim.int("seed", default: 42, in: 0...Int.max))
        configuration.timezone = try sim.string("timezone", default: "America/New_York")
        guard TimeZone(identifier: configuration.timezone) != nil else {
            throw sim.error("timezone", "expected an IANA zone such as \"America/New_York\", got \"\(configuration.timezone)\"")
        }
        configuration.jsonShare = try sim.double("json_share", default: 0.2, in: 0...0.5)
        let itch = try root.table("itch")
        configuration.itchVenue = try itch.string("venue", default: "XNAS")
        configuration.itchSession = try itch.string("session", default: "TICKPLANT1")
        guard configuration.itchSession.utf8.count <= 10 else {
            throw itch.error("session", "expected at most 10 ASCII characters, got \"\(configuration.itchSession)\"")
        }
        configuration.itchDestination = try itch.hostPort("destination", default: "127.0.0.1:7001")
        configuration.retransmissionListen = try itch.hostPort("retransmission", default: "127.0.0.1:7002")
        configuration.history = try itch.int("history", default: 5_000_000, in: 1000...100_000_000)
        if let chaos = try sim.optionalString("chaos") {
            do {
                configuration.chaos = try ChaosOptions.parse(chaos)
            } catch {
                throw sim.error("chaos", error.description)
            }
        }
        configuration.jsonAListen = try root.table("json_a").hostPort("listen", default: "127.0.0.1:7011")
        configuration.jsonBListen = try root.table("json_b").hostPort("listen", default: "127.0.0.1:7012")
        try root.finish()
        return configuration
    }
}
