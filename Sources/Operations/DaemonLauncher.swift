import ArgumentParser
import DaemonMetrics
import Foundation
import Logging
import MarketData
import ServiceLifecycle
import UnixSignals
import ZeroMQ

/// Options every daemon takes (`NAME --config etc/NAME.toml`).
public struct DaemonOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's TOML configuration file.")
    public var config: String

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    public var logLevel: String = "info"

    @Option(name: .long, help: "text (for people) or json (one object per line, for log collectors).")
    public var logFormat: String = "text"

    public init() {}

    public func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: expected trace, debug, info, notice, warning, error or critical, got \"\(logLevel)\"")
        }
        guard ["text", "json"].contains(logFormat) else {
            throw ValidationError("--log-format: expected text or json, got \"\(logFormat)\"")
        }
    }
}

/// Runs a daemon's start and stop as a `Service`, so SIGTERM and SIGINT drain it gracefully.
public struct EngineService: Service {
    let start: @Sendable () async throws -> Void
    let stop: @Sendable () async -> Void
    /// The engine's control endpoint as bound (once started): what `/metrics` asks for the daemon's status.
    let controlEndpoint: @Sendable () -> String?
    /// Where to serve `/metrics` once the engine has started (nil: nowhere; edged serves it on its own port).
    var metricsListen: (host: String, port: Int)?
    /// The daemon's own keys for its control endpoint, when `[curve] operator_key_files` puts CURVE on it: what
    /// `/metrics` and SIGHUP ask it with.
    var controlCurve: CurveClientKeys?
    var logger: Logger?

    public init(start: @escaping @Sendable () async throws -> Void, stop: @escaping @Sendable () async -> Void,
        controlEndpoint: @escaping @Sendable () -> String? = { nil })
    {
        self.start = start
        self.stop = stop
        self.controlEndpoint = controlEndpoint
    }

    /// A service for an engine whose work runs on a socket thread: stopping asks the thread to end and waits for it.
    /// Its control endpoint is the one the thread bound.
    public init(start: @escaping @Sendable () throws -> Void, thread: SocketThread) {
        self.init(start: { try start() }, stop: {
            thread.stop()
            await thread.finished()
        }, controlEndpoint: { thread.boundEndpoints["control"] })
    }

    public func run() async throws {
        try await start()
        var metrics: MetricsServer?
        if let listen = metricsListen, let context = try? ZMQContext() {
            let server = MetricsServer(context: context, controlEndpoint: controlEndpoint, controlCurve: controlCurve)
            do {
                try await server.start(host: listen.host, port: listen.port)
                logger?.info("metrics served",
                    metadata: ["address": "http://\(listen.host):\(server.port ?? 0)/metrics"])
                metrics = server
            } catch {
                // The market data matters more than its metrics: the daemon runs on without them, and says so.
                logger?.error("no /metrics: cannot listen", metadata: [
                    "address": "\(listen.host):\(listen.port)", "error": "\(error)",
                ])
                await server.stop()
            }
        }
        // SIGHUP: the daemon reads its configuration again, on its own thread, through the same `reload` request
        // its control endpoint answers (`systemctl reload`, or a script).
        let reloads = Task { [controlEndpoint, controlCurve, logger] in
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                guard let endpoint = controlEndpoint(), let context = try? ZMQContext() else { continue }
                let reply = ControlClient.ask(ControlRequest(cmd: "reload"), as: ReloadReply.self, context: context,
                    endpoint: endpoint, timeoutMilliseconds: 5_000, curve: controlCurve)
                if let error = reply?.error {
                    logger?.error("SIGHUP: configuration not reloaded", metadata: ["why": "\(error)"])
                } else if reply == nil {
                    logger?.error("SIGHUP: the daemon did not answer its reload request")
                }
            }
        }
        try? await gracefulShutdown()
        reloads.cancel()
        await metrics?.stop()
        await stop()
    }
}

/// The shared `main` of feedd, plantd and edged: load and validate the configuration (exit 2 on a bad one), set up
/// logging, run the engine until a signal.
public enum DaemonLauncher {
    public static func run<Configuration: Sendable>(
        daemon: String, options: DaemonOptions,
        load: (String) throws(ConfigError) -> Configuration,
        metrics: (Configuration) -> (host: String, port: Int)? = { _ in nil },
        controlCurve: (Configuration) -> CurveClientKeys? = { _ in nil },
        makeService: (Configuration, ZMQContext, Logger) -> EngineService
    ) async throws {
        let level = Logger.Level(rawValue: options.logLevel) ?? .info
        let json = options.logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json {
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: daemon)
        let configuration: Configuration
        do {
            configuration = try load(options.config)
        } catch {
            FileHandle.standardError.write(Data("\(daemon): \(error.description)\n".utf8))
            throw ExitCode(ConfigError.exitStatus)
        }
        let context = try ZMQContext()
        var service = makeService(configuration, context, logger)
        service.metricsListen = metrics(configuration)
        service.controlCurve = controlCurve(configuration)
        service.logger = logger
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("\(daemon) failed: \(error)")
            throw ExitCode(1)
        }
    }
}
