import Foundation
import Testing

@testable import TickerPlant
import MarketData
import ZeroMQ

/// `[curve]`: plantd's stream and snapshot ROUTER encrypted, open only to the client keys it lists.
@Suite(.serialized) struct PlantCurve {
    @Test func onlyListedClientKeysReceiveTicksAndSnapshotsAndRefusalsAreCounted() throws {
        let server = try CurveKeyPair.generate()
        let listed = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let plant = try PlantUnderTest {
            $0.curve = CurveServerConfiguration(secretKey: server.secretKey, clientKeys: [listed.publicKey])
        }
        func subscriber(_ keys: CurveKeyPair?) throws -> ZMQSocket {
            let socket = try ZMQSocket(plant.context, type: .subscribe)
            if let keys {
                try socket.setCurveClient(
                    try #require(CurveClientKeys(serverKey: server.publicKey, secretKey: keys.secretKey)))
            }
            try socket.subscribe("AAPL|")
            try socket.setReceiveTimeout(milliseconds: 100)
            try socket.connect(try plant.endpoint("publish"))
            return socket
        }
        let allowed = try subscriber(listed)
        let refused = try subscriber(stranger)
        let plain = try subscriber(nil)
        defer { [allowed, refused, plain].forEach { $0.close() } }
        Thread.sleep(forTimeInterval: 0.5)
        for index in 0..<3 {
            try plant.send(Tick.trade(symbol: "AAPL", venue: "XNAS",
                price: Price(fixedPoint: 100_000_000 + Int64(index)), size: 100))
        }
        #expect(try plant.collect(allowed) { $0.count == 3 }.map(\.symbolSequence) == [1, 2, 3])
        #expect(try plant.collect(refused, timeout: 1) { !$0.isEmpty }.isEmpty, "an unknown key got ticks")
        #expect(try plant.collect(plain, timeout: 0.5) { !$0.isEmpty }.isEmpty, "a client without CURVE got ticks")

        // The snapshot ROUTER: the listed key is answered, the stranger never.
        func snapshot(_ keys: CurveKeyPair) throws -> SnapshotEnd? {
            let dealer = try ZMQSocket(plant.context, type: .dealer)
            defer { dealer.close() }
            try dealer.setCurveClient(
                try #require(CurveClientKeys(serverKey: server.publicKey, secretKey: keys.secretKey)))
            try dealer.setReceiveTimeout(milliseconds: 1_500)
            try dealer.connect(try plant.endpoint("snapshot"))
            _ = try dealer.send(ReplayRequest.snapshot(prefix: "AAPL|").encoded())
            while let frames = try dealer.receiveFrames() {
                if frames[0] == Array(SnapshotEnd.topic.utf8) { return SnapshotEnd(decoding: frames[1]) }
            }
            return nil
        }
        #expect(try snapshot(listed)?.tickCount == 1)
        #expect(try snapshot(stranger) == nil)

        let status = try plant.status()
        #expect((status.counters["curve_clients_refused"] ?? 0) >= 2, "\(status.counters)")
        #expect((status.counters["curve_clients_accepted"] ?? 0) >= 2, "\(status.counters)")
    }

    @Test func curveKeysAreReadFromFilesAndABadOneNamesFileAndKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-curve-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let secretPath = directory.appendingPathComponent("plantd.key_secret").path
        let clientPath = directory.appendingPathComponent("edged.key").path
        let openSecretPath = directory.appendingPathComponent("open.key_secret").path
        try (server.secretKey + "\n").write(toFile: openSecretPath, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: openSecretPath)
        try SecretFiles.create(secretPath, contents: server.secretKey + "\n")
        try (client.publicKey + "\n").write(toFile: clientPath, atomically: true, encoding: .utf8)
        func load(_ curve: String) throws -> PlantConfiguration {
            let file = directory.appendingPathComponent("plantd.toml").path
            try "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\n[curve]\n\(curve)\n".write(toFile: file, atomically: true,
                encoding: .utf8)
            return try PlantConfiguration.load(file: file)
        }
        let loaded = try load("secret_key_file = \"\(secretPath)\"\nclient_key_files = [\"\(clientPath)\"]")
        #expect(loaded.curve == CurveServerConfiguration(secretKey: server.secretKey, clientKeys: [client.publicKey]))

        let cases: [(String, String, String)] = [
            ("secret_key_file = \"\(directory.path)/missing\"\nclient_key_files = [\"\(clientPath)\"]",
                "[curve] secret_key_file", "cannot read"),
            ("secret_key_file = \"\(secretPath)\"\nclient_key_files = [\"\(secretPath)x\"]",
                "[curve] client_key_files", "cannot read"),
            ("secret_key_file = \"\(secretPath)\"\nclient_key_files = []", "[curve] client_key_files", "got none"),
            // A secret key others can read is refused, its file named.
            ("secret_key_file = \"\(openSecretPath)\"\nclient_key_files = [\"\(clientPath)\"]",
                "[curve] secret_key_file", "open.key_secret is open to others (mode 0644)"),
        ]
        for (curve, key, reason) in cases {
            #expect {
                _ = try load(curve)
            } throws: { error in
                let text = "\(error)"
                return text.contains(key) && text.contains(reason) && text.contains("plantd.toml")
            }
        }
        // A file that is not a key at all.
        try "not a key\n".write(toFile: clientPath, atomically: true, encoding: .utf8)
        #expect {
            _ = try load("secret_key_file = \"\(secretPath)\"\nclient_key_files = [\"\(clientPath)\"]")
        } throws: { "\($0)".contains("[curve] client_key_files") && "\($0)".contains("expected a CURVE key") }
    }

    /// `[curve] operator_key_files`: the control endpoint answers the operators' keys and the plant's own (what its
    /// `/metrics` and SIGHUP ask with), and no one else: not a stranger's key (refused and counted), not a client
    /// without CURVE. The streams stay as `[curve]` says (here plain).
    @Test func theControlEndpointAnswersOnlyTheOperatorsKeysAndThePlantsOwn() throws {
        let server = try CurveKeyPair.generate()
        let operatorPair = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let control = ControlCurve(secretKey: server.secretKey, operatorKeys: [operatorPair.publicKey],
            publicKeyFile: "unused.key")
        let plant = try PlantUnderTest { $0.controlCurve = control }
        func status(_ keys: CurveClientKeys?) throws -> DaemonStatus? {
            let request = try ZMQSocket(plant.context, type: .request)
            defer { request.close() }
            try request.setLinger(milliseconds: 0)
            if let keys { try request.setCurveClient(keys) }
            try request.setReceiveTimeout(milliseconds: 1_500)
            try request.connect(try plant.endpoint("control"))
            try request.send(#"{"cmd":"status"}"#)
            guard let frames = try request.receiveFrames() else { return nil }
            return try JSONDecoder().decode(DaemonStatus.self, from: Data(frames[0]))
        }
        #expect(try status(CurveClientKeys(serverKey: server.publicKey, secretKey: operatorPair.secretKey)) != nil)
        #expect(try status(control.ownClientKeys) != nil, "the plant's own key: /metrics and SIGHUP")
        #expect(try status(CurveClientKeys(serverKey: server.publicKey, secretKey: stranger.secretKey)) == nil)
        #expect(try status(nil) == nil, "a client without CURVE was answered")
        let counters = try #require(try status(control.ownClientKeys)).counters
        // libzmq may try the refused handshake again before the socket closes: at least once, and every refusal
        // was at the control endpoint.
        #expect((counters["control_clients_refused"] ?? 0) >= 1, "\(counters)")
        #expect(counters["curve_clients_refused"] == counters["control_clients_refused"], "\(counters)")

        // The stream is plain: a SUB without CURVE still gets ticks.
        let consumer = try plant.consumer(["AAPL|"])
        defer { consumer.close() }
        try plant.send(Tick.trade(symbol: "AAPL", venue: "XNAS", price: Price(fixedPoint: 100_000_000), size: 100))
        #expect(try plant.collect(consumer) { $0.count == 1 }.count == 1)
    }

    /// `operator_key_files` needs the plant's own secret, named `NAME.key_secret` with its public `NAME.key` beside
    /// it (what mktctl reads); with it, a control endpoint beyond loopback needs no `insecure`.
    @Test func operatorKeysNeedTheSecretWithItsPublicKeyBesideItAndGuardAControlBeyondLoopback() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tickplant-control-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try CurveKeyPair.generate()
        let operatorPair = try CurveKeyPair.generate()
        let secretPath = directory.appendingPathComponent("plantd.key_secret").path
        let publicPath = directory.appendingPathComponent("plantd.key").path
        let operatorPath = directory.appendingPathComponent("alice.key").path
        try SecretFiles.create(secretPath, contents: server.secretKey + "\n")
        try (operatorPair.publicKey + "\n").write(toFile: operatorPath, atomically: true, encoding: .utf8)
        func load(control: String = "tcp://127.0.0.1:7209", _ curve: String) throws -> PlantConfiguration {
            let file = directory.appendingPathComponent("plantd.toml").path
            try "[plant]\nfeeds = [\"tcp://127.0.0.1:7101\"]\ncontrol = \"\(control)\"\n[curve]\n\(curve)\n"
                .write(toFile: file, atomically: true, encoding: .utf8)
            return try PlantConfiguration.load(file: file)
        }
        let operators = "operator_key_files = [\"\(operatorPath)\"]"
        func refusal(control: String = "tcp://127.0.0.1:7209", _ curve: String) -> String? {
            do {
                _ = try load(control: control, curve)
                return nil
            } catch { return "\(error)" }
        }
        #expect(refusal(operators)?.contains("[curve] operator_key_files: expected beside secret_key_file") == true)
        #expect(refusal("secret_key_file = \"\(secretPath)\"\n\(operators)")?
            .contains("expected its public key beside it in \"\(publicPath)\"") == true)
        try (operatorPair.publicKey + "\n").write(toFile: publicPath, atomically: true, encoding: .utf8)
        #expect(refusal("secret_key_file = \"\(secretPath)\"\n\(operators)")?
            .contains("\"\(publicPath)\" does not hold the public key of") == true)
        try (server.publicKey + "\n").write(toFile: publicPath, atomically: true, encoding: .utf8)

        let loaded = try load(control: "tcp://*:7209", "secret_key_file = \"\(secretPath)\"\n\(operators)")
        #expect(loaded.controlCurve == ControlCurve(secretKey: server.secretKey, operatorKeys: [operatorPair.publicKey],
            publicKeyFile: publicPath))
        #expect(loaded.curve == nil, "the streams stay plain without client_key_files")
        #expect(refusal(control: "tcp://*:7209", "")?.contains("[plant] control: tcp://*:7209 can be reached") == true)
        #expect(refusal("secret_key_file = \"\(directory.path)/plantd.secret\"\n\(operators)")?
            .contains("expected a NAME.key_secret file") == true)
    }
}
