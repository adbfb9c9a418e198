import CSocketBatch
import Foundation
import Glibc

/// A failed socket call, with errno's text.
public struct SocketError: Error, CustomStringConvertible {
    public let operation: String
    public let code: Int32
    public var description: String { "\(operation): \(String(cString: strerror(code)))" }

    static func last(_ operation: String) -> SocketError { SocketError(operation: operation, code: errno) }
}

/// An IPv4 or IPv6 socket address built from text (`127.0.0.1`, `::1`, `239.1.1.1`).
public struct SocketAddress: Sendable, CustomStringConvertible {
    var storage = sockaddr_storage()
    public let length: socklen_t
    public let host: String
    public let port: Int

    public init(host: String, port: Int) throws(SocketError) {
        self.host = host
        self.port = port
        var storage = sockaddr_storage()
        var v4 = sockaddr_in()
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeBytes(of: v4) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, host, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeBytes(of: v6) { source in
                withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) }
            }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            throw SocketError(operation: "address \"\(host)\" (expected a numeric IPv4 or IPv6 address)", code: EINVAL)
        }
        self.storage = storage
    }

    public var family: Int32 { Int32(storage.ss_family) }

    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    public var description: String { family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Owns one file descriptor and closes it once.
public final class FileDescriptor {
    public private(set) var raw: Int32

    public init(_ raw: Int32) { self.raw = raw }
    deinit { close() }

    public func close() {
        if raw >= 0 {
            Glibc.close(raw)
            raw = -1
        }
    }

    func setNonBlocking() {
        let flags = fcntl(raw, F_GETFL)
        _ = fcntl(raw, F_SETFL, flags | O_NONBLOCK)
    }

    /// The port the kernel chose when bound to port 0.
    public var localPort: Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutableBytes(of: &storage) {
            getsockname(raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
        }
        return withUnsafeBytes(of: storage) { bytes in
            if Int32(storage.ss_family) == AF_INET6 {
                return Int(UInt16(bigEndian: bytes.load(as: sockaddr_in6.self).sin6_port))
            }
            return Int(UInt16(bigEndian: bytes.load(as: sockaddr_in.self).sin_port))
        }
    }
}

/// A bound UDP socket that reads datagrams without blocking (MoldUDP64 downstream). Joins a multicast group when the
/// address is one.
public final class UDPReceiver {
    public let descriptor: FileDescriptor
    /// What the kernel granted for SO_RCVBUF (it may give less than asked; the caller warns).
    public let receiveBufferBytes: Int

    public init(address: SocketAddress, receiveBufferBytes requested: Int, multicastInterface: String? = nil) throws(SocketError) {
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.last("socket") }
        descriptor = FileDescriptor(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var size = Int32(clamping: requested)
        // SO_RCVBUFFORCE passes net.core.rmem_max where the process may (CAP_NET_ADMIN); elsewhere the plain option
        // gets what rmem_max allows, and the caller warns when that is less than asked.
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var granted: Int32 = 0
        var grantedLength = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &grantedLength)
        receiveBufferBytes = Int(granted) / 2  // Linux reports double the usable size
        let isMulticastV4 = address.family == AF_INET && (address.host.split(separator: ".").first.flatMap { Int($0) }.map { (224...239).contains($0) } ?? false)
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        guard bound == 0 else { throw SocketError.last("bind udp \(address)") }
        if isMulticastV4 {
            var request = ip_mreq()
            inet_pton(AF_INET, address.host, &request.imr_multiaddr)
            inet_pton(AF_INET, multicastInterface ?? "0.0.0.0", &request.imr_interface)
            guard setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &request, socklen_t(MemoryLayout<ip_mreq>.size)) == 0
            else { throw SocketError.last("join multicast group \(address.host)") }
        }
        descriptor.setNonBlocking()
    }

    /// Datagrams the kernel dropped because this socket's buffer was full (the `drops` column of /proc/net/udp and
    /// udp6); nil where the kernel does not say. Read on demand (status requests), never per packet.
    public var kernelDrops: UInt64? {
        var info = stat()
        guard fstat(descriptor.raw, &info) == 0 else { return nil }
        let inode = String(info.st_ino)
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                guard columns.count >= 13, columns[9] == inode else { continue }
                return UInt64(columns[12])
            }
        }
        return nil
    }

    /// Reads the waiting datagrams into `batch`, as many as it holds, in one system call (recvmmsg); returns how many
    /// (0 when none is waiting or the call failed).
    public func receive(into batch: DatagramBatch) -> Int {
        let count = tickplant_receive_batch(descriptor.raw, batch.storage.baseAddress!.assumingMemoryBound(to: UInt8.self),
            batch.slotSize, UInt32(batch.capacity), batch.lengths.baseAddress!, batch.sources.baseAddress!)
        batch.count = max(0, Int(count))
        return batch.count
    }

    /// Reads one datagram into `buffer`; nil when none is waiting.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        while true {
            let count = recv(descriptor.raw, buffer.baseAddress, buffer.count, 0)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            return nil
        }
    }
}

/// Buffers for up to `capacity` datagrams of at most `slotSize` bytes each, filled by `UDPReceiver.receive(into:)`
/// and reused for every batch, so that receiving allocates nothing.
public final class DatagramBatch {
    public let capacity: Int
    public let slotSize: Int
    fileprivate let storage: UnsafeMutableRawBufferPointer
    fileprivate let lengths: UnsafeMutableBufferPointer<Int>
    /// Each datagram's sender, as the kernel gave it (a venue's `allowed_sources` is checked against it).
    fileprivate let sources: UnsafeMutableBufferPointer<sockaddr_storage>
    /// Datagrams the last receive filled.
    public fileprivate(set) var count = 0

    /// `capacity` is capped at the C shim's TICKPLANT_BATCH_MAX (64).
    public init(capacity: Int = 32, slotSize: Int = 9_216) {
        self.capacity = min(capacity, Int(TICKPLANT_BATCH_MAX))
        self.slotSize = slotSize
        storage = .allocate(byteCount: self.capacity * slotSize, alignment: 16)
        lengths = .allocate(capacity: self.capacity)
        sources = .allocate(capacity: self.capacity)
        sources.initialize(repeating: sockaddr_storage())
    }

    deinit {
        storage.deallocate()
        lengths.deallocate()
        sources.deallocate()
    }

    /// The sender of datagram `index` of the last receive (valid until the next receive).
    public func source(_ index: Int) -> UnsafePointer<sockaddr_storage> {
        UnsafePointer(sources.baseAddress! + index)
    }

    /// Datagram `index` of the last receive, or nil when it was longer than a slot and the kernel cut it.
    public func datagram(_ index: Int) -> UnsafeRawBufferPointer? {
        let length = lengths[index]
        guard length <= slotSize else { return nil }
        return UnsafeRawBufferPointer(start: storage.baseAddress! + index * slotSize, count: length)
    }
}

/// A UDP socket that sends datagrams to one address (the simulator's MoldUDP64 downstream).
public final class UDPSender {
    public let descriptor: FileDescriptor
    public let destination: SocketAddress

    /// `source`: the local address to send from (tests play a sender a venue's `allowed_sources` does not list from
    /// 127.0.0.2); nil: whatever the kernel picks.
    public init(destination: SocketAddress, source: SocketAddress? = nil) throws(SocketError) {
        let fd = socket(destination.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.last("socket") }
        descriptor = FileDescriptor(fd)
        if let source {
            guard source.withSockaddr({ bind(fd, $0, $1) }) == 0 else { throw SocketError.last("bind udp \(source)") }
        }
        self.destination = destination
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sends one datagram; false when the kernel refused it (nobody listening is not an error for UDP).
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            destination.withSockaddr { address, length in
                sendto(descriptor.raw, buffer.baseAddress, buffer.count, 0, address, length) == buffer.count
            }
        }
    }
}

/// A TCP listening socket (the simulator's JSON venues and retransmission server).
public final class TCPListener {
    public let descriptor: FileDescriptor

    public init(address: SocketAddress, backlog: Int32 = 64) throws(SocketError) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.last("socket") }
        descriptor = FileDescriptor(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0 else { throw SocketError.last("bind tcp \(address)") }
        guard listen(fd, backlog) == 0 else { throw SocketError.last("listen \(address)") }
        descriptor.setNonBlocking()
    }

    /// Accepts one waiting connection, non-blocking like the listener (Linux does not inherit the flag); nil when
    /// none waits.
    public func accept() -> FileDescriptor? {
        let fd = Glibc.accept(descriptor.raw, nil, nil)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connection = FileDescriptor(fd)
        connection.setNonBlocking()
        return connection
    }
}

extension FileDescriptor {
    /// Starts a TCP connection without waiting for it: the feed thread must never stall on a venue that does not
    /// answer. `connectionEstablished()` tells when it is up.
    public static func startTCPConnect(to address: SocketAddress) throws(SocketError) -> FileDescriptor {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.last("socket") }
        let descriptor = FileDescriptor(fd)
        descriptor.setNonBlocking()
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 && errno != EINPROGRESS {
            throw SocketError.last("connect \(address)")
        }
        return descriptor
    }

    /// For a connection started by `startTCPConnect`: true once it is up, false while it is still being made; throws
    /// the reason it failed.
    public func connectionEstablished() throws(SocketError) -> Bool {
        var item = pollfd(fd: raw, events: Int16(POLLOUT), revents: 0)
        guard Glibc.poll(&item, 1, 0) > 0 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(raw, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { throw SocketError(operation: "connect", code: error) }
        return true
    }

    /// Reads what is available into `buffer`: the byte count, 0 at end of stream, nil when nothing is waiting.
    public func readAvailable(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int? {
        while true {
            let count = Glibc.read(raw, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw SocketError.last("read")
        }
    }

    /// Writes all of `bytes`, waiting for room when the socket is non-blocking. False when the peer is gone.
    @discardableResult
    public func writeAll(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.send(raw, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if written > 0 {
                offset += written
            } else if written < 0 && (errno == EAGAIN || errno == EINTR) {
                var item = pollfd(fd: raw, events: Int16(POLLOUT), revents: 0)
                _ = Glibc.poll(&item, 1, 100)
            } else {
                return false
            }
        }
        return true
    }

    @discardableResult
    public func writeAll(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { writeAll($0) } }
}
