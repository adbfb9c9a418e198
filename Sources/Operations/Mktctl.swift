import ArgumentParser
import Foundation
import MarketData
import ZeroMQ

/// `mktctl`: the operator's tool (DESIGN section 7).
public struct Mktctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mktctl",
        abstract: "Operate a tickplant chain: status, tail, subs, latency, gaps, sim, bench and more.",
        subcommands: [
            StatusCommand.self, TailCommand.self, SubsCommand.self, LatencyCommand.self, GapsCommand.self,
            WhyCommand.self, ReloadCommand.self,
            SimCommand.self, ReplayCommand.self, BenchCommand.self, TokenCommand.self,
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

    @Option(name: .long, help: """
        Your CURVE secret key file (a .key_secret whose public key the daemons list in [curve] operator_key_files),         for control endpoints with CURVE; default: $TICKPLANT_OPERATOR_KEY.
        """)
    public var operatorKey: String?

    public init() {}

    /// The keys for `daemon`'s control endpoint: nil when its etc/ file puts no CURVE on it. The daemon's public key
    /// is the one beside its secret (`[curve] secret_key_file`); the operator's secret is `--operator-key`.
    func controlCurve(of daemon: String, _ endpoints: ChainEndpoints) throws -> CurveClientKeys? {
        guard let serverKeyFile = endpoints.controlKeyFiles[daemon] else { return nil }
        guard let secretFile = operatorKey ?? ProcessInfo.processInfo.environment["TICKPLANT_OPERATOR_KEY"] else {
            throw ValidationError("\(daemon).toml puts CURVE on its control endpoint ([curve] operator_key_files): "
                + "give --operator-key FILE (your .key_secret) or set TICKPLANT_OPERATOR_KEY")
        }
        return try CurveClientOptions.keys(serverKeyFile: serverKeyFile, secretKeyFile: secretFile)
    }

    /// `controlCurve(of:)` with the endpoints of `--etc`; nil when there is no etc/ file for `daemon`, or it cannot
    /// be read (a command given `--endpoint` asks anyway: `reload` is how an operator hears what is wrong with it).
    func controlCurve(of daemon: String) throws -> CurveClientKeys? {
        guard let endpoints = try? ChainEndpoints.load(etc: etc) else { return nil }
        return try controlCurve(of: daemon, endpoints)
    }

    /// `override` (a command's `--endpoint`), else `daemon`'s control endpoint from its etc/ file.
    func controlEndpoint(of daemon: String, override: String?) throws -> String {
        if let override { return override }
        guard let endpoint = try loadEndpoints().control(of: daemon) else {
            throw ValidationError("no \(daemon).toml in \(etc)/ (use --etc or --endpoint)")
        }
        return endpoint
    }

    /// Prints `value` as one line of JSON with sorted keys (what `--json` promises scripts); `snakeCase` for the
    /// commands whose JSON names its fields that way.
    static func printJSON(_ value: some Encodable, snakeCase: Bool = false) throws {
        print(try jsonLine(value, snakeCase: snakeCase))
    }

    static func jsonLine(_ value: some Encodable, snakeCase: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if snakeCase { encoder.keyEncodingStrategy = .convertToSnakeCase }
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

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

/// The CURVE keys mktctl uses as a client of a plantd or feedd with `[curve]` (tail, latency).
public struct CurveClientOptions: ParsableArguments {
    @Option(name: .long, help: "The server's CURVE public key file (plantd's or feedd's .key), for one with [curve].")
    public var curveServerKey: String?

    @Option(name: .long, help: "This client's CURVE secret key file (a .key_secret whose public key the server lists).")
    public var curveSecretKey: String?

    public init() {}

    /// The keys from the two files, nil when neither is given; plantd's or feedd's own stream (`from`) without
    /// them when its etc/ file says it wants CURVE is refused here, not left to wait for ticks that never come.
    func keys(from: String, options: ChainOptions) throws -> CurveClientKeys? {
        switch (curveServerKey, curveSecretKey) {
        case (nil, nil):
            guard from == "plantd" || from == "feedd" else { return nil }
            let endpoints = try options.loadEndpoints()
            if from == "plantd" ? endpoints.plantUsesCurve : endpoints.feedUsesCurve {
                throw ValidationError("\(from).toml has [curve]: give --curve-server-key and --curve-secret-key")
            }
            return nil
        case let (server?, secret?):
            return try Self.keys(serverKeyFile: server, secretKeyFile: secret)
        default:
            throw ValidationError("--curve-server-key and --curve-secret-key go together")
        }
    }

    /// A client's keys from a server's public key file and the client's secret key file.
    static func keys(serverKeyFile: String, secretKeyFile: String) throws -> CurveClientKeys {
        func read(_ path: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read \(path)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let keys = CurveClientKeys(serverKey: try read(serverKeyFile), secretKey: try read(secretKeyFile)) else {
            throw ValidationError("\(serverKeyFile) or \(secretKeyFile) is not a CURVE key (40 characters of Z85)")
        }
        return keys
    }
}
