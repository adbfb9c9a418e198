import ArgumentParser
import FeedHandler
import Operations

/// feedd: receives one or more venues' feeds, normalizes them and publishes ticks (DESIGN section 2).
@main
struct Feedd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "feedd", abstract: "tickplant feed handler")
    @OptionGroup var options: DaemonOptions

    func run() async throws {
        try await DaemonLauncher.run(daemon: "feedd", options: options, load: FeedConfiguration.load, metrics: { $0.metricsListen },
            controlCurve: { $0.controlCurve?.ownClientKeys }) {
            configuration, context, logger in
            let engine = FeedEngine(configuration: configuration, context: context, logger: logger)
            return EngineService(start: engine.start, thread: engine.thread)
        }
    }
}
