/// Big-endian reads at fixed offsets: the layouts of Nasdaq's ITCH 5.0 and MoldUDP64 specifications.
/// Callers check the length once per message, so these do not.
extension UnsafeRawBufferPointer {
    @inlinable func u8(_ offset: Int) -> UInt8 { self[offset] }

    @inlinable func u16(_ offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    @inlinable func u32(_ offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8
            | UInt32(self[offset + 3])
    }

    /// ITCH timestamps are 6 bytes: nanoseconds since midnight.
    @inlinable func u48(_ offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<6 { value = value << 8 | UInt64(self[offset + index]) }
        return value
    }

    @inlinable func u64(_ offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<8 { value = value << 8 | UInt64(self[offset + index]) }
        return value
    }
}

/// Big-endian writes for the simulator's encoders and the tests' hand-built packets.
public struct BigEndianWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u48(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0.suffix(6)) }
    }
    public mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }

    /// ASCII text, right-padded with spaces to `width` (ITCH Alpha fields).
    public mutating func alpha(_ text: String, width: Int) {
        let utf8 = Array(text.utf8.prefix(width))
        bytes.append(contentsOf: utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: width - utf8.count))
    }

    public mutating func append(_ other: [UInt8]) { bytes.append(contentsOf: other) }
}
