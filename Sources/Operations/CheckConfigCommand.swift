import ArgumentParser
import EdgeServer
import FeedHandler
import Foundation
import MarketData
import TickerPlant

/// Which program a configuration file is for.
public enum ConfigKind: String, CaseIterable, Codable, ExpressibleByArgument, Sendable {
    case feedd, plantd, edged, sim

    /// The kind a file's tables say (`[feed]` or `[[venues]]`, `[plant]`, `[edge]`, `[sim]`), else its name's
    /// beginning (`feedd-nyc.toml`); nil when neither tells.
    static func of(file: String) -> ConfigKind? {
        if let root = try? ConfigReader.load(file: file) {
            if root.has("feed") || root.has("venues") { return .feedd }
            if root.has("plant") { return .plantd }
            if root.has("edge") { return .edged }
            if root.has("sim") { return .sim }
        }
        let name = URL(fileURLWithPath: file).lastPathComponent
        return allCases.first { name.hasPrefix($0.rawValue) }
    }

    /// Loads the file as the program does at start (reading the files it names: certificates, secrets, the web
    /// directory), without starting anything.
    func validate(file: String) throws(ConfigError) {
        switch self {
        case .feedd: _ = try FeedConfiguration.load(file: file)
        case .plantd: _ = try PlantConfiguration.load(file: file)
        case .edged: _ = try EdgeConfiguration.load(file: file)
        case .sim: _ = try SimConfiguration.load(file: file)
        }
    }
}

/// `mktctl check-config FILE...`: each file checked by the loader of the daemon it configures, exactly as that daemon
/// checks it at start; exit status 2 when any is wrong, as the daemon would.
public struct CheckConfigCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check etc/ files as their daemons would at start, without starting anything.",
        discussion: """
            Each file is read by the loader of the program it configures (told by its tables: [feed] or [[venues]], \
            [plant], [edge], [sim]; else by its name, feedd*.toml and so on; else --as). Unknown keys, values out of \
            range, files named that cannot be read: each is reported with its key and reason. Relative paths in a \
            file are taken from the working directory, as the daemon takes them.
            """)

    @Argument(help: "The files to check.")
    public var files: [String]

    @Option(name: .customLong("as"), help: "Check every file as this program's: feedd, plantd, edged or sim.")
    public var kind: ConfigKind?

    @Flag(name: .long, help: "Machine-readable output: one JSON object per file.")
    public var json = false

    public init() {}

    struct Result: Codable {
        var file: String
        var daemon: String?
        var ok: Bool
        var key: String?
        var reason: String?
    }

    public func validate() throws {
        if files.isEmpty { throw ValidationError("give the files to check, e.g. mktctl check-config etc/*.toml") }
    }

    public func run() throws {
        let results = files.map { file -> Result in
            guard let kind = kind ?? ConfigKind.of(file: file) else {
                return Result(file: file, daemon: nil, ok: false, key: nil,
                    reason: "cannot tell which program it is for (no [feed], [plant], [edge] or [sim]); use --as")
            }
            do throws(ConfigError) {
                try kind.validate(file: file)
                return Result(file: file, daemon: kind.rawValue, ok: true)
            } catch {
                return Result(file: file, daemon: kind.rawValue, ok: false, key: error.key.isEmpty ? nil : error.key,
                    reason: error.reason)
            }
        }
        if json {
            for result in results { try ChainOptions.printJSON(result) }
        } else {
            let rows = results.map { result in
                [result.file, result.daemon ?? "?",
                    result.ok ? "ok" : [result.key, result.reason].compactMap { $0 }.joined(separator: ": ")]
            }
            print(TextTable.render(header: ["FILE", "FOR", "RESULT"], rows: rows))
        }
        if results.contains(where: { !$0.ok }) { throw ExitCode(ConfigError.exitStatus) }
    }
}
