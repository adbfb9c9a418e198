import ArgumentParser
import DaemonMetrics
import Foundation
import MarketData
import ZeroMQ

/// `mktctl reload [DAEMON]`: a daemon reads its configuration file again (what SIGHUP and `systemctl reload` do), and
/// says what took effect and what waits for a restart.
public struct ReloadCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make a daemon read its configuration again: what took effect, what needs a restart.",
        discussion: "plantd applies [filters] at once; feedd and edged take their files only at start and say so.")

    @OptionGroup public var options: ChainOptions

    @Argument(help: "plantd, feedd or edged.")
    public var daemon: String = "plantd"

    @Option(name: .long, help: "The daemon's control endpoint instead of the one in its etc/ file.")
    public var endpoint: String?

    public init() {}

    public func validate() throws {
        guard ["plantd", "feedd", "edged"].contains(daemon) else {
            throw ValidationError("expected plantd, feedd or edged, got \"\(daemon)\"")
        }
    }

    public func run() async throws {
        let target = try options.controlEndpoint(of: daemon, override: endpoint)
        let context = try ZMQContext()
        guard let reply = ControlClient.ask(ControlRequest(cmd: "reload"), as: ReloadReply.self, context: context,
            endpoint: target, timeoutMilliseconds: 5_000, curve: try options.controlCurve(of: daemon))
        else {
            FileHandle.standardError.write(Data("mktctl reload: \(daemon) at \(target) did not answer\n".utf8))
            throw ExitCode(1)
        }
        if options.json {
            try ChainOptions.printJSON(reply)
        } else if let error = reply.error {
            print("\(daemon): not reloaded: \(error)")
        } else {
            print("\(daemon): read \(reply.file) again")
            let applied =
                reply.applied.isEmpty ? "nothing changed that applies now" : reply.applied.joined(separator: ", ")
            print("  applied:       \(applied)")
            if !reply.needsRestart.isEmpty {
                print("  needs restart: \(reply.needsRestart.joined(separator: ", "))")
            }
        }
        if reply.error != nil { throw ExitCode(1) }
    }
}
