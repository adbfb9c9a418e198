import Foundation
import MarketData
import ZeroMQ

/// feedd's configuration (etc/feedd.toml), validated once at start.
public struct FeedConfiguration: Sendable {
    /// An ITCH 5.0 venue: where its MoldUDP64 packets arrive and how gaps are recovered.
    public struct ItchSource: Sendable, Equatable {
        public var listenHost: String
        public var listenPort: Int
        /// The venue's retransmission server, `host:port`; without one a gap can only be given up.
        public var retransmission: (host: String, port: Int)?
        public var multicastInterface: String?
        /// How long a missing message may be late before it is asked for.
        public var gapTimeout: Duration = .milliseconds(20)
        /// How long a gap may stay open before it is given up and published as a GAP status.
        public var gapGiveUp: Duration = .seconds(3)
        /// How long to wait for an answer before asking again.
        public var retransmissionRetry: Duration = .milliseconds(250)
        /// Most messages held behind a gap.
        public var maxHeldMessages = 1_000_000
        /// Levels per side in BOOK ticks (0: no BOOK ticks).
        public var bookDepth = 5
        /// BOOK ticks of a symbol go out at most this often (conflated).
        public var bookInterval: Duration = .milliseconds(100)
        /// Orders the venue's book is made to hold before its table first grows (growing holds the feed thread; a
        /// table bigger than the book needs makes every lookup slower: 143 -> 167 ns a message for 20 000 orders in a
        /// table made for 65 536).
        public var bookOrders = 16_384
        /// What a datagram must show before it moves the stream: how far ahead it may start, how many consecutive
        /// packets prove another session or a longer jump (`max_sequence_jump`, `session_proof_packets`).
        var sessionGate = MoldSessionGate.Configuration()
        /// Who may send the venue's datagrams (`allowed_sources`); empty: anyone.
        public var allowedSources = SourceFilter()
        /// Recent matches the normalizer remembers for broken trades (a power of two; not a key of the file: the
        /// fuzz target asks for fewer than the day's 2^20).
        var rememberedMatches = 1 << 20
        public var maxSequenceJump: UInt64 {
            get { sessionGate.maxSequenceJump }
            set { sessionGate.maxSequenceJump = newValue }
        }
        public var sessionProofPackets: Int {
            get { sessionGate.proofPackets }
            set { sessionGate.proofPackets = newValue }
        }

        public init(listenHost: String, listenPort: Int, retransmission: (host: String, port: Int)? = nil,
            multicastInterface: String? = nil)
        {
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.retransmission = retransmission
            self.multicastInterface = multicastInterface
        }

        public static func == (lhs: ItchSource, rhs: ItchSource) -> Bool {
            lhs.listenHost == rhs.listenHost && lhs.listenPort == rhs.listenPort
                && lhs.retransmission?.host == rhs.retransmission?.host
                && lhs.retransmission?.port == rhs.retransmission?.port
                && lhs.multicastInterface == rhs.multicastInterface && lhs.gapTimeout == rhs.gapTimeout
                && lhs.gapGiveUp == rhs.gapGiveUp && lhs.retransmissionRetry == rhs.retransmissionRetry
                && lhs.maxHeldMessages == rhs.maxHeldMessages && lhs.bookDepth == rhs.bookDepth
                && lhs.bookInterval == rhs.bookInterval && lhs.bookOrders == rhs.bookOrders
                && lhs.sessionGate == rhs.sessionGate
        }

        /// The recovery settings in the stream's own terms.
        public var recovery: MoldStream.Configuration {
            var configuration = MoldStream.Configuration()
            configuration.gapTimeoutNs = gapTimeout.nanoseconds
            configuration.giveUpNs = gapGiveUp.nanoseconds
            configuration.retryIntervalNs = retransmissionRetry.nanoseconds
            configuration.maxHeldMessages = maxHeldMessages
            return configuration
        }
    }

    public enum VenueProtocol: Sendable, Equatable {
        /// ITCH 5.0 in MoldUDP64 over UDP.
        case itch(ItchSource)
        /// Newline-delimited JSON over TCP; feedd connects to the venue.
        case json(JSONVenueFormat, host: String, port: Int)
    }

    public struct VenueConfiguration: Sendable {
        /// ISO 10383 MIC stamped on every tick of this venue.
        public var venue: String
        public var source: VenueProtocol
        /// IANA zone of the session date that ITCH timestamps count from.
        public var timezone: String

        public init(venue: String, source: VenueProtocol, timezone: String) {
            self.venue = venue
            self.source = source
            self.timezone = timezone
        }
    }

    public var name = "feedd"
    public var publishEndpoint = "tcp://127.0.0.1:7101"
    public var replayEndpoint = "tcp://127.0.0.1:7102"
    public var controlEndpoint = "tcp://127.0.0.1:7109"
    /// Where `/metrics` (Prometheus) and `/healthz` are served over HTTP; nil (`metrics = ""`): nowhere.
    public var metricsListen: (host: String, port: Int)? = ("127.0.0.1", 9101)
    public var sendHighWaterMark: Int32 = 1_000_000
    /// Ticks kept for the replay ROUTER.
    public var replayTicks = 200_000
    /// Most ticks one replay answer carries (DESIGN section 12): an asker that wants more ("all", or a larger
    /// count) gets that many and an end that says where to ask again from.
    public var maxAnswerTicks = 100_000
    public var udpReceiveBufferBytes = 8 << 20
    public var reconnectInitial: Duration = .milliseconds(100)
    public var reconnectMaximum: Duration = .seconds(5)
    public var venues: [VenueConfiguration] = []
    /// nil: the stream and the replay ROUTER are plain (fine on one host; between hosts, use CURVE).
    public var curve: CurveServerConfiguration?
    /// CURVE on the control endpoint (`[curve] operator_key_files`): only the operators' keys connect; nil: plain.
    public var controlCurve: ControlCurve?

    public init() {}

    /// Reads and validates `file`; every problem names file, key and reason.
    public static func load(file: String) throws(ConfigError) -> FeedConfiguration {
        try load(file: file, readingFiles: true)
    }

    /// `readingFiles` false: the key files `[curve]` names are not read (check-config by someone who may not read
    /// feedd's secret key).
    public static func load(file: String, readingFiles: Bool) throws(ConfigError) -> FeedConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = FeedConfiguration()
        let feed = try root.table("feed")
        configuration.name = try feed.string("name", default: "feedd")
        configuration.publishEndpoint = try feed.endpoint("publish", default: configuration.publishEndpoint)
        configuration.replayEndpoint = try feed.endpoint("replay", default: configuration.replayEndpoint)
        configuration.controlEndpoint = try feed.endpoint("control", default: configuration.controlEndpoint)
        let curve = try root.table("curve")
        configuration.curve = try curve.curveServerKeys(readingFiles: readingFiles,
            secretProblem: CurveKeyPair.problem(withSecretKey:), keyProblem: CurveKeyPair.problem(withKey:))
            .map { CurveServerConfiguration(secretKey: $0.secretKey, clientKeys: $0.clientKeys) }
        configuration.controlCurve = ControlCurve(try curve.controlCurveKeys(readingFiles: readingFiles,
            secretProblem: CurveKeyPair.problem(withSecretKey:), keyProblem: CurveKeyPair.problem(withKey:),
            publicKeyOf: CurveKeyPair.publicKey(ofSecret:)))
        let insecure = try feed.bool("insecure", default: false)
        for key in ["publish", "replay"] {
            try feed.requireGuardedBind(key, endpoint: key == "publish" ? configuration.publishEndpoint
                : configuration.replayEndpoint, guardedByCurve: configuration.curve != nil, insecure: insecure,
                remedy: "bind 127.0.0.1, or turn on [curve] so that only known keys connect")
        }
        try feed.requireGuardedBind("control", endpoint: configuration.controlEndpoint,
            guardedByCurve: configuration.controlCurve != nil, insecure: insecure,
            remedy: "bind 127.0.0.1, or an ipc:// path (only the operators' group may connect), or list the "
                + "operators' keys in [curve] operator_key_files")
        if try feed.string("metrics", default: "127.0.0.1:9101").isEmpty {
            configuration.metricsListen = nil
        } else {
            configuration.metricsListen = try feed.hostPort("metrics", default: "127.0.0.1:9101")
        }
        configuration.sendHighWaterMark = Int32(try feed.int("send_hwm", default: 1_000_000, in: 1...100_000_000))
        configuration.replayTicks = try feed.int("replay_ticks", default: 200_000, in: 1...100_000_000)
        configuration.maxAnswerTicks = try feed.int("max_answer_ticks", default: configuration.maxAnswerTicks,
            in: 1...10_000_000)
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
                var itch = ItchSource(listenHost: listen.host, listenPort: listen.port)
                if table.has("retransmission") {
                    let server = try table.hostPort("retransmission")
                    try requireNumericHost(server.host, table: table, key: "retransmission")
                    itch.retransmission = server
                }
                itch.multicastInterface = try table.optionalString("multicast_interface")
                let allowedSources = try table.strings("allowed_sources", default: [])
                do throws(SourceFilterError) {
                    itch.allowedSources = try SourceFilter(allowedSources)
                } catch {
                    throw table.error("allowed_sources", "\"\(error.entry)\": \(error.reason)")
                }
                itch.gapTimeout = try table.duration("gap_timeout", default: itch.gapTimeout)
                itch.gapGiveUp = try table.duration("gap_giveup", default: itch.gapGiveUp)
                itch.retransmissionRetry = try table.duration("retransmission_retry", default: itch.retransmissionRetry)
                itch.maxHeldMessages = try table.int("max_held_messages", default: itch.maxHeldMessages, in: 1...100_000_000)
                itch.bookDepth = try table.int("book_depth", default: itch.bookDepth, in: 0...50)
                itch.bookInterval = try table.duration("book_interval", default: itch.bookInterval)
                itch.bookOrders = try table.int("book_orders", default: itch.bookOrders, in: 1...100_000_000)
                itch.maxSequenceJump = UInt64(try table.int("max_sequence_jump", default: Int(itch.maxSequenceJump),
                    in: 1...1_000_000_000_000))
                itch.sessionProofPackets = try table.int("session_proof_packets", default: itch.sessionProofPackets,
                    in: 1...64)
                guard itch.bookInterval >= .milliseconds(1) else {
                    throw table.error("book_interval", "expected at least 1ms")
                }
                guard itch.gapGiveUp > itch.gapTimeout else {
                    throw table.error("gap_giveup", "expected a duration longer than gap_timeout")
                }
                source = .itch(itch)
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
