import CTickProto

/// Why bytes are not a Tick.
public struct TickDecodeError: Error, Equatable, CustomStringConvertible {
    public let byteCount: Int
    public let reason: String
    public var description: String { "not a protobuf Tick (\(byteCount) bytes): \(reason)" }
}

/// Encodes ticks with protobuf-c into a buffer it owns and reuses, so encoding allocates nothing per tick.
/// One encoder per thread: the bytes it returns stay valid until its next `encode`.
public final class TickEncoder {
    private var scratch: UnsafeMutableRawBufferPointer

    public init(initialCapacity: Int = 1024) {
        scratch = .allocate(byteCount: initialCapacity, alignment: 8)
    }

    deinit { scratch.deallocate() }

    /// The encoded tick, valid until the next call.
    public func encode(_ tick: Tick) -> UnsafeRawBufferPointer {
        tick.symbol.withCString { symbol in
            tick.venue.withCString { venue in
                tick.reason.withCString { reason in
                    withLevels(tick.bids) { bids, bidCount in
                        withLevels(tick.asks) { asks, askCount in
                            var message = Tickplant__Tick()
                            tickplant__tick__init(&message)
                            message.symbol = UnsafeMutablePointer(mutating: symbol)
                            message.type = Tickplant__TickType(rawValue: UInt32(tick.type.rawValue))
                            message.venue = UnsafeMutablePointer(mutating: venue)
                            message.exchange_ts_ns = tick.exchangeTimestampNs
                            message.feed_rx_ns = tick.feedReceiveNs
                            message.feed_tx_ns = tick.feedTransmitNs
                            message.plant_rx_ns = tick.plantReceiveNs
                            message.plant_tx_ns = tick.plantTransmitNs
                            message.venue_seq = tick.venueSequence
                            message.stream_seq = tick.streamSequence
                            message.symbol_seq = tick.symbolSequence
                            message.price = tick.price.fixedPoint
                            message.size = tick.size
                            message.trade_id = tick.tradeID
                            message.bid_price = tick.bidPrice.fixedPoint
                            message.ask_price = tick.askPrice.fixedPoint
                            message.bid_size = tick.bidSize
                            message.ask_size = tick.askSize
                            message.n_bids = bidCount
                            message.bids = bids
                            message.n_asks = askCount
                            message.asks = asks
                            message.state = Tickplant__TradingState(rawValue: UInt32(tick.state.rawValue))
                            message.quality = Tickplant__Quality(rawValue: UInt32(tick.quality.rawValue))
                            message.reason = UnsafeMutablePointer(mutating: reason)
                            message.open = tick.open.fixedPoint
                            message.high = tick.high.fixedPoint
                            message.low = tick.low.fixedPoint
                            message.close = tick.close.fixedPoint
                            message.volume = tick.volume
                            message.bar_start_ns = tick.barStartNs
                            message.bar_interval_s = tick.barIntervalSeconds
                            message.plant_session = tick.plantSession
                            // Sizing a message walks every field as packing does, so it is skipped when the scratch
                            // buffer surely holds the tick: that halves the cost of encoding.
                            if TickEncoder.sizeBound(of: tick) > scratch.count {
                                let size = tickplant__tick__get_packed_size(&message)
                                if size > scratch.count {
                                    scratch.deallocate()
                                    scratch = .allocate(byteCount: max(size, scratch.count * 2), alignment: 8)
                                }
                            }
                            let written = tickplant__tick__pack(
                                &message, scratch.baseAddress!.assumingMemoryBound(to: UInt8.self))
                            return UnsafeRawBufferPointer(start: scratch.baseAddress, count: written)
                        }
                    }
                }
            }
        }
    }

    /// An upper bound of a tick's encoded size: 12 bytes per scalar field (a 2-byte tag and a 10-byte varint at most),
    /// the strings with 5 bytes of tag and length each, and 32 bytes per book level (tag, length, three fields).
    static func sizeBound(of tick: Tick) -> Int {
        28 * 12 + 3 * 5 + tick.symbol.utf8.count + tick.venue.utf8.count + tick.reason.utf8.count
            + 32 * (tick.bids.count + tick.asks.count)
    }

    /// The encoded tick as an array (copies; for the control plane and tests).
    public func encodeToArray(_ tick: Tick) -> [UInt8] { Array(encode(tick)) }

    /// Lays book levels out as protobuf-c wants them (an array of pointers to messages) on the stack.
    private func withLevels<Result>(
        _ levels: [BookLevel],
        _ body: (UnsafeMutablePointer<UnsafeMutablePointer<Tickplant__Level>?>?, Int) -> Result
    ) -> Result {
        guard !levels.isEmpty else { return body(nil, 0) }
        return withUnsafeTemporaryAllocation(of: Tickplant__Level.self, capacity: levels.count) { messages in
            withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Tickplant__Level>?.self, capacity: levels.count) {
                pointers in
                for (index, level) in levels.enumerated() {
                    var message = Tickplant__Level()
                    tickplant__level__init(&message)
                    message.price = level.price.fixedPoint
                    message.size = level.size
                    message.orders = level.orders
                    (messages.baseAddress! + index).initialize(to: message)
                    pointers[index] = messages.baseAddress! + index
                }
                return body(pointers.baseAddress, levels.count)
            }
        }
    }
}

/// Decodes protobuf ticks: `TickWire` on every path, protobuf-c's unpack kept as the reference the tests compare with.
public enum TickDecoder {
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(TickDecodeError) -> Tick {
        var tick = Tick(symbol: "", type: .trade, venue: "")
        try TickWire.decode(bytes, into: &tick)
        return tick
    }

    /// protobuf-c's reading of the same bytes (allocates; for tests and comparisons).
    public static func decodeWithProtobufC(_ bytes: UnsafeRawBufferPointer) throws(TickDecodeError) -> Tick {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), !bytes.isEmpty else {
            throw TickDecodeError(byteCount: 0, reason: "empty frame")
        }
        guard let message = tickplant__tick__unpack(nil, bytes.count, base)
        else {
            throw TickDecodeError(byteCount: bytes.count, reason: "protobuf-c could not unpack it")
        }
        defer { tickplant__tick__free_unpacked(message, nil) }
        let decoded = message.pointee
        guard decoded.type.rawValue != 0, let type = TickType(rawValue: UInt8(clamping: decoded.type.rawValue)) else {
            throw TickDecodeError(byteCount: bytes.count, reason: "unknown tick type \(decoded.type.rawValue)")
        }
        var tick = Tick(symbol: string(decoded.symbol), type: type, venue: string(decoded.venue))
        tick.exchangeTimestampNs = decoded.exchange_ts_ns
        tick.feedReceiveNs = decoded.feed_rx_ns
        tick.feedTransmitNs = decoded.feed_tx_ns
        tick.plantReceiveNs = decoded.plant_rx_ns
        tick.plantTransmitNs = decoded.plant_tx_ns
        tick.venueSequence = decoded.venue_seq
        tick.streamSequence = decoded.stream_seq
        tick.symbolSequence = decoded.symbol_seq
        tick.price = Price(fixedPoint: decoded.price)
        tick.size = decoded.size
        tick.tradeID = decoded.trade_id
        tick.bidPrice = Price(fixedPoint: decoded.bid_price)
        tick.askPrice = Price(fixedPoint: decoded.ask_price)
        tick.bidSize = decoded.bid_size
        tick.askSize = decoded.ask_size
        tick.bids = levels(decoded.bids, decoded.n_bids)
        tick.asks = levels(decoded.asks, decoded.n_asks)
        tick.state = TradingState(rawValue: UInt8(clamping: decoded.state.rawValue)) ?? .unspecified
        tick.quality = DataQuality(rawValue: UInt8(clamping: decoded.quality.rawValue)) ?? .unspecified
        tick.reason = string(decoded.reason)
        tick.open = Price(fixedPoint: decoded.open)
        tick.high = Price(fixedPoint: decoded.high)
        tick.low = Price(fixedPoint: decoded.low)
        tick.close = Price(fixedPoint: decoded.close)
        tick.volume = decoded.volume
        tick.barStartNs = decoded.bar_start_ns
        tick.barIntervalSeconds = decoded.bar_interval_s
        tick.plantSession = decoded.plant_session
        return tick
    }

    public static func decode(_ bytes: [UInt8]) throws(TickDecodeError) -> Tick {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(TickDecodeError) -> Tick in try decode(buffer) }
        }.get()
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    private static func levels(
        _ pointer: UnsafeMutablePointer<UnsafeMutablePointer<Tickplant__Level>?>?, _ count: Int
    ) -> [BookLevel] {
        guard let pointer, count > 0 else { return [] }
        return (0..<count).compactMap { index in
            guard let level = pointer[index]?.pointee else { return nil }
            return BookLevel(price: Price(fixedPoint: level.price), size: level.size, orders: level.orders)
        }
    }
}
