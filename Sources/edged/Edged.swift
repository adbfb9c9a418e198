import ArgumentParser
import EdgeServer
import Operations

/// edged: the WebSocket edge (DESIGN section 8).
@main
struct Edged: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "edged", abstract: "tickplant WebSocket edge")
    @OptionGroup var options: DaemonOptions

    func run() async throws {
        try await DaemonLauncher.run(
            daemon: "edged", options: options, load: EdgeConfiguration.load, metrics: { $0.metricsListen },
            controlCurve: { $0.controlCurve?.ownClientKeys }
        ) { configuration, context, logger in
            let server = EdgeServer(configuration: configuration, context: context, logger: logger)
            return EngineService(start: { try await server.start() }, stop: { await server.stop() },
                controlEndpoint: { server.controlEndpoint })
        }
    }
}
