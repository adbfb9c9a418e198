import Glibc

/// The protobuf wire format of Proto/tick.proto read and patched directly, for the per-tick paths.
///
/// protobuf-c's unpack allocates the message, its strings and its levels on every call and frees them after; this
/// reads the fields straight into a `Tick` (symbols and venues are short enough for Swift's inline strings, so a
/// tick without book levels allocates nothing). Tests hold it to protobuf-c byte for byte: protobuf-c stays the
/// reference. Unknown fields are skipped by their wire type, as protobuf requires.
public enum TickWire {
    /// Fields of Proto/tick.proto this reader knows.
    enum Field: UInt64 {
        case symbol = 1, type, venue, exchangeTs, feedRx, feedTx, plantRx, plantTx, venueSeq, streamSeq, symbolSeq
        case price, size, bidPrice, askPrice, tradeID, bidSize, askSize, bids, asks, state, quality, reason
        case open, high, low, close, volume, barStart, barInterval, plantSession
    }

    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var atEnd: Bool { offset >= bytes.count }

        @inline(__always)
        mutating func varint() throws(TickDecodeError) -> UInt64 {
            // Most keys and many values are one byte: read without the loop.
            if offset < bytes.count, bytes[offset] < 0x80 {
                defer { offset += 1 }
                return UInt64(bytes[offset])
            }
            return try longVarint()
        }

        /// A varint of more than one byte. `maxBytes` 5 for keys and lengths: protobuf-c reads those in at most 5
        /// bytes and refuses the message when one runs longer, even when its value is small (`80 80 80 80 80 00` is
        /// a 0), so this reader does too (the fuzz target `tick` found it taking a 6-byte length).
        mutating func longVarint(maxBytes: Int = 10) throws(TickDecodeError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            let start = offset
            while offset < bytes.count {
                let byte = bytes[offset]
                offset += 1
                if shift == 63 && byte > 1 { throw error("varint overflows 64 bits") }
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
                if offset - start == maxBytes { throw error("varint longer than \(maxBytes) bytes") }
            }
            throw error("truncated varint")
        }

        /// A key's or a length's varint: at most 5 bytes (`longVarint`), the common one byte read without the loop.
        @inline(__always)
        mutating func shortVarint() throws(TickDecodeError) -> UInt64 {
            if offset < bytes.count, bytes[offset] < 0x80 {
                defer { offset += 1 }
                return UInt64(bytes[offset])
            }
            return try longVarint(maxBytes: 5)
        }

        /// A field's key: its number (1 to 2^29 - 1, as protobuf allows) and wire type. Number 0 is not protobuf's:
        /// protobuf-c refuses such a message, so this reader does too (the fuzz target `tick` found it taking one).
        @inline(__always)
        mutating func key() throws(TickDecodeError) -> UInt64 {
            let key = try shortVarint()
            guard key >> 3 != 0, key >> 3 <= 536_870_911 else { throw error("field number \(key >> 3)") }
            return key
        }

        mutating func fixed64() throws(TickDecodeError) -> UInt64 {
            guard bytes.count - offset >= 8 else { throw error("truncated fixed64") }
            defer { offset += 8 }
            return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }

        mutating func lengthDelimited() throws(TickDecodeError) -> UnsafeRawBufferPointer {
            let length = try shortVarint()
            guard length <= UInt64(bytes.count - offset) else { throw error("length \(length) runs past the end") }
            defer { offset += Int(length) }
            return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(length))])
        }

        /// A string field's bytes. A zero byte is refused: a reader in C (protobuf-c's strings end at one) would see
        /// another symbol or venue than this one (the fuzz target `tick` found "\0\0DP" read as "" there).
        mutating func text() throws(TickDecodeError) -> UnsafeRawBufferPointer {
            let bytes = try lengthDelimited()
            // memchr, not the generic `contains`: this runs for the symbol and venue of every tick read.
            guard bytes.isEmpty || memchr(bytes.baseAddress!, 0, bytes.count) == nil else {
                throw error("a string field holds a zero byte")
            }
            return bytes
        }

        /// Skips a field of `wireType` this reader does not know.
        mutating func skip(wireType: UInt64) throws(TickDecodeError) {
            switch wireType {
            case 0: _ = try varint()
            case 1: _ = try fixed64()
            case 2: _ = try lengthDelimited()
            case 5:
                guard bytes.count - offset >= 4 else { throw error("truncated fixed32") }
                offset += 4
            default: throw error("wire type \(wireType) is not protobuf's")
            }
        }

        func error(_ reason: String) -> TickDecodeError { TickDecodeError(byteCount: bytes.count, reason: reason) }
    }

    /// Whether `string`'s UTF-8 is `bytes`: the lengths, then the bytes at once (the generic `elementsEqual` went
    /// byte by byte through the string's view: 3 % of plantd's time, once per tick for the venue).
    @inline(__always)
    static func utf8(of string: String, equals bytes: UnsafeRawBufferPointer) -> Bool {
        guard string.utf8.count == bytes.count else { return false }
        var string = string
        return string.withUTF8 { UnsafeRawBufferPointer($0).elementsEqual(bytes) }
    }

    @inline(__always)
    static func zigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

    /// Reads an encoded Tick into `tick`, every field reset first: the tick's arrays keep their capacity, and its
    /// venue string is kept when the new venue is the same (no new string for the common case). `knownSymbol` is the
    /// symbol when the caller already knows it from `leadingSymbol` (its string is taken instead of made).
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, into tick: inout Tick, knownSymbol: String? = nil
    ) throws(TickDecodeError) {
        guard !bytes.isEmpty else { throw TickDecodeError(byteCount: 0, reason: "empty frame") }
        let previousVenue = tick.venue
        tick.reset()
        var reader = Reader(bytes: bytes)
        var typeValue: UInt64 = 0
        while !reader.atEnd {
            let key = try reader.key()
            let wireType = key & 7
            guard let field = Field(rawValue: key >> 3) else {
                try reader.skip(wireType: wireType)
                continue
            }
            // A known field sent with another wire type: protobuf-c refuses the message, and so does this reader
            // (the fuzz target `tick` found it skipping such a field where protobuf-c did not).
            guard wireType == expectedWireType(key >> 3) else {
                throw reader.error("field \(key >> 3) with wire type \(wireType)")
            }
            switch field {
            case .symbol:
                let symbol = try reader.text()
                if let knownSymbol { tick.symbol = knownSymbol } else { tick.symbol = String(decoding: symbol, as: UTF8.self) }
            case .type: typeValue = try reader.varint()
            case .venue:
                let venue = try reader.text()
                tick.venue = utf8(of: previousVenue, equals: venue)
                    ? previousVenue : String(decoding: venue, as: UTF8.self)
            case .exchangeTs: tick.exchangeTimestampNs = try reader.fixed64()
            case .feedRx: tick.feedReceiveNs = try reader.fixed64()
            case .feedTx: tick.feedTransmitNs = try reader.fixed64()
            case .plantRx: tick.plantReceiveNs = try reader.fixed64()
            case .plantTx: tick.plantTransmitNs = try reader.fixed64()
            case .venueSeq: tick.venueSequence = try reader.varint()
            case .streamSeq: tick.streamSequence = try reader.varint()
            case .symbolSeq: tick.symbolSequence = try reader.varint()
            case .price: tick.price = Price(fixedPoint: zigzag(try reader.varint()))
            case .size: tick.size = try reader.varint()
            case .bidPrice: tick.bidPrice = Price(fixedPoint: zigzag(try reader.varint()))
            case .askPrice: tick.askPrice = Price(fixedPoint: zigzag(try reader.varint()))
            case .tradeID: tick.tradeID = try reader.varint()
            case .bidSize: tick.bidSize = try reader.varint()
            case .askSize: tick.askSize = try reader.varint()
            case .bids: tick.bids.append(try level(try reader.lengthDelimited()))
            case .asks: tick.asks.append(try level(try reader.lengthDelimited()))
            case .state: tick.state = enumValue(try reader.varint()).flatMap { TradingState(rawValue: $0) } ?? .unspecified
            case .quality: tick.quality = enumValue(try reader.varint()).flatMap { DataQuality(rawValue: $0) } ?? .unspecified
            case .reason: tick.reason = String(decoding: try reader.text(), as: UTF8.self)
            case .open: tick.open = Price(fixedPoint: zigzag(try reader.varint()))
            case .high: tick.high = Price(fixedPoint: zigzag(try reader.varint()))
            case .low: tick.low = Price(fixedPoint: zigzag(try reader.varint()))
            case .close: tick.close = Price(fixedPoint: zigzag(try reader.varint()))
            case .volume: tick.volume = try reader.varint()
            case .barStart: tick.barStartNs = try reader.fixed64()
            case .barInterval: tick.barIntervalSeconds = UInt32(truncatingIfNeeded: try reader.varint())
            case .plantSession: tick.plantSession = try reader.fixed64()
            }
        }
        guard typeValue != 0, let value = enumValue(typeValue), let type = TickType(rawValue: value) else {
            throw TickDecodeError(byteCount: bytes.count, reason: "unknown tick type \(typeValue)")
        }
        tick.type = type
    }

    /// An enum field's value as protobuf reads it: an int32, so a longer varint keeps its low 32 bits (as protobuf-c
    /// does); nil for a value no case can have. Truncating to 8 bits instead read quality 257 as OK (1), where
    /// protobuf-c reads an unknown quality (found by the fuzz target `tick`): a stale symbol shown as good.
    @inline(__always)
    static func enumValue(_ varint: UInt64) -> UInt8? {
        let value = UInt32(truncatingIfNeeded: varint)
        return value <= UInt32(UInt8.max) ? UInt8(value) : nil
    }

    /// The wire type each known field has in Proto/tick.proto (a field sent with another is refused).
    /// As bit masks by field number, so that checking a key is two shifts instead of a branch per case.
    @inline(__always)
    static func expectedWireType(_ number: UInt64) -> UInt64 {
        let lengthDelimited: UInt64 = 1 << 1 | 1 << 3 | 1 << 19 | 1 << 20 | 1 << 23
        let fixed64: UInt64 = 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 29 | 1 << 31
        guard number < 64 else { return 0 }
        return (lengthDelimited >> number & 1) << 1 | (fixed64 >> number & 1)
    }

    static func level(_ bytes: UnsafeRawBufferPointer) throws(TickDecodeError) -> BookLevel {
        var reader = Reader(bytes: bytes)
        var level = BookLevel(price: .zero, size: 0)
        while !reader.atEnd {
            let key = try reader.key()
            switch (key >> 3, key & 7) {
            case (1, 0): level.price = Price(fixedPoint: zigzag(try reader.varint()))
            case (2, 0): level.size = try reader.varint()
            case (3, 0): level.orders = UInt32(truncatingIfNeeded: try reader.varint())
            case (1...3, _): throw reader.error("book level field \(key >> 3) with wire type \(key & 7)")
            default: try reader.skip(wireType: key & 7)
            }
        }
        return level
    }

    /// The symbol's bytes when the encoding starts with it (as every encoder here writes it), without decoding the
    /// rest; nil otherwise.
    public static func leadingSymbol(_ payload: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard payload.count >= 2, payload[0] == 0x0A, payload[1] < 0x80, 2 + Int(payload[1]) <= payload.count else {
            return nil
        }
        return UnsafeRawBufferPointer(rebasing: payload[2 ..< 2 + Int(payload[1])])
    }

    /// A symbol of 1 to 8 bytes as one integer (its bytes, little-endian; no symbol holds a zero byte, so two
    /// symbols never share one): a key for `IntegerKeyTable`. nil for a longer or empty one.
    public static func packedSymbol(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard (1...8).contains(bytes.count) else { return nil }
        var key: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            guard byte != 0 else { return nil }
            key |= UInt64(byte) << (8 * UInt64(index))
        }
        return key
    }

    /// The symbol_seq of an encoded tick (0 when it has none), read without decoding the rest.
    public static func symbolSequence(of payload: UnsafeRawBufferPointer) throws(TickDecodeError) -> UInt64 {
        try varint(.symbolSeq, of: payload)
    }

    /// The stream_seq of an encoded tick (0 when it has none), read without decoding the rest.
    public static func streamSequence(of payload: UnsafeRawBufferPointer) throws(TickDecodeError) -> UInt64 {
        try varint(.streamSeq, of: payload)
    }

    private static func varint(_ field: Field, of payload: UnsafeRawBufferPointer) throws(TickDecodeError) -> UInt64 {
        var reader = Reader(bytes: payload)
        var value: UInt64 = 0
        while !reader.atEnd {
            let key = try reader.key()
            if key == field.rawValue << 3 {
                value = try reader.varint()
            } else {
                try reader.skip(wireType: key & 7)
            }
        }
        return value
    }

    // MARK: The plant's fields

    /// Copies an encoded tick into `output` without its plant fields (plant_rx_ns, plant_tx_ns, stream_seq,
    /// symbol_seq), then appends them with the given values: what plantd publishes for a tick it passes on
    /// unchanged, at the cost of a copy instead of a decode-and-encode. Protobuf readers take fields in any order.
    public static func replacingPlantFields(
        of payload: UnsafeRawBufferPointer, plantReceiveNs: UInt64, plantTransmitNs: UInt64, streamSequence: UInt64,
        symbolSequence: UInt64, volume: UInt64 = 0, into output: inout [UInt8]
    ) throws(TickDecodeError) {
        output.removeAll(keepingCapacity: true)
        output.append(contentsOf: repeatElement(0, count: maximumSplicedLength(payload.count)))
        let written = output.withUnsafeMutableBytes { destination in
            Result { () throws(TickDecodeError) -> Int in
                try replacePlantFields(of: payload, plantReceiveNs: plantReceiveNs, plantTransmitNs: plantTransmitNs,
                    streamSequence: streamSequence, symbolSequence: symbolSequence, volume: volume, into: destination)
            }
        }
        switch written {
        case let .success(count): output.removeLast(output.count - count)
        case let .failure(error):
            output.removeAll(keepingCapacity: true)
            throw error
        }
    }

    /// The most bytes `replacePlantFields` writes for a payload of `count` bytes: the payload and the five fields at
    /// their longest (a key byte and 8 bytes for each stamp, a key byte and a 10-byte varint for each sequence, two
    /// key bytes and a 10-byte varint for the volume).
    public static func maximumSplicedLength(_ count: Int) -> Int { count + 2 * 9 + 2 * 11 + 12 }

    /// `replacingPlantFields` into memory the caller holds (at least `maximumSplicedLength(payload.count)` bytes):
    /// returns how many bytes it wrote. No array is touched, so a publisher can lay the result straight into its
    /// outgoing batch.
    ///
    /// `volume` is the plant's consolidated day volume on a TRADE (0 leaves the field out): it replaces one that came
    /// in too.
    public static func replacePlantFields(
        of payload: UnsafeRawBufferPointer, plantReceiveNs: UInt64, plantTransmitNs: UInt64, streamSequence: UInt64,
        symbolSequence: UInt64, volume: UInt64 = 0, into destination: UnsafeMutableRawBufferPointer
    ) throws(TickDecodeError) -> Int {
        precondition(destination.count >= maximumSplicedLength(payload.count))
        var writer = Writer(base: destination.baseAddress!)
        var reader = Reader(bytes: payload)
        var copiedFrom = 0
        while !reader.atEnd {
            let fieldStart = reader.offset
            let key = try reader.key()
            try reader.skip(wireType: key & 7)
            switch key >> 3 {
            case Field.plantRx.rawValue, Field.plantTx.rawValue, Field.streamSeq.rawValue, Field.symbolSeq.rawValue,
                Field.volume.rawValue:
                writer.copy(UnsafeRawBufferPointer(rebasing: payload[copiedFrom..<fieldStart]))
                copiedFrom = reader.offset
            default:
                break
            }
        }
        writer.copy(UnsafeRawBufferPointer(rebasing: payload[copiedFrom...]))
        writer.fixed64Field(7, plantReceiveNs)
        writer.fixed64Field(8, plantTransmitNs)
        writer.varintField(10, streamSequence)
        writer.varintField(11, symbolSequence)
        writer.varintField(28, volume)
        return writer.offset
    }

    /// Writes protobuf fields into memory known to be large enough.
    struct Writer {
        let base: UnsafeMutableRawPointer
        var offset = 0

        mutating func copy(_ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
            (base + offset).copyMemory(from: source, byteCount: bytes.count)
            offset += bytes.count
        }

        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                base.storeBytes(of: UInt8(truncatingIfNeeded: value) | 0x80, toByteOffset: offset, as: UInt8.self)
                offset += 1
                value >>= 7
            }
            base.storeBytes(of: UInt8(value), toByteOffset: offset, as: UInt8.self)
            offset += 1
        }

        mutating func fixed64Field(_ field: UInt64, _ value: UInt64) {
            guard value != 0 else { return }  // proto3 leaves zero out
            varint(field << 3 | 1)
            base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
            offset += 8
        }

        mutating func varintField(_ field: UInt64, _ value: UInt64) {
            guard value != 0 else { return }
            varint(field << 3)
            varint(value)
        }
    }
}
