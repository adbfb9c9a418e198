import DaemonMetrics
import ArgumentParser
import FeedHandler
import Foundation
import MarketData
import ZeroMQ

/// `mktctl gaps`: every MoldUDP64 gap feedd saw, per venue: how many opened, healed by retransmission, given up, and
/// the ranges of messages lost for good.
public struct GapsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gaps", abstract: "Show sequence gaps per feed venue: healed, given up, messages lost.")

    @OptionGroup public var options: ChainOptions

    @Option(name: .long, help: "feedd's control endpoint instead of the one in etc/feedd.toml.")
    public var endpoint: String?

    public init() {}

    public func run() async throws {
        let target: String
        if let endpoint {
            target = endpoint
        } else {
            guard let control = try options.loadEndpoints().feedControl else {
                throw ValidationError("no feedd.toml in \(options.etc)/ (use --etc or --endpoint)")
            }
            target = control
        }
        let context = try ZMQContext()
        guard let reply = ControlClient.request(context: context, endpoint: target, request: ControlRequest(cmd: "gaps"),
            timeoutMilliseconds: 1000),
            let gaps = try? JSONDecoder().decode(FeedGapsReply.self, from: Data(reply))
        else {
            FileHandle.standardError.write(Data("mktctl gaps: feedd at \(target) did not answer\n".utf8))
            throw ExitCode(1)
        }
        if options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(gaps), as: UTF8.self))
            return
        }
        print(TextTable.render(
            header: ["VENUE", "SESSION", "NEXT SEQ", "OPEN", "GAPS", "HEALED", "GIVEN UP", "LOST", "REQUESTS"],
            rows: gaps.venues.map {
                [$0.venue, $0.session, "\($0.nextSequence)", $0.open ? "yes" : "no", "\($0.opened)", "\($0.healed)",
                    "\($0.givenUp)", "\($0.messagesLost)", "\($0.retransmissionRequests)"]
            }))
        if !gaps.lost.isEmpty {
            print("\nMessages lost for good:")
            print(TextTable.render(
                header: ["VENUE", "SESSION", "FROM", "TO", "COUNT", "WHEN (UTC)", "WHY"],
                rows: gaps.lost.map {
                    [$0.venue, $0.session, "\($0.firstSequence)", "\($0.lastSequence)",
                        "\($0.lastSequence - $0.firstSequence + 1)", Self.time($0.atNs), $0.reason]
                }))
        }
    }

    static func time(_ nanoseconds: UInt64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
    }
}
