import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import ZeroMQ

/// One event loop's fan-out without sockets, for the allocation benchmarks (Benchmarks/EdgeBenchmarks): `clients`
/// sessions watching one symbol, each with edged's own writing handlers (`WebSocketSession` over `RawBytesWriter`) on
/// an in-memory channel (NIO's EmbeddedChannel) where a socket would be. `deliver` is what a batch from plantd costs
/// the loop: every watcher's screening, its share of the batch as one buffer of whole frames, one flush per client.
///
/// Use it from one thread (the EmbeddedEventLoop's).
public final class FanOutHarness {
    private let loop = EmbeddedEventLoop()
    private let hub: EdgeHub
    private let registry: LoopRegistry
    private var channels: [EmbeddedChannel] = []

    public init(clients: Int, symbol: String) throws {
        hub = EdgeHub(eventLoops: [loop], upstreamThread: SocketThread(name: "harness"), canReplay: false,
            tlsFailures: TLSFailures(logger: Logger(label: "harness")),
            admission: ConnectionAdmission(limits: .init(), origins: OriginPolicy(), logger: Logger(label: "harness")))
        registry = hub.registry(for: loop)
        for _ in 0..<clients {
            let rawWriter = RawBytesWriter()
            let session = WebSocketSession(hub: hub, registry: registry, limits: SessionLimits(), rawWriter: rawWriter)
            let channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(rawWriter)
            try channel.pipeline.syncOperations.addHandler(session)
            // Subscribed, its snapshot come: every update is for it.
            registry.watch(symbol, by: session)
            channels.append(channel)
        }
    }

    /// Hands the loop one batch of updates, as the upstream thread does.
    public func deliver(_ batch: [EdgeUpdate]) { registry.deliver(batch) }

    /// Takes what every client was sent (the socket's side) and returns the bytes.
    @discardableResult
    public func drain() throws -> Int {
        var bytes = 0
        for channel in channels {
            while let written = try channel.readOutbound(as: ByteBuffer.self) { bytes += written.readableBytes }
        }
        return bytes
    }

    /// An update of `symbol` framed as the upstream thread frames it.
    public static func update(symbol: String, json: String) -> EdgeUpdate {
        var text = Array(json.utf8)
        return text.withUnsafeMutableBytes {
            EdgeUpdate(symbol: symbol, json: UnsafeRawBufferPointer($0), allocator: ByteBufferAllocator(),
                droppable: true, type: .trade, symbolSequence: 1)
        }
    }

    deinit {
        for channel in channels { _ = try? channel.finish() }
    }
}
