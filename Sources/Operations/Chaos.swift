import FeedHandler
import MarketData

/// What `mktctl sim --chaos` does to the exchange side, e.g.
/// `loss=1%,dup=0.1%,reorder=0.5%,corrupt=0.01%,badprice=0.01%,negvolume=0.01%,halt=AAPL@30s`.
/// loss, dup, reorder and corrupt apply per MoldUDP64 packet; badprice and negvolume add bad trades after market
/// events. The market itself is unchanged (chaos draws from its own generator), so a run with chaos and a clean run
/// with the same seed carry the same market.
public struct ChaosOptions: Sendable, Equatable {
    /// Packets not sent (their messages stay retransmittable).
    public var loss = 0.0
    /// Packets sent twice.
    public var duplicate = 0.0
    /// Packets held back and sent after the next one.
    public var reorder = 0.0
    /// Packets sent damaged (cut short, so that a receiver can tell; their messages stay retransmittable).
    public var corrupt = 0.0
    /// Per market event, the chance of an extra trade at a bad price (0, or ten times the symbol's price) on ITCH or a
    /// JSON venue: the plant's price filter must catch it.
    public var badPrice = 0.0
    /// Per market event, the chance of an extra ITCH trade with a bad volume. ITCH share counts are unsigned, so the
    /// bad volume a venue can really send is 0 shares: the plant's size filter must catch it.
    public var negativeVolume = 0.0
    /// Symbols halted at a time after the start and resumed `forSeconds` later (`halt=AAPL@30s`, 10 s by default, or
    /// `halt=AAPL@30s+5s`).
    public var halts: [(symbol: String, afterSeconds: Double, forSeconds: Double)] = []

    public init() {}

    public var isEmpty: Bool {
        loss == 0 && duplicate == 0 && reorder == 0 && corrupt == 0 && badPrice == 0 && negativeVolume == 0
            && halts.isEmpty
    }

    /// Whether packets are damaged on the way (as opposed to bad data inside whole packets).
    var damagesPackets: Bool { loss > 0 || duplicate > 0 || reorder > 0 || corrupt > 0 }

    public static func == (lhs: ChaosOptions, rhs: ChaosOptions) -> Bool {
        lhs.loss == rhs.loss && lhs.duplicate == rhs.duplicate && lhs.reorder == rhs.reorder
            && lhs.corrupt == rhs.corrupt && lhs.badPrice == rhs.badPrice && lhs.negativeVolume == rhs.negativeVolume
            && lhs.halts.map(\.symbol) == rhs.halts.map(\.symbol)
            && lhs.halts.map(\.afterSeconds) == rhs.halts.map(\.afterSeconds)
            && lhs.halts.map(\.forSeconds) == rhs.halts.map(\.forSeconds)
    }

    /// Parses the `--chaos` text; errors say which item is wrong and why.
    public static func parse(_ text: String) throws(ChaosParseError) -> ChaosOptions {
        var options = ChaosOptions()
        for item in text.split(separator: ",") where !item.isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ChaosParseError("\"\(item)\": expected NAME=VALUE") }
            let (name, value) = (parts[0], parts[1])
            switch name {
            case "loss": options.loss = try percentage(name, value)
            case "dup": options.duplicate = try percentage(name, value)
            case "reorder": options.reorder = try percentage(name, value)
            case "corrupt": options.corrupt = try percentage(name, value)
            case "halt":
                let halt = value.split(separator: "@").map(String.init)
                let times = halt.count == 2 ? halt[1].split(separator: "+", omittingEmptySubsequences: false).map(String.init) : []
                let seconds = times.map { $0.hasSuffix("s") ? Double($0.dropLast()) : nil }
                guard halt.count == 2, SymbolRules.problem(with: halt[0]) == nil, (1...2).contains(times.count),
                    let after = seconds[0], after >= 0, let duration = seconds.count == 2 ? seconds[1] : 10,
                    duration > 0
                else {
                    throw ChaosParseError(
                        "\"\(item)\": expected halt=SYMBOL@SECONDSs such as halt=AAPL@30s, or halt=AAPL@30s+5s to resume after 5 s")
                }
                options.halts.append((halt[0], after, duration))
            case "badprice": options.badPrice = try percentage(name, value)
            case "negvolume": options.negativeVolume = try percentage(name, value)
            default:
                throw ChaosParseError(
                    "\"\(name)\": expected loss, dup, reorder, corrupt, badprice, negvolume or halt")
            }
        }
        return options
    }

    private static func percentage(_ name: String, _ value: String) throws(ChaosParseError) -> Double {
        guard value.hasSuffix("%"), let number = Double(value.dropLast()), number >= 0, number <= 100 else {
            throw ChaosParseError("\"\(name)=\(value)\": expected a percentage such as 1% or 0.1%")
        }
        return number / 100
    }
}

public struct ChaosParseError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
