import Foundation
import Testing

import EdgeServer
import MarketData
import ZeroMQ

/// edged's TLS policy as a client sees it, asked by `openssl s_client` (which offers what it is told, old versions
/// included at `@SECLEVEL=0`), and a certificate renewed by `reload` without a restart.
@Suite(.serialized) struct EdgeTLSPolicyOverRealSockets {
    typealias Certificate = EdgeTLSOverRealSockets.Certificate

    /// An RSA certificate for 127.0.0.1 (key exchange by RSA, without forward secrecy, needs one) with `name` as its
    /// common name, written over `directory`'s edged.crt and edged.key.
    static func writeRSACertificate(in directory: URL, name: String) throws {
        let result = try Certificate.run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(name)",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", directory.appendingPathComponent("edged.key").path,
            "-out", directory.appendingPathComponent("edged.crt").path,
        ])
        guard result.status == 0 else { throw TestWebSocketClient.Failure(description: "openssl: \(result.output)") }
        chmod(directory.appendingPathComponent("edged.key").path, 0o600)
    }

    /// One TLS handshake by `openssl s_client` with `options`: whether it was established, and its output.
    static func handshake(port: Int, _ options: [String]) throws -> (established: Bool, output: String) {
        let result = try Certificate.run("/bin/sh", ["-c",
            "echo | exec /usr/bin/openssl s_client -connect 127.0.0.1:\(port) -brief "
                + options.map { "'\($0)'" }.joined(separator: " ") + " 2>&1"], timeout: 10)
        return (result.status == 0 && result.output.contains("CONNECTION ESTABLISHED"), result.output)
    }

    static func tlsFailures(_ fixture: EdgeServerOverRealSockets.Fixture) throws -> UInt64 {
        try EdgeStatusProbe.status(fixture).counters["tls_failures", default: 0]
    }

    /// TLS 1.0 and 1.1, TLS 1.2 without forward secrecy (RSA key exchange) or without an AEAD cipher (CBC): each
    /// refused by edged (its `tls_failures` counts each: the refusal is the server's, not the client's). TLS 1.2 with
    /// ECDHE and AES-GCM, and TLS 1.3, are established.
    @Test func oldVersionsAndCiphersWithoutForwardSecrecyOrAEADAreRefusedByTheServer() async throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        try Self.writeRSACertificate(in: certificate.directory, name: "127.0.0.1")
        let tls = try TLSContext(certificate: certificate.certificate, key: certificate.key)
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.tls = tls }
        let refused: [(String, [String])] = [
            ("TLS 1.0", ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            ("TLS 1.1", ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
            ("TLS 1.2, RSA key exchange", ["-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"]),
            ("TLS 1.2, CBC", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384"]),
        ]
        for (what, options) in refused {
            let before = try Self.tlsFailures(fixture)
            let attempt = try Self.handshake(port: fixture.port, options)
            #expect(!attempt.established, "\(what): \(attempt.output)")
            var after = before
            let deadline = Date().addingTimeInterval(3)
            while after == before && Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
                after = try Self.tlsFailures(fixture)
            }
            #expect(after == before + 1, "\(what): edged refused the handshake")
        }
        let tls12 = try Self.handshake(port: fixture.port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
        #expect(tls12.established && tls12.output.contains("Protocol version: TLSv1.2"), "\(tls12.output)")
        #expect(tls12.output.contains("Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256"), "\(tls12.output)")
        let tls13 = try Self.handshake(port: fixture.port, ["-tls1_3"])
        #expect(tls13.established && tls13.output.contains("Protocol version: TLSv1.3"), "\(tls13.output)")
        await fixture.stop()
    }

    /// `[tls] min_version = "1.3"`: a TLS 1.2 client is refused, a TLS 1.3 one established.
    @Test func minimumVersionOneThreeRefusesTLSOneTwo() async throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        let tls = try TLSContext(certificate: certificate.certificate, key: certificate.key, minimumVersion: .tls13)
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.tls = tls }
        let tls12 = try Self.handshake(port: fixture.port, ["-tls1_2"])
        #expect(!tls12.established, "\(tls12.output)")
        let tls13 = try Self.handshake(port: fixture.port, ["-tls1_3"])
        #expect(tls13.established, "\(tls13.output)")
        await fixture.stop()
    }

    /// A renewed certificate written over the files is served to connections after `reload` (what SIGHUP asks), and
    /// a broken one is refused by the reload, naming the key, while the one in use stays.
    @Test func reloadServesARenewedCertificateAndKeepsTheOneInUseWhenTheNewFilesAreBad() async throws {
        let certificate = try Certificate()
        defer { certificate.remove() }
        try Self.writeRSACertificate(in: certificate.directory, name: "first")
        let tls = try TLSContext(certificate: certificate.certificate, key: certificate.key)
        let fixture = try await EdgeServerOverRealSockets.Fixture { $0.tls = tls }
        func reload() throws -> ReloadReply {
            let control = try ZMQSocket(fixture.context, type: .request)
            defer { control.close() }
            try control.setReceiveTimeout(milliseconds: 5_000)
            try control.connect(try #require(fixture.server.controlEndpoint))
            try control.send(#"{"cmd":"reload"}"#)
            return try JSONDecoder().decode(ReloadReply.self, from: Data(try #require(try control.receiveFrames())[0]))
        }
        #expect(try Self.handshake(port: fixture.port, []).output.contains("CN = first"))

        try Self.writeRSACertificate(in: certificate.directory, name: "renewed")
        #expect(try Self.handshake(port: fixture.port, []).output.contains("CN = first"), "nothing changes before it")
        let renewed = try reload()
        #expect(renewed.error == nil && renewed.applied == ["[tls] certificate", "[tls] key"])
        let after = try Self.handshake(port: fixture.port, [])
        #expect(after.established && after.output.contains("CN = renewed"), "\(after.output)")

        try "not a certificate\n".write(toFile: certificate.certificate, atomically: true, encoding: .utf8)
        let broken = try reload()
        #expect(broken.error?.contains("[tls] certificate: cannot use \(certificate.certificate)") == true,
            "\(broken.error ?? "no error")")
        #expect(broken.error?.contains("the certificate in use stays") == true)
        let still = try Self.handshake(port: fixture.port, [])
        #expect(still.established && still.output.contains("CN = renewed"), "\(still.output)")
        await fixture.stop()
    }
}
