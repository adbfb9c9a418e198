import ArgumentParser
import Foundation
import MarketData

/// `mktctl`: the operator's tool (DESIGN section 7).
public struct Mktctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mktctl",
        abstract: "Operate a tickplant chain: status, tail, subs, latency, gaps, sim, bench and more.",
        subcommands: [
            StatusCommand.self, TailCommand.self, SubsCommand.self, LatencyCommand.self, GapsCommand.self,
            WhyCommand.self, SimCommand.self, ReplayCommand.self, BenchCommand.self, TokenCommand.self,
            KeygenCommand.self, CheckConfigCommand.self,
        ])

    public init() {}
}

/// Options shared by the commands that find daemons: `--etc DIR` or `--endpoint`.
public struct ChainOptions: ParsableArguments {
    @Option(name: .long, help: "Directory of the daemons' TOML files, to find their endpoints.")
    public var etc: String = "etc"

    @Flag(name: .long, help: "Machine-readable output: one JSON object per line.")
    public var json = false

    public init() {}

    /// The daemons' endpoints from `--etc`; a bad file exits with status 2 like the daemons do.
    func loadEndpoints() throws -> ChainEndpoints {
        do {
            return try ChainEndpoints.load(etc: etc)
        } catch {
            FileHandle.standardError.write(Data("mktctl: \(error.description)\n".utf8))
            throw ExitCode(ConfigError.exitStatus)
        }
    }
}
