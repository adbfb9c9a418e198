import Foundation
import Logging
import MarketData
import NIOCore
import Synchronization
import ZeroMQ

/// edged's ZeroMQ side, on its own thread: a SUB to plantd subscribed only to the symbols clients watch, turning each
/// tick into its JSON text once and handing batches to the event loops. Also serves edged's control endpoint.
final class UpstreamSubscriber: Sendable {
    let configuration: EdgeConfiguration
    let hub: EdgeHub
    let context: ZMQContext
    let logger: Logger

    init(configuration: EdgeConfiguration, hub: EdgeHub, context: ZMQContext, logger: Logger) {
        self.configuration = configuration
        self.hub = hub
        self.context = context
        self.logger = logger
    }

    var controlEndpoint: String? { hub.upstreamThread.boundEndpoints["control"] }

    func start() throws {
        _ = try hub.upstreamThread.startLoop { [self] _ in try UpstreamLoop(subscriber: self) }
    }
}

/// The upstream thread's sockets and loop.
private final class UpstreamLoop: SocketLoop {
    let subscriber: UpstreamSubscriber
    let socket: ZMQSocket
    let control: ControlResponder
    let boundEndpoints: [String: String]

    init(subscriber: UpstreamSubscriber) throws {
        self.subscriber = subscriber
        socket = try ZMQSocket(subscriber.context, type: .subscribe)
        try socket.setReceiveHighWaterMark(subscriber.configuration.receiveHighWaterMark)
        try socket.connect(subscriber.configuration.upstream)
        control = try ControlResponder(context: subscriber.context, endpoint: subscriber.configuration.controlEndpoint)
        boundEndpoints = ["control": try control.socket.lastEndpoint]
    }

    func run(_ thread: SocketThread) {
        let hub = subscriber.hub
        let configuration = subscriber.configuration
        let logger = subscriber.logger
        let poller = ZMQPoller()
        let wakeupIndex = poller.add(descriptor: thread.wakeup.descriptor)
        guard let socketIndex = try? poller.add(socket), let controlIndex = try? poller.add(control.socket) else {
            return
        }
        let topicMessage = ZMQMessage()
        let payloadMessage = ZMQMessage()
        var json: [UInt8] = []
        json.reserveCapacity(512)
        let allocator = ByteBufferAllocator()
        var batch: [EdgeUpdate] = []
        var received: UInt64 = 0
        var malformed: UInt64 = 0
        var rateIn = RateMeter()
        let started = MonotonicClock.nowNanoseconds()
        while !thread.isStopping {
            do {
                try poller.poll(timeoutMilliseconds: 1000)
            } catch {
                if !error.isContextTerminated { logger.error("poll failed: \(error)") }
                break
            }
            if poller.isReadable(wakeupIndex) {
                thread.wakeup.drain()
                for command in hub.takeCommands() {
                    switch command {
                    case let .subscribe(symbol): try? socket.subscribe(Topic.allTypes(of: symbol))
                    case let .unsubscribe(symbol): try? socket.unsubscribe(Topic.allTypes(of: symbol))
                    }
                }
            }
            if poller.isReadable(socketIndex) {
                // A bounded batch per cycle, so commands and control requests are never starved.
                for _ in 0..<4096 {
                    guard (try? socket.receive(into: topicMessage, dontWait: true)) == true else { break }
                    guard topicMessage.hasMore, (try? socket.receive(into: payloadMessage)) == true else {
                        malformed += 1
                        continue
                    }
                    received += 1
                    guard let tick = payloadMessage.withUnsafeBytes({ try? TickDecoder.decode($0) }),
                        !tick.symbol.hasPrefix("#")
                    else { continue }
                    EdgeJSON.write(tick, into: &json)
                    var buffer = allocator.buffer(capacity: json.count)
                    buffer.writeBytes(json)
                    batch.append(EdgeUpdate(symbol: tick.symbol, text: buffer))
                }
                hub.dispatch(batch)
                batch.removeAll(keepingCapacity: true)
            }
            if poller.isReadable(controlIndex) {
                rateIn.sample(total: received)
                try? control.serveWaiting { body in
                    ControlCodec.respond(to: body) { request in
                        switch request.cmd {
                        case "status":
                            return DaemonStatus(
                                daemon: "edged", name: configuration.name, pid: getpid(),
                                uptimeSeconds: Double(MonotonicClock.nowNanoseconds() - started) / 1e9,
                                messagesIn: received, messagesOut: 0, rateIn: rateIn.perSecond, rateOut: 0, drops: 0,
                                clients: hub.connectedClients.load(ordering: .relaxed),
                                counters: [
                                    "symbols_watched": UInt64(hub.watched.count), "malformed": malformed,
                                    "client_messages": hub.clientMessages.load(ordering: .relaxed),
                                    "bad_client_messages": hub.badClientMessages.load(ordering: .relaxed),
                                    "refused_tokens": hub.refusedTokens.load(ordering: .relaxed),
                                    "refused_connections": hub.refusedConnections.load(ordering: .relaxed),
                                    "rate_limited_messages": hub.rateLimitedMessages.load(ordering: .relaxed),
                                ])
                        case "subs":
                            return EdgeSubscriptionsReply(symbols: hub.watched)
                        default:
                            return nil
                        }
                    }
                }
            }
        }
        socket.close()
        control.socket.close()
    }
}

/// The reply to `subs` on edged: each watched symbol and how many clients watch it.
public struct EdgeSubscriptionsReply: Codable, Sendable, Equatable {
    public var symbols: [String: Int]
}
