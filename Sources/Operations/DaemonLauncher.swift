import ArgumentParser
import Foundation
import Logging
import MarketData
import ServiceLifecycle
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

    public init(start: @escaping @Sendable () async throws -> Void, stop: @escaping @Sendable () async -> Void) {
        self.start = start
        self.stop = stop
    }

    /// A service for an engine whose work runs on a socket thread: stopping asks the thread to end and waits for it.
    public init(start: @escaping @Sendable () throws -> Void, thread: SocketThread) {
        self.init(start: { try start() }, stop: {
            thread.stop()
            await thread.finished()
        })
    }

    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await stop()
    }
}

/// The shared `main` of feedd, plantd and edged: load and validate the configuration (exit 2 on a bad one), set up
/// logging, run the engine until a signal.
public enum DaemonLauncher {
    public static func run<Configuration: Sendable>(
        daemon: String, options: DaemonOptions,
        load: (String) throws(ConfigError) -> Configuration,
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
        let service = makeService(configuration, context, logger)
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
