import CTickProto

/// Why bytes are not a Tick.
public struct TickDecodeError: Error, Equatable, CustomStringConvertible {
    public let byteCount: Int
    public let reason: String
    public var description: String { "not a protobuf Tick (\(byteCount) bytes): \(reason)" }
}

/// Encodes ticks into a buffer it owns and reuses, so encoding allocates nothing per tick. One encoder per thread:
/// the bytes it returns stay valid until its next `encode`.
///
/// `encode` writes the protobuf wire format itself (`TickWireWriter`), the same bytes protobuf-c packs (fields in
/// number order, zero values left out; tests hold it to protobuf-c byte for byte): protobuf-c's generic packer walks
/// a descriptor per field and took 255 ns a tick. `encodeWithProtobufC` stays as the reference.
public final class TickEncoder {
    private var scratch: UnsafeMutableRawBufferPointer

    public init(initialCapacity: Int = 1024) {
        scratch = .allocate(byteCount: initialCapacity, alignment: 8)
    }

    deinit { scratch.deallocate() }

    /// The encoded tick, valid until the next call.
    public func encode(_ tick: Tick) -> UnsafeRawBufferPointer {
        let bound = Self.sizeBound(of: tick)
        if bound > scratch.count {
            scratch.deallocate()
            scratch = .allocate(byteCount: max(bound, scratch.count * 2), alignment: 8)
        }
        var writer = TickWireWriter(into: scratch)
        writer.write(tick)
        return UnsafeRawBufferPointer(rebasing: scratch[..<writer.offset])
    }

    /// The same tick packed by protobuf-c (the reference the tests compare `encode` with), valid until the next call.
    public func encodeWithProtobufC(_ tick: Tick) -> UnsafeRawBufferPointer {
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
    public func encodeWithProtobufCToArray(_ tick: Tick) -> [UInt8] { Array(encodeWithProtobufC(tick)) }

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

/// Writes a Tick in protobuf's wire format, fields in number order and zero values left out as proto3 does, into a
/// buffer the caller has made at least `TickEncoder.sizeBound` long.
struct TickWireWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var offset = 0

    init(into buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        buffer[offset] = value
        offset += 1
    }

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            byte(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        byte(UInt8(value))
    }

    /// A field's key: its number and wire type (0 varint, 1 fixed64, 2 length-delimited).
    @inline(__always)
    mutating func key(_ field: UInt64, _ wireType: UInt64) { varint(field << 3 | wireType) }

    @inline(__always)
    mutating func unsigned(_ field: UInt64, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, 0)
        varint(value)
    }

    @inline(__always)
    mutating func signed(_ field: UInt64, _ value: Int64) {
        guard value != 0 else { return }
        key(field, 0)
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    @inline(__always)
    mutating func fixed(_ field: UInt64, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, 1)
        buffer.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
        offset += 8
    }

    @inline(__always)
    mutating func string(_ field: UInt64, _ value: String) {
        var value = value
        value.withUTF8 { bytes in
            guard !bytes.isEmpty else { return }
            key(field, 2)
            varint(UInt64(bytes.count))
            UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + bytes.count)])
                .copyMemory(from: UnsafeRawBufferPointer(bytes))
            offset += bytes.count
        }
    }

    /// Each level as an embedded `Level` message (never packed: messages are not).
    mutating func levels(_ field: UInt64, _ levels: [BookLevel]) {
        for level in levels {
            key(field, 2)
            // The level's length first: at most 10 + 10 + 5 bytes of values and 3 keys, so one byte of length.
            let lengthAt = offset
            offset += 1
            signed(1, level.price.fixedPoint)
            unsigned(2, level.size)
            unsigned(3, UInt64(level.orders))
            buffer[lengthAt] = UInt8(offset - lengthAt - 1)
        }
    }

    mutating func write(_ tick: Tick) {
        string(1, tick.symbol)
        unsigned(2, UInt64(tick.type.rawValue))
        string(3, tick.venue)
        fixed(4, tick.exchangeTimestampNs)
        fixed(5, tick.feedReceiveNs)
        fixed(6, tick.feedTransmitNs)
        fixed(7, tick.plantReceiveNs)
        fixed(8, tick.plantTransmitNs)
        unsigned(9, tick.venueSequence)
        unsigned(10, tick.streamSequence)
        unsigned(11, tick.symbolSequence)
        signed(12, tick.price.fixedPoint)
        unsigned(13, tick.size)
        signed(14, tick.bidPrice.fixedPoint)
        signed(15, tick.askPrice.fixedPoint)
        unsigned(16, tick.tradeID)
        unsigned(17, tick.bidSize)
        unsigned(18, tick.askSize)
        if !tick.bids.isEmpty { levels(19, tick.bids) }
        if !tick.asks.isEmpty { levels(20, tick.asks) }
        unsigned(21, UInt64(tick.state.rawValue))
        unsigned(22, UInt64(tick.quality.rawValue))
        string(23, tick.reason)
        signed(24, tick.open.fixedPoint)
        signed(25, tick.high.fixedPoint)
        signed(26, tick.low.fixedPoint)
        signed(27, tick.close.fixedPoint)
        unsigned(28, tick.volume)
        fixed(29, tick.barStartNs)
        unsigned(30, UInt64(tick.barIntervalSeconds))
        fixed(31, tick.plantSession)
    }
}
