import DaemonMetrics
import Foundation
import Logging
import MarketData
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import ZeroMQ

/// edged: the WebSocket edge. HTTP on one port: `GET /prices` upgrades to WebSocket; `/healthz`, `/metrics` and the
/// web directory's files answer plain HTTP.
/// Start it in-process with `start()`; `stop()` closes the listener, the clients and the upstream thread.
public final class EdgeServer: Sendable {
    public let configuration: EdgeConfiguration
    private let group: MultiThreadedEventLoopGroup
    private let hub: EdgeHub
    private let upstream: UpstreamSubscriber
    private let logger: Logger
    private let listener = Mutex<ConnectionListener?>(nil)
    private let heartbeats = Mutex<[RepeatedTask]>([])

    public init(configuration: EdgeConfiguration, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoops)
        let admission = ConnectionAdmission(
            limits: .init(pendingHandshakes: configuration.maxPendingHandshakes,
                perAddress: configuration.maxConnectionsPerAddress),
            origins: OriginPolicy(allowed: Set(configuration.allowedOrigins.map { $0.lowercased() })), logger: logger)
        hub = EdgeHub(eventLoops: Array(group.makeIterator()), upstreamThread: SocketThread(name: "edged-upstream"),
            canReplay: configuration.snapshotEndpoint != nil, tlsFailures: TLSFailures(logger: logger),
            admission: admission)
        upstream = UpstreamSubscriber(configuration: configuration, hub: hub, context: context, logger: logger)
    }

    /// The port listened on (the one the kernel chose when configured with port 0).
    public var port: Int? { listener.withLock { $0?.port } }
    public var controlEndpoint: String? { upstream.controlEndpoint }

    public func start() async throws {
        try upstream.start()
        let hub = self.hub
        let maxFrameBytes = configuration.maxFrameBytes
        let limits = SessionLimits(maxSymbols: configuration.maxSymbolsPerClient,
            maxConnections: configuration.maxConnections, maxMessagesPerSecond: configuration.maxMessagesPerSecond,
            queue: ClientQueue.Limits(softMessages: configuration.queueSoft, hardMessages: configuration.queueHard,
                hardBytes: configuration.queueHardBytes),
            slowGraceNs: configuration.slowGrace.nanoseconds,
            slowLinger: .nanoseconds(Int64(configuration.slowLinger.nanoseconds)),
            idleTimeoutNs: configuration.idleTimeout.nanoseconds, resumeMaxUpdates: configuration.resumeMaxUpdates)
        let handshakeTimeout = TimeAmount.nanoseconds(Int64(configuration.handshakeTimeout.nanoseconds))
        raiseOpenFileLimit()
        let auth = configuration.auth
        let tls = configuration.tls
        let echo = configuration.echo
        let web = configuration.web
        let tlsFailures = hub.tlsFailures
        let sendBuffer = ChannelOptions.Types.SocketOption.Value(configuration.socketSendBuffer)
        // Each accepted connection: its pipeline, with its descriptor for the updates sent straight to the socket
        // (a plain connection; TLS writes through its handler).
        let initialize: @Sendable (any Channel, Int32?, AdmittedConnection) -> EventLoopFuture<Void> = {
            channel, descriptor, admitted in
            let upgrader = NIOWebSocketServerUpgrader(
                maxFrameSize: maxFrameBytes,
                shouldUpgrade: { channel, head in
                    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                    // Draining: no new clients (the HTTP handler answers 503); an Origin not allowed: 403 there too.
                    let route = path == "/prices" || (path == "/echo" && echo)
                    let accept = route && !hub.draining.load(ordering: .relaxed)
                        && hub.admission.origins.allows(origin: head.headers.first(name: "Origin"),
                            host: head.headers.first(name: "Host"))
                    return channel.eventLoop.makeSucceededFuture(accept ? HTTPHeaders() : nil)
                },
                upgradePipelineHandler: { channel, head in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            WebSocketProtocolLayer(maxMessageBytes: maxFrameBytes))
                        if head.uri.split(separator: "?", maxSplits: 1).first == "/echo" {
                            return try channel.pipeline.syncOperations.addHandler(EchoSession())
                        }
                        // Whole frames of updates go in below NIO's frame encoder (see RawBytesWriter).
                        let rawWriter = RawBytesWriter(directDescriptor: tls == nil ? descriptor : nil, hub: hub)
                        let encoder = try channel.pipeline.syncOperations.handler(type: WebSocketFrameEncoder.self)
                        try channel.pipeline.syncOperations.addHandler(rawWriter, position: .before(encoder))
                        let session = WebSocketSession(
                            hub: hub, registry: hub.registry(for: channel.eventLoop), limits: limits, auth: auth,
                            urlToken: Self.queryValue("token", in: head.uri), rawWriter: rawWriter)
                        try channel.pipeline.syncOperations.addHandler(session)
                    }
                })
            return channel.eventLoop.makeCompletedFuture {
                // A client whose socket takes no more is not read either: what it asks cannot pile up answers in
                // edged (the session closes one whose answers still outgrow its room, see WebSocketSession).
                try channel.pipeline.syncOperations.addHandler(BackPressureHandler())
                if let tls {
                    try channel.pipeline.syncOperations.addHandler(
                        TLSServerHandler(context: tls, failures: tlsFailures))
                }
                let http = HTTPEndpoints(hub: hub, handshakeTimeout: handshakeTimeout, web: web, admitted: admitted)
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                    withServerUpgrade: (
                        upgraders: [upgrader],
                        completionHandler: { context in
                            context.pipeline.syncOperations.removeHandler(name: "edge-http", promise: nil)
                        }
                    ))
                try channel.pipeline.syncOperations.addHandler(http, name: "edge-http")
            }
        }
        let listener = try ConnectionListener(host: configuration.host, port: configuration.port, backlog: 1024,
            logger: logger)
        let group = self.group
        let logger = self.logger
        let admission = hub.admission
        listener.start { descriptor, address in
            let admitted: AdmittedConnection
            switch admission.admit(address) {
            case let .success(connection): admitted = connection
            case let .failure(refusal): return ConnectionAdmission.refuse(descriptor, refusal)
            }
            ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                // A client's socket "takes no more" above 64 KiB waiting in NIO: its updates queue (bounded) from
                // there.
                .channelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 64 * 1024))
                .channelOption(.socketOption(.so_sndbuf), value: sendBuffer)
                .channelInitializer { channel in
                    channel.closeFuture.whenComplete { _ in admitted.closed() }
                    return initialize(channel, descriptor, admitted)
                }
                .withConnectedSocket(descriptor)
                .whenFailure { error in
                    admitted.closed()
                    logger.debug("a connection could not be set up", metadata: ["error": "\(error)"])
                }
        }
        self.listener.withLock { $0 = listener }
        let interval = TimeAmount.nanoseconds(Int64(configuration.heartbeatInterval.nanoseconds))
        let tasks = hub.registries.flatMap { registry in
            [
                registry.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                    registry.heartbeat(now: WallClock.nowNanoseconds())
                },
                // maxRate turns: a held update goes out within 10 ms of its turn.
                registry.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(10), delay: .milliseconds(10)) { _ in
                    registry.releaseRateHeld(nowNs: MonotonicClock.nowNanoseconds())
                },
            ]
        }
        heartbeats.withLock { $0 = tasks }
        logger.info("edged listening", metadata: ["address": "\(listener.address)", "port": "\(listener.port)",
            "scheme": "\(tls == nil ? "ws" : "wss")",
            "upstream": "\(configuration.upstream)", "control": "\(upstream.controlEndpoint ?? "?")"])
    }

    /// Raises this process's open-file soft limit to its hard limit (each client is a descriptor) and says so.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.info("open-file limit raised", metadata: ["from": "\(before)", "to": "\(limit.rlim_max)"])
        } else {
            logger.warning("could not raise the open-file limit", metadata: ["limit": "\(before)"])
        }
    }

    /// A query parameter of a request's URI (`/prices?token=...`), percent-decoded; nil when absent.
    static func queryValue(_ name: String, in uri: String) -> String? {
        guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2, parts[0] == name { return String(parts[1]).removingPercentEncoding ?? String(parts[1]) }
        }
        return nil
    }

    /// The drain (SIGTERM): no new clients and `/healthz` says draining; every client is told 1001 and the server
    /// waits for them to go, at most `drain_timeout`; then the listener, the upstream and the loops stop.
    public func stop() async {
        hub.draining.store(true, ordering: .relaxed)
        let clients = hub.connectedClients.load(ordering: .relaxed)
        if clients > 0 {
            logger.info("draining", metadata: ["clients": "\(clients)", "timeout": "\(configuration.drainTimeout)"])
            for registry in hub.registries { registry.eventLoop.execute { registry.drain() } }
            let deadline = MonotonicClock.nowNanoseconds() + configuration.drainTimeout.nanoseconds
            while hub.connectedClients.load(ordering: .relaxed) > 0 && MonotonicClock.nowNanoseconds() < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            logger.info("drained", metadata: ["clients_left": "\(hub.connectedClients.load(ordering: .relaxed))"])
        }
        for task in heartbeats.withLock({ $0 }) { task.cancel() }
        if let listener = listener.withLock({ $0 }) { await listener.stop() }
        hub.upstreamThread.stop()
        await hub.upstreamThread.finished()
        try? await group.shutdownGracefully()
    }
}

/// Plain HTTP: `/healthz` for load balancers, the web directory's files (the demo page at `/`, `/tickplant.js`);
/// an upgrade whose Origin is not allowed is 403; everything else that is not the WebSocket upgrade is 404 (`/metrics`
/// is served on its own listener, `[edge] metrics`). Removed when a connection upgrades; one that neither upgrades
/// nor asks anything within the handshake timeout is closed, so idle half-open connections cannot pile up. Its
/// removal ends the connection's handshake for `pending_handshakes`.
final class HTTPEndpoints: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let hub: EdgeHub
    private let handshakeTimeout: TimeAmount
    private let web: WebFiles?
    private let admitted: AdmittedConnection?
    private var deadline: Scheduled<Void>?

    init(hub: EdgeHub, handshakeTimeout: TimeAmount, web: WebFiles? = nil, admitted: AdmittedConnection? = nil) {
        self.hub = hub
        self.handshakeTimeout = handshakeTimeout
        self.web = web
        self.admitted = admitted
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) {
            channel.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        admitted?.handshakeEnded()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case let .head(head) = unwrapInboundIn(data) else { return }
        // Answered: no longer a handshake in progress (its connection closes once the answer is written).
        admitted?.handshakeEnded()
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let draining = hub.draining.load(ordering: .relaxed)
        let upgrade = head.headers.first(name: "Upgrade")?.lowercased() == "websocket"
        let originRefusal = upgrade && !draining
            ? hub.admission.refusal(ofOriginIn: head, from: admitted?.address) : nil
        var contentType = path == "/healthz" ? "application/json" : "text/plain"
        var cacheControl: String?
        let (status, body): (HTTPResponseStatus, ByteBuffer)
        switch path {
        case "/healthz" where draining:
            (status, body) = (.serviceUnavailable, ByteBuffer(string: "{\"status\":\"draining\"}\n"))
        case "/healthz": (status, body) = (.ok, ByteBuffer(string: "{\"status\":\"ok\"}\n"))
        case "/prices" where draining:
            (status, body) = (.serviceUnavailable, ByteBuffer(string: "this edge is draining; connect to another\n"))
        case _ where originRefusal != nil:
            (status, body) = (.forbidden, ByteBuffer(string: originRefusal!))
        case "/prices":
            (status, body) = (.upgradeRequired, ByteBuffer(string: "connect with a WebSocket client to /prices\n"))
        default:
            if let file = web?.file(at: path), head.method == .GET || head.method == .HEAD {
                (status, body) = (.ok, file.bytes)
                contentType = file.contentType
                // A new release's page and client are taken at once, never a cached mix of old and new.
                cacheControl = "no-cache"
            } else {
                (status, body) = (.notFound, ByteBuffer(string: "not found\n"))
            }
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        if let cacheControl { headers.add(name: "Cache-Control", value: cacheControl) }
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
