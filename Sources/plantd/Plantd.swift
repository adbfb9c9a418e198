import ArgumentParser
import Operations
import TickerPlant

/// plantd: the ticker plant (DESIGN section 6).
@main
struct Plantd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plantd", abstract: "tickplant ticker plant")
    @OptionGroup var options: DaemonOptions

    func run() async throws {
        try await DaemonLauncher.run(daemon: "plantd", options: options, load: PlantConfiguration.load, metrics: { $0.metricsListen },
            controlCurve: { $0.controlCurve?.ownClientKeys }) {
            configuration, context, logger in
            let engine = PlantEngine(configuration: configuration, context: context, logger: logger,
                configurationFile: options.config)
            return EngineService(start: engine.start, thread: engine.thread)
        }
    }
}
