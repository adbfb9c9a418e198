import Glibc

/// The addresses a venue's datagrams may come from (`[[venues]] allowed_sources`): exact IPv4 or IPv6 addresses, or
/// prefixes (`10.1.1.0/24`). Anyone who can reach a feed port can send a datagram; one from elsewhere is counted and
/// dropped before feedd reads it (DESIGN section 12). No entry: any sender (the default, as on a private segment).
///
/// Checked per datagram on the feed thread: a comparison of bytes against a few prefixes, nothing allocated.
public struct SourceFilter: Sendable, Equatable {
    struct Prefix: Sendable, Equatable {
        var family: Int32
        /// The address's bytes in network order: 4 (IPv4) or 16 (IPv6).
        var bytes: [UInt8]
        var bits: Int
    }

    let prefixes: [Prefix]

    public var isEmpty: Bool { prefixes.isEmpty }

    /// Any sender.
    public init() { prefixes = [] }

    /// Each entry an address or `address/bits`; nil with the entry and why when one is not.
    public init(_ entries: [String]) throws(SourceFilterError) {
        var prefixes: [Prefix] = []
        for entry in entries {
            let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, let address = parts.first.map(String.init) else {
                throw SourceFilterError(entry: entry, reason: "expected an address or address/bits")
            }
            var v4 = in_addr()
            var v6 = in6_addr()
            let prefix: Prefix
            if inet_pton(AF_INET, address, &v4) == 1 {
                prefix = Prefix(family: AF_INET, bytes: withUnsafeBytes(of: v4) { Array($0) }, bits: 32)
            } else if inet_pton(AF_INET6, address, &v6) == 1 {
                prefix = Prefix(family: AF_INET6, bytes: withUnsafeBytes(of: v6) { Array($0) }, bits: 128)
            } else {
                throw SourceFilterError(entry: entry, reason: "\"\(address)\" is not a numeric IPv4 or IPv6 address")
            }
            var bits = prefix.bits
            if parts.count == 2 {
                guard let asked = Int(parts[1]), (0...prefix.bits).contains(asked) else {
                    throw SourceFilterError(entry: entry, reason: "expected a prefix length from 0 to \(prefix.bits)")
                }
                bits = asked
            }
            prefixes.append(Prefix(family: prefix.family, bytes: prefix.bytes, bits: bits))
        }
        self.prefixes = prefixes
    }

    /// Whether a datagram from `source` may be read: always with no entry.
    public func admits(_ source: UnsafePointer<sockaddr_storage>) -> Bool {
        guard !prefixes.isEmpty else { return true }
        let family = Int32(source.pointee.ss_family)
        return Self.withAddressBytes(of: source) { address in
            for prefix in prefixes where prefix.family == family && Self.matches(address, prefix) { return true }
            return false
        }
    }

    static func matches(_ address: UnsafeBufferPointer<UInt8>, _ prefix: Prefix) -> Bool {
        let whole = prefix.bits / 8
        for index in 0..<whole where address[index] != prefix.bytes[index] { return false }
        let rest = prefix.bits % 8
        guard rest > 0 else { return true }
        let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - rest))
        return address[whole] & mask == prefix.bytes[whole] & mask
    }

    /// Calls `body` with the address's bytes in `source` (4 of sockaddr_in, or 16 of sockaddr_in6).
    static func withAddressBytes<Result>(
        of source: UnsafePointer<sockaddr_storage>, _ body: (UnsafeBufferPointer<UInt8>) -> Result
    ) -> Result {
        let isV4 = Int32(source.pointee.ss_family) == AF_INET
        let offset = isV4 ? MemoryLayout<sockaddr_in>.offset(of: \sockaddr_in.sin_addr)!
            : MemoryLayout<sockaddr_in6>.offset(of: \sockaddr_in6.sin6_addr)!
        return UnsafeRawPointer(source).withMemoryRebound(to: UInt8.self, capacity: MemoryLayout<sockaddr_storage>.size) {
            body(UnsafeBufferPointer(start: $0 + offset, count: isV4 ? 4 : 16))
        }
    }

    /// `source`'s address as text, for a log line.
    public static func describe(_ source: UnsafePointer<sockaddr_storage>) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = Int32(source.pointee.ss_family)
        let written = withAddressBytes(of: source) { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        guard written != nil else { return "an address of family \(family)" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public struct SourceFilterError: Error, Equatable {
    public var entry: String
    public var reason: String
}
