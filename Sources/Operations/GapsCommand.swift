import DaemonMetrics
import ArgumentParser
import FeedHandler
import Foundation
import MarketData
import ZeroMQ

/// `mktctl gaps`: every sequence gap feedd and plantd saw: per venue feedd's MoldUDP64 counters and the messages lost
/// for good, then each recent gap of either daemon with when it was noticed, its size, what healed it and how long
/// that took (or that it is still open).
public struct GapsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gaps", abstract: "Show sequence gaps: per feed venue, and each recent one with how it healed.")

    @OptionGroup public var options: ChainOptions

    @Option(name: .long, help: "feedd's control endpoint instead of the one in etc/feedd.toml.")
    public var endpoint: String?

    @Option(name: .long, help: "plantd's control endpoint instead of the one in etc/plantd.toml.")
    public var plant: String?

    @Option(name: .long, help: "How many of the most recent gaps to list.")
    public var last = 20

    public init() {}

    /// What `--json` prints: each daemon's reply, null for one that did not answer (or is not configured).
    struct Report: Encodable {
        var feedd: FeedGapsReply?
        var plantd: PlantGapsReply?
    }

    /// One row of the recent gaps, from either daemon.
    struct Row {
        var daemon: String
        var gap: GapEvent
    }

    public func run() async throws {
        let endpoints = endpoint != nil && plant != nil ? ChainEndpoints() : try options.loadEndpoints()
        let feedTarget = endpoint ?? endpoints.feedControl
        let plantTarget = plant ?? endpoints.plantControl
        guard feedTarget != nil || plantTarget != nil else {
            throw ValidationError("no feedd.toml or plantd.toml in \(options.etc)/ (use --etc, --endpoint or --plant)")
        }
        let context = try ZMQContext()
        let gaps = ControlRequest(cmd: "gaps")
        let feedCurve = try options.controlCurve(of: "feedd", endpoints)
        let plantCurve = try options.controlCurve(of: "plantd", endpoints)
        let feed = feedTarget.flatMap {
            ControlClient.ask(gaps, as: FeedGapsReply.self, context: context, endpoint: $0, curve: feedCurve)
        }
        let plantGaps = plantTarget.flatMap {
            ControlClient.ask(gaps, as: PlantGapsReply.self, context: context, endpoint: $0, curve: plantCurve)
        }
        var unanswered = false
        for (name, target, answered) in [("feedd", feedTarget, feed != nil), ("plantd", plantTarget, plantGaps != nil)]
        where !answered {
            guard let target else { continue }
            FileHandle.standardError.write(Data("mktctl gaps: \(name) at \(target) did not answer\n".utf8))
            unanswered = true
        }
        if options.json {
            try ChainOptions.printJSON(Report(feedd: feed, plantd: plantGaps))
        } else {
            printTables(feed: feed, plant: plantGaps)
        }
        if unanswered { throw ExitCode(1) }
    }

    private func printTables(feed: FeedGapsReply?, plant plantGaps: PlantGapsReply?) {
        if let feed {
            print(TextTable.render(
                header: ["VENUE", "SESSION", "NEXT SEQ", "OPEN", "GAPS", "HEALED", "GIVEN UP", "LOST", "REQUESTS"],
                rows: feed.venues.map {
                    [$0.venue, $0.session, "\($0.nextSequence)", $0.open ? "yes" : "no", "\($0.opened)", "\($0.healed)",
                        "\($0.givenUp)", "\($0.messagesLost)", "\($0.retransmissionRequests)"]
                }))
            if !feed.lost.isEmpty {
                print("\nMessages lost for good:")
                print(TextTable.render(
                    header: ["VENUE", "SESSION", "FROM", "TO", "COUNT", "WHEN (UTC)", "WHY"],
                    rows: feed.lost.map {
                        [$0.venue, $0.session, "\($0.firstSequence)", "\($0.lastSequence)",
                            "\($0.lastSequence - $0.firstSequence + 1)", Self.time($0.atNs), $0.reason]
                    }))
            }
        }
        let rows = ((feed?.recent ?? []).map { Row(daemon: "feedd", gap: $0) }
            + (plantGaps?.gaps ?? []).map { Row(daemon: "plantd", gap: $0) })
            .sorted { $0.gap.openedAtNs < $1.gap.openedAtNs }.suffix(max(last, 0))
        guard !rows.isEmpty else { return print("\nNo gaps.") }
        print("\nRecent gaps (oldest first):")
        print(TextTable.render(
            header: ["DAEMON", "SOURCE", "STREAM", "FROM", "TO", "SIZE", "NOTICED (UTC)", "HEALED BY", "TOOK"],
            rows: rows.map(Self.cells)))
    }

    static func cells(_ row: Row) -> [String] {
        let gap = row.gap
        // A catch-up after a restart knows where it ends only when it has.
        let known = gap.lastSequence >= gap.firstSequence
        return [row.daemon, gap.source, gap.stream, "\(gap.firstSequence)", known ? "\(gap.lastSequence)" : "?",
            known ? "\(gap.lastSequence - gap.firstSequence + 1)" : "?", time(gap.openedAtNs), gap.healedBy,
            gap.durationNs.map(LatencyCommand.duration) ?? "open"]
    }

    static func time(_ nanoseconds: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
    }
}
