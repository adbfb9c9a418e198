import Dispatch
import Logging
import MarketData
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import ZeroMQ

/// Answers a scrape of `/metrics`: the daemon's `status`, asked of its own control endpoint off the event loop (the
/// request waits on ZeroMQ), in Prometheus's text format; 503 when the daemon does not answer. Shared by feedd's and
/// plantd's `MetricsServer` and by edged's own HTTP port.
public struct MetricsResponder: Sendable {
    let metrics = StatusMetrics()
    let context: ZMQContext
    let controlEndpoint: @Sendable () -> String?
    /// The daemon's own keys, for a control endpoint with `[curve] operator_key_files`.
    let controlCurve: CurveClientKeys?

    public init(context: ZMQContext, controlEndpoint: @escaping @Sendable () -> String?,
        controlCurve: CurveClientKeys? = nil)
    {
        self.context = context
        self.controlEndpoint = controlEndpoint
        self.controlCurve = controlCurve
    }

    /// Writes the response to `channel` (a whole HTTP response, then the connection is closed).
    public func respond(on channel: any Channel, version: HTTPVersion, headOnly: Bool) {
        let responder = self
        DispatchQueue.global().async {
            let status = responder.controlEndpoint().flatMap {
                ControlClient.status(context: responder.context, endpoint: $0, curve: responder.controlCurve)
            }
            let body = status.map { responder.metrics.exposition(of: $0) }
                ?? Array("the daemon did not answer its control endpoint\n".utf8)
            channel.eventLoop.execute {
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type",
                    value: status == nil ? "text/plain" : "text/plain; version=0.0.4; charset=utf-8")
                headers.add(name: "Content-Length", value: String(body.count))
                headers.add(name: "Connection", value: "close")
                let head = HTTPResponseHead(version: version, status: status == nil ? .serviceUnavailable : .ok,
                    headers: headers)
                channel.write(HTTPServerResponsePart.head(head), promise: nil)
                if !headOnly {
                    channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
                }
                channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

/// `/metrics` and `/healthz` over plain HTTP for a daemon that has no HTTP port of its own (feedd, plantd), on the
/// address of its `metrics` key (DESIGN: 9101 for feedd, 9201 for plantd).
public final class MetricsServer: Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = Mutex<(any Channel)?>(nil)
    private let responder: MetricsResponder

    public init(context: ZMQContext, controlEndpoint: @escaping @Sendable () -> String?,
        controlCurve: CurveClientKeys? = nil)
    {
        responder = MetricsResponder(context: context, controlEndpoint: controlEndpoint, controlCurve: controlCurve)
    }

    /// The port listened on (the kernel's choice for port 0).
    public var port: Int? { channel.withLock { $0?.localAddress?.port } }

    public func start(host: String, port: Int) async throws {
        let responder = self.responder
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(responder: responder))
                }
            }
            .bind(host: host, port: port).get()
        channel.withLock { $0 = bound }
    }

    public func stop() async {
        if let bound = channel.withLock({ $0 }) { try? await bound.close() }
        try? await group.shutdownGracefully()
    }
}

/// The routes of `MetricsServer`: `/metrics`, `/healthz`, 404 for the rest.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let responder: MetricsResponder

    init(responder: MetricsResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case let .head(head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        if path == "/metrics" && (head.method == .GET || head.method == .HEAD) {
            return responder.respond(on: context.channel, version: head.version, headOnly: head.method == .HEAD)
        }
        let (status, text): (HTTPResponseStatus, String) =
            path == "/healthz" ? (.ok, "{\"status\":\"ok\"}\n") : (.notFound, "not found: try /metrics\n")
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: path == "/healthz" ? "application/json" : "text/plain")
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
