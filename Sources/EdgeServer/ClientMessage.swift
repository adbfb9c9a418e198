import Foundation
import MarketData

/// A client message (DESIGN section 8), as its JSON reads: checked for shape here, for meaning by `subscription()`.
struct ClientMessage: Decodable {
    var action: String
    var symbol: String?
    var symbols: [String]?
    var token: String?
    var mode: String?
    var maxRate: Double?
    var fromSeq: ResumePoints?

    /// The message in `bytes`, or why it is not one (error 400).
    static func decode(_ bytes: some Collection<UInt8>) throws(ClientMessageProblem) -> ClientMessage {
        guard let message = try? JSONDecoder().decode(ClientMessage.self, from: Data(bytes)) else {
            throw ClientMessageProblem(message: "expected a JSON object with \"action\"")
        }
        return message
    }

    /// A subscribe or unsubscribe checked against the protocol, before anything that depends on the session (its
    /// token's entitlements, its symbols): every problem is error 400 with the reason.
    func subscription() throws(ClientMessageProblem) -> SubscriptionRequest {
        let requested = (symbols ?? []) + (symbol.map { [$0] } ?? [])
        guard !requested.isEmpty else {
            throw ClientMessageProblem(message: "\(action) needs \"symbol\" or \"symbols\"")
        }
        for symbol in requested {
            if let problem = SymbolRules.problem(with: symbol) {
                throw ClientMessageProblem(message: "\"\(symbol)\": \(problem)")
            }
        }
        guard action == "subscribe" else {
            return SubscriptionRequest(symbols: requested, mode: .full, maxRate: nil, resumeFrom: [:])
        }
        guard let mode = mode.map({ SubscriptionMode(rawValue: $0) }) ?? .full else {
            throw ClientMessageProblem(message: "mode \"\(mode ?? "")\": expected ltp, quote or full")
        }
        if let maxRate, !RateHeld.allowedRates.contains(maxRate) {
            throw ClientMessageProblem(message: "maxRate \(maxRate): expected updates per second from "
                + "\(RateHeld.allowedRates.lowerBound) to \(RateHeld.allowedRates.upperBound)")
        }
        let resumeFrom: [String: UInt64]
        switch fromSeq {
        case nil:
            resumeFrom = [:]
        case let .one(from) where requested.count == 1:
            resumeFrom = [requested[0]: from]
        case .one:
            throw ClientMessageProblem(
                message: "fromSeq as a number is for one symbol; for several give {\"SYMBOL\":N,...}")
        case let .bySymbol(points):
            resumeFrom = points
        }
        if let stray = resumeFrom.keys.sorted().first(where: { !requested.contains($0) }) {
            throw ClientMessageProblem(message: "fromSeq names \"\(stray)\", which this subscribe does not")
        }
        if let zero = resumeFrom.first(where: { $0.value == 0 }) {
            throw ClientMessageProblem(
                message: "fromSeq of \(zero.key): symbol_seq starts at 1 (send the last seen plus one)")
        }
        return SubscriptionRequest(symbols: requested, mode: mode, maxRate: maxRate, resumeFrom: resumeFrom)
    }
}

/// Why a client message breaks the protocol: error 400 with this reason.
struct ClientMessageProblem: Error, Equatable {
    var message: String
}

/// A subscribe or unsubscribe that keeps the protocol's rules.
struct SubscriptionRequest: Equatable {
    /// As the client named them (`symbols`, then `symbol`), repeats included.
    var symbols: [String]
    var mode: SubscriptionMode
    /// Updates per second, within `RateHeld.allowedRates`; nil: every update.
    var maxRate: Double?
    /// The first symbol_seq wanted of each symbol resumed, each a symbol of `symbols` and at least 1.
    var resumeFrom: [String: UInt64]
}

/// `"fromSeq"` of a subscribe: the first symbol_seq the client wants (its last seen plus one), a number for a
/// subscribe of one symbol or `{"AAPL":813,"MSFT":77}` for several.
enum ResumePoints: Decodable {
    case one(UInt64)
    case bySymbol([String: UInt64])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(UInt64.self) {
            self = .one(number)
        } else {
            self = .bySymbol(try container.decode([String: UInt64].self))
        }
    }
}
