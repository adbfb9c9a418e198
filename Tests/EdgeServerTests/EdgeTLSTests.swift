import Foundation
import Testing

import EdgeServer
import MarketData
import TestSupport
import ZeroMQ

/// wss: edged with a certificate and key, spoken to by a real TLS client (Python's ssl and websockets, verifying the
/// certificate as a browser would), and by clients that do not speak TLS.
@Suite(.serialized) struct EdgeTLSOverRealSockets {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let python =
        ProcessInfo.processInfo.environment["TICKPLANT_PYTHON"]
        ?? packageRoot.appendingPathComponent(".venv/bin/python").path

    /// A self-signed certificate for 127.0.0.1 and its key, made by the openssl tool in a fresh directory.
    struct Certificate {
        let directory: URL
        var certificate: String { directory.appendingPathComponent("edged.crt").path }
        var key: String { directory.appendingPathComponent("edged.key").path }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("edged-tls-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let result = try Self.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", directory.appendingPathComponent("edged.key").path,
                    "-out", directory.appendingPathComponent("edged.crt").path,
                ])
            guard result.status == 0 else {
                throw TestWebSocketClient.Failure(description: "openssl: \(result.output)")
            }
        }

        func remove() { try? FileManager.default.removeItem(at: directory) }

        static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 30) throws
            -> (status: Int32, output: String)
        {
            try ChildProcess.run(executable, arguments, timeout: timeout)
        }
    }

    @Test func aRealTLSClientSubscribesAndGetsUpdatesOverWss() async throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        let tls = try TLSContext(certificate: certificate.certificate, key: certificate.key)
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.tls = tls }
        let port = fixture.port
        // The client runs for 4 s; meanwhile the plant side publishes once its subscription is upstream.
        let client = Task.detached {
            try Certificate.run(
                Self.python,
                [
                    Self.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path,
                    "--cafile", certificate.certificate, "wss://127.0.0.1:\(port)/prices", "4", "AAPL",
                ])
        }
        #expect(try fixture.nextUpstreamChange() == "+AAPL|", "the TLS client's subscribe reached edged")
        try await Task.sleep(for: .milliseconds(200))
        for price in [178_520_000, 178_530_000, 178_540_000] { try fixture.publishTrade("AAPL", price: Int64(price)) }
        let result = try await client.value
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first == #"{"type":"subscribed","symbols":["AAPL"]}"#, "\(result.output)")
        let prices = lines.compactMap { $0.firstMatch(of: /"price":([0-9.]+)/).map { String($0.1) } }
        #expect(prices == ["178.52", "178.53", "178.54"], "\(result.output)")
        await fixture.stop()
    }

    @Test func aClientThatDoesNotSpeakTLSIsClosedAndCounted() async throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        let tls = try TLSContext(certificate: certificate.certificate, key: certificate.key)
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.tls = tls }
        // A plain ws client: its HTTP upgrade is not a TLS ClientHello; edged closes the connection.
        #expect(throws: TestWebSocketClient.Failure.self) { try TestWebSocketClient(port: fixture.port) }
        // A TLS client that trusts another certificate: the handshake fails on its side and it hangs up; edged
        // counts it; then a good client still works.
        let other = try Certificate()
        defer { other.remove() }
        let refused = try Certificate.run(
            Self.python,
            [
                Self.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path,
                "--cafile", other.certificate, "wss://127.0.0.1:\(fixture.port)/prices", "1", "AAPL",
            ])
        #expect(refused.status != 0 && refused.output.contains("CERTIFICATE_VERIFY_FAILED"), "\(refused.output)")
        // The client's alert reaches edged just after the client is gone.
        var failures: UInt64 = 0
        let deadline = Date().addingTimeInterval(3)
        while failures < 2 && Date() < deadline {
            failures = try EdgeStatusProbe.status(fixture).counters["tls_failures", default: 0]
            if failures < 2 { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(failures == 2, "the plain client and the one that refused the certificate")
        let good = try Certificate.run(
            Self.python,
            [
                Self.packageRoot.appendingPathComponent("Tests/Clients/ws_client.py").path,
                "--cafile", certificate.certificate, "wss://127.0.0.1:\(fixture.port)/prices", "0.5", "AAPL",
            ])
        #expect(good.output.contains(#"{"type":"subscribed","symbols":["AAPL"]}"#), "\(good.output)")
        #expect(try EdgeStatusProbe.status(fixture).counters["tls_handshakes", default: 0] >= 1)
        await fixture.stop()
    }

    @Test func aBadCertificateOrKeyIsAConfigErrorNamingTheKey() throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        let other = try Certificate()
        defer { other.remove() }
        let file = certificate.directory.appendingPathComponent("edged.toml").path
        for (tls, key, says) in [
            ("certificate = \"\(certificate.certificate)\"", "[tls] key", "wss needs both"),
            (
                "certificate = \"/nonexistent.crt\"\nkey = \"\(certificate.key)\"", "[tls] certificate",
                "/nonexistent.crt"
            ),
            (
                "certificate = \"\(certificate.key)\"\nkey = \"\(certificate.key)\"", "[tls] certificate",
                "PEM certificate"
            ),
            (
                "certificate = \"\(certificate.certificate)\"\nkey = \"\(other.key)\"", "[tls] key",
                "private key of \(certificate.certificate)"
            ),
        ] {
            try "[tls]\n\(tls)\n".write(toFile: file, atomically: true, encoding: .utf8)
            #expect {
                _ = try EdgeConfiguration.load(file: file)
            } throws: { error in
                let text = "\(error)"
                return text.contains("\(file): \(key): ") && text.contains(says)
            }
        }
        try "[tls]\ncertificate = \"\(certificate.certificate)\"\nkey = \"\(certificate.key)\"\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try EdgeConfiguration.load(file: file).tls != nil)
    }
}
