import EdgeServer
import FeedHandler
import Foundation
import MarketData
import TickerPlant

/// Where mktctl finds each daemon: from the etc/ files (`--etc DIR`), read with the daemons' own loaders.
public struct ChainEndpoints: Sendable {
    public var feedControl: String?
    public var feedPublish: String?
    public var plantControl: String?
    public var plantPublish: String?
    public var plantSnapshot: String?
    /// plantd's stream and snapshot ROUTER want CURVE clients (`[curve]` in plantd.toml).
    public var plantUsesCurve = false
    /// feedd's stream and replay ROUTER want CURVE clients (`[curve]` in feedd.toml).
    public var feedUsesCurve = false
    public var edgeControl: String?
    /// Per daemon whose control endpoint has CURVE (`[curve] operator_key_files`), its public key file: the server
    /// key mktctl's control requests use.
    public var controlKeyFiles: [String: String] = [:]

    /// The control endpoint of `daemon` (feedd, plantd or edged), nil when its etc/ file is not there.
    public func control(of daemon: String) -> String? {
        switch daemon {
        case "feedd": feedControl
        case "plantd": plantControl
        case "edged": edgeControl
        default: nil
        }
    }

    /// A bind endpoint as a connect endpoint: `tcp://*:7201` and `tcp://0.0.0.0:7201` become `tcp://127.0.0.1:7201`.
    public static func connectable(_ endpoint: String) -> String {
        endpoint.replacingOccurrences(of: "tcp://*:", with: "tcp://127.0.0.1:")
            .replacingOccurrences(of: "tcp://0.0.0.0:", with: "tcp://127.0.0.1:")
    }

    /// Reads etc/feedd.toml, etc/plantd.toml and etc/edged.toml under `directory`; a file that is missing leaves its
    /// daemon unknown, a file that is wrong is an error.
    public static func load(etc directory: String) throws(ConfigError) -> ChainEndpoints {
        var endpoints = ChainEndpoints()
        let fileExists = { (name: String) in FileManager.default.fileExists(atPath: "\(directory)/\(name)") }
        if fileExists("feedd.toml") {
            let feed = try FeedConfiguration.load(file: "\(directory)/feedd.toml", readingFiles: false)
            endpoints.feedUsesCurve = feed.curve != nil
            endpoints.feedControl = connectable(feed.controlEndpoint)
            endpoints.controlKeyFiles["feedd"] = feed.controlCurve?.publicKeyFile
            endpoints.feedPublish = connectable(feed.publishEndpoint)
        }
        if fileExists("plantd.toml") {
            let plant = try PlantConfiguration.load(file: "\(directory)/plantd.toml", readingFiles: false)
            endpoints.plantUsesCurve = plant.curve != nil
            endpoints.plantControl = connectable(plant.controlEndpoint)
            endpoints.controlKeyFiles["plantd"] = plant.controlCurve?.publicKeyFile
            endpoints.plantPublish = connectable(plant.publishEndpoint)
            endpoints.plantSnapshot = connectable(plant.snapshotEndpoint)
        }
        if fileExists("edged.toml") {
            // Only its endpoints: the files it names (web, TLS, secret) are edged's business, relative to its own
            // working directory.
            let edge = try EdgeConfiguration.load(file: "\(directory)/edged.toml", readingFiles: false)
            endpoints.edgeControl = connectable(edge.controlEndpoint)
            endpoints.controlKeyFiles["edged"] = edge.controlCurve?.publicKeyFile
        }
        return endpoints
    }
}
