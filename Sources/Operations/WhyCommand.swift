import DaemonMetrics
import ArgumentParser
import Foundation
import MarketData
import TickerPlant
import ZeroMQ

/// `mktctl why SYMBOL`: the plant's latest rejections of a symbol's ticks, with the rule and the reason.
public struct WhyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "why", abstract: "Show why plantd rejected a symbol's latest bad ticks (rule, reason, tick).")

    @OptionGroup public var options: ChainOptions

    @Argument(help: "The symbol, e.g. AAPL.")
    public var symbol: String

    @Option(name: .long, help: "plantd's control endpoint instead of the one in etc/plantd.toml.")
    public var endpoint: String?

    public init() {}

    public func validate() throws {
        if let problem = SymbolRules.problem(with: symbol) { throw ValidationError("\(symbol): \(problem)") }
    }

    public func run() async throws {
        let target = try options.controlEndpoint(of: "plantd", override: endpoint)
        let context = try ZMQContext()
        guard let why = ControlClient.ask(ControlRequest(cmd: "why", symbol: symbol), as: WhyReply.self,
            context: context, endpoint: target, curve: try options.controlCurve(of: "plantd"))
        else {
            FileHandle.standardError.write(Data("mktctl why: plantd at \(target) did not answer\n".utf8))
            throw ExitCode(1)
        }
        if options.json { return try ChainOptions.printJSON(why) }
        let modes = why.modes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        guard !why.rejections.isEmpty else {
            print("\(symbol): no rejections (rules: \(modes))")
            return
        }
        print(TextTable.render(
            header: ["WHEN (UTC)", "RULE", "MODE", "TICK", "VENUE", "PRICE", "SIZE", "WHY"],
            rows: why.rejections.map {
                [GapsCommand.time($0.atNs), $0.rule.rawValue, $0.enforced ? "rejected" : "shadow", $0.type, $0.venue,
                    $0.price, "\($0.size)", $0.reason]
            }))
        print("\nrules: \(modes); rejected ticks are published on #Q|\(symbol)")
    }
}
