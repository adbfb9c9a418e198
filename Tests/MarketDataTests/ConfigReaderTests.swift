import Foundation
import Testing

@testable import MarketData

@Suite struct ConfigReading {
    @Test func valuesAreReadWithDefaults() throws {
        let reader = try ConfigReader.parse(
            """
            [plant]
            name = "p1"
            send_hwm = 5000
            ratio = 0.5
            heartbeat = "250ms"
            """, file: "etc/test.toml")
        let plant = try reader.table("plant")
        #expect(try plant.string("name") == "p1")
        #expect(try plant.int("send_hwm", default: 1, in: 1...10_000) == 5000)
        #expect(try plant.int("missing", default: 7, in: 1...10) == 7)
        #expect(try plant.double("ratio", default: 0, in: 0...1) == 0.5)
        #expect(try plant.duration("heartbeat", default: .seconds(1)) == .milliseconds(250))
        try reader.finish()
    }

    @Test func durationsInHoursAndDaysAreReadAndOnesNanosecondsCannotHoldAreRefusedNotTrapped() throws {
        let reader = try ConfigReader.parse(
            """
            [x]
            hours = "8h"
            days = "7d"
            minutes = "999999999999999m"
            seconds = 1e300
            """, file: "etc/test.toml")
        let table = try reader.table("x")
        #expect(try table.duration("hours", default: .zero) == .seconds(8 * 3_600))
        #expect(try table.duration("days", default: .zero) == .seconds(7 * 86_400))
        // Before, the first trapped multiplying, the second converting to Int64.
        for key in ["minutes", "seconds"] {
            #expect(throws: ConfigError.self, "\(key)") { try table.duration(key, default: .zero) }
        }
    }

    @Test func aWrongValueNamesFileSectionKeyAndWhatWasFound() throws {
        let reader = try ConfigReader.parse("[filters]\nmax_jump_pct = \"abc\"\n", file: "etc/plantd.toml")
        let filters = try reader.table("filters")
        #expect(throws: ConfigError(file: "etc/plantd.toml", key: "[filters] max_jump_pct",
            reason: #"expected a number between 0.0 and 100.0, got "abc""#)) {
            try filters.double("max_jump_pct", in: 0...100)
        }
        let error = ConfigError(file: "etc/plantd.toml", key: "[filters] max_jump_pct", reason: "expected x")
        #expect(error.description == "etc/plantd.toml: [filters] max_jump_pct: expected x")
    }

    @Test func unknownKeysAreErrorsSoTyposAreNotIgnored() throws {
        let reader = try ConfigReader.parse("[plant]\nnmae = \"x\"\n", file: "etc/plantd.toml")
        _ = try reader.table("plant").string("name", default: "plantd")
        #expect(throws: ConfigError(file: "etc/plantd.toml", key: "[plant] nmae", reason: "unknown key")) {
            try reader.finish()
        }
    }

    @Test func badTomlAndMissingFilesAreConfigErrors() throws {
        #expect(throws: ConfigError.self) { try ConfigReader.parse("[plant\nx=1", file: "bad.toml") }
        #expect(throws: ConfigError(file: "/nonexistent/x.toml", key: "", reason: "no such file")) {
            try ConfigReader.load(file: "/nonexistent/x.toml")
        }
    }

    /// toml++ asserts (SIGABRT, in release builds too) on a table name that cannot start a key; the fuzz target
    /// `config` found `[*ournal]`. Each is a config error naming the line now, and a header inside a multi-line string
    /// is still just text.
    @Test(arguments: ["[*ournal]", "x = 1\n[ *a]", "[[ !venues]]", "[", "[\r\nx = 1"])
    func aTableNameNoKeyCanStartWithIsAConfigErrorNotAnAbort(_ text: String) throws {
        #expect(throws: ConfigError.self) { try ConfigReader.parse(text, file: "bad.toml") }
        let line = text.hasPrefix("x = 1") ? 2 : 1
        #expect(ConfigReader.tableHeaderProblem(in: text)?.line == line)
        let quoted = try ConfigReader.parse("note = \"\"\"\n[*not a header]\n\"\"\"\n[plant]\nx = 1", file: "ok.toml")
        #expect(quoted.has("note"))
    }

    @Test func endpointsAndHostPortsAreChecked() throws {
        let reader = try ConfigReader.parse(
            """
            good = "tcp://127.0.0.1:7201"
            bad = "127.0.0.1:7201"
            listen = "127.0.0.1:7001"
            v6 = "[::1]:7001"
            noport = "localhost"
            """, file: "e.toml")
        #expect(try reader.endpoint("good") == "tcp://127.0.0.1:7201")
        #expect(throws: ConfigError.self) { try reader.endpoint("bad") }
        #expect(try reader.hostPort("listen").port == 7001)
        #expect(try reader.hostPort("v6").host == "::1")
        #expect(throws: ConfigError.self) { try reader.hostPort("noport") }
    }

    @Test(arguments: [
        ("tcp://127.0.0.1:7201", true), ("tcp://127.0.0.2:*", true), ("tcp://localhost:7201", true),
        ("tcp://lo:7201", true), ("tcp://[::1]:7201", true), ("tcp://[0:0:0:0:0:0:0:1]:7201", true),
        ("ipc:///run/tickplant/plantd.control", true), ("inproc://control", true),
        ("tcp://*:7201", false), ("tcp://0.0.0.0:7201", false), ("tcp://10.1.2.3:7201", false),
        ("tcp://128.0.0.1:7201", false), ("tcp://[::]:7201", false), ("tcp://eth0:7201", false),
        ("epgm://eth0;239.1.1.1:5555", false),
    ])
    func aBoundEndpointIsHostLocalOnlyOnLoopbackIpcOrInproc(endpoint: String, local: Bool) {
        #expect(ConfigReader.isHostLocal(endpoint) == local)
    }
}
