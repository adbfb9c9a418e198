import Glibc
import Logging
import MarketData
import NIOHTTP1
import Synchronization

/// What edged checks of a connection before its WebSocket upgrade (`[limits]` and `[edge] allowed_origins`): at
/// accept, how many connections have not finished their upgrade (`pending_handshakes`) and how many one source
/// address holds (`connections_per_address`); at the upgrade, the browser's Origin. A refusal at accept costs a
/// write and a close on the accepting thread, never a NIO channel: a flood of sockets stays cheap.
final class ConnectionAdmission: Sendable {
    struct Limits: Sendable {
        /// Connections accepted that have not upgraded yet (or answered their plain HTTP request); 0: no cap.
        var pendingHandshakes = 0
        /// Connections, upgraded or not, from one source address; 0: no cap (behind a load balancer every client
        /// comes from its address).
        var perAddress = 0
    }

    /// Why a connection was refused at accept, and the HTTP answer it gets before the close.
    enum Refusal: Error {
        case tooManyPendingHandshakes
        case tooManyFromAddress

        var response: String {
            switch self {
            case .tooManyPendingHandshakes:
                Self.http("503 Service Unavailable", "too many connections are being set up; try again shortly\n")
            case .tooManyFromAddress:
                Self.http("429 Too Many Requests", "too many connections from your address\n")
            }
        }

        private static func http(_ status: String, _ body: String) -> String {
            "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Connection: close\r\n\r\n\(body)"
        }
    }

    private struct State {
        var pending = 0
        var byAddress: [String: Int] = [:]
        var refusalLog = LogRateLimiter(interval: .seconds(10))
        var originLog = LogRateLimiter(interval: .seconds(10))
    }

    let limits: Limits
    let origins: OriginPolicy
    private let state = Mutex(State())
    private let logger: Logger
    /// Refused at accept: over `pending_handshakes`, over `connections_per_address`; refused at the upgrade: an
    /// Origin not allowed (HTTP 403).
    let handshakesRefused = Atomic<UInt64>(0)
    let addressRefused = Atomic<UInt64>(0)
    let originsRefused = Atomic<UInt64>(0)

    init(limits: Limits, origins: OriginPolicy, logger: Logger) {
        self.limits = limits
        self.origins = origins
        self.logger = logger
    }

    /// Connections accepted that have not finished their upgrade.
    var pendingHandshakes: Int { state.withLock { $0.pending } }

    /// Counts a connection from `address` in, or says why not (counted and logged at a rate limit).
    func admit(_ address: String) -> Result<AdmittedConnection, Refusal> {
        let limits = self.limits
        let verdict: (Refusal?, UInt64?) = state.withLock { state in
            var refusal: Refusal?
            if limits.pendingHandshakes > 0 && state.pending >= limits.pendingHandshakes {
                refusal = .tooManyPendingHandshakes
            } else if limits.perAddress > 0 && state.byAddress[address, default: 0] >= limits.perAddress {
                refusal = .tooManyFromAddress
            }
            guard let refusal else {
                state.pending += 1
                state.byAddress[address, default: 0] += 1
                return (nil, nil)
            }
            return (refusal, state.refusalLog.admit())
        }
        guard let refusal = verdict.0 else { return .success(AdmittedConnection(address: address, admission: self)) }
        switch refusal {
        case .tooManyPendingHandshakes: handshakesRefused.wrappingAdd(1, ordering: .relaxed)
        case .tooManyFromAddress: addressRefused.wrappingAdd(1, ordering: .relaxed)
        }
        if let heldBack = verdict.1 {
            logger.warning("connection refused before its upgrade", metadata: [
                "address": "\(address)",
                "why": "\(refusal == .tooManyPendingHandshakes ? "pending_handshakes (\(limits.pendingHandshakes)) reached" : "connections_per_address (\(limits.perAddress)) reached")",
                "similar_not_logged": "\(heldBack)",
            ])
        }
        return .failure(refusal)
    }

    /// The upgrade request `head` from `address`: nil when its Origin may connect, else the 403 answer's text.
    func refusal(ofOriginIn head: HTTPRequestHead, from address: String?) -> String? {
        let origin = head.headers.first(name: "Origin")
        guard !origins.allows(origin: origin, host: head.headers.first(name: "Host")) else { return nil }
        originsRefused.wrappingAdd(1, ordering: .relaxed)
        if let heldBack = state.withLock({ $0.originLog.admit() }) {
            logger.warning("WebSocket upgrade refused: its Origin is not allowed", metadata: [
                "origin": "\(origin ?? "")", "address": "\(address ?? "?")", "similar_not_logged": "\(heldBack)",
            ])
        }
        return "the origin \(origin ?? "") may not connect here ([edge] allowed_origins)\n"
    }

    fileprivate func handshakeEnded() { state.withLock { $0.pending -= 1 } }

    fileprivate func connectionClosed(_ address: String) {
        state.withLock { state in
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
        }
    }

    /// Answers a refused connection (best effort: a fresh socket's send buffer takes a few hundred bytes) and
    /// closes it. What the client sent is read first, so that the close does not reset the connection before the
    /// answer is read.
    static func refuse(_ descriptor: Int32, _ refusal: Refusal) {
        var discard = [UInt8](repeating: 0, count: 4_096)
        _ = recv(descriptor, &discard, discard.count, Int32(MSG_DONTWAIT))
        let response = Array(refusal.response.utf8)
        _ = response.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        shutdown(descriptor, Int32(SHUT_WR))
        close(descriptor)
    }
}

/// A connection `ConnectionAdmission` let in: its handshake ends (upgraded, answered or closed) once, and it closes
/// once, whichever of the paths that may report it does first.
final class AdmittedConnection: Sendable {
    let address: String
    private let admission: ConnectionAdmission
    private let handshakeOpen = Atomic<Bool>(true)
    private let open = Atomic<Bool>(true)

    fileprivate init(address: String, admission: ConnectionAdmission) {
        self.address = address
        self.admission = admission
    }

    func handshakeEnded() {
        if handshakeOpen.exchange(false, ordering: .relaxed) { admission.handshakeEnded() }
    }

    func closed() {
        handshakeEnded()
        if open.exchange(false, ordering: .relaxed) { admission.connectionClosed(address) }
    }
}

/// Which web pages' scripts may open a WebSocket here (`[edge] allowed_origins`). A browser names the page's origin
/// in `Origin`; other clients send none and are let in (the Origin check guards browsers' users from other sites,
/// not edged from programs). Allowed: no Origin, an Origin naming the host the request was sent to (the demo page
/// edged serves itself, or the site behind the same load balancer), one on the list, or any when the list holds
/// "*". Without it, any site a user visits could read the market data through the user's browser and network.
struct OriginPolicy: Sendable {
    /// Lower-cased origins, `scheme://host[:port]`; "*" for any.
    var allowed: Set<String> = []

    func allows(origin: String?, host: String?) -> Bool {
        guard let origin else { return true }
        let lowered = origin.lowercased()
        if allowed.contains("*") || allowed.contains(lowered) { return true }
        guard let host, let separator = lowered.range(of: "://") else { return false }
        return lowered[separator.upperBound...] == host.lowercased()
    }

    /// Why `entry` cannot be an allowed origin; nil when it can.
    static func problem(with entry: String) -> String? {
        if entry == "*" { return nil }
        guard let separator = entry.range(of: "://"),
            ["http", "https"].contains(entry[..<separator.lowerBound].lowercased())
        else { return "expected \"*\" or origins such as \"https://www.example.com\"" }
        let authority = entry[separator.upperBound...]
        if authority.isEmpty || authority.contains("/") || authority.contains("?") || authority.contains("#") {
            return "expected origins as scheme://host[:port], without a path or a trailing slash"
        }
        return nil
    }
}
