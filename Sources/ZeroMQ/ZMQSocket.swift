import CZeroMQ

/// The libzmq socket patterns tickplant uses.
public enum ZMQSocketType: Sendable {
    case publish, subscribe, extendedPublish, extendedSubscribe
    case router, dealer, request, reply, push, pull, pair

    var rawValue: Int32 {
        switch self {
        case .publish: ZMQ_PUB
        case .subscribe: ZMQ_SUB
        case .extendedPublish: ZMQ_XPUB
        case .extendedSubscribe: ZMQ_XSUB
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .request: ZMQ_REQ
        case .reply: ZMQ_REP
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .pair: ZMQ_PAIR
        }
    }
}

/// One libzmq socket. libzmq sockets are not thread-safe, so this type is not Sendable: create it on the thread that
/// will use it and close it there (DESIGN section 11).
public final class ZMQSocket {
    private var handle: UnsafeMutableRawPointer?
    /// Keeps the context alive while the socket is open: zmq_ctx_term waits for every socket.
    private let context: ZMQContext
    public let type: ZMQSocketType

    public init(_ context: ZMQContext, type: ZMQSocketType) throws(ZMQError) {
        guard let handle = zmq_socket(context.handle, type.rawValue) else {
            throw ZMQError.last("zmq_socket")
        }
        self.handle = handle
        self.context = context
        self.type = type
        // LINGER 0: a daemon that stops must not hang on unsent market data; consumers recover by sequence numbers.
        try setOption(ZMQ_LINGER, 0, name: "ZMQ_LINGER")
    }

    deinit { close() }

    /// Closes the socket now; later calls throw ENOTSOCK. Safe to call twice.
    public func close() {
        if let handle {
            zmq_close(handle)
            self.handle = nil
        }
    }

    var raw: UnsafeMutableRawPointer {
        get throws(ZMQError) {
            guard let handle else { throw ZMQError(code: ENOTSOCK, operation: "use of a closed socket") }
            return handle
        }
    }

    // MARK: Endpoints

    public func bind(_ endpoint: String) throws(ZMQError) {
        if zmq_bind(try raw, endpoint) != 0 { throw ZMQError.last("bind \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws(ZMQError) {
        if zmq_connect(try raw, endpoint) != 0 { throw ZMQError.last("connect \(endpoint)") }
    }

    public func disconnect(_ endpoint: String) throws(ZMQError) {
        if zmq_disconnect(try raw, endpoint) != 0 { throw ZMQError.last("disconnect \(endpoint)") }
    }

    /// The endpoint bound last, with the port libzmq chose for `tcp://127.0.0.1:*`.
    public var lastEndpoint: String {
        get throws(ZMQError) {
            var buffer = [CChar](repeating: 0, count: 256)
            var size = buffer.count
            if zmq_getsockopt(try raw, ZMQ_LAST_ENDPOINT, &buffer, &size) != 0 {
                throw ZMQError.last("getsockopt ZMQ_LAST_ENDPOINT")
            }
            return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    // MARK: Options

    func setOption(_ option: Int32, _ value: Int32, name: String) throws(ZMQError) {
        var value = value
        if zmq_setsockopt(try raw, option, &value, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError.last("setsockopt \(name)")
        }
    }

    func setOption(_ option: Int32, bytes: [UInt8], name: String) throws(ZMQError) {
        let socket = try raw
        let result = bytes.withUnsafeBytes { zmq_setsockopt(socket, option, $0.baseAddress, $0.count) }
        if result != 0 { throw ZMQError.last("setsockopt \(name)") }
    }

    func intOption(_ option: Int32, name: String) throws(ZMQError) -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(try raw, option, &value, &size) != 0 { throw ZMQError.last("getsockopt \(name)") }
        return value
    }

    /// Messages queued per peer before libzmq drops (PUB) or blocks (others). Set explicitly on every socket:
    /// the default of 1000 drops silently under market load.
    public func setSendHighWaterMark(_ messages: Int32) throws(ZMQError) {
        try setOption(ZMQ_SNDHWM, messages, name: "ZMQ_SNDHWM")
    }

    public func setReceiveHighWaterMark(_ messages: Int32) throws(ZMQError) {
        try setOption(ZMQ_RCVHWM, messages, name: "ZMQ_RCVHWM")
    }

    /// The largest message a peer may send (ZMQ_MAXMSGSIZE): a peer that sends a larger one is disconnected before
    /// the message is taken into memory. Set on every bound socket (DESIGN section 12); libzmq's default is no limit.
    public func setMaximumMessageSize(_ bytes: Int64) throws(ZMQError) {
        var value = bytes
        if zmq_setsockopt(try raw, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) != 0 {
            throw ZMQError.last("setsockopt ZMQ_MAXMSGSIZE")
        }
    }

    /// ZMTP heartbeats on this socket's connections: a PING every `interval`, and a connection on which nothing at
    /// all arrives for `timeout` after one is closed (and, on a connecting socket, made again). TCP alone never tells
    /// a peer that stopped answering (a link that drops everything, a host that hung) from a quiet one.
    public func setHeartbeat(intervalMilliseconds interval: Int32, timeoutMilliseconds timeout: Int32)
        throws(ZMQError)
    {
        try setOption(ZMQ_HEARTBEAT_IVL, interval, name: "ZMQ_HEARTBEAT_IVL")
        try setOption(ZMQ_HEARTBEAT_TIMEOUT, timeout, name: "ZMQ_HEARTBEAT_TIMEOUT")
    }

    /// Milliseconds a closed socket keeps trying to deliver queued messages.
    public func setLinger(milliseconds: Int32) throws(ZMQError) {
        try setOption(ZMQ_LINGER, milliseconds, name: "ZMQ_LINGER")
    }

    /// Milliseconds a blocking receive waits before it throws EAGAIN (-1 waits forever).
    public func setReceiveTimeout(milliseconds: Int32) throws(ZMQError) {
        try setOption(ZMQ_RCVTIMEO, milliseconds, name: "ZMQ_RCVTIMEO")
    }

    public func setSendTimeout(milliseconds: Int32) throws(ZMQError) {
        try setOption(ZMQ_SNDTIMEO, milliseconds, name: "ZMQ_SNDTIMEO")
    }

    /// XPUB: pass every subscribe and unsubscribe to the application, duplicates included, so that the plant can
    /// count who watches what.
    public func setVerboseSubscriptions(_ on: Bool) throws(ZMQError) {
        try setOption(ZMQ_XPUB_VERBOSER, on ? 1 : 0, name: "ZMQ_XPUB_VERBOSER")
    }

    /// ROUTER: a reply to a peer that is gone fails with EHOSTUNREACH instead of vanishing silently.
    public func setRouterMandatory(_ on: Bool) throws(ZMQError) {
        try setOption(ZMQ_ROUTER_MANDATORY, on ? 1 : 0, name: "ZMQ_ROUTER_MANDATORY")
    }

    /// CURVE server role with this secret key (32 bytes); peers must know the matching public key.
    public func setCurveServer(secretKey: [UInt8]) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: secretKey, name: "ZMQ_CURVE_SECRETKEY")
    }

    /// The ZAP domain a server socket's handshakes are asked under (ZMQ_ZAP_DOMAIN): how one handler tells a
    /// control endpoint's peers from a stream's. Set before `bind`.
    public func setAuthenticationDomain(_ domain: String) throws(ZMQError) {
        try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8), name: "ZMQ_ZAP_DOMAIN")
    }

    /// CURVE client role: the server's public key and this client's key pair (32 bytes each).
    public func setCurveClient(serverKey: [UInt8], publicKey: [UInt8], secretKey: [UInt8]) throws(ZMQError) {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: serverKey, name: "ZMQ_CURVE_SERVERKEY")
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: publicKey, name: "ZMQ_CURVE_PUBLICKEY")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: secretKey, name: "ZMQ_CURVE_SECRETKEY")
    }

    /// The file descriptor libzmq signals when the socket's events may have changed (edge-triggered), for loops that
    /// wait on ZeroMQ sockets and plain descriptors together.
    public var signalingDescriptor: Int32 {
        get throws(ZMQError) { try intOption(ZMQ_FD, name: "ZMQ_FD") }
    }

    // MARK: Subscriptions

    /// SUB: receive every message whose first frame begins with `prefix` (empty: everything).
    public func subscribe(_ prefix: String) throws(ZMQError) {
        try setOption(ZMQ_SUBSCRIBE, bytes: Array(prefix.utf8), name: "ZMQ_SUBSCRIBE \(prefix)")
    }

    public func unsubscribe(_ prefix: String) throws(ZMQError) {
        try setOption(ZMQ_UNSUBSCRIBE, bytes: Array(prefix.utf8), name: "ZMQ_UNSUBSCRIBE \(prefix)")
    }

    // MARK: Sending

    /// Sends one frame. Returns false when `dontWait` is set and the message could not be queued now (EAGAIN);
    /// a PUB socket never blocks, it drops past its high-water mark.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        var flags: Int32 = 0
        if more { flags |= ZMQ_SNDMORE }
        if dontWait { flags |= ZMQ_DONTWAIT }
        let socket = try raw
        while true {
            if zmq_send(socket, bytes.baseAddress, bytes.count, flags) >= 0 { return true }
            let error = ZMQError.last("send")
            if error.code == EINTR { continue }
            if error.isWouldBlock { return false }
            throw error
        }
    }

    @discardableResult
    public func send(_ bytes: [UInt8], more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(ZMQError) -> Bool in try send(buffer, more: more, dontWait: dontWait) }
        }.get()
    }

    @discardableResult
    public func send(_ text: String, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        var text = text
        return try text.withUTF8 { buffer in
            Result { () throws(ZMQError) -> Bool in
                try send(UnsafeRawBufferPointer(buffer), more: more, dontWait: dontWait)
            }
        }.get()
    }

    /// Sends the frame last received into `message` on, without copying it (libzmq takes its buffer over; the message
    /// is empty afterwards): how a relay forwards.
    @discardableResult
    public func send(_ message: ZMQMessage, more: Bool = false, dontWait: Bool = false) throws(ZMQError) -> Bool {
        var flags: Int32 = 0
        if more { flags |= ZMQ_SNDMORE }
        if dontWait { flags |= ZMQ_DONTWAIT }
        let socket = try raw
        while true {
            if zmq_msg_send(message.storage, socket, flags) >= 0 { return true }
            let error = ZMQError.last("send")
            if error.code == EINTR { continue }
            if error.isWouldBlock { return false }
            throw error
        }
    }

    /// Sends every frame as one multipart message.
    public func send(frames: [[UInt8]]) throws(ZMQError) {
        for (index, frame) in frames.enumerated() {
            try send(frame, more: index < frames.count - 1)
        }
    }

    // MARK: Receiving

    /// Receives the next frame into `message` without copying it. Returns false when `dontWait` is set and nothing
    /// is waiting, or a receive timeout passed.
    public func receive(into message: ZMQMessage, dontWait: Bool = false) throws(ZMQError) -> Bool {
        let socket = try raw
        while true {
            if zmq_msg_recv(message.storage, socket, dontWait ? ZMQ_DONTWAIT : 0) >= 0 { return true }
            let error = ZMQError.last("receive")
            if error.code == EINTR { continue }
            if error.isWouldBlock { return false }
            throw error
        }
    }

    /// Receives a whole multipart message as copied frames (for the control plane and tests). Nil when nothing waits.
    public func receiveFrames(dontWait: Bool = false) throws(ZMQError) -> [[UInt8]]? {
        let message = ZMQMessage()
        guard try receive(into: message, dontWait: dontWait) else { return nil }
        var frames = [message.bytes]
        while message.hasMore {
            _ = try receive(into: message)
            frames.append(message.bytes)
        }
        return frames
    }
}
