import Glibc
import MarketData
import NIOCore
import NIOWebSocket

/// A whole client message, or a sign of life, as the protocol layer hands it up.
enum WebSocketMessage {
    case text(ByteBuffer)
    case binary(ByteBuffer)
    /// A ping (answered already): the client is there.
    case heard
    /// A pong, with the payload of the ping it answers.
    case pong(ByteBuffer)
}

/// RFC 6455 between NIO's frame codec and what a route does with messages, shared by every route (`/prices`, and
/// `/echo` where a test configuration turns it on, so that the Autobahn testsuite checks the very code clients
/// meet): fragments joined into messages (at most `maxMessageBytes`, else close 1009), text validated as UTF-8 as it
/// comes (close 1007 at the first bad byte), reserved bits, unknown opcodes, unmasked frames and stray continuations
/// refused (close 1002), pings answered, and the closing handshake: a client's close is checked and echoed, and
/// after edged's own close only the client's answer is awaited.
final class WebSocketProtocolLayer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketMessage
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let maxMessageBytes: Int
    /// The message being received in fragments, its opcode, and the UTF-8 check of a text one so far.
    private var partial: ByteBuffer?
    private var partialIsText = false
    private var utf8 = UTF8Validator()
    /// edged has sent its close frame: from now on only the client's close matters.
    private var closeSent = false
    /// The pong of the latest ping that came while the socket took no more: sent when it takes more again, the
    /// earlier ones' left out (RFC 6455 section 5.5.3 lets a pong answer only the latest ping), so that a client that
    /// pings without reading cannot grow what edged holds for it.
    private var pendingPong: ByteBuffer?

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !frame.rsv1 && !frame.rsv2 && !frame.rsv3 else {
            return fail(context, .protocolError, "reserved bits set without an extension")
        }
        guard frame.maskKey != nil else { return fail(context, .protocolError, "client frames must be masked") }
        switch frame.opcode {
        case .text, .binary, .continuation:
            guard !closeSent else { return }
            receiveData(context, frame)
        case .ping:
            guard !closeSent else { return }
            if context.channel.isWritable {
                let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
                context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
            } else {
                pendingPong = frame.unmaskedData
            }
            context.fireChannelRead(wrapInboundOut(.heard))
        case .pong:
            context.fireChannelRead(wrapInboundOut(.pong(frame.unmaskedData)))
        case .connectionClose:
            receiveClose(context, frame.unmaskedData)
        default:
            fail(context, .protocolError, "unknown opcode")
        }
    }

    private func receiveData(_ context: ChannelHandlerContext, _ frame: WebSocketFrame) {
        var data = frame.unmaskedData
        if frame.opcode == .continuation {
            guard partial != nil else { return fail(context, .protocolError, "a continuation with no message begun") }
        } else {
            guard partial == nil else { return fail(context, .protocolError, "a new message inside a fragmented one") }
            partialIsText = frame.opcode == .text
            utf8 = UTF8Validator()
            if frame.fin {
                // Unfragmented, the common case: handed up as it is.
                if partialIsText {
                    guard data.withUnsafeReadableBytes({ utf8.take($0) }), utf8.isComplete else {
                        return fail(context, .dataInconsistentWithMessage, "text that is not UTF-8")
                    }
                }
                return context.fireChannelRead(wrapInboundOut(partialIsText ? .text(data) : .binary(data)))
            }
            partial = context.channel.allocator.buffer(capacity: data.readableBytes)
        }
        guard partial!.readableBytes + data.readableBytes <= maxMessageBytes else {
            partial = nil
            return fail(context, .messageTooLarge, "a message over \(maxMessageBytes) bytes")
        }
        if partialIsText, !data.withUnsafeReadableBytes({ utf8.take($0) }) {
            partial = nil
            return fail(context, .dataInconsistentWithMessage, "text that is not UTF-8")
        }
        partial!.writeBuffer(&data)
        guard frame.fin, let message = partial else { return }
        partial = nil
        if partialIsText && !utf8.isComplete {
            return fail(context, .dataInconsistentWithMessage, "text that ends inside a UTF-8 sequence")
        }
        context.fireChannelRead(wrapInboundOut(partialIsText ? .text(message) : .binary(message)))
    }

    /// The client's close: its code and reason checked, then echoed (or, when edged closed first, the handshake
    /// is over), and the connection closed once that is written.
    private func receiveClose(_ context: ChannelHandlerContext, _ payload: ByteBuffer) {
        if closeSent { return context.close(promise: nil) }
        var payload = payload
        var reply = context.channel.allocator.buffer(capacity: 2)
        if payload.readableBytes > 0 {
            guard payload.readableBytes >= 2, let code = payload.readInteger(as: UInt16.self) else {
                return fail(context, .protocolError, "a close payload of one byte")
            }
            guard Self.isValidCloseCode(code) else { return fail(context, .protocolError, "close code \(code)") }
            var reason = UTF8Validator()
            guard payload.withUnsafeReadableBytes({ reason.take($0) }), reason.isComplete else {
                return fail(context, .dataInconsistentWithMessage, "a close reason that is not UTF-8")
            }
            reply.writeInteger(code)
        }
        closeSent = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    /// Codes a client may send (RFC 6455 section 7.4): the defined ones meant for the wire, and 3000-4999 for
    /// libraries and applications.
    static func isValidCloseCode(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: true
        default: false
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let payload = pendingPong {
            pendingPong = nil
            if !closeSent {
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)),
                    promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if unwrapOutboundIn(data).opcode == .connectionClose {
            guard !closeSent else {
                promise?.succeed(())
                return
            }
            closeSent = true
        }
        context.write(data, promise: promise)
    }

    /// Fails the connection (RFC 6455 section 7.1.7): a close frame with `code`, then the connection closes.
    private func fail(_ context: ChannelHandlerContext, _ code: WebSocketErrorCode, _ why: String) {
        partial = nil
        guard !closeSent else { return context.close(promise: nil) }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}

/// UTF-8 validation that can stop between any two bytes and go on with the next fragment (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF).
struct UTF8Validator {
    /// Continuation bytes still expected, and the range the next one must be in.
    private var remaining = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    /// False at the first byte that cannot be UTF-8.
    mutating func take(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes {
            if remaining > 0 {
                guard byte >= lower && byte <= upper else { return false }
                lower = 0x80
                upper = 0xBF
                remaining -= 1
                continue
            }
            switch byte {
            case 0x00...0x7F: continue
            case 0xC2...0xDF: remaining = 1
            case 0xE0: (remaining, lower) = (2, 0xA0)
            case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
            case 0xED: (remaining, upper) = (2, 0x9F)
            case 0xF0: (remaining, lower) = (3, 0x90)
            case 0xF1...0xF3: remaining = 3
            case 0xF4: (remaining, upper) = (3, 0x8F)
            default: return false
            }
        }
        return true
    }

    /// True when no sequence is left half-way.
    var isComplete: Bool { remaining == 0 }
}

/// `/echo`: every message back as it came, through the same protocol layer as `/prices`. Only a configuration with
/// `[edge] echo = true` has it: it exists for the WebSocket conformance testsuite.
final class EchoSession: ChannelInboundHandler {
    typealias InboundIn = WebSocketMessage
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .text(message):
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: message)), promise: nil)
        case let .binary(message):
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, data: message)), promise: nil)
        case .heard, .pong:
            break
        }
    }
}

/// Sits between NIO's WebSocket frame encoder and the socket (or TLS): what passes through it is bytes, and a
/// session writes its turn's updates here as whole, ready-made frames, so that a burst of updates costs one write
/// through the pipeline per client instead of one per update per client. Server frames are not masked, so an update's
/// frame is the same bytes for every client and is made once (`EdgeUpdate.framed`).
///
/// On a plain connection whose socket descriptor edged accepted itself (`ConnectionListener`), the updates go
/// straight to the socket with one `send` while NIO holds nothing of the connection's unwritten: NIO's write path
/// (the pipeline to its head, the pending-write manager, the flush) cost about as much per delivery as the fan-out
/// itself, and every delivery at bursts of one is a system call either way. What the socket does not take at once,
/// and everything written while NIO still holds something, goes through NIO as before, in order. The descriptor is
/// used only on the connection's event loop and only until the channel goes inactive, which NIO tells this handler
/// on that loop in the same step as it closes the descriptor (before any other task of the loop runs, so a
/// descriptor number the kernel gives to a new connection is never written to from here). Asking the channel instead
/// (`isActive`) cost 5% of the loop at bursts of 10.
final class RawBytesWriter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    /// The connection's socket when updates may be sent straight to it (nil with TLS, or without a descriptor).
    private let directDescriptor: Int32?
    /// Writes through NIO not yet on the socket (each completes its promise when it is): while any is, updates go
    /// through NIO too, behind them.
    private var writesInNIO = 0
    /// Something went through NIO since the last flush.
    private var unflushed = false
    /// False from the moment the channel went inactive (its descriptor closed).
    private var open = true
    /// Counts the updates the socket did not take whole (`socket_full_writes`).
    private let hub: EdgeHub?

    init(directDescriptor: Int32? = nil, hub: EdgeHub? = nil) {
        self.directDescriptor = directDescriptor
        self.hub = hub
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelInactive(context: ChannelHandlerContext) {
        open = false
        context.fireChannelInactive()
    }

    /// Frames from above (NIO's encoder: snapshots, heartbeats, errors, closes) are counted until NIO has written
    /// them, so that no update overtakes them.
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard directDescriptor != nil else { return context.write(data, promise: promise) }
        throughNIO(context: context, data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        unflushed = false
        context.flush()
    }

    /// Writes whole frames toward the socket: sent now when the socket takes them, else through NIO (the caller
    /// flushes).
    func writeRaw(_ frames: ByteBuffer) {
        if let descriptor = directDescriptor, writesInNIO == 0, open {
            // The common case, one call that the socket takes whole, with nothing copied or retained.
            let sent = frames.withUnsafeReadableBytes { bytes in
                Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if sent == frames.readableBytes { return }
            return sendRest(of: frames, sentAlready: max(sent, 0), descriptor: descriptor)
        }
        guard let context else { return }
        if directDescriptor != nil {
            throughNIO(context: context, wrapOutboundOut(frames), promise: nil)
        } else {
            context.write(wrapOutboundOut(frames), promise: nil)
        }
    }

    /// What a first `send` did not take: sent while the socket takes it, the rest through NIO.
    private func sendRest(of frames: ByteBuffer, sentAlready: Int, descriptor: Int32) {
        guard let context else { return }
        var rest = frames
        rest.moveReaderIndex(forwardBy: sentAlready)
        while rest.readableBytes > 0 {
            let sent = rest.withUnsafeReadableBytes { bytes in
                Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if sent > 0 {
                rest.moveReaderIndex(forwardBy: sent)
                continue
            }
            if sent < 0 && errno == EINTR { continue }
            if sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                // The connection is broken (reset, or closed by the peer): NIO closes it and tells the session.
                context.close(promise: nil)
                return
            }
            // The socket's buffer is full: NIO keeps the rest and writes it when the socket takes more.
            hub?.socketFullWrites.wrappingAdd(1, ordering: .relaxed)
            throughNIO(context: context, wrapOutboundOut(rest), promise: nil)
            return
        }
    }

    /// Flushes what went through NIO since the last flush (an update sent straight needs none).
    func flush() {
        guard let context else { return }
        if directDescriptor == nil || unflushed { flush(context: context) }
    }

    private func throughNIO(context: ChannelHandlerContext, _ data: NIOAny, promise: EventLoopPromise<Void>?) {
        let written = promise ?? context.eventLoop.makePromise(of: Void.self)
        writesInNIO += 1
        unflushed = true
        written.futureResult.assumeIsolated().whenComplete { [self] _ in writesInNIO -= 1 }
        context.write(data, promise: written)
    }
}

extension EdgeUpdate {
    /// An update from its JSON text: its frame (a FIN text frame's header, then the text) in one buffer, and the
    /// text as a view of the same bytes.
    init(
        symbol: String, json: UnsafeRawBufferPointer, allocator: ByteBufferAllocator, droppable: Bool, type: TickType,
        symbolSequence: UInt64
    ) {
        var framed = allocator.buffer(capacity: json.count + 10)
        self.init(symbol: symbol, json: json, framingInto: &framed, droppable: droppable, type: type,
            symbolSequence: symbolSequence)
    }

    /// The same, framed into `framed` (emptied first): the caller's own buffer, reused.
    init(
        symbol: String, json: UnsafeRawBufferPointer, framingInto framed: inout ByteBuffer, droppable: Bool,
        type: TickType, symbolSequence: UInt64
    ) {
        framed.clear()
        framed.writeInteger(UInt8(0x81))
        if json.count < 126 {
            framed.writeInteger(UInt8(json.count))
        } else if json.count < 65_536 {
            framed.writeInteger(UInt8(126))
            framed.writeInteger(UInt16(json.count))
        } else {
            framed.writeInteger(UInt8(127))
            framed.writeInteger(UInt64(json.count))
        }
        let header = framed.readableBytes
        framed.writeBytes(json)
        self.init(
            symbol: symbol, text: framed.getSlice(at: framed.readerIndex + header, length: json.count)!,
            droppable: droppable, type: type, symbolSequence: symbolSequence)
        self.framed = framed
    }
}
