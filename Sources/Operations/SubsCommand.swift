import DaemonMetrics
import ArgumentParser
import EdgeServer
import Foundation
import MarketData
import TickerPlant
import ZeroMQ

/// `mktctl subs`: who watches what. Per symbol, the WebSocket clients edged has on it, the subscriptions plantd holds
/// that cover it, and its ticks per second; the top symbols by clients and by rate; every prefix plantd is subscribed
/// to (DESIGN section 7).
public struct SubsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "subs",
        abstract: "Show who watches what: edge clients and plant subscriptions per symbol, top symbols.")

    @OptionGroup public var options: ChainOptions

    @Option(name: .long, help: "Symbols in each top list.")
    public var top: Int = 20

    @Option(name: .long, help: "Seconds between plantd's two counts that give each symbol's rate.")
    public var window: Double = 1

    @Option(name: .long, help: "Milliseconds to wait for each daemon.")
    public var timeout: Int = 1000

    public init() {}

    public func validate() throws {
        guard top > 0 else { throw ValidationError("--top must be at least 1") }
        guard window > 0 && window <= 60 else {
            throw ValidationError("--window must be above 0 and at most 60 seconds")
        }
    }

    /// One symbol's line.
    struct SymbolRow: Codable, Equatable {
        var symbol: String
        /// WebSocket clients of edged watching it (nil: edged not asked or down).
        var clients: Int?
        /// plantd's subscriptions whose prefix covers the symbol's topics (edged's, raw consumers').
        var plantSubscribers: Int
        var ticksPerSecond: Double?
    }

    struct Report: Codable {
        var byClients: [SymbolRow]
        var byRate: [SymbolRow]
        /// Every prefix plantd's XPUB is subscribed to, with how many subscribers hold it.
        var plantPrefixes: [String: Int]
        var down: [String]
    }

    public func run() async throws {
        let endpoints = try options.loadEndpoints()
        guard endpoints.plantControl != nil || endpoints.edgeControl != nil else {
            throw ValidationError("no plantd.toml or edged.toml in \(options.etc)/ (use --etc)")
        }
        let context = try ZMQContext()
        let curves = [
            "edged": try options.controlCurve(of: "edged", endpoints),
            "plantd": try options.controlCurve(of: "plantd", endpoints),
        ]
        var down: [String] = []
        func ask<Reply: Decodable>(_ daemon: String, _ endpoint: String?, as type: Reply.Type) -> Reply? {
            guard let endpoint else { return nil }
            let reply = ControlClient.ask(ControlRequest(cmd: "subs"), as: Reply.self, context: context,
                endpoint: endpoint, timeoutMilliseconds: Int32(timeout), curve: curves[daemon] ?? nil)
            if reply == nil { down.append(daemon) }
            return reply
        }
        let edge = ask("edged", endpoints.edgeControl, as: EdgeSubscriptionsReply.self)
        let plantBefore = ask("plantd", endpoints.plantControl, as: SubscriptionsReply.self)
        var plantAfter: SubscriptionsReply?
        if plantBefore != nil {
            try await Task.sleep(for: .milliseconds(Int(window * 1000)))
            plantAfter = ask("plantd", endpoints.plantControl, as: SubscriptionsReply.self)
        }
        let report = Self.report(edge: edge, plantBefore: plantBefore, plantAfter: plantAfter, seconds: window,
            top: top, down: down)
        if options.json {
            try ChainOptions.printJSON(report, snakeCase: true)
        } else {
            print(Self.render(report))
        }
        if !report.down.isEmpty { throw ExitCode(1) }
    }

    /// The rows from the daemons' replies: every symbol edged watches or plantd published during the window.
    static func report(
        edge: EdgeSubscriptionsReply?, plantBefore: SubscriptionsReply?, plantAfter: SubscriptionsReply?,
        seconds: Double, top: Int, down: [String]
    ) -> Report {
        let prefixes = (plantAfter ?? plantBefore)?.prefixes ?? [:]
        let before = plantBefore?.published ?? [:]
        let after = plantAfter?.published ?? [:]
        var symbols = Set(edge.map { Array($0.symbols.keys) } ?? [])
        for (symbol, count) in after where count > (before[symbol] ?? 0) { symbols.insert(symbol) }
        let rows = symbols.map { symbol in
            let published = (after[symbol] ?? 0) - min(before[symbol] ?? 0, after[symbol] ?? 0)
            return SymbolRow(
                symbol: symbol, clients: edge.map { $0.symbols[symbol] ?? 0 },
                plantSubscribers: prefixes.filter { covers($0.key, symbol) }.values.reduce(0, +),
                ticksPerSecond: plantAfter == nil ? nil : Double(published) / seconds)
        }
        let byClients = rows.filter { ($0.clients ?? 0) > 0 }.sorted {
            ($0.clients ?? 0, $0.ticksPerSecond ?? 0, $1.symbol) > ($1.clients ?? 0, $1.ticksPerSecond ?? 0, $0.symbol)
        }
        let byRate = rows.filter { ($0.ticksPerSecond ?? 0) > 0 }.sorted {
            ($0.ticksPerSecond ?? 0, $1.symbol) > ($1.ticksPerSecond ?? 0, $0.symbol)
        }
        return Report(byClients: Array(byClients.prefix(top)), byRate: Array(byRate.prefix(top)),
            plantPrefixes: prefixes, down: down)
    }

    /// Whether a subscription prefix receives some of the symbol's topics (`SYMBOL|T`): `AAPL|`, `AAPL|T`, `AA`
    /// and the empty prefix all do for AAPL; `AAPLX|` does not.
    static func covers(_ prefix: String, _ symbol: String) -> Bool {
        let topic = symbol + "|"
        return topic.hasPrefix(prefix) || prefix.hasPrefix(topic)
    }

    static func render(_ report: Report) -> String {
        func cells(_ row: SymbolRow) -> [String] {
            [row.symbol, row.clients.map(String.init) ?? "-", String(row.plantSubscribers),
                row.ticksPerSecond.map { String(format: "%.1f", $0) } ?? "-"]
        }
        let header = ["SYMBOL", "EDGE CLIENTS", "PLANT SUBS", "TICKS/S"]
        var sections: [String] = []
        sections.append("Top symbols by edge clients\n"
            + (report.byClients.isEmpty ? "(no client watches anything)"
                : TextTable.render(header: header, rows: report.byClients.map(cells))))
        sections.append("Top symbols by rate\n"
            + (report.byRate.isEmpty ? "(no tick in the window)"
                : TextTable.render(header: header, rows: report.byRate.map(cells))))
        let prefixes = report.plantPrefixes.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        sections.append("plantd's subscriptions (prefix, subscribers)\n"
            + (prefixes.isEmpty ? "(none)"
                : TextTable.render(header: ["PREFIX", "SUBSCRIBERS"],
                    rows: prefixes.map { [$0.key.isEmpty ? "(everything)" : $0.key, String($0.value)] })))
        if !report.down.isEmpty { sections.append("DOWN: " + report.down.joined(separator: ", ")) }
        return sections.joined(separator: "\n\n")
    }
}
