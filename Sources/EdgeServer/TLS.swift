import COpenSSL
import Logging
import MarketData
import NIOCore
import Synchronization

/// A certificate or key edged could not use: which of the two (`[tls]` key) and why, in OpenSSL's words.
public struct TLSError: Error, CustomStringConvertible {
    public var key: String
    public var description: String
}

/// The lowest TLS version edged accepts (`[tls] min_version`).
public enum TLSMinimumVersion: String, Sendable, CaseIterable {
    /// TLS 1.2 with ECDHE and an AEAD cipher only, and TLS 1.3.
    case tls12 = "1.2"
    /// TLS 1.3 only.
    case tls13 = "1.3"
}

/// The server's certificate chain and private key (`[tls]` in etc/edged.toml): every connection's TLS session is made
/// from the one loaded last. `reload` reads the same files again (a renewed certificate): connections made before
/// keep the one they began with.
///
/// `@unchecked Sendable`: the SSL_CTX in `current` is configured before it is stored and never changed afterwards;
/// OpenSSL allows sessions to be made from one context on several threads at once (it locks its reference count and
/// session cache itself), and the Mutex guards only which context is current.
public final class TLSContext: @unchecked Sendable {
    public let certificatePath: String
    public let keyPath: String
    public let minimumVersion: TLSMinimumVersion
    private let current: Mutex<LoadedContext>

    /// One SSL_CTX and the reference to it this box owns; a session made from it holds a reference of its own, so
    /// a context replaced by `reload` lives on while a connection uses it.
    private final class LoadedContext: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { SSL_CTX_free(pointer) }
    }

    public init(certificate: String, key: String, minimumVersion: TLSMinimumVersion = .tls12) throws(TLSError) {
        certificatePath = certificate
        keyPath = key
        self.minimumVersion = minimumVersion
        current = Mutex(try Self.load(certificate: certificate, key: key, minimumVersion: minimumVersion))
    }

    /// Reads the certificate and key files again and uses them for connections from now on; on an error the
    /// context in use stays.
    public func reload() throws(TLSError) {
        if let problem = SecretFiles.problem(withPermissionsOf: keyPath) { throw TLSError(key: "key", description: problem) }
        let loaded = try Self.load(certificate: certificatePath, key: keyPath, minimumVersion: minimumVersion)
        current.withLock { $0 = loaded }
    }

    /// A new session (SSL object) from the current context; nil when OpenSSL cannot make one.
    func makeSession() -> OpaquePointer? { current.withLock { SSL_new($0.pointer) } }

    private static func load(
        certificate: String, key: String, minimumVersion: TLSMinimumVersion
    ) throws(TLSError) -> LoadedContext {
        guard let pointer = SSL_CTX_new(TLS_server_method()) else {
            throw TLSError(key: "certificate", description: "OpenSSL could not make a context: \(OpenSSLErrors.take())")
        }
        let context = LoadedContext(pointer)
        guard SSL_CTX_use_certificate_chain_file(pointer, certificate) == 1 else {
            throw TLSError(
                key: "certificate",
                description: "cannot use \(certificate) as a PEM certificate chain: \(OpenSSLErrors.take())")
        }
        guard SSL_CTX_use_PrivateKey_file(pointer, key, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError(
                key: "key",
                description: "cannot use \(key) as the PEM private key of \(certificate): \(OpenSSLErrors.take())")
        }
        guard SSL_CTX_check_private_key(pointer) == 1 else {
            throw TLSError(key: "key", description: "\(key) is not the key of the certificate in \(certificate)")
        }
        guard tickplant_ssl_ctx_configure_server(pointer, minimumVersion == .tls13 ? 1 : 0) == 1 else {
            throw TLSError(
                key: "certificate", description: "OpenSSL refused the server settings: \(OpenSSLErrors.take())")
        }
        return context
    }
}

/// OpenSSL's error queue of the calling thread.
enum OpenSSLErrors {
    /// The queued errors as text, oldest first; the queue is left empty (so that they are not taken for a later
    /// call's on the same thread).
    static func take() -> String {
        var messages: [String] = []
        while true {
            let code = ERR_get_error()
            guard code != 0 else { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            messages.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return messages.isEmpty ? "no detail from OpenSSL" : messages.joined(separator: "; ")
    }
}

/// One connection's TLS session: an SSL object between two memory BIOs, ciphertext from the socket in one and
/// ciphertext for the socket out of the other, so that NIO keeps doing all the I/O. Owns all three (SSL_free frees
/// the BIOs with the session).
final class TLSSession {
    private let ssl: OpaquePointer
    private let fromNetwork: OpaquePointer
    private let toNetwork: OpaquePointer

    enum Step {
        case done
        case wantsMore
        case closedByPeer
        case failed(String)
    }

    init?(_ context: TLSContext) {
        guard let ssl = context.makeSession() else { return nil }
        guard let fromNetwork = BIO_new(BIO_s_mem()), let toNetwork = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            return nil
        }
        SSL_set_bio(ssl, fromNetwork, toNetwork)
        SSL_set_accept_state(ssl)
        self.ssl = ssl
        self.fromNetwork = fromNetwork
        self.toNetwork = toNetwork
    }

    deinit { SSL_free(ssl) }

    /// Hands the session ciphertext that came from the socket.
    func receive(_ ciphertext: ByteBuffer) -> Bool {
        ciphertext.withUnsafeReadableBytes { bytes in
            bytes.isEmpty || BIO_write(fromNetwork, bytes.baseAddress, Int32(bytes.count)) == Int32(bytes.count)
        }
    }

    func handshake() -> Step { step(SSL_do_handshake(ssl)) }

    /// Decrypts into `buffer`; `.done` with the byte count, or why nothing came.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> (Step, Int) {
        let count = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        return count > 0 ? (.done, Int(count)) : (step(count), 0)
    }

    /// Encrypts all of `plaintext` (into the outgoing BIO, which always takes it).
    func send(_ plaintext: ByteBuffer) -> Step {
        plaintext.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let count = SSL_write(ssl, bytes.baseAddress! + offset, Int32(min(bytes.count - offset, 1 << 30)))
                guard count > 0 else { return step(count) }
                offset += Int(count)
            }
            return .done
        }
    }

    /// Queues the close_notify alert.
    func shutdown() { _ = SSL_shutdown(ssl) }

    /// Ciphertext waiting to go to the socket.
    var pendingForNetwork: Int { Int(BIO_ctrl_pending(toNetwork)) }

    func takeForNetwork(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        max(0, Int(BIO_read(toNetwork, buffer.baseAddress, Int32(buffer.count))))
    }

    private func step(_ result: Int32) -> Step {
        if result == 1 { return .done }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantsMore
        case SSL_ERROR_ZERO_RETURN: return .closedByPeer
        default: return .failed(OpenSSLErrors.take())
        }
    }
}

/// Connections closed for a TLS failure (a client that is not speaking TLS, an unacceptable protocol version or
/// cipher, a corrupt record): counted, and logged at most once per 10 seconds with the count since.
public final class TLSFailures: Sendable {
    let count = Atomic<UInt64>(0)
    let handshakes = Atomic<UInt64>(0)
    private let lastLoggedNs = Atomic<UInt64>(0)
    private let countAtLastLog = Atomic<UInt64>(0)
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func note(_ why: String, peer: String) {
        let total = count.wrappingAdd(1, ordering: .relaxed).newValue
        let now = MonotonicClock.nowNanoseconds()
        let last = lastLoggedNs.load(ordering: .relaxed)
        guard last == 0 || now &- last >= 10_000_000_000,
            lastLoggedNs.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        let since = total - countAtLastLog.exchange(total, ordering: .relaxed)
        logger.warning(
            "TLS failure; connection closed",
            metadata: ["peer": "\(peer)", "why": "\(why)", "failures_since_last_log": "\(since)"])
    }
}

/// wss: TLS between the socket and HTTP, through OpenSSL. Ciphertext in, plaintext up the pipeline; plaintext
/// down, ciphertext to the socket at each flush (one write of everything encrypted since the last one, so frames
/// coalesced for a client stay coalesced).
final class TLSServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let session: TLSSession?
    private let failures: TLSFailures
    private var established = false
    private var shutDown = false
    /// Some ciphertext came: a connection that ends before the handshake is done after that failed it (a client
    /// that refused the certificate may just hang up), one that never sent a byte (a TCP health check) did not.
    private var heardFrom = false
    /// Plaintext written before the handshake finished (in practice none: the server speaks when asked); it goes
    /// once the handshake is done.
    private var early: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    /// Promises of plaintext encrypted since the last flush, kept when its ciphertext is written.
    private var unflushed: [EventLoopPromise<Void>] = []

    init(context: TLSContext, failures: TLSFailures) {
        session = TLSSession(context)
        self.failures = failures
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if session == nil { fail(context, "OpenSSL could not make a session: \(OpenSSLErrors.take())") }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !shutDown else { return }
        heardFrom = true
        guard session.receive(unwrapInboundIn(data)) else { return fail(context, "could not buffer incoming bytes") }
        if !established {
            switch session.handshake() {
            case .done:
                established = true
                failures.handshakes.wrappingAdd(1, ordering: .relaxed)
                for (plaintext, promise) in early {
                    write(context: context, data: wrapOutboundOut(plaintext), promise: promise)
                }
                early.removeAll()
            case .wantsMore:
                return sendToNetwork(context)
            case .closedByPeer:
                return context.close(promise: nil)
            case let .failed(why):
                return fail(context, "handshake: \(why)")
            }
        }
        readPlaintext(context, session)
        if !shutDown { sendToNetwork(context) }
    }

    private func readPlaintext(_ context: ChannelHandlerContext, _ session: TLSSession) {
        while !shutDown {
            var step = TLSSession.Step.wantsMore
            var buffer = context.channel.allocator.buffer(capacity: 16_384)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16_384) { bytes in
                let (result, count) = session.read(into: bytes)
                step = result
                return count
            }
            switch step {
            case .done:
                context.fireChannelRead(wrapInboundOut(buffer))
            case .wantsMore:
                return
            case .closedByPeer:
                // The client's close_notify: answered with ours, then the connection closes.
                session.shutdown()
                sendToNetwork(context)
                shutDown = true
                return context.close(promise: nil)
            case let .failed(why):
                return fail(context, why)
            }
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        guard let session, !shutDown else {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        guard established else {
            early.append((plaintext, promise))
            return
        }
        if case let .failed(why) = session.send(plaintext) {
            promise?.fail(TLSError(key: "", description: why))
            return fail(context, why)
        }
        if let promise { unflushed.append(promise) }
    }

    func flush(context: ChannelHandlerContext) {
        sendToNetwork(context)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all, established, !shutDown, let session {
            session.shutdown()
            sendToNetwork(context)
            shutDown = true
        }
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if heardFrom && !established && !shutDown {
            failures.note(
                "closed by the client during the handshake (did it refuse the certificate?)",
                peer: context.channel.remoteAddress.map { "\($0)" } ?? "?")
        }
        for (_, promise) in early { promise?.fail(ChannelError.ioOnClosedChannel) }
        early.removeAll()
        for promise in unflushed { promise.fail(ChannelError.ioOnClosedChannel) }
        unflushed.removeAll()
        context.fireChannelInactive()
    }

    /// Writes and flushes the ciphertext waiting in the session, carrying the promises of the plaintext in it.
    private func sendToNetwork(_ context: ChannelHandlerContext) {
        guard let session else { return }
        var promise: EventLoopPromise<Void>?
        if unflushed.count == 1 {
            promise = unflushed[0]
        } else if unflushed.count > 1 {
            let all = context.eventLoop.makePromise(of: Void.self)
            for waiting in unflushed { all.futureResult.cascade(to: waiting) }
            promise = all
        }
        unflushed.removeAll(keepingCapacity: true)
        let pending = session.pendingForNetwork
        guard pending > 0 else {
            promise?.succeed(())
            return context.flush()
        }
        var ciphertext = context.channel.allocator.buffer(capacity: pending)
        ciphertext.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { session.takeForNetwork($0) }
        context.write(wrapOutboundOut(ciphertext), promise: promise)
        context.flush()
    }

    private func fail(_ context: ChannelHandlerContext, _ why: String) {
        failures.note(why, peer: context.channel.remoteAddress.map { "\($0)" } ?? "?")
        shutDown = true
        context.close(promise: nil)
    }
}
