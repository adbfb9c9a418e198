import DaemonMetrics
import Foundation
import Glibc
import MarketData
import Operations
import Synchronization
import ZeroMQ

/// The real executables of the chain (sim -> feedd -> plantd -> edged) on ephemeral ports, with etc/ files written
/// for them in a temporary directory. Every process it starts is stopped by `stop()`.
final class Chain {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Where `swift build` put the executables: beside the test bundle, or TICKPLANT_BIN_DIR.
    static let binDirectory: URL = {
        if let override = ProcessInfo.processInfo.environment["TICKPLANT_BIN_DIR"] { return URL(fileURLWithPath: override) }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = bundle.deletingLastPathComponent()
        while directory.path != "/" && !FileManager.default.fileExists(atPath: directory.appendingPathComponent("plantd").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory
    }()

    static let python: String = ProcessInfo.processInfo.environment["TICKPLANT_PYTHON"]
        ?? packageRoot.appendingPathComponent(".venv/bin/python").path

    let directory: URL
    let etc: URL
    private(set) var processes: [String: Process] = [:]
    let ports: [String: Int]
    /// The keys to ask each daemon's control endpoint with, for a test that puts CURVE on them.
    var controlKeys: [String: CurveClientKeys] = [:]

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-e2e-\(UUID().uuidString)")
        etc = directory.appendingPathComponent("etc")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        var ports: [String: Int] = [:]
        for name in ["feed_pub", "feed_ctl", "feed_replay", "plant_pub", "plant_snap", "plant_ctl", "edge_http",
            "edge_ctl", "json_a", "json_b", "retrans", "feed_metrics", "plant_metrics", "edge_metrics"]
        {
            ports[name] = try Chain.freePort(udp: false)
        }
        ports["itch"] = try Chain.freePort(udp: true)
        self.ports = ports
        try writeConfigurations()
    }

    deinit { stop() }

    func endpoint(_ name: String) -> String { "tcp://127.0.0.1:\(ports[name]!)" }

    private func writeConfigurations() throws {
        let journalPlant = """
            [plant]
            feeds = ["\(endpoint("feed_pub"))"]
            replays = ["\(endpoint("feed_replay"))"]
            publish = "\(endpoint("plant_pub"))"
            snapshot = "\(endpoint("plant_snap"))"
            control = "\(endpoint("plant_ctl"))"
            metrics = "127.0.0.1:\(ports["plant_metrics"]!)"
            heartbeat_interval = "500ms"

            # Consumers repair their gaps from the replay ring: deep enough for the whole crash test.
            replay_ticks = 5000000

            [journal]
            directory = "\(directory.appendingPathComponent("journal").path)"
            """
        let files = [
            "feedd.toml": """
                [feed]
                publish = "\(endpoint("feed_pub"))"
                replay = "\(endpoint("feed_replay"))"
                control = "\(endpoint("feed_ctl"))"
                metrics = "127.0.0.1:\(ports["feed_metrics"]!)"
                reconnect_initial = "50ms"
                reconnect_max = "300ms"

                [[venues]]
                venue = "XNAS"
                protocol = "itch-moldudp64"
                listen = "127.0.0.1:\(ports["itch"]!)"
                retransmission = "127.0.0.1:\(ports["retrans"]!)"

                [[venues]]
                venue = "ARCX"
                protocol = "json-a"
                connect = "127.0.0.1:\(ports["json_a"]!)"

                [[venues]]
                venue = "BATS"
                protocol = "json-b"
                connect = "127.0.0.1:\(ports["json_b"]!)"
                """,
            "plantd.toml": """
                [plant]
                feeds = ["\(endpoint("feed_pub"))"]
                publish = "\(endpoint("plant_pub"))"
                snapshot = "\(endpoint("plant_snap"))"
                control = "\(endpoint("plant_ctl"))"
                metrics = "127.0.0.1:\(ports["plant_metrics"]!)"
                heartbeat_interval = "500ms"

                [filters]
                unsized_venues = ["ARCX", "BATS"]
                """,
            // plantd with a journal and feedd's replay ROUTER: what the crash test restarts.
            "plantd-journal.toml": journalPlant,
            // The same for the reference consumers' test, with bars of 1 s only and venues stale only after a
            // minute, so that nothing is published once the market stops (a minute bar, a STALE) and the consumers'
            // last values can be held to the plant's snapshot.
            "plantd-consumers.toml": journalPlant + """

                [aggregation]
                bars = ["1s"]
                stale_after = "60s"
                """,
            "edged.toml": """
                [edge]
                listen = "127.0.0.1:\(ports["edge_http"]!)"
                upstream = "\(endpoint("plant_pub"))"
                snapshot = "\(endpoint("plant_snap"))"
                control = "\(endpoint("edge_ctl"))"
                metrics = "127.0.0.1:\(ports["edge_metrics"]!)"
                web = "\(Chain.packageRoot.appendingPathComponent("web").path)"

                [clients]
                heartbeat_interval = "1s"
                """,
            "sim.toml": simulator("symbols = 200\nrate = 3000\nseed = 7"),
            // ITCH only, so that what the market sends does not depend on when the JSON venues connect.
            "sim-itch.toml": simulator("symbols = 300\nrate = 100000\nseed = 11\njson_share = 0"),
        ]
        for (name, text) in files {
            try text.write(to: etc.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
    }

    /// A simulator configuration with these `[sim]` lines, sending to this chain's feedd.
    private func simulator(_ market: String) -> String {
        """
        [sim]
        \(market)

        [itch]
        destination = "127.0.0.1:\(ports["itch"]!)"
        retransmission = "127.0.0.1:\(ports["retrans"]!)"

        [json_a]
        listen = "127.0.0.1:\(ports["json_a"]!)"

        [json_b]
        listen = "127.0.0.1:\(ports["json_b"]!)"
        """
    }

    /// The next port to try, below the kernel's ephemeral range (32768 and up on Linux): the ports a chain writes into
    /// its configuration files are bound later by the executables, and other tests running meanwhile take ephemeral
    /// ports (port 0); picking from the kernel's own range, one of them could take a port in between.
    private static let nextPort = Mutex(20_000 + Int(getpid() % 1_000) * 10)

    /// A port below the ephemeral range that nobody listens on now, for the configuration files.
    static func freePort(udp: Bool) throws -> Int {
        for _ in 0..<2_000 {
            let port = nextPort.withLock { port in
                defer { port = port + 1 >= 32_000 ? 20_000 : port + 1 }
                return port
            }
            if canBind(port: port, udp: udp) && canBind(port: port, udp: !udp) { return port }
        }
        throw ChainError("could not find a free port below 32000")
    }

    private static func canBind(port: Int, udp: Bool) -> Bool {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        return withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    // MARK: Processes

    /// Starts an executable of the chain (or any program), its output in `<name>.log` of the test directory.
    @discardableResult
    func start(_ name: String, executable: String? = nil, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable ?? Chain.binDirectory.appendingPathComponent(name).path)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let log = directory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes[name] = process
        return process
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    /// Starts plantd, edged and feedd from the etc/ files and waits until each answers on its control endpoint.
    func startDaemons(_ daemons: [String] = ["plantd", "edged", "feedd"], from binDirectory: URL = Chain.binDirectory)
        throws
    {
        let controlPorts = ["plantd": "plant_ctl", "edged": "edge_ctl", "feedd": "feed_ctl"]
        for daemon in daemons {
            try start(daemon, executable: binDirectory.appendingPathComponent(daemon).path,
                ["--config", etc.appendingPathComponent("\(daemon).toml").path])
        }
        for daemon in daemons { try waitUntilAnswering(daemon, endpoint: endpoint(controlPorts[daemon]!)) }
    }

    /// Waits until `daemon` answers `status` on `endpoint` (or has exited, which is an error).
    func waitUntilAnswering(_ daemon: String, endpoint: String, timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if status(endpoint, curve: controlKeys[daemon]) != nil { return }
            guard processes[daemon]?.isRunning == true else { throw ChainError("\(daemon) exited: \(log(daemon))") }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw ChainError("\(daemon) did not answer on its control endpoint: \(log(daemon))")
    }

    private let context = try! ZMQContext()

    /// A daemon's `status` reply, nil when it does not answer.
    func status(_ endpoint: String, curve: CurveClientKeys? = nil) -> DaemonStatus? {
        ControlClient.request(context: context, endpoint: endpoint, request: ControlRequest(cmd: "status"),
            timeoutMilliseconds: 500, curve: curve)
            .flatMap { try? JSONDecoder().decode(DaemonStatus.self, from: Data($0)) }
    }

    /// Runs a program to completion and returns its exit status and output.
    static func run(_ executable: String, _ arguments: [String], in directory: URL? = nil, timeout: TimeInterval = 60)
        throws -> (status: Int32, output: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-run-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw ChainError("\(executable) \(arguments) did not finish within \(timeout) s")
        }
        try handle.close()
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    /// Waits for a started process to end by itself.
    func waitForExit(_ name: String, timeout: TimeInterval) throws -> Int32 {
        guard let process = processes[name] else { throw ChainError("\(name) was not started") }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        guard !process.isRunning else { throw ChainError("\(name) still running after \(timeout) s: \(log(name))") }
        return process.terminationStatus
    }

    func stop(_ name: String) {
        guard let process = processes.removeValue(forKey: name), process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Stops every process this chain started (SIGTERM, then SIGKILL after 5 s) and removes its directory.
    func stop() {
        for name in Array(processes.keys) { stop(name) }
        try? FileManager.default.removeItem(at: directory)
    }
}

struct ChainError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
