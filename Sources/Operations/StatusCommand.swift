import DaemonMetrics
import ArgumentParser
import Foundation
import MarketData
import ZeroMQ

/// `mktctl status`: one table of every daemon, up or down, with its open and healed gaps; exit status 1 when one is
/// down.
public struct StatusCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show every daemon of the chain: up or down, rates, drops, gaps, clients.")

    @OptionGroup public var options: ChainOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Ask these control endpoints instead of the etc/ files.")
    public var endpoint: [String] = []

    @Option(name: .long, help: "Milliseconds to wait for each daemon.")
    public var timeout: Int = 1000

    public init() {}

    public func run() async throws {
        var targets: [(daemon: String, endpoint: String)] = []
        var endpoints = ChainEndpoints()
        if endpoint.isEmpty {
            endpoints = try options.loadEndpoints()
            if let control = endpoints.feedControl { targets.append(("feedd", control)) }
            if let control = endpoints.plantControl { targets.append(("plantd", control)) }
            if let control = endpoints.edgeControl { targets.append(("edged", control)) }
            guard !targets.isEmpty else {
                throw ValidationError("no daemon configuration found in \(options.etc)/ (use --etc or --endpoint)")
            }
        } else {
            targets = endpoint.map { ("?", $0) }
        }
        let context = try ZMQContext()
        var rows: [StatusRow] = []
        for target in targets {
            if let status = ControlClient.status(context: context, endpoint: target.endpoint,
                timeoutMilliseconds: Int32(timeout), curve: try options.controlCurve(of: target.daemon, endpoints))
            {
                rows.append(StatusRow(daemon: status.daemon, endpoint: target.endpoint, up: true, status: status))
            } else {
                rows.append(StatusRow(daemon: target.daemon, endpoint: target.endpoint, up: false, status: nil))
            }
        }
        if options.json {
            for row in rows { try ChainOptions.printJSON(row) }
        } else {
            print(StatusRow.table(rows, colour: TerminalColour.wanted))
        }
        if rows.contains(where: { !$0.up }) { throw ExitCode(1) }
    }
}

struct StatusRow: Codable {
    var daemon: String
    var endpoint: String
    var up: Bool
    var status: DaemonStatus?

    /// The table; with `colour`, DOWN and a quality other than OK in red or yellow, up in green.
    static func table(_ rows: [StatusRow], colour: Bool = false) -> String {
        let header = ["DAEMON", "NAME", "VERSION", "STATE", "UPTIME", "IN", "IN/S", "OUT", "OUT/S", "DROPS", "GAPS",
            "HEALED", "LOST", "CLIENTS", "QUALITY", "ENDPOINT"]
        let lines = rows.map { row -> [String] in
            guard let status = row.status else {
                return [row.daemon, "-", "-", "DOWN"] + Array(repeating: "-", count: header.count - 5) + [row.endpoint]
            }
            return [status.daemon, status.name, status.version, "up", formatDuration(status.uptimeSeconds),
                "\(status.messagesIn)", String(format: "%.0f", status.rateIn), "\(status.messagesOut)",
                String(format: "%.0f", status.rateOut), "\(status.drops)", "\(status.gapsOpen)", "\(status.gapsHealed)",
                lost(status), status.clients.map(String.init) ?? "-", worstQuality(status) ?? "-", row.endpoint]
        }
        let table = TextTable.render(header: header, rows: lines)
        guard colour else { return table }
        // Colour after the columns are laid out, so that the escape codes do not count as width.
        return table.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map { index, line in
            guard index > 0 else { return String(line) }
            var text = String(line)
            for (word, code) in [(" DOWN ", TerminalColour.red), (" up ", TerminalColour.green)] {
                text = text.replacingOccurrences(of: word, with: " " + code + word.dropFirst().dropLast()
                    + TerminalColour.reset + " ")
            }
            for bad in ["JOURNAL", "STALE", "GAP", "RECOVERING"] {
                text = text.replacingOccurrences(of: "  \(bad) ", with: "  " + TerminalColour.yellow + bad
                    + TerminalColour.reset + " ")
            }
            return text
        }.joined(separator: "\n")
    }

    /// plantd's worst symbol quality and how many symbols have it (`STALE 3`), `OK` when every symbol is; nil for
    /// a daemon that does not keep qualities. A journal whose latest write or fsync failed comes first
    /// (`JOURNAL FAILING`): what is published may not survive a restart.
    static func worstQuality(_ status: DaemonStatus) -> String? {
        guard status.counters["symbols.ok"] != nil else { return nil }
        if status.counters["journal.failing"] == 1 { return "JOURNAL FAILING" }
        for quality in ["gap", "recovering", "stale"] {
            if let count = status.counters["symbols.\(quality)"], count > 0 { return "\(quality.uppercased()) \(count)" }
        }
        return "OK"
    }

    /// Messages lost in gaps that were given up, with how many gaps (`4611686018427254246 in 1 gap`); `-` for a
    /// daemon that does not recover gaps.
    static func lost(_ status: DaemonStatus) -> String {
        guard let messages = status.messagesLost, let gaps = status.gapsGivenUp else { return "-" }
        return gaps == 0 ? "0" : "\(messages) in \(gaps) gap\(gaps == 1 ? "" : "s")"
    }

    static func formatDuration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
        return "\(whole / 3600)h\(whole / 60 % 60)m"
    }
}

/// Left-aligned columns separated by two spaces.
enum TextTable {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// ANSI colours for tables on a terminal: only when standard output is one and NO_COLOR is not set.
enum TerminalColour {
    static var wanted: Bool { isatty(1) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }
    static let red = "\u{1B}[31m"
    static let green = "\u{1B}[32m"
    static let yellow = "\u{1B}[33m"
    static let reset = "\u{1B}[0m"
}
