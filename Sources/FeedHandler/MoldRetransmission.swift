import Glibc
import MarketData

/// MoldUDP64 retransmission over TCP (DESIGN section 3): each request and each answer is preceded by a big-endian
/// u16 length. A request is a MoldUDP64 request packet: session (10 bytes), first sequence (u64), count (u16); the
/// answer is ordinary MoldUDP64 downstream packets holding those messages.
public enum MoldRequest {
    public static let length = 20

    public static func encode(session: String, sequence: UInt64, count: UInt16) -> [UInt8] {
        var writer = BigEndianWriter(capacity: 22)
        writer.u16(UInt16(length))
        writer.alpha(session, width: 10)
        writer.u64(sequence)
        writer.u16(count)
        return writer.bytes
    }

    /// Reads a request body (without its length prefix).
    public static func decode(_ body: UnsafeRawBufferPointer) -> (session: MoldSession, sequence: UInt64, count: UInt16)? {
        guard body.count == length else { return nil }
        return (MoldSession(bytes: UnsafeRawBufferPointer(rebasing: body[0..<10])), body.u64(10), body.u16(18))
    }
}

/// Splits a TCP byte stream into u16-length-prefixed frames.
public struct LengthPrefixedFrames {
    private var pending: [UInt8] = []
    /// Frames longer than this mean the peer does not speak the protocol.
    public let maximumFrame: Int
    /// Set once a frame announced more than `maximumFrame` bytes: nothing more is read, so a peer that does not speak
    /// the protocol cannot make us buffer without bound.
    public private(set) var violated = false

    public init(maximumFrame: Int = 65_535) { self.maximumFrame = maximumFrame }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) { pending.append(contentsOf: bytes) }

    /// Calls `body` with each complete frame; keeps an incomplete one for later.
    public mutating func drain(_ body: (UnsafeRawBufferPointer) -> Void) {
        var offset = 0
        pending.withUnsafeBytes { bytes in
            while !violated && bytes.count - offset >= 2 {
                let length = Int(bytes.u16(offset))
                guard length <= maximumFrame else {
                    violated = true
                    break
                }
                guard bytes.count - offset - 2 >= length else { break }
                body(UnsafeRawBufferPointer(rebasing: bytes[(offset + 2)..<(offset + 2 + length)]))
                offset += 2 + length
            }
        }
        pending.removeFirst(offset)
    }
}

/// The messages a venue has sent in one session, by sequence number, so that it can retransmit them. Keeps the last
/// `capacity` messages.
public struct MoldHistory {
    public let capacity: Int
    private var messages: [[UInt8]] = []
    /// Sequence number of `messages[start]`.
    public private(set) var firstSequence: UInt64 = 1
    private var start = 0

    public init(capacity: Int) { self.capacity = capacity }

    public var nextSequence: UInt64 { firstSequence + UInt64(messages.count - start) }

    public mutating func append(_ message: [UInt8]) {
        messages.append(message)
        if messages.count - start > capacity {
            start += 1
            firstSequence += 1
            if start > capacity {
                messages.removeFirst(start)
                start = 0
            }
        }
    }

    public func message(_ sequence: UInt64) -> [UInt8]? {
        guard sequence >= firstSequence, sequence < nextSequence else { return nil }
        return messages[start + Int(sequence - firstSequence)]
    }
}

/// A venue's retransmission server (the simulator runs one): accepts TCP clients and answers their requests from the
/// history, in packets of at most `packetBytes`. Non-blocking; `serve` is called from the owner's loop.
public final class MoldRetransmissionServer {
    final class Client {
        let connection: FileDescriptor
        var frames = LengthPrefixedFrames(maximumFrame: MoldRequest.length)
        init(connection: FileDescriptor) { self.connection = connection }
    }

    public let listener: TCPListener
    public let session: String
    private var clients: [Client] = []
    public var packetBytes = 1400
    public private(set) var requestsServed: UInt64 = 0
    public private(set) var messagesResent: UInt64 = 0
    public private(set) var badRequests: UInt64 = 0
    /// Monotonic time of the last request served (0: none yet).
    public private(set) var lastRequestNs: UInt64 = 0

    public init(address: SocketAddress, session: String) throws(SocketError) {
        listener = try TCPListener(address: address)
        self.session = session
    }

    public var port: Int { listener.descriptor.localPort }

    /// Accepts new clients and answers every complete request.
    public func serve(history: MoldHistory) {
        while let connection = listener.accept() { clients.append(Client(connection: connection)) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        clients.removeAll { client in
            while true {
                let count: Int?
                do {
                    count = try client.connection.readAvailable(into: buffer)
                } catch {
                    return true
                }
                guard let count else { break }
                if count == 0 { return true }
                client.frames.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
            var keep = true
            client.frames.drain { body in
                guard keep else { return }
                guard let request = MoldRequest.decode(body), request.session == MoldSession(session) else {
                    badRequests += 1
                    keep = false
                    return
                }
                guard request.sequence <= MoldPacket.maximumSequence else {
                    // No history holds it, and the first sequence plus the count must not pass 2^64.
                    badRequests += 1
                    keep = false
                    return
                }
                keep = answer(client.connection, from: request.sequence, count: Int(request.count), history: history)
            }
            if client.frames.violated {
                badRequests += 1
                keep = false
            }
            return !keep
        }
    }

    /// Sends the messages it still has; those older than the history are simply not there (the client gives up).
    private func answer(_ connection: FileDescriptor, from first: UInt64, count: Int, history: MoldHistory) -> Bool {
        requestsServed += 1
        lastRequestNs = MonotonicClock.nowNanoseconds()
        var batch: [[UInt8]] = []
        var batchBytes = 0
        var batchStart = first
        var sequence = first
        func flush() -> Bool {
            guard !batch.isEmpty else { return true }
            let packet = MoldPacket.encode(session: session, sequenceNumber: batchStart, messages: batch)
            var framed = BigEndianWriter(capacity: packet.count + 2)
            framed.u16(UInt16(packet.count))
            framed.append(packet)
            messagesResent += UInt64(batch.count)
            batch.removeAll(keepingCapacity: true)
            batchBytes = 0
            return connection.writeAll(framed.bytes)
        }
        while sequence < first + UInt64(count), let message = history.message(sequence) {
            if batchBytes + message.count + 2 > packetBytes - MoldPacket.headerLength {
                guard flush() else { return false }
                batchStart = sequence
            }
            batch.append(message)
            batchBytes += message.count + 2
            sequence += 1
        }
        return flush()
    }
}
