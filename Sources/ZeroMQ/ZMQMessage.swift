import CZeroMQ

/// A reusable receive buffer around one `zmq_msg_t`. Receiving into it hands over libzmq's own buffer (no copy);
/// the bytes stay valid until the next receive into the same message or until it is released.
///
/// Not Sendable: it belongs to the thread that owns the socket it receives from.
public final class ZMQMessage {
    @usableFromInline let storage: UnsafeMutablePointer<zmq_msg_t>

    public init() {
        storage = .allocate(capacity: 1)
        zmq_msg_init(storage)
    }

    deinit {
        zmq_msg_close(storage)
        storage.deallocate()
    }

    /// Number of bytes in the last frame received.
    public var count: Int { zmq_msg_size(storage) }

    /// True when the frame received last is followed by another frame of the same multipart message.
    public var hasMore: Bool { zmq_msg_more(storage) != 0 }

    /// Reads the frame in place. The pointer must not escape `body`. Inlinable: a caller's closure that throws a
    /// typed error was otherwise turned into a heap-allocated thunk on every call (plantd's profile, once per tick).
    @inlinable
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        let size = zmq_msg_size(storage)
        guard size > 0, let data = zmq_msg_data(storage) else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        return try body(UnsafeRawBufferPointer(start: data, count: size))
    }

    /// The frame as bytes (copies; for the control plane and tests).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// The frame as UTF-8 text (copies; for the control plane and tests).
    public var string: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
}
