/// ZeroMQ's authentication handler (ZAP, ZeroMQ RFC 27) for one context: a CURVE client whose public key is listed
/// is let in, any other is refused at the handshake and counted. The control endpoint's handshakes (ZAP domain
/// `control`) are checked against the operators' keys alone, every other socket's against the clients' keys. libzmq
/// asks it for every connection to a CURVE server socket of the context; its owner polls `socket` on its own loop and
/// calls `serveWaiting()`, so a handshake waits at most one turn of that loop.
public final class ZAPHandler {
    /// Where libzmq sends its requests: one handler per context.
    public static let endpoint = "inproc://zeromq.zap.01"

    public let socket: ZMQSocket
    private let allowed: Set<[UInt8]>
    private let operators: Set<[UInt8]>
    public private(set) var accepted: UInt64 = 0
    public private(set) var refused: UInt64 = 0
    /// Of `refused`, those refused at the control endpoint.
    public private(set) var controlRefused: UInt64 = 0
    /// The last refused client key (Z85), for the log.
    public private(set) var lastRefusedKey = ""
    /// Where the last refused client tried: "control", or "" for the streams and request sockets.
    public private(set) var lastRefusedDomain = ""

    /// `allowedPublicKeys` for the streams and request sockets, `operatorKeys` for the control endpoint: Z85 text,
    /// as `mktctl keygen` writes it (keys that do not decode are never matched).
    public init(context: ZMQContext, allowedPublicKeys: [String], operatorKeys: [String] = []) throws(ZMQError) {
        socket = try ZMQSocket(context, type: .reply)
        try socket.bind(Self.endpoint)
        allowed = Set(allowedPublicKeys.compactMap(CurveKeyPair.binary))
        operators = Set(operatorKeys.compactMap(CurveKeyPair.binary))
    }

    /// The handler of a daemon whose streams take `clientKeys` (`[curve] client_key_files`) and whose control
    /// endpoint takes `control`'s operators; nil when neither is on (nothing to check).
    public static func forDaemon(
        context: ZMQContext, clientKeys: [String]?, control: ControlCurve?
    ) throws(ZMQError) -> ZAPHandler? {
        guard clientKeys != nil || control != nil else { return nil }
        return try ZAPHandler(context: context, allowedPublicKeys: clientKeys ?? [],
            operatorKeys: control?.allowedKeys ?? [])
    }

    /// What a daemon's `status` shows of it.
    public var counters: [String: UInt64] {
        ["curve_clients_accepted": accepted, "curve_clients_refused": refused, "control_clients_refused": controlRefused]
    }

    /// What the log line of the last refusal says: the key and where it tried.
    public var lastRefusal: [String: String] {
        ["key": lastRefusedKey, "at": lastRefusedDomain == ControlCurve.domain ? "control endpoint" : "stream or request socket",
            "refused": "\(refused)"]
    }

    /// Answers every request waiting: 200 for a listed CURVE key (and for the NULL mechanism, which the context's
    /// plain sockets use), 400 for anything else. Returns how many were refused in this call.
    @discardableResult
    public func serveWaiting() -> Int {
        var refusedNow = 0
        while let frames = try? socket.receiveFrames(dontWait: true) {
            // version, request id, domain, address, routing id, mechanism, credentials...
            let requestID = frames.count > 1 ? frames[1] : []
            let domain = frames.count > 2 ? String(decoding: frames[2], as: UTF8.self) : ""
            let mechanism = frames.count > 5 ? String(decoding: frames[5], as: UTF8.self) : ""
            let key = frames.count > 6 ? frames[6] : []
            let keys = domain == ControlCurve.domain ? operators : allowed
            let allow = (mechanism == "NULL" && domain != ControlCurve.domain) || (mechanism == "CURVE" && keys.contains(key))
            if allow {
                accepted += 1
            } else {
                refused += 1
                refusedNow += 1
                if domain == ControlCurve.domain { controlRefused += 1 }
                lastRefusedKey = CurveKeyPair.z85(key) ?? ""
                lastRefusedDomain = domain
            }
            let status = allow ? "200" : "400"
            let text = allow ? "OK" : mechanism == "CURVE" ? "unknown client key" : "mechanism \(mechanism) not allowed"
            try? socket.send(frames: [Array("1.0".utf8), requestID, Array(status.utf8), Array(text.utf8), [], []])
        }
        return refusedNow
    }

    public func close() { socket.close() }
}
