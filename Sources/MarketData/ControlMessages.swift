import Foundation

/// A request on a daemon's control endpoint: `{"cmd":"status"}` (DESIGN section 7).
public struct ControlRequest: Codable, Sendable, Equatable {
    public var cmd: String
    public var symbol: String?

    public init(cmd: String, symbol: String? = nil) {
        self.cmd = cmd
        self.symbol = symbol
    }
}

/// The reply to `status`, the same shape from every daemon so that `mktctl status` draws one table.
public struct DaemonStatus: Codable, Sendable, Equatable {
    public var daemon: String
    public var name: String
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    public var messagesIn: UInt64
    public var messagesOut: UInt64
    /// Messages per second over the last few seconds.
    public var rateIn: Double
    public var rateOut: Double
    public var drops: UInt64
    public var gapsOpen: UInt64
    public var gapsHealed: UInt64
    /// Gaps that could not be filled and the messages lost in them (feedd; nil where a daemon does not recover).
    public var gapsGivenUp: UInt64?
    public var messagesLost: UInt64?
    public var clients: Int?
    /// Named counters of this daemon (malformed lines, unknown ITCH types, subscriptions, ...).
    public var counters: [String: UInt64]
    /// Each hop this daemon measures from the ticks' stamps, since it started (`/metrics` histograms).
    public var latency: [LatencyBuckets]?

    public init(daemon: String, name: String, version: String = TickplantVersion.current, pid: Int32,
        uptimeSeconds: Double, messagesIn: UInt64, messagesOut: UInt64, rateIn: Double, rateOut: Double,
        drops: UInt64, gapsOpen: UInt64 = 0, gapsHealed: UInt64 = 0, gapsGivenUp: UInt64? = nil,
        messagesLost: UInt64? = nil, clients: Int? = nil, counters: [String: UInt64] = [:],
        latency: [LatencyBuckets]? = nil)
    {
        self.gapsGivenUp = gapsGivenUp
        self.messagesLost = messagesLost
        self.latency = latency
        self.daemon = daemon
        self.name = name
        self.version = version
        self.pid = pid
        self.uptimeSeconds = uptimeSeconds
        self.messagesIn = messagesIn
        self.messagesOut = messagesOut
        self.rateIn = rateIn
        self.rateOut = rateOut
        self.drops = drops
        self.gapsOpen = gapsOpen
        self.gapsHealed = gapsHealed
        self.clients = clients
        self.counters = counters
    }
}

/// An error reply: `{"error":"unknown command \"foo\""}`.
public struct ControlErrorReply: Codable, Sendable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}

public enum TickplantVersion {
    public static let current = "0.1.0"
}

/// Decodes requests and encodes replies for a daemon's control endpoint; `answer` maps a request to a reply.
public enum ControlCodec {
    public static func respond(to body: [UInt8], answer: (ControlRequest) -> (any Encodable)?) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(body)) else {
            return Array((try? encoder.encode(ControlErrorReply(error: "expected a JSON object such as {\"cmd\":\"status\"}"))) ?? Data())
        }
        guard let reply = answer(request) else {
            return Array((try? encoder.encode(ControlErrorReply(error: "unknown command \"\(request.cmd)\""))) ?? Data())
        }
        return Array((try? encoder.encode(reply)) ?? Data())
    }
}

/// Rates over a sliding window, for status replies: call `sample` with the running totals now and then.
public struct RateMeter: Sendable {
    private var lastTotal: UInt64 = 0
    private var lastTime: UInt64 = MonotonicClock.nowNanoseconds()
    public private(set) var perSecond: Double = 0

    public init() {}

    public mutating func sample(total: UInt64, now: UInt64 = MonotonicClock.nowNanoseconds()) {
        let elapsed = now &- lastTime
        guard elapsed >= 1_000_000_000 else { return }
        perSecond = Double(total &- lastTotal) / (Double(elapsed) / 1e9)
        lastTotal = total
        lastTime = now
    }
}

/// Lets a per-message problem be logged at most once per interval, counting the ones it held back.
public struct LogRateLimiter: Sendable {
    public let intervalNs: UInt64
    private var lastLogNs: UInt64 = 0
    private var suppressed: UInt64 = 0

    public init(interval: Duration = .seconds(1)) {
        intervalNs = interval.nanoseconds
    }

    /// Returns how many were held back since the last log when this one should be logged, nil when it should not.
    public mutating func admit(now: UInt64 = MonotonicClock.nowNanoseconds()) -> UInt64? {
        if lastLogNs == 0 || now &- lastLogNs >= intervalNs {
            lastLogNs = now
            defer { suppressed = 0 }
            return suppressed
        }
        suppressed += 1
        return nil
    }
}

/// One hop's latency over a window, in nanoseconds (`mktctl latency`, and a daemon's `latency` control reply).
public struct HopFigures: Codable, Sendable, Equatable {
    public var hop: String
    public var count: UInt64
    public var p50Ns: UInt64
    public var p90Ns: UInt64
    public var p99Ns: UInt64
    public var p999Ns: UInt64
    public var maxNs: UInt64
    /// Ticks whose stamps ran backwards on this hop (clocks of two hosts): not in the figures.
    public var clockSkewed: UInt64

    public init(hop: String, count: UInt64, p50Ns: UInt64, p90Ns: UInt64, p99Ns: UInt64, p999Ns: UInt64, maxNs: UInt64,
        clockSkewed: UInt64)
    {
        self.hop = hop
        self.count = count
        self.p50Ns = p50Ns
        self.p90Ns = p90Ns
        self.p99Ns = p99Ns
        self.p999Ns = p999Ns
        self.maxNs = maxNs
        self.clockSkewed = clockSkewed
    }
}

/// The reply to `latency`: the hops a daemon measures itself, over the window since the previous `latency` request
/// (each request starts a new window).
public struct LatencyReply: Codable, Sendable, Equatable {
    public var hops: [HopFigures]

    public init(hops: [HopFigures]) { self.hops = hops }
}

/// One sequence gap a daemon saw and how it ended, in the `gaps` reply of feedd and plantd (`mktctl gaps`).
public struct GapEvent: Codable, Sendable, Equatable {
    /// A venue (feedd) or a feed's PUB endpoint (plantd).
    public var source: String
    /// What the sequence numbers count: a MoldUDP64 session, or a feed's stream_seq.
    public var stream: String
    public var firstSequence: UInt64
    /// 0 while not known (a catch-up after a restart, until it ends).
    public var lastSequence: UInt64
    /// When it was noticed (CLOCK_REALTIME ns).
    public var openedAtNs: UInt64
    /// How long until it was whole again or given up; nil while open.
    public var durationNs: UInt64?
    /// "retransmission", "reordering" (it filled before anything was asked), "feedd replay", "given up: why", or
    /// "open".
    public var healedBy: String
    public var messagesLost: UInt64

    public init(source: String, stream: String, firstSequence: UInt64, lastSequence: UInt64, openedAtNs: UInt64,
        durationNs: UInt64?, healedBy: String, messagesLost: UInt64)
    {
        self.source = source
        self.stream = stream
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.openedAtNs = openedAtNs
        self.durationNs = durationNs
        self.healedBy = healedBy
        self.messagesLost = messagesLost
    }

    /// A monotonic reading as CLOCK_REALTIME, by the two clocks' offset now.
    public static func wallTime(ofMonotonic monotonicNs: UInt64) -> UInt64 {
        WallClock.nowNanoseconds() &- (MonotonicClock.nowNanoseconds() &- monotonicNs)
    }
}

/// The reply to `gaps` on plantd: the gaps in each feed's stream_seq and how they were filled.
public struct PlantGapsReply: Codable, Sendable, Equatable {
    public var gaps: [GapEvent]

    public init(gaps: [GapEvent]) { self.gaps = gaps }
}

/// The reply to `reload` (and what a daemon logs on SIGHUP): the configuration file read again; the keys whose new
/// values took effect, and those that changed but take a restart. A file with an error changes nothing.
public struct ReloadReply: Codable, Sendable, Equatable {
    public var file: String
    public var applied: [String]
    public var needsRestart: [String]
    public var error: String?

    public init(file: String, applied: [String] = [], needsRestart: [String] = [], error: String? = nil) {
        self.file = file
        self.applied = applied
        self.needsRestart = needsRestart
        self.error = error
    }
}
