import MarketData
import NIOCore

/// Makes each live tick the update edged sends: its JSON written once and framed once, shared by every client that
/// watches the symbol. The frames live in a ring of buffers, each reused when its turn comes round and nothing holds
/// it any more (its clients have written it), so a steady stream allocates nothing per tick; one still held then
/// (by a slow client's queue) is left to its holders and the ring takes a new one. On the upstream thread only.
public struct UpdateFramer {
    private var json: [UInt8] = []
    private var ring: [ByteBuffer]
    private var position = 0
    /// Stands in a ring slot while its buffer is out being filled, so that the buffer is uniquely held then.
    private let placeholder = ByteBuffer()

    /// `ringSize` frames in use at once before a buffer is reused: more than a batch from plantd is long.
    public init(ringSize: Int = 4_096) {
        json.reserveCapacity(512)
        ring = Array(repeating: placeholder, count: ringSize)
    }

    /// The update of `tick`: its JSON (DESIGN section 8) as one text frame.
    public mutating func update(for tick: Tick) -> EdgeUpdate {
        EdgeJSON.write(tick, into: &json)
        var frame = ring[position]
        ring[position] = placeholder
        let update = json.withUnsafeBytes {
            EdgeUpdate(symbol: tick.symbol, json: $0, framingInto: &frame, droppable: tick.type != .status,
                type: tick.type, symbolSequence: tick.symbolSequence)
        }
        ring[position] = frame
        position = position + 1 == ring.count ? 0 : position + 1
        return update
    }
}

/// The upstream thread's work per live tick: plantd's bytes read into a Tick, made the update clients get
/// (`UpdateFramer`), and kept as the symbol's last value or held while its snapshot is awaited (the snapshot cache).
/// Allocates nothing per tick once its buffers exist (Benchmarks/EdgeBenchmarks holds it to that).
public struct LiveTicks {
    private var tick = Tick(symbol: "", type: .trade, venue: "")
    private var framer = UpdateFramer()
    var cache = EdgeSnapshotCache()

    public init() {}

    /// When plantd sent the tick `take` read last (ns since the epoch; 0 when unknown).
    public var lastPlantTransmitNs: UInt64 { tick.plantTransmitNs }

    /// The session of the plantd whose heartbeats come (`plant_session`; 0 before the first), how many came
    /// (plantd's own messages, not counted as ticks in), and how many times the session changed (plant restarts).
    private(set) var plantSession: UInt64 = 0
    private(set) var heartbeats: UInt64 = 0
    private(set) var plantRestarts: UInt64 = 0

    /// The update to pass on to the clients of `bytes` (a Tick as plantd publishes it); nil for one not readable, one
    /// of plantd's own (`#HB`, `#Q|...`), or one held while its symbol's snapshot or repair is awaited. A heartbeat
    /// of a new plant session makes every symbol due for a repair (`cache.repairsDue`).
    public mutating func take(_ bytes: UnsafeRawBufferPointer) -> EdgeUpdate? {
        guard (try? TickWire.decode(bytes, into: &tick)) != nil else { return nil }
        if tick.symbol.hasPrefix("#") {
            guard tick.symbol == Topic.heartbeat else { return nil }
            heartbeats &+= 1
            if tick.plantSession != 0 && tick.plantSession != plantSession {
                if plantSession != 0 {
                    plantRestarts &+= 1
                    cache.plantRestarted()
                }
                plantSession = tick.plantSession
            }
            return nil
        }
        let update = framer.update(for: tick)
        return cache.take(tick, text: update.text) ? update : nil
    }

    /// Keeps the last values of `symbols` as if clients watched them (benchmarks; edged's clients do it by
    /// subscribing).
    public mutating func keepLastValues(of symbols: [String]) {
        for symbol in symbols { cache.keepLastValues(of: symbol) }
    }
}
