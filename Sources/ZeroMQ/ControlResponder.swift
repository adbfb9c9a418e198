import Glibc

/// Serves a daemon's control endpoint: a ROUTER socket that takes one JSON request per message from REQ or DEALER
/// peers and sends one JSON reply (DESIGN section 7). It lives on the daemon's socket thread; `handle` turns request
/// bytes into reply bytes.
public final class ControlResponder {
    public let socket: ZMQSocket
    private let message = ZMQMessage()

    /// The largest control request taken: every request is a short JSON object.
    public static let maximumRequestBytes: Int64 = 64 << 10

    /// Binds `endpoint`. An ipc:// socket file is made readable and writable by its owner and group only: a peer
    /// must be able to write it to connect, so the group is the operators (DESIGN section 4). With `curve`, the
    /// endpoint is a CURVE server whose handshakes the context's `ZAPHandler` checks against the operators' keys.
    public init(context: ZMQContext, endpoint: String, curve: ControlCurve? = nil) throws(ZMQError) {
        socket = try ZMQSocket(context, type: .router)
        try socket.setSendHighWaterMark(1000)
        try socket.setReceiveHighWaterMark(1000)
        try socket.setMaximumMessageSize(Self.maximumRequestBytes)
        if let curve {
            guard let secret = CurveKeyPair.binary(curve.secretKey) else {
                throw ZMQError(code: EINVAL, operation: "CURVE on the control endpoint (its secret key is not Z85)")
            }
            try socket.setCurveServer(secretKey: secret)
            try socket.setAuthenticationDomain(ControlCurve.domain)
        }
        try socket.bind(endpoint)
        if endpoint.hasPrefix("ipc://") && !endpoint.hasPrefix("ipc://@") {
            let path = String(endpoint.dropFirst("ipc://".count))
            if chmod(path, 0o660) != 0 { throw ZMQError(code: errno, operation: "chmod 0660 \(path)") }
        }
    }

    /// Answers every request waiting now. A malformed envelope is dropped (the peer's REQ will time out).
    public func serveWaiting(_ handle: ([UInt8]) -> [UInt8]) throws(ZMQError) {
        while let frames = try socket.receiveFrames(dontWait: true) {
            // REQ peers send [identity, empty, body]; DEALER peers may omit the empty delimiter.
            guard frames.count >= 2, let body = frames.last else { continue }
            let envelope = frames.dropLast()
            let reply = handle(body)
            for frame in envelope { try socket.send(frame, more: true, dontWait: true) }
            try socket.send(reply, dontWait: true)
        }
    }
}
