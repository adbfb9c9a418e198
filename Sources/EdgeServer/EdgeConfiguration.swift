import MarketData
import ZeroMQ

/// edged's configuration (etc/edged.toml), validated once at start.
public struct EdgeConfiguration: Sendable {
    public var name = "edged"
    public var host = "127.0.0.1"
    public var port = 8080
    /// plantd's XPUB endpoint.
    public var upstream = "tcp://127.0.0.1:7201"
    /// plantd's snapshot ROUTER, asked for a symbol's last values when its first client subscribes (nil: none; a
    /// client then gets no snapshot, only updates).
    public var snapshotEndpoint: String?
    /// How long a snapshot is waited for before clients are served without it.
    public var snapshotTimeout: Duration = .seconds(2)
    public var controlEndpoint = "tcp://127.0.0.1:7309"
    public var eventLoops = 1
    /// `/echo`: a WebSocket route that sends every message back, through the same layers as `/prices`; only for
    /// the conformance testsuite (`make autobahn`), never in production.
    public var echo = false
    /// The demo page (`/`), the JavaScript client (`/tickplant.js`) and the files beside them (`[edge] web`, a
    /// directory read at start); nil: no page, only the WebSocket and `/healthz`.
    public var web: WebFiles?
    public var maxSymbolsPerClient = 500
    public var maxFrameBytes = 16_384
    /// WebSocket clients one process serves; the next one gets error 406 and close 1008.
    public var maxConnections = 20_000
    /// Messages a client may send per second (a burst of as many is allowed); beyond it each gets error 429.
    public var maxMessagesPerSecond = 50
    /// A connection that has not finished its HTTP upgrade this long after connecting is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Connections accepted and not yet upgraded (nor answered) at once; the next is answered 503 and closed.
    public var maxPendingHandshakes = 2_000
    /// Connections from one source address at once, upgraded or not; the next is answered 429 and closed. 0: no cap
    /// (behind a load balancer, whose address every client has).
    public var maxConnectionsPerAddress = 0
    /// Origins (`scheme://host[:port]`, or "*" for any) of the web pages whose scripts may connect, beside the
    /// page's own host and clients that name none (programs); any other Origin is refused with HTTP 403.
    public var allowedOrigins: [String] = []
    /// Where `/metrics` (and `/healthz`) are served over HTTP, apart from the clients' port; nil: nowhere.
    public var metricsListen: (host: String, port: Int)? = ("127.0.0.1", 9301)
    /// On SIGTERM, how long clients get to answer the server's close 1001 before the process exits anyway.
    public var drainTimeout: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(5)
    /// A slow client's queue (`[clients]`): above `queueSoft` messages updates of a symbol conflate, at `queueHard`
    /// messages or `queueHardBytes` the oldest go; over the hard mark for `slowGrace`: 407 and close 4008.
    public var queueSoft = 256
    public var queueHard = 1_024
    public var queueHardBytes = 1 << 20
    public var slowGrace: Duration = .seconds(5)
    /// After 407, how long a slow client may still read its last frames before it is disconnected.
    public var slowLinger: Duration = .seconds(2)
    /// The kernel send buffer of each client's socket (SO_SNDBUF): fixed, so that what a client that reads nothing
    /// holds in the kernel is bounded too (autotuning would let it grow to megabytes).
    public var socketSendBuffer = 131_072
    /// A client that sends nothing (not even a pong to edged's ping) this long is closed (1008); zero: never.
    public var idleTimeout: Duration = .seconds(60)
    /// A client resuming with `fromSeq` gets at most this many missed updates of a symbol replayed; one that missed
    /// more gets a fresh snapshot (flagged `"snapshot":true`) instead.
    public var resumeMaxUpdates = 1_000
    public var receiveHighWaterMark: Int32 = 1_000_000
    /// Token authentication (`[auth]`); nil when it is off.
    public var auth: AuthConfiguration?
    /// wss (`[tls]` certificate and key); nil: plain ws, for a deployment that ends TLS in its load balancer.
    public var tls: TLSContext?
    /// CURVE to plantd (`[curve]`: plantd's public key, edged's own secret key); nil: plain, for a plant that has
    /// no `[curve]`.
    public var curve: CurveClientKeys?
    /// CURVE on the control endpoint (`[curve] operator_key_files`, with edged's own `secret_key_file`): only the
    /// operators' keys connect; nil: plain.
    public var controlCurve: ControlCurve?

    public init() {}

    public static func load(file: String) throws(ConfigError) -> EdgeConfiguration {
        try load(file: file, readingFiles: true)
    }

    /// `readingFiles` false checks every key but opens none of the files they name (the web directory, the TLS
    /// certificate and key, the token secret), leaving those off: for mktctl, which only wants the endpoints and may
    /// run in another directory than edged.
    public static func load(file: String, readingFiles: Bool) throws(ConfigError) -> EdgeConfiguration {
        let root = try ConfigReader.load(file: file)
        var configuration = EdgeConfiguration()
        let edge = try root.table("edge")
        configuration.name = try edge.string("name", default: "edged")
        let listen = try edge.hostPort("listen", default: "127.0.0.1:8080")
        configuration.host = listen.host
        configuration.port = listen.port
        configuration.upstream = try edge.endpoint("upstream", default: configuration.upstream)
        // Empty: no snapshot ROUTER (clients get no snapshot; resume and 408 are off).
        let snapshot = try edge.string("snapshot", default: "tcp://127.0.0.1:7202")
        configuration.snapshotEndpoint = snapshot.isEmpty ? nil : try edge.endpoint("snapshot", default: snapshot)
        configuration.controlEndpoint = try edge.endpoint("control", default: configuration.controlEndpoint)
        let insecure = try edge.bool("insecure", default: false)
        configuration.eventLoops = try edge.int("event_loops", default: 1, in: 1...64)
        configuration.echo = try edge.bool("echo", default: false)
        configuration.allowedOrigins = try edge.strings("allowed_origins", default: [], problem: OriginPolicy.problem)
        if try edge.string("metrics", default: "127.0.0.1:9301").isEmpty {
            configuration.metricsListen = nil
        } else {
            configuration.metricsListen = try edge.hostPort("metrics", default: "127.0.0.1:9301")
        }
        if let directory = try edge.optionalString("web"), !directory.isEmpty, readingFiles {
            do {
                configuration.web = try WebFiles(directory: directory)
            } catch {
                throw edge.error("web", error.description)
            }
        }
        configuration.drainTimeout = try edge.duration("drain_timeout", default: .seconds(10))
        configuration.receiveHighWaterMark = Int32(try edge.int("receive_hwm", default: 1_000_000, in: 1...100_000_000))
        let limits = try root.table("limits")
        configuration.maxSymbolsPerClient = try limits.int("symbols_per_client", default: 500, in: 1...100_000)
        configuration.maxFrameBytes = try limits.int("max_frame_bytes", default: 16_384, in: 128...(1 << 24))
        configuration.maxConnections = try limits.int("connections", default: 20_000, in: 1...10_000_000)
        configuration.maxMessagesPerSecond = try limits.int("messages_per_second", default: 50, in: 1...1_000_000)
        configuration.handshakeTimeout = try limits.duration("handshake_timeout", default: .seconds(10))
        guard configuration.handshakeTimeout >= .milliseconds(100) else {
            throw limits.error("handshake_timeout", "expected at least 100ms")
        }
        configuration.maxPendingHandshakes = try limits.int("pending_handshakes", default: 2_000, in: 1...10_000_000)
        configuration.maxConnectionsPerAddress = try limits.int("connections_per_address", default: 0,
            in: 0...10_000_000)
        let clients = try root.table("clients")
        configuration.heartbeatInterval = try clients.duration("heartbeat_interval", default: .seconds(5))
        guard configuration.heartbeatInterval >= .milliseconds(100) else {
            throw clients.error("heartbeat_interval", "expected at least 100ms")
        }
        configuration.queueSoft = try clients.int("queue_soft", default: 256, in: 1...1_000_000)
        configuration.queueHard = try clients.int("queue_hard", default: 1_024, in: 1...1_000_000)
        guard configuration.queueHard >= configuration.queueSoft else {
            throw clients.error("queue_hard", "expected at least queue_soft (\(configuration.queueSoft))")
        }
        configuration.queueHardBytes = try clients.int("queue_hard_bytes", default: 1 << 20, in: 4_096...(1 << 30))
        configuration.slowGrace = try clients.duration("slow_grace", default: .seconds(5))
        configuration.slowLinger = try clients.duration("slow_linger", default: .seconds(2))
        configuration.socketSendBuffer = try clients.int("send_buffer_bytes", default: 131_072, in: 4_096...(64 << 20))
        configuration.idleTimeout = try clients.duration("idle_timeout", default: .seconds(60))
        configuration.resumeMaxUpdates = try clients.int("resume_max_updates", default: 1_000, in: 0...1_000_000)
        guard configuration.idleTimeout == .zero || configuration.idleTimeout >= configuration.heartbeatInterval * 2 else {
            throw clients.error("idle_timeout", "expected 0 (off) or at least twice heartbeat_interval (the check runs then)")
        }
        configuration.auth = try loadAuth(try root.table("auth"), readingFiles: readingFiles)
        configuration.tls = try loadTLS(try root.table("tls"), readingFiles: readingFiles)
        let curve = try root.table("curve")
        configuration.curve = try loadCurve(curve, readingFiles: readingFiles)
        configuration.controlCurve = ControlCurve(try curve.controlCurveKeys(readingFiles: readingFiles,
            secretProblem: CurveKeyPair.problem(withSecretKey:), keyProblem: CurveKeyPair.problem(withKey:),
            publicKeyOf: CurveKeyPair.publicKey(ofSecret:)))
        try edge.requireGuardedBind("control", endpoint: configuration.controlEndpoint,
            guardedByCurve: configuration.controlCurve != nil, insecure: insecure,
            remedy: "bind 127.0.0.1, or an ipc:// path (only the operators' group may connect), or list the "
                + "operators' keys in [curve] operator_key_files")
        try root.finish()
        return configuration
    }

    static func loadCurve(_ table: ConfigReader, readingFiles: Bool = true) throws(ConfigError) -> CurveClientKeys? {
        switch (table.has("server_key_file"), table.has("secret_key_file")) {
        case (false, false):
            return nil
        case (false, true):
            // edged's own key serves its control endpoint alone (`operator_key_files`); plantd is plain.
            guard !table.has("operator_key_files") else { return nil }
            throw table.error("server_key_file", "expected beside secret_key_file: plantd's public key (its .key file)")
        case (true, false):
            throw table.error("secret_key_file", "expected beside server_key_file: edged's own secret key")
        case (true, true):
            guard readingFiles else {
                _ = try table.string("server_key_file")
                _ = try table.string("secret_key_file")
                return nil
            }
            let server = try table.keyFile("server_key_file", problem: CurveKeyPair.problem(withKey:))
            let secret = try table.secretKeyFile("secret_key_file", problem: CurveKeyPair.problem(withSecretKey:))
            return CurveClientKeys(serverKey: server, secretKey: secret)
        }
    }

    static func loadTLS(_ table: ConfigReader, readingFiles: Bool = true) throws(ConfigError) -> TLSContext? {
        let certificate = try table.optionalString("certificate")
        let key = try table.optionalString("key")
        let versionName = try table.string("min_version", default: TLSMinimumVersion.tls12.rawValue)
        guard let minimumVersion = TLSMinimumVersion(rawValue: versionName) else {
            throw table.error("min_version", "expected \"1.2\" (TLS 1.2 with ECDHE and AEAD ciphers, and 1.3) or "
                + "\"1.3\", got \"\(versionName)\"")
        }
        switch (certificate, key) {
        case (nil, nil):
            return nil
        case (nil, _?):
            throw table.error("certificate", "expected beside key: wss needs both (or neither, for plain ws)")
        case (_?, nil):
            throw table.error("key", "expected beside certificate: wss needs both (or neither, for plain ws)")
        case let (certificate?, key?):
            guard readingFiles else { return nil }
            if let problem = SecretFiles.problem(withPermissionsOf: key) { throw table.error("key", problem) }
            do {
                return try TLSContext(certificate: certificate, key: key, minimumVersion: minimumVersion)
            } catch {
                throw table.error(error.key, error.description)
            }
        }
    }

    static func loadAuth(_ table: ConfigReader, readingFiles: Bool = true) throws(ConfigError) -> AuthConfiguration? {
        guard try table.bool("enabled", default: false), readingFiles else {
            // The other keys may stay in the file, ready for when it is turned on.
            _ = try table.optionalString("secret_file")
            _ = try table.duration("auth_timeout", default: .seconds(5))
            _ = try table.duration("clock_skew", default: .seconds(30))
            _ = try table.optionalString("audience")
            _ = try table.optionalString("issuer")
            _ = try table.duration("max_lifetime", default: AuthConfiguration.defaultMaxLifetime)
            return nil
        }
        let path = try table.string("secret_file")
        let signer: TokenSigner
        do {
            signer = try TokenSigner.load(secretFile: path)
        } catch {
            throw table.error("secret_file", "\(error) (make one with `mktctl token --new-secret \(path)`)")
        }
        let timeout = try table.duration("auth_timeout", default: .seconds(5))
        guard timeout >= .milliseconds(100) else { throw table.error("auth_timeout", "expected at least 100ms") }
        let skew = try table.duration("clock_skew", default: .seconds(30))
        var requirements = TokenRequirements()
        requirements.audience = try table.optionalString("audience").flatMap { $0.isEmpty ? nil : $0 }
        requirements.issuer = try table.optionalString("issuer").flatMap { $0.isEmpty ? nil : $0 }
        let maxLifetime = try table.duration("max_lifetime", default: AuthConfiguration.defaultMaxLifetime)
        requirements.maxLifetimeSeconds = maxLifetime.nanoseconds / 1_000_000_000
        return AuthConfiguration(signer: signer, timeout: timeout,
            clockSkewSeconds: UInt64(skew.nanoseconds / 1_000_000_000), requirements: requirements)
    }
}

/// How clients prove who they are (`[auth]` in etc/edged.toml).
public struct AuthConfiguration: Sendable {
    public var signer: TokenSigner
    /// A client that has not sent a valid token this long after connecting gets 404 and close 1008.
    public var timeout: Duration
    /// Tolerance for the token's expiry against this host's clock.
    public var clockSkewSeconds: UInt64
    /// What a token must say beyond its signature and times (audience, issuer, longest lifetime).
    public var requirements: TokenRequirements
    /// `[auth] max_lifetime` when the file does not say: no token good for longer than a week.
    public static let defaultMaxLifetime: Duration = .seconds(7 * 86_400)

    public init(signer: TokenSigner, timeout: Duration = .seconds(5), clockSkewSeconds: UInt64 = 30,
        requirements: TokenRequirements = TokenRequirements(
            maxLifetimeSeconds: AuthConfiguration.defaultMaxLifetime.nanoseconds / 1_000_000_000))
    {
        self.signer = signer
        self.timeout = timeout
        self.clockSkewSeconds = clockSkewSeconds
        self.requirements = requirements
    }
}
