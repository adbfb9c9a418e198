import Foundation
import Glibc
import Testing

/// The demo page and tickplant.js in real headless Chromium against the whole chain (Tests/Browser/demo_page.py
/// drives the browser with selenium; this test runs the chain and kills and restarts edged when the script asks).
@Suite struct DemoPageInABrowser {
    /// Screenshots go here, kept after the run.
    static let artifacts = Chain.packageRoot.appendingPathComponent(".build/test-artifacts")
    /// The release executables when `make test` built them (the page's smoothness is measured beside the chain).
    static let binDirectory = ProcessInfo.processInfo.environment["TICKPLANT_RELEASE_BIN_DIR"]
        .map { URL(fileURLWithPath: $0) } ?? Chain.binDirectory

    @Test func thePageShowsThePlantsPricesTheHaltAndComesBackAfterEdgedIsKilled() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let generated = chain.directory.appendingPathComponent("python")
        try FileManager.default.createDirectory(at: generated, withIntermediateDirectories: true)
        let protoc = try Chain.run("/usr/bin/protoc", ["--python_out=\(generated.path)", "-I",
            Chain.packageRoot.appendingPathComponent("Proto").path, "tick.proto"])
        try #require(protoc.status == 0, "protoc failed: \(protoc.output)")

        try chain.startDaemons(from: Self.binDirectory)
        // 200 symbols; AAPL halted 25 s after the start for 6 s, while the page watches.
        try chain.start("mktctl", executable: Self.binDirectory.appendingPathComponent("mktctl").path, [
            "sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--chaos", "halt=AAPL@25s+6s",
            "--quiet",
        ])
        let browser = try chain.start("browser", executable: Chain.python, [
            Chain.packageRoot.appendingPathComponent("Tests/Browser/demo_page.py").path, generated.path,
            "http://127.0.0.1:\(chain.ports["edge_http"]!)/", chain.endpoint("plant_pub"), chain.directory.path,
            Self.artifacts.path,
        ])

        let killMarker = chain.directory.appendingPathComponent("kill-edged")
        let restartMarker = chain.directory.appendingPathComponent("restart-edged")
        var killed = false
        var restarted = false
        let deadline = Date().addingTimeInterval(240)
        while browser.isRunning && Date() < deadline {
            if !killed && FileManager.default.fileExists(atPath: killMarker.path) {
                // Killed, not drained: the page learns it from a dead connection, as after a crash.
                let edged = try #require(chain.processes["edged"])
                kill(edged.processIdentifier, SIGKILL)
                edged.waitUntilExit()
                killed = true
            }
            if killed && !restarted && FileManager.default.fileExists(atPath: restartMarker.path) {
                try chain.startDaemons(["edged"], from: Self.binDirectory)
                restarted = true
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        if browser.isRunning { chain.stop("browser") }
        let output = chain.log("browser")
        #expect(browser.terminationStatus == 0, "\(output)\nedged: \(chain.log("edged"))")
        #expect(killed && restarted, "the script never asked for edged's restart: \(output)")
        let phases = output.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }.compactMap { $0["phase"] as? String }
        #expect(phases == ["live", "halt", "restart", "smooth"], "\(output)")
        #expect(FileManager.default.fileExists(atPath: Self.artifacts.appendingPathComponent("demo-page.png").path))
        print(output)
    }

    @Test func tickplantJSInNodeGetsLivePricesFromEdged() throws {
        let chain = try Chain()
        defer { chain.stop() }
        try chain.startDaemons(from: Self.binDirectory)
        try chain.start("mktctl", executable: Self.binDirectory.appendingPathComponent("mktctl").path,
            ["sim", "--config", chain.etc.appendingPathComponent("sim.toml").path, "--quiet"])
        // Node 22 and later have a global WebSocket; Node 20 and 21 have it behind a flag.
        let version = try Chain.run("/usr/bin/env", ["node", "--version"]).output
        let major = Int(version.dropFirst().prefix { $0.isNumber }) ?? 0
        try #require(major >= 20, "Node \(version) has no WebSocket for tickplant.js")
        let flags = major < 22 ? ["--experimental-websocket"] : []
        let result = try Chain.run("/usr/bin/env", ["node"] + flags + [
            Chain.packageRoot.appendingPathComponent("Tests/Browser/node_client.js").path,
            "ws://127.0.0.1:\(chain.ports["edge_http"]!)/prices",
        ], timeout: 30)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains(#""ok":true"#), "\(result.output)")
    }
}
