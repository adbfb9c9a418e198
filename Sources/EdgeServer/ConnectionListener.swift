import Foundation
import Glibc
import Logging
import MarketData
import NIOCore
import NIOPosix
import Synchronization

/// edged's listening socket, accepted on a thread of its own: each connection's descriptor is handed to NIO
/// (`ClientBootstrap.withConnectedSocket`) with edged knowing it, so that a plain connection's updates can be sent
/// straight to its socket (`RawBytesWriter`). NIO's server bootstrap accepts as well but keeps the descriptor to
/// itself. NIO owns each accepted descriptor from the hand-over on: it closes it when the connection ends.
final class ConnectionListener: Sendable {
    let descriptor: Int32
    /// The address bound, and its port (the one the kernel chose for port 0).
    let address: SocketAddress
    let port: Int
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let logger: Logger

    /// Binds and listens on `host`:`port` (SO_REUSEADDR, `backlog` connections waiting).
    init(host: String, port: Int, backlog: Int32, logger: Logger) throws {
        self.logger = logger
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let family = Int32(address.protocol.rawValue)
        let socketDescriptor = Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socketDescriptor >= 0 else { throw ListenError("socket", errno: errno) }
        var yes: Int32 = 1
        setsockopt(socketDescriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = address.withSockAddr { pointer, length in Glibc.bind(socketDescriptor, pointer, socklen_t(length)) }
        guard bound == 0 else {
            let error = ListenError("bind \(address)", errno: errno)
            close(socketDescriptor)
            throw error
        }
        guard Glibc.listen(socketDescriptor, backlog) == 0 else {
            let error = ListenError("listen", errno: errno)
            close(socketDescriptor)
            throw error
        }
        // The port bound: sin_port and sin6_port lie at the same place, in network order.
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketDescriptor, $0, &length) }
        }
        guard named == 0 else {
            let error = ListenError("getsockname", errno: errno)
            close(socketDescriptor)
            throw error
        }
        descriptor = socketDescriptor
        self.address = address
        self.port = Int(UInt16(bigEndian: storage.sin6_port))
    }

    /// Accepts until `stop`, handing each connection's descriptor (non-blocking) and its peer's address (without the
    /// port) to `take` on the accepting thread.
    func start(_ take: @escaping @Sendable (Int32, String) -> Void) {
        let thread = Thread { [self] in
            acceptLoop(take)
            finished.signal()
        }
        thread.name = "edged-accept"
        thread.start()
    }

    private func acceptLoop(_ take: (Int32, String) -> Void) {
        var refusedLog = LogRateLimiter(interval: .seconds(10))
        var peer = sockaddr_storage()
        while !stopping.load(ordering: .relaxed) {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let accepted = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(descriptor, $0, &length) }
            }
            if accepted >= 0 {
                // As NIO's own accept leaves them (Glibc's module has no accept4 to do it in the same call).
                _ = fcntl(accepted, F_SETFL, fcntl(accepted, F_GETFL) | O_NONBLOCK)
                _ = fcntl(accepted, F_SETFD, FD_CLOEXEC)
                take(accepted, Self.host(of: &peer))
                continue
            }
            let error = errno
            switch error {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: the connection waits in the backlog; try again shortly.
                if let heldBack = refusedLog.admit() {
                    logger.warning("cannot accept a connection", metadata: [
                        "error": "\(String(cString: strerror(error)))", "similar_not_logged": "\(heldBack)"])
                }
                usleep(10_000)
            default:
                // Shut down by `stop` (EINVAL), or the socket is gone.
                if !stopping.load(ordering: .relaxed) {
                    logger.error("the listening socket failed",
                        metadata: ["error": "\(String(cString: strerror(error)))"])
                }
                return
            }
        }
    }

    /// The numeric address of an accepted peer, without its port ("127.0.0.1", "::1"; an IPv4 client of an IPv6
    /// socket as "::ffff:a.b.c.d").
    static func host(of peer: inout sockaddr_storage) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = Int32(peer.ss_family)
        let written: UnsafePointer<CChar>? = withUnsafePointer(to: &peer) { storage in
            switch family {
            case AF_INET:
                storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    withUnsafePointer(to: address.pointee.sin_addr) {
                        inet_ntop(family, $0, &text, socklen_t(text.count))
                    }
                }
            case AF_INET6:
                storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    withUnsafePointer(to: address.pointee.sin6_addr) {
                        inet_ntop(family, $0, &text, socklen_t(text.count))
                    }
                }
            default:
                nil
            }
        }
        guard written != nil, let end = text.firstIndex(of: 0) else { return "?" }
        return String(decoding: text[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Stops accepting (connections already handed over stay) and closes the listening socket.
    func stop() async {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        shutdown(descriptor, Int32(SHUT_RDWR))
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                self.finished.wait()
                continuation.resume()
            }
        }
        close(descriptor)
    }
}

struct ListenError: Error, CustomStringConvertible {
    let description: String

    init(_ what: String, errno: Int32) {
        description = "\(what): \(String(cString: strerror(errno)))"
    }
}
