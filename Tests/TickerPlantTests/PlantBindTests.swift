import Foundation
import Glibc
import Logging
import Testing

import MarketData
import TestSupport
@testable import TickerPlant
import ZeroMQ

/// Who may reach plantd's bound sockets, and with how much: nothing beyond this host unguarded unless the file says
/// so, a control endpoint on an ipc:// path only for its owner and group, and no peer message larger than the
/// socket's limit taken into memory (DESIGN sections 4 and 12).
@Suite(.serialized) struct PlantBindTests {
    static func load(_ toml: String) throws -> PlantConfiguration {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("plantd-\(UUID()).toml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try ("[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\n" + toml).write(toFile: file, atomically: true, encoding: .utf8)
        // Without reading the key files: `[curve]` set is all that counts here.
        return try PlantConfiguration.load(file: file, readingFiles: false)
    }

    static func refusal(_ toml: String) -> String? {
        do {
            _ = try load(toml)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aBindBeyondThisHostNeedsCurveOrInsecureAndTheControlEndpointInsecure() throws {
        let publish = try #require(Self.refusal("publish = \"tcp://0.0.0.0:7201\"\n"))
        #expect(publish.contains("[plant] publish: tcp://0.0.0.0:7201 can be reached from other hosts"), "\(publish)")
        #expect(publish.contains("set [plant] insecure = true"), "\(publish)")
        #expect(Self.refusal("snapshot = \"tcp://*:7202\"\n")?.contains("[plant] snapshot: ") == true)
        #expect(Self.refusal("publish = \"tcp://0.0.0.0:7201\"\ninsecure = true\n") == nil)
        let curve = "[curve]\nsecret_key_file = \"plantd.key_secret\"\nclient_key_files = [\"edged.key\"]\n"
        #expect(Self.refusal("publish = \"tcp://0.0.0.0:7201\"\nsnapshot = \"tcp://*:7202\"\n" + curve) == nil,
            "CURVE guards the stream and the snapshot ROUTER")
        let control = try #require(Self.refusal("control = \"tcp://0.0.0.0:7209\"\n" + curve), "CURVE does not guard it")
        #expect(control.contains("[plant] control: ") && control.contains("ipc://"), "\(control)")
        #expect(Self.refusal("control = \"ipc:///run/tickplant/plantd.control\"\n") == nil)
    }

    /// `[curve] feed_key_files`: plantd's own pair makes it the feeds' CURVE client, one key per feed.
    @Test func feedKeysNeedPlantdsOwnPairAndOneKeyPerFeed() throws {
        let alone = try #require(Self.refusal("[curve]\nfeed_key_files = [\"feedd.key\"]\n"))
        #expect(alone.contains("[curve] feed_key_files: expected beside secret_key_file"), "\(alone)")
        let curve = "[curve]\nsecret_key_file = \"plantd.key_secret\"\nclient_key_files = [\"edged.key\"]\n"
        let two = try #require(Self.refusal(curve + "feed_key_files = [\"a.key\", \"b.key\"]\n"))
        #expect(two.contains("expected one key file per feed in [plant] feeds (1), got 2"), "\(two)")
        #expect(try Self.load(curve + "feed_key_files = [\"feedd.key\"]\n").feedServerKeys.count == 1)
    }

    /// A plantd with its control endpoint at `control` and nothing fed.
    static func plant(control: String, _ context: ZMQContext) throws -> PlantEngine {
        var configuration = PlantConfiguration()
        configuration.feeds = ["tcp://127.0.0.1:1"]
        configuration.publishEndpoint = "tcp://127.0.0.1:*"
        configuration.snapshotEndpoint = "tcp://127.0.0.1:*"
        configuration.controlEndpoint = control
        let engine = PlantEngine(configuration: configuration, context: context, logger: Logger(label: "test"))
        try engine.start()
        return engine
    }

    /// The socket file is 0660, so a peer must be the owner or in the group to connect (a Unix socket is connected to
    /// by writing it); status is answered through it. Where this runs as root, a process as `nobody` is refused.
    @Test func aControlEndpointOnAnIpcPathIsForItsOwnerAndGroupOnly() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ipc-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/plantd.control"
        let context = try ZMQContext()
        let engine = try Self.plant(control: "ipc://" + path, context)
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o660)
        #expect(try PlantRecoveryTests.status(of: engine, context).daemon == "plantd")
        guard getuid() == 0 else { return }
        let refused = try ChildProcess.run("/usr/sbin/runuser", ["-u", "nobody", "--", "/usr/bin/python3", "-c",
            "import socket; socket.socket(socket.AF_UNIX).connect('\(path)')"])
        #expect(refused.status != 0 && refused.output.contains("PermissionError"), "\(refused.output)")
    }

    /// A request larger than the socket takes disconnects its peer before plantd reads it: it gets no answer (the
    /// same bytes within the limit are answered, as not a request plantd knows), and other peers are served.
    @Test func aMessageLargerThanTheSocketTakesIsNeverReadAndOthersAreServed() throws {
        let context = try ZMQContext()
        let engine = try Self.plant(control: "tcp://127.0.0.1:*", context)
        defer {
            engine.stop()
            _ = engine.thread.join()
        }
        func ask(_ endpoint: String, _ body: [UInt8], dealer: Bool) throws -> [[UInt8]]? {
            let socket = try ZMQSocket(context, type: dealer ? .dealer : .request)
            defer { socket.close() }
            try socket.setLinger(milliseconds: 0)
            try socket.setReceiveTimeout(milliseconds: 1_000)
            try socket.connect(endpoint)
            _ = try socket.send(body)
            return try? socket.receiveFrames()
        }
        let snapshot = try #require(engine.endpoints["snapshot"])
        let control = try #require(engine.endpoints["control"])
        let junk = [UInt8](repeating: 0xFF, count: Int(maximumPeerMessageBytes))
        #expect(try ask(snapshot, junk, dealer: true) != nil, "within the limit: answered, as not a request")
        #expect(try ask(snapshot, junk + [0xFF], dealer: true) == nil, "one byte over: never read")
        let hugeRequest = Array(("{\"cmd\":\"status\",\"pad\":\"" + String(repeating: "x", count: 70_000) + "\"}").utf8)
        #expect(try ask(control, hugeRequest, dealer: false) == nil)
        #expect(try ask(control, Array(#"{"cmd":"status"}"#.utf8), dealer: false) != nil)
        #expect(try ask(snapshot, ReplayRequest.snapshot(prefix: "AAPL|").encoded(), dealer: true) != nil)
    }
}
